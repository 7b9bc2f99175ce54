"""How much of a composite's error can be removed at all, and does a harmonizer's change point the right way?

    python -m eval.probes prior --data data/mini4                 # foreground-statistics priors, no network
    python -m eval.probes strength --data data/mini4 --ckpt runs/issam_all.safetensors

``prior``: every test composite's foreground is re-normalised in CIELAB (its own per-channel mean and
std replaced by a target, its structure kept), the target blending with weight ``alpha`` the
composite's own statistics and either (``prior``) the mean foreground statistics of the training
photos or (``bg``) a ridge regression of those on the background's statistics, fitted on the training
photos. Where no ``alpha`` lowers fMSE, the composite's foreground statistics are already a better
guess than anything global statistics learned from the training photos can make.

``strength``: the harmonizer's change ``d = G(x) − x`` against the needed change ``e = t − x`` in the
foreground, at the metric's size: an output ``x + β·d`` has
``fMSE(β) = |e|² − 2β⟨d, e⟩ + β²|d|²`` (per image, foreground-normalised, averaged as the scorer
does), minimal at ``β* = mean⟨d, e⟩ / mean|d|²`` per domain; ``β* ≤ 0`` means the change points the
wrong way on average. Read off the test split, β* is a diagnosis, not a setting to ship.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from tqdm import tqdm

from common.cli import names, run
from common.io import InputError, read_image, read_mask
from domains.dataset import load_samples, real_images
from domains.transfer import lab_to_rgb, rgb_to_lab

from . import metrics as M


def lab_stats(image: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB (mean, std) per channel of the foreground and of the background: two 6-vectors."""
    px = image.permute(1, 2, 0).double().numpy()
    fg = mask[0].numpy() > 0.5
    out = []
    for sel in (fg, ~fg):
        lab = rgb_to_lab(px[sel])
        out.append(np.r_[lab.mean(0), lab.std(0)])
    return out[0], out[1]


def renormalise(image: torch.Tensor, mask: torch.Tensor, target: np.ndarray, alpha: float) -> torch.Tensor:
    """The foreground with its CIELAB mean/std moved a share ``alpha`` of the way to ``target`` (6-vector)."""
    px = image.permute(1, 2, 0).double().numpy().copy()
    fg = mask[0].numpy() > 0.5
    lab = rgb_to_lab(px[fg])
    mu, sd = lab.mean(0), lab.std(0) + 1e-6
    t_mu = alpha * target[:3] + (1 - alpha) * mu
    t_sd = alpha * np.maximum(target[3:], 1e-3) + (1 - alpha) * sd
    px[fg] = np.clip(lab_to_rgb((lab - mu) / sd * t_sd + t_mu), 0, 1)
    return torch.from_numpy(px).permute(2, 0, 1).float()


class StatsPrior:
    """Foreground statistics learned from the training photos: their mean, or a ridge regression on
    the background's statistics (``fit`` on (fg, bg) rows, ``target(bg)``)."""

    def __init__(self, kind: str = "prior", ridge: float = 10.0):
        if kind not in ("prior", "bg"):
            raise InputError(f"prior kind {kind!r}: use prior or bg")
        self.kind, self.ridge = kind, ridge

    def fit(self, fg: np.ndarray, bg: np.ndarray) -> "StatsPrior":
        self.mean = fg.mean(0)
        x = np.c_[bg, np.ones(len(bg))]
        self.w = np.linalg.solve(x.T @ x + self.ridge * np.eye(x.shape[1]), x.T @ fg)
        return self

    def target(self, bg: np.ndarray) -> np.ndarray:
        return self.mean if self.kind == "prior" else np.r_[bg, 1.0] @ self.w


def fit_prior(data, domains="all", kind: str = "prior", ridge: float = 10.0) -> StatsPrior:
    fg, bg = [], []
    for _, real, mask in real_images(load_samples(data, domains, "train")):
        f, b = lab_stats(read_image(real), read_mask(mask))
        fg.append(f)
        bg.append(b)
    return StatsPrior(kind, ridge).fit(np.array(fg), np.array(bg))


