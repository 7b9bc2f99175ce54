"""One registry for every model kind, in timm's manner: each package registers its variants (created
by name with config overrides) and its loader (a checkpoint rebuilt from its file alone) under the
checkpoint ``kind`` it writes; :func:`create` and :func:`load` serve them all.

    from common import registry
    registry.create("issam64")                       # any registered variant, any kind
    registry.create("syconet_test", n_luts=4)        # with config overrides
    model, meta = registry.load("runs/x.safetensors")  # kind and arch read from the metadata

A kind's package registers itself when it is imported; ``create`` and ``load`` import the package
that owns a kind on first use (:data:`HOMES`), so that ``common`` stays below every package.
"""
from __future__ import annotations

import importlib
from typing import Callable

from . import checkpoint
from .io import InputError

# checkpoint kind → the module that registers it
HOMES = {"harmonizer": "harmonizers.models", "syconet": "syconet.model", "classifier": "router.classifier"}
_VARIANTS: dict[str, tuple[str, Callable]] = {}   # variant name → (kind, create(**overrides))
_LOADERS: dict[str, Callable] = {}                # kind → load(path, device) -> (model, meta)


def register_variants(kind: str, names, create: Callable) -> None:
    """Register ``names`` of ``kind``, each built by ``create(name, **overrides)``."""
    for n in names:
        _VARIANTS[n] = (kind, create)


def register_loader(kind: str, load: Callable) -> None:
    _LOADERS[kind] = load


def _import_all() -> None:
    for mod in HOMES.values():
        importlib.import_module(mod)


def variants(kind: str | None = None) -> list[str]:
    """Every registered variant name (of ``kind``)."""
    _import_all()
    return sorted(n for n, (k, _) in _VARIANTS.items() if kind in (None, k))


def create(name: str, **overrides):
    """The variant ``name`` of whichever kind registered it, with config ``overrides``."""
    if name not in _VARIANTS:
        _import_all()
    if name not in _VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose from {variants()}")
    kind, fn = _VARIANTS[name]
    return fn(name, **overrides)


def load(path, device="cpu"):
    """``(model, meta)`` from any checkpoint of ours: its ``kind`` picks the loader."""
    kind = checkpoint.read_meta(path).get("kind")
    if kind not in HOMES:
        raise InputError(f"{path}: checkpoint kind {kind!r} is not one of {sorted(HOMES)}")
    if kind not in _LOADERS:
        importlib.import_module(HOMES[kind])
    return _LOADERS[kind](path, device)
