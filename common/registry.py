"""One registry for every model kind, in timm's manner: each package registers its variants (created
by name with config overrides) and its loader (a checkpoint rebuilt from its file alone) under the
checkpoint ``kind`` it writes; :func:`create` and :func:`load` serve them all.

    from common import registry
    registry.create("issam64")                       # any registered variant, any kind
    registry.create("syconet_r18", n_luts=4)         # with config overrides
    model, meta = registry.load("runs/x.safetensors")  # kind and arch read from the metadata

A kind's package registers itself when it is imported; ``create`` and ``load`` import the package
that owns a kind on first use (:data:`HOMES`), so that ``common`` stays below every package. Variants
of one's own (or the test suite's tiny ones) live in any module that registers them, named in the
environment variable ``HARMONY_VARIANTS`` (comma-separated module names, imported with the homes):

    # mine.py
    from harmonizers.net import register
    register("gct", {"gct256_wide": ({"hidden": 128}, 256)})

    HARMONY_VARIANTS=mine python -m harmonizers.train --arch gct256_wide ...
"""
from __future__ import annotations

import importlib
import os
from typing import Callable

from . import checkpoint
from .io import InputError

# checkpoint kind → the module that registers it
HOMES = {"harmonizer": "harmonizers.models", "syconet": "syconet.model", "classifier": "router.classifier"}
PLUGINS = "HARMONY_VARIANTS"  # environment variable: more modules that register variants
_VARIANTS: dict[str, tuple[str, str, Callable]] = {}  # variant name → (kind, family, create(**overrides))
_LOADERS: dict[str, Callable] = {}                     # kind → load(path, device) -> (model, meta)


def register_variants(kind: str, names, create: Callable, family: str | None = None) -> None:
    """Register ``names`` of ``kind`` and ``family`` (default: the kind), each built by
    ``create(name, **overrides)``."""
    for n in names:
        _VARIANTS[n] = (kind, family or kind, create)


def register_loader(kind: str, load: Callable) -> None:
    _LOADERS[kind] = load


def _import_all() -> None:
    for mod in HOMES.values():
        importlib.import_module(mod)
    for mod in filter(None, (m.strip() for m in os.environ.get(PLUGINS, "").split(","))):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise InputError(f"{PLUGINS}={os.environ[PLUGINS]}: cannot import {mod!r} ({e})") from e


def variants(kind: str | None = None) -> list[str]:
    """Every registered variant name (of ``kind``)."""
    _import_all()
    return sorted(n for n, (k, _, _) in _VARIANTS.items() if kind in (None, k))


def _entry(name: str) -> tuple[str, str, Callable]:
    if name not in _VARIANTS:
        _import_all()
    if name not in _VARIANTS:
        raise ValueError(f"unknown model {name!r}; choose from {variants()}")
    return _VARIANTS[name]


def family(name: str) -> str:
    """The family a variant belongs to (``issam64`` → ``issam``; a name no one registered: itself)."""
    try:
        return _entry(name)[1]
    except ValueError:
        return name


def create(name: str, **overrides):
    """The variant ``name`` of whichever kind registered it, with config ``overrides``."""
    return _entry(name)[2](name, **overrides)


def load(path, device="cpu", kind: str | None = None):
    """``(model, meta)`` from any checkpoint of ours: its ``kind`` picks the loader; with ``kind``, a
    checkpoint of another kind is refused before any weight is read."""
    found = checkpoint.read_meta(path).get("kind")
    if kind is not None and found != kind:
        raise InputError(f"{path}: checkpoint is a {found!r}, expected a {kind!r}")
    if found not in HOMES:
        raise InputError(f"{path}: checkpoint kind {found!r} is not one of {sorted(HOMES)}")
    if found not in _LOADERS:
        importlib.import_module(HOMES[found])
    return _LOADERS[found](path, device)
