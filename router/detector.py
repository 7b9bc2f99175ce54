"""The composite detector: the probability that an image's masked region was pasted in or recoloured.

    from router.detector import Detector
    det = Detector.load("models/default/detector.safetensors")
    p = det.score(image_hw3, mask_hw)         # float in [0, 1]
    s = det.strength(p)                        # the default mode's share of the harmonizer's change

Whether to act is a different question from how: a harmonizer held to leave real photos alone has to
keep every change small, because on its own it cannot tell a photo from a composite. This detector
answers the first question so that the harmonizer can answer the second at full strength.

It reads *relations* between the masked region and the rest of the picture, never absolute colours
or what the picture shows (so it cannot learn a training photo by its content), in the spirit of
Lalonde & Efros's colour compatibility (ICCV 2007) and of DoveNet's foreground/background domain
verification: CIELAB quantiles of the foreground against the background, the same across the mask's
edge (thin rings on both sides), the seam (gradient across the edge against gradients nearby) and
texture, noise and sharpness of the two sides; and, in a detector trained with ``--style``, the
same comparison in the early feature maps of an ImageNet network (:mod:`router.style`: camera,
processing and texture, in the spirit of DoveNet's domain verification). Gradient-boosted trees
map them to a probability. Everything here is NumPy (no torch), so the ONNX Runtime predict path
and the torch one share it; it works at a fixed working size (long side 256) whatever the input's
resolution.

The checkpoint is a safetensors file (``kind: detector``) whose metadata holds the feature version,
the trees' bias, the style network's layout (its weights are tensors of the file) and the gate (score → strength map, calibrated on
held-out *training* photos and composites).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.colour import rgb_to_lab

WORK_SIDE = 256        # features are computed with the long side at this many pixels
RINGS = (2, 6)          # widths (working pixels) of the rings on both sides of the mask's edge
QUANTILES = (5, 25, 50, 75, 95)
FEATURES_VERSION = 1
_SCALE = np.array([1 / 10, 1 / 10, 1 / 10], np.float32)   # CIELAB differences → about unit size


# ---- features ----------------------------------------------------------------------------------

def _working(image: np.ndarray, mask: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask with the long side at ``side`` (area resampling; never enlarged). A large
    input is first thinned to every k-th pixel (k = long side // 2·side), so that a 12-megapixel
    photo costs what a small one does; what is left is averaged by area."""
    h, w = mask.shape
    if max(h, w) <= side:
        return image.astype(np.float32, copy=False), mask.astype(np.float32, copy=False)
    k = max(h, w) // (2 * side)
    if k > 1:
        image, mask = image[k // 2::k, k // 2::k], mask[k // 2::k, k // 2::k]
    h, w = mask.shape
    return area_resize(image, mask, (max(3, round(w * side / max(h, w))), max(3, round(h * side / max(h, w)))))


def area_resize(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An ``H×W×3`` image (through 8 bits) and its ``H×W`` mask resized to ``size`` (width, height)
    by area averaging (Pillow's box filter)."""
    from PIL import Image
    img = Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)).resize(size, Image.BOX)
    return np.asarray(img, np.float32) / 255, area_mask(mask, size)


def area_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``H×W`` mask resized to ``size`` (width, height) by area averaging (Pillow's box filter)."""
    from PIL import Image
    return np.asarray(Image.fromarray(np.clip(mask, 0, 1).astype(np.float32), "F").resize(size, Image.BOX), np.float32)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)² window around each pixel (edges clamped), by integral image."""
    p = np.pad(x, r, mode="edge").astype(np.float64)
    c = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * r + 1
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (s / (k * k)).astype(np.float32)


def _q(v: np.ndarray, qs=QUANTILES) -> np.ndarray:
    return np.percentile(v, qs, axis=0) if len(v) else np.zeros((len(qs), v.shape[-1]), np.float32)


def _std(v: np.ndarray) -> np.ndarray:
    return v.std(0) if len(v) > 1 else np.zeros(v.shape[-1], np.float32)


def _logratio(a, b, eps: float = 0.5) -> np.ndarray:
    return np.log((np.asarray(a) + eps) / (np.asarray(b) + eps))


def _mean(v: np.ndarray, sel: np.ndarray) -> float:
    return float(v[sel].mean()) if sel.any() else 0.0


def feature_names() -> list[str]:
    ch = ("L", "a", "b")
    names = [f"fg-bg q{q} {c}" for q in QUANTILES for c in ch] + [f"fg/bg std {c}" for c in ch]
    for r in RINGS:
        names += [f"ring{r} mean {c}" for c in ch] + [f"ring{r} q10 {c}" for c in ch]
        names += [f"ring{r} q90 {c}" for c in ch] + [f"ring{r} std {c}" for c in ch]
    names += [f"seam {c}" for c in ch] + ["fg/bg gradient", "fg/bg laplacian", "fg/bg fine noise",
                                          "ring gradient in/out", "fg/bg chroma", "fg-bg chroma q50",
                                          "fg/bg L range"]
    names += [f"{k} {c}" for k in ("white patch", "grey world", "shadows") for c in ("a", "b")]
    return names


def features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Relational statistics of an ``H×W×3`` image in [0, 1] and its ``H×W`` mask in [0, 1]:
    a float32 vector of ``len(feature_names())``. The mask is thresholded at 0.5 at the working size;
    a side with no pixels there gives zeros for what it would have measured."""
    return _relations(*_working(image, mask))


def _relations(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """:func:`features` of an image and mask already at the working size (:func:`_working`)."""
    if min(m.shape) < 3:                                         # a sliver: edge-padded to 3 pixels
        pad = [(0, max(0, 3 - m.shape[0])), (0, max(0, 3 - m.shape[1]))]
        img, m = np.pad(img, pad + [(0, 0)], mode="edge"), np.pad(m, pad, mode="edge")
    lab = rgb_to_lab(img).astype(np.float32)                     # (h, w, 3)
    fg = m > 0.5
    if fg.all() or not fg.any():                                 # degenerate at the working size
        fg = m >= np.median(m)
    bg = ~fg
    F, B = lab[fg], lab[bg]
    out = [((_q(F) - _q(B)) * _SCALE).ravel(), _logratio(_std(F), _std(B))]
    f32 = fg.astype(np.float32)
    for r in RINGS:
        near = _box(f32, r)
        inner, outer = fg & (near < 1 - 1e-6), bg & (near > 1e-6)
        I, O = lab[inner], lab[outer]
        out += [(I.mean(0) - O.mean(0)) * _SCALE if len(I) and len(O) else np.zeros(3, np.float32),
                ((_q(I, (10,)) - _q(O, (10,))) * _SCALE).ravel(), ((_q(I, (90,)) - _q(O, (90,))) * _SCALE).ravel(),
                _logratio(_std(I), _std(O))]
    # the seam: how strong the change across the edge is against the changes just beside it
    gy, gx = np.gradient(lab, axis=(0, 1))
    grad = np.sqrt(gx ** 2 + gy ** 2)                            # (h, w, 3)
    near1, near6 = _box(f32, 1), _box(f32, RINGS[-1])
    edge = (near1 > 1e-6) & (near1 < 1 - 1e-6)
    beside = (near6 > 1e-6) & (near6 < 1 - 1e-6) & ~edge
    out.append(np.array([_logratio(_mean(grad[..., c], edge), _mean(grad[..., c], beside)) for c in range(3)]))
    L = lab[..., 0]
    lap = np.abs(4 * L - np.roll(L, 1, 0) - np.roll(L, -1, 0) - np.roll(L, 1, 1) - np.roll(L, -1, 1))
    fine = np.abs(L - _box(L, 1))                                 # noise and JPEG grain
    inner6, outer6 = fg & (near6 < 1 - 1e-6), bg & (near6 > 1e-6)
    chroma = np.sqrt(lab[..., 1] ** 2 + lab[..., 2] ** 2)
    lq = _q(L[fg][:, None], (5, 95)), _q(L[bg][:, None], (5, 95))
    out.append(np.array([
        _logratio(_mean(grad[..., 0], fg), _mean(grad[..., 0], bg)),
        _logratio(_mean(lap, fg), _mean(lap, bg)),
        _logratio(_mean(fine, fg), _mean(fine, bg), 0.1),
        _logratio(_mean(grad[..., 0], inner6), _mean(grad[..., 0], outer6)),
        _logratio(_mean(chroma, fg), _mean(chroma, bg), 2.0),
        (np.median(chroma[fg]) - np.median(chroma[bg])) / 10 if bg.any() else 0.0,
        _logratio(float(lq[0][1, 0] - lq[0][0, 0]), float(lq[1][1, 0] - lq[1][0, 0]), 2.0),
    ]))
    # the light: the colour of each side's brightest pixels, of its mean and of its darkest pixels
    # (white patch, grey world and shadows: three estimates of the illuminant's cast)
    light = []
    for lo, hi in ((90, 100), (0, 100), (0, 10)):
        sides = []
        for side in (fg, bg):
            Ls = L[side]
            a, b = np.percentile(Ls, (lo, hi)) if len(Ls) else (0, 0)
            sel = side & (L >= a) & (L <= b)
            sides.append(lab[sel][:, 1:].mean(0) if sel.any() else np.zeros(2, np.float32))
        light.append((sides[0] - sides[1]) / 10)
    out += light
    v = np.concatenate([np.asarray(o, np.float32).ravel() for o in out])
    return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)


# ---- the model: boosted trees evaluated in NumPy --------------------------------------------------

@dataclass
class Gate:
    """The default mode's strength for a detector score ``p``: 0 up to ``lo``, 1 from ``hi``, a
    smoothstep between (monotone non-decreasing). ``lo`` and ``hi`` are calibrated on held-out
    training photos and composites (:mod:`router.detect`)."""
    lo: float = 0.5
    hi: float = 0.8

    def __post_init__(self):
        if not 0.0 <= self.lo < self.hi <= 1.0:
            raise ValueError(f"gate needs 0 <= lo < hi <= 1, got lo={self.lo}, hi={self.hi}")

    def __call__(self, p):
        t = np.clip((np.asarray(p, np.float64) - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        s = t * t * (3 - 2 * t)
        return float(s) if np.ndim(s) == 0 else s


@dataclass
class Trees:
    """An additive ensemble of binary regression trees over the feature vector (flattened: node
    arrays of all trees, each tree's root index in ``roots``): ``logit = bias + Σ_t leaf_t(x)``."""
    feature: np.ndarray      # (nodes,) int32, -1 at leaves
    threshold: np.ndarray    # (nodes,) float64: go left when x[feature] <= threshold
    left: np.ndarray         # (nodes,) int32 absolute node index
    right: np.ndarray        # (nodes,) int32
    value: np.ndarray        # (nodes,) float64: the leaf's contribution (already scaled)
    roots: np.ndarray        # (trees,) int32
    bias: float = 0.0

    def logit(self, x: np.ndarray) -> np.ndarray:
        """``N×F`` → ``N`` logits."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()   # (N, trees)
        rows = np.arange(len(x))[:, None]
        while True:
            f = self.feature[node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = x[rows, np.where(inner, f, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.bias + self.value[node].sum(1)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature.astype(np.int32), "threshold": self.threshold.astype(np.float64),
                "left": self.left.astype(np.int32), "right": self.right.astype(np.int32),
                "value": self.value.astype(np.float64), "roots": self.roots.astype(np.int32)}


def all_features(image: np.ndarray, mask: np.ndarray, style=None) -> np.ndarray:
    """:func:`features`, then with ``style`` (a :class:`router.style.Style`) its comparison of the
    two sides at the same working size."""
    img, m = _working(image, mask)   # once for both
    f = _relations(img, m)
    return f if style is None else np.concatenate([f, style.features(img, m)])


def all_feature_names(style: bool = False) -> list[str]:
    from .style import feature_names as style_names
    return feature_names() + (style_names() if style else [])


@dataclass
class Detector:
    trees: Trees
    gate: Gate = field(default_factory=Gate)
    info: dict = field(default_factory=dict)   # training data, held-out figures (recorded in the file)
    style: object = None                       # a router.style.Style, or None (colour statistics only)

    def probability(self, feats: np.ndarray) -> np.ndarray:
        """``N×F`` features → ``N`` probabilities."""
        return 1.0 / (1.0 + np.exp(-self.trees.logit(feats)))

    def features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What this detector reads of a picture (:func:`all_features`)."""
        return all_features(image, mask, self.style)

    def score(self, image: np.ndarray, mask: np.ndarray) -> float:
        """P(the masked region was pasted in or recoloured) for an ``H×W×3`` image in [0, 1] and its
        ``H×W`` mask (checked by the caller: :func:`router.inference.checked`)."""
        return float(self.probability(self.features(image, mask)[None])[0])

    def strength(self, p: float) -> float:
        """The share of the harmonizer's change the default mode applies at score ``p``."""
        return self.gate(p)

    # ---- files (NumPy safetensors: the ONNX Runtime path reads it without torch) ------------------

    def save(self, path, overwrite: bool = False) -> Path:
        from safetensors.numpy import save_file

        from common import __version__
        from common.io import atomic_write
        cfg = {"features_version": FEATURES_VERSION, "features": all_feature_names(self.style is not None),
               "work_side": WORK_SIDE, "bias": float(self.trees.bias), "gate": asdict(self.gate)}
        if self.style is not None:
            cfg["style"] = self.style.layout()
        meta = {"kind": "detector", "arch": "trees", "version": __version__, "config": cfg, **self.info}
        tensors = {**self.trees.tensors(), **(self.style.tensors() if self.style is not None else {})}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"config": json.dumps(meta)}),
                            overwrite=overwrite)

    @classmethod
    def load(cls, path) -> "Detector":
        from safetensors.numpy import load_file

        from common.checkpoint import read_meta
        from common.io import InputError
        meta = read_meta(path)
        if meta.get("kind") != "detector":
            raise InputError(f"{path}: checkpoint is a {meta.get('kind')!r}, expected a 'detector'")
        cfg = meta["config"]
        n = len(all_feature_names("style" in cfg))
        if cfg.get("features_version") != FEATURES_VERSION or len(cfg.get("features", ())) != n:
            raise InputError(f"{path}: detector features version {cfg.get('features_version')} "
                             f"({len(cfg.get('features', ()))} features); this code computes version "
                             f"{FEATURES_VERSION} ({n}): retrain it with python -m router.detect")
        t = load_file(str(path))
        trees = Trees(t["feature"], t["threshold"], t["left"], t["right"], t["value"], t["roots"], float(cfg["bias"]))
        style = None
        if "style" in cfg:
            from .style import Style
            try:
                style = Style.from_tensors(t, cfg["style"])
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(f"{path}: the detector's style network is incomplete ({e})") from None
        info = {k: v for k, v in meta.items() if k not in ("kind", "arch", "version", "config")}
        return cls(trees, Gate(**cfg["gate"]), info, style)
