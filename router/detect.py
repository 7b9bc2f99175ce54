"""Train the composite detector (:mod:`router.detector`) and measure it held out by source.

    python -m router.detect --photos assets/photos,/path/to/labelme/photos \\
        --composites /path/to/labelme/composites --cutouts assets/cutouts --data data/mini4 \\
        --out runs/detector.safetensors

What it learns from (each a *set*; every set weighs the same inside its class):

- negatives, real photos: every photo of ``--photos`` with its own mask (``photos``), and with the
  mask of another photo of its folder (``regions``: a region that follows no edge is no composite);
  the real images of ``--data`` with their masks (``data_reals``);
- positives: real composites (``--composites``, any layout ``predict_dir`` reads); cut-and-paste
  composites made here as Lalonde & Efros made theirs (``pastes``: the masked region of one photo
  pasted at the same place into another photo of its folder); ``--cutouts`` (RGBA) pasted into the
  photos (``cutouts``); with ``--synthetic``, the synthetic composites of ``--data``
  (``data_composites``: recoloured foregrounds, iHarmony4-style; off by default, see ``--help``). Every picture, photo or composite, is brought to a random size
  (long side 256–768) and saved as JPEG (quality 75–95) before its features are read, so that
  neither encoding nor size is a cue.

The photos of ``--data``'s test split (a benchmark built by ``domains.build`` names them) are left
out of every photo folder. A photo folder is ``images/`` + ``masks/`` (or the folder itself) with an optional ``manifest.json``
whose rows name each photo's ``source`` (or ``source_package``); the source is the unit held out.
Composites are grouped by the source of their background photo where a manifest says it
(``background_source`` matched to a photo's ``original``), else by their folder.

With ``--style True`` (the shipped recipe) every picture's features also compare the two sides in
the early feature maps of ``tf_efficientnet_lite0`` with its ImageNet weights
(:mod:`router.style`); the network's weights are written into the detector's file.

The model is gradient-boosted trees (scikit-learn's ``GradientBoostingClassifier``, exported to the
NumPy arrays :class:`router.detector.Trees` evaluates). ``--folds`` models, each trained without a
fold of the sources, score that fold: the out-of-fold scores give the held-out ROC AUC of every
positive set against every negative set (in the checkpoint's metadata and ``<out>.report.json``)
and calibrate the gate (:func:`calibrate`: the most change for held-out composites within a budget
on held-out real photos); the shipped model is then trained on everything.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.cli import names, print_json, run, shared_args
from common.io import IMAGE_SUFFIXES, InputError, check_new, find_pairs
from common.metrics import roc_auc

from .detector import FEATURES_VERSION, Detector, Gate, Trees, all_features, area_resize

log = logging.getLogger(__name__)
NEGATIVE_SETS = ("photos", "regions", "data_reals")
POSITIVE_SETS = ("composites", "pastes", "cutouts", "data_composites")


@dataclass
class Item:
    """One training picture: how to make it, its label, the source it is held out with, its set."""
    kind: str               # file | paste | region | cutout
    image: str
    mask: str
    label: int
    group: str
    set: str
    other: str = ""         # paste: the photo pasted into; region: unused; cutout: the cut-out
    seed: int = 0


# ---- what to learn from --------------------------------------------------------------------------

def _photo_folder(folder: Path) -> list[dict]:
    """Rows ``{image, mask, source, original}`` of a photo folder (``images/`` + ``masks/``)."""
    folder = Path(folder)
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    mask_dir = folder / "masks"
    if not mask_dir.is_dir():
        raise InputError(f"{folder}: no masks/ folder beside its photos")
    meta = {}
    mf = folder / "manifest.json"
    if mf.is_file():
        try:
            rows = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{mf}: not valid JSON ({e})") from None
        rows = rows.get("photos", rows) if isinstance(rows, dict) else rows
        meta = {r["name"]: r for r in rows if isinstance(r, dict) and "name" in r}
    out = []
    for p in sorted(img_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = next((mask_dir / f"{p.stem}{s}" for s in (".png", ".jpg", ".bmp") if (mask_dir / f"{p.stem}{s}").is_file()), None)
        if m is None:
            continue
        r = meta.get(p.stem, {})
        out.append({"image": str(p), "mask": str(m), "source": f"{folder.name}:{r.get('source') or r.get('source_package') or 'all'}",
                    "original": r.get("original")})
    if len(out) < 2:
        raise InputError(f"{folder}: fewer than 2 photos with masks")
    return out


def _benchmark(data) -> tuple[set[str], dict[tuple[str, str], str]]:
    """What a benchmark built by ``domains.build`` says of its photos (its ``manifest.json``; empty
    for iHarmony4): the test split's photo names, never learnt from whichever folder they are found
    in, and ``(domain, real image file) → photo name``."""
    mf = Path(data) / "manifest.json"
    if not mf.is_file():
        return set(), {}
    try:
        doms = json.loads(mf.read_text()).get("domains", {})
    except (json.JSONDecodeError, AttributeError) as e:
        raise InputError(f"{mf}: not a benchmark manifest ({e})") from None
    test = {n for d in doms.values() for n in d.get("photos", {}).get("test", [])}
    real = {(d, c.get("real")): c.get("photo") for d, dd in doms.items() for c in dd.get("composites", [])}
    return test, real


def items(photos=(), composites=(), cutouts=None, data=None, pastes: float = 1.0, regions: float = 0.5,
          cutout_pastes: int = 8, data_limit: int = 4000, seed: int = 0, synthetic: bool = False) -> list[Item]:
    """The training pictures (see the module's docstring). ``pastes`` and ``regions``: how many of
    each per photo; ``cutout_pastes``: pastes per cut-out; ``data_limit``: at most this many
    composites (and as many real images) of ``data``, spread over its domains; its composites are
    positives only with ``synthetic`` (its real images are negatives either way)."""
    rng = np.random.default_rng(seed)
    out: list[Item] = []
    test, real_photo = _benchmark(data) if data else (set(), {})
    folders = [[r for r in _photo_folder(Path(f)) if Path(r["image"]).stem not in test] for f in photos]
    originals = {r["original"]: r["source"] for rows in folders for r in rows if r["original"]}
    for rows in folders:
        for r in rows:
            out.append(Item("file", r["image"], r["mask"], 0, r["source"], "photos"))
        for _ in range(int(round(regions * len(rows)))):
            a, b = rng.choice(len(rows), 2, replace=False)
            out.append(Item("region", rows[b]["image"], rows[a]["mask"], 0, rows[b]["source"], "regions"))
        for _ in range(int(round(pastes * len(rows)))):
            a, b = rng.choice(len(rows), 2, replace=False)
            out.append(Item("paste", rows[a]["image"], rows[a]["mask"], 1, rows[b]["source"], "pastes", rows[b]["image"]))
    for folder in composites:
        out += _composite_items(Path(folder), originals)
    if cutouts:
        cuts = sorted(p for p in Path(cutouts).iterdir() if p.suffix.lower() == ".png")
        if not cuts:
            raise InputError(f"{cutouts}: no RGBA .png cut-outs")
        backs = [r for rows in folders for r in rows]
        if not backs:
            raise InputError("--cutouts needs --photos to paste them into")
        for c in cuts:
            for _ in range(cutout_pastes):
                b = backs[rng.integers(len(backs))]
                out.append(Item("cutout", b["image"], "", 1, b["source"], "cutouts", str(c)))
    if data:
        from domains.dataset import load_samples
        samples = load_samples(data, "all", "train")
        # a benchmark built from these photos: its composites and real images are held out with
        # their photo's source (else a photo could be learnt in one fold and scored in another)
        stem_source = {Path(r["image"]).stem: r["source"] for rows in folders for r in rows}
        pick = rng.permutation(len(samples))[:data_limit]
        seen = set()
        for i in pick:
            s = samples[i]
            group = stem_source.get(real_photo.get((s.domain, Path(s.real).name)), f"data:{s.domain}")
            if synthetic:
                out.append(Item("file", str(s.composite), str(s.mask), 1, group, "data_composites"))
            if s.real not in seen:
                seen.add(s.real)
                out.append(Item("file", str(s.real), str(s.mask), 0, group, "data_reals"))
    for i, it in enumerate(out):
        it.seed = seed * 1_000_003 + i
    return out


def _composite_items(folder: Path, originals: dict) -> list[Item]:
    """A folder of real composites as positives, each grouped by its background photo's source
    (its manifest's ``background_source`` mapped through ``originals``, else its ``source``)."""
    src = {}
    mf = folder / "manifest.json"
    if mf.is_file():
        rows = json.loads(mf.read_text())
        rows = rows.get("composites", rows) if isinstance(rows, dict) else rows
        src = {r["name"]: originals.get(r.get("background_source")) or r.get("source") for r in rows
               if isinstance(r, dict) and "name" in r}
    return [Item("file", str(img), str(m), 1, src.get(img.stem) or f"{folder.name}:all", "composites")
            for img, m in find_pairs(folder)]


def _rgb(path, size=None) -> np.ndarray:
    im = Image.open(path)
    im = im.convert("RGB")
    if size is not None and im.size != size:
        im = im.resize(size, Image.BILINEAR)
    return np.asarray(im, np.float32) / 255


def _grey(path, size=None) -> np.ndarray:
    from common.io import read_mask_array
    m = read_mask_array(path)
    if size is not None and m.shape[::-1] != size:
        m = np.asarray(Image.fromarray(m.astype(np.float32), "F").resize(size, Image.BILINEAR))
    return np.clip(m, 0, 1)


def _as_jpeg(x: np.ndarray, rng) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(75, 96)))
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255


