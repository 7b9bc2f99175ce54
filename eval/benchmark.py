"""Benchmark report: composite, classical baseline, unified, routed and oracle routing.

    python -m eval.benchmark --data data/mini4 --out reports/mini4            # the shipped zoo
    python -m eval.benchmark --data /path/to/iHarmony4 --zoo my_zoo --out reports/ihd

Scores the test split per domain and "All" (MSE, fMSE, PSNR, fPSNR, fSSIM at 256×256, PSNR peak
255), by foreground-ratio bin (0–5 %, 5–15 %, 15–100 %), the router's accuracy and the per-image
latency of each method, and writes ``report.md``, ``results.json`` and ``grid_<domain>.png`` (the
best and worst routed cases per domain: composite | each method | real).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from common.cli import run
from common.io import InputError, image_grid, resize_to_height, read_image, read_mask, write_image, write_text
from domains.dataset import load_samples
from router.api import Harmonizer

from . import metrics as M
from .baselines import BASELINES

METHODS = ("composite", "reinhard", "unified", "routed", "oracle")
GRID_HEIGHT = 128


@torch.inference_mode()
def benchmark(data, zoo=None, out="reports/benchmark", domains="all", split: str = "test", device: str = "cpu",
              overwrite: bool = False, n_grid: int = 3) -> dict:
    out = Path(out)
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a report (pass --overwrite)")
    from harmonizers.models import harmonize
    h = Harmonizer.from_zoo(zoo, device)
    samples = load_samples(data, domains, split)
    methods = [m for m in METHODS if m != "unified" or h.unified is not None]
    acc = {m: M.Accumulator() for m in methods}
    secs = {m: 0.0 for m in methods}
    correct, routed_to = 0, {}
    keep = []  # (domain, routed fMSE, index) for the picture grids
    thumbs = []  # per image: composite | each method | real, at grid height (no second pass)
    for i, s in enumerate(tqdm(samples, desc="benchmark", unit="img")):
        comp, real, mask = read_image(s.composite), read_image(s.real), read_mask(s.mask)
        outs = {}
        for m in methods:
            t0 = time.perf_counter()
            if m in BASELINES:
                outs[m] = BASELINES[m](comp, mask)
            elif m == "unified":
                outs[m] = harmonize(h.unified, comp, mask)
            elif m == "routed":
                probs = h._probs(comp, mask)
                name, model = h.choose("routed", probs)
                pred = max(probs, key=probs.get)
                correct += pred == s.domain
                routed_to.setdefault(s.domain, {}).setdefault(pred, 0)
                routed_to[s.domain][pred] += 1
                outs[m] = harmonize(model, comp, mask)
            else:  # oracle: the true domain's model (unified if the zoo has none for it)
                model = h.models.get(s.domain, h.unified)
                if model is None:
                    raise InputError(f"zoo has no harmonizer for {s.domain} and no unified model")
                outs[m] = harmonize(model, comp, mask)
            secs[m] += time.perf_counter() - t0
            acc[m].add(s.domain, M.compute(outs[m][None], real[None], mask[None]), names=[s.composite.name])
        keep.append((s.domain, acc["routed"].rows[-1]["fMSE"], i))
        thumbs.append([resize_to_height(x, GRID_HEIGHT) for x in [comp, *(outs[m] for m in methods[1:]), real]])
    res = {"data": str(data), "zoo": str(h.manifest["root"]), "split": split, "size": M.EVAL_SIZE,
           "methods": {m: {"summary": acc[m].summary(), "by_fg_ratio": acc[m].by_fg_ratio(),
                           "seconds_per_image": secs[m] / len(samples)} for m in methods},
           "router": {"accuracy": correct / len(samples), "routed_to": routed_to},
           "images": {m: acc[m].rows for m in methods}}
    out.mkdir(parents=True, exist_ok=True)
    grids = {}
    for d in dict.fromkeys(s.domain for s in samples):
        ranked = sorted((f, i) for dd, f, i in keep if dd == d)
        pick = ranked[:n_grid] + ranked[-n_grid:] if len(ranked) > 2 * n_grid else ranked
        rows = [thumbs[i] for _, i in pick]
        grids[d] = str(write_image(image_grid(rows, height=GRID_HEIGHT), out / f"grid_{d}.png", overwrite=True).name)
    res["grids"] = grids
    write_text(json.dumps(res, indent=1), out / "results.json", overwrite=True)
    write_text(report_md(res, methods), out / "report.md", overwrite=True)
    return res


def report_md(res: dict, methods) -> str:
    lines = [f"# Benchmark: `{res['data']}` ({res['split']}), zoo `{res['zoo']}`", "",
             f"Metrics at {res['size']}×{res['size']}, PSNR peak 255, averaged per image; All is image-weighted.",
             f"Router accuracy: {res['router']['accuracy']:.3f}.", ""]
    summ = {m: res["methods"][m]["summary"] for m in methods}
    domains = list(summ[methods[0]])
    for k in M.NAMES:
        lines += [f"## {k}", "", "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for d in domains:
            fmt = "{:.4f}" if k == "fSSIM" else "{:.2f}"
            lines.append(f"| {d} ({summ[methods[0]][d]['n']}) | " + " | ".join(fmt.format(summ[m][d][k]) for m in methods) + " |")
        lines.append("")
    lines += ["## fMSE by foreground ratio", "", "| bin | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for b in res["methods"][methods[0]]["by_fg_ratio"]:
        row = [res["methods"][m]["by_fg_ratio"][b] for m in methods]
        lines.append(f"| {b} ({row[0]['n']}) | " + " | ".join(f"{r['fMSE']:.2f}" for r in row) + " |")
    lines += ["", "## Latency (seconds per image, this machine)", "", "| " + " | ".join(methods) + " |",
              "|" + "---:|" * len(methods),
              "| " + " | ".join(f"{res['methods'][m]['seconds_per_image']:.3f}" for m in methods) + " |", "",
              "## Routing (rows: true domain, columns: predicted)", ""]
    names = sorted({p for r in res["router"]["routed_to"].values() for p in r} | set(res["router"]["routed_to"]))
    lines += ["| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for d, r in res["router"]["routed_to"].items():
        lines.append(f"| {d} | " + " | ".join(str(r.get(n, 0)) for n in names) + " |")
    lines += ["", "Pictures (best and worst routed fMSE per domain; composite | " + " | ".join(methods[1:]) + " | real):", ""]
    lines += [f"![{d}]({g})" for d, g in res.get("grids", {}).items()]
    return "\n".join(lines) + "\n"


def main(data="data/mini4", zoo: str | None = None, out: str = "reports/benchmark", domains="all",
         split: str = "test", device: str = "cpu", overwrite: bool = False) -> None:
    res = benchmark(data, zoo, out, domains, split, device, overwrite)
    fm = {m: round(v["summary"]["All"]["fMSE"], 2) for m, v in res["methods"].items()}
    print(json.dumps({"out": str(out), "router_accuracy": round(res["router"]["accuracy"], 4), "fMSE_All": fm}))


if __name__ == "__main__":
    run(main)
