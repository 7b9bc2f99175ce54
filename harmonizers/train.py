"""Train a harmonizer (iS2AM, iDIH with or without HRNet, RainNet, GCT), optionally with augmentation.

    python -m harmonizers.train --data data/mini4 --domains all --arch issam --out runs/issam_all.safetensors
    python -m harmonizers.train --data data/mini4 --arch issam --augment syconet:runs/syconet_all.safetensors \\
        --out runs/issam_unified.safetensors                       # the unified model (section 4.7)
    python -m harmonizers.train --data /path/to/iHarmony4 --arch issam256 --batch_size 32 --workers 8  # GPU
    torchrun --nproc_per_node 2 -m harmonizers.train --data data/mini4 --out runs/h.safetensors

``--arch`` is ``issam``, ``rainnet`` or a registered variant (``issam256``, ``rainnet128``,
``hrnet18_idih256``, ...); ``--size`` overrides the training size; ``--pretrained_file`` loads
ImageNet weights into an ``hrnet*`` variant's backbone, which then trains at 0.1× the rate, as in
the official recipe. ``--augment``: ``none | ct | lut | syconet:CKPT | syconet_zc:CKPT | static:K:CKPT``;
``--only_aug`` trains on the augmented composites alone (Table 1 row 6). Losses: iS2AM's
``MaskWeightedMSE`` (``Σ(p−t)² / (3·max(Σm, min_area))`` on 0–255, min_area 1000 at 256 px, 100 for
the iDIH families as in their recipes), RainNet L1; ``--gan_weight W`` adds RainNet's optional adversarial term (LSGAN against a
domain-verification critic, ``harmonizers.rainnet.DomainVerifier``; W = 1 is the paper's ratio to
its L1 on our 0–255 scale). Resumes from ``<out>.last.safetensors`` (critic included; the
checkpoint users load holds the harmonizer only).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.data import Subset

from common import registry
from common.cli import print_json, run, shared_args
from common.engine import EngineConfig, Task, begin, dist_info, train
from common.gan import lsgan_terms
from common.io import InputError
from domains.dataset import (HarmonyDataset, batches, fingerprint, group_weights, load_samples, split_folds,
                             subset_photos, train_val)
from common import metrics as M

from . import augment as A
from .models import HarmonizerNet, from_state, meta

log = logging.getLogger(__name__)
ARCH_ALIASES = {"issam": "issam256", "rainnet": "rainnet256"}


# the official MaskWeightedMSE's min_area at 256 px: 1000 (its default, iSSAM's recipe); the iDIH
# and HRNet + iDIH recipes pass 100
MIN_AREA_256 = {"dih": 100.0, "hrnet": 100.0}
SLOW_LR_MULT = 0.1  # the official recipe's rate for a pretrained backbone (LRMult(0.1))


def fn_mse(pred, target, mask, min_area: float):
    """iS2AM's ``MaskWeightedMSE`` on the 0–255 scale, per image, averaged: the squared error summed
    over the whole image, divided by the channel count times the foreground area, which is first
    raised to ``min_area`` pixels (``Σ(p−t)² / (C · max(Σm, min_area))``, as the official loss)."""
    err = ((pred - target) * 255).pow(2).flatten(1).sum(1)
    return (err / (pred.shape[1] * mask.flatten(1).sum(1).clamp_min(min_area))).mean()


class HarmonizerLoss(nn.Module):
    """The loss module the engine trains: harmonizer + (frozen, unregistered) augmenter."""

    def __init__(self, model: HarmonizerNet, augmenter=None, only_aug: bool = False, gan_weight: float = 0.0,
                 regrade: A.Regrade | None = None):
        super().__init__()
        self.model = model
        self.gan_weight = gan_weight
        if gan_weight > 0:
            from .rainnet import DomainVerifier
            self.critic = DomainVerifier()
        object.__setattr__(self, "augmenter", augmenter)  # not a submodule: never trained or saved
        object.__setattr__(self, "regrade", regrade)
        self.only_aug = only_aug
        self.min_area = MIN_AREA_256.get(model.arch, 1000.0) * (model.size / 256) ** 2

    def forward(self, batch):
        comp, real, mask = batch["composite"], batch["real"], batch["mask"]
        if self.augmenter is not None:
            gen = batch["augmented"] if "augmented" in batch else self.augmenter(real, mask, comp)  # made by the loader
            gen = gen.to(comp.dtype)
            if self.only_aug:
                comp = gen
            else:  # Eq. 2: the original and the augmented composite, both towards I^r
                comp, real, mask = torch.cat([comp, gen]), torch.cat([real, real]), torch.cat([mask, mask])
        if self.regrade is not None and self.training:
            comp, real = self.regrade(comp, real)
        out = self.model(comp, mask)
        if self.model.arch == "rainnet":
            loss = (out - real).abs().mean() * 255
        else:
            loss = fn_mse(out, real, mask, self.min_area)
        if self.gan_weight <= 0:
            return {"loss": loss}
        # LSGAN with one optimizer: the harmonizer's term sees the critic's weights detached, the
        # critic's term the harmonized images detached; real images are the critic's positives
        g_adv, d_loss = lsgan_terms(self.critic, out, real, mask)
        return {"loss": loss + self.gan_weight * g_adv + d_loss, "rec": loss.detach(), "g_adv": g_adv.detach(),
                "d": d_loss.detach()}


class Calibration(NamedTuple):
    """How a gated model's scale is chosen before its final checkpoint is written: ``source`` a
    held-out set (scored then, its ``--balance`` ``groups`` weighing alike) or scores already pooled
    (as cross-fitting makes them); ``limit`` the drift limit; ``extra`` more to record."""
    source: object
    limit: float
    extra: dict | None = None
    groups: dict[str, str] | None = None


class HarmonizerTask(Task):
    """``calibrate``: a :class:`Calibration` (or its fields as a tuple), to choose a gated model's
    scale with before the final checkpoint is written (the choice is kept in ``calibration``)."""

    def __init__(self, model: HarmonizerNet, augmenter, only_aug, domains, fp, val, extra_meta, gan_weight: float = 0.0,
                 regrade: A.Regrade | None = None, calibrate: tuple | None = None):
        self.model = HarmonizerLoss(model, augmenter, only_aug, gan_weight, regrade)
        self.net, self.domains, self.fp, self.val, self.extra = model, domains, fp, val, extra_meta
        self.calibrate = None if calibrate is None else Calibration(*calibrate)
        self.calibration = None

    def final(self, tensors, meta, out, best):
        """With ``calibrate``: the best checkpoint (else these weights) with the gate scale that
        :func:`calibrate` chooses."""
        if self.calibrate is None:
            return tensors, meta
        c = self.calibrate
        loaded = registry.load(best, kind="harmonizer") if best is not None else (from_state(tensors, meta), meta)
        scores = c.source if isinstance(c.source, dict) else calibration_scores(loaded[0], c.source, groups=c.groups)
        model, m, self.calibration = scaled(loaded, best or out, scores, c.limit, **(c.extra or {}))
        return model.state_dict(), m

    def meta(self):
        return meta(self.net, self.domains, self.fp, **self.extra)

    def prepare(self, batch):
        """CPU augmenters (colour processes, colour transfer) run where the loader runs: in parallel
        workers with ``--workers``, not in the training step."""
        aug = self.model.augmenter
        if getattr(aug, "in_loader", False):
            batch["augmented"] = aug(batch["real"], batch["mask"], batch["composite"])
        return batch

    def export(self, loss_module):
        return loss_module.model.state_dict()

    def param_groups(self, loss_module):
        """A backboned network's slow part (``slow_parameters``: the official recipe's 0.1× rate for
        the pretrained HRNet) in its own group."""
        slow = getattr(self.net.net, "slow_parameters", lambda: [])()
        ids = {id(p) for p in slow}
        fast = [p for p in loss_module.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": fast}] + ([{"params": [p for p in slow if p.requires_grad], "lr_mult": SLOW_LR_MULT}]
                                     if slow else [])

    def validate(self, loss_module):
        if self.val is None:
            return {}
        res = validate(loss_module.model, self.val)
        return {"score": res["fMSE"], **res}


@torch.inference_mode()
def validate(model: HarmonizerNet, ds: HarmonyDataset, batch: int = 16, max_images: int = 128) -> dict:
    dev = next(model.parameters()).device
    acc, base = M.Accumulator(), M.Accumulator()
    for b in batches(ds, batch, max_images, dev):
        acc.add("val", M.compute(model(b["composite"], b["mask"]), b["real"], b["mask"], size=None))
        base.add("val", M.compute(b["composite"], b["real"], b["mask"], size=None))
    s, c = acc.summary()["All"], base.summary()["All"]
    return {**{k: s[k] for k in ("MSE", "fMSE", "PSNR")}, "fMSE_composite": c["fMSE"]}


# gate scales tried; past 1 because a model trained with unperturbed pairs among its composites
# (--augment processes:0.8) learns to undershoot, and behind the composite detector the lowest
# held-out fMSE can lie beyond its own gate (it did for three of the five v3 models at 1.25)
CALIBRATION_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
DRIFT_LIMIT = 2.5   # mean change of an unedited real photo inside its mask, 8-bit levels


def spread(n: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when ``n <= limit``): a held-out
    set stored domain by domain, collection by collection, is read across all of them, not its head."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]


@torch.inference_mode()
def calibration_raw(model: HarmonizerNet, ds: HarmonyDataset, grid=CALIBRATION_GRID, max_images: int = 512,
                    groups: dict[str, str] | None = None) -> dict:
    """For each gate scale: every held-out composite's fMSE, and every held-out photo's drift (mean
    |output − input| inside the mask, 8-bit levels, when it goes in unedited; averaged over its
    composites' masks), over at most ``max_images`` composites spread over the set. Raw, so that the
    held-out sets of several folds can be pooled. ``groups`` (composite file name → group, as
    ``--balance`` uses) adds each composite's and each photo's group, for :func:`summarise`."""
    dev = next(model.parameters()).device
    pick = spread(len(ds), max_images)
    data = list(batches(Subset(ds, pick), 32, None, dev))
    samples = [ds.samples[i] for i in pick]
    photo = [str(s.real) for s in samples]
    by_photo = {p: [i for i, q in enumerate(photo) if q == p] for p in dict.fromkeys(photo)}
    fmse, drift = {}, {}
    for s in grid:
        model.net.strength.fill_(s)
        fmse[s] = torch.cat([M.fmse(model(b["composite"], b["mask"]), b["real"], b["mask"]) for b in data]).cpu()
        d = torch.cat([M.drift(model(b["real"], b["mask"]), b["real"], b["mask"]) for b in data]).cpu()
        drift[s] = torch.stack([d[idx].mean() for idx in by_photo.values()])
    raw = {"fMSE": fmse, "drift": drift}
    if groups:
        raw["group"] = [groups.get(s.composite.name, "unknown") for s in samples]
        raw["photo_group"] = [raw["group"][idx[0]] for idx in by_photo.values()]
    return raw


def _mean(values: torch.Tensor, groups: list[str] | None) -> float:
    """The mean, or with ``groups`` the mean of the groups' means (each group weighs the same)."""
    if not groups:
        return float(values.mean())
    keys = list(dict.fromkeys(groups))
    return float(sum(values[[i for i, g in enumerate(groups) if g == k]].mean() for k in keys) / len(keys))


def summarise(raws: list[dict]) -> dict:
    """Pool raw calibration scores (:func:`calibration_raw`, one per held-out set): per scale the
    mean composite fMSE, the mean per-photo drift and that mean's standard error over the photos
    (0 with fewer than two). Raw scores with groups give every group the same weight in both means."""
    grouped = all("group" in r for r in raws)
    comp_groups = [g for r in raws for g in r["group"]] if grouped else None
    photo_groups = [g for r in raws for g in r["photo_group"]] if grouped else None
    scores = {}
    for s in raws[0]["fMSE"]:
        comp = torch.cat([r["fMSE"][s] for r in raws])
        per_photo = torch.cat([r["drift"][s] for r in raws])
        se = float(per_photo.std() / len(per_photo) ** 0.5) if len(per_photo) > 1 else 0.0
        scores[s] = {"fMSE": _mean(comp, comp_groups), "drift": _mean(per_photo, photo_groups), "drift_se": se,
                     "photos": len(per_photo), "composites": len(comp)}
        if grouped:
            scores[s]["groups"] = len(set(comp_groups))
    return scores


def calibration_scores(model: HarmonizerNet, ds: HarmonyDataset, grid=CALIBRATION_GRID, max_images: int = 512,
                       groups: dict[str, str] | None = None) -> dict:
    """For each gate scale: validation fMSE of the composites, the drift of the real photos passed
    through unedited (averaged per photo then over photos) and that mean's standard error; with
    ``groups``, each group weighs the same (:func:`summarise`)."""
    return summarise([calibration_raw(model, ds, grid, max_images, groups)])


def drift_limit_value(v) -> float:
    """``--drift_limit``: a number of 8-bit levels, or ``inf`` / ``none`` for no limit (the scale
    with the lowest held-out fMSE: for a model behind the zoo's composite detector, whose gate
    keeps real photos as they are)."""
    if isinstance(v, str) and v.strip().lower() in ("inf", "none", "off"):
        return math.inf
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"--drift_limit must be a number of levels or inf, got {v!r}") from None
    if not v > 0:
        raise InputError(f"--drift_limit must be > 0, got {v}")
    return v


