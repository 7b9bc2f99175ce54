"""Self-describing checkpoints: safetensors weights + a JSON config in the metadata.

Metadata key ``config`` holds JSON with at least ``kind`` (``syconet``, ``harmonizer``,
``classifier``), ``arch``, the constructor ``config``, the ``domains``, the training data's
``data_fingerprint`` and the package ``version``. Loading checks ``kind`` before touching weights.
Nothing is ever unpickled. Writes are atomic. Reading the metadata does not import torch (the
ONNX Runtime predict path checks a zoo without it).
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from . import __version__
from .io import InputError, atomic_write

KINDS = ("syconet", "harmonizer", "classifier")


def save(path, tensors: dict[str, torch.Tensor], meta: dict, overwrite: bool = True) -> Path:
    """Save ``tensors`` with ``meta`` (must hold ``kind`` and ``arch``) atomically."""
    if meta.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {meta.get('kind')!r}")
    from safetensors.torch import save_file
    meta = {"version": __version__, **meta}
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(flat, tmp, metadata={"config": json.dumps(meta)}),
                        overwrite=overwrite)


def read_meta(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata() or {}
    except Exception as e:
        raise InputError(f"{path}: not a safetensors checkpoint ({e})") from None
    if "config" not in md:
        raise InputError(f"{path}: safetensors file has no 'config' metadata (not one of ours)")
    try:
        meta = json.loads(md["config"])
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: its 'config' metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: its 'config' metadata is not a JSON object")
    return meta


def load(path, kind: str | None = None, device="cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Return ``(tensors, meta)``; refuse a checkpoint of another ``kind`` before loading weights."""
    meta = read_meta(path)
    if kind is not None and meta.get("kind") != kind:
        raise InputError(f"{path}: checkpoint is a {meta.get('kind')!r}, expected a {kind!r}")
    tensors = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:  # callers resolve the device
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix.`` with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}
