"""Score a harmonization method on the test split of an iHarmony4-layout dataset.

    python -m eval.score --data data/mini4                      # the composite baseline
    python -m eval.score --data /path/to/iHarmony4 --method reinhard --out runs/reinhard.json

Metrics follow iS2AM at 256×256 (see ``eval.metrics``); the table has one row per domain and "All".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from common.cli import run
from common.io import InputError, read_image, read_mask, write_text
from domains.dataset import load_samples

from . import metrics as M
from .baselines import BASELINES


@torch.inference_mode()
def score(data, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], domains="all",
          split: str = "test", size: int = M.EVAL_SIZE, desc: str = "score") -> M.Accumulator:
    """Run ``predict(composite 3×H×W, mask 1×H×W) -> 3×H×W`` on every sample at full resolution and
    accumulate the metrics against the real image."""
    acc = M.Accumulator()
    for s in tqdm(load_samples(data, domains, split), desc=desc, unit="img"):
        comp, real, mask = read_image(s.composite), read_image(s.real), read_mask(s.mask)
        out = predict(comp, mask)
        acc.add(s.domain, M.compute(out[None], real[None], mask[None], size), names=[s.composite.name])
    return acc


def checkpoint_predictor(ckpt, full_res: str = "transform", device: str = "cpu"):
    """A ``predict`` function for ``score`` from a harmonizer checkpoint."""
    from harmonizers.models import harmonize, load
    model, _ = load(ckpt, device=device)
    return lambda image, mask: harmonize(model, image, mask, method=full_res)


def evaluate_checkpoint(ckpt, data, domains="all", split: str = "test", full_res: str = "transform") -> dict:
    acc = score(data, checkpoint_predictor(ckpt, full_res), domains, split, desc=Path(ckpt).stem)
    return {"ckpt": str(ckpt), "split": split, "size": M.EVAL_SIZE, "summary": acc.summary()}


def main(data="data/mini4", method: str = "composite", ckpt: str | None = None, domains="all",
         split: str = "test", size: int = M.EVAL_SIZE, full_res: str = "transform", out: str | None = None,
         overwrite: bool = False) -> None:
    """Score a baseline (``--method composite|reinhard``) or a harmonizer (``--ckpt``)."""
    if ckpt:
        predict, method = checkpoint_predictor(ckpt, full_res), Path(ckpt).stem
    elif method in BASELINES:
        predict = BASELINES[method]
    else:
        raise InputError(f"unknown method {method!r}; choose from {sorted(BASELINES)} or pass --ckpt")
    acc = score(data, predict, domains, split, size, desc=method)
    summary = acc.summary()
    print(f"{method} on {data} ({split}), metrics at {size}x{size}, PSNR peak 255\n")
    print(M.markdown_table(summary))
    if out:
        res = {"method": method, "data": str(data), "split": split, "size": size,
               "summary": summary, "by_fg_ratio": acc.by_fg_ratio(), "images": acc.rows}
        write_text(json.dumps(res, indent=1), out, overwrite=overwrite)
        print(f"\nwrote {out}")


if __name__ == "__main__":
    run(main)
