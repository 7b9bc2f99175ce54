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
from domains.paste import paste


def _images(folder: Path) -> list[Path]:
    folder = Path(folder)
    sub = folder / "images"
    root = sub if sub.is_dir() else folder
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images")
    return files


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
