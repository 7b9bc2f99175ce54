"""The released SycoNet generation network (bcmi/SycoNet-Adaptive-Image-Harmonization), beside our
paper-faithful ``E^r``/``E^z`` model (:mod:`syconet.model`).

The released encoder differs from the paper's description: a custom residual encoder (official
``models/modules.py`` ``SycoNet``) that tiles ``z`` spatially and concatenates it to the input of
every block, then LeakyReLU → 8×8 average pooling → 1×1 conv → softmax over the 20 basis LUTs.
It sees exactly 256×256 ``[R, G, B, mask]`` in [0, 1] (no mean/std); the combined LUT is applied
at the input's own resolution (the demo's ``--keep_res``) and the result clamped to [0, 1]:
``clamp(φ(I)·M + I·(1 − M), 0, 1)``.

:class:`OfficialSycoNet` has the same generation API as :class:`syconet.model.SycoNet`
(``generate``, ``coefficients``, ``render``, ``cfg.z_dim``), so a converted released checkpoint
(``python -m harmonizers.convert … --kind syconet``) augments harmonizer training like ours.
Its state dict is ``enc_r.<official netEr key>`` plus ``bank`` (the 20 LUTs stacked, ``[c, b, g, r]``).
Differences from the official code, on purpose: any batch size works (the official CUDA kernel is
right only for batch 1), and the lookup runs on :func:`syconet.lut.apply_lut`; the official
kernel's cell size ``1.000001/16`` is reproduced by scaling the input by ``1/1.000001``.
The mask is binarised as the official loader does (only 255 of 255 is foreground) when
``binarize`` (default) is on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.lut import apply_lut, combine, identity_lut

# the official kernel's cell size is 1.000001/(D−1), so colours index the lattice at x/1.000001
KERNEL_SCALE = 1.000001


@dataclass(frozen=True)
class OfficialSycoNetConfig:
    input_nc: int = 4
    z_dim: int = 32      # nz
    nef: int = 64
    nwf: int = 256
    n_luts: int = 20
    lut_dim: int = 17
    enc_size: int = 256  # the pooling head needs exactly 8×8 features, i.e. 256-px input
    binarize: bool = True


def _bn(c):
    return nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    """``conv = [BN, LReLU, conv3×3, BN, LReLU, [conv3×3 → out, avgpool2]]``, ``shortcut = [avgpool2, conv1×1]``."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(_bn(cin), nn.LeakyReLU(0.2), nn.Conv2d(cin, cin, 3, 1, 1), _bn(cin),
                                  nn.LeakyReLU(0.2), nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.AvgPool2d(2)))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1))

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


class Encoder(nn.Module):
    """The official ``SycoNet`` module (names and order as ``pretrained_net_Er.pth``)."""

    def __init__(self, cfg: OfficialSycoNetConfig):
        super().__init__()
        nz, nef = cfg.z_dim, cfg.nef
        widths = [nef * min(4, k) for k in (1, 2, 3, 4, 4)]
        self.block0 = nn.Conv2d(cfg.input_nc + nz, widths[0], 4, 2, 1)
        for i in range(1, 5):
            self.add_module(f"block{i}", BasicBlock(widths[i - 1] + nz, widths[i]))
        self.nl = nn.Sequential(nn.LeakyReLU(0.2), nn.AvgPool2d(8))
        self.weight_predictor = nn.Conv2d(cfg.nwf, cfg.n_luts, 1)

    def forward(self, x, z):
        """``x`` N×C×256×256, ``z`` N×nz → softmax weights ``N×L``."""
        z = z[:, :, None, None]
        h = x
        for i in range(5):
            h = torch.cat([h, z.expand(-1, -1, *h.shape[-2:])], 1)
            h = getattr(self, f"block{i}")(h)
        logits = self.weight_predictor(self.nl(h))
        return logits.softmax(1).flatten(1)


class OfficialSycoNet(nn.Module):
    def __init__(self, cfg: OfficialSycoNetConfig = OfficialSycoNetConfig(), bank: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        self.enc_r = Encoder(cfg)
        if bank is None:  # Get3DLUT_identity: every basis LUT starts at the identity
            bank = identity_lut(cfg.lut_dim)[None].repeat(cfg.n_luts, 1, 1, 1, 1)
        self.bank = nn.Parameter(bank.clone())

    def _mask(self, mask):
        return (mask >= 1.0).to(mask.dtype) if self.cfg.binarize else mask

    def coefficients(self, real, mask, z):
        """Softmax weights ``N×L`` for real images, masks and ``z`` (``N×nz``), at exactly 256×256."""
        s = self.cfg.enc_size
        x = torch.cat([real, self._mask(mask)], 1)
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
            x = torch.cat([x[:, :3], (x[:, 3:] >= 0.5).to(x.dtype)], 1) if self.cfg.binarize else x
        return self.enc_r(x, z)

    def render(self, real, mask, alpha):
        m = self._mask(mask)
        lut = combine(alpha, self.bank)
        return (m * apply_lut(real / KERNEL_SCALE, lut) + (1 - m) * real).clamp(0, 1)

    def generate(self, real, mask, z=None, generator: torch.Generator | None = None):
        if z is None:
            z = torch.randn(real.shape[0], self.cfg.z_dim, generator=generator, device=real.device)
        return self.render(real, mask, self.coefficients(real, mask, z))


def meta(model: OfficialSycoNet, domains=(), fingerprint: str = "", **extra) -> dict:
    return {"kind": "syconet", "arch": "syconet_official", "config": asdict(model.cfg), "domains": list(domains),
            "data_fingerprint": fingerprint, **extra}
