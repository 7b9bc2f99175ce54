"""fMSE cost of full-resolution inference methods of ``harmonizers.harmonize``.

    .venv/bin/python bench/fullres_cost.py --ckpt runs/issam_all.safetensors --data data/mini4

Scores the test split (metrics at 256, as always) with the network run at its training size and
brought to full resolution by ``transform`` (fitted colour transform + upsampled remainder) or
``upsample`` (upsampled change), against running the network at full resolution (``full``), and
times each per image. Writes bench/fullres_cost.md.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from common import metrics as M
from eval.score import checkpoint_predictor, score

ROOT = Path(__file__).resolve().parents[1]


def main(ckpt: str = "runs/issam_all.safetensors", data: str = "data/mini4", out: str = str(ROOT / "bench/fullres_cost.md")):
    torch.set_grad_enabled(False)
    lines = [f"Checkpoint `{ckpt}` on `{data}` (test split); metrics at 256×256; per-image time on this CPU.", "",
             "| method | fMSE | MSE | PSNR | seconds / image |", "|---|---:|---:|---:|---:|"]
    for method in ("transform", "upsample", "full"):
        pred = checkpoint_predictor(ckpt, method)
        t0 = time.perf_counter()
        acc = score(data, pred, desc=method)
        dt = (time.perf_counter() - t0) / len(acc.rows)
        s = acc.summary()["All"]
        lines.append(f"| {method} | {s['fMSE']:.2f} | {s['MSE']:.2f} | {s['PSNR']:.2f} | {dt:.3f} |")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import fire
    fire.Fire(main)
