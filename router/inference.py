"""One inference path for both backends (torch: :class:`router.api.Harmonizer`, ONNX Runtime:
:class:`router.fast.FastHarmonizer`); no torch here.

A backend implements :class:`Backend`: class probabilities, the choice of a model for a mode, the
network at its size, and the step back to full resolution; the zoo's composite detector
(:mod:`router.detector`, NumPy) is the same object on both. :func:`run` scores the composite, sets the
strength from the score (the gate), and drives the backend's steps in that order
for every caller — the ``predict`` commands, the Python API, the benchmark — checks the inputs once,
and times the stages from outside (the math never sees a clock). Inputs are ``H×W×3`` and ``H×W``
float32 arrays in [0, 1] (:func:`as_arrays` turns a path, a PIL image or a uint8 array into those);
the output is a :class:`Prediction` whose image has the same type and size.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.io import InputError, check_image, check_mask

from .routing import MODES_NEEDING_PROBS


@dataclass
class Prediction:
    output: np.ndarray                      # H×W×3 float32 in [0, 1], the background untouched
    domain: str                             # the chosen domain (the most likely one for soft)
    model: str                              # the model that ran: a domain, "unified" or "soft"
    probabilities: dict[str, float] | None  # the classifier's, for the modes that consult it
    seconds: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] | None = None  # soft mode: each domain model's share of the blend
    mode: str = ""                          # the mode that ran (the zoo's default when none was asked)
    score: float | None = None              # the detector's P(composite); None when the zoo has no detector
    gate: float | None = None               # the share of the change the gate let through (None: gate off)


class Backend(Protocol):
    domains: list[str]
    default_mode: str   # the zoo's (zoo.json "mode"): what runs when no mode is asked for
    detector: Any       # the zoo's router.detector.Detector, or None (loaded on first use)

    def warm(self, network: str) -> None:
        """Load one network up front (``classifier``, ``unified`` or ``domain:D``; one the zoo does
        not have is left for the step that needs it to report)."""

    def probabilities(self, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Domain → probability for a checked image and mask."""

    def select(self, mode: str, probs: dict | None) -> tuple[str, Any, dict[str, float]]:
        """(model name, what :meth:`network` runs, {member: weight}) by :func:`router.routing.choose`."""

    def network(self, member: Any, image: np.ndarray, mask: np.ndarray, strength: float) -> Any:
        """The chosen network at its size, its change scaled by ``strength``."""

    def full_resolution(self, small: Any, inplace: bool = False) -> np.ndarray:
        """:meth:`network`'s result (which holds the full-size image and mask it was given) carried to
        the input's size: ``H×W×3`` float32 (with ``inplace`` the backend may write it into the image)."""


def resolve_mode(backend: Backend, mode: str | None) -> str:
    """The mode that runs: the one asked for, else the zoo's default."""
    return mode or backend.default_mode


def networks_for(mode: str) -> list[str]:
    """What a mode needs before its first image: the classifier for the modes that consult it (their
    harmonizers load once the probabilities choose them), else the one harmonizer it names."""
    if mode in MODES_NEEDING_PROBS:
        return ["classifier"]
    if mode == "unified":
        return ["unified"]
    return [f"domain:{mode[7:]}"] if mode.startswith("oracle:") else []


def load(backend: Backend, mode: str | None = None) -> None:
    """Load what ``mode`` (default: the zoo's) needs up front, the detector included, so that the
    stage timings hold no loading."""
    backend.detector  # noqa: B018
    for name in networks_for(resolve_mode(backend, mode)):
        backend.warm(name)


