"""Benchmark report: composite, classical baseline, unified, routed, soft-routed and oracle routing.

    python -m eval.benchmark --data data/mini4 --out reports/mini4            # the shipped zoo
    python -m eval.benchmark --data /path/to/iHarmony4 --zoo my_zoo --out reports/ihd
    python -m eval.benchmark --composites data/real_composites/composites --out reports/real_composites

Scores the test split per domain and "All" (MSE, fMSE, PSNR, fPSNR, fSSIM; the official iHarmony4
protocol by default, ``--protocol fullres`` for ours, see ``eval.metrics``), by foreground-ratio
bin (0–5 %, 5–15 %, 15–100 %), the router's accuracy and the per-image latency of each method, and writes ``report.md``, ``results.json`` and ``grid_<domain>.png`` (the
best and worst routed cases per domain: composite | each method | real).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from common.cli import run, shared_args
from common.shipped import shown
from common.grid import Extremes, image_grid, resize_to_height, thumbnail
from common.io import InputError, read_image, read_mask, write_image, write_text
from domains.dataset import load_samples
from router.api import Harmonizer

from common import metrics as M
from .baselines import BASELINES
from .compare import real_drift

log = logging.getLogger(__name__)
METHODS = ("composite", "reinhard", "unified", "routed", "soft", "oracle", "default")
# "default" is what `router predict` does: the zoo's default mode, its change scaled by the detector's
# gate (scored when the zoo has a detector); the other modes are the harmonizers' whole change.
GRID_HEIGHT = 128


def _methods(h: Harmonizer, samples) -> tuple[list[str], str | None]:
    """The methods to score, and a note when the zoo's domains are not the data's (routing to
    domains the data does not have measures nothing: the unified model stands for the zoo)."""
    methods = [m for m in METHODS if (m != "unified" or h.unified is not None) and (m != "default" or h.detector is not None)]
    foreign = sorted({s.domain for s in samples} - set(h.domains))
    if not foreign:
        return methods, None
    if h.unified is None:
        raise InputError(f"zoo {h.manifest['root']} knows the domains {h.domains}, not the data's {foreign}, "
                         "and has no unified model: nothing to score (train a zoo on this data)")
    note = (f"The zoo's domains ({', '.join(h.domains)}) are not the data's ({', '.join(foreign)}): "
            "routed, soft and oracle are not scored, and the unified model stands for the zoo.")
    log.warning(note)
    return [m for m in methods if m not in ("routed", "soft", "oracle", "default")], note


def _run_methods(h: Harmonizer, methods, comp, mask, domain: str, route: bool = True):
    """Every method's output for one composite, the seconds each took, and the routed prediction
    (None when routing is not scored: ``route`` False). The classifier runs once; its time counts
    as the routed method's."""
    from harmonizers.fullres import harmonize
    outs, took, probs, pred, t_route = {}, {}, None, None, 0.0
    if route:
        t0 = time.perf_counter()
        probs = h.probabilities(comp, mask)
        pred, t_route = max(probs, key=probs.get), time.perf_counter() - t0
    for m in methods:
        t0 = time.perf_counter()
        if m in BASELINES:
            outs[m] = BASELINES[m](comp, mask)
        elif m == "default":
            outs[m] = h.run(comp, mask).output
        elif m == "unified":
            outs[m] = harmonize(h.unified, comp, mask)
        elif m in ("soft", "routed"):
            outs[m] = harmonize(h.select(m, probs)[1], comp, mask)
        else:  # oracle: the true domain's model (unified if the zoo has none for it)
            model = h.models.get(domain, h.unified)
            if model is None:
                raise InputError(f"zoo has no harmonizer for {domain} and no unified model")
            outs[m] = harmonize(model, comp, mask)
        took[m] = time.perf_counter() - t0 + (t_route if m == "routed" else 0.0)
    return outs, took, pred


def chosen(methods: list[str], want) -> list[str]:
    """``--methods``: all of ``methods``, or those named (comma-separated), the composite always
    first (every other method is measured against it); one that cannot be scored here is refused."""
    if want in (None, "", "all"):
        return methods
    names = [m.strip() for m in (want if isinstance(want, (list, tuple)) else str(want).split(",")) if m.strip()]
    bad = [m for m in names if m not in methods]
    if bad:
        raise InputError(f"--methods: {', '.join(bad)} cannot be scored with this zoo and data; "
                         f"these can: {', '.join(methods)}")
    return ["composite", *(m for m in methods if m in names and m != "composite")]


