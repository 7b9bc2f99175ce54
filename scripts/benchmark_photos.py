"""A benchmark split's real photos as a photo folder (``images/``, ``masks/``, ``manifest.json``), each
with the mask of its first composite: what ``eval.real --photos`` and ``eval.compose --backgrounds``
read. Files are symbolic links into the benchmark.

    python scripts/benchmark_photos.py --data data/mini4 --split test --out runs/photos_mini4_test
"""
from __future__ import annotations

import json
from pathlib import Path

import fire

from domains.dataset import load_samples


def main(data="data/mini4", split: str = "test", out="runs/photos_test") -> None:
    out = Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another --out")
    rows, seen = [], set()
    for s in load_samples(data, "all", split):
        if s.real in seen:
            continue
        seen.add(s.real)
        name = f"{s.domain}_{s.real.stem}"
        for sub, src, suffix in (("images", s.real, s.real.suffix), ("masks", s.mask, ".png")):
            (out / sub).mkdir(parents=True, exist_ok=True)
            (out / sub / (name + suffix)).symlink_to(src.resolve())
        rows.append({"name": name, "domain": s.domain, "source": s.domain})
    (out / "manifest.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps({"photos": len(rows), "out": str(out)}))


if __name__ == "__main__":
    fire.Fire(main)