def choose_scale(scores: dict, drift_limit: float = DRIFT_LIMIT) -> float:
    """The gate scale with the lowest fMSE among those whose drift plus its standard error stays
    within ``drift_limit`` and that do not raise fMSE above the identity's; 0 when none helps."""
    ok = [s for s, v in scores.items()
          if v["drift"] + v.get("drift_se", 0.0) <= drift_limit and v["fMSE"] <= scores[0.0]["fMSE"]]
    return min(ok, key=lambda s: scores[s]["fMSE"]) if ok else 0.0


def scaled(loaded: tuple, src, scores: dict, drift_limit: float, pick: float | None = None, **extra) -> tuple:
    """(model, metadata, calibration record): the ``loaded`` (model, metadata) of checkpoint ``src``
    with the scale :func:`choose_scale` picks (or ``pick``), the scores recorded in its metadata."""
    model, m = loaded
    pick = choose_scale(scores, drift_limit) if pick is None else pick
    model.net.strength.fill_(pick)
    info = {"strength": pick, "drift_limit": None if math.isinf(drift_limit) else drift_limit,
            "rule": "lowest fMSE" if math.isinf(drift_limit) else "drift + its standard error <= limit",
            "scores": scores, "from": Path(src).name, **extra}
    log.info("calibrated gate scale %.2f (validation fMSE, real-photo drift ± se: %s)", pick,
             {k: (round(v["fMSE"], 1), round(v["drift"], 2), round(v.get("drift_se", 0.0), 2)) for k, v in scores.items()})
    return model, {**m, "calibration": info}, info


