"""Write models/default/README.md (the model card) from the zoo, the pipeline log and the reports.

    .venv/bin/python scripts/model_card.py --report reports/mini4/results.json
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import fire

from common import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _source(f: str, md: dict) -> str:
    """The run a zoo file was copied from, by the names scripts/train_models.sh gives."""
    if md["kind"] == "classifier":
        return "router.safetensors"
    if f.startswith("syconet"):
        return f
    tag = "all" if f == "harmonizer_unified.safetensors" else f[len("harmonizer_"):-len(".safetensors")]
    return f"{md['arch']}_{tag}.safetensors"


def _recipe(md: dict) -> str:
    cal = md.get("calibration") or {}
    gate = f", gate scale {cal['strength']:.2f}" if "strength" in cal else ""
    n = next(iter((cal.get("scores") or {}).values()), {}).get("photos")  # the photos that chose the scale
    count = lambda what: f"{n} {what}{'s' * (n != 1)}"  # noqa: E731
    if cal.get("folds"):
        gate += f" (cross-fitted over {len(cal['folds'])} folds{', ' + count('photo') if n else ''})"
    elif "strength" in cal:
        gate += f" (on {count('held-out training photo') if n else 'held-out training photos'})"
    if "drift_limit" in cal:
        gate += ", lowest held-out fMSE" if cal["drift_limit"] is None else f", drift limit {cal['drift_limit']} levels"
    if cal.get("rescaled_from") is not None:
        gate += f" (rescaled from {cal['rescaled_from']:.2f} by harmonizers.rescale)"
    start = f"from `{Path(md['init']).name}`, " if md.get("init") else ""
    bal = f", `--balance {md['balance']}`" if md.get("balance", "none") != "none" else ""
    return f"{start}`--augment {md.get('augment', 'none')}`, regrade {md.get('regrade', 0)}{bal}{gate}"


TRAINED_BY = {
    "models": ("Trained by `make models` (`scripts/train_models.sh`) on the offline benchmark (`data/mini4`, built "
               "with `python -m domains.build --photos assets/photos --out data/mini4 --seed 0`)"),
    "v3": ("Trained by `LABELME=/path/to/labelme bash scripts/train_v3.sh` on benchmark v3 (`data/v3`: the bundled "
           "photos and the LabelMe photos of 57 of its 75 sources, `python -m domains.build --photos "
           "assets/photos,runs/lm_split/train/photos=MiniFlickr --out data/v3 --seed 0`; each photo folder weighs the "
           "same in the batches and in the gate calibration; the detector is `make models`' with `LABELME`)"),
}


def main(zoo: str = str(ROOT / "models/default"), report: str = str(ROOT / "reports/mini4/results.json"),
         pipeline_log: str = str(ROOT / "runs/pipeline.log"), router_report: str = str(ROOT / "runs/router.report.json"),
         trained_by: str = "models", runs: str = "runs"):
    """Write the model card of ZOO from its checkpoints' metadata, the pipeline log and the reports.
    ``trained_by``: models (scripts/train_models.sh) or v3 (scripts/train_v3.sh); ``runs``: their runs folder."""
    if trained_by not in TRAINED_BY:
        raise SystemExit(f"--trained_by must be one of {', '.join(TRAINED_BY)}")
    zoo = Path(zoo)
    man = json.loads((zoo / "zoo.json").read_text())
    times = {}
    if Path(pipeline_log).is_file():
        for m in re.finditer(r"done (\S+) in (\d+) s", Path(pipeline_log).read_text()):
            times[Path(m.group(1)).name] = int(m.group(2))
    rr = json.loads(Path(router_report).read_text()) if Path(router_report).is_file() else None
    if rr and "seconds" in rr:
        times["router.safetensors"] = rr["seconds"]  # the report belongs to the zoo's classifier
    lines = ["# Default model zoo", "",
             f"{TRAINED_BY[trained_by]}, on the 2-core CPU development machine. Weights are stored as float16 and "
             "loaded as float32.", "",
             "| file | kind | arch | size px | trained on | steps | recipe | source run | train time here | MB |",
             "|---|---|---|---:|---|---:|---|---|---:|---:|"]
    rows, total = _file_rows(zoo, man, times, runs)
    det = checkpoint.read_meta(zoo / man["detector"]) if man.get("detector") else None
    if det:
        rows.append(_detector_row(zoo, man["detector"], det))
        total += (zoo / man["detector"]).stat().st_size / 2 ** 20
    lines += rows
    script = {"models": "scripts/train_models.sh", "v3": "scripts/train_v3.sh"}[trained_by]
    lines += ["", f"Total: {total:.1f} MB. The exact commands are in `{script}`. Each gate scale is "
              "chosen on held-out training photos (cross-fitted, or a held-out tenth, as the recipe column says): "
              "the lowest error, or the lowest among those that move real photos by at most the drift limit; 0 "
              "leaves that domain's composites as they are. A scale chosen on one or two photos is a noisy choice; "
              "on modern photos of sources no training photo came from the zoo helps less, and its weakest domain "
              "can be made worse ([docs/results.md](../../docs/results.md#modern-photos-of-sources-no-model-saw)).", "",
              f"Default mode (`zoo.json` `\"mode\"`, what `router predict` runs when no `--mode` is given): "
              f"`{man.get('mode', 'routed')}`.", ""]
    if rr:
        lines += _classifier_lines(rr)
    if det:
        lines += _detector_lines(det)
    if Path(report).is_file():
        lines += _report_lines(json.loads(Path(report).read_text()))
    (zoo / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _file_rows(zoo: Path, man: dict, times: dict, runs: str = "runs") -> tuple[list[str], float]:
    """One table row per network of the zoo, and their megabytes."""
    files = [man["classifier"], *man["domains"].values()] + ([man["unified"]] if man.get("unified") else []) + \
        list((man.get("syconets") or {}).values())
    rows, total = [], 0.0
    for f in files:
        md = checkpoint.read_meta(zoo / f)
        size = md.get("size") or md["config"].get("size") or md["config"].get("enc_size")
        src = _source(f, md)
        recipe = _recipe(md) if md["kind"] == "harmonizer" else "—"
        mb = (zoo / f).stat().st_size / 2 ** 20
        total += mb
        t = times.get(src)
        steps = f"probe fit on {md['probe']['n']} composites" if "probe" in md else md.get("step")
        rows.append(f"| `{f}` | {md['kind']} | {md['arch']} | {size} | {', '.join(md['domains'])} | {steps} | "
                    f"{recipe} | `{runs}/{src}` | {f'{t / 60:.1f} min' if t else '—'} | {mb:.2f} |")
    return rows, total


def _detector_row(zoo: Path, name: str, det: dict) -> str:
    tr, gate = det.get("training", {}), det["config"]["gate"]
    mb = (zoo / name).stat().st_size / 2 ** 20
    return (f"| `{name}` | detector | boosted trees | {det['config']['work_side']} | "
            f"{tr.get('items', '?')} photos and composites | — | gate {gate['lo']:.2f} → {gate['hi']:.2f}, "
            f"budget {tr.get('budget', '?')} | `runs/detector.safetensors` | — | {mb:.2f} |")


def _classifier_lines(rr: dict) -> list[str]:
    head = {"probe": "frozen, a linear head on its pooled features", "finetune": "finetuned"}[rr.get("head", "finetune")]
    if rr.get("regions"):
        head += " and the last stage's foreground and background means"
    if rr.get("balance") == "source":
        head += ", each source of photos weighing the same inside its domain"
    if rr.get("relight"):
        day, night = rr["relight"].split(":")
        head += f", {day}'s composites taken to night as extra {night} rows"
        if rr.get("relight_from") == "night_folders":
            head += " (those of the photo folders that hold night photos)"
    return [f"Classifier: `{rr['backbone']}` ({rr['pretrained']} weights, {head}; mask channel: {rr['use_mask']}), "
            f"test accuracy {rr['accuracy']:.3f}.", "", rr["table"], ""]


def _detector_lines(det: dict) -> list[str]:
    ho = det.get("held_out", {})
    auc = ", ".join(f"{k} {v:.3f}" for k, v in ho.get("auc", {}).items())
    return [f"Detector: trained on {', '.join(det['training'].get('photos', []))} (photos), "
            f"{', '.join(det['training'].get('composites', [])) or 'no real composites'} (real composites), "
            f"{det['training'].get('cutouts') or 'no cut-outs'}, {det['training'].get('data') or 'no dataset'}; "
            f"held out by source ({det['training'].get('folds')} folds), ROC AUC: {auc}.", ""]


def _report_lines(res: dict) -> list[str]:
    methods = list(res["methods"])
    lines = ["Test split, fMSE under the official iHarmony4 protocol (`python -m eval.benchmark --data data/mini4 --out reports/mini4`):", "",
             "| domain | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for d in res["methods"][methods[0]]["summary"]:
        lines.append(f"| {d} | " + " | ".join(f"{res['methods'][m]['summary'][d]['fMSE']:.1f}" for m in methods) + " |")
    return lines + [""]


if __name__ == "__main__":
    fire.Fire(main)