class Stopwatch:
    """Seconds per named stage: ``with watch("classify"): ...``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def as_arrays(image, mask) -> tuple[np.ndarray, np.ndarray, str, tuple[str, str]]:
    """(image ``H×W×3`` float32, mask ``H×W`` float32, the input's kind, names for messages) from
    paths, PIL images or numpy arrays (uint8, uint16 or float in [0, 1])."""
    from PIL import Image, ImageOps

    from common.io import read_image_array, read_mask_array

    def one(x, is_mask):
        if isinstance(x, (str, Path)):
            return (read_mask_array(x) if is_mask else read_image_array(x)), "path", str(x)
        if isinstance(x, Image.Image):
            x = ImageOps.exif_transpose(x)
            if is_mask:
                x = x.getchannel("A") if x.mode in ("RGBA", "LA") else x.convert("L")
            else:
                x = x.convert("RGB")
            return np.asarray(x, dtype=np.float32) / 255, "pil", "mask" if is_mask else "image"
        if isinstance(x, np.ndarray):
            scale = 255.0 if x.dtype == np.uint8 else 65535.0 if x.dtype == np.uint16 else 1.0
            a = x.astype(np.float32) / scale
            if is_mask:
                a = a if a.ndim == 2 else a[..., 0]
            elif a.ndim == 2:
                a = np.repeat(a[..., None], 3, 2)
            else:
                a = a[..., :3]
            return np.ascontiguousarray(a), "numpy", "mask" if is_mask else "image"
        raise InputError(f"unsupported input type {type(x).__name__} (use a path, PIL image, numpy array or tensor)")

    img, kind, img_name = one(image, False)
    m, _, m_name = one(mask, True)
    return img, m, kind, (img_name, m_name)


def like(out: np.ndarray, kind: str, dtype=None):
    """``H×W×3`` float32 → the type the input had: numpy of the input's dtype (uint8 and uint16
    rounded, float as is), a PIL image for PIL images and paths."""
    if kind == "numpy" and dtype is not None and np.issubdtype(dtype, np.floating):
        return out.astype(dtype)
    top = 65535 if kind == "numpy" and dtype == np.uint16 else 255
    arr = np.rint(np.clip(out, 0, 1) * top).astype(np.uint16 if top == 65535 else np.uint8)
    if kind == "numpy":
        return arr
    from PIL import Image
    return Image.fromarray(arr)


def checked(image: np.ndarray, mask: np.ndarray, names: tuple[str, str] = ("image", "mask")
            ) -> tuple[np.ndarray, np.ndarray]:
    """The image and the mask clipped to [0, 1], or an :class:`InputError` naming the file (``names``):
    sizes that differ, a mask without foreground or background, an image that is a mask."""
    if image.shape[:2] != mask.shape:
        raise InputError(f"{names[1]}: mask is {mask.shape[1]}x{mask.shape[0]} but image is "
                         f"{image.shape[1]}x{image.shape[0]}")
    check_mask(mask, names[1])
    check_image(image, names[0])
    return image, np.clip(mask, 0, 1)


def load_detector(path):
    """The zoo's detector (``zoo.json`` ``"detector"``), or ``None`` when it names none."""
    if path is None:
        return None
    from .detector import Detector
    return Detector.load(path)


def run(backend: Backend, image: np.ndarray, mask: np.ndarray, mode: str | None = None, strength: float = 1.0,
        names: tuple[str, str] = ("image", "mask"), inplace: bool = False, gate: bool = True) -> Prediction:
    """Harmonize ``image`` with ``mask`` on ``backend`` in ``mode`` (``None``: the zoo's default
    mode). When the zoo has a detector, its score is reported and, with ``gate``, its gate scales the
    change: ``strength × gate(score)`` (0 for what looks like a real photo, 1 for a clear composite);
    ``gate=False`` applies ``strength`` alone. ``strength`` is checked by the caller
    (:func:`common.io.check_strength`); the inputs here (:func:`checked`). ``inplace``: the caller
    owns ``image`` and lets the result overwrite it (no copy of a large photo)."""
    image, mask = checked(image, mask, names)
    mode = resolve_mode(backend, mode)
    watch = Stopwatch()
    score = share = None
    if backend.detector is not None:
        with watch("score"):
            score = backend.detector.score(image, mask)
        share = backend.detector.strength(score) if gate else None
    with watch("classify"):
        probs = backend.probabilities(image, mask) if mode in MODES_NEEDING_PROBS else None
    name, member, weights = backend.select(mode, probs)
    applied = strength * (1.0 if share is None else share)
    if applied == 0.0:  # nothing to apply: the input as it is
        out = image if inplace else image.copy()
    else:
        with watch("harmonize"):
            small = backend.network(member, image, mask, applied)
        with watch("full_res"):
            out = backend.full_resolution(small, inplace)
    soft = name == "soft"
    return Prediction(out, max(probs, key=probs.get) if soft else name, name, probs, watch.seconds,
                      dict(weights) if soft else None, mode, score, share)


def score(detector, image: np.ndarray, mask: np.ndarray, names: tuple[str, str] = ("image", "mask"),
          zoo="this zoo") -> float:
    """``detector``'s P(composite) for the pair, checked first (:func:`checked`); an
    :class:`InputError` naming ``zoo`` when it has no detector (``None``)."""
    image, mask = checked(image, mask, names)
    return required(detector, zoo).score(image, mask)


def required(detector, zoo="this zoo"):
    """``detector``, or the :class:`InputError` that names ``zoo`` as having none."""
    if detector is None:
        raise InputError(f"{zoo}: has no composite detector (router.zoo build --detector PATH)")
    return detector
