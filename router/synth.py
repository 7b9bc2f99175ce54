"""Fresh composites for classifier training, made by the offline benchmark's own processes.

On the offline benchmark a domain *is* its foreground-adjustment process, and each domain has only a
handful of training photos, so a classifier trained on the stored composites learns the photos
(content), not the process, and fails on unseen photos. ``ProcessComposites`` draws, for every item,
a random training real image of any domain, a random domain, and that domain's process with fresh
parameters (``domains.build.make_composite``): the label then depends on the process alone.
Only for datasets built by ``domains.build`` (the processes are known); on iHarmony4, train on the
stored composites.

On a GPU the composites are made in the training step instead, for the whole batch on the device
(:class:`ProcessLabels` gives real crops with a drawn domain and process;
:class:`domains.batched.BatchedProcesses` makes the composites): the same processes, with the
crop taken before the process rather than after.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from common.io import InputError
from domains.build import DOMAIN_SPECS, make_composite, resize_max
from domains.dataset import HarmonyDataset, real_images


class ProcessComposites(Dataset):
    def __init__(self, base: HarmonyDataset, length: int = 4096, work_size: int = 192):
        _check_domains(base)
        self.domains, self.size, self.length = base.domains, base.size, length
        self.reals = []
        for dom, real, mask in real_images(base.samples):
            r = resize_max(base.load(real, False), work_size)
            m = (resize_max(base.load(mask, True), work_size) > 0.5).float()  # as domains.build does
            self.reals.append((f"{dom}/{real.name}", r, m))
        self.reals_u8 = [to_u8(r) for _, r, _ in self.reals]  # what the crops are cut from
        self.tf = v2.Compose([v2.RandomResizedCrop(self.size, scale=(0.5, 1.0), antialias=True),
                              v2.RandomHorizontalFlip()])

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng(int(torch.randint(2 ** 31, (1,))))  # follows the engine's per-sample seed
        k = int(rng.integers(len(self.reals)))
        name, real, mask = self.reals[k]
        d = int(rng.integers(len(self.domains)))
        methods = DOMAIN_SPECS[self.domains[d]][4]
        refs = [r for j, r in enumerate(self.reals) if j != k]
        comp, _ = make_composite(real, mask, methods[int(rng.integers(len(methods)))], rng, refs)
        # cropped and resized in 8 bits, as the stored composites are (HarmonyDataset does the same)
        comp, real_t, mask_t = self.tf(tv_tensors.Image(to_u8(comp)), tv_tensors.Image(self.reals_u8[k]),
                                       tv_tensors.Mask(mask))
        return {"composite": comp.as_subclass(torch.Tensor).float() / 255,
                "real": real_t.as_subclass(torch.Tensor).float() / 255,
                "mask": mask_t.as_subclass(torch.Tensor), "domain": d, "domain_name": self.domains[d]}


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """A float image in [0, 1] rounded to 8-bit levels."""
    return x.clamp(0, 1).mul(255).round_().to(torch.uint8)


def _check_domains(base: HarmonyDataset) -> None:
    unknown = [d for d in base.domains if d not in DOMAIN_SPECS]
    if unknown:
        raise InputError(f"--synthesize needs domains built by domains.build; {unknown} have no known process")


class ProcessLabels(Dataset):
    """Real training crops, each with a drawn domain and one of its processes (``method``), for a
    composite made on the device (``router.train --synthesize`` on a GPU): ``composite`` is the real
    crop until then."""

    def __init__(self, base: HarmonyDataset, length: int = 4096):
        _check_domains(base)
        self.base, self.domains, self.length = base, base.domains, length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng(int(torch.randint(2 ** 31, (1,))))  # follows the engine's per-sample seed
        it = self.base[int(rng.integers(len(self.base)))]
        d = int(rng.integers(len(self.domains)))
        methods = DOMAIN_SPECS[self.domains[d]][4]
        return {"composite": it["real"], "real": it["real"], "mask": it["mask"], "domain": d,
                "domain_name": self.domains[d], "method": methods[int(rng.integers(len(methods)))]}


def device_processes():
    """The processes every offline-benchmark domain uses, batched (:class:`domains.batched.BatchedProcesses`)."""
    from domains.batched import BatchedProcesses
    methods = tuple(dict.fromkeys(m for spec in DOMAIN_SPECS.values() for m in spec[4]))
    return BatchedProcesses(identity=0.0, methods=methods)


class Relit(Dataset):
    """The items of ``base`` (whole composites, evaluation items) taken to dusk or night, the whole
    picture in linear light (:func:`domains.transfer.sample_night`, drawn once per item from
    ``seed``), labelled domain ``domain`` of ``domains``: rows that show a probe head a night domain's
    light on a day domain's content (``router.train --relight MiniFlickr:MiniDay2night``). Item
    ``i``'s light is drawn from ``(seed, keys[i])`` (default ``keys[i] = i``), so that a subset of
    the items can be relit as they are in the whole."""

    def __init__(self, base: Dataset, domain: str, domains: list[str], seed: int = 0, keys: list[int] | None = None):
        if domain not in domains:
            raise InputError(f"relit rows for domain {domain!r}: not one of {', '.join(domains)}")
        if keys is not None and len(keys) != len(base):
            raise ValueError(f"{len(keys)} keys for {len(base)} items")
        self.base, self.domain, self.index, self.seed = base, domain, domains.index(domain), seed
        self.keys = keys

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        from domains.transfer import illumination_fn, sample_night
        it = self.base[i]
        fn = illumination_fn(sample_night(np.random.default_rng([self.seed, i if self.keys is None else self.keys[i]])))
        x = fn(it["composite"].permute(1, 2, 0).double().numpy())
        return {**it, "composite": torch.from_numpy(x).permute(2, 0, 1).float().contiguous(),
                "domain": self.index, "domain_name": self.domain}
