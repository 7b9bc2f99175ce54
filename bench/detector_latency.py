"""What the composite detector adds to ``router predict``: the same zoo with and without it, side by side.

    .venv/bin/python bench/detector_latency.py [--zoo models/default]     # writes bench/detector_latency.md

For each size, ``python -m router predict --backend onnx`` runs in a fresh process (as a user runs
it) on the demo composite scaled to that size, on the zoo as it is and on a copy of its manifest
without ``"detector"`` (a copy of the same files and ONNX export); best of ``repeats`` runs each. The
zoo needs its ONNX export (``python -m router.fast export``).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_latency import demo_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1024, 768), (2048, 1536), (6000, 4000)]


def _without_detector(zoo: Path, dst: Path) -> Path:
    shutil.copytree(zoo, dst, ignore=shutil.ignore_patterns("zoo.json"))  # copies: a zoo refuses links out of it
    man = json.loads((zoo / "zoo.json").read_text())
    if not man.pop("detector", None):
        raise SystemExit(f"{zoo}: has no detector to compare against")
    (dst / "zoo.json").write_text(json.dumps(man))
    return dst


def _run(img, m, out, zoo) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "router", "predict", str(img), str(m), "--out", str(out), "--backend", "onnx",
           "--zoo", str(zoo), "--overwrite"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(r.stderr)
    return wall, json.loads(r.stdout.strip().splitlines()[-1])


def main(zoo: str = str(ROOT / "models" / "default"), out: str = str(ROOT / "bench" / "detector_latency.md"),
         repeats: int = 3) -> None:
    zoo = Path(zoo)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = _without_detector(zoo, Path(tmp) / "zoo_plain")
        for w, h in SIZES:
            img, m = demo_inputs(tmp, w, h)
            best = {}
            for _ in range(repeats):
                for name, z in (("without", plain), ("with", zoo)):
                    wall, res = _run(img, m, Path(tmp) / f"o_{w}_{name}.png", z)
                    if name not in best or wall < best[name][0]:
                        best[name] = (wall, res)
            rows.append(((w, h), best))
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `python -m router predict --backend onnx` in a fresh process, the zoo "
             f"`{zoo.name}` with and without its detector (same files), alternating; best of {repeats}.", "",
             "| size | command wall s, without | with detector | ratio | predict total s, without | with | score stage s | score | gate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (w, h), b in rows:
        (w0, r0), (w1, r1) = b["without"], b["with"]
        lines.append(f"| {w}×{h} | {w0:.2f} | {w1:.2f} | {w1 / w0:.2f}× | {r0['seconds']['total']:.3f} | "
                     f"{r1['seconds']['total']:.3f} | {r1['seconds'].get('score', 0):.3f} | {r1['score']} | {r1['gate']} |")
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    import fire
    fire.Fire(main)
