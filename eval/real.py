"""Real composites without ground truth: how much a zoo changes them, and how little it moves real photos.

    python -m eval.real --composites /path/to/real_composites --photos /path/to/photos_with_masks --out reports/real

Real composites have no harmonized ground truth, so no fMSE; what can be measured is *where* a
method acts. For each folder (any layout ``predict_dir`` reads: images with masks):

- **change**: the mean absolute change inside the mask, 8-bit levels (``Σ m|out − in| / 3Σm``), of
  every composite of ``--composites``; **drift**: the same for every real photo of ``--photos``
  passed through unedited with its own mask; **selectivity** = change / drift.
- the detector's **score** (P(composite), :mod:`router.detector`) of each input and of its result:
  a harmonizer that goes the right way lowers it; and the detector's ROC AUC of each composite
  folder against all the photos;
- an **independent check** that shares no code or training with the detector: Lalonde & Efros's
  colour compatibility (ICCV 2007), the χ² distance between the foreground's and the background's
  CIELAB histograms; harmonizing a real composite should bring it down.
- a contact sheet, composite | each mode, at the input's resolution (up to ``--max_height`` rows).

Modes are the ``predict`` modes with the gate (``default``: the zoo's; ``unified``, ``routed``,
``soft``, ``oracle:D``), and ``ungated`` (the default mode with ``gate=False``: what the harmonizers
would do everywhere).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import names, print_json, run, shared_args
from common.colour import rgb_to_lab
from common.grid import image_grid, resize_to_height
from common.io import InputError, find_pairs, read_image_array, read_mask_array, write_image, write_text


def change(out: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """Mean |out − image| inside the mask (binarised at 0.5), 8-bit levels averaged over channels."""
    w = (mask > 0.5).astype(np.float64)
    return float((np.abs(out.astype(np.float64) - image) * 255 * w[..., None]).sum() / max(3 * w.sum(), 1))


def colour_compatibility(image: np.ndarray, mask: np.ndarray, bins: int = 8) -> float:
    """Lalonde & Efros's global colour compatibility: the χ² distance between the foreground's and
    the background's joint CIELAB histograms (``bins``³ cells; L in [0, 100], a and b in [−80, 80]);
    0 when the two sides have one colour distribution, up to 1."""
    lab = rgb_to_lab(np.clip(image, 0, 1)).reshape(-1, 3)
    fg = mask.reshape(-1) > 0.5
    edges = [np.linspace(0, 100, bins + 1), np.linspace(-80, 80, bins + 1), np.linspace(-80, 80, bins + 1)]
    clipped = np.clip(lab, [0, -80, -80], [100, 80, 80])
    hists = []
    for side in (fg, ~fg):
        h, _ = np.histogramdd(clipped[side], bins=edges)
        hists.append(h.ravel() / max(h.sum(), 1))
    p, q = hists
    den = p + q
    ok = den > 0
    return float(0.5 * ((p[ok] - q[ok]) ** 2 / den[ok]).sum())


def _modes(h, modes) -> list[tuple[str, str | None, bool]]:
    """(label, predict mode, gate) per requested mode."""
    out = []
    for m in modes:
        if m == "default":
            out.append(("default", None, True))
        elif m == "ungated":
            out.append(("ungated", None, False))
        else:
            out.append((m, m, True))
    return out


def _rows(h, pairs, modes, what: str, keep: int, max_height: int):
    rows, sheet = [], []
    for img_path, mask_path in tqdm(pairs, desc=what, unit="img"):
        try:
            x, m = read_image_array(img_path), read_mask_array(mask_path)
            res = {label: h.run(x, m, mode, gate=gate) for label, mode, gate in modes}
        except InputError as e:
            rows.append({"image": img_path.name, "error": str(e)})
            continue
        row = {"image": img_path.name, "score": res[modes[0][0]].score,
               "compatibility": colour_compatibility(x, m)}
        for label, r in res.items():
            row[label] = {"change": change(r.output, x, m), "gate": r.gate,
                          "score_after": h.detector.score(r.output, m) if h.detector is not None else None,
                          "compatibility_after": colour_compatibility(r.output, m)}
        rows.append(row)
        if len(sheet) < keep:
            cells = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in [x, *(r.output for r in res.values())]]
            sheet.append(cells)
    height = min(max_height, max((c[0].shape[1] for c in sheet), default=max_height))
    return rows, [[resize_to_height(c, height) if c.shape[1] != height else c for c in r] for r in sheet], height


def _summary(rows: list[dict], labels: list[str]) -> dict:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {"images": 0, "failed": len(rows)}
    out = {"images": len(ok), "failed": len(rows) - len(ok)}
    if ok[0]["score"] is not None:
        out["score"] = float(np.mean([r["score"] for r in ok]))
    out["compatibility"] = float(np.mean([r["compatibility"] for r in ok]))
    for label in labels:
        ch = np.array([r[label]["change"] for r in ok])
        s = {"change": float(ch.mean()), "change_median": float(np.median(ch)),
             "visible": float((ch >= 5).mean()),
             "compatibility_after": float(np.mean([r[label]["compatibility_after"] for r in ok])),
             "compatibility_lowered": float(np.mean([r[label]["compatibility_after"] < r["compatibility"] - 1e-9
                                                     for r in ok]))}
        if ok[0][label]["gate"] is not None:
            s["gate"] = float(np.mean([r[label]["gate"] for r in ok]))
        if ok[0][label]["score_after"] is not None:
            s["score_after"] = float(np.mean([r[label]["score_after"] for r in ok]))
            s["score_lowered"] = float(np.mean([r[label]["score_after"] < r["score"] - 1e-9 for r in ok]))
        out[label] = s
    return out


def evaluate(composites=(), photos=(), zoo=None, out="reports/real", modes=("default", "unified", "ungated"),
             sheet_rows: int = 12, max_height: int = 512, device: str = "cpu", overwrite: bool = False) -> dict:
    """Run the modes over every composite and photo; write ``results.json``, ``report.md`` and the sheets."""
    from router.api import Harmonizer
    out = Path(out)
    if (out / "results.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a report (pass --overwrite)")
    if not composites and not photos:
        raise InputError("give --composites and/or --photos (folders of images with masks)")
    h = Harmonizer.from_zoo(zoo, device)
    ms = _modes(h, modes)
    labels = [m[0] for m in ms]
    res = {"zoo": str(h.manifest["root"]), "modes": labels, "detector": bool(h.manifest.get("detector")), "sets": {}}
    out.mkdir(parents=True, exist_ok=True)
    for kind, folders in (("composites", composites), ("photos", photos)):
        for folder in folders:
            pairs = find_pairs(folder)
            rows, sheet, height = _rows(h, pairs, ms, f"{kind} {Path(folder).name}", sheet_rows, max_height)
            name = f"{kind}_{Path(folder).name}"
            summ = _summary(rows, labels)
            if sheet:
                summ["sheet"] = write_image(image_grid(sheet, height=height), out / f"sheet_{name}.png", overwrite=True).name
            res["sets"][name] = {"kind": kind, "folder": str(folder), "summary": summ, "images": rows}
    comp = [v["summary"] for v in res["sets"].values() if v["kind"] == "composites" and v["summary"]["images"]]
    phot = [v["summary"] for v in res["sets"].values() if v["kind"] == "photos" and v["summary"]["images"]]
    photo_scores = [r["score"] for v in res["sets"].values() if v["kind"] == "photos" for r in v["images"]
                    if "error" not in r and r["score"] is not None]
    if photo_scores:
        from common.metrics import roc_auc
        res["auc"] = {n: roc_auc(np.array([r["score"] for r in v["images"] if "error" not in r]), np.array(photo_scores))
                      for n, v in res["sets"].items() if v["kind"] == "composites" and v["summary"].get("score") is not None}
    if comp and phot:
        res["selectivity"] = {lab: float(np.mean([c[lab]["change"] for c in comp]) / max(np.mean([p[lab]["change"] for p in phot]), 1e-6))
                              for lab in labels}
    write_text(json.dumps(res, indent=1) + "\n", out / "results.json", overwrite=True)
    write_text(report_md(res), out / "report.md", overwrite=True)
    return res


def report_md(res: dict) -> str:
    labels = res["modes"]
    lines = ["# Real composites and real photos: where the zoo acts", "",
             f"Zoo `{res['zoo']}`; change = mean |output − input| inside the mask (8-bit levels); for photos "
             "it is the drift of an unedited photo. Score = the detector's P(composite) before → after. "
             "Compatibility = Lalonde & Efros's χ² colour distance between foreground and background (lower "
             "fits better; an independent check).", "",
             "| set | images | score | " + " | ".join(f"{lab}: change · gate · score after · compat. lowered" for lab in labels) + " |",
             "|---|---:|---:|" + "---:|" * len(labels)]
    for name, v in res["sets"].items():
        s = v["summary"]
        if not s.get("images"):
            continue
        cells = []
        for lab in labels:
            t = s[lab]
            cells.append(f"{t['change']:.1f} · {t.get('gate', float('nan')):.2f} · {t.get('score_after', float('nan')):.2f} · "
                         f"{100 * t['compatibility_lowered']:.0f} %")
        lines.append(f"| {name} | {s['images']} | {s.get('score', float('nan')):.2f} | " + " | ".join(cells) + " |")
    if res.get("auc"):
        lines += ["", "Detector ROC AUC, each composite set against all the photos: " +
                  ", ".join(f"{n} {v:.3f}" for n, v in res["auc"].items())]
    if "selectivity" in res:
        lines += ["", "Selectivity (composites' change / photos' drift): " +
                  ", ".join(f"{lab} {v:.1f}" for lab, v in res["selectivity"].items())]
    sheets = [(n, v["summary"]["sheet"]) for n, v in res["sets"].items() if v["summary"].get("sheet")]
    if sheets:
        lines += ["", "Contact sheets (input | " + " | ".join(labels) + "):", ""]
        lines += [f"- {n}: ![{n}]({f})" for n, f in sheets]
    return "\n".join(lines) + "\n"


@shared_args
def main(composites=None, photos=None, zoo=None, out="reports/real", modes="default,unified,ungated",
         sheet_rows: int = 12, max_height: int = 512, device: str = "cpu", overwrite: bool = False):
    """Measure where a zoo acts on real composites and real photos (no ground truth needed).

    Args:
        composites: comma-separated folders of real composites with masks.
        photos: comma-separated folders of real photos with masks (the drift check).
        out: report folder (results.json, report.md, sheet_*.png).
        modes: comma-separated: default, ungated (default mode without the gate), unified, routed, soft, oracle:D.
        sheet_rows: rows of each contact sheet (the first images of each folder).
        max_height: contact sheet row height cap (inputs smaller than it keep their resolution).
    """
    res = evaluate(names(composites) if composites else [], names(photos) if photos else [], zoo, out,
                   names(modes), sheet_rows, max_height, device, overwrite)
    print_json({"out": str(out), "selectivity": res.get("selectivity"), "auc": res.get("auc"),
                "sets": {k: {lab: round(v["summary"][lab]["change"], 2) for lab in res["modes"] if lab in v["summary"]}
                         for k, v in res["sets"].items()}})


CLI = main

if __name__ == "__main__":
    run(CLI)
