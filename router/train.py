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

from common import checkpoint, registry
from common.cli import print_json, run, shared_args
from common.engine import EngineConfig, Task, begin, dist_info, train
from common.io import InputError, write_text
from domains.build import composite_collections, composite_sources
from domains.dataset import HarmonyDataset, batches, fingerprint, train_val

from . import probe
from .classifier import DomainClassifier, meta, resolve_backbone

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


BALANCES = ("source", "domain", "none")


def parse_relight(relight: str | None, domains: list[str]) -> tuple[str, str] | None:
    """``--relight DAY:NIGHT`` as (day domain, night domain), both domains of the data."""
    if not relight:
        return None
    day, sep, night = str(relight).partition(":")
    if not sep or day not in domains or night not in domains or day == night:
        raise InputError(f"--relight {relight!r}: give DAY:NIGHT, two different domains of the data "
                         f"({', '.join(domains)})")
    return day, night


def head_weights(balance: str, labels: torch.Tensor, groups: list, k: int) -> dict:
    """``fit_head``'s weights for ``--balance``: per row (source), per domain, or none."""
    if balance == "source":
        return {"row_weights": probe.source_weights(labels, groups, k)}
    return {"weights": balanced_weights(labels, k) if balance == "domain" else None}


def resolve_balance(balance, sources: dict, head: str = "probe") -> str:
    """``--balance`` as one of :data:`BALANCES` (True/False as domain/none); source is domain for a
    finetuned network and where the data names no sources (iHarmony4)."""
    balance = {True: "domain", False: "none"}.get(balance, balance)
    if balance not in BALANCES:
        raise InputError(f"--balance must be one of {', '.join(BALANCES)}, got {balance!r}")
    if balance == "source" and head != "probe":
        return "domain"
    if balance == "source" and not sources:
        log.info("--balance source: the data names no photo sources (no domains.build manifest); "
                 "weighing domains only")
        return "domain"
    return balance


RELIGHT_FROM = ("night_folders", "all")


def relit_folders(labels: torch.Tensor, folders: list | None, night: int) -> set | None:
    """The photo folders whose day rows are relit under ``--relight_from night_folders``: those that
    hold rows of the night domain (``night``, its index) among ``labels``; ``None`` (every folder)
    where the rows name fewer than two folders."""
    if folders is None or len(set(folders)) < 2:
        return None
    return {f for f, y in zip(folders, labels.tolist()) if y == night}


class HeadRefit:
    """Refit a probe classifier's head on subsets of a dataset's rows as its checkpoint's head was
    fitted (``fitted``: the checkpoint's ``probe`` metadata: balance, relit rows, L2 penalty), for
    held-out estimates. ``samples`` are the dataset's samples, ``groups`` each row's source,
    ``folders`` each row's photo folder (``domains.build.composite_collections``; ``None`` for data
    from one folder)."""

    def __init__(self, model: DomainClassifier, fitted: dict, dataset, samples: list, groups: list,
                 batch_size: int = 32, workers: int = 0, seed: int = 0, folders: list | None = None):
        from torch.utils.data import Subset

        from .synth import Relit
        self.model, self.groups, self.k = model, list(groups), len(model.cfg.domains)
        self.balance, self.l2 = fitted.get("balance", "domain"), fitted.get("l2", 1e-2)
        self.relight_from = fitted.get("relight_from", "all")  # checkpoints written before it: every folder
        if self.relight_from not in RELIGHT_FROM:
            raise InputError(f"relight_from must be one of {', '.join(RELIGHT_FROM)}, got {self.relight_from!r}")
        self.folders = list(folders) if folders is not None and self.relight_from == "night_folders" else None
        light = parse_relight(fitted.get("relight"), list(model.cfg.domains))
        self.night = list(model.cfg.domains).index(light[1]) if light else -1
        self.feats, self.labels = probe.extract(model, dataset, batch_size, workers)
        day = [i for i, s in enumerate(samples) if light and s.domain == light[0]]
        keys = list(range(len(day)))  # each relit row's draw: its place among all the day rows
        if day and self.folders is not None:  # no subset of the rows relights a folder without night rows
            lit = relit_folders(self.labels, self.folders, self.night)
            if lit is not None:
                keys = [k for k, i in enumerate(day) if self.folders[i] in lit]
                day = [day[k] for k in keys]
        self.day = torch.tensor(day, dtype=torch.long)
        if len(self.day):
            relit = Relit(Subset(dataset, self.day.tolist()), light[1], list(model.cfg.domains), seed, keys)
            self.rfeats, self.rlabels = probe.extract(model, relit, batch_size, workers)

    def fit(self, rows: torch.Tensor | None = None, l2: float | None = None) -> dict:
        """Fit on the rows where ``rows`` (bool; default all) holds and the relit versions of its day
        rows (under ``relight_from night_folders``, those of the photo folders that hold night rows
        among ``rows``); returns ``fit_head``'s training accuracy and loss, and ``n`` the rows fitted."""
        rows = torch.ones(len(self.labels), dtype=torch.bool) if rows is None else rows
        keep = rows[self.day] if len(self.day) else torch.zeros(0, dtype=torch.bool)
        if len(self.day) and self.folders is not None:
            kept = rows.nonzero().flatten().tolist()
            lit = relit_folders(self.labels[rows], [self.folders[i] for i in kept], self.night)
            if lit is not None:
                keep = keep & torch.tensor([self.folders[i] in lit for i in self.day.tolist()])
        every = bool(rows.all())  # all rows: the features as they are, not a copy
        x, y = (self.feats, self.labels) if every else (self.feats[rows], self.labels[rows])
        groups = [g for g, r in zip(self.groups, rows.tolist()) if r]
        if keep.any():
            x, y = torch.cat([x, self.rfeats[keep]]), torch.cat([y, self.rlabels[keep]])
            groups += ["relit"] * int(keep.sum())
        fit = probe.fit_head(self.model, x, y, l2=self.l2 if l2 is None else l2,
                             **head_weights(self.balance, y, groups, self.k))
        return {"n": len(y), **fit}


