"""The paper's Table 1 and Table 2, reproduced on a benchmark in the iHarmony4 layout.

    python -m eval.tables table1 --data data/mini4 --out reports/table1     # rows 1-7, iS2AM (+ RainNet 1, 2, 7)
    python -m eval.tables table1 --data /path/to/iHarmony4 --archs issam256,hrnet18_idih256 --device cuda
    python -m eval.tables table2 --data data/mini4 --out reports/table2     # SycoNet ablations, with Div

Table 1 (per domain, every finetune starts from the all-domain harmonizer): 1 the base model; 2
finetune on the domain's originals; 3 + colour-transfer augmentation; 4 + random-LUT augmentation;
5 + SycoNet(all); 6 SycoNet(D) composites only; 7 originals + SycoNet(D). Rows 2 and 7 run with
``--seeds`` seeds (mean and spread reported). Table 2 (one domain): each SycoNet variant is trained
from scratch with the same budget, its Div measured on the domain's training images (10 samples per
real image, mean pairwise fMSE), and the harmonizer finetuned with it as in row 7; "z^c" uses the
full model with ``z ~ N(μ, σ²)`` from ``E^z`` on the original composites.

What the tables need and do not find under ``--runs`` (the all-domain SycoNet and harmonizers, the
per-domain SycoNets) is trained first, with the recipes ``scripts/train_models.sh`` runs
(:mod:`common.recipes`). Each report records its resolved configuration (every option and the recipes
used) in ``results.json`` and at the top of ``report.md``. Checkpoints go to
``<runs>/table1_<out name>/`` (``table2_…``), reports to ``<out>``. Every run is
recorded in ``<out>/results.json`` as it finishes, so a stopped table continues where it stopped;
``report.md`` is rewritten after each run. Sizes are options: the defaults fit both tables in about
two hours of this project's 2-core development machine; ``--device cuda`` and larger ``--steps``
are what a GPU user runs.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from common import recipes
from common.cli import names, run, shared_args
from common.io import write_text

ROW_NAMES = {1: "base model (all domains)", 2: "+ finetune on D", 3: "+ CT augmentation", 4: "+ random-LUT augmentation",
             5: "+ SycoNet(all)", 6: "SycoNet(D) composites only", 7: "+ SycoNet(D) (ours)"}
ABLATIONS = {"no_rec": "w/o rec", "no_real": "w/o I^r", "move_z": "move z", "lutv2": "LUTv2", "zc": "z^c",
             "none": "Ours"}
METRICS = ("MSE", "PSNR", "fMSE", "fSSIM")
FAMILIES = {"issam": "iS2AM", "rainnet": "RainNet", "hrnet": "HRNet + iDIH", "dih": "iDIH", "gct": "GCT"}


def family(arch: str) -> str:
    """The paper's name of a harmonizer variant's family (iS2AM runs every row, the others 1, 2, 7)."""
    from common import registry
    return FAMILIES.get(registry.family(arch), arch)


class Results:
    """``results.json`` under the output folder: one record per finished run, written atomically."""

    def __init__(self, out: Path, header: dict):
        self.path = out / "results.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"header": header, "runs": {}}

    def __contains__(self, key):
        return key in self.data["runs"]

    def __getitem__(self, key):
        return self.data["runs"][key]

    def add(self, key, record):
        self.data["runs"][key] = record
        write_text(json.dumps(self.data, indent=1), self.path, overwrite=True)


def _train_syconet(out, recipe: str, data, device="auto", arch=None, size=None, **kw):
    """Train a SycoNet by a recipe (``syconet_all``, ``syconet_domain``, ``syconet_ablation``); ``arch``
    and ``size`` (the tables' ``--syconet_arch`` / ``--syconet_size``) override it, encoders at half the size."""
    from syconet.train import main
    main(data=data, out=str(out), device=device,
         **recipes.kwargs(recipe, arch=arch, size=size, enc_size=size // 2 if size else None, **kw))


def _train_harmonizer(out, data, arch, device="auto"):
    """``<arch>_all`` by its recipe (``issam_all``, ``rainnet_all``; other names as issam's sizes)."""
    from harmonizers.train import main
    name = f"{arch}_all" if f"{arch}_all" in recipes.RECIPES else "issam_all"
    main(data=data, out=str(out), device=device, **recipes.kwargs(name, arch=None if arch in ("issam", "rainnet") else arch))


def prerequisites(data, runs: Path, domains, archs=("issam",), device="auto", log=print,
                  syconet_arch="syconet_r18", syconet_size=128, syconet_all: bool = True) -> dict:
    """Train what is missing under ``runs``: SycoNet(all), SycoNet(D) per domain, ``<arch>_all``
    (``issam`` and ``rainnet`` are trained as their 64-px CPU variants, other names as they are)."""
    runs.mkdir(parents=True, exist_ok=True)
    seconds = {}

    def ensure(path: Path, fn, **kw):
        if path.exists():
            return
        log(f"training prerequisite {path}")
        t0 = time.time()
        fn(path, **kw)
        seconds[path.name] = round(time.time() - t0, 1)

    sy = dict(arch=syconet_arch, size=syconet_size, device=device)
    if syconet_all or domains:
        ensure(runs / "syconet_all.safetensors", _train_syconet, recipe="syconet_all", data=data, **sy)
    for d in domains:
        ensure(runs / f"syconet_{d}.safetensors", _train_syconet, recipe="syconet_domain", data=data, domains=d,
               init=str(runs / "syconet_all.safetensors"), **sy)
    for arch in archs:
        ensure(runs / f"{arch}_all.safetensors", _train_harmonizer, data=data, arch=arch, device=device)
    return seconds


def _scores(ckpt, data, domain) -> dict:
    from eval.score import evaluate_checkpoint
    s = evaluate_checkpoint(ckpt, data, domain)["summary"][domain]
    return {m: s[m] for m in METRICS}


def _finetune(data, domain, runs, out, arch, row=None, augment=None, steps=100, batch_size=8, lr=1e-4, seed=0,
              device="auto"):
    from domains.finetune import main
    main(domain=domain, data=data, arch=arch, row=row, augment=augment, runs=str(runs), out=str(out), steps=steps,
         batch_size=batch_size, lr=lr, seed=seed, device=device, overwrite=True)


def _cell(records: list[dict], metric: str) -> str:
    vals = [r[metric] for r in records]
    fmt = {"PSNR": "{:.2f}", "fSSIM": "{:.4f}"}.get(metric, "{:.1f}")
    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format((max(vals) - min(vals)) / 2)}"


def _header_lines(res: Results) -> list[str]:
    h = res.data["header"]
    cfg = h["config"]
    return [f"Configuration (`python -m eval.tables {cfg['table']}` with these options; every one recorded in "
            "`results.json`):", "", "| option | value |", "|---|---|",
            *[f"| `--{k}` | `{v}` |" for k, v in cfg["options"].items()], "",
            "Recipes of the prerequisites (`common.recipes`): " + ", ".join(
                f"`{name}` {json.dumps(args)}" for name, args in cfg["recipes"].items()) + ".", "",
            f"Machine: {h['machine']}; device {h['device']}; sizes: {h['sizes']}.", ""]


def _config(table: str, options: dict, recipe_names) -> dict:
    """The resolved configuration of a table run: its options and the recipes it trains with."""
    return {"table": table, "options": options, "recipes": {n: recipes.kwargs(n) for n in recipe_names}}


@shared_args
def table1(data: str = "data/mini4", domains: str = "MiniFlickr,MiniDay2night", out: str = "reports/table1",
           runs: str = "runs", seeds: int = 2, steps: int = 100, batch_size: int = 8, lr: float = 1e-4,
           archs: str = "issam,rainnet", device: str = "auto", syconet_arch: str = "syconet_r18",
           syconet_size: int = 128) -> None:
    """Table 1 of the paper: rows 1-7 per domain with iS2AM, rows 1, 2, 7 with the other families
    (RainNet, HRNet + iDIH, ...).

    Args:
        out: report folder.
        runs: folder of trained models (<runs>/<arch>_all.safetensors is each arch's base model).
        seeds: seeds per row.
        archs: comma-separated harmonizer families.
        syconet_arch: SycoNet variant for the per-domain SycoNets.
        syconet_size: SycoNet training size.
    """
    from domains.dataset import resolve_domains
    doms, archs = resolve_domains(data, domains), tuple(names(archs))
    outp, runp = Path(out), Path(runs)
    outp.mkdir(parents=True, exist_ok=True)
    config = _config("table1", dict(data=data, domains=",".join(doms), out=out, runs=runs, seeds=seeds, steps=steps,
                                    batch_size=batch_size, lr=lr, archs=",".join(archs), device=device,
                                    syconet_arch=syconet_arch, syconet_size=syconet_size),
                     ["syconet_all", "syconet_domain", *(f"{a}_all" for a in archs if f"{a}_all" in recipes.RECIPES)])
    res = Results(outp, {"machine": _machine(device), "device": device, "data": data, "config": config,
                         "sizes": f"finetunes {steps} steps of batch {batch_size} (+ as many augmented composites), "
                                  f"lr {lr}, at the base model's size (64 px); scored with the official protocol at 256 px"})
    pre = prerequisites(data, runp, doms, archs, device, syconet_arch=syconet_arch, syconet_size=syconet_size)
    if pre:
        res.data["header"]["prerequisite_seconds"] = pre
    plan = []
    for d in doms:
        for arch in archs:
            for row in ((1, 2, 3, 4, 5, 6, 7) if family(arch) == "iS2AM" else (1, 2, 7)):
                for seed in (range(seeds) if row in (2, 7) else (0,)):
                    plan.append((d, arch, row, seed))
    for d, arch, row, seed in plan:
        key = f"{d}/{arch}/row{row}/seed{seed}"
        if key in res:
            continue
        t0 = time.time()
        if row == 1:
            ckpt = runp / f"{arch}_all.safetensors"
        else:
            ckpt = runp / f"table1_{outp.name}" / f"{arch}_{d}_row{row}_s{seed}.safetensors"
            _finetune(data, d, runp, ckpt, arch, row=row, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                      device=device)
        train_s = time.time() - t0
        res.add(key, {"domain": d, "arch": arch, "row": row, "seed": seed, **_scores(ckpt, data, d),
                      "train_seconds": round(train_s, 1), "seconds": round(time.time() - t0, 1)})
        _write_table1(res, outp, doms, archs)
    _write_table1(res, outp, doms, archs)


def _write_table1(res: Results, outp: Path, doms, archs):
    runs = list(res.data["runs"].values())
    lines = ["# Table 1 on the offline benchmark", ""] + _header_lines(res)
    lines += ["| method | row | " + " | ".join(f"{d} {m}" for d in doms for m in ("MSE↓", "PSNR↑", "fMSE↓")) +
              " | CPU/GPU s per run |", "|---|---:|" + "---:|" * (3 * len(doms)) + "---:|"]
    summary = {}
    for arch in archs:
        for row in sorted(ROW_NAMES):
            cells, secs, ok = [], [], False
            for d in doms:
                recs = [r for r in runs if r["domain"] == d and r["arch"] == arch and r["row"] == row]
                if recs:
                    ok = True
                    summary[(arch, row, d)] = statistics.mean(r["fMSE"] for r in recs)
                    secs += [r["seconds"] for r in recs]
                cells += [_cell(recs, m) if recs else "–" for m in ("MSE", "PSNR", "fMSE")]
            if ok:
                n = max(len([r for r in runs if r["arch"] == arch and r["row"] == row and r["domain"] == d]) for d in doms)
                name = f"{family(arch)} {ROW_NAMES[row]}" + (f" ({n} seeds)" if n > 1 else "")
                lines.append(f"| {name} | {row} | " + " | ".join(cells) + f" | {statistics.mean(secs):.0f} |")
    lines += ["", "Multi-seed rows: mean ± half the range over seeds. fMSE relative to row 2 (finetuning on the "
              "originals alone), negative = better:", ""]
    for arch in archs:
        for d in doms:
            if (arch, 2, d) not in summary:
                continue
            b = summary[(arch, 2, d)]
            parts = [f"row {r}: {100 * (summary[(arch, r, d)] - b) / b:+.1f}%" for r in sorted(ROW_NAMES)
                     if r != 2 and (arch, r, d) in summary]
            lines.append(f"- {arch} {d}: " + ", ".join(parts))
    write_text("\n".join(lines) + "\n", outp / "report.md", overwrite=True)


@shared_args
def table2(data: str = "data/mini4", domain: str = "MiniDay2night", out: str = "reports/table2", runs: str = "runs",
           syconet_steps: int = 300, steps: int = 100, batch_size: int = 8, lr: float = 1e-4, k: int = 10,
           arch: str = "issam", device: str = "auto", syconet_arch: str = "syconet_r18", syconet_size: int = 128) -> None:
    """Table 2: SycoNet ablations on one domain (Div, and the harmonizer finetuned with each).

    Args:
        domain: the domain.
        out: report folder.
        runs: folder of trained models.
        syconet_steps: training steps of each SycoNet ablation.
        k: samples per real image for Div.
        arch: harmonizer family finetuned with each ablation.
        syconet_arch: SycoNet variant.
        syconet_size: SycoNet training size.
    """
    from domains.dataset import HarmonyDataset
    from syconet.evaluate import diversity
    from common import registry
    outp, runp = Path(out), Path(runs)
    outp.mkdir(parents=True, exist_ok=True)
    config = _config("table2", dict(data=data, domain=domain, out=out, runs=runs, syconet_steps=syconet_steps,
                                    steps=steps, batch_size=batch_size, lr=lr, k=k, arch=arch, device=device,
                                    syconet_arch=syconet_arch, syconet_size=syconet_size),
                     ["syconet_ablation", *([f"{arch}_all"] if f"{arch}_all" in recipes.RECIPES else [])])
    res = Results(outp, {"machine": _machine(device), "device": device, "data": data, "config": config,
                         "sizes": f"each SycoNet from scratch on {domain} by the syconet_ablation recipe with "
                                  f"{syconet_steps} steps at {syconet_size} px (encoders at half that); harmonizer finetunes as Table 1 row 7: {steps} steps "
                                  f"of batch {batch_size}, lr {lr}; Div on the training images at {syconet_size} px, k={k}"})
    pre = prerequisites(data, runp, [], (arch,), device, syconet_arch=syconet_arch, syconet_size=syconet_size,
                        syconet_all=False)
    if pre:
        res.data["header"]["prerequisite_seconds"] = pre
    ck = runp / f"table2_{outp.name}"
    for abl in ("no_rec", "no_real", "move_z", "lutv2", "zc", "none"):
        if abl in res:
            continue
        t0 = time.time()
        syco = ck / f"syconet_{'none' if abl == 'zc' else abl}.safetensors"
        if not syco.exists():
            _train_syconet(syco, "syconet_ablation", data, device, syconet_arch, syconet_size, domains=domain,
                           ablation="none" if abl == "zc" else abl, steps=syconet_steps)
        t_syco = time.time() - t0
        model, _ = registry.load(syco, "cpu", kind="syconet")
        ds = HarmonyDataset(data, domain, "train", size=syconet_size, train=False)
        with torch.inference_mode():
            div = diversity(model, ds, k=k, zc=abl == "zc")
        harm = ck / f"{arch}_{domain}_{abl}.safetensors"
        aug = f"syconet_zc:{syco}" if abl == "zc" else f"syconet:{syco}"
        _finetune(data, domain, runp, harm, arch, augment=aug, steps=steps, batch_size=batch_size, lr=lr,
                  device=device)
        res.add(abl, {"ablation": abl, "Div": div, **_scores(harm, data, domain), "syconet_seconds": round(t_syco, 1),
                      "seconds": round(time.time() - t0, 1)})
        _write_table2(res, outp, domain)
    _write_table2(res, outp, domain)


def _write_table2(res: Results, outp: Path, domain):
    lines = [f"# Table 2 on the offline benchmark ({domain})", ""] + _header_lines(res)
    lines += ["| row | method | MSE↓ | fMSE↓ | fSSIM↑ | Div↑ | seconds |", "|---:|---|---:|---:|---:|---:|---:|"]
    for i, (abl, name) in enumerate(ABLATIONS.items(), 1):
        if abl in res:
            r = res[abl]
            lines.append(f"| {i} | {name} | {r['MSE']:.1f} | {r['fMSE']:.1f} | {r['fSSIM']:.4f} | {r['Div']:.2f} | "
                         f"{r['seconds']:.0f} |")
    if "none" in res and "no_rec" in res:
        ratio = res["none"]["Div"] / max(res["no_rec"]["Div"], 1e-9)
        lines += ["", f"Div of Ours / Div w/o rec = {ratio:.1f}×" + (
            f"; LUTv2 Div {'<' if res['lutv2']['Div'] < res['none']['Div'] else '≥'} Ours" if "lutv2" in res else "")]
    write_text("\n".join(lines) + "\n", outp / "report.md", overwrite=True)


def _machine(device: str) -> str:
    import os
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


CLI = {"table1": table1, "table2": table2}

if __name__ == "__main__":
    run(CLI)
