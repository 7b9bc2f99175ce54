"""How much of a composite's error can be removed at all, and does a harmonizer's change point the right way?

    python -m eval.probes prior --data data/mini4                 # foreground-statistics priors, no network
    python -m eval.probes frontier --data data/mini4 --ckpt models/default/harmonizer_unified.safetensors
    python -m eval.probes strength --data data/mini4 --ckpt runs/issam_all.safetensors
    python -m eval.probes separability --data data/mini4 [--hidden 64]   # can colour statistics route?
    python -m eval.probes routing_sources --data data/mini4   # routing photos of a source never trained on
    python -m eval.probes realness --data data/mini4          # can a composite be told from its real photo?
    python -m eval.probes modes --data data/mini4 --runs runs # unified, routed, soft, oracle on held-out photos

``prior``: every test composite's foreground is re-normalised in CIELAB (its own per-channel mean and
std replaced by a target, its structure kept), the target blending with weight ``alpha`` the
composite's own statistics and either (``prior``) the mean foreground statistics of the training
photos, (``bg``) a ridge regression of those on the background's statistics, or (``content``) one on
the background's statistics and ImageNet features of the foreground's grey levels (what it shows,
not its colours), fitted on the training photos. It also reports how far each kind's predicted
foreground mean colour lies from the real one (CIELAB ΔE). Where no ``alpha`` lowers fMSE, the
composite's foreground statistics are already a better guess than anything global statistics
learned from the training photos can make. Each row also
reports the real-photo drift: these estimators cannot tell a composite from a real photo, so they
move both, and the pair (fMSE gain, drift) is a frontier that a harmonizer held to a drift limit
can be compared with.

``frontier``: the harmonizer's change at full strength and the ``bg`` prior's, each weighted, summed
on a grid of weights: fMSE, harm rate and real-photo drift of every pair, so that one can see whether
two estimators buy more gain per level of drift together than alone (their changes to real photos
may cancel, or add).

``strength``: the harmonizer's change ``d = G(x) − x`` against the needed change ``e = t − x`` in the
foreground, at the metric's size: an output ``x + β·d`` has
``fMSE(β) = |e|² − 2β⟨d, e⟩ + β²|d|²`` (per image, foreground-normalised, averaged as the scorer
does), minimal at ``β* = mean⟨d, e⟩ / mean|d|²`` per domain; ``β* ≤ 0`` means the change points the
wrong way on average. Read off the test split, β* is a diagnosis, not a setting to ship.

``separability``: a softmax regression (or small MLP) on 49 colour statistics of fresh composites
made by each domain's process (the domain classifier's training data): if it cannot fit even its
own training composites, the processes leave too little trace for a classifier to route by.

``routing_sources``: the probe classifier's head refitted once per source of the benchmark's photos
(the registry package a photo came from, in the photo manifest), on the composites of every other
source (both splits), and scored on that source's composites: how well routing carries to photos
from somewhere no training saw.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.cli import names, run, shared_args
from common.io import InputError, read_image, read_mask
from domains.build import composite_sources
from domains.dataset import load_samples, real_images
from common.colour import lab_to_rgb, rgb_to_lab

from common import metrics as M


def lab_stats(image: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB (mean, std) per channel of the foreground and of the background: two 6-vectors."""
    px = image.permute(1, 2, 0).double().numpy()
    fg = mask[0].numpy() > 0.5
    out = []
    for sel in (fg, ~fg):
        lab = rgb_to_lab(px[sel])
        out.append(np.r_[lab.mean(0), lab.std(0)])
    return out[0], out[1]


def renormalise(image: torch.Tensor, mask: torch.Tensor, target: np.ndarray, alpha: float) -> torch.Tensor:
    """The foreground with its CIELAB mean/std moved a share ``alpha`` of the way to ``target`` (6-vector)."""
    px = image.permute(1, 2, 0).double().numpy().copy()
    fg = mask[0].numpy() > 0.5
    lab = rgb_to_lab(px[fg])
    mu, sd = lab.mean(0), lab.std(0) + 1e-6
    t_mu = alpha * target[:3] + (1 - alpha) * mu
    t_sd = alpha * np.maximum(target[3:], 1e-3) + (1 - alpha) * sd
    px[fg] = np.clip(lab_to_rgb((lab - mu) / sd * t_sd + t_mu), 0, 1)
    return torch.from_numpy(px).permute(2, 0, 1).float()


