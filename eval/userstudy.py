"""User study on real composites: build a static pairwise-comparison page, then score the votes.

    python -m eval.userstudy compose --cutouts assets/cutouts --backgrounds assets/photos --out data/real_composites -n 50
    python -m eval.userstudy export --composites data/real_composites/composites --out runs/study \\
        --methods composite,reinhard,unified,routed [--zoo models/default] [--max_side 1024]
    python -m eval.userstudy analyze --votes "runs/votes/*.csv" --manifest runs/study/manifest.json --out reports/study

``export`` runs every method on every composite (at full resolution; images up to the reader's
pixel limit, 6000 px and more) and writes a self-contained folder: ``index.html`` (no server, no
network: open it in a browser), ``images/`` (each result downscaled to ``--max_side`` for display)
and ``manifest.json`` (hidden condition id → scene and method; keep it away from observers). The
page shows, for one composite at a time, two results side by side, left/right and trial order
randomised per session, method names hidden; the observer picks the more realistic image (click,
or the ← / → keys). Votes survive a reload (browser storage) and download as CSV in the pwcmp
convention: ``observer, session, scene, condition_1, condition_2, selection`` with the hidden ids
of the left and right images and ``selection`` 1 (left) or 2 (right).

``analyze`` maps the hidden ids back to methods and fits a Bradley–Terry model by maximum
likelihood (Newton's method on the log-likelihood with a tiny ridge that fixes the scale's origin
and keeps never-chosen methods finite), with 95 % bootstrap intervals (resampling observers, or
votes when there is a single observer). Writes ``bt.md``, ``bt.json`` and ``bt.png`` (bar plot).
"""
from __future__ import annotations

import csv
import glob
import json
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

METHODS = ("composite", "reinhard", "unified", "routed")
CSV_HEADER = ["observer", "session", "scene", "condition_1", "condition_2", "selection"]


# ---- export ------------------------------------------------------------------------------------

def _method_fn(method: str, zoo):
    from eval.baselines import composite, reinhard
    if method == "composite":
        return composite
    if method == "reinhard":
        return reinhard
    if method in ("unified", "routed") or method.startswith("oracle:"):
        h = zoo()
        return lambda image, mask: h.run(image, mask, method)["output"]
    raise InputError(f"--methods: unknown method {method!r} (composite, reinhard, unified, routed, oracle:DOMAIN)")


def _display(img: torch.Tensor, max_side: int) -> Image.Image:
    im = to_pil(img)
    s = max_side / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.LANCZOS) if s < 1 else im


@shared_args
def export(composites, out, methods: str = ",".join(METHODS), zoo=None, masks=None, max_side: int = 1024,
           seed: int | None = None, overwrite: bool = False, device: str = "cpu") -> Path:
    """Run each method on every composite and write a self-contained study folder (open index.html).

    Args:
        composites: folder of composites (masks found as predict_dir finds them).
        out: study folder to write.
        methods: comma-separated: composite, reinhard, unified, routed, soft, oracle:DOMAIN.
        masks: masks folder (default: found next to the composites).
        max_side: long side of the displayed images.
    """
    names = split_names(methods)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"--methods needs at least two different methods, got {names}")
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a study (pass --overwrite to replace it)")
    pairs = find_pairs(composites, masks)
    cache = {}

    def load_zoo():
        if "h" not in cache:
            from router.api import Harmonizer
            cache["h"] = Harmonizer.from_zoo(zoo, device)
        return cache["h"]

    fns = {m: _method_fn(m, load_zoo) for m in names}
    rng = np.random.default_rng(seed)
    token = (lambda: secrets.token_hex(4)) if seed is None else (lambda: "%08x" % rng.integers(2 ** 32))
    (out / "images").mkdir(parents=True, exist_ok=True)
    conditions, trials, used, failed, scenes = {}, [], set(), [], []
    for img_path, mask_path in tqdm(pairs, desc="export", unit="scene"):
        scene = img_path.stem
        try:  # every method first: a pair that fails leaves no image behind
            image, mask = read_pair(img_path, mask_path)
            with torch.inference_mode():
                results = {m: fns[m](image, mask) for m in names}
        except InputError as e:
            failed.append(f"{img_path.name}: {e}")
            continue
        scenes.append(scene)
        ids = {}
        for m in names:
            res = results[m]
            hid = token()
            while hid in used:
                hid = token()
            used.add(hid)
            ids[m] = hid
            write_image(_display(res, max_side), out / "images" / f"{hid}.jpg", overwrite=overwrite, quality=92)
            conditions[hid] = {"scene": scene, "method": m, "source": str(img_path), "mask": str(mask_path)}
        for a, b in combinations(names, 2):
            trials.append({"scene": scene, "a": ids[a], "b": ids[b]})
    if not scenes:
        raise BatchError(failed, len(pairs))
    manifest = {"methods": names, "scenes": scenes, "conditions": conditions,
                "csv_header": CSV_HEADER, "max_side": max_side, "zoo": str(zoo) if zoo else "default"}
    write_text(json.dumps(manifest, indent=1), out / "manifest.json", overwrite=True)
    write_text(_page(trials), out / "index.html", overwrite=True)
    if failed:
        raise BatchError(failed, len(pairs))
    return out