@torch.inference_mode()
def benchmark(data, zoo=None, out="reports/benchmark", domains="all", split: str = "test", device: str = "cpu",
              overwrite: bool = False, n_grid: int = 3, protocol: str = "iharm", methods="all") -> dict:
    out = Path(out)
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a report (pass --overwrite)")
    h = Harmonizer.from_zoo(zoo, device)
    samples = load_samples(data, domains, split)
    proto = M.Protocol(protocol)
    available, note = _methods(h, samples)
    methods = chosen(available, methods)
    ranked_by = next((m for m in ("default", h.default_mode, "unified") if m in methods), methods[-1])  # what ships
    acc = {m: M.Accumulator() for m in methods}
    secs = {m: 0.0 for m in methods}
    correct, routed_to = 0, {}
    extremes = {}  # per domain, the best and worst cases' thumbnails (bounded: no second pass, no growth)
    for s in tqdm(samples, desc="benchmark", unit="img"):
        full = read_image(s.composite)
        comp, real, mask = proto.inputs(full, read_image(s.real), read_mask(s.mask))
        outs, took, pred = _run_methods(h, methods, comp, mask, s.domain, route=note is None)
        if pred is not None:
            correct += pred == s.domain
            routed_to.setdefault(s.domain, {}).setdefault(pred, 0)
            routed_to[s.domain][pred] += 1
        for m in methods:
            secs[m] += took[m]
            acc[m].add(s.domain, proto.metrics(outs[m][None], real[None], mask[None]), names=[s.composite.name])
        aspect = full.shape[2] / full.shape[1]  # pictures keep the photo's shape whatever the protocol's
        extremes.setdefault(s.domain, Extremes(n_grid)).add(
            acc[ranked_by].rows[-1]["fMSE"], [thumbnail(x, GRID_HEIGHT, aspect) for x in [comp, *(outs[m] for m in methods[1:]), real]])
    drift = real_drift(samples, drift_predictors(h, methods))
    res = {"data": shown(data), "zoo": shown(h.manifest["root"]), "split": split, "size": M.EVAL_SIZE, "protocol": protocol,
           "methods": {m: {"summary": acc[m].summary(), "by_fg_ratio": acc[m].by_fg_ratio(),
                           "seconds_per_image": secs[m] / len(samples), "real_drift": drift[m]} for m in methods},
           "router": None if note else {"accuracy": correct / len(samples), "routed_to": routed_to},
           "note": note, "ranked_by": ranked_by,
           "images": {m: acc[m].rows for m in methods}}
    out.mkdir(parents=True, exist_ok=True)
    grids = {}
    for d, ex in extremes.items():
        rows = [thumbs for _, thumbs in ex.picked()]
        grids[d] = str(write_image(image_grid(rows, height=GRID_HEIGHT), out / f"grid_{d}.png", overwrite=True).name)
    res["grids"] = grids
    write_text(json.dumps(res, indent=1), out / "results.json", overwrite=True)
    write_text(report_md(res, methods), out / "report.md", overwrite=True)
    return res


def drift_predictors(h, methods) -> dict:
    """``predict(image, mask, domain)`` for each benchmark mode, as ``eval.compare.real_drift`` takes."""
    from harmonizers.fullres import harmonize

    def one(m):
        if m in BASELINES:
            return lambda i, k, d: BASELINES[m](i, k)
        if m == "oracle":
            return lambda i, k, d: harmonize(h.models.get(d, h.unified), i, k)
        if m == "default":
            return lambda i, k, d: h.run(i, k).output
        if m == "unified":
            return lambda i, k, d: harmonize(h.unified, i, k)
        return lambda i, k, d: harmonize(h.select(m, h.probabilities(i, k))[1], i, k)
    return {m: one(m) for m in methods}


def harm_rates(res: dict, methods) -> dict[str, dict[str, float]]:
    """Per method and domain (and All): the share of images whose fMSE is above the composite's
    (:func:`common.metrics.harms`)."""
    base = {r["name"]: r for r in res["images"]["composite"]}
    out = {}
    for m in methods:
        rows = res["images"][m]
        per = {}
        for r in rows:
            worse = M.harms(r["fMSE"], base[r["name"]]["fMSE"])
            for d in (r["domain"], "All"):
                per.setdefault(d, []).append(worse)
        out[m] = {d: sum(v) / len(v) for d, v in per.items()}
    return out


