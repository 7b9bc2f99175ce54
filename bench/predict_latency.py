"""Latency of ``router predict`` end to end, stage by stage, at several sizes, with peak memory.

    .venv/bin/python bench/predict_latency.py                  # writes bench/predict_latency.md

Each size and backend runs in a fresh process (``python -m router predict --backend B``, as a user
would), on the demo composite resized to that size; the table takes the stage times from the JSON
line predict prints, the wall time of the whole command (interpreter start and imports included),
the import time of what the backend needs on its own (torch + timm + our modules, or onnxruntime +
numpy + Pillow + our modules), and the peak RSS. "predict total" is the command's own work
(reading the inputs, loading the zoo, classify, harmonize, full-resolution apply, writing). The
``onnx`` rows need the zoo's export (``python -m router.fast export``); they are left out without it.
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

from harmonizers.fullres import network_pass, to_full_resolution

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(256, 256), (1024, 768), (2048, 1536), (6000, 4000)]
IMPORTS = {"torch": "torch, timm, router, router.api, router.classifier, harmonizers.models",
           "onnx": "onnxruntime, numpy, PIL.Image, router, router.fast"}


def crop_ablation(src, msk, zoo=None):
    """Seconds of ``harmonizers.fullres.to_full_resolution`` with crop off / on, per size (median of 3)."""
    import statistics

    import numpy as np
    import torch

    from router.api import Harmonizer

    h = Harmonizer.from_zoo(zoo)
    model = h.models[sorted(h.models)[0]]
    rows = []
    for w, hh in SIZES:
        x = torch.from_numpy(np.asarray(src.convert("RGB").resize((w, hh), Image.BICUBIC)).copy()).permute(2, 0, 1).float() / 255
        m = torch.from_numpy(np.asarray(msk.convert("L").resize((w, hh), Image.NEAREST)).copy())[None].float() / 255
        res = []
        for crop in (False, True):
            ts = []
            for _ in range(3):
                small = network_pass(model, x, m)
                t0 = time.perf_counter()
                to_full_resolution(small, crop=crop)
                ts.append(time.perf_counter() - t0)
            res.append(statistics.median(ts))
        rows.append(((w, hh), *res))
    return rows


def demo_inputs(folder, w: int, h: int) -> tuple[Path, Path]:
    """The demo composite and mask scaled to ``w×h``, written into ``folder``."""
    src, msk = Image.open(ROOT / "assets/demo/koala.jpg"), Image.open(ROOT / "assets/demo/koala_mask.png")
    img, m = Path(folder) / f"c_{w}.jpg", Path(folder) / f"m_{w}.png"
    src.resize((w, h), Image.BICUBIC).save(img, quality=95)
    msk.resize((w, h), Image.NEAREST).save(m)
    return img, m


def main(zoo: str | None = None, out: str = str(ROOT / "bench" / "predict_latency.md"), repeats: int = 2) -> None:
    src, msk = Image.open(ROOT / "assets/demo/koala.jpg"), Image.open(ROOT / "assets/demo/koala_mask.png")
    from router import fast
    try:
        fast.FastHarmonizer.from_zoo(zoo)
        backends = ("torch", "onnx")
    except fast.Unavailable as e:
        print(f"onnx rows left out: {e}", file=sys.stderr)
        backends = ("torch",)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            img, m = demo_inputs(tmp, w, h)
            for backend in backends:
                best = None
                for _ in range(repeats):
                    res_out = Path(tmp) / f"r_{w}.png"
                    res_out.unlink(missing_ok=True)
                    # run `python -m router predict ...` and report this process's own peak RSS on stderr;
                    # the backend's imports are timed on their own, so "load" is reading the zoo
                    wrapper = (f"import time; t = time.perf_counter(); import {IMPORTS[backend]}; "
                               "import sys; print('import_s', time.perf_counter() - t, file=sys.stderr); "
                               "import resource, runpy; sys.argv = ['router'] + sys.argv[1:]; "
                               "runpy.run_module('router', run_name='__main__'); "
                               "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
                    cmd = [sys.executable, "-c", wrapper, "predict", str(img), str(m), "--out", str(res_out),
                           "--backend", backend]
                    if zoo:
                        cmd += ["--zoo", zoo]
                    t0 = time.perf_counter()
                    r = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, cwd=ROOT)
                    wall = time.perf_counter() - t0
                    if r.returncode:
                        raise SystemExit(r.stderr)
                    res = json.loads(r.stdout.strip().splitlines()[-1])
                    usage = int(r.stderr.split("maxrss_kib")[-1].split()[0]) / 1024  # MiB
                    imp = float(r.stderr.split("import_s")[-1].split()[0])
                    if best is None or wall < best[0]:
                        best = (wall, imp, res["seconds"], usage)
                rows.append(((w, h), backend, *best))
    lines = [f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, Python "
             f"{platform.python_version()}; best of {repeats} runs; `python -m router predict --backend B` in a fresh "
             "process, both backends in this one run.",
             "", "| size | backend | command wall s | imports | load | classify | harmonize | full_res | write | "
             "predict total | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (w, h), backend, wall, imp, s, rss in rows:
        lines.append(f"| {w}×{h} | {backend} | {wall:.2f} | {imp:.2f} | {s['load']:.3f} | {s['classify']:.3f} | "
                     f"{s['harmonize']:.3f} | {s['full_res']:.3f} | {s['write']:.3f} | {s['total']:.3f} | {rss:.0f} |")
    walls = {(size, b): wall for size, b, wall, *_ in rows}
    if "onnx" in backends:
        lines += ["", "Whole command, torch / onnx: " + ", ".join(
            f"{w}×{h} {walls[(w, h), 'torch'] / walls[(w, h), 'onnx']:.1f}×" for w, h in SIZES) + "."]
    lines += ["", "The largest stage, full_res, before (whole image) and after (mask's bounding box only, the "
              "default; same output to 1e-5), in this one process, median of 3:", "",
              "| size | full_res whole image s | full_res bounding box s | ratio |", "|---|---:|---:|---:|"]
    for (w, h), before, after in crop_ablation(src, msk, zoo):
        lines.append(f"| {w}×{h} | {before:.3f} | {after:.3f} | {before / after:.2f}× |")
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    import fire
    fire.Fire(main)
