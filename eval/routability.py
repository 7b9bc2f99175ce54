"""Can composites be routed: do the domains' processes leave a trace, and does routing carry to unseen sources?

    python -m eval.probes separability --data data/mini4 [--hidden 64]   # can colour statistics route?
    python -m eval.probes routing_sources --data data/mini4   # routing photos of a source never trained on

``separability``: a softmax regression (or small MLP) on 49 colour statistics of fresh composites
made by each domain's process (the domain classifier's training data): if it cannot fit even its
own training composites, the processes leave too little trace for a classifier to route by.

``routing_sources``: the probe classifier's head refitted once per source of the benchmark's photos
(the registry package a photo came from, in the photo manifest), on the composites of every other
source (both splits), and scored on that source's composites: how well routing carries to photos
from somewhere no training saw. On a benchmark built from several photo folders (v3) it also sums
up each folder's sources.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from common.cli import shared_args
from common.io import InputError
from domains.build import composite_collections, composite_sources
from common.colour import rgb_to_lab


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


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, hidden: int = 0, weight_decay: float = 1e-3,
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
    net = fit_linear((x - mu) / sd, y, len(base.domains), hidden, seed=seed)
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
    from router.train import HeadRefit, photo_folders
    model, md = C.load(ckpt, device=device)
    if model.cfg.head != "probe":
        raise InputError(f"{ckpt}: a {model.cfg.head} classifier; routing_sources refits a probe head")
    sets = [HarmonyDataset(data, "all", split, size=model.cfg.size, train=False, domain_names=list(model.cfg.domains))
            for split in ("train", "test")]
    samples = [s for ds in sets for s in ds.samples]
    where = composite_sources(data)
    src = [where.get(s.composite.name, "unknown") for s in samples]
    # refit as the checkpoint's head was fitted (older checkpoints: domain balance)
    refit = HeadRefit(model, md.get("probe", {}), ConcatDataset(sets), samples, src, batch_size,
                      folders=photo_folders(data, samples))
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
               "sources": res, "collections": by_collection(res, samples, src, composite_collections(data))}
    print(f"{ckpt}: head refitted without each source, accuracy on that source's composites\n")
    print("| source | composites | per domain | accuracy |\n|---|---:|---|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['composites']} | {', '.join(f'{d} {n}' for d, n in r['domains'].items() if n)} | "
              f"{r['accuracy']:.3f} |")
    print(f"| all (pooled) | {len(src)} | | {summary['accuracy']:.3f} |\n\nmean over sources {summary['mean_per_source']:.3f}")
    for name, c in summary["collections"].items():
        print(f"photo folder {name}: {c['sources']} sources, {c['composites']} composites, pooled {c['accuracy']:.3f}, "
              f"mean over sources {c['mean_per_source']:.3f}")
    return summary


def by_collection(res: dict, samples: list, src: list, collections: dict) -> dict:
    """Per photo folder of a benchmark built from several (``domains.build --photos A,B``): its
    sources' pooled and mean accuracy (a source belongs to the folder most of its composites came
    from); empty for a benchmark of one folder."""
    from collections import Counter
    where: dict[str, Counter] = {}
    for s, name in zip(samples, src):
        c = collections.get(s.composite.name)
        if c is not None:
            where.setdefault(name, Counter())[c] += 1
    folders: dict = {}
    for name, count in where.items():
        folders.setdefault(count.most_common(1)[0][0], []).append(name)
    if len(folders) < 2:
        return {}
    out = {}
    for c, names in sorted(folders.items()):
        n = sum(res[x]["composites"] for x in names)
        out[c] = {"sources": len(names), "composites": n,
                  "accuracy": sum(res[x]["accuracy"] * res[x]["composites"] for x in names) / n,
                  "mean_per_source": float(np.mean([res[x]["accuracy"] for x in names]))}
    return out