KINDS = ("prior", "bg", "content")
CONTENT_RIDGES = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def grey_features(clf, image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """What the foreground shows, not its colours: the probe classifier's last two stages over the
    foreground (mask-weighted channel means) of the image's grey levels, averaged with its mirror."""
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).expand(3, -1, -1)
    x, m = clf._resized(grey[None], mask[None])
    views = []
    for v, mv in ((x, m), (x.flip(-1), m.flip(-1))):
        feats = []
        for f in clf.net(v)[-2:]:
            w = torch.nn.functional.adaptive_avg_pool2d(mv, f.shape[-2:])
            feats.append((f * w).sum((2, 3)) / w.sum((2, 3)).clamp_min(1e-3))
        views.append(torch.cat(feats, 1))
    return ((views[0] + views[1]) / 2)[0].double().numpy()


def _ridge(a: np.ndarray, y: np.ndarray, lam: float):
    """Ridge regression with an unpenalised intercept: a function from rows of ``a`` to ``y``."""
    am, ym = a.mean(0), y.mean(0)
    w = np.linalg.solve((a - am).T @ (a - am) + lam * np.eye(a.shape[1]), (a - am).T @ (y - ym))
    return lambda q: (q - am) @ w + ym


class StatsPrior:
    """Foreground statistics learned from the training photos (``fit`` on (fg, bg) rows): their mean
    (``target(bg, "prior")``), a ridge regression on the background's statistics (``"bg"``), or, with
    ``content`` rows (:func:`grey_features`), a ridge regression on the background's statistics and
    what the foreground shows (``"content"``: colourisation as a prior; its penalty is chosen by
    cross-validation over ``folds``)."""

    def __init__(self, ridge: float = 10.0):
        self.ridge = ridge
        self.content = None

    def fit(self, fg: np.ndarray, bg: np.ndarray, content: np.ndarray | None = None,
            folds: np.ndarray | None = None) -> "StatsPrior":
        self.mean = fg.mean(0)
        x = np.c_[bg, np.ones(len(bg))]
        self.w = np.linalg.solve(x.T @ x + self.ridge * np.eye(x.shape[1]), x.T @ fg)
        if content is not None:
            a = np.c_[content, bg]
            self.scale = (a.mean(0), a.std(0) + 1e-6)
            a = (a - self.scale[0]) / self.scale[1]

            def cv_error(lam):  # held-out error of the predicted mean colour, fold by fold
                errs = []
                for k in np.unique(folds):
                    held = folds == k
                    pred = _ridge(a[~held], fg[~held], lam)(a[held])
                    errs.append(np.linalg.norm(pred[:, :3] - fg[held, :3], axis=1).mean())
                return np.mean(errs)
            self.content_ridge = min(CONTENT_RIDGES, key=cv_error)
            self.content = _ridge(a, fg, self.content_ridge)
        return self

    def target(self, bg: np.ndarray, kind: str, content: np.ndarray | None = None) -> np.ndarray:
        if kind not in KINDS:
            raise InputError(f"prior kind {kind!r}: use prior, bg or content")
        if kind == "content":
            if self.content is None or content is None:
                raise InputError("the content prior needs the foreground's grey-level features (fit with content)")
            return self.content(((np.r_[content, bg] - self.scale[0]) / self.scale[1])[None])[0]
        return self.mean if kind == "prior" else np.r_[bg, 1.0] @ self.w


def fit_prior(data, domains="all", ridge: float = 10.0, clf=None, folds: int = 5) -> StatsPrior:
    """The priors of the training photos; with a probe classifier ``clf``, the content prior too."""
    from domains.dataset import photo_fold
    fg, bg, content, fold = [], [], [], []
    for domain, real, mask in real_images(load_samples(data, domains, "train")):
        image, m = read_image(real), read_mask(mask)
        f, b = lab_stats(image, m)
        fg.append(f)
        bg.append(b)
        if clf is not None:
            content.append(grey_features(clf, image, m))
            fold.append(photo_fold(domain, real.name, folds))
    return StatsPrior(ridge).fit(np.array(fg), np.array(bg), np.array(content) if clf is not None else None,
                                 np.array(fold) if clf is not None else None)


