"""User study on real composites: build a static pairwise-comparison page, then score the votes.

    python -m eval.userstudy compose --cutouts assets/cutouts --backgrounds assets/photos --out data/real_composites -n 50
    python -m eval.userstudy export --composites data/real_composites/composites --out runs/study \
        --methods composite,reinhard,unified,soft [--zoo models/default] [--max_side 1024]
    python -m eval.userstudy analyze --votes "runs/votes/*.csv" --key runs/study.key.json --out reports/study

``export`` runs every method on every composite (at full resolution; images up to the reader's
pixel limit, 6000 px and more) and writes the **participant folder** ``OUT/``: ``index.html`` (no
server, no network: open it in a browser) and ``images/`` (each result downscaled to
``--max_side``), and the **key** ``OUT.key.json`` *beside* the folder (hidden id → scene and
method; keep it from participants). The folder is blind by construction: image names are random
ids, every file carries the same modification time, images are written in random order, the
order inside every pair and of the trials is random (no scene twice in a row), and nothing in it
names or orders the methods.

The page shows, for one composite at a time, two results side by side (stacked on narrow screens),
left/right and trial order randomised again per session; the participant picks the more realistic
image (click or tap it, or the ← / → keys; Enter starts). A vote counts only once both images have
loaded and a short minimum time has passed, key repeats are ignored, each trial takes one vote,
and the last vote can be undone (button or Backspace). Votes survive a reload (browser storage);
at the end "Download votes" saves the CSV and "Next participant" saves it and starts a clean
session on the same machine. CSV columns (pwcmp convention first): ``observer, session, scene,
condition_1, condition_2, selection`` (hidden ids of the left and right images, ``selection`` 1 =
left, 2 = right), then ``trial`` (index in the session), ``time`` (ISO timestamp),
``response_ms`` (from both images shown to the vote) and ``screen`` (viewport and screen size).

``analyze`` maps the hidden ids back to methods, drops duplicate votes (the same session and trial
read twice, e.g. a file downloaded twice) and says how many, and fits a Bradley–Terry model by
maximum likelihood (Newton's method on the log-likelihood with a tiny ridge that fixes the scale's
origin and keeps never-chosen methods finite), with 95 % bootstrap intervals (resampling
observers, or votes when there is a single observer). Writes ``bt.md``, ``bt.json`` and ``bt.png``.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import secrets
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from common.cli import names as split_names, run, shared_args
from common.io import BatchError, InputError, find_pairs, read_pair, to_pil, write_image, write_text

from .compose import main as compose_cli  # the same command as python -m eval.compose
from .pairwise import bootstrap_intervals, bradley_terry, win_matrix
from .study_page import CSV_EXTRA, CSV_HEADER, MIN_MS, render_page

METHODS = ("composite", "reinhard", "unified", "soft")  # soft: the shipped zoo's default mode
FILE_TIME = 946684800  # 2000-01-01: every exported file carries this modification time


def key_path(out) -> Path:
    """The key of study folder ``out``: ``<out>.key.json`` beside it, never inside it."""
    out = Path(out)
    return out.with_name(out.name + ".key.json")


def _arrangeable(counts: dict, first_not) -> bool:
    """Can items with these per-scene ``counts`` be ordered with no scene twice in a row and the
    first one not ``first_not``?"""
    r = sum(counts.values())
    if r == 0:
        return True
    if max(counts.values()) > (r + 1) // 2:
        return False
    return not (r % 2 == 1 and counts.get(first_not, 0) == (r + 1) // 2)


def order_trials(trials: list[dict], rng) -> list[dict]:
    """Random order with no scene twice in a row wherever the scenes allow it, each pair's sides
    random: draw the next trial at random among those whose scene keeps the rest arrangeable."""
    groups: dict[str, list[dict]] = {}
    for t in trials:
        t = dict(t)
        if rng.random() < 0.5:
            t["a"], t["b"] = t["b"], t["a"]
        groups.setdefault(t["scene"], []).append(t)
    for g in groups.values():
        rng.shuffle(g)
    out, last = [], None
    while any(groups.values()):
        counts = {k: len(v) for k, v in groups.items() if v}
        ok = [k for k in counts if k != last and _arrangeable({**counts, k: counts[k] - 1}, k)]
        ok = ok or [k for k in counts if k != last] or list(counts)
        weights = np.array([counts[k] for k in ok], dtype=float)
        pick = ok[int(rng.choice(len(ok), p=weights / weights.sum()))]
        out.append(groups[pick].pop())
        last = pick
    return out


# ---- export ------------------------------------------------------------------------------------

def _method_fn(method: str, zoo):
    from eval.baselines import composite, reinhard
    if method == "composite":
        return composite
    if method == "reinhard":
        return reinhard
    if method in ("unified", "routed", "soft") or method.startswith("oracle:"):
        h = zoo()
        return lambda image, mask: h(image, mask, method)
    if method in ("default", "ungated"):  # what `router predict` does; the same without the detector's gate
        h = zoo()
        return lambda image, mask: h(image, mask, gate=method == "default")
    raise InputError(f"--methods: unknown method {method!r} "
                     "(composite, reinhard, default, ungated, unified, routed, soft, oracle:DOMAIN)")


def _scorer(zoo):
    """``score(image, mask)``: the zoo's composite detector (None when it has none)."""
    from router.inference import load_detector
    from router.zoo import read
    det = load_detector(read(zoo).get("detector"))
    if det is None:
        return None
    return lambda image, mask: det.score(image.permute(1, 2, 0).numpy(), mask[0].numpy())


