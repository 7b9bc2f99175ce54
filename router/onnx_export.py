"""The zoo's networks exported to ONNX for the torch-free predict path (:mod:`router.fast`).

    python -m router.fast export [--zoo DIR] [--overwrite]      # writes DIR/onnx/ (needs torch, onnx, onnxscript)

One file per network (fixed input size, opset 18) and ``DIR/onnx/manifest.json``, which records per
checkpoint the SHA-256 of the file it was exported from: a checkpoint that changed after the export
makes the runtime refuse the stale ONNX file.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.io import InputError, sha256, write_text

from .zoo import read as read_zoo

OPSET = 18


def networks(z: dict) -> dict[str, Path]:
    """Every network a prediction can use: name → checkpoint path."""
    out = {"classifier": z["classifier"], **{f"domain:{d}": p for d, p in z["domains"].items()}}
    if z["unified"]:
        out["unified"] = z["unified"]
    return out


def export(zoo=None, overwrite: bool = False) -> Path:
    """Export the zoo's classifier and harmonizers to ``<zoo>/onnx/`` (one file each, fixed input
    size, opset 18) with a manifest of the checkpoints' hashes."""
    import logging

    import torch
    from tqdm import tqdm

    from common import registry

    z = read_zoo(zoo)
    dst = Path(z["root"]) / "onnx"
    if (dst / "manifest.json").exists() and not overwrite:
        raise InputError(f"{dst}/manifest.json: already exists (pass --overwrite to export again)")
    dst.mkdir(parents=True, exist_ok=True)
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    entries = {}
    for name, ckpt in tqdm(networks(z).items(), desc="onnx export", unit="model"):
        if name == "classifier":
            model, _ = registry.load(ckpt, kind="classifier")
            size = model.cfg.size
        else:
            model, _ = registry.load(ckpt, kind="harmonizer")
            size = model.size
        file = dst / (Path(ckpt).stem + ".onnx")
        tmp = file.with_name(f".{file.name}.tmp")
        args = (torch.rand(1, 3, size, size), (torch.rand(1, 1, size, size) > 0.5).float())
        torch.onnx.export(model, args, str(tmp), input_names=["image", "mask"], output_names=["output"],
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
        tmp.replace(file)
        entries[name] = {"onnx": file.name, "checkpoint": Path(ckpt).name, "sha256": sha256(ckpt),
                         "size": int(size)}
    write_text(json.dumps({"opset": OPSET, "torch": torch.__version__, "models": entries}, indent=1) + "\n",
               dst / "manifest.json", overwrite=True)
    return dst