def _made(it: Item, rng) -> tuple[np.ndarray, np.ndarray]:
    if it.kind == "file":
        from common.io import read_image_array
        return read_image_array(it.image), _grey(it.mask)
    if it.kind == "region":
        x = _rgb(it.image)
        return x, _grey(it.mask, x.shape[1::-1])
    if it.kind == "paste":
        b = _rgb(it.other)
        size = b.shape[1::-1]
        m = _grey(it.mask, size)[..., None]
        return m * _rgb(it.image, size) + (1 - m) * b, m[..., 0]
    if it.kind == "cutout":
        from domains.paste import paste
        bg = Image.open(it.image).convert("RGB")
        comp, mask, _ = paste(bg, Image.open(it.other).convert("RGBA"), rng)
        return np.asarray(comp, np.float32) / 255, np.asarray(mask, np.float32) / 255
    raise ValueError(f"unknown item kind {it.kind!r}")


def picture(it: Item) -> tuple[np.ndarray, np.ndarray]:
    """The image and mask an item stands for (made afresh, deterministically from its seed). Every
    picture, photo or composite, is then brought to a random long side of 256–768 pixels (never
    enlarged) and saved as JPEG, so that neither the file's encoding nor its size tells the classes apart."""
    rng = np.random.default_rng(it.seed)
    x, m = _made(it, rng)
    side = int(rng.integers(256, 769))
    if max(m.shape) > side:
        x, m = area_resize(x, m, (max(1, round(m.shape[1] * side / max(m.shape))),
                                  max(1, round(m.shape[0] * side / max(m.shape)))))
    return _as_jpeg(x, rng), np.clip(m, 0, 1)