def _page(trials: list[dict]) -> str:
    """The study page: one HTML file, inline script, images by relative path."""
    data = json.dumps(trials).replace("</", "<\\/")  # a scene name cannot close the script element
    return _PAGE.replace("__TRIALS__", data)


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Which image looks more realistic?</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;background:#222;color:#eee;text-align:center}
#pair{display:flex;gap:1em;justify-content:center;align-items:flex-start}
#pair figure{margin:0;flex:1;max-width:48vw}
#pair img{max-width:100%;max-height:78vh;cursor:pointer;border:3px solid transparent}
#pair img:hover{border-color:#6af}
button{font-size:1.1em;margin:.4em;padding:.3em 1em}
#start,#done{margin-top:3em}
</style></head><body>
<div id="start"><h2>Which image looks more realistic?</h2>
<p>Each screen shows the same scene twice. Pick the image whose inserted object fits its
surroundings better (click it, or press &larr; / &rarr;).</p>
<p><label>Your name or id: <input id="observer" autocomplete="off"></label></p>
<button id="begin">Start</button></div>
<div id="study" hidden><p id="progress"></p>
<div id="pair"><figure><img id="left" alt="left"></figure><figure><img id="right" alt="right"></figure></div></div>
<div id="done" hidden><h2>Thank you!</h2><p id="summary"></p>
<button id="download">Download votes (CSV)</button></div>
<script>
const TRIALS = __TRIALS__;
const KEY = "harmony-study:" + location.pathname;
let st = JSON.parse(localStorage.getItem(KEY) || "null");
function shuffle(a){for(let i=a.length-1;i>0;i--){const j=Math.floor(Math.random()*(i+1));[a[i],a[j]]=[a[j],a[i]];}return a;}
function save(){localStorage.setItem(KEY, JSON.stringify(st));}
function begin(){
  const obs = document.getElementById("observer").value.trim() || ("obs" + Math.random().toString(36).slice(2,8));
  const order = shuffle(TRIALS.map((t,i)=>i)).map(i=>{const t=TRIALS[i];
    return Math.random()<0.5 ? {scene:t.scene,l:t.a,r:t.b} : {scene:t.scene,l:t.b,r:t.a};});
  st = {observer: obs, session: new Date().toISOString().replace(/[-:.TZ]/g,"").slice(0,14), order, votes: []};
  save(); show();
}
function show(){
  document.getElementById("start").hidden = true;
  if (st.votes.length >= st.order.length){
    document.getElementById("study").hidden = true; document.getElementById("done").hidden = false;
    document.getElementById("summary").textContent = st.votes.length + " choices recorded for " + st.observer + ".";
    return;
  }
  const t = st.order[st.votes.length];
  document.getElementById("study").hidden = false;
  document.getElementById("progress").textContent = "Which image looks more realistic? (click it, or \u2190 / \u2192)  \u2014  " + (st.votes.length+1) + " / " + st.order.length;
  const L = document.getElementById("left"), R = document.getElementById("right");
  L.src = "images/" + t.l + ".jpg"; L.dataset.cond = t.l;
  R.src = "images/" + t.r + ".jpg"; R.dataset.cond = t.r;
}
function choose(sel){
  if (!st || st.votes.length >= st.order.length) return;
  const t = st.order[st.votes.length];
  st.votes.push([st.observer, st.session, t.scene, t.l, t.r, sel]);
  save(); show();
}
function csv(){
  const q = v => /[",\n]/.test(String(v)) ? '"' + String(v).replace(/"/g,'""') + '"' : String(v);
  const rows = [["observer","session","scene","condition_1","condition_2","selection"]].concat(st.votes);
  return rows.map(r=>r.map(q).join(",")).join("\n") + "\n";
}
function download(){
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv()], {type:"text/csv"}));
  a.download = "votes_" + st.observer.replace(/[^A-Za-z0-9_-]/g,"_") + "_" + st.session + ".csv";
  document.body.appendChild(a); a.click(); a.remove();
}
document.getElementById("begin").onclick = begin;
document.getElementById("left").onclick = () => choose(1);
document.getElementById("right").onclick = () => choose(2);
document.getElementById("download").onclick = download;
document.addEventListener("keydown", e => {if (e.key==="ArrowLeft") choose(1); if (e.key==="ArrowRight") choose(2);});
if (st) show();
</script></body></html>
"""


# ---- analysis ----------------------------------------------------------------------------------

def read_votes(paths, manifest: dict) -> list[dict]:
    """Rows of pwcmp CSV files with hidden ids mapped to methods; bad rows raise with file:line."""
    conds = manifest["conditions"]
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_HEADER if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: not a pwcmp votes file (missing columns {missing})")
            for n, r in enumerate(reader, start=2):
                for c in ("condition_1", "condition_2"):
                    if r[c] not in conds:
                        raise InputError(f"{path}:{n}: condition {r[c]!r} is not in the manifest")
                if r["selection"] not in ("1", "2"):
                    raise InputError(f"{path}:{n}: selection must be 1 or 2, got {r['selection']!r}")
                a, b = conds[r["condition_1"]], conds[r["condition_2"]]
                if a["scene"] != b["scene"] or a["scene"] != r["scene"]:
                    raise InputError(f"{path}:{n}: conditions of different scenes compared")
                win, lose = (a, b) if r["selection"] == "1" else (b, a)
                rows.append({"observer": r["observer"], "scene": r["scene"], "winner": win["method"],
                             "loser": lose["method"]})
    if not rows:
        raise InputError("no votes in " + ", ".join(map(str, paths)))
    return rows


def win_matrix(rows, methods) -> np.ndarray:
    idx = {m: i for i, m in enumerate(methods)}
    w = np.zeros((len(methods), len(methods)))
    for r in rows:
        w[idx[r["winner"]], idx[r["loser"]]] += 1
    return w


def bradley_terry(wins: np.ndarray, ridge: float = 1e-3, iters: int = 100) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry log-strengths from ``wins[i, j]`` = times i beat j.

    Maximises ``Σ w_ij log σ(s_i − s_j) − ridge/2 · Σ s_i²`` by Newton's method; the ridge fixes the
    origin (scores sum to zero) and keeps a never-chosen method finite. ``P(i beats j) = σ(s_i − s_j)``.
    """
    w = np.asarray(wins, dtype=np.float64)
    n = w + w.T
    s = np.zeros(len(w))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))  # P(i beats j)
        grad = w.sum(1) - (n * p).sum(1) - ridge * s
        c = n * p * p.T
        hess = c - np.diag(c.sum(1)) - ridge * np.eye(len(s))
        # the likelihood is flat along (1, …, 1) (only differences matter): −11ᵀ/n fixes that direction
        step = np.linalg.solve(hess - np.ones_like(hess) / len(s), -grad)
        s = s + step
        if np.abs(step).max() < 1e-10:
            break
    return s - s.mean()


