"""Harmonization metrics under two protocols.

``iharm`` (default): the official iHarmony4 evaluation of iS2AM (SamsungLabs/image_harmonization,
``scripts/evaluate_model.py`` and ``iharm/inference``): composite, real image and mask are
resized to 256×256 *before* prediction with plain bilinear interpolation (no antialiasing; the
8-bit images are rounded back to 8 bits, the mask stays soft); the method's own 256×256 output is
scored, as float, clamped to 0–255:

- ``MSE  = mean((p − t)²)`` over all pixels and channels
- ``fMSE = Σ m·(p − t)² / (3·Σ m + 1e-6)`` with the soft mask ``m``
- ``PSNR = 10·log10(max(t)² / (MSE + 1e-6))``: the peak is the image's own target maximum
- per-image values averaged per domain; "All" pools every image (weighted by image count).

``fullres`` (ours): the method runs at the composite's full resolution with its background kept;
its output, the real image and the mask are then resized to 256×256 (bilinear, antialiased), the
mask binarised at 0.5, and ``fMSE = Σ m(p − t)² / (3·Σ m)``, ``PSNR = 10·log10(255² / MSE)``.

Both add, with no official definition: ``fPSNR = 10·log10(255² / fMSE)`` and ``fSSIM``, SSIM
(Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, reflect padding, as
``skimage.metrics.structural_similarity(gaussian_weights=True)``) averaged over the foreground
(weighted by the mask) and the three channels.

Tensor functions take ``N×3×H×W`` in [0, 1] and ``N×1×H×W`` masks and return one value per image.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PEAK = 255.0
EVAL_SIZE = 256
NAMES = ("MSE", "fMSE", "PSNR", "fPSNR", "fSSIM")
# foreground-ratio bins of the official evaluate_model_fg_ratios.py: both ends inclusive
FG_BINS = ((0.0, 0.05), (0.05, 0.15), (0.15, 1.0))
PROTOCOLS = ("iharm", "fullres")
__all__ = ["PEAK", "EVAL_SIZE", "NAMES", "FG_BINS", "PROTOCOLS", "EPS", "prepare", "mse_255", "fmse_255", "fssim_255",
           "psnr_from_mse", "ssim_map", "mse", "fmse", "drift", "psnr", "fpsnr", "fssim", "bilinear", "resize_8bit", "fmse_soft", "iharm_inputs",
           "iharm_compute", "Protocol", "compute", "Accumulator", "markdown_table", "HARM_TOL", "harms"]
EPS = 1e-6  # the official metrics' epsilon
HARM_TOL = 1e-4  # a method "harms" an image when it raises its fMSE by more than this share (0.01 %)


def prepare(pred, target, mask, size: int | None = EVAL_SIZE):
    """Resize to ``size``×``size`` (bilinear, antialiased), scale to 0–255, binarise the mask."""
    if size is not None:
        def rs(x):
            return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        pred, target, mask = rs(pred), rs(target), rs(mask)
    return pred.float().clamp(0, 1) * PEAK, target.float().clamp(0, 1) * PEAK, (mask > 0.5).float()


def mse_255(p, t):
    return (p - t).pow(2).flatten(1).mean(1)


def fmse_255(p, t, m):
    return ((p - t).pow(2) * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1)).clamp_min(1)


def psnr_from_mse(e):
    return 10 * torch.log10(PEAK ** 2 / e.clamp_min(1e-10))


def _gauss(size=11, sigma=1.5, device=None, dtype=torch.float32):
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(p, t, data_range: float = PEAK):
    """Per-pixel, per-channel SSIM map ``N×C×H×W`` (Gaussian 11/1.5, reflect padding)."""
    c = p.shape[1]
    g = _gauss(device=p.device, dtype=p.dtype)
    kx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(x):
        x = F.pad(x, (5, 5, 5, 5), mode="reflect")
        return F.conv2d(F.conv2d(x, kx, groups=c), ky, groups=c)

    mp, mt = blur(p), blur(t)
    vp, vt, cov = blur(p * p) - mp ** 2, blur(t * t) - mt ** 2, blur(p * t) - mp * mt
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp ** 2 + mt ** 2 + c1) * (vp + vt + c2))


def fssim_255(p, t, m):
    s = ssim_map(p, t)
    return (s * m).flatten(1).sum(1) / (s.shape[1] * m.flatten(1).sum(1)).clamp_min(1)


# ---- public per-image metrics: tensors in [0, 1], values on the 0–255 scale ---------------------

def mse(pred, target, mask=None, size: int | None = None) -> torch.Tensor:
    """Per-image MSE (``N``) of ``N×3×H×W`` tensors in [0, 1], on 0–255; ``size`` resizes first."""
    m = mask if mask is not None else torch.ones_like(pred[:, :1])
    p, t, _ = prepare(pred, target, m, size)
    return mse_255(p, t)


def fmse(pred, target, mask, size: int | None = None) -> torch.Tensor:
    """Per-image foreground MSE ``Σ m(p−t)² / (3·Σm)`` on 0–255 (mask binarised at 0.5)."""
    return fmse_255(*prepare(pred, target, mask, size))


def drift(pred, source, mask) -> torch.Tensor:
    """Per-image mean absolute change ``Σ m|p−x| / (3·Σm)`` on 0–255 inside the mask (binarised at
    0.5): how far a harmonizer moves its input (on a real photo it should be close to 0)."""
    w = (mask > 0.5).to(pred)
    return ((pred - source).abs() * 255 * w).flatten(1).sum(1) / (3 * w.flatten(1).sum(1)).clamp_min(1)


def psnr(pred, target, mask=None, size: int | None = None) -> torch.Tensor:
    """Per-image PSNR with peak 255."""
    return psnr_from_mse(mse(pred, target, mask, size))


def fpsnr(pred, target, mask, size: int | None = None) -> torch.Tensor:
    """Per-image PSNR of the foreground (from fMSE, peak 255)."""
    return psnr_from_mse(fmse(pred, target, mask, size))


def fssim(pred, target, mask, size: int | None = None) -> torch.Tensor:
    """Per-image SSIM averaged inside the foreground (Gaussian 11/1.5, data range 255)."""
    return fssim_255(*prepare(pred, target, mask, size))


def bilinear(x, size: int):
    """Plain bilinear resize to ``size``×``size`` (half-pixel centres, no antialiasing), in float64:
    cv2.INTER_LINEAR as the official evaluation applies it through albumentations ``Resize``."""
    return F.interpolate(x.double(), size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def resize_8bit(x, size: int):
    """An 8-bit image (``N×C×H×W`` in [0, 1]) resized as the official evaluation does: bilinear on
    its levels, rounded back to 8 bits; float32 at ``size``."""
    return (bilinear((x.double() * 255).round(), size).round().clamp(0, 255) / 255).float()


def iharm_inputs(image, real, mask, size: int = EVAL_SIZE):
    """The official evaluation's inputs: 8-bit images resized bilinearly and rounded back to 8 bits,
    the mask resized bilinearly and kept soft. ``N×C×H×W`` in [0, 1] → float32 at ``size``."""
    return resize_8bit(image, size), resize_8bit(real, size), bilinear(mask, size).clamp(0, 1).float()


def fmse_soft(p, t, m):
    """The official fMSE on 0–255 tensors with a soft mask: ``Σ m(p−t)² / (3·Σm + 1e-6)``."""
    return ((p - t).pow(2) * m).flatten(1).sum(1) / (3 * m.flatten(1).sum(1) + EPS)


def iharm_compute(pred, target, mask) -> dict[str, torch.Tensor]:
    """The official per-image formulas on ``pred`` (float, clamped to 0–255), the 8-bit ``target``
    and the soft ``mask``, all at the evaluation size; plus our fPSNR and fSSIM."""
    p = pred.double().clamp(0, 1) * PEAK
    level = p.round()  # an 8-bit prediction read back as float32 lands within 2e-5 of its level
    p = torch.where((p - level).abs() < 1e-4, level, p)
    t = (target.double() * PEAK).round()
    m = mask.double()
    e = (p - t).pow(2).flatten(1).mean(1)
    fe = fmse_soft(p, t, m)
    psnr_ = 10 * torch.log10(t.flatten(1).amax(1) ** 2 / (e + EPS))
    return {"MSE": e, "fMSE": fe, "PSNR": psnr_, "fPSNR": 10 * torch.log10(PEAK ** 2 / (fe + EPS)),
            "fSSIM": fssim_255(p, t, m), "fg_ratio": (m > 0.5).double().flatten(1).mean(1)}


class Protocol:
    """How a test sample is scored: ``inputs`` gives what the method sees and what it is compared
    with, ``metrics`` scores the method's output (see the module docstring)."""

    def __init__(self, name: str = "iharm", size: int = EVAL_SIZE):
        if name not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {name!r}")
        self.name, self.size = name, size

    def inputs(self, image, real, mask):
        """``(image, real, mask)`` of one sample (``C×H×W``) as the method and the metrics see them."""
        if self.name == "fullres":
            return image, real, mask
        x, t, m = iharm_inputs(image[None], real[None], mask[None], self.size)
        return x[0], t[0], m[0]

    def metrics(self, pred, real, mask) -> dict[str, torch.Tensor]:
        """Metrics of a batch ``N×3×H×W``; an iharm prediction of another size is resized as an image."""
        if self.name == "fullres":
            return compute(pred, real, mask, self.size)
        if pred.shape[-2:] != (self.size, self.size):
            pred = resize_8bit(pred, self.size)
        return iharm_compute(pred, real, mask)

    def describe(self) -> str:
        if self.name == "iharm":
            return (f"official iHarmony4 protocol: inputs resized to {self.size}x{self.size} (bilinear), "
                    "soft mask, the method's own output scored, PSNR peak = target maximum")
        return f"full-resolution results, metrics at {self.size}x{self.size}, binary mask, PSNR peak 255"


