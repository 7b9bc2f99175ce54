"""Throughput of 17³ LUT application on 8-bit images: Pillow vs ``grid_sample`` vs ``apply_lut_u8``.

    .venv/bin/python bench/lut_apply.py            # writes bench/lut_apply.md

One run, same images and LUTs for every method: a real photo of ``assets/photos`` resized to
2048×2048 (and 1024×1024) and uniform noise at 2048×2048 (every cell of the lattice hit), each with
a procedural look of ``syconet.bank`` and a random LUT; ours with both kernels (``direct`` per pixel,
``planes`` through per-LUT plane tables, the default from 1 Mpx), on every core and on one thread
(Pillow's filter runs on one thread). Times are the median of 7 calls after 2
warm-ups, input uint8 H×W×3 → output uint8 H×W×3 (conversions included). Error is the largest
difference in 8-bit levels from the float64 trilinear reference (``apply_lut`` in float64, not
rounded), so 0.5 is perfect rounding.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from syconet.bank import procedural_pool
from timing import timed  # bench/timing.py
from common.lut import apply_lut, apply_lut_u8

ROOT = Path(__file__).resolve().parents[1]


def pillow(img: np.ndarray, lut: torch.Tensor) -> np.ndarray:
    d = lut.shape[1]
    table = lut.permute(1, 2, 3, 0).reshape(-1).tolist()  # red fastest, as Pillow expects
    return np.asarray(Image.fromarray(img).filter(ImageFilter.Color3DLUT(d, table)))


def grid_sample(img: np.ndarray, lut: torch.Tensor) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div_(255)
    y = apply_lut(x, lut)[0].mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return y.permute(1, 2, 0).numpy()


def ours(method: str, threads: int | None = None):
    """``apply_lut_u8`` with a kernel choice and, optionally, numba limited to ``threads``."""
    def run(img: np.ndarray, lut: torch.Tensor) -> np.ndarray:
        import numba
        before = numba.get_num_threads()
        if threads:
            numba.set_num_threads(threads)
        try:
            return apply_lut_u8(img, lut, method=method)
        finally:
            numba.set_num_threads(before)
    return run


def reference(img: np.ndarray, lut: torch.Tensor) -> np.ndarray:
    out = np.empty(img.shape, np.float64)
    for y in range(0, img.shape[0], 512):
        x = torch.from_numpy(np.array(img[y:y + 512])).permute(2, 0, 1)[None].double() / 255
        out[y:y + 512] = apply_lut(x, lut.double())[0].permute(1, 2, 0).numpy() * 255
    return out


def main(out: str = str(ROOT / "bench/lut_apply.md")):
    torch.set_grad_enabled(False)
    photo = sorted((ROOT / "assets/photos/images").iterdir())[0]
    base = Image.open(photo).convert("RGB")
    images = {
        "photo 2048²": np.asarray(base.resize((2048, 2048), Image.BICUBIC)),
        "photo 1024²": np.asarray(base.resize((1024, 1024), Image.BICUBIC)),
        "noise 2048²": np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8),
    }
    luts = {"look": procedural_pool(8, seed=1)[3], "random": torch.rand(3, 17, 17, 17, generator=torch.Generator().manual_seed(0))}
    methods = {"Pillow Color3DLUT (1 thread)": pillow, "grid_sample (float32)": grid_sample,
               "apply_lut_u8 direct": ours("direct"), "apply_lut_u8 planes": ours("planes"),
               "apply_lut_u8 direct, 1 thread": ours("direct", 1), "apply_lut_u8 planes, 1 thread": ours("planes", 1)}
    lines = [f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
             f"photo `{photo.relative_to(ROOT)}`.", "",
             "| image | LUT | method | ms | Mpx/s | × Pillow | max error (levels) |", "|---|---|---|---:|---:|---:|---:|"]
    for iname, img in images.items():
        for lname, lut in luts.items():
            ref = reference(img, lut)
            base_t = None
            for mname, fn in methods.items():
                t, res = timed(fn, img, lut, warmup=2)
                base_t = base_t or t
                err = np.abs(res.astype(np.float64) - ref).max()
                lines.append(f"| {iname} | {lname} | {mname} | {t * 1e3:.1f} | {img.shape[0] * img.shape[1] / t / 1e6:.1f} "
                             f"| {base_t / t:.2f} | {err:.2f} |")
                print(lines[-1], flush=True)
    Path(out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    import fire
    fire.Fire(main)