@shared_args
@torch.inference_mode()
def prior(data="data/mini4", domains="all", alphas=(0.25, 0.5, 1.0), kinds=("prior", "bg"), ridge: float = 10.0,
          split: str = "test", ckpt: str = "models/default/classifier.safetensors") -> dict:
    """fMSE of foreground-statistics priors on the test split, per domain, for each kind and alpha,
    and how far each moves the split's real photos passed through unedited (the harmonizers'
    real-photo drift: 8-bit levels inside the mask, full resolution); and how far each kind's
    predicted foreground mean colour lies from the real one on the split's photos (CIELAB ΔE).

    Args:
        alphas: how far to move each foreground's CIELAB statistics towards the prediction.
        kinds: prior (the training photos' average), bg (ridge regression on the background) and/or
            content (ridge regression on the background and on ImageNet features of the
            foreground's grey levels, its penalty cross-validated over the training photos).
        ridge: ridge strength of the bg regression.
        ckpt: the probe classifier whose backbone gives the content prior's features.
    """
    from .compare import real_drift
    from .score import score
    alphas = _floats(alphas)
    kinds = kinds if isinstance(kinds, (list, tuple)) else names(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise InputError(f"prior kind {kind!r}: use prior, bg or content")
    clf = None
    if "content" in kinds:
        from router import classifier as C
        clf = C.load(ckpt)[0]
        if clf.cfg.head != "probe":
            raise InputError(f"{ckpt}: a {clf.cfg.head} classifier; the content prior reads a probe's backbone")
    res = {"composite": {d: r["fMSE"] for d, r in score(data, lambda x, m: x, domains, split,
                                                           desc="composite").summary().items()}}
    sp = fit_prior(data, domains, ridge, clf)  # one pass over the training photos serves every kind

    def target(x, m, kind):
        return sp.target(lab_stats(x, m)[1], kind, grey_features(clf, x, m) if kind == "content" else None)

    preds = {}
    for kind in kinds:
        for a in alphas:
            def predict(x, m, kind=kind, a=a):
                return renormalise(x, m, target(x, m, kind), a)
            s = score(data, predict, domains, split, desc=f"{kind} {a}").summary()
            res[f"{kind} α={a:g}"] = {d: r["fMSE"] for d, r in s.items()}
            preds[f"{kind} α={a:g}"] = lambda x, m, _d, p=predict: p(x, m)
    samples = load_samples(data, domains, split)
    drift = real_drift(samples, preds)
    err = {k: {} for k in kinds}
    for domain, real, mask in real_images(samples):
        image, m = read_image(real), read_mask(mask)
        true = lab_stats(image, m)[0][:3]
        for kind in kinds:
            e = float(np.linalg.norm(target(image, m, kind)[:3] - true))
            for d in (domain, "All"):
                err[kind].setdefault(d, []).append(e)
    err = {k: {d: float(np.mean(v)) for d, v in r.items()} for k, r in err.items()}
    _print(res, "fMSE of foreground-statistics priors")
    print()
    _print({k: {d: drift[k][d] for d in res["composite"]} for k in drift}, "real-photo drift (8-bit levels)")
    print()
    _print({k: {d: err[k][d] for d in res["composite"]} for k in kinds},
           "error of the predicted foreground mean colour on the real photos (CIELAB ΔE)"
           + (f"; content prior's ridge {sp.content_ridge:g}" if clf is not None else ""))
    return {"fMSE": res, "drift": drift, "mean_error": err}


@shared_args
@torch.inference_mode()
def frontier(data="data/mini4", ckpt: str = "models/default/harmonizer_unified.safetensors", domains="all",
             split: str = "test", a=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), b=(0.0, 0.05, 0.1, 0.15, 0.2),
             ridge: float = 10.0) -> dict:
    """fMSE, harm rate and real-photo drift of ``x + a·(G(x) − x) + b·(P(x) − x)`` on a grid of
    (a, b): G is the harmonizer at full strength (a GCT's gate scale set to 1), P the ``bg`` prior
    at alpha 1 (the foreground's CIELAB statistics replaced by the ridge regression's). Whether two
    estimators together buy more gain per level of drift than either alone.

    Args:
        ckpt: harmonizer checkpoint (G).
        a: weights of the harmonizer's change.
        b: weights of the prior's change.
        ridge: ridge strength of the bg regression.
    """
    from harmonizers.models import load as load_h
    from .score import model_predictor
    grid = [(float(x), float(y)) for x in _floats(a) for y in _floats(b)]
    model = load_h(ckpt)[0]
    if hasattr(model.net, "strength"):
        model.net.strength.fill_(1.0)
    sp = fit_prior(data, domains, ridge)
    proto = M.Protocol("iharm")
    # as the scorer and eval.compare run a model: the official protocol's inputs for the composites,
    # full resolution with the background kept for the real photos
    run_model = {"iharm": model_predictor(model, protocol="iharm"), "fullres": model_predictor(model, protocol="fullres")}

    def changes(x, m, protocol):
        return (run_model[protocol](x, m) - x, renormalise(x, m, sp.target(lab_stats(x, m)[1], "bg"), 1.0) - x)

    samples = load_samples(data, domains, split)
    fm, harm, comp = {g: 0.0 for g in grid}, {g: 0 for g in grid}, 0.0
    for s in tqdm(samples, desc="composites", unit="img"):  # streamed: nothing per image is kept
        x, t, m = proto.inputs(read_image(s.composite), read_image(s.real), read_mask(s.mask))
        dg, dp = changes(x, m, "iharm")
        f0 = float(M.iharm_compute(x[None], t[None], m[None])["fMSE"])
        comp += f0
        for g in grid:
            f = float(M.iharm_compute((x + g[0] * dg + g[1] * dp).clamp(0, 1)[None], t[None], m[None])["fMSE"])
            fm[g] += f
            harm[g] += M.harms(f, f0)
    drift, photos = {g: 0.0 for g in grid}, real_images(samples)
    for _, real, mask in tqdm(photos, desc="real photos", unit="img"):
        r, m = read_image(real), read_mask(mask)
        dg, dp = changes(r, m, "fullres")
        for g in grid:
            drift[g] += float(M.drift((r + g[0] * dg + g[1] * dp).clamp(0, 1)[None], r[None], m[None]))
    n, c = len(samples), comp / len(samples)
    rows = [{"a": g[0], "b": g[1], "fMSE": fm[g] / n, "change": fm[g] / n / c - 1, "harm_rate": harm[g] / n,
             "drift": drift[g] / len(photos)} for g in grid]
    print(f"{ckpt} (a) and the bg prior (b) on {data} ({split}, {n} composites, {len(photos)} real photos); "
          f"composite fMSE {c:.1f}\n")
    print("| a | b | fMSE | change | harm rate | real-photo drift |\n|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['a']:g} | {r['b']:g} | {r['fMSE']:.1f} | {r['change']:+.1%} | {r['harm_rate']:.1%} | "
              f"{r['drift']:.2f} |")
    return {"composite": c, "grid": rows}


