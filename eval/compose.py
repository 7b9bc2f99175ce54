"""Real composites without ground truth: paste real cut-outs into real photos.

    python -m eval.compose --cutouts assets/cutouts --backgrounds assets/photos --out data/real_composites -n 50

Each composite takes a random RGBA cut-out (mask = its alpha) and a random background photo, scales
the cut-out to cover 5–35 % of the background's area (clamped to fit), and places it in the lower
two thirds, resting near the bottom as objects usually do. The foreground keeps its own colours, so
these are the same kind of unadjusted composites as the public DIH / CDTNet real-composite sets.
Writes ``composites/<name>.jpg``, ``masks/<name>.png`` and ``manifest.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from common.cli import run, shared_args
from common.io import IMAGE_SUFFIXES, InputError, write_image, write_text


def _images(folder: Path) -> list[Path]:
    folder = Path(folder)
    sub = folder / "images"
    root = sub if sub.is_dir() else folder
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images")
    return files


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


def compose(cutouts="assets/cutouts", backgrounds="assets/photos", out="data/real_composites", n: int = 50,
            seed: int = 0, max_side: int = 1024, overwrite: bool = False) -> Path:
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds composites (pass --overwrite)")
    cuts, bgs = _images(cutouts), _images(backgrounds)
    rng = np.random.default_rng(seed)
    rows = []
    for i in tqdm(range(n), desc="compose", unit="img"):
        c, b = cuts[int(rng.integers(len(cuts)))], bgs[int(rng.integers(len(bgs)))]
        cut = ImageOps.exif_transpose(Image.open(c)).convert("RGBA")
        bg = ImageOps.exif_transpose(Image.open(b)).convert("RGB")
        bg.thumbnail((max_side, max_side), Image.LANCZOS)
        comp, mask, place = paste(bg, cut, rng)
        if (np.asarray(mask) > 127).mean() < 0.002:
            continue
        name = f"rc{i:04d}"
        write_image(comp, out / "composites" / f"{name}.jpg", overwrite=overwrite)
        write_image(mask, out / "masks" / f"{name}.png", overwrite=overwrite)
        rows.append({"name": name, "cutout": c.name, "background": b.name, **place})
    write_text(json.dumps({"seed": seed, "cutouts": str(cutouts), "backgrounds": str(backgrounds),
                           "composites": rows}, indent=1), out / "manifest.json", overwrite=overwrite)
    return out


@shared_args
def main(cutouts="assets/cutouts", backgrounds="assets/photos", out="data/real_composites", n: int = 50,
         seed: int = 0, max_side: int = 1024, overwrite: bool = False) -> None:
    """Real composites: cut-outs pasted into photos at 5-35 % of the area, mask from alpha.

    Args:
        cutouts: folder of RGBA cut-outs.
        backgrounds: folder of photos (an images/ subfolder is used when present).
        out: output folder (composites/, masks/, manifest.json).
        n: number of composites.
        max_side: long side of the backgrounds.
    """
    p = compose(cutouts, backgrounds, out, n, seed, max_side, overwrite)
    print(f"wrote {p}")


CLI = main

if __name__ == "__main__":
    run(CLI)