def prior(data="data/mini4", domains="all", alphas=(0.25, 0.5, 1.0), kinds=("prior", "bg"), ridge: float = 10.0,
          split: str = "test") -> dict:
    """fMSE of foreground-statistics priors on the test split, per domain, for each kind and alpha."""
    from .score import score
    alphas = [float(a) for a in (alphas if isinstance(alphas, (list, tuple)) else names(str(alphas)))]
    kinds = kinds if isinstance(kinds, (list, tuple)) else names(kinds)
    res = {"composite": {d: r["fMSE"] for d, r in score(data, lambda x, m: x, domains, split,
                                                           desc="composite").summary().items()}}
    for kind in kinds:
        sp = fit_prior(data, domains, kind, ridge)
        for a in alphas:
            def predict(x, m, sp=sp, a=a):
                return renormalise(x, m, sp.target(lab_stats(x, m)[1]), a)
            s = score(data, predict, domains, split, desc=f"{kind} {a}").summary()
            res[f"{kind} α={a:g}"] = {d: r["fMSE"] for d, r in s.items()}
    _print(res, "fMSE of foreground-statistics priors")
    return res


@torch.inference_mode()
def strength(data="data/mini4", ckpt: str = "runs/issam_all.safetensors", domains="all", split: str = "test",
             size: int = M.EVAL_SIZE) -> dict:
    """β* and fMSE at β = 0, 1, β* per domain for a harmonizer checkpoint (full resolution, as scored)."""
    from harmonizers.models import harmonize, load
    model, _ = load(ckpt)
    per = {}
    for s in tqdm(load_samples(data, domains, split), desc="strength", unit="img"):
        x, t, m = read_image(s.composite), read_image(s.real), read_mask(s.mask)
        y = harmonize(model, x, m)
        x, y, t, m = (a[None] for a in (x, y, t, m))
        xp, tp, mp = M.prepare(x, t, m, size)
        yp = M.prepare(y, t, m, size)[0]
        per.setdefault(s.domain, []).append((xp, yp, tp, mp))
    per["All"] = [r for d in list(per) for r in per[d]]
    res = {}
    for d, rows in per.items():
        xs, ys, ts, ms = (torch.cat(c) for c in zip(*rows))
        n = (3 * ms.flatten(1).sum(1)).clamp_min(1)
        dv, ev = (ys - xs) * ms, (ts - xs) * ms
        de, dd = (dv * ev).flatten(1).sum(1) / n, (dv * dv).flatten(1).sum(1) / n
        b = float(de.mean() / dd.mean().clamp_min(1e-12))
        f = {beta: float(M._fmse((xs + beta * (ys - xs)).clamp(0, M.PEAK), ts, ms).mean()) for beta in (0.0, 1.0, b)}
        res[d] = {"beta_star": b, "fMSE_composite": f[0.0], "fMSE_model": f[1.0], "fMSE_beta_star": f[b]}
    print(f"{ckpt} on {data} ({split}): the change's useful share\n")
    print("| domain | composite fMSE | model fMSE | β* | fMSE at β* |\n|---|---:|---:|---:|---:|")
    for d, r in res.items():
        print(f"| {d} | {r['fMSE_composite']:.1f} | {r['fMSE_model']:.1f} | {r['beta_star']:.2f} | "
              f"{r['fMSE_beta_star']:.1f} |")
    return res


def _print(res: dict, title: str) -> None:
    doms = list(next(iter(res.values())))
    print(f"{title}\n\n| target | " + " | ".join(doms) + " |\n|---|" + "---:|" * len(doms))
    for k, r in res.items():
        print(f"| {k} | " + " | ".join(f"{r[d]:.1f}" for d in doms) + " |")


def _quiet(fn):
    """The CLI form: the table is printed, the returned dict is not printed again by fire."""
    @functools.wraps(fn)
    def cli(*args, **kwargs):
        fn(*args, **kwargs)
    return cli


if __name__ == "__main__":
    run({"prior": _quiet(prior), "strength": _quiet(strength)})