def set_scale(out, loaded: tuple, src, scores: dict, drift_limit: float, pick: float | None = None, **extra) -> dict:
    """Write ``out`` as :func:`scaled` makes it; returns the calibration record."""
    from common import checkpoint
    model, m, info = scaled(loaded, src, scores, drift_limit, pick, **extra)
    checkpoint.save(out, model.state_dict(), m, overwrite=True)
    return info


def calibrate(out, val_ds: HarmonyDataset, drift_limit: float = DRIFT_LIMIT) -> dict:
    """Rewrite ``out`` from the best checkpoint (else the last) with the gate scale that gives the
    lowest validation fMSE among those whose real-photo drift stays within ``drift_limit`` levels
    with a margin of one standard error (the held-out photos are few: a scale that keeps only their
    mean under the limit moves other photos past it); 0 (the identity) when none helps."""
    from common.engine import sibling
    best = sibling(out, "best.safetensors")
    src = best if best.exists() else Path(out)
    loaded = registry.load(src, kind="harmonizer")
    return set_scale(out, loaded, src, calibration_scores(loaded[0], val_ds), drift_limit)


def build(arch: str, init: str | None, size: int | None, pretrained_file: str | None = None
          ) -> tuple[HarmonizerNet, dict]:
    """A fresh registered variant, or the model of ``--init`` (weights and config); a backboned
    variant's backbone then takes ``pretrained_file``'s ImageNet weights."""
    if init:
        model, _ = registry.load(init, kind="harmonizer")
        model.size = size or model.size
        if hasattr(model.net, "strength"):  # a calibrated gate scale is redone after training
            model.net.strength.fill_(1.0)
        extra = {"init": str(init)}
    else:
        model, extra = registry.create(ARCH_ALIASES.get(arch, arch), size=size), {}
    if pretrained_file:
        extra["pretrained"] = load_backbone_weights(model, pretrained_file)
    return model, extra


