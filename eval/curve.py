"""Learning curves: what more training photos (and more capacity) buy.

    python -m eval.curve --data data/v3 --tests data/v3,data/mini4 --sizes 200,400,800,all --seeds 0,1 \\
        --archs gct64,issam64 --out reports/curve

For every family (``--archs``: registered harmonizer variants), training-set size (``--sizes``: a
number of training photos, or ``all``) and seed, a harmonizer is trained on a nested, seeded subset
of the training photos of ``--data`` (``harmonizers.train --train_photos N --seed S``) with the
family's recipe (``common.recipes``: ``gct_all`` with its gate calibrated on 10 % of the training
photos instead of 5 folds, ``issam_all``, ``rainnet_all``; any ``--steps`` given overrides), with
``--balance`` (default ``collection``: each photo folder weighs the same), and scored on the test
split of every ``--tests`` data set (``DATA:all``: both splits, for a benchmark of unseen photos) (``eval.compare``: fMSE against the composite, harm rate, real-
photo drift, under the official protocol; the per-domain changes are recorded too). Every run is recorded in ``<out>/results.json`` as it
finishes, so a stopped curve continues where it stopped (and a later call with more sizes, seeds or
families adds to it); ``report.md`` (the table, mean ± half the
range over seeds) and ``curve.png`` (fMSE change against training photos, one line per family and
test set; with the ``reports`` extra, matplotlib) are rewritten after each run. Checkpoints go to ``<runs>/curve/``.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from common import recipes, registry
from common.cli import names, run, shared_args
from common.io import InputError, write_text

from common import metrics as M

RECIPE = {"gct": "gct_all", "issam": "issam_all", "rainnet": "rainnet_all"}


def _sizes(sizes) -> list[int]:
    out = []
    for s in names(sizes):
        if str(s) == "all":
            out.append(0)
        else:
            try:
                out.append(int(s))
            except ValueError:
                raise InputError(f"--sizes: {s!r} is not a number of photos or 'all'") from None
    return out


def train_options(arch: str, steps: int | None) -> dict:
    """The family's recipe for a curve point: its all-domain recipe, a cross-fitted gate calibrated on
    a 10 % hold-out instead (one training, not six), ``steps`` overriding."""
    family = registry.family(arch)
    kw = recipes.kwargs(RECIPE.get(family, "issam_all"), steps=steps)
    kw["arch"] = arch
    if kw.pop("calibrate_folds", 0):
        kw.update(val_every=kw["steps"], val_fraction=0.1)
    return kw


@torch.inference_mode()
def score_on(data, ckpt, base: dict, device: str = "cpu") -> dict:
    """A checkpoint on ``data``'s test split (``DATA:train`` or ``DATA:all`` for the others), as
    ``eval.compare`` scores it (official protocol): All fMSE, its
    change against the composite (overall and per domain), the harm rate and the drift of the split's
    real photos passed through unedited (full resolution, levels). ``base`` caches the composites'
    own fMSE across calls."""
    from common.io import read_image, read_mask
    from domains.dataset import load_samples
    from harmonizers.fullres import harmonize

    from .compare import real_drift
    from .score import model_predictor
    model = registry.load(ckpt, device, kind="harmonizer")[0]
    pred, proto = model_predictor(model), M.Protocol("iharm")
    rows = []
    data, _, split = str(data).partition(":")
    samples = [s for sp in ("train", "test") if split in (sp, "all") or (not split and sp == "test")
               for s in load_samples(data, "all", sp)]
    for s in tqdm(samples, desc=f"score {Path(data).name}", unit="img"):
        comp, real, mask = proto.inputs(read_image(s.composite), read_image(s.real), read_mask(s.mask))
        key = (str(data), s.domain, s.composite.name)
        if key not in base:
            base[key] = float(proto.metrics(comp[None], real[None], mask[None])["fMSE"][0])
        rows.append((s.domain, float(proto.metrics(pred(comp, mask)[None], real[None], mask[None])["fMSE"][0]), base[key]))
    drift = real_drift(samples, {"model": lambda image, mask, _domain: harmonize(model, image, mask)})["model"]["All"]
    change = lambda rs: sum(r[1] for r in rs) / sum(r[2] for r in rs) - 1  # noqa: E731 (image-weighted means)
    return {"fMSE": sum(r[1] for r in rows) / len(rows), "fMSE_vs_composite": change(rows),
            "harm_rate": sum(M.harms(r[1], r[2]) for r in rows) / len(rows), "real_drift": drift,
            "domains": {d: change([r for r in rows if r[0] == d]) for d in dict.fromkeys(r[0] for r in rows)}}


def _label(n: int) -> str:
    return "all" if n == 0 else str(n)


def _write(res: dict, out: Path) -> None:
    runs = list(res["runs"].values())
    tests = res["header"]["tests"]
    lines = ["# Learning curves", "", f"Training data `{res['header']['data']}`, balance `{res['header']['balance']}`; "
             "each cell: mean ± half the range over seeds. fMSE change against the composite (negative = better) "
             "· harm rate (share of composites made worse) · drift of unedited real photos (levels), "
             "official protocol at 256 px.", ""]
    lines += ["| family | training photos | " + " | ".join(f"{Path(t).name} fMSE · harm · drift" for t in tests) +
              " | train s |", "|---|---:|" + "---|" * len(tests) + "---:|"]
    for arch in res["header"]["archs"]:
        for n in res["header"]["sizes"]:
            recs = [r for r in runs if r["arch"] == arch and r["size"] == n]
            if not recs:
                continue
            cells = []
            for t in tests:
                f = [r["tests"][t]["fMSE_vs_composite"] for r in recs]
                h = [r["tests"][t]["harm_rate"] for r in recs]
                dr = [r["tests"][t]["real_drift"] for r in recs]
                spread = (max(f) - min(f)) / 2 * 100
                cells.append(f"{statistics.mean(f) * 100:+.1f} % ± {spread:.1f} · {statistics.mean(h) * 100:.0f} % · "
                             f"{statistics.mean(dr):.1f}")
            photos = recs[0]["photos"]
            lines.append(f"| {arch} | {photos} | " + " | ".join(cells) +
                         f" | {statistics.mean(r['train_seconds'] for r in recs):.0f} |")
    write_text("\n".join(lines) + "\n", out / "report.md", overwrite=True)
    _plot(res, out / "curve.png")


def _plot(res: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # the picture is optional: pip install -e '.[reports]'
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arch in res["header"]["archs"]:
        for t, style in zip(res["header"]["tests"], ("-o", "--s", ":^")):
            pts = {}
            for r in res["runs"].values():
                if r["arch"] == arch:
                    pts.setdefault(r["photos"], []).append(r["tests"][t]["fMSE_vs_composite"] * 100)
            if pts:
                xs = sorted(pts)
                ax.plot(xs, [statistics.mean(pts[x]) for x in xs], style, label=f"{arch} on {Path(t).name}")
    ax.set_xscale("log")
    ax.set_xlabel("training photos")
    ax.set_ylabel("fMSE change vs composite, %  (lower is better)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve(data, tests, sizes, seeds, archs, out, runs="runs", steps: int | None = None, balance: str = "collection",
          device: str = "cpu", log=print) -> dict:
    from domains.dataset import load_samples
    from harmonizers.train import main as train
    out, ck, tests = Path(out), Path(runs) / "curve", [str(t) for t in tests]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    header = {"data": str(data), "tests": list(tests), "sizes": list(sizes), "seeds": list(seeds), "archs": list(archs),
              "balance": balance, "steps": steps}
    res = json.loads(path.read_text()) if path.exists() else {"header": header, "runs": {}}
    fixed = ("data", "tests", "balance", "steps")  # what a record depends on; sizes, seeds, families extend it
    if any(res["header"][k] != header[k] for k in fixed):
        raise InputError(f"{path}: recorded for other options ({res['header']}); pass another --out")
    for k in ("sizes", "seeds", "archs"):
        res["header"][k] = sorted(set(res["header"][k]) | set(header[k]), key=lambda v: (v == 0, v)) \
            if k == "sizes" else list(dict.fromkeys(res["header"][k] + header[k]))
    n_all = len({(s.domain, s.real.name) for s in load_samples(data, "all", "train")})
    base: dict = {}  # (test set, composite) → the composite's own fMSE, computed once
    for arch in archs:
        for n in sizes:
            for seed in seeds:
                key = f"{arch}/{_label(n)}/seed{seed}"
                if key in res["runs"]:
                    continue
                ckpt = ck / f"{arch}_{_label(n)}_s{seed}.safetensors"
                t0 = time.time()
                if not ckpt.exists():
                    train(data=str(data), out=str(ckpt), train_photos=n, seed=seed, balance=balance, device=device,
                          **train_options(arch, steps))
                t_train = time.time() - t0
                scores = {t: score_on(t, ckpt, base, device) for t in tests}
                photos = n_all if n == 0 else min(n, n_all)
                res["runs"][key] = {"arch": arch, "size": n, "photos": photos, "seed": seed, "tests": scores,
                                    "train_seconds": round(t_train, 1), "seconds": round(time.time() - t0, 1)}
                write_text(json.dumps(res, indent=1), path, overwrite=True)
                _write(res, out)
                log(f"{key}: " + ", ".join(f"{Path(t).name} {v['fMSE_vs_composite'] * 100:+.1f} %" for t, v in scores.items()))
    _write(res, out)
    return res


@shared_args
def main(data: str = "data/mini4", tests: str | None = None, sizes: str = "200,400,800,all", seeds: str = "0,1",
         archs: str = "gct64,issam64", out: str = "reports/curve", runs: str = "runs", steps: int | None = None,
         balance: str = "collection", device: str = "auto") -> None:
    """Train each family on nested subsets of the training photos and score every test split.

    Args:
        data: the training benchmark (its train split).
        tests: data sets whose test split scores each model, comma-separated (default --data); DATA:all
            scores both splits (a benchmark built from photos of unseen sources).
        sizes: numbers of training photos, comma-separated; all = every training photo.
        seeds: seeds (each picks its own nested subsets and initialisation).
        archs: harmonizer variants (gct64, issam64, issam128, rainnet64, ...).
        out: report folder (results.json, report.md, curve.png); a stopped run continues.
        runs: where the checkpoints go (<runs>/curve/).
        steps: training steps for every point (default the family's recipe).
        balance: none, collection or source (as harmonizers.train).
    """
    from common.device import resolve
    dev = str(resolve(device))
    as_list = lambda v: names(v if isinstance(v, (str, list, tuple)) else str(v))  # noqa: E731 (fire: --seeds 0 is an int)
    curve(data, as_list(tests) if tests else [data], _sizes(as_list(sizes)), [int(s) for s in as_list(seeds)],
          as_list(archs), out, runs, steps, balance, dev)


CLI = main

if __name__ == "__main__":
    run(CLI)