def _floats(v) -> list[float]:
    return [float(x) for x in (v if isinstance(v, (list, tuple)) else names(str(v)))]


@shared_args
@torch.inference_mode()
def strength(data="data/mini4", ckpt: str = "runs/issam_all.safetensors", domains="all", split: str = "test",
             size: int = M.EVAL_SIZE, protocol: str = "iharm") -> dict:
    """β* (the best scaling of the model's change) and fMSE at β = 0, 1, β* per domain.

    Args:
        ckpt: harmonizer checkpoint.
        protocol: iharm or fullres, as eval.score.
    """
    from .score import checkpoint_predictor
    proto = M.Protocol(protocol, size)
    predict = checkpoint_predictor(ckpt, protocol=protocol, size=size)
    per = {}
    for s in tqdm(load_samples(data, domains, split), desc="strength", unit="img"):
        x, t, m = proto.inputs(read_image(s.composite), read_image(s.real), read_mask(s.mask))
        y = predict(x, m)
        x, y, t, m = (a[None] for a in (x, y, t, m))
        if protocol == "fullres":
            y = M.prepare(y, t, m, size)[0]
            x, t, m = M.prepare(x, t, m, size)
        else:
            x, y, t, m = x.double() * M.PEAK, y.double().clamp(0, 1) * M.PEAK, (t.double() * M.PEAK).round(), m.double()
        per.setdefault(s.domain, []).append((x, y, t, m))
    per["All"] = [r for d in list(per) for r in per[d]]
    res = {}
    for d, rows in per.items():
        xs, ys, ts, ms = (torch.cat(c) for c in zip(*rows))
        dv, ev = ys - xs, ts - xs
        de, dd = (ms * dv * ev).flatten(1).sum(1), (ms * dv * dv).flatten(1).sum(1)
        b = float(de.mean() / dd.mean().clamp_min(1e-12))

        def fmse(beta):
            p = (xs + beta * dv).clamp(0, M.PEAK)
            if protocol == "fullres":
                return float(M.fmse_255(p, ts, ms).mean())
            return float(M.fmse_soft(p, ts, ms).mean())
        f = {beta: fmse(beta) for beta in (0.0, 1.0, b)}
        res[d] = {"beta_star": b, "fMSE_composite": f[0.0], "fMSE_model": f[1.0], "fMSE_beta_star": f[b]}
    print(f"{ckpt} on {data} ({split}): the change's useful share\n")
    print("| domain | composite fMSE | model fMSE | β* | fMSE at β* |\n|---|---:|---:|---:|---:|")
    for d, r in res.items():
        print(f"| {d} | {r['fMSE_composite']:.1f} | {r['fMSE_model']:.1f} | {r['beta_star']:.2f} | "
              f"{r['fMSE_beta_star']:.1f} |")
    return res


