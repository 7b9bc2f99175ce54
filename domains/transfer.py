"""Foreground colour processes that make synthetic composites (and the CT augmenter).

Each process maps the foreground pixels ``P×3`` (float RGB in [0, 1]) of a real image to new values;
the statistics-based ones take reference pixels from another photo. Processes:

- ``reinhard``: mean/std transfer per channel in CIELAB (Reinhard et al. 2001, as iHarmony4 uses).
- ``xiao``: correlated transfer of the RGB mean and covariance (Xiao & Ma 2006).
- ``histogram``: per-channel histogram matching (quantile mapping) in RGB.
- ``pitie``: iterative N-D distribution transfer with random rotations (Pitié et al. 2005).
- ``retouch``: a photographic look (white balance, exposure, tone curve, saturation) as a global LUT.
- ``illumination``: exposure in linear light, colour temperature, contrast, shadow lift/crush.

``strength`` in (0, 1] blends the transferred statistics with the source's, as iHarmony4 users do
to keep results plausible.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from common.colour import lab_to_rgb, linear_to_srgb, luma, rgb_to_lab, srgb_to_linear  # noqa: F401 (re-exported)
from common.lut import apply_lut, lut_from_function


# ---- statistics-based transfers: each fits a colour map from source to reference pixels ----------

def fit_reinhard(src: np.ndarray, ref: np.ndarray, strength: float = 1.0, **_):
    s, r = rgb_to_lab(src), rgb_to_lab(ref)
    ms, ss = s.mean(0), s.std(0) + 1e-6
    mr, sr = r.mean(0), r.std(0) + 1e-6
    mt, st = ms + strength * (mr - ms), ss + strength * (sr - ss)
    return lambda x: np.clip(lab_to_rgb((rgb_to_lab(x) - ms) / ss * st + mt), 0, 1)


def _sqrtm(c: np.ndarray, inv: bool = False) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.clip(w, 1e-6, None)
    return (v * (w ** (-0.5 if inv else 0.5))) @ v.T


def fit_xiao(src: np.ndarray, ref: np.ndarray, strength: float = 1.0, **_):
    ms, mr = src.mean(0), ref.mean(0)
    cs = np.cov(src.T) + 1e-5 * np.eye(3)
    cr = np.cov(ref.T) + 1e-5 * np.eye(3)
    a = _sqrtm((1 - strength) * cs + strength * cr) @ _sqrtm(cs, inv=True)
    return lambda x: np.clip((x - ms) @ a.T + ms + strength * (mr - ms), 0, 1)


def quantiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(x, q)`` (its default linear method, value for value) from one sort of ``x``:
    numpy's selection with many quantiles costs about 15× a SIMD sort, and this runs per channel
    and per iteration of every colour transfer the training pipelines draw."""
    xs = np.sort(np.asarray(x, dtype=np.float64).ravel())
    vi = (len(xs) - 1) * np.asarray(q, dtype=np.float64)
    lo = np.floor(vi).astype(np.intp)
    hi = np.minimum(lo + 1, len(xs) - 1)
    g = vi - lo
    a, b = xs[lo], xs[hi]
    d = b - a
    return np.where(g >= 0.5, b - d * (1 - g), a + d * g)  # numpy's _lerp, both branches


_INTERP_KERNEL = None


def _interp_kernel():
    """The numba kernel behind :class:`Interp`, compiled on first use and cached on disk."""
    global _INTERP_KERNEL
    if _INTERP_KERNEL is None:
        import numba

        @numba.njit(cache=True, fastmath=False, nogil=True)
        def kernel(x, xp, fp, slopes, table, lo, scale, out):  # pragma: no cover - compiled
            n, nb = xp.shape[0], table.shape[0]
            for i in range(x.shape[0]):
                v = x[i]
                if v != v:
                    out[i] = v
                elif v < xp[0]:
                    out[i] = fp[0]
                elif v >= xp[n - 1]:
                    out[i] = fp[n - 1]
                else:  # the bin's first knot, then the exact segment xp[j] <= v < xp[j + 1]
                    j = table[min(max(int((v - lo) * scale), 0), nb - 1)]
                    while j > 0 and xp[j] > v:
                        j -= 1
                    while xp[j + 1] <= v:
                        j += 1
                    if xp[j] == v:
                        out[i] = fp[j]
                    else:  # numpy's arithmetic, its NaN fallbacks included
                        r = slopes[j] * (v - xp[j]) + fp[j]
                        if r != r:
                            r = slopes[j] * (v - xp[j + 1]) + fp[j + 1]
                            if r != r and fp[j] == fp[j + 1]:
                                r = fp[j]
                        out[i] = r
        _INTERP_KERNEL = kernel
    return _INTERP_KERNEL


