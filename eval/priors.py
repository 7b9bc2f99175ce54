"""How much of a composite's error can global colour statistics remove, and at what cost to real photos?

    python -m eval.probes prior --data data/mini4                 # foreground-statistics priors, no network
    python -m eval.probes frontier --data data/mini4 --ckpt models/default/harmonizer_unified.safetensors

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
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from common.cli import names, shared_args
from common.io import InputError, read_image, read_mask
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
    x, m = clf.normalised(grey[None], mask[None])
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
    err = _mean_colour_error(samples, kinds, target)
    _print(res, "fMSE of foreground-statistics priors")
    print()
    _print({k: {d: drift[k][d] for d in res["composite"]} for k in drift}, "real-photo drift (8-bit levels)")
    print()
    _print({k: {d: err[k][d] for d in res["composite"]} for k in kinds},
           "error of the predicted foreground mean colour on the real photos (CIELAB ΔE)"
           + (f"; content prior's ridge {sp.content_ridge:g}" if clf is not None else ""))
    return {"fMSE": res, "drift": drift, "mean_error": err}


def _mean_colour_error(samples, kinds, target) -> dict:
    """Per kind and domain (and All): how far the predicted foreground mean colour lies from the
    real one on the samples' photos (CIELAB ΔE)."""
    err = {k: {} for k in kinds}
    for domain, real, mask in real_images(samples):
        image, m = read_image(real), read_mask(mask)
        true = lab_stats(image, m)[0][:3]
        for kind in kinds:
            e = float(np.linalg.norm(target(image, m, kind)[:3] - true))
            for d in (domain, "All"):
                err[kind].setdefault(d, []).append(e)
    return {k: {d: float(np.mean(v)) for d, v in r.items()} for k, r in err.items()}


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
    from common import registry

    from .score import model_predictor
    grid = [(float(x), float(y)) for x in _floats(a) for y in _floats(b)]
    model = registry.load(ckpt, kind="harmonizer")[0]
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


def _print(res: dict, title: str) -> None:
    doms = list(next(iter(res.values())))
    print(f"{title}\n\n| target | " + " | ".join(doms) + " |\n|---|" + "---:|" * len(doms))
    for k, r in res.items():
        print(f"| {k} | " + " | ".join(f"{r[d]:.1f}" for d in doms) + " |")