def colour_features(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """49 hand-made statistics of a composite for the separability probe: foreground and background
    CIELAB mean, std and 5/50/95 % quantiles (30), their mean differences and log std ratios (6),
    RGB channel correlations inside and outside (6), the foreground's 8-bit histogram per channel:
    share of empty levels between its extremes and roughness (6), and the foreground share (1)."""
    px = image.permute(1, 2, 0).double().numpy().reshape(-1, 3)
    fg = mask[0].numpy().reshape(-1) > 0.5
    out, stats = [], []
    for sel in (fg, ~fg):
        lab = rgb_to_lab(px[sel])
        q = np.quantile(lab, [0.05, 0.5, 0.95], axis=0)
        stats.append((lab.mean(0), lab.std(0) + 1e-6))
        out += [lab.mean(0), lab.std(0), q.reshape(-1)]
    out += [stats[0][0] - stats[1][0], np.log(stats[0][1] / stats[1][1])]
    for sel in (fg, ~fg):
        c = np.corrcoef(px[sel].T + 1e-9 * np.random.default_rng(0).standard_normal((3, int(sel.sum()))))
        out.append(c[np.triu_indices(3, 1)])
    levels = np.round(px[fg] * 255).astype(int)
    gaps, rough = [], []
    for ch in range(3):
        h = np.bincount(levels[:, ch], minlength=256).astype(float)
        lo, hi = levels[:, ch].min(), levels[:, ch].max()
        gaps.append(float((h[lo:hi + 1] == 0).mean()) if hi > lo else 0.0)
        hn = h / max(h.sum(), 1)
        rough.append(float(np.abs(np.diff(hn, 2)).sum()))
    out += [np.array(gaps), np.array(rough), np.array([fg.mean()])]
    return np.concatenate(out).astype(np.float32)


def _fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, hidden: int = 0, weight_decay: float = 1e-3,
                steps: int = 300, seed: int = 0) -> torch.nn.Module:
    """Softmax regression (``hidden = 0``) or a one-hidden-layer MLP, full batch, L-BFGS."""
    torch.manual_seed(seed)
    net = torch.nn.Linear(x.shape[1], classes) if hidden == 0 else torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    opt = torch.optim.LBFGS(net.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y) + weight_decay * sum(
            p.pow(2).sum() for n, p in net.named_parameters() if "weight" in n)
        loss.backward()
        return loss
    opt.step(closure)
    return net


