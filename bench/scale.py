"""What a user meets on iHarmony4's full size, on a fake tree in its layout (bench/fake_iharmony4.py).

    .venv/bin/python bench/scale.py --fractions 0.1,1.0 [--work /tmp/scale] [--out bench/scale.md]

For each fraction a tree is generated (``--size`` 64 px images), then each step runs as its own
command in a fresh process (as a user runs it), with its wall time and peak resident memory (the
process's and its waited-for children's, from ``wait4``):

- ``generate``: the fake tree itself;
- ``index``: reading both splits' lists and checking every file (``domains.dataset.load_samples``);
- ``loader 0w`` / ``loader 2w``: one whole pass of the training set through the training
  DataLoader at 64 px, batch 64, with 0 and 2 workers (items/s);
- ``train``: ``harmonizers.train --arch gct64`` for ``--steps`` steps over the full index;
- ``train killed + resumed``: the same run killed with SIGKILL halfway, then run again: it must end
  on the same step count from its last checkpoint;
- ``score``: ``eval.score --pred composite`` over the full test split (streamed);
- ``predict_dir killed + resumed``: ``router predict_dir`` (the shipped zoo, unified) over every test
  composite, killed once half its outputs exist, then run again with ``--skip_existing``: every
  output must exist once and nothing else be left in the folder.

``bench/scale.md`` gets a table per step: seconds and peak RSS per fraction, and their growth from
the smallest to the largest fraction.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(argv: list[str], kill_when=None, poll: float = 0.02) -> dict:
    """Run a command; its wall seconds, peak RSS (MiB) and exit status. ``kill_when``: a condition
    polled every ``poll`` seconds; when it holds, the command's process group gets SIGKILL (a
    command that ends first is not killed: the record says whether the kill came midway)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    if kill_when is not None:
        while p.poll() is None:
            if kill_when():
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(poll)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode(errors="replace")[-2000:]
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if kill_when is None and code != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({code}): {err}")
    return {"seconds": round(time.perf_counter() - t0, 2), "rss_mb": round(usage.ru_maxrss / 1024, 1), "code": code}


