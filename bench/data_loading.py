"""Training-loader decode cost: full JPEG decoding + resize vs reduced DCT decoding + resize.

    .venv/bin/python bench/data_loading.py            # writes bench/data_loading.md

What ``domains.dataset.HarmonyDataset`` does per image that is not in its cache: read the JPEG and
reduce it to a short side of ``2·size`` (the crops are taken from that). "full" decodes every pixel,
then resizes (torchvision, antialiased); "reduced" lets libjpeg decode at the smallest DCT scale
(1/2, 1/4, 1/8) that still covers the target (``common.io.read_image(..., at_least=...)``), then
resizes the rest of the way. One run, same files: a real photo of ``assets/photos`` upscaled to each
size (bicubic) and saved as JPEG quality 95, as iHarmony4's photos are stored (HAdobe5k's run to
6000 px). Median of 7 calls after 1 warm-up; difference = mean absolute difference of the two
results in 8-bit levels.
"""
from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.io import read_image  # noqa: E402
from timing import timed  # noqa: E402 (bench/timing.py)

SIZES = ((1024, 768), (2048, 1536), (4000, 3000), (6000, 4000))


def target(hw, size):
    short = min(hw)
    return [round(x * 2 * size / short) for x in hw] if short > 2 * size else list(hw)


def full(path, hw):
    return v2.functional.resize(read_image(path), hw, antialias=True)


def reduced(path, hw):
    t = read_image(path, at_least=tuple(hw))
    return t if list(t.shape[1:]) == hw else v2.functional.resize(t, hw, antialias=True)


def main(out=ROOT / "bench" / "data_loading.md", size: int = 256):
    torch.set_num_threads(1)  # one DataLoader worker's view
    photo = sorted((ROOT / "assets" / "photos" / "images").iterdir())[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            p = Path(tmp) / f"{w}x{h}.jpg"
            Image.open(photo).convert("RGB").resize((w, h), Image.BICUBIC).save(p, quality=95)
            hw = target((h, w), size)
            tf, a = timed(full, p, hw)
            tr, b = timed(reduced, p, hw)
            diff = (a - b).abs().mean().item() * 255
            rows.append(f"| {w}×{h} | {hw[1]}×{hw[0]} | {tf * 1000:.1f} | {tr * 1000:.1f} | {tf / tr:.1f}× | {diff:.2f} |")
            print(rows[-1], flush=True)
    text = (f"# Loader decode cost at `size` {size} (`.venv/bin/python bench/data_loading.py`)\n\n"
            f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}, one thread; "
            f"photo {photo.name} upscaled; median of 7.\n\n"
            "| JPEG | reduced to | full decode + resize ms | reduced decode + resize ms | speed-up | mean diff (levels) |\n"
            "|---|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    Path(out).write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