def fit_probe(task: ClassifierTask, train_set, samples: list, groups: list, out, batch_size: int, workers: int,
              device: torch.device, l2: float, overwrite: bool, balance: str = "domain",
              relight: tuple[str, str] | None = None, seed: int = 0, relight_from: str = "night_folders",
              folders: list | None = None) -> dict:
    """Extract the frozen backbone's features of ``train_set`` (and its relit rows), fit the head,
    save the checkpoint with how the head was fitted (what :class:`HeadRefit` reads back); ``device``:
    :func:`common.engine.begin`'s."""
    import time
    if Path(out).exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to train again)")
    t0 = time.perf_counter()
    net = task.net.to(device).eval()
    how = {"l2": l2, "balance": balance, "relight": ":".join(relight) if relight else None}
    if relight:
        how["relight_from"] = relight_from
    fit = HeadRefit(net, how, train_set, samples, groups, batch_size, workers, seed, folders).fit()
    checkpoint.save(out, net.state_dict(), {**task.meta(), "probe": {**how, **fit}}, overwrite=overwrite)
    return {"seconds": round(time.perf_counter() - t0, 1), "n_train": fit["n"], **fit}


@shared_args
def main(data="data/mini4", out="runs/router.safetensors", backbone: str = "auto", head: str = "probe",
         use_mask: bool = False, size: int = 224, pretrained_file: str | None = None, steps: int = 1000,
         batch_size: int = 32, lr: float = 1e-3, workers: int = -1, seed: int = 0, val_every: int = 0,
         device: str = "auto", resume: bool = True, overwrite: bool = False, synthesize: bool = False,
         amp: bool = True, channels_last: bool = False, compile: bool = False, val_fraction: float = 0.1,
         balance: str = "source", l2: float = 1e-2, regions: bool = True, relight: str | None = None,
         relight_from: str = "night_folders") -> None:
    """Train the timm domain classifier that routes a composite to its domain's harmonizer (the
    confusion matrix printed at the end is on the test split).

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
        balance: source (the default) makes every domain weigh the same and, inside a domain, every
            source of photos (the manifest's source package), so that the head learns the domain
            and not its largest sources (it is domain where the data names no sources, iHarmony4,
            and with --head finetune); domain weighs by inverse domain frequency, none not at all.
        relight: DAY:NIGHT, two domains (probe only; the recipe's MiniFlickr:MiniDay2night). The DAY
            domain's composites, taken to dusk or night in linear light, are added as NIGHT rows.
        relight_from: night_folders (the default) relights, on data from several photo folders,
            only those that hold night photos (a folder without any would teach the head that its
            own dim pictures are nights); all relights every folder.
        l2: the probe head's L2 penalty on its standardised features.
        regions: the probe also pools the last stage's features over the foreground and over the
            background (what the subject is, and where it stands); finetune ignores it.
    """
    engine = EngineConfig.of(out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed, val_every=val_every,
                             resume=resume, overwrite=overwrite, device=device, workers=workers, amp=amp,
                             channels_last=channels_last, compile=compile)
    dev = begin(engine)
    train_ds, val_ds, test_ds = _datasets(data, size, head, val_every, val_fraction)
    sources = composite_sources(data) if head == "probe" else {}
    balance = resolve_balance(balance, sources, head)
    light = _relight(relight, relight_from, list(train_ds.domains), head, synthesize)
    model, name = _model(backbone, pretrained_file, head, train_ds.domains, use_mask, size, regions)
    task, train_set = _task(model, train_ds, val_ds, balance, synthesize and head == "finetune"
                            and dev.type != "cpu", synthesize, steps * batch_size)
    if head == "probe":
        samples = [] if synthesize else train_ds.samples  # drawn composites: no sources (domain balance)
        groups = [sources.get(s.composite.name, "unknown") for s in samples] or ["unknown"] * len(train_set)
        res = fit_probe(task, train_set, samples, groups, out, batch_size, workers, dev, l2, overwrite, balance,
                        light, seed, relight_from, photo_folders(data, samples))
    else:
        res = train(task, train_set, engine, dev)
        if dist_info()[0] != 0:
            return
    _report(task.net.eval(), test_ds, train_ds.domains, out, res, backbone=name, pretrained=model.cfg.pretrained,
            head=head, use_mask=use_mask, synthesize=synthesize, balance=balance, relight=relight,
            relight_from=relight_from if light else None, regions=model.cfg.regions)