@shared_args
def separability(data="data/mini4", n: int = 1500, size: int = 128, hidden: int = 0, seed: int = 0) -> dict:
    """How well colour statistics tell the domains' processes apart: n fresh composites per
    domain's process, 49 statistics each, a softmax regression (or an MLP); accuracy on those, on
    fresh ones of the same photos, and on the stored test split.

    Args:
        n: fresh composites to fit on.
        hidden: hidden units of an MLP (0: softmax regression).
    """
    from router.synth import ProcessComposites
    from domains.dataset import HarmonyDataset
    torch.manual_seed(seed)
    base = HarmonyDataset(data, "all", "train", size=size)
    synth = ProcessComposites(base, length=n)
    fresh = ProcessComposites(base, length=max(1, n // 3))
    test = HarmonyDataset(data, "all", "test", size=size, train=False, domain_names=base.domains)
    feats = {}
    for name, ds in (("train", synth), ("fresh", fresh), ("test", test)):
        xs, ys = [], []
        for i in tqdm(range(len(ds)), desc=f"features {name}", unit="img"):
            it = ds[i]
            xs.append(colour_features(it["composite"], it["mask"]))
            ys.append(it["domain"])
        feats[name] = (torch.from_numpy(np.stack(xs)), torch.tensor(ys))
    x, y = feats["train"]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    net = _fit_linear((x - mu) / sd, y, len(base.domains), hidden, seed=seed)
    res = {"features": int(x.shape[1]), "n_train": len(y), "n_fresh": len(feats["fresh"][1]),
           "n_test": len(feats["test"][1]),
           "model": "softmax regression" if hidden == 0 else f"MLP({hidden})"}
    with torch.no_grad():
        for name, (xx, yy) in feats.items():
            pred = net((xx - mu) / sd).argmax(1)
            res[f"accuracy_{name}"] = float((pred == yy).float().mean())
            if name == "test":
                cm = torch.zeros(len(base.domains), len(base.domains), dtype=torch.long)
                for t, p in zip(yy, pred):
                    cm[t, p] += 1
                res["confusion_test"] = {d: dict(zip(base.domains, map(int, row)))
                                         for d, row in zip(base.domains, cm)}
    print(f"{res['model']} on {res['features']} colour statistics: accuracy {res['accuracy_train']:.3f} on its "
          f"{res['n_train']} synthesized training composites, {res['accuracy_fresh']:.3f} on {res['n_fresh']} fresh "
          f"ones (same photos, new draws), {res['accuracy_test']:.3f} on the {res['n_test']} stored test composites "
          "(unseen photos; chance 0.25)")
    return res


@shared_args
def routing_sources(data="data/mini4", ckpt: str = "models/default/classifier.safetensors", batch_size: int = 32,
                    l2: float | None = None, device: str = "auto") -> dict:
    """Leave-one-source-out routing accuracy of a probe classifier (its backbone, head refitted per
    source as the checkpoint's was: its balance, relit rows and L2 penalty).

    Args:
        ckpt: a classifier checkpoint with the probe head (router.train --head probe).
        l2: the head's L2 penalty (default: the checkpoint's).
    """
    from torch.utils.data import ConcatDataset

    from domains.dataset import HarmonyDataset
    from router import classifier as C
    from router.train import HeadRefit
    model, md = C.load(ckpt, device=device)
    if model.cfg.head != "probe":
        raise InputError(f"{ckpt}: a {model.cfg.head} classifier; routing_sources refits a probe head")
    sets = [HarmonyDataset(data, "all", split, size=model.cfg.size, train=False, domain_names=list(model.cfg.domains))
            for split in ("train", "test")]
    samples = [s for ds in sets for s in ds.samples]
    where = composite_sources(data)
    src = [where.get(s.composite.name, "unknown") for s in samples]
    # refit as the checkpoint's head was fitted (older checkpoints: domain balance)
    refit = HeadRefit(model, md.get("probe", {}), ConcatDataset(sets), samples, src, batch_size)
    feats, labels = refit.feats, refit.labels
    res, hit = {}, 0
    for name in sorted(set(src)):
        out = torch.tensor([s == name for s in src])
        refit.fit(~out, l2)
        with torch.no_grad():
            pred = model.head((feats[out].to(model.feat_mean.device) - model.feat_mean) / model.feat_std).argmax(1).cpu()
        right = int((pred == labels[out]).sum())
        hit += right
        res[name] = {"composites": int(out.sum()), "accuracy": right / int(out.sum()),
                     "domains": dict(zip(model.cfg.domains, torch.bincount(labels[out], minlength=len(model.cfg.domains)).tolist()))}
    summary = {"accuracy": hit / len(src), "mean_per_source": float(np.mean([r["accuracy"] for r in res.values()])),
               "sources": res}
    print(f"{ckpt}: head refitted without each source, accuracy on that source's composites\n")
    print("| source | composites | per domain | accuracy |\n|---|---:|---|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['composites']} | {', '.join(f'{d} {n}' for d, n in r['domains'].items() if n)} | "
              f"{r['accuracy']:.3f} |")
    print(f"| all (pooled) | {len(src)} | | {summary['accuracy']:.3f} |\n\nmean over sources {summary['mean_per_source']:.3f}")
    return summary


def roc_auc(score: torch.Tensor, label: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count half)."""
    pos, neg = score[label == 1], score[label == 0]
    if not len(pos) or not len(neg):
        raise InputError("roc_auc needs positives and negatives")
    return M.roc_auc(pos.double().cpu().numpy(), neg.double().cpu().numpy())


@shared_args
@torch.no_grad()  # not inference_mode: the regression is fitted with autograd
def realness(data="data/mini4", domains="all", split: str = "train", folds: int = 5, features: str = "gct",
             size: int | None = None, fg_chroma: bool = False, ckpt: str = "models/default/classifier.safetensors",
             weight_decay: float = 1e-2) -> dict:
    """Tell composites from their real photos by statistics a harmonizer could see.

    Args:
        split: the split whose composites and real photos are used.
        folds: folds by photo; each fold's regression is fitted on the others.
        features: gct (the gated colour transform's statistics) or classifier (the probe
            classifier's pooled ImageNet features of ``--ckpt``, 1,664 numbers with its regions).
        size: the resolution the features are taken at (default: the shipped GCT's 64, or the
            classifier's own).
        fg_chroma: with gct, add the foreground's mean a and b to the 39 statistics (as ``gct64c``).
        ckpt: the probe classifier whose features ``--features classifier`` uses.
        weight_decay: L2 penalty of the logistic regression on the standardised features.
    """
    from domains.dataset import HarmonyDataset, batches
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    if features == "gct":
        from harmonizers.gct import GatedColourTransform, GCTConfig, rgb_to_lab
        gct = GatedColourTransform(GCTConfig(fg_chroma=fg_chroma))
        size = size or 64

        def extract(x, m):
            return gct.features(rgb_to_lab(x), m)[0]
    elif features == "classifier":
        from router import classifier as C
        model, _ = C.load(ckpt)
        model.eval()
        size = size or model.cfg.size
        extract = model.pooled
    else:
        raise InputError(f"--features {features!r}: use gct or classifier")
    ds = HarmonyDataset(data, domains, split, size=size, train=False)
    photo = {p: i for i, p in enumerate(dict.fromkeys(str(s.real) for s in ds.samples))}
    feats, label, group, domain = [], [], [], []
    for i, b in enumerate(tqdm(batches(ds, 32), desc="realness features", unit="batch")):
        rows = ds.samples[i * 32:i * 32 + len(b["mask"])]
        for key, y in (("composite", 1), ("real", 0)):
            feats.append(extract(b[key], b["mask"]).float())
            label += [y] * len(rows)
            group += [photo[str(s.real)] for s in rows]
            domain += [s.domain for s in rows]
    x, y, g = torch.cat(feats), torch.tensor(label), torch.tensor(group)
    fold = g % folds
    score = torch.zeros(len(y))
    for f in range(folds):
        fit = fold != f
        mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
        with torch.enable_grad():
            net = _fit_linear((x[fit] - mu) / sd, y[fit], 2, weight_decay=weight_decay)
        logits = net((x[~fit] - mu) / sd)
        score[~fit] = logits[:, 1] - logits[:, 0]
    res = {"features": int(x.shape[1]), "photos": len(photo), "composites": int(y.sum()), "auc": roc_auc(score, y),
           "accuracy": float(((score > 0).long() == y).float().mean()),
           "per_domain": {d: roc_auc(score[idx], y[idx]) for d in dict.fromkeys(domain)
                          for idx in [torch.tensor([e == d for e in domain])]}}
    print(f"composites against their real photos ({res['composites']} each, {res['photos']} photos, "
          f"{folds} folds by photo), {res['features']} {features} features at {size} px: AUC {res['auc']:.3f}, "
          f"accuracy {res['accuracy']:.3f}; per domain " + ", ".join(f"{d} {a:.3f}" for d, a in res["per_domain"].items()))
    return res


@shared_args
@torch.no_grad()  # not inference_mode: the probe head is fitted with autograd
def modes(data="data/mini4", zoo: str | None = None, runs: str = "runs", family: str = "gct", folds: int = 5,
          batch_size: int = 32) -> dict:
    """Unified, routed, soft and oracle routing on held-out training photos (cross-fitted).

    Args:
        zoo: the zoo whose probe classifier is refitted per fold and whose models' gate scales are used.
        runs: folder with the fold models of a cross-fitted calibration.
        family: their name prefix (<runs>/<family>_all.fold<k>.safetensors, <family>_<domain>.fold<k>...).
        folds: K of --calibrate_folds.
    """
    from common import checkpoint
    from domains.dataset import HarmonyDataset, photo_fold
    from harmonizers.models import load as load_h
    from router.api import Harmonizer
    from router.train import HeadRefit
    h = Harmonizer.from_zoo(zoo)
    clf = h.classifier
    if clf.cfg.head != "probe":
        raise InputError(f"{h.manifest['classifier']}: a {clf.cfg.head} classifier; modes refits a probe head")
    doms = list(clf.cfg.domains)
    roles = {d: f"{family}_{d}" for d in doms if d in h.models}
    if h.unified is not None:
        roles["unified"] = f"{family}_all"
    scale = {r: float(h.unified.net.strength if r == "unified" else h.models[r].net.strength) for r in roles}
    paths = {(r, k): Path(runs) / f"{name}.fold{k}.safetensors" for r, name in roles.items() for k in range(folds)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no fold model ({len(missing)} missing; train with --calibrate_folds {folds})")
    size = checkpoint.read_meta(next(iter(paths.values())))["size"]
    sets = {s: HarmonyDataset(data, "all", "train", size=s, train=False, domain_names=doms) for s in {size, clf.cfg.size}}
    samples = sets[size].samples
    where = composite_sources(data)
    fitted = checkpoint.read_meta(h.manifest["classifier"]).get("probe", {})
    refit = HeadRefit(clf, fitted, sets[clf.cfg.size], samples, [where.get(s.composite.name, "unknown") for s in samples],
                      batch_size)
    fold = torch.tensor([photo_fold(s.domain, s.real.name, folds) for s in samples])
    mode_names = ("unified", "routed", "soft", "oracle") if h.unified is not None else ("routed", "soft", "oracle")
    avail = [d for d in doms if d in roles]  # the domains with a model, and their classifier columns
    col = torch.tensor([doms.index(d) for d in avail])
    one_hot = lambda a: torch.nn.functional.one_hot(a, len(doms)).float()  # noqa: E731
    top = lambda p: one_hot(col[p[:, col].argmax(1)])  # noqa: E731 (routed: the likeliest domain with a model)
    rows = {m: {"fMSE": [], "drift": []} for m in mode_names}
    base, photo, hits = [], [], []
    for k in range(folds):
        held = torch.nonzero(fold == k).flatten().tolist()
        if not held:
            continue
        refit.fit(fold != k)
        nets = {}
        for r in roles:
            nets[r] = load_h(paths[r, k])[0].eval()
            nets[r].net.strength.fill_(scale[r])
        for i0 in tqdm(range(0, len(held), batch_size), desc=f"fold {k}", unit="batch"):
            idx = held[i0:i0 + batch_size]
            small = [sets[size][i] for i in idx]
            big = [sets[clf.cfg.size][i] for i in idx]
            comp, real, mask = (torch.stack([it[key] for it in small]) for key in ("composite", "real", "mask"))
            m_big = torch.stack([it["mask"] for it in big])
            true = torch.tensor([it["domain"] for it in small])
            p_comp = clf.probabilities(torch.stack([it["composite"] for it in big]), m_big)
            p_real = clf.probabilities(torch.stack([it["real"] for it in big]), m_big)
            hits.append(p_comp.argmax(1) == true)
            with torch.inference_mode():
                outs = {x: {r: nets[r](inp, mask) for r in roles} for x, inp in (("comp", comp), ("real", real))}

            def mix(x, w):
                """Σ_d w_d·G_d over the domains with a model, weights renormalised; where they all
                weigh 0 (oracle on a domain without a model), the unified model, as eval.benchmark."""
                w, inp = w[:, col], comp if x == "comp" else real
                tot = w.sum(1, keepdim=True)
                out = sum((w / tot.clamp_min(1e-12))[:, j, None, None, None] * outs[x][d] for j, d in enumerate(avail))
                return torch.where(tot[..., None, None] > 0, out, outs[x].get("unified", inp))

            for m in mode_names:
                if m == "unified":
                    o_c, o_r = outs["comp"]["unified"], outs["real"]["unified"]
                else:
                    pc, pr = {"routed": (top(p_comp), top(p_real)), "soft": (p_comp, p_real),
                              "oracle": (one_hot(true), one_hot(true))}[m]
                    o_c, o_r = mix("comp", pc), mix("real", pr)
                rows[m]["fMSE"].append(M.fmse(o_c, real, mask))
                rows[m]["drift"].append(M.drift(o_r, real, mask))
            base.append(M.fmse(comp, real, mask))
            photo += [str(samples[i].real) for i in idx]
    base = torch.cat(base)
    groups = [torch.tensor([i for i, q in enumerate(photo) if q == p]) for p in dict.fromkeys(photo)]
    res = {"composites": len(base), "photos": len(groups), "fMSE_composite": float(base.mean()),
           "router_accuracy": float(torch.cat(hits).float().mean()), "scales": scale, "modes": {}}
    for m, v in rows.items():
        f, d = torch.cat(v["fMSE"]), torch.cat(v["drift"])
        res["modes"][m] = {"fMSE": float(f.mean()), "change": float(f.mean() / base.mean() - 1),
                           "harm_rate": float(M.harms(f, base).float().mean()),
                           "drift": float(torch.stack([d[g].mean() for g in groups]).mean())}
    print(f"{res['composites']} training composites of {res['photos']} photos, each harmonized by the models of the "
          f"fold that left its photo out ({folds} folds); router accuracy on them {res['router_accuracy']:.3f}\n")
    print("| mode | fMSE | change | harm rate | real-photo drift |\n|---|---:|---:|---:|---:|")
    print(f"| composite | {res['fMSE_composite']:.1f} | | | |")
    for m, r in res["modes"].items():
        print(f"| {m} | {r['fMSE']:.1f} | {r['change']:+.2%} | {r['harm_rate']:.1%} | {r['drift']:.2f} |")
    return res


def _print(res: dict, title: str) -> None:
    doms = list(next(iter(res.values())))
    print(f"{title}\n\n| target | " + " | ".join(doms) + " |\n|---|" + "---:|" * len(doms))
    for k, r in res.items():
        print(f"| {k} | " + " | ".join(f"{r[d]:.1f}" for d in doms) + " |")


def _quiet(fn):
    """The CLI form: the table is printed, the returned dict is not printed again by fire."""
    @functools.wraps(fn)
    def cli(*args, **kwargs):
        fn(*args, **kwargs)
    return cli


CLI = {"prior": _quiet(prior), "frontier": _quiet(frontier), "strength": _quiet(strength),
       "separability": _quiet(separability), "realness": _quiet(realness), "modes": _quiet(modes),
       "routing_sources": _quiet(routing_sources)}

if __name__ == "__main__":
    run(CLI)