def harms(fmse_method: float, fmse_composite: float) -> bool:
    """Whether a method made an image worse: its fMSE above the composite's by more than
    :data:`HARM_TOL` (a model that leaves the image alone differs by float rounding only)."""
    return fmse_method > fmse_composite * (1 + HARM_TOL)


def compute(pred, target, mask, size: int | None = EVAL_SIZE) -> dict[str, torch.Tensor]:
    """All metrics for a batch: a dict name → ``N`` values, plus ``fg_ratio``."""
    p, t, m = prepare(pred, target, mask, size)
    e, fe = mse_255(p, t), fmse_255(p, t, m)
    return {"MSE": e, "fMSE": fe, "PSNR": psnr_from_mse(e), "fPSNR": psnr_from_mse(fe), "fSSIM": fssim_255(p, t, m),
            "fg_ratio": m.flatten(1).mean(1)}


class Accumulator:
    """Per-image metrics grouped by domain (and foreground-ratio bin); "All" is image-weighted."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, domain: str, values: dict[str, torch.Tensor], names: list[str] | None = None):
        n = len(values["MSE"])
        for i in range(n):
            row = {"domain": domain, **{k: float(v[i]) for k, v in values.items()}}
            if names is not None:
                row["name"] = names[i]
            self.rows.append(row)

    @staticmethod
    def _mean(rows):
        out = {"n": len(rows)}
        for k in NAMES:
            vals = [r[k] for r in rows if k in r and math.isfinite(r[k])]
            out[k] = sum(vals) / len(vals) if vals else float("nan")
        return out

    def summary(self) -> dict[str, dict]:
        domains = list(dict.fromkeys(r["domain"] for r in self.rows))
        out = {d: self._mean([r for r in self.rows if r["domain"] == d]) for d in domains}
        out["All"] = self._mean(self.rows)
        return out

    def by_fg_ratio(self) -> dict[str, dict]:
        """Rows per foreground-ratio bin, both ends inclusive as the official script (a ratio of
        exactly 0.05 or 0.15 counts in two bins)."""
        out = {}
        for lo, hi in FG_BINS:
            rows = [r for r in self.rows if lo <= r.get("fg_ratio", 0) <= hi]
            out[f"{int(lo * 100)}-{int(hi * 100)}%"] = self._mean(rows)
        return out


def markdown_table(summary: dict[str, dict], names=NAMES, title: str = "domain") -> str:
    fmt = {"MSE": "{:.2f}", "fMSE": "{:.2f}", "PSNR": "{:.2f}", "fPSNR": "{:.2f}", "fSSIM": "{:.4f}"}
    lines = [f"| {title} | images | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for d, row in summary.items():
        lines.append(f"| {d} | {row['n']} | " + " | ".join(fmt.get(k, "{:.3f}").format(row[k]) for k in names) + " |")
    return "\n".join(lines)


def roc_auc(pos, neg) -> float:
    """Area under the ROC curve of scores ``pos`` (positives) against ``neg`` (negatives), 1-D arrays:
    P(a positive scores above a negative), ties counted half (the Mann–Whitney statistic, by ranks;
    NaN when a side is empty)."""
    if not len(pos) or not len(neg):
        return float("nan")
    s = np.concatenate([pos, neg])
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inv]          # 1-based, ties share their mean rank
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
