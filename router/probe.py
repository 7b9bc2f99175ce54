"""Fit a probe classifier's linear head (``ClassifierConfig.head == "probe"``).

The backbone stays as ImageNet trained it. Every training composite goes through it once
(:meth:`router.classifier.DomainClassifier.pooled`); the features are standardised, and a softmax
regression with an L2 penalty is fitted on all of them at once by L-BFGS, each domain's loss
weighted by the inverse of its share, or (``router.train --balance source``, the default where the
data names each photo's source) every domain weighing the same and, inside a domain, every source of
photos weighing the same (:func:`source_weights`), so that a head fitted on a few large sources
does not learn them in place of the domain. The fit is
deterministic and takes seconds once the features are extracted; on iHarmony4 the extraction is one
pass over 65k composites (``--workers`` and a GPU make it fast) and the features fit in memory
(about 1,000 floats per image).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .classifier import DomainClassifier


@torch.no_grad()  # not inference_mode: the features are then fitted with autograd
def extract(model: DomainClassifier, dataset, batch_size: int = 32, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(features ``N×F`` on the CPU, domain indices ``N``) of a dataset's items, written into one
    tensor as they come (iHarmony4's 65,742 training composites: 0.4 GiB, held once)."""
    from common.engine import resolve_workers
    dev = model.feat_mean.device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=resolve_workers(workers, dev),
                        pin_memory=dev.type == "cuda")
    n = len(dataset)
    feats, labels, i = None, torch.empty(n, dtype=torch.long), 0
    for b in tqdm(loader, desc="probe features", unit="batch"):
        f = model.pooled(b["composite"].to(dev), b["mask"].to(dev)).float().cpu()
        if feats is None:
            feats = torch.empty(n, f.shape[1])
        feats[i:i + len(f)] = f
        labels[i:i + len(f)] = torch.as_tensor(b["domain"])
        i += len(f)
    return (feats if feats is not None else torch.empty(0, model.feat_mean.numel())), labels


def source_weights(labels: torch.Tensor, groups: list, k: int) -> torch.Tensor:
    """Per-row loss weights, mean 1: each of the ``k`` domains present weighs the same, and inside a
    domain each group (the source of the row's photo) weighs the same, shared by its rows."""
    labels = torch.as_tensor(labels)
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups for {len(labels)} rows")
    w = torch.zeros(len(labels))
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten().tolist()
        count: dict = {}
        for i in rows:
            count[groups[i]] = count.get(groups[i], 0) + 1
        for i in rows:
            w[i] = 1.0 / (len(count) * count[groups[i]])
    return w * len(labels) / w.sum()


def fit_head(model: DomainClassifier, feats: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
             l2: float = 1e-2, max_iter: int = 300, row_weights: torch.Tensor | None = None) -> dict:
    """Fit ``model``'s standardisation and linear head in place; returns the training accuracy and loss.
    ``weights`` weigh each domain's loss, ``row_weights`` (instead) each row's (:func:`source_weights`)."""
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    x = feats.sub(mean).div_(std)  # one standardised copy (not two temporaries)
    head = torch.nn.Linear(x.shape[1], len(model.cfg.domains))
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective():
        if row_weights is not None:
            ce = (F.cross_entropy(head(x), labels, reduction="none") * row_weights).sum() / row_weights.sum()
        else:
            ce = F.cross_entropy(head(x), labels, weight=weights)
        return ce + l2 * head.weight.pow(2).sum()

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    dev = model.feat_mean.device
    with torch.no_grad():
        model.feat_mean.copy_(mean.to(dev))
        model.feat_std.copy_(std.to(dev))
        model.head.weight.copy_(head.weight.to(dev))
        model.head.bias.copy_(head.bias.to(dev))
        acc = (head(x).argmax(1) == labels).float().mean().item()
        loss = float(objective())  # at the fitted head (LBFGS.step returns the first evaluation's)
    return {"train_accuracy": acc, "loss": loss}
