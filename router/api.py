"""The user's front door: classify a composite's domain and harmonize it with that domain's model.

    from router import Harmonizer
    h = Harmonizer.from_zoo()                      # models/default, or from_zoo("my_zoo/")
    out = h("composite.jpg", "mask.png")           # path in → PIL image out
    out = h(pil_image, pil_mask, mode="unified")   # PIL in → PIL out
    out = h(array_uint8, mask_array)               # H×W×3 uint8 numpy in → same out
    out = h(tensor_3hw, tensor_1hw, mode="oracle:MiniFlickr")   # float tensor in → float tensor out
    h.classify(image, mask)                        # {"MiniCOCO": 0.91, ...}

``mode``: ``routed`` (the classifier picks the domain's harmonizer), ``soft`` (every domain's
harmonizer, their outputs averaged with the classifier's probabilities as weights), ``unified`` (one
model for all domains), ``oracle:DOMAIN`` (the named domain's harmonizer).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from common.io import InputError, check_image, check_mask, check_strength, read_image, read_mask, to_uint8

from . import routing


def _as_tensor(x, is_mask: bool) -> tuple[torch.Tensor, str]:
    """Any accepted input → (float tensor C×H×W in [0,1], kind)."""
    if isinstance(x, (str, Path)):
        return (read_mask(x) if is_mask else read_image(x)), "path"
    if isinstance(x, Image.Image):
        x = ImageOps.exif_transpose(x)
        if is_mask:
            x = x.getchannel("A") if x.mode in ("RGBA", "LA") else x.convert("L")
            return torch.from_numpy(np.asarray(x, dtype=np.float32) / 255)[None], "pil"
        return torch.from_numpy(np.asarray(x.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1), "pil"
    if isinstance(x, np.ndarray):
        a = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 65535.0 if x.dtype == np.uint16 else 1.0)
        if is_mask:
            a = a if a.ndim == 2 else a[..., 0]
            return torch.from_numpy(np.ascontiguousarray(a))[None], "numpy"
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, 2)
        return torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1), "numpy"
    if torch.is_tensor(x):
        t = x.detach().float().cpu()
        if is_mask and t.ndim == 2:
            t = t[None]
        if not is_mask and (t.ndim != 3 or t.shape[0] != 3):
            raise InputError(f"image tensor must be 3×H×W, got {tuple(t.shape)}")
        return t, "tensor"
    raise InputError(f"unsupported input type {type(x).__name__} (use a path, PIL image, numpy array or tensor)")


def _like(out: torch.Tensor, kind: str, dtype=None):
    if kind == "tensor":
        return out
    arr = to_uint8(out)
    if kind == "numpy":
        return arr if dtype in (None, np.uint8) else out.permute(1, 2, 0).numpy().astype(dtype)
    return Image.fromarray(arr)


class Blend(nn.Module):
    """``Σ_d w_d·G_d(x, m)``: harmonizers of one training size averaged with weights (soft routing).

    Squared error is convex in the output, so at the network's size the blend's error is never
    above the weighted mean of the members' errors: an unsure router costs less blended than when
    it commits to one wrong model."""

    def __init__(self, models: dict, weights: dict[str, float]):
        super().__init__()
        self.size = routing.one_size(m.size for m in models.values())
        self.parts = nn.ModuleDict(models)
        self.weights = {d: float(w) for d, w in weights.items()}

    def forward(self, image, mask):
        return sum(w * self.parts[d](image, mask) for d, w in self.weights.items())


class _Lazy(dict):
    """Domain → harmonizer, each loaded on first use: a routed call needs only one of them."""

    def __init__(self, paths: dict, loader):
        super().__init__()
        self.paths, self.loader = dict(paths), loader

    def __contains__(self, d):
        return d in self.paths

    def __iter__(self):
        return iter(self.paths)

    def __len__(self):
        return len(self.paths)

    def keys(self):
        return self.paths.keys()

    def __getitem__(self, d):
        if not dict.__contains__(self, d):
            dict.__setitem__(self, d, self.loader(self.paths[d]))
        return dict.__getitem__(self, d)

    def get(self, d, default=None):
        return self[d] if d in self.paths else default


class Harmonizer:
    """Classifier + per-domain harmonizers + unified harmonizer, loaded from a zoo folder."""

    def __init__(self, manifest: dict, device="cpu"):
        from common.device import resolve
        from harmonizers.models import load as load_h
        self.device = resolve(device)
        self.manifest = manifest
        t0 = time.perf_counter()
        self._classifier = None  # loaded on first use: unified and oracle modes never import timm
        self.domains = list(manifest["classifier_domains"])
        loader = lambda p: load_h(p, device=self.device)[0]  # noqa: E731
        self.models = _Lazy(manifest["domains"], loader)
        self._unified = _Lazy({"unified": manifest["unified"]} if manifest["unified"] else {}, loader)
        self.load_seconds = time.perf_counter() - t0

    @property
    def classifier(self):
        if self._classifier is None:
            from .classifier import load as load_c
            self._classifier, _ = load_c(self.manifest["classifier"], device=self.device)
        return self._classifier

    @property
    def unified(self):
        return self._unified.get("unified")

    @classmethod
    def from_zoo(cls, zoo=None, device="cpu") -> "Harmonizer":
        from .zoo import read  # lazy: `python -m router.zoo` must not import itself twice
        return cls(read(zoo), device)

    def _prepare(self, image, mask):
        img, kind = _as_tensor(image, False)
        m, _ = _as_tensor(mask, True)
        if img.shape[1:] != m.shape[1:]:
            raise InputError(f"mask is {m.shape[2]}x{m.shape[1]} but image is {img.shape[2]}x{img.shape[1]}")
        check_mask(m, str(mask) if kind == "path" else "mask")
        check_image(img, str(image) if kind == "path" else "image")
        return img, m.clamp(0, 1), kind

    @torch.inference_mode()
    def probabilities(self, img, m) -> dict[str, float]:
        """Class probabilities of a checked ``3×H×W`` image and ``1×H×W`` mask in [0, 1] (``classify``
        takes files and arrays too)."""
        p = self.classifier.probabilities(img[None].to(self.device), m[None].to(self.device))[0]
        return {d: float(v) for d, v in zip(self.domains, p.cpu())}

    def classify(self, image, mask) -> dict[str, float]:
        """Class probabilities: domain name → probability."""
        img, m, _ = self._prepare(image, mask)
        return self.probabilities(img, m)

    def choose(self, mode: str, probs: dict | None) -> tuple[str, object]:
        """(model name, harmonizer) for a mode (rules: :func:`router.routing.choose`); ``soft``
        gives a :class:`Blend`."""
        name, weights = routing.choose(mode, probs, self.models, bool(self._unified))
        if name == "soft":
            return name, Blend({d: self.models[d] for d in weights}, weights)
        return name, self.unified if name == "unified" else self.models[name]

    def run(self, image, mask, mode: str = "routed", strength: float = 1.0) -> dict:
        """Harmonize and return a dict: ``output`` (tensor), ``domain``, ``probabilities``, ``model``,
        ``seconds`` per stage, and the input ``kind``. ``strength`` scales the change
        (:func:`harmonizers.models.harmonize`)."""
        from harmonizers.models import harmonize
        strength = check_strength(strength)
        img, m, kind = self._prepare(image, mask)
        t = {}
        t0 = time.perf_counter()
        probs = self.probabilities(img, m) if mode in routing.MODES_NEEDING_PROBS else None
        t["classify"] = time.perf_counter() - t0
        name, model = self.choose(mode, probs)
        out = harmonize(model, img, m, timings=t, strength=strength)
        res = {"output": out, "domain": name, "probabilities": probs, "model": name, "seconds": t, "kind": kind}
        if isinstance(model, Blend):
            res["domain"] = max(probs, key=probs.get)
            res["weights"] = dict(model.weights)
        return res

    def __call__(self, image, mask, mode: str = "routed", strength: float = 1.0):
        """Harmonize; returns the kind it was given (path → PIL image)."""
        r = self.run(image, mask, mode, strength)
        return _like(r["output"], r["kind"], getattr(image, "dtype", None))
