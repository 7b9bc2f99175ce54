"""The user's front door: classify a composite's domain and harmonize it with that domain's model.

    from router import Harmonizer
    h = Harmonizer.from_zoo()                      # models/default, or from_zoo("my_zoo/")
    out = h("composite.jpg", "mask.png")           # path in → PIL image out
    out = h(pil_image, pil_mask, mode="unified")   # PIL in → PIL out
    out = h(array_uint8, mask_array)               # H×W×3 uint8 numpy in → same out
    out = h(tensor_3hw, tensor_1hw, mode="oracle:MiniFlickr")   # float tensor in → float tensor out
    h.classify(image, mask)                        # {"MiniCOCO": 0.91, ...}
    h.score(image, mask)                           # 0.87: P(the masked region was pasted in), the gate's input
    out = h(image, mask, gate=False)               # the harmonizer's whole change, whatever the score
    r = h.run(image, mask, mode="soft")            # router.inference.Prediction: output, domain, model,
                                                   # probabilities, seconds, weights

``mode``: ``routed`` (the classifier picks the domain's harmonizer), ``soft`` (every domain's
harmonizer, their outputs averaged with the classifier's probabilities as weights), ``unified`` (one
model for all domains), ``oracle:DOMAIN`` (the named domain's harmonizer); by default the zoo's
(``zoo.json`` ``"mode"``; ``soft`` for the shipped zoo).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common.io import InputError, check_strength

from . import inference, routing


def _arrays(image, mask) -> tuple[np.ndarray, np.ndarray, str, tuple[str, str]]:
    """:func:`router.inference.as_arrays`, and float tensors (``3×H×W``, ``1×H×W`` or ``H×W``) too."""
    kind = None
    if torch.is_tensor(image):
        t = image.detach().float().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise InputError(f"image tensor must be 3×H×W, got {tuple(t.shape)}")
        image, kind = np.ascontiguousarray(t.permute(1, 2, 0).numpy()), "tensor"
    if torch.is_tensor(mask):
        t = mask.detach().float().cpu()
        mask = np.ascontiguousarray((t[0] if t.ndim == 3 else t).numpy())
    img, m, k, names = inference.as_arrays(image, mask)
    return img, m, kind or k, names


def _like(out: np.ndarray, kind: str, dtype=None):
    """:func:`router.inference.like`, and a ``3×H×W`` tensor for tensors."""
    return torch.from_numpy(out).permute(2, 0, 1) if kind == "tensor" else inference.like(out, kind, dtype)


def _tensors(image, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """``3×H×W`` and ``1×H×W`` float tensors from arrays (``H×W×3``, ``H×W``) or tensors."""
    x = image if torch.is_tensor(image) else torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    m = mask if torch.is_tensor(mask) else torch.from_numpy(np.ascontiguousarray(mask))
    return x.float(), m.float().reshape(1, *x.shape[-2:])


class Blend(nn.Module):
    """``Σ_d w_d·G_d(x, m)``: harmonizers of one training size averaged with weights (soft routing).

    Squared error is convex in the output, so at the network's size the blend's error is never
    above the weighted mean of the members' errors: an unsure router costs less blended than when
    it commits to one wrong model."""

    def __init__(self, models: dict, weights: dict[str, float]):
        super().__init__()
        self.size = next(iter(models.values())).size  # one size: router.routing.choose checks
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
    """Classifier + per-domain harmonizers + unified harmonizer, loaded from a zoo folder; the torch
    :class:`router.inference.Backend`."""

    def __init__(self, manifest: dict, device="cpu"):
        from common.device import resolve
        from common import registry
        self.device = resolve(device)
        self.manifest = manifest
        t0 = time.perf_counter()
        self._classifier = None  # loaded on first use: unified and oracle modes never import timm
        self._detector = None
        self.domains = list(manifest["classifier_domains"])
        self.default_mode = manifest["mode"]
        loader = lambda p: registry.load(p, self.device, kind="harmonizer")[0]  # noqa: E731
        self.models = _Lazy(manifest["domains"], loader)
        self._unified = _Lazy({"unified": manifest["unified"]} if manifest["unified"] else {}, loader)
        self.load_seconds = time.perf_counter() - t0

    @property
    def classifier(self):
        if self._classifier is None:
            from common import registry
            self._classifier, _ = registry.load(self.manifest["classifier"], self.device, kind="classifier")
        return self._classifier

    @property
    def detector(self):
        """The zoo's composite detector (:class:`router.detector.Detector`), or ``None``."""
        if self._detector is None and self.manifest.get("detector"):
            self._detector = inference.load_detector(self.manifest["detector"])
        return self._detector

    @property
    def unified(self):
        return self._unified.get("unified")

    @classmethod
    def from_zoo(cls, zoo=None, device="cpu") -> "Harmonizer":
        from .zoo import read  # lazy: `python -m router.zoo` must not import itself twice
        return cls(read(zoo), device)

    def load(self, mode: str | None = None) -> None:
        """Load what a mode (default: the zoo's) needs up front (so that timings separate loading)."""
        inference.load(self, mode)

    def warm(self, network: str) -> None:
        if network == "classifier":
            self.classifier  # noqa: B018
        elif network == "unified":
            self.unified  # noqa: B018
        elif network.startswith("domain:"):
            self.models.get(network[7:])

    # ---- the Backend interface (router.inference); tensors are accepted too ------------------

    @torch.inference_mode()
    def probabilities(self, image, mask) -> dict[str, float]:
        """Class probabilities of a checked image and mask in [0, 1]: arrays (``H×W×3``, ``H×W``)
        or tensors (``3×H×W``, ``1×H×W``); ``classify`` takes files and PIL images too."""
        x, m = _tensors(image, mask)
        p = self.classifier.probabilities(x[None].to(self.device), m[None].to(self.device))[0]
        return {d: float(v) for d, v in zip(self.domains, p.cpu())}

    def select(self, mode: str, probs: dict | None) -> tuple[str, nn.Module, dict[str, float]]:
        """(model name, harmonizer, weights) for a mode (rules: :func:`router.routing.choose`);
        ``soft`` gives a :class:`Blend`."""
        name, weights = routing.choose(mode, probs, self.manifest["sizes"], bool(self._unified))
        if name == "soft":
            return name, Blend({d: self.models[d] for d in weights}, weights), weights
        return name, self.unified if name == "unified" else self.models[name], weights

    def network(self, member, image, mask, strength: float) -> dict:
        from harmonizers.fullres import network_pass
        return network_pass(member, *_tensors(image, mask), strength)

    def full_resolution(self, small: dict, inplace: bool = False) -> np.ndarray:
        from harmonizers.fullres import to_full_resolution
        return np.ascontiguousarray(to_full_resolution(small).permute(1, 2, 0).numpy())

    # ---- the Python API ------------------------------------------------------------------------

    def classify(self, image, mask) -> dict[str, float]:
        """Class probabilities: domain name → probability (any input :meth:`run` takes)."""
        img, m, _, names = _arrays(image, mask)
        return self.probabilities(*inference.checked(img, m, names))

    def score(self, image, mask) -> float:
        """The detector's probability that the masked region was pasted in or recoloured (any input
        :meth:`run` takes); an :class:`common.io.InputError` when the zoo has no detector."""
        img, m, _, names = _arrays(image, mask)
        return inference.score(self.detector, img, m, names, self.manifest["root"])

    def run(self, image, mask, mode: str | None = None, strength: float = 1.0, gate: bool = True) -> inference.Prediction:
        """Harmonize in ``mode`` (default: the zoo's, ``self.default_mode``): a
        :class:`router.inference.Prediction` whose ``output`` has the input's type
        (path → PIL image, PIL → PIL, numpy → numpy of the same dtype, tensor → ``3×H×W`` tensor).
        ``strength`` scales the change (:func:`harmonizers.fullres.harmonize`); with ``gate`` (and a
        zoo with a detector) it is multiplied by the gate's share for the detector's score."""
        strength = check_strength(strength)
        img, m, kind, names = _arrays(image, mask)
        r = inference.run(self, img, m, mode, strength, names, gate=gate)
        r.output = _like(r.output, kind, getattr(image, "dtype", None))
        return r

    def __call__(self, image, mask, mode: str | None = None, strength: float = 1.0, gate: bool = True):
        """Harmonize; returns the image alone, in the type it was given (path → PIL image)."""
        return self.run(image, mask, mode, strength, gate).output
