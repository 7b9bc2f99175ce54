"""Harmonizer networks: the registry of families and variants, and their checkpoints
(full-resolution inference is :mod:`harmonizers.fullres`).

Every harmonizer maps ``(image N×3×H×W in [0,1], mask N×1×H×W) -> N×3×H×W``; :class:`HarmonizerNet`
wraps a network so that any input size works (reflect-pad to the network's multiple and minimum side,
crop back) and the background is kept: ``out = m·G(x) + (1−m)·x``.
"""
from __future__ import annotations

from dataclasses import asdict, fields

import torch.nn.functional as F
from torch import nn

from common import checkpoint, registry
from common.device import resolve as resolve_device

from .dih import DIH, DIHConfig, HRNetDIH, HRNetDIHConfig
from .gct import GatedColourTransform, GCTConfig
from .issam import ISSAM, ISSAMConfig
from .rainnet import RainNet, RainNetConfig

ARCHS = {"issam": (ISSAM, ISSAMConfig), "rainnet": (RainNet, RainNetConfig),
         "gct": (GatedColourTransform, GCTConfig), "dih": (DIH, DIHConfig), "hrnet": (HRNetDIH, HRNetDIHConfig)}

# name: (arch, config overrides, training size)
VARIANTS = {
    # the published architectures (their released checkpoints load: harmonizers.convert)
    "issam256": ("issam", {}, 256),
    "rainnet256": ("rainnet", {}, 256),
    "dih256": ("dih", {"batchnorm_from": 0, "image_fusion": False}, 256),
    "idih256": ("dih", {}, 256),
    "hrnet18_idih256": ("hrnet", {}, 256),
    "hrnet18s_idih256": ("hrnet", {"small": True}, 256),
    "hrnet32_idih256": ("hrnet", {"width": 32}, 256),
    "hrnet18_v2p_idih256": ("hrnet", {"pyramid_channels": 256}, 256),
    # the same code, scaled
    "issam128": ("issam", {}, 128),
    "rainnet128": ("rainnet", {"ngf": 32, "inner_blocks": 3}, 128),
    # CPU-sized: the same architectures at 64 px (the full-resolution transform does the rest)
    "issam64": ("issam", {"output": "residual"}, 64),
    "rainnet64": ("rainnet", {"ngf": 32, "inner_blocks": 2}, 64),
    # gated colour transform: colour statistics → a gated Lab map (harmonizers.gct); resolution-free
    "gct128": ("gct", {}, 128),
    "gct64": ("gct", {}, 64),
    "gct64c": ("gct", {"fg_chroma": True}, 64),   # + the foreground's mean chroma (docs/results.md)
    "issam_test": ("issam", {"depth": 3, "ch": 8, "attend_from": 1}, 32),
    "gct_test": ("gct", {"hidden": 8}, 32),
    "rainnet_test": ("rainnet", {"ngf": 8, "inner_blocks": 1}, 32),
    "hrnet_test": ("hrnet", {"depth": 6, "ch": 8, "max_channels": 32, "width": 4, "small": True, "ocr": 8}, 128),
}


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


def load(path, device="cpu") -> tuple[HarmonizerNet, dict]:
    device = resolve_device(device)
    tensors, m = checkpoint.load(path, kind="harmonizer", device=device)
    return from_state(tensors, m).to(device), m



registry.register_variants("harmonizer", VARIANTS, create)
registry.register_loader("harmonizer", load)

# ---- full-resolution inference -----------------------------------------------------------------
