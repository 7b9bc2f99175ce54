"""Latency of ``router predict`` end to end, stage by stage, at several sizes, with peak memory.

    .venv/bin/python bench/predict_latency.py                  # writes bench/predict_latency.md

Each size runs in a fresh process (``python -m router predict``, as a user would), on the demo
composite resized to that size; the table takes the stage times from the JSON line predict prints,
the wall time of the whole command (interpreter start and imports included) and the peak RSS.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(256, 256), (1024, 768), (2048, 1536), (6000, 4000)]


def main(zoo: str | None = None, out: str = str(ROOT / "bench" / "predict_latency.md"), repeats: int = 2) -> None:
    src, msk = Image.open(ROOT / "assets/demo/koala.jpg"), Image.open(ROOT / "assets/demo/koala_mask.png")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            img, m = Path(tmp) / f"c_{w}.jpg", Path(tmp) / f"m_{w}.png"
            src.resize((w, h), Image.BICUBIC).save(img, quality=95)
            msk.resize((w, h), Image.NEAREST).save(m)
            best = None
            for _ in range(repeats):
                res_out = Path(tmp) / f"r_{w}.png"
                res_out.unlink(missing_ok=True)
                # run `python -m router predict ...` and report this process's own peak RSS on stderr
                wrapper = ("import resource, runpy, sys; sys.argv = ['router'] + sys.argv[1:]; "
                           "runpy.run_module('router', run_name='__main__'); "
                           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
                cmd = [sys.executable, "-c", wrapper, "predict", str(img), str(m), "--out", str(res_out)]
                if zoo:
                    cmd += ["--zoo", zoo]
                t0 = time.perf_counter()
                r = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, cwd=ROOT)
                wall = time.perf_counter() - t0
                if r.returncode:
                    raise SystemExit(r.stderr)
                res = json.loads(r.stdout.strip().splitlines()[-1])
                usage = int(r.stderr.split("maxrss_kib")[-1].split()[0]) / 1024  # MiB
                if best is None or wall < best[0]:
                    best = (wall, res["seconds"], usage)
            rows.append(((w, h), *best))
    lines = [f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
             f"{platform.python_version()}; best of {repeats} runs; `python -m router predict` in a fresh process.",
             "", "| size | command wall s | load | classify | harmonize | full_res | write | predict total | peak RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (w, h), wall, s, rss in rows:
        lines.append(f"| {w}×{h} | {wall:.2f} | {s['load']:.3f} | {s['classify']:.3f} | {s['harmonize']:.3f} | "
                     f"{s['full_res']:.3f} | {s['write']:.3f} | {s['total']:.3f} | {rss:.0f} |")
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    import fire
    fire.Fire(main)