def load_backbone_weights(model: HarmonizerNet, path) -> dict:
    """ImageNet weights from a local file (``.pth`` read without unpickling code, or ``.safetensors``)
    into the model's backbone; refused when the model has none or nothing in the file matches."""
    from .convert import read_state_dict
    if not hasattr(model.net, "load_backbone"):
        raise InputError(f"--pretrained_file {path}: the {model.arch} family has no pretrained backbone "
                         "(hrnet* variants do)")
    if str(path).endswith(".safetensors"):
        if not Path(path).is_file():
            raise InputError(f"{path}: checkpoint not found")
        from safetensors.torch import load_file
        sd = load_file(str(path))
    else:
        sd = read_state_dict(path)
    hits = model.net.load_backbone(sd)
    if hits == 0:
        raise InputError(f"{path}: no tensor matches the backbone's names and shapes "
                         "(expected HRNet-Image-Classification's hrnetv2_w*_imagenet_pretrained layout)")
    return {"file": Path(path).name, "tensors": hits, "of": len(sd)}


@shared_args
def main(data="data/mini4", domains="all", arch: str = "issam", out="runs/issam_all.safetensors",
         augment: str = "none", only_aug: bool = False, init: str | None = None, size: int | None = None,
         steps: int = 2000, batch_size: int = 16, lr: float = 1e-3, workers: int = -1, seed: int = 0,
         save_every: int = 100, val_every: int = 0, device: str = "auto", resume: bool = True,
         overwrite: bool = False, cache: bool = True, amp: bool = True, channels_last: bool = False,
         compile: bool = False,
         gan_weight: float = 0.0, val_fraction: float = 0.1, regrade: float = 0.0,
         calibrate_folds: int = 0, drift_limit=DRIFT_LIMIT, pretrained_file: str | None = None,
         train_photos: int = 0, balance: str = "none") -> None:
    """Train a harmonizer (iS2AM or RainNet) on a dataset, optionally with augmentation.

    The test split is never used for validation: ``--val_every`` holds out a share of the training
    photos instead.

    Args:
        arch: issam, rainnet or a registered variant (issam64, rainnet128, hrnet18_idih256, ...;
            harmonizers.models.VARIANTS).
        out: checkpoint to write (.safetensors); <out>.last.safetensors is kept for resuming.
        augment: none, ct, lut, processes[:P[:M1+M2]], syconet[:CKPT], syconet_zc:CKPT or static:K:CKPT (see the README).
        only_aug: train on the augmented composites alone (Table 1 row 6).
        init: start from this harmonizer checkpoint (finetuning; its architecture and size are kept).
        size: training size (default the variant's).
        gan_weight: weight of RainNet's adversarial term (0: off).
        regrade: share of training pairs put, composite and real alike, under one random global look.
        calibrate_folds: K >= 2 calibrates a gated model (gct…) by cross-fitting instead of one
            held-out share: K models, each trained without one fold of the training photos
            (<out>.fold<k>.safetensors), score their fold; the pooled scores choose the gate scale
            of the model then trained on every training photo (--val_every and --val_fraction are
            not used). K + 1 trainings; for small data, where a 10 % hold-out is a handful of photos.
        drift_limit: the calibration's limit on a held-out real photo's mean change, 8-bit levels;
            inf: none (the scale with the lowest held-out fMSE), for models behind a zoo's detector.
        pretrained_file: ImageNet weights for a backboned variant's backbone (hrnet*: HRNet-Image-
            Classification's hrnetv2_w18_imagenet_pretrained.pth), a local file; not with --init.
        train_photos: train on this many of the training photos (0 means all), a seeded subset
            nested across sizes for one --seed (for learning curves, see eval.curve).
        balance: none, collection (each photo folder of a benchmark built from several weighs the
            same in the batches and in the gate scale's calibration) or source (each photo source does).
    """
    opts = TrainOptions(data=data, domains=domains, arch=arch, augment=A.parse(augment), only_aug=only_aug,
                        init=init, size=size, cache=cache, gan_weight=gan_weight, val_fraction=val_fraction,
                        regrade=regrade, calibrate_folds=calibrate_folds, drift_limit=drift_limit_value(drift_limit),
                        pretrained_file=pretrained_file, train_photos=train_photos, balance=balance)
    engine = EngineConfig.of(out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed, save_every=save_every,
                             val_every=val_every, resume=resume, overwrite=overwrite, device=device, workers=workers,
                             amp=amp, channels_last=channels_last, compile=compile)
    opts.check()
    res = crossfit(opts, engine) if calibrate_folds else fit(opts, engine)[0]
    if dist_info()[0] == 0:
        print_json(res)


