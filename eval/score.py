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
from common.io import read_image, read_mask, write_text
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


def main(data="data/mini4", method: str = "composite", domains="all", split: str = "test",
         size: int = M.EVAL_SIZE, out: str | None = None, overwrite: bool = False) -> None:
    if method not in BASELINES:
        raise SystemExit(f"error: unknown method {method!r}; choose from {sorted(BASELINES)}")
    acc = score(data, BASELINES[method], domains, split, size, desc=method)
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
