"""The published architectures' network pass at 256×256 on this machine's CPU, side by side.

    .venv/bin/python bench/published_forward.py          # writes bench/published_forward.md

Each variant is built with its official initialiser (random weights: the cost does not depend on
the values), put in eval mode and run on one 256×256 composite (batch 1) under ``torch.inference_mode``;
median of 5 after one warm-up, all in this one process, with torch's default threads. Ratios are
to iSSAM256, the published model users loaded until now. ONNX Runtime's time for the same pass
(exported as ``router.fast`` exports a zoo's models) is the second column.
"""
from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VARIANTS = ["issam256", "idih256", "hrnet18s_idih256", "hrnet18_idih256", "hrnet32_idih256", "rainnet256"]


def _onnx_seconds(model, x, m) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "m.onnx")
        torch.onnx.export(model, (x, m), path, input_names=["image", "mask"], output_names=["output"],
                          opset_version=18, dynamo=True, external_data=False, verbose=False)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {"image": x.numpy(), "mask": m.numpy()}
        return timed(sess.run, None, feeds, reps=5)[0]


def main(out: str = str(ROOT / "bench" / "published_forward.md")) -> None:
    import logging
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from common import registry
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 256, 256, generator=g)
    m = torch.zeros(1, 1, 256, 256)
    m[..., 64:200, 80:190] = 1
    rows = []
    for name in VARIANTS:
        model = registry.create(name).eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.inference_mode():
            t, _ = timed(model, x, m, reps=5)
        rows.append((name, params, t, _onnx_seconds(model, x, m)))
        print(rows[-1], flush=True)
    base = rows[0][2]
    lines = ["# Published architectures: one 256×256 network pass on the CPU", "",
             f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads; batch 1, median of 5 after a warm-up; "
             "`.venv/bin/python bench/published_forward.py`.", "",
             "| variant | parameters | torch s | × iSSAM256 | ONNX Runtime s |", "|---|---:|---:|---:|---:|"]
    for name, params, t, o in rows:
        lines.append(f"| {name} | {params:,} | {t:.3f} | {t / base:.2f} | {'–' if o is None else f'{o:.3f}'} |")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
