"""Harmonization metrics, following iS2AM's evaluation.

Pixel values on 0–255; images resized to 256×256 first (``prepare``); the mask binarised at 0.5.

- ``MSE  = mean((p − t)²)`` over all pixels and channels
- ``fMSE = Σ m·(p − t)² / (3·Σ m)`` (foreground only)
- ``PSNR = 10·log10(255² / MSE)`` (peak 255), ``fPSNR`` the same from fMSE
- ``fSSIM``: SSIM (Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, reflect padding, as
  ``skimage.metrics.structural_similarity(gaussian_weights=True)``) averaged over foreground pixels
  and the three channels.

All functions take ``N×3×H×W`` tensors in [0, 1] and ``N×1×H×W`` masks and return one value per
image (``N``). Images are averaged per image; "All" is the image-weighted mean over domains.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PEAK = 255.0
EVAL_SIZE = 256
NAMES = ("MSE", "fMSE", "PSNR", "fPSNR", "fSSIM")
FG_BINS = ((0.0, 0.05), (0.05, 0.15), (0.15, 1.0))


def prepare(pred, target, mask, size: int | None = EVAL_SIZE):
    """Resize to ``size``×``size`` (bilinear, antialiased), scale to 0–255, binarise the mask."""
    if size is not None:
        def rs(x):
            return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        pred, target, mask = rs(pred), rs(target), rs(mask)
    return pred.float().clamp(0, 1) * PEAK, target.float().clamp(0, 1) * PEAK, (mask > 0.5).float()


def _mse(p, t):
    return (p - t).pow(2).flatten(1).mean(1)


def _fmse(p, t, m):
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


def _fssim(p, t, m):
    s = ssim_map(p, t)
    return (s * m).flatten(1).sum(1) / (s.shape[1] * m.flatten(1).sum(1)).clamp_min(1)


# ---- public per-image metrics: tensors in [0, 1], values on the 0–255 scale ---------------------

def mse(pred, target, mask=None, size: int | None = None) -> torch.Tensor:
    """Per-image MSE (``N``) of ``N×3×H×W`` tensors in [0, 1], on 0–255; ``size`` resizes first."""
    m = mask if mask is not None else torch.ones_like(pred[:, :1])
    p, t, _ = prepare(pred, target, m, size)
    return _mse(p, t)


def fmse(pred, target, mask, size: int | None = None) -> torch.Tensor:
    """Per-image foreground MSE ``Σ m(p−t)² / (3·Σm)`` on 0–255 (mask binarised at 0.5)."""
    return _fmse(*prepare(pred, target, mask, size))


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
    return _fssim(*prepare(pred, target, mask, size))


def compute(pred, target, mask, size: int | None = EVAL_SIZE) -> dict[str, torch.Tensor]:
    """All metrics for a batch: a dict name → ``N`` values, plus ``fg_ratio``."""
    p, t, m = prepare(pred, target, mask, size)
    e, fe = _mse(p, t), _fmse(p, t, m)
    return {"MSE": e, "fMSE": fe, "PSNR": psnr_from_mse(e), "fPSNR": psnr_from_mse(fe), "fSSIM": _fssim(p, t, m),
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
        out = {}
        for lo, hi in FG_BINS:
            rows = [r for r in self.rows if lo <= r.get("fg_ratio", 0) < hi or (hi == 1.0 and r.get("fg_ratio") == 1)]
            out[f"{int(lo * 100)}-{int(hi * 100)}%"] = self._mean(rows)
        return out


def markdown_table(summary: dict[str, dict], names=NAMES, title: str = "domain") -> str:
    fmt = {"MSE": "{:.2f}", "fMSE": "{:.2f}", "PSNR": "{:.2f}", "fPSNR": "{:.2f}", "fSSIM": "{:.4f}"}
    lines = [f"| {title} | images | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for d, row in summary.items():
        lines.append(f"| {d} | {row['n']} | " + " | ".join(fmt.get(k, "{:.3f}").format(row[k]) for k in names) + " |")
    return "\n".join(lines)
