"""Train SycoNet on all domains, then finetune it per domain.

    python -m syconet.train --data data/mini4 --domains all --out runs/syconet_all.safetensors
    python -m syconet.train --data data/mini4 --domains MiniFlickr --init runs/syconet_all.safetensors \\
        --out runs/syconet_MiniFlickr.safetensors --steps 300
    python -m syconet.train --data /path/to/iHarmony4 --size 256 --batch_size 32 --workers 8   # GPU
    torchrun --nproc_per_node 2 -m syconet.train --data data/mini4 --out runs/s.safetensors

Ablations (Table 2): ``--ablation no_rec | no_real | move_z | lutv2``. The run resumes from
``<out>.last.safetensors`` when it exists; ``<out>.log.jsonl`` holds losses and validation.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from common import checkpoint, registry
from common.cli import print_json, run, shared_args
from common.engine import EngineConfig, Task, begin, train
from common.io import InputError
from domains.dataset import HarmonyDataset, Mixed, fingerprint, resolve_domains, train_val

from .model import SycoNet, SycoNetConfig, meta

log = logging.getLogger(__name__)

ABLATIONS = {"none": {}, "no_rec": {"rec_branch": False}, "no_real": {"ez_real": False},
             "move_z": {"z_at_input": True},
             "lutv2": {"lut_design": "lutv2", "lut_smooth": 1e-4, "lut_mono": 10.0}}  # [42]'s weights


TUNE = {"all": None, "head": ("fc.", "bank", "to_stats.", "disc.")}


class SycoTask(Task):
    """The engine's view of SycoNet: the model is its own loss module."""

    def __init__(self, model: SycoNet, arch: str, domains, fp: str, val: HarmonyDataset | None,
                 freeze_bn: bool = False, fresh: float = 0.0, donors_only: bool = False):
        self.model, self.arch, self.domains, self.fp, self.val = model, arch, domains, fp, val
        self.freeze_bn = freeze_bn
        self.find_unused_parameters = True  # the critic / E^z are idle in some ablations
        self.fresh, self.donors_only = fresh, donors_only
        if fresh:
            from domains.batched import BatchedProcesses
            from domains.build import DOMAIN_SPECS
            unknown = [d for d in domains if d not in DOMAIN_SPECS]
            if unknown:
                raise InputError(f"--fresh makes pairs by the offline benchmark's processes, which "
                                 f"{', '.join(unknown)} does not name; domains with processes: "
                                 f"{', '.join(DOMAIN_SPECS)}")
            self.methods = {d: DOMAIN_SPECS[d][4] for d in domains}
            self.processes = BatchedProcesses(identity=0.0, methods=tuple(dict.fromkeys(
                m for ms in self.methods.values() for m in ms)))

    def prepare(self, batch: dict) -> dict:
        """With ``fresh``: that share of the trained domains' rows gets a fresh composite of its
        real image by its domain's own process (the colour transfers take their reference from
        another row of the batch); with ``donors_only`` the other domains' rows are references only
        and leave the batch."""
        if not self.fresh:
            return batch
        names = batch["domain_name"]
        picks = [random.choice(self.methods[n]) if n in self.methods and random.random() < self.fresh else None
                 for n in names]
        made = self.processes(batch["real"], batch["mask"], picks)
        stored = torch.tensor([p is None for p in picks])[:, None, None, None]
        batch = {**batch, "composite": torch.where(stored, batch["composite"], made)}
        if self.donors_only:
            keep = [i for i, n in enumerate(names) if n in self.methods]
            batch = {k: (v[keep] if torch.is_tensor(v) else [v[i] for i in keep]) for k, v in batch.items()}
        return batch

    def networks(self):
        """The encoders (the LUT fusion and the losses around them stay eager)."""
        return [m for m in (self.model.enc_r, getattr(self.model, "enc_z", None)) if m is not None]

    def train_mode(self, model):
        """With ``freeze_bn`` the batch-norm layers keep the statistics they were loaded with."""
        if self.freeze_bn:
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def meta(self):
        return meta(self.model, self.arch, self.domains, self.fp)

    def on_step(self, step: int, total: int):
        warm = self.model.cfg.kl_warmup * total
        self.model.kl_scale = min(1.0, step / warm) if warm > 0 else 1.0

    def validate(self, model):
        if self.val is None:
            return {}
        from .evaluate import reconstruction_fmse
        res = reconstruction_fmse(model, self.val, max_images=64)
        if res["rec_fMSE"] != res["rec_fMSE"]:  # NaN: no reconstruction branch to score
            return {"comp_fMSE": res["comp_fMSE"]}
        return {"score": res["rec_fMSE"], **res}


def build_model(arch: str, init: str | None, ablation: str, pretrained_file: str | None, **overrides) -> tuple[SycoNet, str]:
    if ablation not in ABLATIONS:
        raise InputError(f"unknown ablation {ablation!r}; choose from {sorted(ABLATIONS)}")
    if init:
        tensors, m = checkpoint.load(init, kind="syconet")
        cfg = {**m["config"], **{k: v for k, v in overrides.items() if v is not None}, **ABLATIONS[ablation]}
        model = SycoNet(SycoNetConfig(**cfg), bank=tensors["bank"].float())
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
        return model, m["arch"]
    return registry.create(arch, pretrained_file=pretrained_file, **overrides, **ABLATIONS[ablation]), arch


