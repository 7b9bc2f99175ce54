"""``router predict`` at 2048×1536, routed against soft (the shipped default), side by side.

    .venv/bin/python bench/mode_latency.py [--runs 5] [--size 2048x1536]

Each run is a fresh ``python -m router predict`` process (the zoo's ONNX export when it is current,
as a user gets it), the two modes interleaved; the table holds the median of each stage from the
JSON line predict prints. Soft runs every domain's network at its small size instead of one, then
the same single full-resolution step.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import fire
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main(runs: int = 5, size: str = "2048x1536", modes: str = "routed,soft"):
    w, h = (int(v) for v in size.split("x"))
    modes = modes.split(",")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        Image.open(ROOT / "assets/demo/koala.jpg").convert("RGB").resize((w, h), Image.BILINEAR).save(d / "c.png")
        Image.open(ROOT / "assets/demo/koala_mask.png").convert("L").resize((w, h), Image.BILINEAR).save(d / "m.png")
        rows = {m: [] for m in modes}
        for _ in range(runs):
            for m in modes:
                out = subprocess.run([sys.executable, "-m", "router", "predict", str(d / "c.png"), str(d / "m.png"),
                                      "--out", str(d / f"o_{m}.png"), "--overwrite", "--mode", m],
                                     capture_output=True, text=True, cwd=ROOT, check=True)
                rows[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
    stages = list(rows[modes[0]][0]["seconds"])
    lines = [f"`router predict` at {w}×{h}, median of {runs} fresh processes per mode, modes interleaved "
             f"(backend: {rows[modes[0]][0]['backend']}); seconds per stage:", "",
             "| mode | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    med = {m: {s: statistics.median(r["seconds"][s] for r in rows[m]) for s in stages} for m in modes}
    for m in modes:
        lines.append(f"| {m} | " + " | ".join(f"{med[m][s]:.3f}" for s in stages) + " |")
    if len(modes) == 2:
        a, b = modes
        lines += ["", f"{b} / {a}, predict total: {med[b]['total'] / med[a]['total']:.2f}×"]
    print("\n".join(lines))


if __name__ == "__main__":
    fire.Fire(main)
