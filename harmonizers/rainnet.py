"""RainNet (Ling et al., "Region-aware adaptive instance normalization for image harmonization",
CVPR 2021): a pix2pix-style U-Net whose decoder normalises with RAIN.

RAIN normalises the background with its own statistics, and re-styles the foreground with the
*background's* mean and standard deviation (each with learned affine corrections), so the decoder
transfers the background's feature statistics onto the foreground.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RainNetConfig:
    depth: int = 8          # down-sampling steps (8 for 256 input, as unet_256)
    ch: int = 64
    max_channels: int = 512
    dropout: float = 0.5    # in the innermost decoder blocks, as pix2pix


def masked_stats(x, mask, eps=1e-5):
    """Mean and std of ``x`` over the region ``mask`` (``N×1×H×W``), per channel."""
    area = mask.sum((2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum((2, 3), keepdim=True) / area
    var = ((x - mean) ** 2 * mask).sum((2, 3), keepdim=True) / area
    return mean, (var + eps).sqrt()


class RAIN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fg_gamma, self.fg_beta = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
        self.bg_gamma, self.bg_beta = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))

    def forward(self, x, mask):
        m = F.interpolate(mask, size=x.shape[-2:], mode="nearest")
        mb, sb = masked_stats(x, 1 - m)
        mf, sf = masked_stats(x, m)
        bg = ((x - mb) / sb * (1 + self.bg_gamma[:, None, None]) + self.bg_beta[:, None, None]) * (1 - m)
        fg = ((x - mf) / sf * sb + mb)
        fg = (fg * (1 + self.fg_gamma[:, None, None]) + self.fg_beta[:, None, None]) * m
        return fg + bg


class Up(nn.Module):
    def __init__(self, cin, cout, dropout: float):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.norm = RAIN(cout)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x, mask):
        return self.drop(self.norm(self.conv(F.relu(x)), mask))


class RainNet(nn.Module):
    """``forward(image N×3×H×W in [0,1], mask) -> N×3×H×W`` (H, W multiples of 2^depth)."""

    def __init__(self, cfg: RainNetConfig = RainNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.multiple_of = 2 ** cfg.depth
        chans = [min(cfg.ch * 2 ** i, cfg.max_channels) for i in range(cfg.depth)]
        self.down = nn.ModuleList()
        cin = 4
        for i, c in enumerate(chans):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(cin, c, 4, 2, 1, bias=i in (0, cfg.depth - 1)))
            if 0 < i < cfg.depth - 1:
                layers.append(nn.InstanceNorm2d(c, affine=True))
            self.down.append(nn.Sequential(*layers))
            cin = c
        self.up = nn.ModuleList()
        for i in reversed(range(1, cfg.depth)):
            cin_up = chans[i] if i == cfg.depth - 1 else 2 * chans[i]
            drop = cfg.dropout if i >= cfg.depth - 3 and i < cfg.depth - 1 else 0.0
            self.up.append(Up(cin_up, chans[i - 1], drop))
        self.out = nn.ConvTranspose2d(2 * chans[0], 3, 4, 2, 1)

    def forward(self, image, mask):
        h = torch.cat([image * 2 - 1, mask], 1)
        skips = []
        for blk in self.down:
            h = blk(h)
            skips.append(h)
        h = skips.pop()
        for up in self.up:
            h = torch.cat([up(h, mask), skips.pop()], 1)
        return (torch.tanh(self.out(F.relu(h))) + 1) / 2


class DomainVerifier(nn.Module):
    """The discriminator of RainNet's optional GAN loss, after its domain verification idea: a conv
    encoder on the image, the features pooled over the foreground and over the background
    separately (masked means) into two domain codes, and the score their cosine similarity — high
    when foreground and background look like one photo. Simplified from the paper: ordinary
    convolutions with masked pooling instead of partial convolutions, and no global critic."""

    def __init__(self, ch: int = 32, depth: int = 4, code: int = 64):
        super().__init__()
        layers, c = [], 3
        for i in range(depth):
            o = ch * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, o, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        layers.append(nn.Conv2d(c, code, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, image, mask):
        f = self.net(image * 2 - 1)
        m = F.interpolate(mask, size=f.shape[-2:], mode="area")
        fg = (f * m).sum((2, 3)) / m.sum((2, 3)).clamp_min(1e-3)
        bg = (f * (1 - m)).sum((2, 3)) / (1 - m).sum((2, 3)).clamp_min(1e-3)
        return F.cosine_similarity(fg, bg, dim=1)
