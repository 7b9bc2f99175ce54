"""Evaluate a SycoNet checkpoint: reconstruction fMSE and diversity (Div) per domain.

    python -m syconet.evaluate --data data/mini4 --ckpt runs/syconet_all.safetensors
    python -m syconet.evaluate --data data/mini4 --ckpt runs/syconet_all.safetensors --domains MiniDay2night --zc

- ``rec_fMSE``: fMSE (0–255) between the reconstruction ``Ĩ^c`` (``z = μ``) and the original composite
  ``I^c`` on the split; ``comp_fMSE`` is the fMSE between ``I^c`` and the real image, the scale of the
  adjustment the reconstruction branch has to learn.
- ``Div`` (Table 2): for each real image of the *training* split (as the paper; ``--div_split``),
  10 composites from 10 draws of ``z^g``; the mean pairwise fMSE among them, averaged over real
  images. ``--zc`` draws ``z^c ~ N(μ, σ²)`` instead.
- ``shift_ED`` (ours, not in the paper): how far the *generated* adjustments are from the domain's
  own. Each composite–real pair becomes the shift of its foreground in CIELAB (mean difference
  and log standard-deviation ratio per channel, 6 numbers); the energy distance between the shifts
  of ``k`` generated composites per real image and the shifts of the domain's composites of the
  same real images. 0 when the two sets are alike; finetuning SycoNet on a domain is meant to
  lower it (the reconstruction error measures the posterior path, which sees the composite).
Metrics are computed at the dataset's ``--size``.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import torch

from common import registry
from common.cli import run, shared_args
from common.shipped import shown
from domains.dataset import HarmonyDataset, batches, real_images

from common import metrics as M

from .model import SycoNet


@torch.inference_mode()
def reconstruction_fmse(model: SycoNet, ds: HarmonyDataset, max_images: int | None = None, batch: int = 16) -> dict:
    dev = next(model.parameters()).device
    n = len(ds) if max_images is None else min(len(ds), max_images)
    can_rec = hasattr(model, "enc_z")  # not the "w/o rec" ablation nor a generation-only export
    rec_sum = 0.0 if can_rec else float("nan")
    comp_sum = 0.0
    for b in batches(ds, batch, n, dev):
        comp, real, mask = b["composite"], b["real"], b["mask"]
        if can_rec:
            rec, _, _ = model.reconstruct(comp, real, mask, sample=False)
            rec_sum += M.fmse(rec, comp, mask).sum().item()
        comp_sum += M.fmse(real, comp, mask).sum().item()
    return {"rec_fMSE": rec_sum / n, "comp_fMSE": comp_sum / n, "n": n}


def pairwise_fmse(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean fMSE (0–255) over all pairs of ``K×3×H×W`` samples sharing one mask."""
    vals = []
    for a, b in itertools.combinations(range(len(samples)), 2):
        vals.append(M.fmse(samples[a:a + 1], samples[b:b + 1], mask[None]).item())
    return sum(vals) / len(vals)


@torch.inference_mode()
def diversity(model: SycoNet, ds: HarmonyDataset, k: int = 10, seed: int = 0, zc: bool = False,
              max_images: int | None = None) -> float:
    """Div: mean pairwise fMSE among ``k`` samples per real image (``ds`` at its eval size)."""
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    first = {}  # real image → index of its first composite (E^z needs one for --zc)
    for i, s in enumerate(ds.samples):
        first.setdefault((s.real, s.mask), i)
    idxs = list(first.values())[:max_images]
    divs = []
    for i in idxs:
        it = ds[i]
        real, mask, comp = (it[x][None].to(dev).expand(k, -1, -1, -1) for x in ("real", "mask", "composite"))
        if zc:
            torch.manual_seed(seed + i)
            out = model.generate_zc(comp, real, mask)
        else:
            out = model.generate(real, mask, generator=g)
        divs.append(pairwise_fmse(out, it["mask"].to(dev)))
    return sum(divs) / max(1, len(divs))


