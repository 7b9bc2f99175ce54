"""Augmenters for harmonizer training, behind one interface.

An augmenter maps a batch of real images and masks (``N×3×H×W``, ``N×1×H×W``) to synthetic
composites of the same shape, without gradients (``augmenter(real, mask, composite)``; only
``syconet_zc`` reads the original composite):

- ``none``: no augmentation
- ``syconet:CKPT``: dynamic learnable augmentation (paper section 3.2): a fresh ``z^g`` per real image
  at every iteration
- ``syconet_zc:CKPT``: Table 2's "z^c" ablation: ``z ~ N(μ, σ²)`` from ``E^z`` on the batch's original
  composite (needs a checkpoint with ``E^z``)
- ``ct``: classical colour transfer (Reinhard, Xiao, histogram, Pitié; one at random) from a random
  reference photo of the training set, as iHarmony4 built HCOCO/HFlickr
- ``lut``: a random look from the procedural LUT pool (syconet.bank)
- ``processes[:P[:M1+M2…]]``: fresh pairs from every process of the offline benchmark (the four
  colour transfers from another image of the batch, retouch, illumination, the five experts, a
  procedural LUT look; or only the processes named), with share ``P`` (default 0.3) left
  unperturbed so that a harmonious input is left alone
- ``static:K:CKPT``: K SycoNet composites per real image generated once and merged into the training
  set (:class:`StaticAugmented`)
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from common import shipped
from common.io import InputError, env_megabytes
from domains import transfer as T
from syconet.bank import procedural_pool
from common.lut import apply_lut


class SycoNetAugmenter:
    def __init__(self, ckpt, device="cpu", zc: bool = False):
        from common import registry
        self.model, self.meta = registry.load(ckpt, device, kind="syconet")
        self.zc = zc
        if zc and not hasattr(self.model, "enc_z"):
            raise InputError(f"{ckpt}: generation-only SycoNet (no E^z); syconet_zc needs a full training checkpoint")
        for p in self.model.parameters():
            p.requires_grad_(False)

    def to(self, device):
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, real, mask, composite=None):
        if self.zc:
            return self.model.generate_zc(composite.float(), real.float(), mask.float())
        return self.model.generate(real.float(), mask.float())


class LookPool:
    """A pool of procedural looks (``syconet.bank.procedural_pool``) to draw LUTs from."""

    def __init__(self, n: int = 120, dim: int = 17, seed: int = 0):
        self.pool = procedural_pool(n, dim, seed)

    def to(self, device):
        self.pool = self.pool.to(device)
        return self

    def draw(self, k: int) -> torch.Tensor:
        """``k`` looks drawn at random (global torch RNG), ``k×3×D×D×D`` on the pool's device."""
        return self.pool[torch.randint(len(self.pool), (k,)).to(self.pool.device)]


class LUTAugmenter(LookPool):
    @torch.no_grad()
    def __call__(self, real, mask, composite=None):
        return mask * apply_lut(real.float(), self.draw(real.shape[0])) + (1 - mask) * real


class Regrade(LookPool):
    """Re-grade whole training pairs: with probability ``p`` per image, one random look of the
    procedural pool is applied to the composite and the real image alike (foreground and background).

    A harmonizer trained on a few dozen photos otherwise learns each photo's true foreground colours
    instead of "make the foreground agree with the background"; under a global re-grade the target
    foreground changes with the background, so only the relation between the two can be learned.
    The pair stays consistent: the background and the target are the same photo under one look.
    """

    def __init__(self, p: float, n: int = 120, dim: int = 17, seed: int = 1):
        if not 0.0 <= p <= 1.0:
            raise InputError(f"--regrade must be a probability in [0, 1], got {p}")
        super().__init__(n, dim, seed)
        self.p = p

    @torch.no_grad()
    def __call__(self, composite, real):
        """(composite, real) → the same pair, each selected image under its look."""
        pick = torch.rand(real.shape[0], device=real.device) < self.p
        if not bool(pick.any()):
            return composite, real
        luts = self.draw(int(pick.sum()))
        new_comp, new_real = apply_lut(torch.cat([composite[pick], real[pick]]).float(), torch.cat([luts, luts])).chunk(2)
        composite, real = composite.clone(), real.clone()
        composite[pick], real[pick] = new_comp.to(composite.dtype), new_real.to(real.dtype)
        return composite, real


