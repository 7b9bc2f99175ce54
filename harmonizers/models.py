"""Harmonizer networks: every family registered (each in its own module, through
:func:`harmonizers.net.register`) and their checkpoints loaded (full-resolution inference is
:mod:`harmonizers.fullres`). Build and load through :mod:`common.registry`:

    registry.create("gct64")                                   # a variant, by name
    model, meta = registry.load(path, device, kind="harmonizer")  # a checkpoint, from its file alone
"""
from __future__ import annotations

from common import checkpoint, registry
from common.device import resolve as resolve_device

from . import dih, gct, issam, rainnet  # noqa: F401 - each registers its family and variants
from .net import ARCHS, VARIANTS, HarmonizerNet, create, from_meta, from_state, meta  # noqa: F401


def load(path, device="cpu") -> tuple[HarmonizerNet, dict]:
    device = resolve_device(device)
    tensors, m = checkpoint.load(path, kind="harmonizer", device=device)
    return from_state(tensors, m).to(device), m


registry.register_loader("harmonizer", load)