_STYLE = None   # the style network of the extraction under way (each worker process gets its copy)


def _set_style(style) -> None:
    global _STYLE
    _STYLE = style


def _item_features(it: Item) -> np.ndarray | None:
    try:
        return all_features(*picture(it), _STYLE)
    except (InputError, OSError, ValueError) as e:
        log.warning("%s: skipped (%s)", it.image, e)
        return None


def _key(it: Item, tag: str = "") -> str:
    """The cache key of an item's features; ``tag`` names the style network (:func:`extract`)."""
    return f"{it.kind}|{it.image}|{it.mask}|{it.other}|{it.seed}|{FEATURES_VERSION}{tag}"


def extract(its: list[Item], workers: int = 2, cache=None, style=None) -> tuple[np.ndarray, list[Item]]:
    """Features of every item (a progress bar; pictures that cannot be read are skipped with a
    warning), with ``style`` (:class:`router.style.Style`) its features too. ``cache``: an ``.npz``
    file of features by item, read and extended (so that trainings over the same pictures with
    other options skip the reading)."""
    from tqdm import tqdm
    known = {}
    if cache and Path(cache).is_file():
        with np.load(cache) as z:   # one keys/features pair per feature length (with and without style)
            for k in z.files:
                if k.startswith("keys"):
                    known.update(zip(z[k].tolist(), z["features" + k[4:]]))
    tag = "" if style is None else f"|style:{style.fingerprint()}"   # hashed once, not per item
    key = {id(it): _key(it, tag) for it in its}
    todo = [it for it in its if key[id(it)] not in known]
    if workers > 1 and todo:
        from multiprocessing import get_context
        with get_context("spawn").Pool(workers, initializer=_set_style, initargs=(style,)) as pool:
            new = list(tqdm(pool.imap(_item_features, todo, chunksize=16), total=len(todo), desc="features", unit="img"))
    else:
        _set_style(style)
        try:
            new = [_item_features(it) for it in tqdm(todo, desc="features", unit="img")]
        finally:
            _set_style(None)
    known.update({key[id(it)]: f for it, f in zip(todo, new) if f is not None})
    if cache and todo:
        from common.io import atomic_write
        by_len: dict[int, list[str]] = {}
        for k, f in known.items():
            by_len.setdefault(len(f), []).append(k)
        arrays = {}
        for n, ks in by_len.items():
            arrays[f"keys_{n}"], arrays[f"features_{n}"] = np.array(ks), np.stack([known[k] for k in ks])
        atomic_write(cache, lambda tmp: np.savez(open(tmp, "wb"), **arrays), overwrite=True)
    feats = [known.get(key[id(it)]) for it in its]
    keep = [i for i, f in enumerate(feats) if f is not None]
    return np.stack([feats[i] for i in keep]), [its[i] for i in keep]


