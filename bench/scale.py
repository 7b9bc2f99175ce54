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
- ``train DDP 2 processes``: the same training under ``torch.distributed.run`` (gloo, 2 processes);
- ``syconet.train``, ``router.train`` (the probe head over every training composite, at 64 px) and
  ``finetune HFlickr`` (``domains.finetune`` from the trained GCT with the trained SycoNet's
  augmentation), with the iHarmony4 recipes' options on the CPU;
- ``score``: ``eval.score --pred composite`` over the full test split (streamed);
- ``eval.benchmark``: the routed vs unified report of a zoo built from these models, over the full
  test split (the picture grids keep only each domain's best and worst cases);
- ``eval.tables table1 HFlickr``: Table 1's rows 1, 2 and 7 for GCT on HFlickr (one seed, 20 steps);
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(argv: list[str], kill_when=None, poll: float = 0.02, parse=None) -> dict:
    """Run a command; its wall seconds, peak RSS (MiB) and exit status. ``kill_when``: a condition
    polled every ``poll`` seconds; when it holds, the command's process group gets SIGKILL (a
    command that ends first is not killed: the record says whether the kill came midway). Its
    stderr goes to a file (a pipe read only at the end would fill with progress bars and block it).
    ``parse``: reads the command's standard output into more fields of the record."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err_file, tempfile.TemporaryFile() as out_file:
        p = subprocess.Popen(argv, cwd=ROOT, stdout=out_file if parse else subprocess.DEVNULL, stderr=err_file,
                             start_new_session=True)
        if kill_when is not None:
            while p.poll() is None:
                if kill_when():
                    os.killpg(p.pid, signal.SIGKILL)
                    break
                time.sleep(poll)
        _, status, usage = os.wait4(p.pid, 0)
        err_file.seek(max(0, err_file.seek(0, 2) - 2000))
        err = err_file.read().decode(errors="replace")
        out_file.seek(0)
        extra = parse(out_file.read().decode(errors="replace")) if parse and status == 0 else {}
    code = os.waitstatus_to_exitcode(status)
    if kill_when is None and code != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({code}): {err}")
    return {"seconds": round(time.perf_counter() - t0, 2), "rss_mb": round(usage.ru_maxrss / 1024, 1), "code": code,
            **extra}


def snippet(code: str) -> list[str]:
    return [PY, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"]


def index_step(root: Path) -> dict:
    """Reading both splits' lists and checking every file."""
    return run(snippet(f"from domains.dataset import load_samples; "
                       f"n = len(load_samples({str(root)!r}, 'all', 'train')) + len(load_samples({str(root)!r}, 'all', 'test'))"))


def loader_step(root: Path, workers: int) -> dict:
    """One pass of the training set through the training DataLoader at 64 px, batch 64."""
    code = (f"import time, torch; from domains.dataset import HarmonyDataset; "
            f"ds = HarmonyDataset({str(root)!r}, 'all', 'train', size=64); "
            f"dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers={workers}); t = time.perf_counter(); "
            f"n = sum(len(b['mask']) for b in dl); print(n / (time.perf_counter() - t))")
    return run(snippet(code), parse=lambda out: {"items_per_s": round(float(out.split()[-1]), 1)})


def data_steps(root: Path) -> dict[str, dict]:
    """Indexing both splits, and one pass of the training loader with 0 and 2 workers."""
    return {"index": index_step(root), "loader 0w": loader_step(root, 0), "loader 2w": loader_step(root, 2)}


def last_step(log: Path) -> int | None:
    """The last step a training's JSON-lines log recorded."""
    rows = [json.loads(ln) for ln in log.read_text().splitlines() if '"step"' in ln]
    return rows[-1].get("step") if rows else None


def train_steps(root: Path, work: Path, steps: int, syconet_arch: str = "syconet_r18") -> dict[str, dict]:
    """The trainings a GPU user runs on iHarmony4 (scripts/train_models.sh, docs/reference.md), on
    the CPU for a few hundred steps: the harmonizer (alone, killed and resumed, and under DDP), SycoNet,
    the router and one domain's finetune with SycoNet augmentation (``syconet_arch``: the SycoNet variant;
    the suite names a tiny one, whose checkpoints take kilobytes instead of 360 MB)."""
    out = {}
    shutil.rmtree(work, ignore_errors=True)
    ck = work / "gct.safetensors"
    train = [PY, "-m", "harmonizers.train", "--data", str(root), "--arch", "gct64", "--steps", str(steps),
             "--batch_size", "32", "--save_every", str(max(1, steps // 4)), "--device", "cpu", "--workers", "0",
             "--out"]
    out["train"] = run([*train, str(ck)])
    ck2 = work / "killed" / "gct.safetensors"
    killed = run([*train, str(ck2)], kill_when=ck2.with_name("gct.last.safetensors").exists)  # after its first checkpoint
    resumed = run([*train, str(ck2)])
    out["train killed + resumed"] = {"seconds": round(killed["seconds"] + resumed["seconds"], 2),
                                     "rss_mb": max(killed["rss_mb"], resumed["rss_mb"]),
                                     "ok": killed["code"] != 0 and ck2.exists()
                                     and last_step(ck2.with_name("gct.log.jsonl")) == steps}
    ddp = work / "ddp" / "gct.safetensors"
    r = run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train[1:], str(ddp)])
    out["train DDP 2 processes"] = {**r, "ok": ddp.exists() and last_step(ddp.with_name("gct.log.jsonl")) == steps}
    sy = work / "syconet.safetensors"
    out["syconet.train"] = run([PY, "-m", "syconet.train", "--data", str(root), "--domains", "all", "--arch",
                                syconet_arch, "--size", "64", "--enc_size", "64", "--steps", str(max(1, steps // 4)),
                                "--batch_size", "16", "--workers", "2", "--device", "cpu", "--out", str(sy)])
    out["router.train"] = router_step(root, work / "router.safetensors")
    out["finetune HFlickr"] = run([PY, "-m", "domains.finetune", "HFlickr", "--data", str(root), "--arch", "gct",
                                   "--base", str(ck), "--augment", f"syconet:{sy}", "--steps", str(max(1, steps // 2)),
                                   "--batch_size", "32", "--workers", "0", "--device", "cpu",
                                   "--out", str(work / "gct_HFlickr.safetensors")])
    return out


def score_step(root: Path) -> dict:
    return run([PY, "-m", "eval.score", "--data", str(root), "--pred", "composite"])


def benchmark_step(root: Path, work: Path, runs: Path) -> dict:
    """The routed vs unified report of a zoo built from the trained models (the router, the GCT as
    the unified model, the HFlickr finetune for HFlickr)."""
    zoo = work / "zoo"
    shutil.rmtree(zoo, ignore_errors=True)
    shutil.rmtree(work / "benchmark", ignore_errors=True)
    gct, ft = runs / "gct.safetensors", runs / "gct_HFlickr.safetensors"
    run([PY, "-m", "router.zoo", "build", str(zoo), str(runs / "router.safetensors"), "--unified", str(gct),
         "--domains", f"HFlickr={ft}"])  # the other domains go to the unified model
    return run([PY, "-m", "eval.benchmark", "--data", str(root), "--zoo", str(zoo), "--out", str(work / "benchmark")])


def tables_step(root: Path, work: Path, runs: Path) -> dict:
    """Table 1's rows 1, 2 and 7 for GCT on HFlickr, from the trained GCT and SycoNet."""
    tab = work / "table_runs"
    for d in (tab, work / "table1"):
        shutil.rmtree(d, ignore_errors=True)
    tab.mkdir(parents=True)
    (tab / "gct_all.safetensors").symlink_to(runs / "gct.safetensors")
    (tab / "syconet_all.safetensors").symlink_to(runs / "syconet.safetensors")
    return run([PY, "-m", "eval.tables", "table1", "--data", str(root), "--domains", "HFlickr", "--archs", "gct",
                "--seeds", "1", "--steps", "20", "--batch_size", "16", "--syconet_size", "64", "--device", "cpu",
                "--runs", str(tab), "--out", str(work / "table1")])


def router_step(root: Path, out: Path) -> dict:
    """The router's probe head over every training composite, at 64 px."""
    out.unlink(missing_ok=True)
    return run([PY, "-m", "router.train", "--data", str(root), "--size", "64", "--batch_size", "64", "--workers", "2",
                "--device", "cpu", "--out", str(out)])


def eval_steps(root: Path, work: Path, runs: Path, reports: bool = True) -> dict[str, dict]:
    """Scoring, the routed vs unified report and Table 1 over the full test split (``reports``), then
    predict_dir over every test composite, killed midway and resumed."""
    shutil.rmtree(work, ignore_errors=True)
    out = {"score": score_step(root)}
    if reports:
        out["eval.benchmark"] = benchmark_step(root, work, runs)
        out["eval.tables table1 HFlickr"] = tables_step(root, work, runs)
    out["predict_dir killed + resumed"] = predict_dir_step(root, work)
    return out


# the steps that make nothing another step needs (router.train: a second model beside the first):
# ``--only`` runs them alone, on a kept tree and the models a complete run of the fraction left in
# its work folder
ALONE = {"index": lambda root, work: index_step(root),
         "loader 0w": lambda root, work: loader_step(root, 0),
         "loader 2w": lambda root, work: loader_step(root, 2),
         "router.train": lambda root, work: router_step(root, work / "train" / "router.alone.safetensors"),
         "score": lambda root, work: score_step(root),
         "eval.benchmark": lambda root, work: benchmark_step(root, work / "eval", work / "train"),
         "eval.tables table1 HFlickr": lambda root, work: tables_step(root, work / "eval", work / "train"),
         "predict_dir killed + resumed": lambda root, work: predict_dir_step(root, work / "eval")}


def predict_dir_step(root: Path, work: Path) -> dict:
    """``router predict_dir`` (the shipped zoo, unified) over every test composite, killed once half
    its outputs exist and run again with ``--skip_existing``: every output must exist once."""
    stage, dst = work / "test_composites", work / "predicted"
    for d in (stage, dst):
        shutil.rmtree(d, ignore_errors=True)
    (stage / "masks").mkdir(parents=True)
    for entry in (root / "IHD_test.txt").read_text().split():  # a composite and its mask per name, as links
        comp = root / entry
        (stage / comp.name).symlink_to(comp)
        (stage / "masks" / (comp.stem + ".png")).symlink_to(comp.parents[1] / "masks" / (comp.stem.rsplit("_", 1)[0] + ".png"))
    argv = [PY, "-m", "router", "predict_dir", str(stage), "--out", str(dst), "--mode", "unified", "--skip_existing"]
    results = lambda: [f for f in os.listdir(dst) if f.endswith("_harmonized.png")] if dst.exists() else []  # noqa: E731
    names = sorted(p.stem for p in stage.iterdir() if p.is_symlink())  # predict_dir's order
    n_files = len(names)
    midway = dst / f"{names[n_files // 2 - 1]}_harmonized.png"  # one stat per poll: listing the folder would cost
    killed = run(argv, kill_when=midway.exists, poll=0.002)  # more than the command at 100 %
    half = len(results())
    resumed = run(argv)
    others = [f for f in os.listdir(dst) if not f.endswith("_harmonized.png")]  # e.g. a killed write's temp file
    return {"seconds": round(killed["seconds"] + resumed["seconds"], 2), "rss_mb": max(killed["rss_mb"], resumed["rss_mb"]),
            "ok": len(results()) == n_files and not others, "images": n_files, "at kill": half,
            "killed midway": 0 < half < n_files, "other files": others[:3]}


def steps_for(root: Path, work: Path, steps: int, reports: bool = True,
              syconet_arch: str = "syconet_r18") -> dict[str, dict]:
    """Every measured step on one tree (the reports' steps only with ``reports``)."""
    return {**data_steps(root), **train_steps(root, work / "train", steps, syconet_arch),
            **eval_steps(root, work / "eval", work / "train", reports)}


def report(res: dict, size: int, steps: int, reports_up_to: float = 1.0) -> str:
    """The markdown table of the fractions measured so far (growth: from the smallest to the largest
    fraction a step ran at)."""
    fr = list(res)
    lines = ["# Scale: a fake iHarmony4 at " + ", ".join(f"{f:g}" for f in fr) + " of its size",
             "", f"Machine: {platform.machine()}, {platform.system()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `.venv/bin/python bench/scale.py --fractions {','.join(f'{f:g}' for f in fr)}"
             + (f" --reports_up_to {reports_up_to:g}" if reports_up_to < max(fr) else "") + "`; "
             f"{size}-px images, {steps} training steps. Each step a fresh process; peak RSS from wait4; "
             "growth (×) from the smallest to the largest fraction the step ran at.", "",
             "| step | " + " | ".join(f"{f:g}: s · MiB" for f in fr) + " | time × | RSS × | ok |",
             "|---|" + "---:|" * len(fr) + "---:|---:|---|"]
    for step in dict.fromkeys(k for f in fr for k in res[f]):
        have = [f for f in fr if step in res[f]]
        cells = [f"{res[f][step]['seconds']:.1f} · {res[f][step]['rss_mb']:.0f}" if step in res[f] else "—" for f in fr]
        a, b = res[have[0]][step], res[have[-1]][step]
        ok = all(res[f][step].get("ok", True) for f in have)
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {b['seconds'] / max(a['seconds'], 1e-3):.1f} | "
                     f"{b['rss_mb'] / max(a['rss_mb'], 1e-3):.2f} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(fractions: str = "0.1,1.0", work: str = "/tmp/scale", out: str = str(ROOT / "bench" / "scale.md"),
         size: int = 64, steps: int = 200, reports_up_to: float = 1.0, keep: bool = False, only: str = "",
         syconet_arch: str = "syconet_r18") -> dict:
    """Generate the trees and measure every step (see the module docstring); the report is
    rewritten after each fraction, with the raw records beside it (``<out>.json``, merged with the
    records it already holds: fractions and steps not rerun keep theirs).
    ``reports_up_to``: the largest fraction at which eval.benchmark and eval.tables run (on a CPU
    they cost about 0.3 s per test image; their growth is then read between the smaller fractions).
    ``keep``: keep each generated tree (``<work>/ih4_<fraction>``; it is removed by default).
    ``only``: comma-separated steps of :data:`ALONE` to run alone, on the tree and models an earlier
    run with ``--keep`` left in ``--work`` (a missing tree is generated again: same bytes).
    ``syconet_arch``: the SycoNet variant ``syconet.train`` builds (the GPU recipe's by default)."""
    fr = [float(f) for f in (fractions if isinstance(fractions, (list, tuple)) else str(fractions).split(","))]
    want = [w.strip() for w in (only if isinstance(only, (list, tuple)) else str(only).split(",")) if w.strip()]
    if set(want) - set(ALONE):
        raise SystemExit(f"--only: {sorted(set(want) - set(ALONE))} cannot run alone; choose from {list(ALONE)}")
    work, out = Path(work), Path(out)
    records = out.with_suffix(".json")
    res = {float(f): r for f, r in json.loads(records.read_text()).items()} if records.exists() else {}
    for f in fr:
        root, runs = work / f"ih4_{f:g}", work / f"runs_{f:g}"
        if want and not (runs / "train" / "router.safetensors").exists():
            raise SystemExit(f"--only needs the models of a complete run at {f:g} in {runs}")
        if not (want and root.exists()):
            shutil.rmtree(root, ignore_errors=True)
            gen = run([PY, str(ROOT / "bench" / "fake_iharmony4.py"), "--out", str(root), "--fraction", str(f),
                       "--size", str(size)])
        if want:
            res.setdefault(f, {}).update({w: ALONE[w](root, runs) for w in want})
        else:
            res[f] = {**res.get(f, {}), "generate": gen, **steps_for(root, runs, steps, f <= reports_up_to, syconet_arch)}
        print(json.dumps({f: res[f]}), flush=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        res = dict(sorted(res.items()))
        out.write_text(report(res, size, steps, reports_up_to))
        records.write_text(json.dumps(res, indent=1))
    print(report(res, size, steps, reports_up_to))
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import fire
    fire.Fire(main)
