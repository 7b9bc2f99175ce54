"""The harmonizer wrapper every family shares, and the families' table: each family's module
registers its network, its config and its variants here (:func:`register`), and through it in
:mod:`common.registry`. :mod:`harmonizers.models` imports every family and loads checkpoints.

Every harmonizer maps ``(image N×3×H×W in [0,1], mask N×1×H×W) -> N×3×H×W``; :class:`HarmonizerNet`
wraps a network so that any input size works (reflect-pad to the network's multiple and minimum side,
crop back) and the background is kept: ``out = m·G(x) + (1−m)·x``.
"""
from __future__ import annotations

from dataclasses import asdict, fields

import torch.nn.functional as F
from torch import nn

from common import registry

ARCHS: dict[str, tuple[type, type]] = {}             # family: (network class, config dataclass)
VARIANTS: dict[str, tuple[str, dict, int]] = {}      # name: (family, config overrides, training size)


def register(arch: str, variants: dict[str, tuple[dict, int]], net: type | None = None,
             config: type | None = None) -> None:
    """Register a family's ``net`` and ``config`` (once, by its own module) and its ``variants``
    (name: (config overrides, training size)); another module may add variants of a known family."""
    if net is not None:
        ARCHS[arch] = (net, config)
    if arch not in ARCHS:  # variants of a shipped family, registered from another module
        from . import models  # noqa: F401 - registers the shipped families
    if arch not in ARCHS:
        raise ValueError(f"unknown harmonizer arch {arch!r}; choose from {sorted(ARCHS)}")
    VARIANTS.update({name: (arch, dict(base), size) for name, (base, size) in variants.items()})
    registry.register_variants("harmonizer", list(variants), create, family=arch)


class HarmonizerNet(nn.Module):
    """A network plus the conventions: padding to its multiple and background preservation."""

    def __init__(self, arch: str, cfg, size: int):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown harmonizer arch {arch!r}; choose from {sorted(ARCHS)}")
        self.arch, self.size = arch, size
        self.net = ARCHS[arch][0](cfg)

    @property
    def cfg(self):
        return self.net.cfg

    def forward(self, image, mask, keep_background: bool = True):
        """The network's result at any size; with ``keep_background`` (default) the input outside the
        mask, without it the network's own output everywhere (what the official evaluation scores)."""
        h, w = image.shape[-2:]
        k, lo = self.net.multiple_of, getattr(self.net, "min_side", 1)  # lo: a multiple of k
        ph, pw = max((-h) % k, lo - h), max((-w) % k, lo - w)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x, m = F.pad(image, (0, pw, 0, ph), mode=mode), F.pad(mask, (0, pw, 0, ph), mode=mode)
        else:
            x, m = image, mask
        y = self.net(x, m)[..., :h, :w]
        return mask * y + (1 - mask) * image if keep_background else y


def create(name: str, **overrides) -> HarmonizerNet:
    """A registered variant; ``overrides`` left as ``None`` keep the variant's defaults."""
    if name not in VARIANTS:
        registry.variants()  # imports every family and the HARMONY_VARIANTS modules
    if name not in VARIANTS:
        raise ValueError(f"unknown harmonizer {name!r}; choose from {sorted(VARIANTS)}")
    arch, base, size = VARIANTS[name]
    cfg_cls = ARCHS[arch][1]
    valid = {f.name for f in fields(cfg_cls)}
    size = overrides.pop("size", None) or size
    bad = set(k for k, v in overrides.items() if v is not None) - valid
    if bad:
        raise ValueError(f"unknown {arch} config keys {sorted(bad)}")
    cfg = cfg_cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})
    return HarmonizerNet(arch, cfg, size)


def meta(model: HarmonizerNet, domains, fingerprint: str, **extra) -> dict:
    return {"kind": "harmonizer", "arch": model.arch, "config": asdict(model.cfg), "size": model.size,
            "domains": list(domains), "data_fingerprint": fingerprint, **extra}


def from_meta(m: dict) -> HarmonizerNet:
    arch = m["arch"]
    if arch not in ARCHS:
        raise ValueError(f"checkpoint arch {arch!r} unknown; choose from {sorted(ARCHS)}")
    return HarmonizerNet(arch, ARCHS[arch][1](**m["config"]), m["size"])


def from_state(tensors: dict, m: dict) -> HarmonizerNet:
    """The model a checkpoint's weights and metadata describe (float32 weights, eval mode), on the CPU."""
    model = from_meta(m)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval()
