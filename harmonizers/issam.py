"""iS2AM without the HRNet backbone: the ``improved_ssam256`` configuration of Sofiiuk et al.,
"Foreground-aware semantic representations for image harmonization" (WACV 2021).

A U-Net on ``[image, mask]`` (depth 4, 32 base channels, batch norm from block 2) whose decoder's
last ``depth − 1 − attend_from`` up-blocks use spatial-separated attention (SSAM: channel attention
gates for background, foreground (with a learning block) and their mix, blended by the blurred
mask), and image fusion ``out = a·x + (1 − a)·y`` with a predicted attention map ``a``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.imagenet import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ISSAMConfig:
    depth: int = 4
    ch: int = 32
    max_channels: int = 512
    batchnorm_from: int = 2
    attend_from: int = 2
    attention_mid_k: float = 0.5
    image_fusion: bool = True
    # "fusion": out = a·x + (1−a)·y as iS2AM; "residual": out = x + y with y zero-initialised, which
    # starts at the identity and keeps its gradient (fusion saturates to a = 1 on small data, see README)
    output: str = "fusion"


def conv_block(cin, cout, norm: bool, k=3, s=1, p=1):
    layers = [nn.Conv2d(cin, cout, k, s, p, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ELU(inplace=True))
    return nn.Sequential(*layers)


class DoubleConv(nn.Sequential):
    def __init__(self, cin, cout, norm):
        super().__init__(conv_block(cin, cout, norm), conv_block(cout, cout, norm))


class ChannelAttention(nn.Module):
    """Gate channels by an MLP on their global average and max."""

    def __init__(self, c):
        super().__init__()
        mid = max(c // 16, 8)
        self.mlp = nn.Sequential(nn.Linear(2 * c, mid), nn.ReLU(inplace=True), nn.Linear(mid, c), nn.Sigmoid())

    def forward(self, x):
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return x * self.mlp(pooled)[..., None, None]


def gaussian_blur_mask(mask, k=7, sigma=1.0):
    x = torch.arange(k, device=mask.device, dtype=mask.dtype) - k // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    m = F.pad(mask, (k // 2,) * 4, mode="replicate")
    return F.conv2d(F.conv2d(m, g.view(1, 1, 1, k)), g.view(1, 1, k, 1))


class SpatialSeparatedAttention(nn.Module):
    def __init__(self, c, norm, mid_k):
        super().__init__()
        mid = int(mid_k * c)
        self.bg_gate, self.fg_gate, self.mix_gate = ChannelAttention(c), ChannelAttention(c), ChannelAttention(c)
        self.learning = nn.Sequential(conv_block(c, mid, norm), conv_block(mid, c, norm))

    def forward(self, x, mask):
        m = gaussian_blur_mask(F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True))
        fg = self.learning(self.fg_gate(x))
        return m * (fg + self.mix_gate(x)) + (1 - m) * self.bg_gate(x)


class UpBlock(nn.Module):
    def __init__(self, cin_dec, cin_enc, cout, norm, attention: bool, mid_k):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                conv_block(cin_dec, cout, False))
        self.attention = SpatialSeparatedAttention(cin_enc + cout, norm, mid_k) if attention else None
        self.convs = DoubleConv(cin_enc + cout, cout, norm)

    def forward(self, x, skip, mask):
        x = torch.cat([skip, self.up(x)], 1)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.convs(x)


class ISSAM(nn.Module):
    """``forward(image N×3×H×W in [0,1], mask N×1×H×W) -> N×3×H×W`` (H, W multiples of 2^(depth−1))."""

    def __init__(self, cfg: ISSAMConfig = ISSAMConfig()):
        super().__init__()
        self.cfg = cfg
        self.multiple_of = 2 ** (cfg.depth - 1)
        chans, c = [], cfg.ch
        self.down = nn.ModuleList()
        cin = 4
        for i in range(cfg.depth):
            self.down.append(DoubleConv(cin, c, norm=0 <= cfg.batchnorm_from <= i))
            chans.append(c)
            cin, c = c, min(2 * c, cfg.max_channels)
        self.ups = nn.ModuleList()
        cdec = chans[-1]
        for d in range(cfg.depth - 1):
            cenc = chans[-2 - d]
            self.ups.append(UpBlock(cdec, cenc, cenc, norm=0 <= cfg.batchnorm_from <= cfg.depth - 2 - d,
                                    attention=0 <= cfg.attend_from <= d, mid_k=cfg.attention_mid_k))
            cdec = cenc
        self.to_rgb = nn.Conv2d(cdec, 3, 1)
        if cfg.output not in ("fusion", "residual"):
            raise ValueError(f"output must be fusion or residual, got {cfg.output!r}")
        if cfg.output == "residual":
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)
        self.to_attention = nn.Conv2d(cdec, 1, 1) if cfg.image_fusion and cfg.output == "fusion" else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image, mask):
        x = (image - self.mean) / self.std
        h = torch.cat([x, mask], 1)
        skips = []
        for i, blk in enumerate(self.down):
            h = blk(h)
            if i < len(self.down) - 1:
                skips.append(h)
                h = F.max_pool2d(h, 2)
        for up, skip in zip(self.ups, reversed(skips)):
            h = up(h, skip, mask)
        y = self.to_rgb(h)
        if self.cfg.output == "residual":
            y = x + y
        elif self.to_attention is not None:
            a = torch.sigmoid(3.0 * self.to_attention(h))
            y = a * x + (1 - a) * y
        return y * self.std + self.mean