def report_md(res: dict, methods) -> str:
    lines = [f"# Benchmark: `{res['data']}` ({res['split']}), zoo `{res['zoo']}`", "",
             f"Scoring: {M.Protocol(res.get('protocol', 'fullres'), res['size']).describe()}; "
             "averaged per image; All pools every image.",
             (f"Router accuracy: {res['router']['accuracy']:.3f}." if res["router"] else f"**Note.** {res['note']}"),
             ""]
    summ = {m: res["methods"][m]["summary"] for m in methods}
    domains = list(summ[methods[0]])
    for k in M.NAMES:
        lines += [f"## {k}", "", "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for d in domains:
            fmt = "{:.4f}" if k == "fSSIM" else "{:.2f}"
            lines.append(f"| {d} ({summ[methods[0]][d]['n']}) | " + " | ".join(fmt.format(summ[m][d][k]) for m in methods) + " |")
        lines.append("")
    harm = harm_rates(res, methods)
    lines += ["## Harm rate (share of composites whose fMSE the method raises by more than 0.01 %)", "",
              "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for d in domains:
        lines.append(f"| {d} | " + " | ".join(f"{harm[m][d]:.0%}" for m in methods) + " |")
    lines += ["", "## Real-photo drift (mean change of unedited real photos inside the mask, 8-bit levels)", "",
              "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for d in domains:
        lines.append(f"| {d} | " + " | ".join(f"{res['methods'][m]['real_drift'][d]:.2f}" for m in methods) + " |")
    lines += ["", "## fMSE by foreground ratio", "", "| bin | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for b in res["methods"][methods[0]]["by_fg_ratio"]:
        row = [res["methods"][m]["by_fg_ratio"][b] for m in methods]
        lines.append(f"| {b} ({row[0]['n']}) | " + " | ".join(f"{r['fMSE']:.2f}" for r in row) + " |")
    lines += ["", "## Latency (seconds per image, this machine)", "", "| " + " | ".join(methods) + " |",
              "|" + "---:|" * len(methods),
              "| " + " | ".join(f"{res['methods'][m]['seconds_per_image']:.3f}" for m in methods) + " |", ""]
    if res["router"]:
        routed_to = res["router"]["routed_to"]
        names = sorted({p for r in routed_to.values() for p in r} | set(routed_to))
        lines += ["## Routing (rows: true domain, columns: predicted)", "",
                  "| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for d, r in routed_to.items():
            lines.append(f"| {d} | " + " | ".join(str(r.get(n, 0)) for n in names) + " |")
        lines.append("")
    lines += [f"Pictures (best and worst {res['ranked_by']} fMSE per domain; composite | "
              + " | ".join(methods[1:]) + " | real):", ""]
    lines += [f"![{d}]({g})" for d, g in res.get("grids", {}).items()]
    return "\n".join(lines) + "\n"


def real_composites(composites, zoo=None, out="reports/real_composites", masks=None, device: str = "cpu",
                    overwrite: bool = False, grid_rows: int = 12) -> dict:
    """Routed vs unified on real composites without ground truth: what can be measured.

    Per composite: the router's choice and confidence (top probability, and the margin to the
    second), and how far the routed and unified results are apart inside the mask (fMSE and mean
    absolute difference in 8-bit levels, at the evaluation size). Writes ``report.md``,
    ``results.json`` and ``grid.png`` (composite | routed | unified, largest difference first).
    """
    from common.io import find_pairs, read_pair
    out = Path(out)
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a report (pass --overwrite to replace it)")
    pairs = find_pairs(composites, masks)
    h = Harmonizer.from_zoo(zoo, device)
    rows, largest = [], Extremes(grid_rows)  # the largest differences' pictures (bounded memory)
    for img_path, mask_path in tqdm(pairs, desc="real composites", unit="img"):
        image, mask = read_pair(img_path, mask_path)
        r = h.run(image, mask, "routed")
        u = h.run(image, mask, "unified").output
        probs = r.probabilities
        top = sorted(probs.values(), reverse=True)
        a, b, m = M.prepare(r.output[None], u[None], mask[None])  # 0-255 at the evaluation size
        diff = {"fMSE": float(M.fmse_255(a, b, m)[0]),
                "mean_abs_levels": float(((a - b).abs() * m).sum() / (3 * m.sum()).clamp_min(1))}
        rows.append({"name": img_path.name, "routed_to": r.domain, "confidence": top[0],
                     "margin": top[0] - (top[1] if len(top) > 1 else 0.0), "probabilities": probs,
                     "routed_vs_unified": diff, "fg_ratio": float(mask.mean())})
        largest.add(-diff["fMSE"], [resize_to_height(x, GRID_HEIGHT) for x in (image, r.output, u)])
    rows.sort(key=lambda r: -r["routed_vs_unified"]["fMSE"])
    counts = {}
    for r in rows:
        counts[r["routed_to"]] = counts.get(r["routed_to"], 0) + 1
    res = {"composites": str(composites), "n": len(rows), "routing": counts, "rows": rows,
           "mean_confidence": sum(r["confidence"] for r in rows) / len(rows),
           "mean_routed_vs_unified_fMSE": sum(r["routed_vs_unified"]["fMSE"] for r in rows) / len(rows)}
    lines = [f"# Routed vs unified on {len(rows)} real composites (`{composites}`)", "",
             "No ground truth exists for these images: the table says where the router sends them, how sure "
             "it is, and how much routing changes the result compared with the unified model (inside the mask, "
             f"at {M.EVAL_SIZE}×{M.EVAL_SIZE}). Which is better is for the user study (`eval.userstudy`).", "",
             "| routed to | composites | share |", "|---|---:|---:|"]
    for d, c in sorted(counts.items(), key=lambda x: -x[1]):
        lines.append(f"| {d} | {c} | {c / len(rows):.0%} |")
    lines += ["", f"Mean router confidence {res['mean_confidence']:.3f}; mean routed-vs-unified fMSE "
              f"{res['mean_routed_vs_unified_fMSE']:.1f}.", "",
              "| composite | routed to | confidence | margin | routed vs unified fMSE | mean |Δ| (levels) |",
              "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['routed_to']} | {r['confidence']:.3f} | {r['margin']:.3f} | "
                     f"{r['routed_vs_unified']['fMSE']:.1f} | {r['routed_vs_unified']['mean_abs_levels']:.2f} |")
    lines += ["", "![composite | routed | unified, largest difference first](grid.png)"]
    write_text("\n".join(lines) + "\n", out / "report.md", overwrite=True)
    write_image(image_grid([t for _, t in largest.picked()[:grid_rows]], height=GRID_HEIGHT), out / "grid.png",
                overwrite=True)
    write_text(json.dumps(res, indent=1), out / "results.json", overwrite=True)
    return res


@shared_args
def main(data="data/mini4", zoo: str | None = None, out: str = "reports/benchmark", domains="all",
         split: str = "test", device: str = "cpu", overwrite: bool = False, composites: str | None = None,
         masks: str | None = None, protocol: str = "iharm", methods: str = "all") -> None:
    """Score the zoo's modes on a benchmark's test split, or (--composites) real composites without ground truth.

    Args:
        out: report folder (report.md, results.json, picture grids).
        composites: folder of real composites: report where they are routed and how routed and unified differ.
        masks: their masks folder (default: found next to the composites).
        protocol: iharm (the official iHarmony4 evaluation, default) or fullres (ours), as eval.score.
        methods: all, or the comma-separated methods to score (the composite always is; on a large
            split, e.g. default,unified scores what ships in a third of the time).
    """
    if composites:
        res = real_composites(composites, zoo, out, masks, device, overwrite)
        print(json.dumps({"out": str(out), "n": res["n"], "routing": res["routing"],
                          "mean_routed_vs_unified_fMSE": round(res["mean_routed_vs_unified_fMSE"], 2)}))
        return
    if protocol not in M.PROTOCOLS:
        raise InputError(f"--protocol must be one of {M.PROTOCOLS}, got {protocol!r}")
    res = benchmark(data, zoo, out, domains, split, device, overwrite, protocol=protocol, methods=methods)
    fm = {m: round(v["summary"]["All"]["fMSE"], 2) for m, v in res["methods"].items()}
    acc = round(res["router"]["accuracy"], 4) if res["router"] else None
    print(json.dumps({"out": str(out), "router_accuracy": acc, "fMSE_All": fm, "note": res["note"]}))


CLI = main

if __name__ == "__main__":
    run(CLI)