def _display(img: torch.Tensor, max_side: int) -> Image.Image:
    im = to_pil(img)
    s = max_side / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS) if s < 1 else im


def _method_fns(names, zoo, device) -> dict:
    """``predict(image, mask)`` per method; the zoo is loaded once, when a method needs it."""
    cache = {}

    def load_zoo():
        if "h" not in cache:
            from router.api import Harmonizer
            cache["h"] = Harmonizer.from_zoo(zoo, device)
        return cache["h"]

    return {m: _method_fn(m, load_zoo) for m in names}


@shared_args
def export(composites, out, methods: str = ",".join(METHODS), zoo=None, masks=None, max_side: int = 1024,
           seed: int | None = None, overwrite: bool = False, device: str = "cpu", min_ms: int = MIN_MS) -> Path:
    """Run each method on every composite and write a self-contained study folder (open index.html).

    Args:
        composites: folder of composites (masks found as predict_dir finds them).
        out: study folder to write.
        methods: comma-separated: composite, reinhard, unified, routed, soft, oracle:DOMAIN, default
            (what predict does, with the detector's gate) or ungated (the same without the gate).
        masks: masks folder (default: found next to the composites).
        max_side: long side of the displayed images.
        min_ms: votes sooner than this many milliseconds after both images show are ignored.
    """
    names = split_names(methods)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"--methods needs at least two different methods, got {names}")
    out = Path(out)
    key = key_path(out)
    if (key.exists() or (out / "index.html").exists()) and not overwrite:
        raise InputError(f"{out}: already holds a study (pass --overwrite to replace it)")
    pairs = find_pairs(composites, masks)
    fns = _method_fns(names, zoo, device)
    score = _scorer(zoo)
    scores = {}
    rng = np.random.default_rng(seed)
    token = (lambda: secrets.token_hex(8)) if seed is None else (lambda: "%016x" % rng.integers(2 ** 63))
    (out / "images").mkdir(parents=True, exist_ok=True)
    conditions, trials, used, failed, scenes, written = {}, [], set(), [], [], []
    for img_path, mask_path in tqdm(pairs, desc="export", unit="scene"):
        try:  # every method first: a pair that fails leaves no image behind
            image, mask = read_pair(img_path, mask_path)
            with torch.inference_mode():
                results = {m: fns[m](image, mask) for m in names}
        except InputError as e:
            failed.append(f"{img_path.name}: {e}")
            continue
        scene = img_path.stem
        scenes.append(scene)
        if score is not None:
            scores[scene] = round(score(image, mask), 4)
        ids = {}
        for m in rng.permutation(names):  # written in random order: nothing follows the method list
            ids[m] = hid = _unique(token, used)
            written.append(write_image(_display(results[m], max_side), out / "images" / f"{hid}.jpg",
                                       overwrite=overwrite, quality=92))
            conditions[hid] = {"scene": scene, "method": str(m), "source": str(img_path), "mask": str(mask_path)}
        trials += [{"scene": scene, "a": ids[a], "b": ids[b]} for a, b in combinations(names, 2)]
    if not scenes:
        raise BatchError(failed, len(pairs))
    manifest = {"study": out.name, "methods": names, "scenes": scenes, "conditions": conditions,
                "csv_header": CSV_HEADER + CSV_EXTRA, "max_side": max_side, "zoo": str(zoo) if zoo else "default",
                "detector_scores": scores or None}
    _finish(out, key, manifest, order_trials(trials, rng), min_ms, written)
    if failed:
        raise BatchError(failed, len(pairs))
    return out


