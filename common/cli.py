"""Thin fire CLIs: bad input exits non-zero with a one-line reason."""
from __future__ import annotations

import json
import logging
import sys

import fire

from .io import InputError


def guarded(fn):
    """``fn()``, turning :class:`InputError` (and missing or existing files) into one line on stderr
    and exit status 2. Commands that ``python -m fire`` runs directly (not through :func:`run`) call
    their work through it."""
    try:
        return fn()
    except (InputError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def run(component, name: str | None = None) -> None:
    """``fire.Fire(component)`` under :func:`guarded`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    guarded(lambda: fire.Fire(component, name=name))


# Flags that several commands share, described once (fire shows the docstring's Args in --help).
SHARED_ARGS = {
    "data": "dataset root in the iHarmony4 layout (default data/mini4: make benchmark builds it).",
    "domains": "comma-separated domain names, or all.",
    "split": "train or test.",
    "steps": "optimizer steps.",
    "batch_size": "images per step (over all processes under torchrun).",
    "lr": "learning rate (Adam, cosine decay over the run).",
    "workers": "DataLoader worker processes per training process (0: load in the main process; -1: 0 on the CPU, on a GPU one per spare core up to 8).",
    "seed": "random seed (data order, augmentation, initialisation).",
    "save_every": "write <out>.last.safetensors (weights, optimizer, step) every N steps, for resuming.",
    "val_every": "score a held-out share of the training photos every N steps and keep <out>.best (0: off).",
    "val_fraction": "share of the training photos held out when --val_every is set (never the test split).",
    "device": "auto (a GPU when there is one), cpu, cuda or cuda:N.",
    "resume": "continue from <out>.last.safetensors when it exists.",
    "overwrite": "replace existing outputs.",
    "cache": "keep decoded training images in memory (budget HARMONY_CACHE_MB, default 512 per process).",
    "amp": "bf16 autocast on CUDA.",
    "channels_last": "channels-last memory layout for the model and the image batches.",
    "compile": "torch.compile the networks (not the augmenters); pays its compile time once, for GPU runs.",
    "zoo": "model zoo folder (default models/default).",
    "size": "image size the network sees.",
}


def shared_args(fn):
    """Append the :data:`SHARED_ARGS` descriptions of ``fn``'s parameters that its docstring's Args
    section does not describe (that section must come last in the docstring)."""
    import inspect
    from fire import docstrings
    doc = inspect.cleandoc(fn.__doc__ or "")
    described = {a.name for a in (docstrings.parse(doc).args or [])}
    extra = [f"    {k}: {SHARED_ARGS[k]}" for k in inspect.signature(fn).parameters
             if k in SHARED_ARGS and k not in described]
    if extra:
        doc += ("\n" if "\nArgs:" in doc else "\n\nArgs:\n") + "\n".join(extra)
    fn.__doc__ = doc
    return fn


def names(value) -> list[str]:
    """A comma-separated CLI value (or a list/tuple, as python-fire may pass it) → stripped names."""
    items = value.split(",") if isinstance(value, str) else value
    return [str(v).strip() for v in items if str(v).strip()]


def print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=False))