def photo_folders(data, samples: list) -> list | None:
    """Each sample's photo folder (``domains.build.composite_collections``); ``None`` for data built
    from one folder."""
    where = composite_collections(data)
    return [where.get(s.composite.name, "") for s in samples] if where and samples else None


def _relight(relight: str | None, relight_from: str, domains: list, head: str, synthesize: bool):
    """``--relight`` parsed and checked against the other options."""
    if relight_from not in RELIGHT_FROM:
        raise InputError(f"--relight_from must be one of {', '.join(RELIGHT_FROM)}, got {relight_from!r}")
    light = parse_relight(relight, domains)
    if light and head != "probe":
        raise InputError("--relight adds rows to a probe head's fit: use it with --head probe")
    if light and synthesize:
        raise InputError("--relight takes night rows from the stored composites: not with --synthesize")
    return light


def _task(model, train_ds, val_ds, balance: str, on_device: bool, synthesize: bool, n_drawn: int):
    """(the training task, what it trains on): the stored composites, or ``n_drawn`` fresh ones made
    by the domains' processes (by the loader, or with ``on_device`` in the training step on a GPU)."""
    processes = None
    if on_device:  # a GPU makes the composites in the training step, for the whole batch
        from .synth import device_processes
        processes = device_processes()
    task = ClassifierTask(model, fingerprint(train_ds.samples), val_ds,
                          balanced_weights(domain_labels(train_ds), len(train_ds.domains)) if balance != "none" else None,
                          processes)
    if not synthesize:
        return task, train_ds
    from .synth import ProcessComposites, ProcessLabels
    return task, (ProcessLabels if on_device else ProcessComposites)(train_ds, length=n_drawn)


def _datasets(data, size: int, head: str, val_every: int, val_fraction: float):
    """(training set, validation set or None, test set); a probe sees one deterministic view of
    each training composite (it mirrors them itself)."""
    train_ds, val_ds = train_val(data, "all", size, True, val_fraction if val_every and head == "finetune" else 0.0)
    if head == "probe":
        train_ds = HarmonyDataset(data, "all", "train", size=size, train=False, samples=train_ds.samples)
    return train_ds, val_ds, HarmonyDataset(data, "all", "test", size=size, domain_names=train_ds.domains)


def _model(backbone: str, pretrained_file, head: str, domains, use_mask: bool, size: int,
           regions: bool) -> tuple[DomainClassifier, str]:
    """The classifier to train and its backbone's timm name."""
    name, weights = resolve_backbone(backbone, pretrained_file)
    if head == "probe" and not weights:
        log.warning("--head probe on %s without pretrained weights: a frozen random network's features route "
                    "poorly; install the pretrained extra (pip install -e '.[pretrained]'), pass --pretrained_file, "
                    "or train the whole network with --head finetune", name)
    try:
        return registry.create("domain_classifier", pretrained_file=weights, domains=domains, backbone=name,
                               use_mask=use_mask, size=size, pretrained="imagenet" if weights else "scratch",
                               head=head, regions=regions and head == "probe"), name
    except ValueError as e:
        raise InputError(str(e)) from None


def _report(net: DomainClassifier, test_ds, domains, out, res: dict, **how) -> None:
    """The test split's confusion matrix: ``<out>.report.json``, the table and one JSON line."""
    r = report(confusion(net, test_ds), domains)
    write_text(json.dumps({**r, **how, **res}, indent=1),
               str(out).removesuffix(".safetensors") + ".report.json", overwrite=True)
    print(r["table"])
    print_json({"out": str(out), "accuracy": r["accuracy"], **{k: how[k] for k in ("backbone", "pretrained", "head", "regions",
                                                                                    "use_mask", "synthesize")},
                "seconds": res["seconds"]})

CLI = main

if __name__ == "__main__":
    run(CLI)