def _unique(token, used: set) -> str:
    """A fresh ``token()`` not in ``used`` (then recorded there)."""
    hid = token()
    while hid in used:
        hid = token()
    used.add(hid)
    return hid


def _finish(out: Path, key: Path, manifest: dict, trials: list, min_ms: int, written: list) -> None:
    """Write the key (outside the folder) and the page; every file's time set to one constant."""
    write_text(json.dumps(manifest, indent=1), key, overwrite=True)
    written.append(write_text(render_page(trials, min_ms), out / "index.html", overwrite=True))
    for p in written:  # file times carry nothing either
        os.utime(p, (FILE_TIME, FILE_TIME))
    stale = out / "manifest.json"  # a key inside the folder, from an older export, must not stay
    if stale.exists():
        stale.unlink()


def read_votes(paths, manifest: dict) -> tuple[list[dict], int]:
    """Rows of pwcmp CSV files with hidden ids mapped to methods, and the number of duplicates
    dropped (the same observer, session and trial, or without a trial column the same pair shown
    the same way, read more than once: a file downloaded twice counts once). Bad rows raise with
    file:line."""
    conds = manifest["conditions"]
    rows, seen, dups = [], set(), 0
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_HEADER if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not a pwcmp votes file (missing columns {missing})")
            for n, r in enumerate(reader, start=2):
                for c in ("condition_1", "condition_2"):
                    if r[c] not in conds:
                        raise InputError(f"{path}:{n}: condition {r[c]!r} is not in the study key")
                if r["selection"] not in ("1", "2"):
                    raise InputError(f"{path}:{n}: selection must be 1 or 2, got {r['selection']!r}")
                a, b = conds[r["condition_1"]], conds[r["condition_2"]]
                if a["scene"] != b["scene"] or a["scene"] != r["scene"]:
                    raise InputError(f"{path}:{n}: conditions of different scenes compared")
                ident = (r["observer"], r["session"], r.get("trial") or (r["scene"], r["condition_1"], r["condition_2"]))
                if ident in seen:
                    dups += 1
                    continue
                seen.add(ident)
                win, lose = (a, b) if r["selection"] == "1" else (b, a)
                rows.append({"observer": r["observer"], "session": r["session"], "scene": r["scene"],
                             "winner": win["method"], "loser": lose["method"],
                             "response_ms": float(r["response_ms"]) if r.get("response_ms") else None})
    if not rows:
        raise InputError("no votes in " + ", ".join(map(str, paths)))
    return rows, dups


def read_key(path) -> dict:
    """A study's key (hidden id → scene and method), checked."""
    try:
        man = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a study key ({e})") from None
    if not isinstance(man, dict) or "conditions" not in man or "methods" not in man:
        raise InputError(f"{path}: not a study key (no conditions/methods)")
    return man