def snippet(code: str) -> list[str]:
    return [PY, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"]


def steps_for(root: Path, work: Path, steps: int) -> dict[str, dict]:
    """Every measured step on one tree."""
    out = {}
    out["index"] = run(snippet(f"from domains.dataset import load_samples; "
                               f"n = len(load_samples({str(root)!r}, 'all', 'train')) + len(load_samples({str(root)!r}, 'all', 'test'))"))
    for w in (0, 2):
        code = (f"import time, torch; from domains.dataset import HarmonyDataset; "
                f"ds = HarmonyDataset({str(root)!r}, 'all', 'train', size=64); "
                f"dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers={w}); t = time.perf_counter(); "
                f"n = sum(len(b['mask']) for b in dl); print(n / (time.perf_counter() - t))")
        r = run(snippet(code))
        out[f"loader {w}w"] = r
    ck = work / "train" / "gct.safetensors"
    shutil.rmtree(ck.parent, ignore_errors=True)
    train = [PY, "-m", "harmonizers.train", "--data", str(root), "--arch", "gct64", "--steps", str(steps),
             "--batch_size", "32", "--save_every", str(max(1, steps // 4)), "--device", "cpu", "--workers", "0",
             "--out", str(ck)]
    out["train"] = run(train)
    ck2 = work / "train2" / "gct.safetensors"
    shutil.rmtree(ck2.parent, ignore_errors=True)
    last_ck = ck2.with_name("gct.last.safetensors")
    killed = run([*train[:-1], str(ck2)], kill_when=last_ck.exists)  # after its first checkpoint
    resumed = run([*train[:-1], str(ck2)])
    last = json.loads(next(ln for ln in reversed(ck2.with_name("gct.log.jsonl").read_text().splitlines()) if '"step"' in ln))
    out["train killed + resumed"] = {"seconds": round(killed["seconds"] + resumed["seconds"], 2),
                                     "rss_mb": max(killed["rss_mb"], resumed["rss_mb"]),
                                     "ok": killed["code"] != 0 and ck2.exists() and last.get("step") == steps}
    out["score"] = run([PY, "-m", "eval.score", "--data", str(root), "--pred", "composite"])
    # the test composites as a folder predict_dir reads (links: a composite and its mask per name)
    stage, dst = work / "test_composites", work / "predicted"
    for d in (stage, dst):
        shutil.rmtree(d, ignore_errors=True)
    (stage / "masks").mkdir(parents=True)
    for entry in (root / "IHD_test.txt").read_text().split():
        comp = root / entry
        (stage / comp.name).symlink_to(comp)
        (stage / "masks" / (comp.stem + ".png")).symlink_to(comp.parents[1] / "masks" / (comp.stem.rsplit("_", 1)[0] + ".png"))
    argv = [PY, "-m", "router", "predict_dir", str(stage), "--out", str(dst), "--mode", "unified", "--skip_existing"]
    full = run(argv)
    results = lambda: [f for f in os.listdir(dst) if f.endswith("_harmonized.png")] if dst.exists() else []  # noqa: E731
    n_files = len(results())
    shutil.rmtree(dst)
    killed = run(argv, kill_when=lambda: len(results()) >= n_files // 2, poll=0.002)
    half = len(results())
    resumed = run(argv)
    others = [f for f in os.listdir(dst) if not f.endswith("_harmonized.png")]  # e.g. a killed write's temp file
    out["predict_dir killed + resumed"] = {"seconds": round(killed["seconds"] + resumed["seconds"], 2),
                                           "rss_mb": max(killed["rss_mb"], resumed["rss_mb"]),
                                           "ok": len(results()) == n_files and not others,
                                           "images": n_files, "at kill": half, "killed midway": 0 < half < n_files,
                                           "other files": others[:3],
                                           "one pass s": full["seconds"]}
    return out


def main(fractions: str = "0.1,1.0", work: str = "/tmp/scale", out: str = str(ROOT / "bench" / "scale.md"),
         size: int = 64, steps: int = 200) -> dict:
    """Generate the trees and measure every step (see the module docstring)."""
    fr = [float(f) for f in (fractions if isinstance(fractions, (list, tuple)) else str(fractions).split(","))]
    work = Path(work)
    res = {}
    for f in fr:
        root = work / f"ih4_{f:g}"
        shutil.rmtree(root, ignore_errors=True)
        gen = run([PY, str(ROOT / "bench" / "fake_iharmony4.py"), "--out", str(root), "--fraction", str(f),
                   "--size", str(size)])
        res[f] = {"generate": gen, **steps_for(root, work / f"runs_{f:g}", steps)}
        print(json.dumps({f: res[f]}), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    lines = ["# Scale: a fake iHarmony4 at " + ", ".join(f"{f:g}" for f in fr) + " of its size",
             "", f"Machine: {platform.machine()}, {platform.system()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `.venv/bin/python bench/scale.py --fractions {','.join(f'{f:g}' for f in fr)}`; "
             f"{size}-px images, {steps} training steps. Each step a fresh process; peak RSS from wait4.", "",
             "| step | " + " | ".join(f"{f:g}: s · MiB" for f in fr) + " | time × | RSS × | ok |",
             "|---|" + "---:|" * len(fr) + "---:|---:|---|"]
    for step in res[fr[0]]:
        cells = [f"{res[f][step]['seconds']:.1f} · {res[f][step]['rss_mb']:.0f}" for f in fr]
        a, b = res[fr[0]][step], res[fr[-1]][step]
        ok = all(res[f][step].get("ok", True) for f in fr)
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {b['seconds'] / max(a['seconds'], 1e-3):.1f} | "
                     f"{b['rss_mb'] / max(a['rss_mb'], 1e-3):.2f} | {'yes' if ok else 'NO'} |")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import fire
    fire.Fire(main)