def lab_shift(image: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """``N×6``: per CIELAB channel, the foreground's mean difference image − real and its log
    standard-deviation ratio (``N×3×H×W`` images, ``N×1×H×W`` masks; foreground = mask > 0.5)."""
    from common.colour import rgb_to_lab
    out = []
    for x, r, m in zip(image, real, mask):
        fg = (m[0] > 0.5).cpu().numpy()
        a = rgb_to_lab(x.permute(1, 2, 0).cpu().double().numpy()[fg])
        b = rgb_to_lab(r.permute(1, 2, 0).cpu().double().numpy()[fg])
        out.append(np.concatenate([a.mean(0) - b.mean(0), np.log((a.std(0) + 1e-3) / (b.std(0) + 1e-3))]))
    return np.stack(out)


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2E|X−Y| − E|X−X'| − E|Y−Y'|`` between samples ``x`` (``n×d``) and ``y``
    (``m×d``), Euclidean, V-statistic form (0 for identical sets, > 0 otherwise)."""
    d = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).mean()  # noqa: E731
    return float(2 * d(x, y) - d(x, x) - d(y, y))


@torch.inference_mode()
def shift_distance(model: SycoNet, ds: HarmonyDataset, k: int = 10, seed: int = 0) -> float:
    """``shift_ED`` (module docstring): generated vs the domain's own adjustments, same real images.
    Channels are scaled by the domain's own spread so that no channel dominates."""
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(seed)
    own, gen, done = [], [], set()
    for i, s in enumerate(ds.samples):
        it = ds[i]
        real, mask = it["real"][None].to(dev), it["mask"][None].to(dev)
        own.append(lab_shift(it["composite"][None], it["real"][None], it["mask"][None]))
        if (s.real, s.mask) in done:
            continue
        done.add((s.real, s.mask))
        out = model.generate(real.expand(k, -1, -1, -1), mask.expand(k, -1, -1, -1), generator=g)
        gen.append(lab_shift(out, real.expand(k, -1, -1, -1), mask.expand(k, -1, -1, -1)))
    own, gen = np.concatenate(own), np.concatenate(gen)
    scale = own.std(0) + 1e-6
    return energy_distance(gen / scale, own / scale)


def evaluate(data, ckpt, domains="all", split: str = "test", size: int = 256, k: int = 10, zc: bool = False,
             device: str = "cpu", div_split: str = "train") -> dict:
    model, meta = registry.load(ckpt, device, kind="syconet")
    ds_all = HarmonyDataset(data, domains, split, size=size, train=False)
    out = {"ckpt": shown(ckpt), "split": split, "div_split": div_split, "size": size, "domains": {}}
    for d in ds_all.domains:
        ds = HarmonyDataset(data, d, split, size=size, train=False)
        r = reconstruction_fmse(model, ds)
        div_ds = ds if div_split == split else HarmonyDataset(data, d, div_split, size=size, train=False)
        r["Div"] = diversity(model, div_ds, k=k, zc=zc)
        r["shift_ED"] = shift_distance(model, ds, k=k)
        r["real_images"] = len(real_images(ds.samples))
        out["domains"][d] = r
    return out


@shared_args
def main(data="data/mini4", ckpt="runs/syconet_all.safetensors", domains="all", split: str = "test",
         size: int = 256, k: int = 10, zc: bool = False, device: str = "cpu", div_split: str = "train") -> None:
    """Reconstruction fMSE, Div (diversity of K samples) and shift_ED of a SycoNet, per domain.

    Args:
        ckpt: SycoNet checkpoint (a full training checkpoint: reconstruction needs E^z).
        split: the split of the reconstruction error and shift_ED.
        k: samples per real image for Div and shift_ED.
        zc: sample z from E^z's posterior on the composite instead of N(0, I).
        div_split: the split whose real images Div is computed on (train, as the paper does).
    """
    res = evaluate(data, ckpt, domains, split, size, k, zc, device, div_split)
    print(f"| domain | images | comp fMSE | rec fMSE | Div (k={k}{', z^c' if zc else ''}) | shift ED |\n"
          "|---|---:|---:|---:|---:|---:|")
    for d, r in res["domains"].items():
        print(f"| {d} | {r['n']} | {r['comp_fMSE']:.1f} | {r['rec_fMSE']:.1f} | {r['Div']:.1f} | {r['shift_ED']:.3f} |")
    print(json.dumps(res))


CLI = main

if __name__ == "__main__":
    run(CLI)