@shared_args
def analyze(votes, key, out="reports/userstudy", bootstrap: int = 1000, seed: int = 0,
            overwrite: bool = True) -> dict:
    """Bradley–Terry scores per method from the downloaded votes, with bootstrap intervals.

    Args:
        votes: CSV files or glob patterns (quote them).
        key: the study's key, <study folder>.key.json beside the folder (hidden id → method).
        out: report folder (bt.md, bt.json, bt.png).
        bootstrap: bootstrap resamples for the 95 % intervals.
    """
    paths = sorted({p for pat in split_names(votes) for p in (glob.glob(pat) or [pat])})
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such votes file")
    man = read_key(key)
    methods = list(man["methods"])
    rows, dups = read_votes(paths, man)
    w = win_matrix(rows, methods)
    scores = bradley_terry(w)
    observers = sorted({r["observer"] for r in rows})
    lo, hi = bootstrap_intervals(rows, methods, observers, bootstrap, seed, scores)
    table = []
    for i in np.argsort(-scores):
        comps = w[i].sum() + w[:, i].sum()
        table.append({"method": methods[i], "score": float(scores[i]), "ci95": [float(lo[i]), float(hi[i])],
                      "wins": int(w[i].sum()), "comparisons": int(comps),
                      "win_rate": float(w[i].sum() / comps) if comps else float("nan")})
    rts = sorted(r["response_ms"] for r in rows if r["response_ms"] is not None)
    res = {"votes": len(rows), "duplicates_dropped": dups, "observers": len(observers),
           "scenes": len({r["scene"] for r in rows}), "files": [str(p) for p in paths], "bootstrap": bootstrap,
           "table": table, "resampled": "observers" if len(observers) > 1 else "votes",
           "median_response_ms": rts[len(rts) // 2] if rts else None}
    outp = Path(out)
    lines = [f"Bradley–Terry scores (log-strength, sum 0; P(A preferred to B) = σ(s_A − s_B)) from {len(rows)} votes "
             f"of {len(observers)} observer(s) on {res['scenes']} scene(s); 95 % intervals from {bootstrap} bootstrap "
             f"resamples of the {res['resampled']}." + (f" {dups} duplicate vote(s) dropped (the same session and "
                                                          "trial read more than once)." if dups else ""), "",
             "| method | BT score | 95 % interval | wins / comparisons |", "|---|---:|---|---:|"]
    for t in table:
        lines.append(f"| {t['method']} | {t['score']:+.3f} | [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}] | "
                     f"{t['wins']} / {t['comparisons']} |")
    write_text("\n".join(lines) + "\n", outp / "bt.md", overwrite=overwrite)
    write_text(json.dumps(res, indent=1), outp / "bt.json", overwrite=overwrite)
    write_image(_bar_plot(table, f"Bradley–Terry scores, {len(rows)} votes, {len(observers)} observer(s)"),
                outp / "bt.png", overwrite=overwrite)
    if dups:
        print(f"{dups} duplicate vote(s) dropped")
    print("\n".join(lines))
    return res


def _bar_plot(table, title: str = "Bradley–Terry scores", w: int = 720, row: int = 44) -> Image.Image:
    """Horizontal bars of the BT scores with their 95 % intervals and values, a title and an axis
    label (PIL; no plotting dependency)."""
    top, bottom = 44, 50
    h = top + row * len(table) + bottom
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    d.text((10, 10), title, fill="black")
    d.text((10, 24), "bars: score; whiskers: 95 % bootstrap interval", fill=(90, 90, 90))
    vals = [v for t in table for v in (t["score"], *t["ci95"])]
    lo, hi = min(vals + [0]), max(vals + [0])
    span = (hi - lo) or 1.0
    x0, x1 = 130, w - 80
    X = lambda v: x0 + (v - lo) / span * (x1 - x0)  # noqa: E731
    axis_y = top + row * len(table) + 6
    d.line([(X(0), top - 4), (X(0), axis_y)], fill="black")
    d.line([(x0, axis_y), (x1, axis_y)], fill="black")
    for v in (lo, 0.0, hi):
        d.line([(X(v), axis_y), (X(v), axis_y + 4)], fill="black")
        d.text((X(v) - 14, axis_y + 6), f"{v:+.2f}", fill="black")
    d.text(((x0 + x1) // 2 - 110, axis_y + 24), "Bradley–Terry score (log-strength)", fill="black")
    for k, t in enumerate(table):
        y = top + k * row
        d.text((8, y + 8), t["method"], fill="black")
        d.rectangle([min(X(0), X(t["score"])), y + 4, max(X(0), X(t["score"])), y + row - 14], fill=(90, 140, 220))
        a, b = X(t["ci95"][0]), X(t["ci95"][1])
        d.line([(a, y + row // 2 - 5), (b, y + row // 2 - 5)], fill="black", width=2)
        for x in (a, b):
            d.line([(x, y + 6), (x, y + row - 16)], fill="black", width=2)
        d.text((max(a, b, X(t["score"])) + 6, y + 8), f"{t['score']:+.2f}", fill="black")
    return im


CLI = {"compose": compose_cli, "export": export, "analyze": analyze}

if __name__ == "__main__":
    run(CLI)
