"""Score a harmonization method on the test split of an iHarmony4-layout dataset.

    python -m eval.score --data data/mini4 --pred composite     # the composite baseline
    python -m eval.score --data data/mini4 --pred results/ --json runs/mine.json   # your results
    python -m eval.score --data /path/to/iHarmony4 --method reinhard --json runs/reinhard.json
    python -m eval.score --data data/mini4 --ckpt runs/issam_all.safetensors

``--pred DIR`` holds one result per test composite, named by the composite's stem (``.png`` or
``.jpg``); a missing one is an error listing what is missing.

Scoring follows the official iHarmony4 protocol by default (``--protocol iharm``; ``fullres`` is
ours, see ``eval.metrics``); the table has one row per domain and "All" (every image pooled).
"""
from __future__ import annotations

import json as jsonlib
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from common.cli import run, shared_args
from common.shipped import shown
from common.io import InputError, image_size, read_image, read_mask, write_text
from domains.dataset import load_samples

from common import metrics as M
from .baselines import BASELINES


@torch.inference_mode()
def score(data, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], domains="all",
          split: str = "test", size: int = M.EVAL_SIZE, desc: str = "score",
          protocol: str = "iharm") -> M.Accumulator:
    """Run ``predict(composite 3×H×W, mask 1×H×W) -> 3×H×W`` on every sample and accumulate the
    metrics against the real image. Under ``iharm`` the method sees the composite and the soft mask
    resized to ``size`` and its own output is scored; under ``fullres`` it sees the full-resolution
    composite (see ``eval.metrics``)."""
    proto = M.Protocol(protocol, size)
    acc = M.Accumulator()
    for s in tqdm(load_samples(data, domains, split), desc=desc, unit="img"):
        comp, real, mask = proto.inputs(read_image(s.composite), read_image(s.real), read_mask(s.mask))
        out = predict(comp, mask)
        acc.add(s.domain, proto.metrics(out[None], real[None], mask[None]), names=[s.composite.name])
    return acc


def checkpoint_predictor(ckpt, full_res: str = "transform", device: str = "cpu", protocol: str = "iharm",
                         size: int = M.EVAL_SIZE):
    """A ``predict`` function for ``score`` from a harmonizer checkpoint (:func:`model_predictor`)."""
    from common import registry
    return model_predictor(registry.load(ckpt, device, kind="harmonizer")[0], full_res, protocol, size)


def model_predictor(model, full_res: str = "transform", protocol: str = "iharm", size: int = M.EVAL_SIZE):
    """A ``predict`` function for ``score`` from a loaded harmonizer. Under ``iharm`` a network
    trained at the evaluation size returns its own output (background predicted, not pasted back),
    as the official evaluation scores it; a network of another size is brought to it by
    ``full_res``, like any image."""
    from harmonizers.fullres import harmonize
    if protocol == "iharm" and model.size == size:
        dev = next(model.parameters()).device
        return lambda image, mask: model(image[None].to(dev), mask[None].to(dev), keep_background=False)[0].clamp(0, 1).cpu()
    return lambda image, mask: harmonize(model, image, mask, method=full_res)


def evaluate_checkpoint(ckpt, data, domains="all", split: str = "test", full_res: str = "transform",
                        protocol: str = "iharm") -> dict:
    acc = score(data, checkpoint_predictor(ckpt, full_res, protocol=protocol), domains, split,
                desc=Path(ckpt).stem, protocol=protocol)
    return {"ckpt": shown(ckpt), "split": split, "size": M.EVAL_SIZE, "protocol": protocol, "summary": acc.summary()}


def dir_predictor(data, pred_dir, domains="all", split: str = "test"):
    """A ``predict`` function reading ``<pred_dir>/<composite stem>.png|.jpg`` (all checked up front)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: prediction folder not found")
    samples = load_samples(data, domains, split)
    found, missing = {}, []
    for s in samples:
        for ext in (".png", ".jpg", ".jpeg"):
            p = pred_dir / (s.composite.stem + ext)
            if p.is_file():
                found[s.composite.stem] = p
                break
        else:
            missing.append(s.composite.stem)
    if missing:
        raise InputError(f"{pred_dir}: {len(missing)} prediction(s) missing, e.g. {', '.join(missing[:5])}")
    state = {"i": 0, "stems": [s.composite.stem for s in samples]}  # score() visits samples in this order

    sizes = {s.composite.stem: image_size(s.composite) for s in samples}

    def predict(image, mask):
        """The stored result; it must have the composite's size or the size the method was given."""
        stem = state["stems"][state["i"]]
        state["i"] += 1
        out = read_image(found[stem])
        h, w = sizes[stem]
        if out.shape[-2:] not in ((h, w), tuple(image.shape[-2:])):
            raise InputError(f"{found[stem]}: prediction is {out.shape[2]}x{out.shape[1]}, "
                             f"composite is {w}x{h}")
        return out
    return predict


@shared_args
def main(data="data/mini4", pred: str | None = None, method: str = "composite", ckpt: str | None = None,
         domains="all", split: str = "test", size: int = M.EVAL_SIZE, full_res: str = "transform",
         protocol: str = "iharm", out: str | None = None, json: str | None = None, overwrite: bool = False) -> None:
    """Score predictions, a baseline or a harmonizer checkpoint against a dataset's real images.

    Args:
        pred: folder with one result per composite (named by its stem), or composite for the unharmonized ones.
        method: classical baseline to score when neither --pred nor --ckpt is given (composite, reinhard).
        ckpt: harmonizer checkpoint to run and score.
        size: evaluation size (images resized to size×size).
        full_res: how --ckpt results are brought to full resolution (transform, upsample, full).
        protocol: iharm (the official iHarmony4 evaluation: inputs resized to --size, soft mask, the
            method's own output scored, PSNR peak = the target's maximum) or fullres (ours: results
            at full resolution with the background kept, scored at --size with a binary mask).
        out: write the scores, per image and summed up, as JSON to this file.
        json: the same as --out.
    """
    out = out or json
    if pred is not None and pred in BASELINES:
        method, pred = pred, None
    if pred is not None:
        predict, method = dir_predictor(data, pred, domains, split), Path(pred).name
    elif ckpt:
        predict, method = checkpoint_predictor(ckpt, full_res, protocol=protocol, size=size), Path(ckpt).stem
    elif method in BASELINES:
        predict = BASELINES[method]
    else:
        raise InputError(f"unknown method {method!r}; choose from {sorted(BASELINES)} or pass --ckpt")
    if protocol not in M.PROTOCOLS:
        raise InputError(f"--protocol must be one of {M.PROTOCOLS}, got {protocol!r}")
    t0 = time.perf_counter()
    acc = score(data, predict, domains, split, size, desc=method, protocol=protocol)
    seconds = time.perf_counter() - t0
    summary = acc.summary()
    print(f"{method} on {data} ({split}); {M.Protocol(protocol, size).describe()}\n")
    print(M.markdown_table(summary))
    print(f"\n{len(acc.rows)} images in {seconds:.1f} s ({len(acc.rows) / max(seconds, 1e-9):.1f} images/s, this machine)")
    if out:
        res = {"method": method, "data": shown(data), "split": split, "size": size, "protocol": protocol,
               "summary": summary, "by_fg_ratio": acc.by_fg_ratio(), "images_per_second": len(acc.rows) / max(seconds, 1e-9),
               "images": acc.rows}
        write_text(jsonlib.dumps(res, indent=1), out, overwrite=overwrite)
        print(f"\nwrote {out}")


CLI = main

if __name__ == "__main__":
    run(CLI)
