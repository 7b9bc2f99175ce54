"""`router predict` with two zoos side by side in one run: the whole command's wall time per image size.

    python bench/zoo_latency.py --zoos runs/oldzoo,models/default --backend onnx

Each zoo is exported to ONNX first when its export is missing (``router.fast export``); each
command runs in a fresh process, best of ``repeats``.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from predict_latency import demo_inputs  # noqa: E402
SIZES = ((2048, 1536), (6000, 4000))


def main(zoos: str, backend: str = "onnx", repeats: int = 3) -> str:
    names = zoos.split(",")
    for z in names:
        if backend == "onnx" and not (Path(z) / "onnx" / "manifest.json").is_file():
            subprocess.run([sys.executable, "-m", "router.fast", "export", "--zoo", z], cwd=ROOT, check=True,
                           capture_output=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            img, m = demo_inputs(tmp, w, h)
            for _ in range(repeats):
                for z in names:  # interleaved, so both zoos see the same machine load
                    out = Path(tmp) / "r.png"
                    t0 = time.perf_counter()
                    r = subprocess.run([sys.executable, "-m", "router", "predict", str(img), str(m), "--out", str(out),
                                        "--zoo", z, "--backend", backend, "--overwrite"],
                                       capture_output=True, text=True, cwd=ROOT)
                    wall = time.perf_counter() - t0
                    if r.returncode:
                        raise SystemExit(r.stderr)
                    total = json.loads(r.stdout.strip().splitlines()[-1])["seconds"]["total"]
                    rows.append(((w, h), z, wall, total))
    best = {}
    for size, z, wall, total in rows:
        if (size, z) not in best or wall < best[(size, z)][0]:
            best[(size, z)] = (wall, total)
    lines = [f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; "
             f"`python -m router predict --backend {backend}`, fresh process, best of {repeats}, zoos interleaved.", "",
             "| size | " + " | ".join(f"`{z}` command s (predict s)" for z in names) + " | ratio |",
             "|---|" + "---:|" * (len(names) + 1)]
    for w, h in SIZES:
        cells = [best[((w, h), z)] for z in names]
        lines.append(f"| {w}×{h} | " + " | ".join(f"{a:.2f} ({b:.2f})" for a, b in cells) +
                     f" | {cells[0][0] / cells[-1][0]:.2f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    import fire
    fire.Fire(main)