class Interp:
    """``np.interp(v, xp, fp)`` for a strictly increasing ``xp``, equal to it value for value, about
    5× faster on large inputs: a table of 1,024 uniform bins over ``xp``'s range gives each value
    its segment in a step or two instead of a bisection (the colour transfers map every foreground
    pixel through such a curve, per channel, up to ten times in Pitié's transfer)."""

    BINS, SMALL = 1024, 2048  # below SMALL values numpy's own call is as fast

    def __init__(self, xp: np.ndarray, fp: np.ndarray):
        self.xp, self.fp = np.asarray(xp, np.float64), np.asarray(fp, np.float64)
        lo, hi = self.xp[0], self.xp[-1]
        self.lo, self.scale = float(lo), float(self.BINS / (hi - lo)) if hi > lo else 0.0
        edges = lo + np.arange(self.BINS) * ((hi - lo) / self.BINS)
        first = np.searchsorted(self.xp, edges, side="right") - 1  # the last knot at or below each bin's start
        self.table = np.clip(first, 0, max(len(self.xp) - 2, 0)).astype(np.intp)
        self.slopes = (self.fp[1:] - self.fp[:-1]) / (self.xp[1:] - self.xp[:-1])

    def __call__(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float64)
        if v.size < self.SMALL or len(self.xp) < 3:
            return np.interp(v, self.xp, self.fp)
        flat = np.ascontiguousarray(v).reshape(-1)  # one signature: a column of N×3 is copied
        out = np.empty(flat.shape, np.float64)
        _interp_kernel()(flat, self.xp, self.fp, self.slopes, self.table, self.lo, self.scale, out)
        return out.reshape(v.shape)


def _quantile_map(x: np.ndarray, y: np.ndarray, n: int = 256):
    q = np.linspace(0, 1, n)
    xq, yq = quantiles(x, q), quantiles(y, q)
    xq = np.maximum.accumulate(xq + np.arange(n) * 1e-9)  # strictly increasing for interp
    return Interp(xq, yq)


def fit_histogram(src: np.ndarray, ref: np.ndarray, strength: float = 1.0, **_):
    maps = [_quantile_map(src[:, c], ref[:, c]) for c in range(3)]
    return lambda x: np.clip(x + strength * (np.stack([maps[c](x[..., c]) for c in range(3)], -1) - x), 0, 1)


def fit_pitie(src: np.ndarray, ref: np.ndarray, strength: float = 1.0, iters: int = 10, seed: int = 0, **_):
    rng = np.random.default_rng(seed)
    steps, x = [], src.copy()
    for _ in range(iters):
        rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        xr, yr = x @ rot, ref @ rot
        maps = [_quantile_map(xr[:, c], yr[:, c]) for c in range(3)]
        steps.append((rot, maps))
        x = np.stack([maps[c](xr[:, c]) for c in range(3)], -1) @ rot.T

    def fn(v):
        if v.shape == src.shape and np.array_equal(v, src):
            out = x  # the fit already carried these very pixels through every step (a binary mask)
        else:
            out = v
            for rot, maps in steps:
                vr = out @ rot
                out = np.stack([maps[c](vr[..., c]) for c in range(3)], -1) @ rot.T
        return np.clip(v + strength * (out - v), 0, 1)
    return fn


# ---- parametric looks (pointwise, hence exact as a LUT) ----------------------------------------

