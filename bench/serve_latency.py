"""The web app under load, and one large composite from request to response, beside ``predict``.

    .venv/bin/python bench/serve_latency.py [--zoo models/default]     # writes bench/serve_latency.md

``python -m router serve`` runs in its own process (as a user starts it) on loopback with the zoo's
ONNX export. (1) 200 requests of the demo composite at 1024×768 (JPEG image + PNG mask, PNG back),
4 at a time from 4 client threads: errors, p50 / p95 / max latency, requests per second, and the
server's resident memory after 25, 100 and 200 requests. (2) The demo composite at 2048×1536, one
request at a time, 5 times: request-to-response seconds (upload, decode, harmonize, PNG encode,
download), beside ``router predict --backend onnx`` on the same files in a fresh process (its
``predict total`` and the command's wall time), the baseline, in the same run.
"""
from __future__ import annotations

import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_latency import demo_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(zoo: str = "models/default", out: str = str(ROOT / "bench" / "serve_latency.md")) -> None:
    port = _port()
    srv = subprocess.Popen([sys.executable, "-m", "router", "serve", "--zoo", zoo, "--port", str(port), "--backend", "onnx"],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    url = json.loads(srv.stdout.readline())["url"]
    for _ in range(600):
        try:
            httpx.get(url + "api/zoo", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    lines = ["# The web app: load and latency (`.venv/bin/python bench/serve_latency.py`)", "",
             f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; server "
             f"`python -m router serve --backend onnx --zoo {zoo}` in its own process, clients on loopback.", ""]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            img, m = demo_inputs(tmp, 1024, 768)
            files = {"image": ("c.jpg", img.read_bytes()), "mask": ("m.png", m.read_bytes())}
            httpx.post(url + "api/harmonize", files=files, timeout=120)  # warm: the models load
            lat, rss, codes = [], {}, []

            def one(i):
                t0 = time.perf_counter()
                r = httpx.post(url + "api/harmonize", files=files, timeout=120)
                lat.append(time.perf_counter() - t0)
                codes.append(r.status_code)
                if i + 1 in (25, 100, 200):
                    rss[i + 1] = _rss_mb(srv.pid)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(one, range(200)))
            wall = time.perf_counter() - t0
            errors = sum(c != 200 for c in codes)
            q = np.percentile(lat, [50, 95])
            lines += ["## 200 requests of a 1024×768 composite, 4 at a time", "",
                      "| errors | wall s | requests/s | p50 s | p95 s | max s | server RSS MiB after 25 / 100 / 200 |",
                      "|---:|---:|---:|---:|---:|---:|---|",
                      f"| {errors} | {wall:.1f} | {200 / wall:.2f} | {q[0]:.3f} | {q[1]:.3f} | {max(lat):.3f} | "
                      f"{rss.get(25, 0):.0f} / {rss.get(100, 0):.0f} / {rss.get(200, 0):.0f} |", ""]
            big, bm = demo_inputs(tmp, 2048, 1536)
            files = {"image": ("c.jpg", big.read_bytes()), "mask": ("m.png", bm.read_bytes())}
            req = []
            for _ in range(5):
                t0 = time.perf_counter()
                r = httpx.post(url + "api/harmonize", files=files, timeout=120)
                req.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
            cli_total, cli_wall = [], []
            for k in range(3):
                t0 = time.perf_counter()
                p = subprocess.run([sys.executable, "-m", "router", "predict", str(big), str(bm), "--zoo", zoo,
                                    "--backend", "onnx", "--out", str(Path(tmp) / f"o{k}.png")], cwd=ROOT,
                                   capture_output=True, text=True, check=True)
                cli_wall.append(time.perf_counter() - t0)
                cli_total.append(json.loads(p.stdout.strip().splitlines()[-1])["seconds"]["total"])
            med = statistics.median(req)
            lines += ["## One 2048×1536 composite, request to response (median of 5) beside `router predict`", "",
                      "| path | seconds | × predict total |", "|---|---:|---:|",
                      f"| web app, request to response (PNG back) | {med:.3f} | {med / statistics.median(cli_total):.2f} |",
                      f"| `router predict --backend onnx`: predict total (median of 3) | {statistics.median(cli_total):.3f} | 1.00 |",
                      f"| `router predict --backend onnx`: command wall (median of 3) | {statistics.median(cli_wall):.3f} | "
                      f"{statistics.median(cli_wall) / statistics.median(cli_total):.2f} |", ""]
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    Path(out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    import fire
    fire.Fire(main)