@dataclass(frozen=True)
class TrainOptions:
    """``main``'s own options (the engine's are an :class:`~common.engine.EngineConfig`), typed:
    what :func:`fit` and :func:`crossfit` take."""
    data: str
    domains: str | list
    arch: str
    augment: A.AugmentSpec
    only_aug: bool = False
    init: str | None = None
    size: int | None = None
    cache: bool = True
    gan_weight: float = 0.0
    val_fraction: float = 0.1
    regrade: float = 0.0
    calibrate_folds: int = 0
    drift_limit: float = DRIFT_LIMIT
    pretrained_file: str | None = None
    train_photos: int = 0
    balance: str = "none"

    def check(self) -> None:
        """Refuse combinations that cannot run, before anything is read."""
        if self.gan_weight < 0:
            raise InputError(f"--gan_weight must be >= 0, got {self.gan_weight}")
        if self.only_aug and not self.augment.dynamic:
            raise InputError("--only_aug needs a dynamic --augment (processes, syconet:CKPT, ct or lut)")
        if self.balance not in BALANCES:
            raise InputError(f"--balance must be one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.balance != "none" and self.augment.kind == "static":
            raise InputError("--balance weighs the training composites; it does not apply to --augment static")
        if self.pretrained_file and self.init:
            raise InputError("--pretrained_file initialises a fresh backbone; it cannot be combined with --init")
        if self.calibrate_folds == 1 or self.calibrate_folds < 0:
            raise InputError(f"--calibrate_folds must be 0 (off) or at least 2, got {self.calibrate_folds}")


def fit(o: TrainOptions, engine: EngineConfig, fold: tuple[int, int] | None = None,
        pooled: Calibration | None = None) -> tuple[dict, HarmonyDataset | None, HarmonizerNet]:
    """One training run: (its summary, its validation set, the trained model as the engine saved
    it, in eval mode). ``fold=(k, K)`` leaves the k-th of K folds of the training photos out (they
    become the validation set). Calibrates a gated model on its validation set when ``--val_every``
    made one (not for folds: :func:`crossfit` pools them), or with ``pooled`` (the task's
    ``calibrate`` from cross-fitted scores)."""
    dev = begin(engine)
    model, extra = build(o.arch, o.init, o.size, o.pretrained_file)
    train_ds, val_ds = train_val(o.data, o.domains, model.size, o.cache,
                                 o.val_fraction if engine.loop.val_every else 0.0, fold=fold)
    groups = balance_groups(o)
    train_ds = shaped(train_ds, o, engine.optim.seed, groups)
    augmenter, train_set = A.make(o.augment, train_ds, device=dev)
    regrader = A.Regrade(o.regrade).to(dev) if o.regrade > 0 else None
    extra.update(augment=o.augment.text, only_aug=o.only_aug, gan_weight=o.gan_weight, regrade=o.regrade)
    if o.train_photos or o.balance != "none":
        extra.update(train_photos=o.train_photos or 0, balance=o.balance)
    gated = fold is None and val_ds is not None and hasattr(model.net, "strength")
    task = HarmonizerTask(model, augmenter, o.only_aug, train_ds.domains, fingerprint(train_ds.samples), val_ds,
                          extra, o.gan_weight, regrade=regrader,
                          calibrate=pooled if pooled is not None else
                          Calibration(val_ds, o.drift_limit, groups=groups) if gated else None)
    res = train(task, train_set, engine, dev)
    if task.calibration is not None:
        res["calibration"] = task.calibration
    res.update(arch=model.arch, size=model.size, augment=o.augment.text, domains=train_ds.domains)
    return res, val_ds, model.eval()


BALANCES = ("none", "collection", "source")


def shaped(train_ds: HarmonyDataset, o: TrainOptions, seed: int, groups: dict[str, str] | None) -> HarmonyDataset:
    """``--train_photos`` (a nested, seeded subset of the training photos) and ``--balance`` (its
    ``groups``, :func:`balance_groups`: each photo folder, or each photo source, weighing the same in
    the batches) applied to a training set."""
    n = o.train_photos or 0
    if n:
        train_ds = HarmonyDataset(o.data, o.domains, "train", size=train_ds.size, cache=o.cache,
                                  samples=subset_photos(train_ds.samples, int(n), seed),
                                  domain_names=train_ds.domains)
    if groups:
        train_ds.weights = group_weights(train_ds.samples, groups)
    return train_ds


def balance_groups(o: TrainOptions) -> dict[str, str] | None:
    """``--balance``'s groups (composite file name → photo folder or photo source), which weigh the
    same in the training batches and in the gate scale's calibration; None without it (or, with a
    warning, for data that names none)."""
    if o.balance == "none":
        return None
    from domains.build import composite_collections, composite_sources
    groups = (composite_collections if o.balance == "collection" else composite_sources)(o.data)
    if not groups:
        log.warning("--balance %s: %s names no %ss (not built from several photo folders by domains.build); "
                    "every composite weighs the same", o.balance, o.data, o.balance)
    return groups or None


def crossfit(o: TrainOptions, engine: EngineConfig) -> dict:
    """``--calibrate_folds K``: the fold models, their pooled calibration scores, then the model on
    every training photo with the scale those scores choose. A fold model finetunes from the
    ``--init`` model's own fold model (``<init>.fold<k>.safetensors``) when there is one, so that
    its held-out photos are unseen by the whole chain (the folds are the same for any subset of the
    photos: :func:`domains.dataset.photo_fold`)."""
    from common.engine import sibling
    k_folds = o.calibrate_folds
    probe, _ = build(o.arch, o.init, o.size)
    if not hasattr(probe.net, "strength"):
        raise InputError(f"--calibrate_folds calibrates a gate scale; {probe.arch} has none (use a gct variant)")
    samples = load_samples(o.data, o.domains, "train")
    splits = [split_folds(samples, k_folds, k) for k in range(k_folds)]  # (rest, held out) per fold
    if not any(all(split) for split in splits):
        raise InputError(f"{o.data} ({o.domains}): {len({s.real for s in samples})} training "
                         f"photo(s), too few to cross-fit {k_folds} folds (no fold has photos on both sides)")
    raws, folds, groups = [], [], balance_groups(o)
    for k, (rest, held_out) in enumerate(splits):
        if not held_out or not rest:
            log.warning("fold %d of %d %s (too few photos for %d folds): skipped", k, k_folds,
                        "holds no photo" if not held_out else "holds every photo", k_folds)
            continue
        path = sibling(engine.loop.out, f"fold{k}.safetensors")
        init = o.init
        if init and sibling(init, f"fold{k}.safetensors").exists():
            init = str(sibling(init, f"fold{k}.safetensors"))
        elif init:
            log.warning("%s has no fold %d model: fold %d's held-out photos were seen by the base, its "
                        "calibration reads low", init, k, k)
        res, held, model = fit(replace(o, init=init), engine.replace(out=str(path), val_every=0), fold=(k, k_folds))
        if dist_info()[0] == 0:  # the fold model as trained (what was just written to its file)
            raws.append(calibration_raw(model, held, groups=groups))
        folds.append({"out": path.name, "init": Path(init).name if init else None,
                      "photos": len({s.real for s in held.samples}), "steps": res.get("steps")})
    pooled = Calibration(summarise(raws), o.drift_limit, {"folds": folds}) if dist_info()[0] == 0 else None
    return fit(replace(o, val_fraction=0.0), engine.replace(val_every=0), pooled=pooled)[0]


CLI = main

if __name__ == "__main__":
    run(CLI)
