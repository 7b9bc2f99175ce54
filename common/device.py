"""One place that turns a ``--device`` value into a ``torch.device``, or a one-line InputError.

    resolve("auto")   # cuda:LOCAL_RANK when a GPU is there, else cpu
    resolve("cuda")   # this process's GPU (torchrun's LOCAL_RANK); InputError when there is none
    resolve("tpu")    # InputError: unknown device
"""
from __future__ import annotations

import torch

from .io import InputError

_HINT = "use auto, cpu, cuda or cuda:N"


def resolve(name="auto", local_rank: int = 0) -> torch.device:
    """``auto`` → the first usable accelerator, else the CPU; anything else is checked for existence
    here so that a missing GPU is one line (exit 2 in a CLI), not a traceback from deep inside."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name).strip()
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {name!r}: unknown device ({_HINT})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA GPU is usable on this machine "
                             "(torch.cuda.is_available() is False); use --device cpu or auto")
        if dev.index is None:  # "cuda": this process's GPU under torchrun
            dev = torch.device("cuda", local_rank)
        if dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
        return dev
    raise InputError(f"--device {name!r}: not supported here ({_HINT})")
