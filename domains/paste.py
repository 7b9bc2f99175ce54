"""Cut-and-paste composites: an RGBA cut-out pasted into a photo, as real composites are made by hand.

Used by ``eval.compose`` (real composites for the user study and ``eval.real``) and by
``router.detect`` (positives for the composite detector).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from common.io import InputError


def paste(bg: Image.Image, cut: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image, dict]:
    """Paste RGBA ``cut`` into RGB ``bg`` → (composite, mask L, placement)."""
    alpha = cut.getchannel("A")
    box = alpha.getbbox()
    if box is None:
        raise InputError("cut-out has an empty alpha channel")
    cut = cut.crop(box)
    bw, bh = bg.size
    frac = rng.uniform(0.05, 0.35)
    cov = max(1e-3, np.asarray(cut.getchannel("A"), dtype=np.float32).mean() / 255)  # alpha coverage of its box
    scale = np.sqrt(frac * bw * bh / (cov * cut.width * cut.height))
    scale = min(scale, 0.9 * bw / cut.width, 0.9 * bh / cut.height)
    w, h = max(8, round(cut.width * scale)), max(8, round(cut.height * scale))
    cut = cut.resize((w, h), Image.LANCZOS)
    x = int(rng.integers(0, max(1, bw - w + 1)))
    lo = max(0, min(bh - h, bh // 3))
    y = int(rng.integers(lo, max(lo + 1, bh - h + 1)))
    comp = bg.copy()
    comp.paste(cut.convert("RGB"), (x, y), cut.getchannel("A"))
    mask = Image.new("L", bg.size, 0)
    mask.paste(cut.getchannel("A"), (x, y))
    return comp, mask, {"x": x, "y": y, "w": w, "h": h, "area_fraction": round(float(w * h * cov / (bw * bh)), 4)}
