"""Can a composite be told from its real photo?

    python -m eval.probes realness --data data/mini4
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from common.cli import shared_args
from common.io import InputError
from common import metrics as M
from .routability import fit_linear


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
    extract, size = _extractor(features, size, fg_chroma, ckpt)
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
    score = _cross_fitted(x, y, g % folds, folds, weight_decay)
    res = {"features": int(x.shape[1]), "photos": len(photo), "composites": int(y.sum()), "auc": roc_auc(score, y),
           "accuracy": float(((score > 0).long() == y).float().mean()),
           "per_domain": {d: roc_auc(score[idx], y[idx]) for d in dict.fromkeys(domain)
                          for idx in [torch.tensor([e == d for e in domain])]}}
    print(f"composites against their real photos ({res['composites']} each, {res['photos']} photos, "
          f"{folds} folds by photo), {res['features']} {features} features at {size} px: AUC {res['auc']:.3f}, "
          f"accuracy {res['accuracy']:.3f}; per domain " + ", ".join(f"{d} {a:.3f}" for d, a in res["per_domain"].items()))
    return res


def _extractor(features: str, size, fg_chroma: bool, ckpt):
    """(features of a batch ``(image, mask) -> N×F``, the size they are taken at)."""
    if features == "gct":
        from harmonizers.gct import GatedColourTransform, GCTConfig, rgb_to_lab
        gct = GatedColourTransform(GCTConfig(fg_chroma=fg_chroma))
        return (lambda x, m: gct.features(rgb_to_lab(x), m)[0]), size or 64
    if features == "classifier":
        from router import classifier as C
        model, _ = C.load(ckpt)
        model.eval()
        return model.pooled, size or model.cfg.size
    raise InputError(f"--features {features!r}: use gct or classifier")


def _cross_fitted(x, y, fold, folds: int, weight_decay: float) -> torch.Tensor:
    """Each row's logit from the logistic regression fitted on the other folds (standardised there)."""
    score = torch.zeros(len(y))
    for f in range(folds):
        fit = fold != f
        mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
        with torch.enable_grad():
            net = fit_linear((x[fit] - mu) / sd, y[fit], 2, weight_decay=weight_decay)
        logits = net((x[~fit] - mu) / sd)
        score[~fit] = logits[:, 1] - logits[:, 0]
    return score