class CTAugmenter:
    """Colour transfer from reference pixels drawn from the training set's real images."""

    in_loader = True  # numpy on the CPU: the training loader runs it (harmonizers.train)

    def __init__(self, dataset, n_refs: int = 64, px: int = 4096, seed: int = 0):
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(dataset), min(n_refs, len(dataset)), replace=False)
        self.refs = []
        for i in idx:
            it = dataset[int(i)]
            p = it["real"].permute(1, 2, 0).reshape(-1, 3).double().numpy()
            self.refs.append(p[rng.choice(len(p), min(px, len(p)), replace=False)])
        self.methods = tuple(T.STAT_METHODS)

    def to(self, device):
        return self

    @torch.no_grad()
    def __call__(self, real, mask, composite=None):
        out = []
        for r, m in zip(real.float().cpu(), mask.float().cpu()):
            if (m > 0.5).sum() < 4:
                out.append(r)
                continue
            method = random.choice(self.methods)
            ref = self.refs[random.randrange(len(self.refs))]
            out.append(T.transfer(r, m, method, ref=ref, strength=random.uniform(0.6, 1.0),
                                  seed=random.randrange(2 ** 31)))
        return torch.stack(out).to(real.device)


class ProcessAugmenter:
    """Fresh composites from any real image: each image of the batch gets one benchmark process with
    fresh parameters (``domains.build.make_composite``; the colour transfers copy another image's
    foreground), a procedural look, or, with probability ``identity``, nothing at all.

    Where they run follows the training device (``to``): with a CPU device, per image in numpy in
    the training loader (``in_loader``: its workers run them in parallel); with a GPU, batched on
    the device in the training step (:class:`domains.batched.BatchedProcesses`: the same processes,
    parameter distributions and plausibility rule). ``batched`` forces either way."""

    METHODS = ("reinhard", "xiao", "histogram", "pitie", "retouch", "illumination", "expert", "lut")

    def __init__(self, identity: float = 0.3, methods: tuple[str, ...] | None = None, batched: bool | None = None):
        if not 0.0 <= identity < 1.0:
            raise InputError(f"--augment processes:P: P must be in [0, 1), got {identity}")
        unknown = sorted(set(methods or ()) - set(self.METHODS))
        if unknown:
            raise InputError(f"--augment processes: unknown process {unknown}; choose from {self.METHODS}")
        self.identity, self.looks = identity, LUTAugmenter()
        self.methods = tuple(methods) if methods else self.METHODS
        self.forced, self.batched = batched, bool(batched)
        self.in_loader = not self.batched  # the training loader runs it (harmonizers.train)

    def to(self, device):
        """Batched on ``device`` when it is a GPU (or when forced), the looks' pool with it."""
        self.batched = torch.device(device).type != "cpu" if self.forced is None else self.forced
        self.in_loader = not self.batched
        if self.batched:
            self.looks.to(device)
        return self

    @torch.no_grad()
    def __call__(self, real, mask, composite=None):
        if self.batched:
            from domains.batched import BatchedProcesses
            return BatchedProcesses(self.identity, self.methods, self.looks)(real, mask)
        from domains.build import make_composite
        cpu_real, cpu_mask = real.float().cpu(), (mask.float().cpu() > 0.5).float()
        refs = [(str(j), r, m) for j, (r, m) in enumerate(zip(cpu_real, cpu_mask)) if m.sum() >= 4]
        out = []
        for i, (r, m) in enumerate(zip(cpu_real, cpu_mask)):
            method = random.choice(self.methods)
            others = [x for x in refs if x[0] != str(i)]
            if random.random() < self.identity or m.sum() < 4 or (method in T.STAT_METHODS and not others):
                out.append(r)
            elif method == "lut":
                out.append(self.looks(r[None], mask[i:i + 1].float().cpu())[0])
            else:
                rng = np.random.default_rng(random.randrange(2 ** 31))
                out.append(make_composite(r, m, method, rng, others)[0])
        return torch.stack(out).to(real.device, real.dtype)


def static_budget_mb() -> float:
    """Memory the ``static`` augmentation may hold: ``HARMONY_STATIC_MB`` or 8192."""
    return env_megabytes("HARMONY_STATIC_MB", 8192)


