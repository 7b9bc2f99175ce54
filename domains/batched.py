"""The offline benchmark's foreground processes on whole batches of tensors, on any device.

:func:`domains.build.make_composite` makes one composite at a time in numpy (float64): right for
building the benchmark and for CPU loader workers, but a GPU trainer would wait on them. Here each
process works on a batch ``N×3×H×W`` at once with torch ops, so that a training step can make its
pairs where the network runs (``--augment processes`` does on a CUDA device):

- the same processes with the same parameter distributions: the four colour transfers (Reinhard in
  CIELAB, Xiao's covariance transfer, histogram matching, Pitié's rotations) from another image of
  the batch's foreground, the retouch and illumination looks and the five experts as per-image LUTs
  (built from the very functions :mod:`domains.transfer` uses), a procedural look;
- the same plausibility rule: a draw whose foreground saturates, or that changes the foreground too
  little or too much (:data:`domains.build.MIN_FMSE`, ``MAX_FMSE``), is drawn again, up to 12
  times, keeping the least bad — only the images that need it are redrawn;
- each function takes its parameters explicitly, so that it can be checked against the per-image
  numpy process (``tests/domains/test_batched.py``: equal to float32 precision).

Quantiles follow numpy's default (linear) method over each image's foreground; curves are applied
with a row-wise ``np.interp``. Masks are binarised at 0.5 for fitting and blending, as the training
pipelines binarise them.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch

from common.colour import lab_to_rgb, rgb_to_lab
from common.lut import apply_lut, lut_from_function
from domains import transfer as T

# ---- per-image statistics over a foreground -------------------------------------------------------

def masked_quantiles(v: torch.Tensor, m: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.quantile`` (linear method): ``v`` ``N×P``, ``m`` ``N×P`` bool (each row at least
    one True), ``q`` ``Q`` → ``N×Q``."""
    n = m.sum(1, keepdim=True)
    vs = torch.where(m, v, torch.full_like(v, math.inf)).sort(1).values
    vi = (n - 1).to(v.dtype) * q.to(v)[None]
    lo = vi.floor().long()
    hi = torch.minimum(lo + 1, n - 1)
    g = vi - lo
    a, b = vs.gather(1, lo), vs.gather(1, hi)
    d = b - a
    return torch.where(g >= 0.5, b - d * (1 - g), a + d * g)


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise ``np.interp``: ``x`` ``N×P``, ``xp`` ``N×K`` strictly increasing, ``fp`` ``N×K``."""
    k = xp.shape[1]
    j = (torch.searchsorted(xp.contiguous(), x.contiguous(), right=True) - 1).clamp(0, k - 2)
    x0, x1, y0, y1 = xp.gather(1, j), xp.gather(1, j + 1), fp.gather(1, j), fp.gather(1, j + 1)
    t = ((x - x0) / (x1 - x0)).clamp(0, 1)  # outside the range: the end values, as numpy
    return y0 + t * (y1 - y0)


def quantile_curve(src: torch.Tensor, sm: torch.Tensor, ref: torch.Tensor, rm: torch.Tensor, n: int = 256):
    """The histogram-matching curve of each row (:func:`domains.transfer._quantile_map`): knots
    ``(xq, yq)``, ``N×n`` each."""
    q = torch.linspace(0, 1, n, dtype=torch.float64).to(src.device)
    xq, yq = masked_quantiles(src, sm, q), masked_quantiles(ref, rm, q)
    xq = torch.cummax(xq + torch.arange(n, device=src.device, dtype=src.dtype) * 1e-9, 1).values
    return xq, yq


def _mean_std(v: torch.Tensor, m: torch.Tensor):
    w = m.to(v.dtype)[..., None]
    n = w.sum(1)
    mean = (v * w).sum(1) / n
    std = (((v - mean[:, None]) ** 2 * w).sum(1) / n).sqrt()
    return mean, std


def _cov(v: torch.Tensor, m: torch.Tensor):
    w = m.to(v.dtype)[..., None]
    n = w.sum(1)
    mean = (v * w).sum(1) / n
    c = (v - mean[:, None]) * w
    return mean, c.transpose(1, 2) @ c / (n[..., None] - 1)  # np.cov: ddof 1


def _sqrtm(c: torch.Tensor, inv: bool = False) -> torch.Tensor:
    w, v = torch.linalg.eigh(c)
    w = w.clamp_min(1e-6) ** (-0.5 if inv else 0.5)
    return (v * w[:, None]) @ v.transpose(1, 2)


# ---- the processes: pixels ``N×P×3`` (the whole image), fitted on the foreground ``N×P`` ----------

def reinhard(x, m, ref, rm, strength):
    s, r = rgb_to_lab(x), rgb_to_lab(ref)
    ms, ss = _mean_std(s, m)
    mr, sr = _mean_std(r, rm)
    ss, sr = ss + 1e-6, sr + 1e-6
    k = strength[:, None]
    mt, st = ms + k * (mr - ms), ss + k * (sr - ss)
    return lab_to_rgb((s - ms[:, None]) / ss[:, None] * st[:, None] + mt[:, None]).clamp(0, 1)


def xiao(x, m, ref, rm, strength):
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    ms, cs = _cov(x, m)
    mr, cr = _cov(ref, rm)
    cs, cr = cs + 1e-5 * eye, cr + 1e-5 * eye
    k = strength[:, None, None]
    a = _sqrtm((1 - k) * cs + k * cr) @ _sqrtm(cs, inv=True)
    shift = strength[:, None, None] * (mr - ms)[:, None]
    return ((x - ms[:, None]) @ a.transpose(1, 2) + ms[:, None] + shift).clamp(0, 1)


FIT_PIXELS = 8192  # foreground pixels a curve is fitted on (all of them below that)


def fit_sample(m: torch.Tensor, k: int = FIT_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``k`` foreground pixels of each row, drawn at random (all of them where there are no
    more): indices ``N×K`` and which of them are real ``N×K`` (``K = min(k, P)``). Quantile curves
    fitted on 8,192 pixels are as good as on all of them (their error is a fraction of a level) and
    sorting them costs a fraction."""
    key = torch.rand(m.shape, device=m.device) + (~m).float() * 2  # background sorts last
    kk = min(k, m.shape[1])
    idx = key.topk(kk, 1, largest=False, sorted=False).indices if kk < m.shape[1] else key.argsort(1)
    valid = torch.arange(kk, device=m.device)[None] < m.sum(1, keepdim=True)
    if kk < m.shape[1]:  # topk's order is arbitrary: the real ones are those with key < 1
        valid = key.gather(1, idx) < 1
    return idx, valid


