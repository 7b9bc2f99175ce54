"""Methods side by side on one split: error, harm rate, and what they do to real photos.

    python -m eval.compare --data data/mini4 --ckpts gct=runs/gct.safetensors,issam=runs/issam.safetensors
    python -m eval.compare --data data/mini4 --split train --ckpts gct=runs/gct.safetensors --out reports/val

For every method (``composite`` and ``reinhard`` always, then each ``NAME=CHECKPOINT``) and domain:
fMSE, MSE and PSNR (``eval.metrics``; the official protocol unless ``--protocol fullres``), the
change of fMSE against the composite, the **harm rate** (the share of composites whose fMSE the
method raises by more than 0.01 %), and the **real-photo drift**: each real
image of the split goes in with its own mask and no edit, and the mean absolute change inside the
mask is reported in 8-bit levels (a harmonizer that does no harm leaves a real photo alone).
Writes ``results.json``, ``report.md`` and ``grid_best_worst.png`` (composite | each method | real
for the images the last method helps most and harms most).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from common.cli import run
from common.shipped import shown
from common.grid import image_grid, thumbnail
from common.io import InputError, read_image, read_mask, write_image, write_text
from domains.dataset import load_samples

from common import metrics as M
from .baselines import BASELINES

GRID_HEIGHT = 128


def parse_ckpts(spec: str | None) -> dict[str, str]:
    """``"name=path,name=path"`` → {name: path} (each file must exist)."""
    out = {}
    for item in filter(None, (spec or "").split(",")):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--ckpts {item!r}: use NAME=CHECKPOINT, e.g. gct=runs/gct.safetensors")
        if not Path(path).is_file():
            raise InputError(f"{path}: checkpoint not found (--ckpts {name})")
        out[name] = path
    return out


def predictors(models: dict, protocol: str = "fullres") -> dict:
    """composite, reinhard and one ``predict(image, mask)`` per loaded model, as ``protocol`` runs it."""
    from .score import model_predictor
    preds = {"composite": BASELINES["composite"], "reinhard": BASELINES["reinhard"]}
    for name, model in models.items():
        preds[name] = model_predictor(model, protocol=protocol)
    return preds


@torch.inference_mode()
def compare(data, ckpts: dict[str, str], domains="all", split: str = "test", device: str = "cpu",
            n_grid: int = 4, protocol: str = "iharm") -> tuple[dict, torch.Tensor]:
    from common import registry
    proto = M.Protocol(protocol)
    models = {name: registry.load(path, device, kind="harmonizer")[0] for name, path in ckpts.items()}  # each loaded once
    preds = predictors(models, protocol)
    samples = load_samples(data, domains, split)
    if not samples:
        raise InputError(f"{data}: no {split} composites for domains {domains}")
    acc = {m: M.Accumulator() for m in preds}
    per_image, thumbs = [], []
    for s in tqdm(samples, desc="compare", unit="img"):
        full = read_image(s.composite)
        comp, real, mask = proto.inputs(full, read_image(s.real), read_mask(s.mask))
        outs = {m: p(comp, mask) for m, p in preds.items()}
        row = {"domain": s.domain, "name": s.composite.name}
        for m, out in outs.items():
            acc[m].add(s.domain, proto.metrics(out[None], real[None], mask[None]), names=[s.composite.name])
            row[m] = acc[m].rows[-1]["fMSE"]
        per_image.append(row)
        aspect = full.shape[2] / full.shape[1]
        thumbs.append([thumbnail(x, GRID_HEIGHT, aspect) for x in [comp, *(outs[m] for m in preds if m != "composite"), real]])
    # the drift on real photos is ours: each method at full resolution, background kept
    full_preds = predictors(models, "fullres")
    drift = real_drift(samples, {m: (lambda p: lambda i, k, _d: p(i, k))(p) for m, p in full_preds.items()})
    res = {"data": shown(data), "split": split, "size": M.EVAL_SIZE, "protocol": protocol, "methods": {}}
    for m in preds:
        summ, base = acc[m].summary(), acc["composite"].summary()
        for d, v in summ.items():
            mine = [r for r in per_image if d == "All" or r["domain"] == d]
            v["fMSE_vs_composite"] = v["fMSE"] / base[d]["fMSE"] - 1
            v["harm_rate"] = sum(M.harms(r[m], r["composite"]) for r in mine) / len(mine)
            v["real_drift"] = drift[m].get(d)
        res["methods"][m] = summ
    last = list(preds)[-1]
    ranked = sorted(range(len(per_image)), key=lambda i: per_image[i][last] - per_image[i]["composite"])
    pick = ranked[:n_grid] + ranked[-n_grid:]
    grid = image_grid([thumbs[i] for i in pick], height=GRID_HEIGHT)
    res["grid"] = {"columns": ["composite", *[m for m in preds if m != "composite"], "real"],
                   "rows": [per_image[i]["name"] for i in pick], "ranked_by": last}
    return res, grid


@torch.inference_mode()
def real_drift(samples, preds) -> dict[str, dict[str, float]]:
    """Per method and domain (and All): mean |output − input| inside the mask, in 8-bit levels, when
    each real photo of the samples goes in unedited with its own mask (a harmonizer should leave it).
    ``preds`` maps a method to ``predict(image, mask, domain)``."""
    seen, sums = set(), {m: {} for m in preds}
    for s in samples:
        if s.real in seen:
            continue
        seen.add(s.real)
        real, mask = read_image(s.real), read_mask(s.mask)
        for m, p in preds.items():
            diff = float(M.drift(p(real, mask, s.domain)[None], real[None], mask[None]))
            for d in (s.domain, "All"):
                sums[m].setdefault(d, []).append(diff)
    return {m: {d: sum(v) / len(v) for d, v in dd.items()} for m, dd in sums.items()}


def report_md(res: dict) -> str:
    methods = list(res["methods"])
    domains = list(res["methods"]["composite"])
    lines = [f"# {res['split']} split of {res['data']}", "",
             f"Scoring: {M.Protocol(res.get('protocol', 'fullres'), res['size']).describe()}.", "",
             "fMSE (change against the composite) · harm rate · real-photo drift in 8-bit levels", "",
             "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for d in domains:
        cells = []
        for m in methods:
            v = res["methods"][m][d]
            cells.append(f"{v['fMSE']:.0f} ({v['fMSE_vs_composite']:+.0%}) · {v['harm_rate']:.0%} · "
                         f"{v['real_drift']:.1f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", f"Grid: {', '.join(res['grid']['columns'])}; the rows {res['grid']['ranked_by']} helps most, "
              "then those it harms most."]
    return "\n".join(lines) + "\n"


def main(data: str = "data/mini4", ckpts: str | None = None, domains: str = "all", split: str = "test",
         out: str = "reports/compare", device: str = "cpu", overwrite: bool = False, protocol: str = "iharm") -> dict:
    """Score composite, Reinhard and checkpoints side by side, with harm rate and real-photo drift.

    Args:
        data: dataset root in the iHarmony4 layout.
        ckpts: comma-separated NAME=CHECKPOINT harmonizers to compare.
        domains: comma-separated domain names, or all.
        split: train or test (choose models on train-split photos no training saw, report on test).
        out: folder for results.json, report.md and grid_best_worst.png.
        device: auto, cpu, cuda or cuda:N.
        overwrite: replace an existing report in OUT.
        protocol: iharm (the official iHarmony4 evaluation, default) or fullres (ours), as eval.score.
    """
    outp = Path(out)
    if (outp / "results.json").exists() and not overwrite:
        raise InputError(f"{outp}: already holds a report (pass --overwrite)")
    if protocol not in M.PROTOCOLS:
        raise InputError(f"--protocol must be one of {M.PROTOCOLS}, got {protocol!r}")
    res, grid = compare(data, parse_ckpts(ckpts), domains, split, device, protocol=protocol)
    outp.mkdir(parents=True, exist_ok=True)
    write_image(grid, outp / "grid_best_worst.png", overwrite=True)
    write_text(json.dumps(res, indent=1) + "\n", outp / "results.json", overwrite=True)
    write_text(report_md(res), outp / "report.md", overwrite=True)
    print(report_md(res))
    return {m: res["methods"][m]["All"]["fMSE"] for m in res["methods"]}


CLI = main

if __name__ == "__main__":
    run(CLI)
