"""The basis LUT bank: a pool of photographic looks, clustered by k-means into L−1 centres.

The paper initialises its L = 20 basis LUTs as the identity plus 19 k-means centres of 100 LUTs
"collected from the Internet". Offline we generate the pool procedurally from documented families
of photographic looks (or read ``.cube`` files from ``--lut-dir``); everything is reproducible from
the seed.

Families (each a pointwise function of sRGB in [0, 1], sampled with random parameters):

- ``white_balance``: per-channel gains in linear light (warm/cool/tint casts)
- ``exposure_curve``: exposure in linear light followed by a gamma and an S- or inverse-S curve
- ``split_tone``: shadows pushed towards one hue, highlights towards another
- ``saturation``: global saturation and vibrance (saturation weighted towards muted colours)
- ``channel_mix``: a 3×3 channel mixer near the identity (rows sum to one)
- ``fade``: lifted blacks and lowered whites (matte look), optionally tinted
- ``film``: per-channel toe/shoulder curves with a slight cross-process cast
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from common.io import InputError
from common.colour import linear_to_srgb, luma, srgb_to_linear as _lin

from common.lut import DEFAULT_DIM, apply_lut, identity_lut, lut_from_function, read_cube

FAMILIES = ("white_balance", "exposure_curve", "split_tone", "saturation", "channel_mix", "fade", "film")


def _srgb(x):  # looks stay inside the gamut: clip in linear light before encoding
    return linear_to_srgb(np.clip(x, 0, 1))


def _hue(rng):
    h = rng.uniform(0, 2 * math.pi)
    v = np.array([math.cos(h), math.cos(h - 2 * math.pi / 3), math.cos(h + 2 * math.pi / 3)])
    return v - v.mean()


def look(family: str, rng: np.random.Generator):
    """A random look of ``family`` as a function on ``(..., 3)`` arrays."""
    if family == "white_balance":
        g = np.exp(rng.uniform(-0.35, 0.35, 3))
        return lambda x: _srgb(_lin(x) * g / g[1])
    if family == "exposure_curve":
        ev, gamma, c = rng.uniform(-1, 1), math.exp(rng.uniform(-0.4, 0.4)), rng.uniform(-0.6, 0.6)
        return lambda x: np.clip((y := _srgb(_lin(x) * 2 ** ev) ** gamma) - c * np.sin(2 * math.pi * y) / (2 * math.pi), 0, 1)
    if family == "split_tone":
        sh, hi, a = _hue(rng), _hue(rng), rng.uniform(0.05, 0.2)
        return lambda x: np.clip(x + a * ((1 - luma(x)) ** 2 * sh + luma(x) ** 2 * hi), 0, 1)
    if family == "saturation":
        s, v = math.exp(rng.uniform(-0.9, 0.5)), rng.uniform(-0.5, 0.8)

        def fn(x):
            y = luma(x)
            chroma = np.abs(x - y).max(-1, keepdims=True)
            return np.clip(y + (x - y) * s * (1 + v * (1 - np.clip(chroma * 2, 0, 1))), 0, 1)
        return fn
    if family == "channel_mix":
        m = np.eye(3) + rng.normal(0, 0.12, (3, 3))
        m /= m.sum(1, keepdims=True)
        return lambda x: np.clip(x @ m.T, 0, 1)
    if family == "fade":
        lo, hi, tint = rng.uniform(0, 0.2), rng.uniform(0.8, 1.0), _hue(rng) * rng.uniform(0, 0.06)
        return lambda x: np.clip(lo + (hi - lo) * x + tint * (1 - x), 0, 1)
    if family == "film":
        toe, sh = rng.uniform(0.5, 2.0, 3), rng.uniform(0.5, 2.0, 3)

        def fn(x):
            # per-channel smooth curve through (0,0) and (1,1): a mix of power curves
            return np.clip(0.5 * x ** (1 / toe) + 0.5 * (1 - (1 - x) ** (1 / sh)) * 1.0, 0, 1)
        return fn
    raise ValueError(f"unknown look family {family!r}")


def procedural_pool(n: int = 120, dim: int = DEFAULT_DIM, seed: int = 0) -> torch.Tensor:
    """``n`` random looks (families taken in turn; about a third chained with a second family)."""
    rng = np.random.default_rng(seed)
    luts = []
    for i in range(n):
        f1 = look(FAMILIES[i % len(FAMILIES)], rng)
        if rng.random() < 0.35:
            f2 = look(FAMILIES[int(rng.integers(len(FAMILIES)))], rng)
            luts.append(lut_from_function(lambda x, a=f1, b=f2: b(a(x)), dim))
        else:
            luts.append(lut_from_function(f1, dim))
    return torch.stack(luts)


def read_lut_dir(path, dim: int = DEFAULT_DIM) -> torch.Tensor:
    """All ``.cube`` files of a folder, resampled to ``dim``."""
    files = sorted(Path(path).glob("*.cube"))
    if not files:
        raise InputError(f"{path}: no .cube files")
    out = []
    for f in files:
        lut = read_cube(f)
        if lut.shape[-1] != dim:
            ident = identity_lut(dim)
            lut = apply_lut(ident.reshape(3, dim, dim * dim)[None], lut)[0].reshape(3, dim, dim, dim)
        out.append(lut)
    return torch.stack(out)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 60) -> torch.Tensor:
    """k-means++ initialisation then Lloyd iterations on rows of ``x`` (``N×F``); returns ``k×F``."""
    if len(x) < k:
        raise InputError(f"k-means needs at least {k} LUTs, got {len(x)}")
    g = torch.Generator().manual_seed(seed)
    x = x.double()
    centres = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
        centres.append(x[torch.multinomial(d / d.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        new = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
        if torch.allclose(new, c):
            break
        c = new
    return c.float()


def basis_bank(n_luts: int = 20, dim: int = DEFAULT_DIM, seed: int = 0, lut_dir=None, pool_size: int = 120) -> torch.Tensor:
    """``L×3×D×D×D``: the identity followed by ``L−1`` k-means centres of the look pool."""
    pool = read_lut_dir(lut_dir, dim) if lut_dir else procedural_pool(pool_size, dim, seed)
    centres = kmeans(pool.flatten(1), n_luts - 1, seed).view(n_luts - 1, 3, dim, dim, dim)
    return torch.cat([identity_lut(dim)[None], centres])