@shared_args
def main(data="data/mini4", domains="all", out="runs/syconet_all.safetensors", init: str | None = None,
         arch: str = "syconet_r18", ablation: str = "none", size: int = 256, enc_size: int | None = None,
         kl_weight: float | None = None, kl_warmup: float | None = None, steps: int = 2000, batch_size: int = 16,
         lr: float = 1e-4,
         workers: int = -1, seed: int = 0, save_every: int = 100, val_every: int = 0, device: str = "auto",
         pretrained_file: str | None = None, lut_dir: str | None = None, resume: bool = True,
         overwrite: bool = False, cache: bool = True, amp: bool = True, channels_last: bool = False,
         compile: bool = False,
         freeze_bn: bool | None = None, replay: float = 0.0, tune: str = "all", val_fraction: float = 0.1,
         fresh: float = 0.0, donors: float = 0.0) -> None:
    """Train SycoNet on all domains, or finetune it on one (--init).

    Args:
        out: checkpoint to write.
        init: start from this SycoNet checkpoint (finetuning keeps its config).
        arch: SycoNet variant (syconet_r18, ...).
        ablation: none, no_rec, no_real, move_z or lutv2 (Table 2).
        enc_size: size the encoders see (default: size).
        kl_weight: weight of the KL term (default 1e-3).
        kl_warmup: share of the steps over which the KL weight ramps up (default 0.2 from scratch, 0 with --init).
        pretrained_file: local backbone weights for the encoders.
        lut_dir: folder of .cube files to initialise the basis LUTs from (k-means).
        freeze_bn: keep the encoders' batch-norm statistics as loaded (default: on with --init).
        replay: share of each batch drawn from the other domains' train splits (finetuning).
        tune: all, or head (FC, basis LUTs and E^z's output layer only).
        fresh: share of the rows whose composite is made afresh at every step from the real image
            by its domain's own process (offline-benchmark domains), instead of the stored one.
        donors: with --fresh, share of each batch drawn from the other domains' train splits as
            the colour transfers' references only (they leave the batch before the loss), so that
            a one-domain finetune draws its references from every photo as the benchmark does.
    """
    engine = EngineConfig.of(out=out, steps=steps, batch_size=batch_size, lr=lr, seed=seed, save_every=save_every,
                             val_every=val_every, resume=resume, overwrite=overwrite, device=device, workers=workers,
                             amp=amp, channels_last=channels_last, compile=compile)
    if not 0 <= fresh <= 1:
        raise InputError(f"--fresh must be in [0, 1], got {fresh}")
    if donors and (replay or not fresh):
        raise InputError("--donors lends references to --fresh pairs: it needs --fresh and excludes --replay")
    dev = begin(engine)
    train_ds, val_ds = train_val(data, domains, size, cache, val_fraction if val_every else 0.0)
    share = replay or donors
    others = [d for d in resolve_domains(data, "all") if d not in train_ds.domains] if share > 0 else []
    if share > 0 and not others:
        raise InputError(f"--{'replay' if replay else 'donors'} {share}: no other domain in {data} to draw from")
    mixed = Mixed(train_ds, HarmonyDataset(data, others, "train", size=size, cache=cache) if others else None,
                  share)
    if kl_warmup is None and init:
        kl_warmup = 0.0
    if freeze_bn is None:
        freeze_bn = bool(init)
    model, arch = build_model(arch, init, ablation, pretrained_file, enc_size=enc_size, kl_weight=kl_weight,
                              kl_warmup=kl_warmup)
    _tune(model, tune, None if init else lut_dir)
    samples = train_ds.samples + (mixed.other.samples if mixed.other is not None else [])
    task = SycoTask(model, arch, train_ds.domains, fingerprint(samples), val_ds, freeze_bn=freeze_bn,
                    fresh=fresh, donors_only=bool(donors))
    res = train(task, mixed, engine, dev)
    print_json({"out": str(Path(out)), **res, "init": init, "ablation": ablation, "domains": train_ds.domains,
                "replay": replay, "fresh": fresh, "donors": donors})


def _tune(model, tune: str, lut_dir: str | None) -> None:
    """Freeze what ``--tune`` leaves alone; initialise the basis LUTs from ``lut_dir``'s .cube files."""
    if tune not in TUNE:
        raise InputError(f"--tune must be one of {sorted(TUNE)}, got {tune!r}")
    if TUNE[tune] is not None:
        for name, prm in model.named_parameters():
            prm.requires_grad_(name.startswith(TUNE[tune]))
    if lut_dir:
        from .bank import basis_bank
        with torch.no_grad():
            model.bank.copy_(basis_bank(model.cfg.n_luts, model.cfg.lut_dim, model.cfg.bank_seed, lut_dir=lut_dir))


CLI = main

if __name__ == "__main__":
    run(CLI)