# ---- fitting, held-out scores, the gate ----------------------------------------------------------

def weights(its: list[Item]) -> np.ndarray:
    """Every set weighs the same inside its class, both classes the same in all; inside a set a
    source weighs as the square root of its size (a large source counts, without drowning the rest)."""
    sets = np.array([it.set for it in its])
    groups = np.array([it.group for it in its])
    y = np.array([it.label for it in its])
    w = np.zeros(len(its))
    for s in np.unique(sets):
        sel = sets == s
        for g in np.unique(groups[sel]):
            gs = sel & (groups == g)
            w[gs] = np.sqrt(gs.sum()) / gs.sum()
        w[sel] /= w[sel].sum()
    for c in (0, 1):
        if (y == c).any():
            w[y == c] /= w[y == c].sum()
    return w * len(its) / 2


def fit_trees(x: np.ndarray, y: np.ndarray, w: np.ndarray, trees: int = 300, depth: int = 3,
              lr: float = 0.05, seed: int = 0) -> Trees:
    """Gradient-boosted trees (scikit-learn) exported to :class:`Trees`."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError:
        raise InputError("training the detector needs scikit-learn (pip install -e '.[train]')") from None
    if len(np.unique(y)) < 2:
        raise InputError("the detector needs both photos (negatives) and composites (positives) to learn from")
    gb = GradientBoostingClassifier(n_estimators=trees, max_depth=depth, learning_rate=lr, subsample=0.8,
                                    random_state=seed).fit(x, y, sample_weight=w)
    feat, thr, left, right, val, roots = [], [], [], [], [], []
    n = 0
    for est in gb.estimators_[:, 0]:
        t = est.tree_
        roots.append(n)
        leaf = t.children_left < 0
        feat.append(np.where(leaf, -1, t.feature))
        thr.append(t.threshold)
        left.append(np.where(leaf, -1, t.children_left + n))
        right.append(np.where(leaf, -1, t.children_right + n))
        val.append(np.where(leaf, t.value[:, 0, 0] * lr, 0.0))
        n += t.node_count
    cat = np.concatenate
    out = Trees(cat(feat).astype(np.int32), cat(thr), cat(left).astype(np.int32), cat(right).astype(np.int32),
                cat(val), np.array(roots, np.int32))
    out.bias = float(gb.decision_function(x[:1])[0] - out.logit(x[:1])[0])
    return out


def source_folds(groups: list[str], folds: int, seed: int = 0) -> np.ndarray:
    """A fold per item such that a source is in one fold only (largest sources dealt first)."""
    uniq, counts = np.unique(groups, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    load, fold_of = np.zeros(folds), {}
    for i in order:
        f = int(np.argmin(load))
        fold_of[uniq[i]] = f
        load[f] += counts[i]
    return np.array([fold_of[g] for g in groups])


def calibrate(photos: list[np.ndarray], composites: list[np.ndarray], budget: float = 0.3,
              min_width: float = 0.1, steps: int = 60) -> Gate:
    """The gate from held-out scores: of the gates ``(lo, hi)`` on a grid whose mean share on real
    photos stays within ``budget`` — averaged over ``photos``, one score array per kind of photo
    (a photo folder, the data's real images), so that a small kind of photo weighs as much as a
    large one — the one with the largest mean share on ``composites`` (one array per set of real
    and cut-and-paste composites, averaged the same way). With a budget of 0.3 an unedited photo
    keeps about 70 % of the harmonizer's change away on average. When no gate on the grid fits the
    budget, the narrowest one at the top (``lo = 1 − min_width``)."""
    photos = [np.asarray(p, np.float64) for p in photos if len(p)]
    composites = [np.asarray(c, np.float64) for c in composites if len(c)]
    if not photos or not composites:
        raise InputError("calibrating the gate needs held-out scores of photos and of composites")
    best = (-1.0, 1 - min_width, 1.0)
    for lo in np.linspace(0, 1 - min_width, steps):
        for hi in np.linspace(lo + min_width, 1, max(2, int(round(steps * (1 - lo - min_width))) + 1)):
            g = Gate(float(lo), float(min(hi, 1.0)))
            if np.mean([g(p).mean() for p in photos]) > budget:
                continue
            gain = float(np.mean([g(c).mean() for c in composites]))
            if gain > best[0] + 1e-9:
                best = (gain, float(lo), float(min(hi, 1.0)))
    return Gate(best[1], best[2])


def held_out(x: np.ndarray, its: list[Item], folds: int = 5, seed: int = 0, **fit) -> np.ndarray:
    """Out-of-fold probabilities: each fold scored by a model trained without its sources (without
    its background photos when there are fewer sources than folds)."""
    groups = [it.group for it in its]
    if len(set(groups)) < folds:
        log.warning("%d source(s) for %d folds: folds by background photo instead", len(set(groups)), folds)
        groups = [it.other if it.kind == "paste" else it.image for it in its]
    fold = source_folds(groups, folds, seed)
    y = np.array([it.label for it in its])
    p = np.zeros(len(its))
    for f in range(folds):
        te = fold == f
        if not te.any():
            continue
        tr = ~te
        sub = [its[i] for i in np.flatnonzero(tr)]
        t = fit_trees(x[tr], y[tr], weights(sub), seed=seed, **fit)
        p[te] = 1 / (1 + np.exp(-t.logit(x[te])))
    return p


def report(p: np.ndarray, its: list[Item]) -> dict:
    """Held-out ROC AUC of every positive set against every negative set, and pooled."""
    sets = np.array([it.set for it in its])
    y = np.array([it.label for it in its])
    out = {"counts": {s: int((sets == s).sum()) for s in np.unique(sets)}, "auc": {}}
    for a in POSITIVE_SETS:
        for b in NEGATIVE_SETS:
            if (sets == a).any() and (sets == b).any():
                out["auc"][f"{a} vs {b}"] = round(roc_auc(p[sets == a], p[sets == b]), 4)
    out["auc"]["all"] = round(roc_auc(p[y == 1], p[y == 0]), 4)
    return out


def train(photos=(), composites=(), cutouts=None, data=None, out="runs/detector.safetensors", folds: int = 5,
          trees: int = 300, depth: int = 3, pastes: float = 1.0, regions: float = 0.5, cutout_pastes: int = 8,
          workers: int = 2, seed: int = 0, overwrite: bool = False, budget: float = 0.3, synthetic: bool = False,
          cache=None, style=False, style_file=None) -> dict:
    """Build the items, extract features, measure held out by source, calibrate the gate, fit on all.
    ``style``: also compare the two sides in an ImageNet network's early features
    (:mod:`router.style`; its weights from ``style_file`` or the ``[pretrained]`` extra); a
    :class:`router.style.Style` is used as it is."""
    out = check_new(out, overwrite)
    if style is True:
        from .style import imagenet
        style = imagenet(style_file)
    style = style or None
    its = items(photos, composites, cutouts, data, pastes, regions, cutout_pastes, seed=seed, synthetic=synthetic)
    x, its = extract(its, workers, cache, style)
    y = np.array([it.label for it in its])
    fit = {"trees": trees, "depth": depth}
    rep = {}
    if folds >= 2:
        p = held_out(x, its, folds, seed, **fit)
        rep = report(p, its)
        kinds = {}
        for i, it in enumerate(its):
            if it.set == "photos":                         # per photo folder
                where = Path(it.image).parent
                where = where.parent if where.name == "images" else where
                kinds.setdefault(("photos", str(where)), []).append(i)
            elif it.set == "data_reals" and it.group.startswith("data:"):   # the data's own photos
                kinds.setdefault(("photos", "data_reals"), []).append(i)
            elif it.set in ("composites", "pastes", "cutouts"):
                kinds.setdefault(("composites", it.set), []).append(i)
        gate = calibrate([p[v] for (k, _), v in kinds.items() if k == "photos"],
                         [p[v] for (k, _), v in kinds.items() if k == "composites"] or [p[y == 1]], budget)
        rep["gate_shares"] = {f"{k}:{n}": round(float(gate(p[v]).mean()), 3) for (k, n), v in kinds.items()}
    else:
        gate = Gate()
    det = Detector(fit_trees(x, y, weights(its), seed=seed, **fit), gate,
                   {"held_out": rep, "training": {"photos": [str(p) for p in photos], "composites": [str(c) for c in composites],
                                                  "cutouts": str(cutouts or ""), "data": str(data or ""), "folds": folds,
                                                  "items": len(its), "seed": seed, "budget": budget,
                                                  "synthetic": synthetic, "style": style is not None}}, style)
    det.save(out, overwrite=overwrite)
    rep = {"out": str(out), "gate": {"lo": round(gate.lo, 4), "hi": round(gate.hi, 4)}, **rep}
    from common.io import write_text
    write_text(json.dumps(rep, indent=1) + "\n", out.with_suffix(".report.json"), overwrite=True)
    return rep


@shared_args
def _cli_train(photos="assets/photos", composites=None, cutouts=None, data=None, out="runs/detector.safetensors",
               folds: int = 5, trees: int = 300, depth: int = 3, pastes: float = 1.0, regions: float = 0.5,
               cutout_pastes: int = 8, workers: int = 2, seed: int = 0, overwrite: bool = False, budget: float = 0.3,
               synthetic: bool = False, cache=None, style: bool = False, style_file=None):
    """Train the composite detector, measure it held out by source and calibrate its gate.

    Args:
        photos: comma-separated photo folders (images/ + masks/, optional manifest.json with sources).
        composites: comma-separated folders of real composites with masks (positives).
        cutouts: a folder of RGBA cut-outs to paste into the photos (positives).
        data: a harmonization dataset (iHarmony4 layout): its training composites and real images.
        out: the detector checkpoint (.safetensors); the held-out report goes beside it (.report.json).
        folds: source folds for the held-out scores and the gate's calibration (0: no calibration).
        trees: boosted trees.
        depth: depth of each tree.
        pastes: cut-and-paste composites made per photo (a region of one photo into another).
        regions: photos per photo shown with another photo's mask (negatives).
        cutout_pastes: pastes per cut-out.
        workers: processes reading pictures.
        budget: the gate's largest mean share on held-out real photos (each kind of photo weighing
            the same); the gate is the one that gives held-out composites the most within it.
        synthetic: also learn --data's composites as positives (recoloured foregrounds; held out they
            are hardly told from their own real images, and they teach that object photos are composites).
        cache: an .npz of features by picture, read and extended (repeat trainings skip the reading).
        style: also compare foreground and background in the early features of tf_efficientnet_lite0
            with its ImageNet weights (router.style; needs the [pretrained] extra or --style_file).
        style_file: those weights as a local file (timm's tf_efficientnet_lite0 state dict).
    """
    print_json(train(names(photos) if photos else [], names(composites) if composites else [], cutouts, data, out,
                     folds, trees, depth, pastes, regions, cutout_pastes, workers, seed, overwrite, budget,
                     synthetic, cache, style, style_file))


main = CLI = _cli_train

if __name__ == "__main__":
    run(CLI)