def _take(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return v.gather(1, idx[..., None].expand(-1, -1, v.shape[-1]))


def _match(x, xs, sv, ref, rv):
    """Each channel of ``x`` (``N×P×3``) through the curve matching its fit sample ``xs`` (valid
    where ``sv``) to ``ref``'s (valid where ``rv``)."""
    out = []
    for c in range(3):
        xq, yq = quantile_curve(xs[..., c], sv, ref[..., c], rv)
        out.append(interp(x[..., c], xq, yq))
    return torch.stack(out, -1)


def histogram(x, m, ref, rm, strength):
    (si, sv), (ri, rv) = fit_sample(m), fit_sample(rm)
    matched = _match(x, _take(x, si), sv, _take(ref, ri), rv)
    return (x + strength[:, None, None] * (matched - x)).clamp(0, 1)


def pitie(x, m, ref, rm, strength, rotations):
    """``rotations`` ``N×iters×3×3``: each step matches the marginals along one random basis."""
    (si, sv), (ri, rv) = fit_sample(m), fit_sample(rm)
    out, ref = x, _take(ref, ri)
    for it in range(rotations.shape[1]):
        rot = rotations[:, it]
        xr = out @ rot
        out = _match(xr, _take(xr, si), sv, ref @ rot, rv) @ rot.transpose(1, 2)
    return (x + strength[:, None, None] * (out - x)).clamp(0, 1)


def looks(x, luts):
    """Pointwise looks: one ``3×D×D×D`` LUT per image."""
    n, p, _ = x.shape
    img = x.transpose(1, 2).reshape(n, 3, p, 1)
    return apply_lut(img, luts).clamp(0, 1).reshape(n, 3, p).transpose(1, 2)


def saturated_fraction(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """:func:`domains.build.saturated_fraction` per image: ``img`` ``N×P×3``, ``m`` ``N×P``."""
    sat = ((img <= 0.5 / 255) | (img >= 254.5 / 255)).any(-1)
    return (sat & m).sum(1) / m.sum(1)


def fmse255(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    w = m.to(a.dtype)
    return ((a - b) * 255).pow(2).sum(-1).mul(w).sum(1) / (3 * w.sum(1))


class BatchedProcesses:
    """Fresh composites for a batch, on its device (see the module's docstring): each image gets one
    of ``methods`` with fresh parameters, or, with probability ``identity``, nothing; an image whose
    foreground has fewer than 4 pixels is left alone. Random draws come from the global ``random``,
    numpy (seeded from it) and torch generators, which the training engine seeds per batch."""

    STAT = ("reinhard", "xiao", "histogram", "pitie")
    METHODS = STAT + ("retouch", "illumination", "expert", "lut")
    ATTEMPTS = 12

    def __init__(self, identity: float = 0.3, methods: tuple[str, ...] | None = None, lut_pool=None):
        self.identity = identity
        self.methods = tuple(methods) if methods else self.METHODS
        unknown = sorted(set(self.methods) - set(self.METHODS))
        if unknown:
            raise ValueError(f"unknown process {unknown}; choose from {self.METHODS}")
        if "lut" in self.methods and lut_pool is None:
            raise ValueError("the 'lut' process draws from a pool of looks: pass lut_pool "
                             "(harmonizers.augment.LookPool)")
        self.lut_pool = lut_pool  # anything with draw(k) -> k×3×D×D×D

    @torch.no_grad()
    def __call__(self, real: torch.Tensor, mask: torch.Tensor, picks: list | None = None) -> torch.Tensor:
        """Composites of ``real`` (``N×3×H×W``) with ``mask`` (``N×1×H×W``); ``picks`` names each
        image's process, or None to leave it as it is (a donor to the others' colour transfers all
        the same), and then no image is left alone by chance; else they are drawn from ``methods``."""
        if picks is not None and (len(picks) != len(real) or set(picks) - set(self.methods) - {None}):
            raise ValueError(f"picks must name one of {self.methods} per image, got {picks}")
        # full precision inside a training step's bf16 autocast (the curves need float64 knots)
        with torch.autocast(device_type=real.device.type, enabled=False):
            return self._make(real, mask, picks)

    def _make(self, real: torch.Tensor, mask: torch.Tensor, picks: list[str] | None) -> torch.Tensor:
        n, _, h, w = real.shape
        x = real.float().flatten(2).transpose(1, 2)  # N×P×3
        m = (mask.float().flatten(1) > 0.5)
        out = x.clone()
        ok = m.sum(1) >= 4
        donors = ok.nonzero().flatten().tolist()
        identity = 0.0 if picks is not None else self.identity
        picks = list(picks) if picks is not None else [random.choice(self.methods) for _ in range(n)]
        for method in dict.fromkeys(p for p in picks if p is not None):
            idx = [i for i in range(n) if picks[i] == method and ok[i] and (not identity or random.random() >= identity)
                   and (method not in self.STAT or len(donors) > 1)]
            if idx:
                sel = torch.tensor(idx, device=x.device)
                out[sel] = self.plausible(method, x, m, sel, donors)
        return out.transpose(1, 2).reshape(n, 3, h, w).to(real.dtype)

    def plausible(self, method: str, x, m, sel, donors) -> torch.Tensor:
        """Composites of images ``sel`` by ``method``, redrawn where implausible (as
        :func:`domains.build.make_composite`): ``len(sel)×P×3``."""
        from domains.build import MAX_FMSE, MIN_FMSE, SAT_MARGIN
        xs, ms = x[sel], m[sel]
        base = saturated_fraction(xs, ms)
        best, best_bad = xs.clone(), torch.full((len(sel),), math.inf, device=x.device)
        todo = torch.arange(len(sel), device=x.device)
        for _ in range(self.ATTEMPTS):
            comp = self.draw(method, x, m, sel[todo], donors)
            comp = torch.where(ms[todo, :, None], comp, xs[todo])
            fm = fmse255(comp, xs[todo], ms[todo])
            sat = saturated_fraction(comp, ms[todo]) - base[todo]
            bad = ((sat - SAT_MARGIN).clamp_min(0) * 1e4 + (MIN_FMSE - fm).clamp_min(0)
                   + (fm - MAX_FMSE).clamp_min(0) / 10)
            better = bad < best_bad[todo]
            best[todo[better]], best_bad[todo[better]] = comp[better], bad[better]
            todo = todo[bad > 0]
            if len(todo) == 0:
                break
        return best

    def draw(self, method: str, x, m, sel, donors) -> torch.Tensor:
        """One draw of fresh parameters for each image of ``sel`` (whole images, ``len(sel)×P×3``)."""
        k, dev = len(sel), x.device
        rng = np.random.default_rng(random.randrange(2 ** 31))
        if method in self.STAT:
            own = sel.tolist()
            ref = torch.tensor([random.choice([d for d in donors if d != i]) for i in own], device=dev)
            strength = torch.from_numpy(rng.uniform(0.6, 1.0, k)).to(dev)
            args = (x[sel].double(), m[sel], x[ref].double(), m[ref], strength)
            if method == "pitie":
                rots = np.stack([[np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(10)] for _ in range(k)])
                return pitie(*args, torch.from_numpy(rots).to(dev)).float()
            return {"reinhard": reinhard, "xiao": xiao, "histogram": histogram}[method](*args).float()
        if method == "lut":
            luts = self.lut_pool.draw(k).to(dev)
        elif method == "expert":
            luts = torch.stack([T.expert_lut(int(rng.integers(len(T.EXPERTS)))) for _ in range(k)]).to(dev)
        else:
            sample = T.sample_retouch if method == "retouch" else T.sample_illumination
            luts = torch.stack([lut_from_function(T.LOOKS[method](sample(rng))) for _ in range(k)]).to(dev)
        return looks(x[sel], luts)
