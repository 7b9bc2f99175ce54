"""Training-data pipeline throughput per worker, on the CPU (the proxy for feeding a GPU).

    .venv/bin/python bench/loader_throughput.py                          # this checkout
    .venv/bin/python bench/loader_throughput.py --baseline REV           # and REV's code, side by side

One DataLoader worker is one process with one thread producing items, so items/s of a single-thread
process is the loader's rate per worker (W workers give at most W times it, cores permitting). Each
pipeline runs in a fresh process (``torch.set_num_threads(1)``) for every checkout, interleaved, best
of ``--repeats``; the baseline is a ``git worktree`` of REV, removed afterwards. Pipelines:

- ``items (cached)``: ``HarmonyDataset`` training items at ``--size`` (random resized crop + flip of
  composite, real and mask) once every image is in the dataset's uint8 cache: what SycoNet, the
  harmonizers and the finetuned classifier read every step on a dataset that fits the cache.
- ``items (decoded)``: the same without the cache (``cache=False``): every item decodes its three
  files, as on iHarmony4 beyond the cache budget.
- ``synthesized (classifier)``: ``router.synth.ProcessComposites`` items (a fresh composite by a
  domain's own process, then the crop) — ``router.train --synthesize``.
- ``process pairs (harmonizer)``: ``--augment processes:0.3`` applied to batches of 16 items, per
  item, as the loader makes them on a CPU (on a GPU they are made batched on the device:
  ``bench/process_pairs.py``).
"""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("items (cached)", "items (decoded)", "synthesized (classifier)", "process pairs (harmonizer)")

# run inside a fresh interpreter with the checkout under test first on sys.path
CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from domains.dataset import HarmonyDataset
data, size, n, which = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
ds = HarmonyDataset(data, "all", "train", size=size, cache=which != "items (decoded)")
if which == "items (cached)":
    for i in range(len(ds)):
        ds[i]  # warm the cache
    fn = lambda i: ds[i % len(ds)]
elif which == "items (decoded)":
    fn = lambda i: ds[i % len(ds)]
elif which == "synthesized (classifier)":
    from router.synth import ProcessComposites
    syn = ProcessComposites(ds, length=n)
    fn = lambda i: syn[i]
else:
    from harmonizers.augment import ProcessAugmenter
    aug = ProcessAugmenter(0.3)
    batch = [ds[i] for i in range(16)]
    real = torch.stack([b["real"] for b in batch]); mask = torch.stack([b["mask"] for b in batch])
    n = max(16, n // 16 * 16)
    fn = lambda i: aug(real, mask) if i % 16 == 0 else None
for i in range(min(48, n)):  # steady state: caches filled, compiled kernels loaded
    fn(i)
t0 = time.perf_counter()
for i in range(n):
    fn(i)
print(json.dumps({"items_per_s": n / (time.perf_counter() - t0)}))
'''


def measure(root: Path, data: str, size: int, n: int, which: str) -> float:
    r = subprocess.run([sys.executable, "-c", CHILD, str(root), data, str(size), str(n), which], cwd=root,
                       capture_output=True, text=True, timeout=1800, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    if r.returncode != 0:
        raise RuntimeError(f"{which} at {root}: {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["items_per_s"]


def main(data: str = "data/mini4", size: int = 256, n: int = 200, repeats: int = 5, baseline: str | None = None,
         out: str = str(ROOT / "bench" / "loader_throughput.md")) -> None:
    """Items/s per worker of each pipeline, for this checkout and (``--baseline REV``) another."""
    data = str(Path(data).resolve())
    roots = {"this checkout": ROOT}
    tmp = None
    if baseline:
        tmp = Path(tempfile.mkdtemp()) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tmp), baseline], cwd=ROOT, check=True,
                       capture_output=True)
        rev = subprocess.run(["git", "rev-parse", "--short", baseline], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        roots = {f"baseline {rev}": tmp, "this checkout": ROOT}
    try:
        res = {w: {k: 0.0 for k in roots} for w in PIPELINES}
        for _ in range(repeats):
            for w in PIPELINES:
                for k, root in roots.items():  # interleaved, so a busy spell hits both alike
                    res[w][k] = max(res[w][k], measure(root, data, size, n, w))
                    print(w, k, round(res[w][k], 1), flush=True)
    finally:
        if tmp is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp)], cwd=ROOT, capture_output=True)
            shutil.rmtree(tmp.parent, ignore_errors=True)
    head = " | ".join(roots)
    lines = [f"# Data pipeline items/s per worker (`.venv/bin/python bench/loader_throughput.py"
             f"{' --baseline ' + baseline if baseline else ''}`)", "",
             f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; one thread per "
             f"process; `{Path(data).name}` training split at size {size}; {n} items per run, best of {repeats}.", "",
             f"| pipeline | {head} |" + (" ratio |" if baseline else ""),
             "|---|" + "---:|" * (len(roots) + (1 if baseline else 0))]
    for w in PIPELINES:
        vals = list(res[w].values())
        lines.append(f"| {w} | " + " | ".join(f"{v:.1f}" for v in vals) + " |" +
                     (f" {vals[-1] / vals[0]:.2f}× |" if baseline else ""))
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import fire
    fire.Fire(main)
