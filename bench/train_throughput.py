"""Training throughput (images/s) of SycoNet, iS2AM and the domain classifier on this machine, and
the loss curve of 2 processes against 1 with the same global batch.

    .venv/bin/python bench/train_throughput.py            # writes bench/train_throughput.md
    python bench/train_throughput.py --device cuda --size 256 --steps 60   # one GPU: fp32 / AMP / channels_last

Each configuration is a real run of the training CLI (`python -m syconet.train` and so on) at the
offline benchmark's training sizes, in a fresh process; images/s is taken from the engine's JSON
log between the first and the last logged step (start-up and the first steps excluded). Configs:
1 process (all cores as torch threads, workers 0), 1 process with 2 DataLoader workers, and 2
processes under ``torchrun`` with gloo (1 thread each, the global batch split in two).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def models(size: int = 128) -> dict:
    """name: (module, args): the offline benchmark's training sizes (128), or the paper's (256)."""
    issam = "issam64" if size == 128 else f"issam{size}"
    return {
        f"SycoNet (r18 encoders at {size // 2}, LUT at {size})": ("syconet.train", ["--size", str(size), "--enc_size", str(size // 2)]),
        f"iS2AM ({issam})": ("harmonizers.train", ["--arch", issam]),
        "GCT (gct64, --augment processes:0.8, --regrade 1.0)": ("harmonizers.train", [
            "--arch", "gct64", "--augment", "processes:0.8", "--regrade", "1.0"]),
        f"classifier (lite0 at {size}, mask, --synthesize)": ("router.train", ["--size", str(size), "--synthesize", "True",
                                                                           "--head", "finetune", "--use_mask", "True"]),
    }


def run(module, args, out, nproc=1, workers=-1, steps=20, batch=16, device="cpu", threads=None, extra=()):
    """One training run; returns (images/s between the first and last logged step, log rows)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(nproc)]
    cmd = [*launcher, "-m", module, "--data", str(ROOT / "data/mini4"), *args, "--steps", str(steps),
           "--batch_size", str(batch), "--workers", str(workers), "--device", device, "--out", str(out),
           "--lr", "1e-4", *extra]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode:  # reported in the table, the other configurations still run
        print(f"FAILED: {' '.join(cmd)}\n{r.stderr[-3000:]}", file=sys.stderr, flush=True)
        return float("nan"), []
    log = [json.loads(ln) for ln in Path(str(out).replace(".safetensors", ".log.jsonl")).read_text().splitlines()]
    rows = [x for x in log if "elapsed_s" in x]
    a, b = rows[0], rows[-1]
    if b["elapsed_s"] <= a["elapsed_s"]:  # fewer than two logged steps (--steps below the log interval)
        return float("nan"), rows
    return (b["step"] - a["step"]) * batch / (b["elapsed_s"] - a["elapsed_s"]), rows


def waiting(rows) -> str:
    """Share of the time between the first and last logged step spent waiting for batches, and the
    mean GPU utilisation over the logged steps (when the engine could read it)."""
    a, b = rows[0], rows[-1]
    share = (b.get("data_wait_s", 0) - a.get("data_wait_s", 0)) / max(b["elapsed_s"] - a["elapsed_s"], 1e-9)
    util = [r["gpu_util"] for r in rows[1:] if "gpu_util" in r]
    return f"wait {share:.0%}" + (f", GPU {sum(util) / len(util):.0f} %" if util else "")


def main(device: str = "cpu", steps: int = 20, out: str | None = None, curve_steps: int = 40, size: int = 128,
         batch: int = 16, only: str = ""):
    """Training images/s per model and configuration. ``only``: comma-separated words a model's name
    must contain one of (e.g. ``SycoNet,iS2AM``); ``batch``: the global batch of every run."""
    out = Path(out or ROOT / ("bench/train_throughput.md" if device == "cpu" else f"bench/train_throughput_{device}.md"))
    cores = os.cpu_count()
    configs = [("1 process", dict(nproc=1, workers=0))]
    if device != "cpu":  # one GPU: the input pipeline, precision and memory layout
        configs = [("bf16 AMP, --workers 0", dict(workers=0)), ("bf16 AMP, workers auto", dict()),
                   ("bf16 AMP + channels_last, workers auto", dict(extra=["--channels_last", "True"])),
                   ("bf16 AMP + torch.compile, workers auto", dict(extra=["--compile", "True"]))]
    else:
        configs += [("1 process + 2 workers", dict(nproc=1, workers=2)),
                    ("2 processes (torchrun, gloo)", dict(nproc=2, workers=0, threads=max(1, cores // 2)))]
    import torch
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""
    chosen = {k: v for k, v in models(size).items() if not only or any(w in k for w in only.split(","))}
    lines = [f"Machine: {platform.machine()}, {cores} cores, device {device}{gpu}; {steps} steps of batch {batch} per run, "
             "images/s between the first and the last logged step (× against the first column; the share of that time "
             "the loop waited for batches, and the GPU's mean utilisation where NVML reports it).", "",
             "| model | " + " | ".join(c for c, _ in configs) + " |", "|---|" + "---:|" * len(configs)]
    with tempfile.TemporaryDirectory() as tmp:
        for mi, (name, (module, args)) in enumerate(chosen.items()):
            vals = []
            for cname, kw in configs:
                o = Path(tmp) / f"m{mi}_{module}_{len(vals)}.safetensors"
                ips, rows = run(module, args, o, steps=steps, device=device, batch=batch, **kw)
                vals.append((ips, waiting(rows) if rows else ""))
                print(name, cname, f"{ips:.1f} img/s", vals[-1][1], flush=True)
            base = vals[0][0]
            lines.append(f"| {name} | " + " | ".join(f"{v:.1f} ({v / base:.2f}×; {w})" if v == v else "failed"
                                                    for v, w in vals) + " |")
        if device == "cpu":  # loss curve: 2 processes vs 1, same seed and global batch
            _, one = run("harmonizers.train", ["--arch", "issam64"], Path(tmp) / "c1.safetensors", steps=curve_steps)
            _, two = run("harmonizers.train", ["--arch", "issam64"], Path(tmp) / "c2.safetensors", nproc=2,
                         threads=max(1, cores // 2), steps=curve_steps)
            lines += ["", f"Loss curve, iS2AM issam64, {curve_steps} steps, global batch 16, seed 0 "
                      "(logged loss = mean over the global batch):", "",
                      "| step | 1 process | 2 processes | relative difference |", "|---:|---:|---:|---:|"]
            for a, b in zip(one, two):
                lines.append(f"| {a['step']} | {a['loss']:.4f} | {b['loss']:.4f} | {abs(b['loss'] - a['loss']) / a['loss']:.1%} |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import fire
    fire.Fire(main)