class StaticAugmented(Dataset):
    """The training set plus K SycoNet composites per item, generated once (uint8 in memory).

    The generated set must fit ``HARMONY_STATIC_MB`` (default 8192 MB; checked before generating):
    on iHarmony4 at 256 px, K = 4 would need about 50 GB, where the dynamic ``syconet:CKPT`` mode
    (the paper's) needs nothing stored.
    """

    def __init__(self, base, ckpt, k: int, seed: int = 0, device="cpu"):
        from common import registry
        need, budget = len(base) * k * 3 * base.size * base.size / 2 ** 20, static_budget_mb()
        if need > budget:
            raise InputError(f"static:{k}: {len(base)} items x {k} composites at {base.size} px need "
                             f"{need:.0f} MB, over HARMONY_STATIC_MB={budget:.0f}; use the dynamic "
                             "syconet:CKPT augmentation, a smaller K, or raise HARMONY_STATIC_MB")
        model, _ = registry.load(ckpt, device, kind="syconet")
        self.base, self.k, self.items = base, k, []
        g = torch.Generator(device=device).manual_seed(seed)
        was_train = base.train
        base.train = False  # fixed geometry for the generated set
        with torch.no_grad():
            for i in range(len(base)):
                it = base[i]
                real, mask = it["real"][None].to(device), it["mask"][None].to(device)
                gen = model.generate(real.expand(k, -1, -1, -1), mask.expand(k, -1, -1, -1), generator=g)
                for j in range(k):
                    self.items.append({**it, "composite": (gen[j].cpu() * 255).round().to(torch.uint8)})
        base.train = was_train

    def __len__(self):
        return len(self.base) + len(self.items)

    def __getitem__(self, i):
        if i < len(self.base):
            return self.base[i]
        it = dict(self.items[i - len(self.base)])
        it["composite"] = it["composite"].float() / 255
        return it


@dataclass(frozen=True)
class AugmentSpec:
    """A parsed ``--augment``: what :func:`make` builds, read once at the command's door.

    ``kind``: none, ct, lut, processes, syconet, syconet_zc or static; ``share`` and ``processes``
    for processes (the share of the batch, the named processes or all); ``ckpt`` for the SycoNet
    kinds; ``k`` for static; ``text`` as given (what checkpoints record)."""
    kind: str = "none"
    share: float = 0.0
    processes: tuple[str, ...] | None = None
    ckpt: str | None = None
    k: int = 0
    text: str = "none"

    @property
    def dynamic(self) -> bool:
        """Whether composites are made during training (what --only_aug needs)."""
        return self.kind not in ("none", "static")


def parse(spec: "str | None | AugmentSpec") -> AugmentSpec:
    """``"none" | "ct" | "lut" | "processes[:P[:M1+M2]]" | "syconet[:CKPT]" | "syconet_zc:CKPT" |
    "static:K:CKPT"`` → :class:`AugmentSpec` (one already parsed is returned as it is); ``syconet``
    alone uses ``runs/syconet_all.safetensors`` or, when there is none, the shipped
    ``models/syconet_all.safetensors``."""
    if isinstance(spec, AugmentSpec):
        return spec
    text = (spec or "none").strip()
    if text in ("none", "ct", "lut"):
        return AugmentSpec(text, text=text)
    if text == "processes" or text.startswith("processes:"):
        parts = text.split(":")
        try:
            share = float(parts[1]) if len(parts) > 1 else 0.3
        except ValueError:
            raise InputError(f"--augment {text!r}: use processes, processes:P with P a share, or "
                             "processes:P:M1+M2 (e.g. processes:0.3:illumination)") from None
        return AugmentSpec("processes", share, tuple(parts[2].split("+")) if len(parts) > 2 and parts[2] else None,
                           text=text)
    if text == "syconet":  # no CKPT: runs/syconet_all.safetensors, else the shipped one
        return AugmentSpec("syconet", ckpt=str(shipped.prefer("runs/syconet_all.safetensors", shipped.SYCONET_ALL,
                                                               "--augment syconet")), text=text)
    if text.startswith(("syconet:", "syconet_zc:")):
        kind, ckpt = text.split(":", 1)
        return AugmentSpec(kind, ckpt=ckpt, text=text)
    if text.startswith("static:"):
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            raise InputError(f"--augment {text!r}: use static:K:SYCONET_CKPT, e.g. static:4:runs/syconet_all.safetensors")
        return AugmentSpec("static", ckpt=parts[2], k=int(parts[1]), text=text)
    raise InputError(f"--augment {text!r}: use none, ct, lut, processes[:P], syconet[:CKPT], syconet_zc:CKPT "
                     "or static:K:CKPT")


def make(spec: AugmentSpec, train_ds, device="cpu"):
    """(augmenter or None, training dataset) for a parsed spec."""
    if spec.kind == "none":
        return None, train_ds
    if spec.kind == "ct":
        return CTAugmenter(train_ds), train_ds
    if spec.kind == "lut":
        return LUTAugmenter().to(device), train_ds
    if spec.kind == "processes":
        return ProcessAugmenter(spec.share, spec.processes).to(device), train_ds
    if spec.kind in ("syconet", "syconet_zc"):
        return SycoNetAugmenter(spec.ckpt, device, zc=spec.kind == "syconet_zc"), train_ds
    return None, StaticAugmented(train_ds, spec.ckpt, spec.k, device=device)