@shared_args
def analyze(votes, manifest, out="reports/userstudy", bootstrap: int = 1000, seed: int = 0,
            overwrite: bool = True) -> dict:
    """Bradley–Terry scores per method from the downloaded votes, with bootstrap intervals.

    Args:
        votes: CSV files or glob patterns (quote them).
        manifest: the study's manifest.json (hidden id → method).
        out: report folder (bt.md, bt.json, bt.png).
        bootstrap: bootstrap resamples for the 95 % intervals.
    """
    pats = split_names(votes)
    paths = sorted({p for pat in pats for p in (glob.glob(pat) or [pat])})
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such votes file")
    try:
        man = json.loads(Path(manifest).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{manifest}: not a study manifest ({e})") from None
    methods = list(man["methods"])
    rows = read_votes(paths, man)
    w = win_matrix(rows, methods)
    scores = bradley_terry(w)
    rng = np.random.default_rng(seed)
    observers = sorted({r["observer"] for r in rows})
    groups = [[r for r in rows if r["observer"] == o] for o in observers] if len(observers) > 1 else [[r] for r in rows]
    boot = []
    for _ in range(bootstrap):
        pick = rng.integers(len(groups), size=len(groups))
        boot.append(bradley_terry(win_matrix([r for i in pick for r in groups[i]], methods)))
    lo, hi = (np.percentile(boot, q, axis=0) if boot else scores for q in (2.5, 97.5))
    table = []
    for i in np.argsort(-scores):
        comps = w[i].sum() + w[:, i].sum()
        table.append({"method": methods[i], "score": float(scores[i]), "ci95": [float(lo[i]), float(hi[i])],
                      "wins": int(w[i].sum()), "comparisons": int(comps),
                      "win_rate": float(w[i].sum() / comps) if comps else float("nan")})
    res = {"votes": len(rows), "observers": len(observers), "scenes": len({r["scene"] for r in rows}),
           "files": [str(p) for p in paths], "bootstrap": bootstrap, "table": table,
           "resampled": "observers" if len(observers) > 1 else "votes"}
    outp = Path(out)
    lines = [f"Bradley–Terry scores (log-strength, sum 0; P(A preferred to B) = σ(s_A − s_B)) from {len(rows)} votes "
             f"of {len(observers)} observer(s) on {res['scenes']} scene(s); 95 % intervals from {bootstrap} bootstrap "
             f"resamples of the {res['resampled']}.", "",
             "| method | BT score | 95 % interval | wins / comparisons |", "|---|---:|---|---:|"]
    for t in table:
        lines.append(f"| {t['method']} | {t['score']:+.3f} | [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}] | "
                     f"{t['wins']} / {t['comparisons']} |")
    write_text("\n".join(lines) + "\n", outp / "bt.md", overwrite=overwrite)
    write_text(json.dumps(res, indent=1), outp / "bt.json", overwrite=overwrite)
    write_image(_bar_plot(table), outp / "bt.png", overwrite=overwrite)
    print("\n".join(lines))
    return res


def _bar_plot(table, w: int = 640, row: int = 44) -> Image.Image:
    """Horizontal bars of the BT scores with their 95 % intervals (PIL; no plotting dependency)."""
    h = 40 + row * len(table)
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    vals = [v for t in table for v in (t["score"], *t["ci95"])]
    lo, hi = min(vals + [0]), max(vals + [0])
    span = (hi - lo) or 1.0
    x0, x1 = 130, w - 20
    X = lambda v: x0 + (v - lo) / span * (x1 - x0)  # noqa: E731
    d.line([(X(0), 10), (X(0), h - 20)], fill="black")
    for k, t in enumerate(table):
        y = 20 + k * row
        d.text((8, y + 8), t["method"], fill="black")
        d.rectangle([min(X(0), X(t["score"])), y + 4, max(X(0), X(t["score"])), y + row - 14], fill=(90, 140, 220))
        a, b = X(t["ci95"][0]), X(t["ci95"][1])
        d.line([(a, y + row // 2 - 5), (b, y + row // 2 - 5)], fill="black", width=2)
        for x in (a, b):
            d.line([(x, y + 6), (x, y + row - 16)], fill="black", width=2)
    d.text((x0, h - 16), f"{lo:+.2f}", fill="black")
    d.text((x1 - 30, h - 16), f"{hi:+.2f}", fill="black")
    return im


CLI = {"compose": compose_cli, "export": export, "analyze": analyze}

if __name__ == "__main__":
    run(CLI)