def retouch_fn(p: dict):
    """A photographic retouch as a pointwise colour function of ``(..., 3)`` arrays."""
    def fn(rgb):
        x = np.asarray(rgb, dtype=np.float64)
        lin = srgb_to_linear(x) * np.array([p["wb_r"], 1.0, p["wb_b"]]) * 2 ** p["ev"]
        x = linear_to_srgb(lin)
        x = np.clip(x, 0, 1) ** p["gamma"]
        x = x - p["contrast"] * np.sin(2 * math.pi * x) / (2 * math.pi)  # S-curve: slope 1+c at 0.5
        y = luma(x)
        x = y + p["saturation"] * (x - y)
        return np.clip(x, 0, 1)
    return fn


def sample_retouch(rng: np.random.Generator) -> dict:
    return {"wb_r": float(np.exp(rng.uniform(-0.25, 0.25))), "wb_b": float(np.exp(rng.uniform(-0.25, 0.25))),
            "ev": float(rng.uniform(-0.8, 0.8)), "gamma": float(np.exp(rng.uniform(-0.3, 0.3))),
            "contrast": float(rng.uniform(-0.15, 0.15)), "saturation": float(np.exp(rng.uniform(-0.5, 0.4)))}


def _relight_linear(lin: np.ndarray, p: dict) -> np.ndarray:
    """Exposure and colour temperature of linear-light RGB, then the sRGB encoding (clipped)."""
    t = p["temperature"]  # > 0 warmer (orange), < 0 cooler (blue)
    x = lin * np.array([np.exp(0.35 * t), 1.0, np.exp(-0.45 * t)]) * 2 ** p["ev"]
    return np.clip(linear_to_srgb(x), 0, 1)


def _relight_display(x: np.ndarray, p: dict) -> np.ndarray:
    """Contrast, shadow lift/crush and saturation of display-referred RGB."""
    x = 0.5 + (x - 0.5) * p["contrast"]
    y = luma(np.clip(x, 0, 1))
    shadow = np.clip(1 - y / 0.4, 0, 1) ** 2  # weight of the shadows
    x = x + p["shadows"] * shadow * 0.25
    y = luma(np.clip(x, 0, 1))
    x = y + p["saturation"] * (x - y)
    return np.clip(x, 0, 1)


def illumination_fn(p: dict):
    """An illumination change (day ↔ night ↔ golden hour) as a pointwise colour function."""
    def fn(rgb):
        return _relight_display(_relight_linear(srgb_to_linear(np.asarray(rgb, dtype=np.float64)), p), p)
    return fn


def relight_hdr(image: torch.Tensor, headroom: torch.Tensor, p: dict) -> torch.Tensor:
    """:func:`illumination_fn` on scene radiance: ``image`` ``3×H×W`` sRGB plus ``headroom``
    ``3×H×W`` (log2 of the radiance above the rendering's white, as ``scripts/photo_pool.py``
    stores it for HDR panoramas). Highlights that the 8-bit rendering clips (sun, lamps) keep their
    true radiance, so a darker exposure reveals them as a real re-exposure would.
    """
    lin = srgb_to_linear(image.permute(1, 2, 0).double().numpy())
    h = headroom.permute(1, 2, 0).double().numpy()
    lin = np.where(h > 0, np.maximum(lin, np.exp2(h)), lin)
    out = _relight_display(_relight_linear(lin, p), p)
    return torch.from_numpy(out).permute(2, 0, 1).float()


def sample_illumination(rng: np.random.Generator) -> dict:
    return {"ev": float(rng.choice([-1, 1]) * rng.uniform(0.4, 1.3)), "temperature": float(rng.uniform(-1, 1)),
            "contrast": float(np.exp(rng.uniform(-0.35, 0.2))), "shadows": float(rng.uniform(-0.6, 0.6)),
            "saturation": float(np.exp(rng.uniform(-0.6, 0.15)))}


def sample_night(rng: np.random.Generator) -> dict:
    """A day photo taken to dusk or night (:func:`illumination_fn`'s parameters): 1.6 to 3 stops
    darker in linear light, cooler, shadows kept or crushed, colours muted."""
    return {"ev": float(rng.uniform(-3.0, -1.6)), "temperature": float(rng.uniform(-1.0, -0.2)),
            "contrast": float(np.exp(rng.uniform(0.0, 0.2))), "shadows": float(rng.uniform(-0.6, 0.0)),
            "saturation": float(np.exp(rng.uniform(-0.6, -0.1)))}


# MiniAdobe's five "experts": global looks fixed once for the whole domain, as MIT-Adobe FiveK's five
# retouchers each render every photo (warm and bright; cool and crisp; airy and muted; rich and
# dark; near neutral). A composite takes its foreground from one expert's rendering and its
# background and ground truth from another's.
EXPERTS = (
    {"wb_r": 1.06, "wb_b": 0.94, "ev": 0.25, "gamma": 0.95, "contrast": 0.05, "saturation": 1.10},
    {"wb_r": 0.94, "wb_b": 1.07, "ev": 0.00, "gamma": 1.05, "contrast": 0.12, "saturation": 1.00},
    {"wb_r": 1.00, "wb_b": 1.02, "ev": 0.35, "gamma": 0.90, "contrast": -0.06, "saturation": 0.82},
    {"wb_r": 1.10, "wb_b": 0.90, "ev": -0.25, "gamma": 1.10, "contrast": 0.10, "saturation": 1.25},
    {"wb_r": 0.98, "wb_b": 1.02, "ev": 0.05, "gamma": 1.00, "contrast": 0.00, "saturation": 1.00},
)


@functools.lru_cache(maxsize=None)
def expert_lut(k: int) -> torch.Tensor:
    """Expert ``k``'s look as a LUT, built once per process (the looks are fixed)."""
    return lut_from_function(retouch_fn(EXPERTS[k]))


def render_expert(image: torch.Tensor, k: int) -> torch.Tensor:
    """``image`` (``3×H×W``) as expert ``k`` of :data:`EXPERTS` renders it."""
    return apply_lut(image[None], expert_lut(k))[0].clamp(0, 1)


def look_on(image: torch.Tensor, mask: torch.Tensor, lut: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    """``mask·L(x) + (1−mask)·x`` for a LUT ``L``, with ``L`` computed only where the mask is
    non-zero (elsewhere its weight is 0): the same values as the whole-image product, at the cost
    of the foreground (the LUT is pointwise)."""
    touched = mask[0] > 0
    px = apply_lut(image[:, touched][None, :, :, None], lut)[0, :, :, 0]
    new = image.clone()
    new[:, touched] = px.clamp(0, 1) if clamp else px
    return mask * new + (1 - mask) * image


STAT_METHODS = {"reinhard": fit_reinhard, "xiao": fit_xiao, "histogram": fit_histogram, "pitie": fit_pitie}
LOOKS = {"retouch": retouch_fn, "illumination": illumination_fn}
METHODS = tuple(STAT_METHODS) + tuple(LOOKS)


def transfer(image: torch.Tensor, mask: torch.Tensor, method: str, ref: np.ndarray | None = None,
             params: dict | None = None, strength: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Apply ``method`` to the foreground of ``image`` (``3×H×W``); the background is kept exactly.

    ``ref`` (``P×3``) gives the target statistics for the statistics-based methods, which are fitted
    on the foreground (mask > 0.5); ``params`` the look for ``retouch`` / ``illumination``. The
    soft mask blends the changed foreground in: ``out = m·h(x) + (1−m)·x``.
    """
    if method in LOOKS:
        return look_on(image, mask, lut_from_function(LOOKS[method](params)))
    if method in STAT_METHODS:
        if ref is None:
            raise ValueError(f"{method} needs reference pixels")
        # fitted on the foreground, applied and blended where the mask touches (elsewhere its weight
        # is 0): the whole-image computation's values, at the cost of the foreground
        m = mask[0]
        fit, touched = m > 0.5, m > 0
        # pixels as rows (C order: numpy's sums then add in the order the whole-image code did)
        px = np.ascontiguousarray(image[:, touched].T.double().numpy())
        src = px if torch.equal(fit, touched) else np.ascontiguousarray(image[:, fit].T.double().numpy())
        fn = STAT_METHODS[method](src, ref.astype(np.float64), strength, seed=seed)
        new = torch.from_numpy(fn(px)).T.float()
        mt = mask[:, touched]
        out = image.clone()
        out[:, touched] = mt * new + (1 - mt) * image[:, touched]
        return out
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
