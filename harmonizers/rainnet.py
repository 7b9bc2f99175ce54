"""RainNet (Ling et al., "Region-aware adaptive instance normalization for image harmonization",
CVPR 2021): the released generator of junleen/RainNet (``models/networks.py`` ``RainNet``).

A pix2pix-style U-Net on the 3-channel composite in [−1, 1]: four outer stages (``model_layer0``…
``3``: 4×4 stride-2 conv, LeakyReLU(0.2) + conv + instance norm without affine parameters), then
``inner_blocks`` nested 8·ngf-channel U-Net blocks (encoder instance norm, decoder RAIN, dropout
0.5 after the decoder norm of every block but the innermost, skip concatenation), three decoder
stages (ReLU + transposed conv + RAIN, concatenation with the encoder feature, channel attention
``x·sigmoid(conv1×1(x))``) and ``ReLU + transposed conv (with bias) + tanh``. The mask is no input
channel: it reaches the network through RAIN and the final blend ``pred·m + x·(1 − m)``
(the official ``processImage``).

RAIN normalises the background with its own statistics and re-styles the foreground with the
*background's* mean and standard deviation, each with learned corrections.

Module names equal the official ones (``harmonizers.convert`` adds the prefix ``net.``). The
defaults are the released 256×256 model (ngf 64, 4 inner blocks, 54.8 M parameters); the small
variants scale ``ngf`` and ``inner_blocks`` only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .net import register


@dataclass(frozen=True)
class RainNetConfig:
    ngf: int = 64
    inner_blocks: int = 4   # nested U-Net blocks at 8·ngf channels (4: 256-px input, 8 stride-2 steps)
    dropout: float = 0.5    # after the decoder norm of the non-innermost nested blocks
    attention: bool = True  # channel attention on the three outer skip concatenations


class RAIN(nn.Module):
    """Region-aware adaptive instance normalisation, the official formulas (``models/normalize.py``)."""

    def __init__(self, c, eps: float = 1e-5):
        super().__init__()
        self.foreground_gamma, self.foreground_beta = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
        self.background_gamma, self.background_beta = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
        self.eps = eps

    def _stats(self, x, m):
        num = m.sum((2, 3), keepdim=True)
        mean = (x * m).sum((2, 3), keepdim=True) / (num + self.eps)
        var = (x * m + (1 - m) * mean - mean).pow(2).sum((2, 3), keepdim=True) / (num + self.eps)
        return mean, (var + self.eps).sqrt()

    def forward(self, x, mask):
        m = F.interpolate(mask.detach(), size=x.shape[-2:], mode="nearest")
        mb, sb = self._stats(x, 1 - m)
        mf, sf = self._stats(x, m)
        p = lambda v: v[None, :, None, None]  # noqa: E731
        bg = ((x - mb) / sb * (1 + p(self.background_gamma)) + p(self.background_beta)) * (1 - m)
        fg = ((x - mf) / sf * sb + mb) * (1 + p(self.foreground_gamma)) + p(self.foreground_beta)
        return fg * m + bg


def _in(c):
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


class UnetBlockCodec(nn.Module):
    """One nested block: ``down`` (LeakyReLU + conv + instance norm) → ``submodule`` → ``up`` (ReLU +
    transposed conv + RAIN (+ dropout)) → ``[x, up]``; the innermost has no norm on its way down."""

    def __init__(self, c, submodule: nn.Module | None, dropout: float):
        super().__init__()
        self.innermost = submodule is None
        if self.innermost:
            self.up = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c, c, 4, 2, 1, bias=False),
                                    nn.ReLU(), nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False))
            self.upnorm = RAIN(c)
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c, c, 4, 2, 1, bias=False))
            self.downnorm = _in(c)
            self.submodule = submodule
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False))
            self.upnorm = RAIN(c)
            self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x, mask):
        # the official in-place LeakyReLU leaves the skip activated: activate once, use it twice
        skip = F.leaky_relu(x, 0.2)
        if self.innermost:
            return torch.cat([skip, self.upnorm(self.up[1:](skip), mask)], 1)
        y = self.submodule(self.downnorm(self.down[1](skip)), mask)
        return torch.cat([skip, self.dropout(self.upnorm(self.up(y), mask))], 1)


def _act_conv(act, cin, cout, transpose=False):
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    return nn.Sequential(act, conv(cin, cout, 4, 2, 1, bias=False))


def _attention(c):
    return nn.Sequential(nn.Conv2d(c, c, 1), nn.Sigmoid())


class RainNet(nn.Module):
    """``forward(image N×3×H×W in [0,1], mask N×1×H×W) -> N×3×H×W`` in [0, 1] (H, W multiples of
    ``multiple_of``): the official ``processImage`` (network inside the mask, input outside)."""

    def __init__(self, cfg: RainNetConfig = RainNetConfig()):
        super().__init__()
        if cfg.inner_blocks < 1:
            raise ValueError(f"inner_blocks must be at least 1, got {cfg.inner_blocks}")
        self.cfg = cfg
        self.multiple_of = 2 ** (4 + cfg.inner_blocks)
        g = cfg.ngf
        self.model_layer0 = nn.Conv2d(3, g, 4, 2, 1, bias=False)
        self.model_layer1, self.model_layer1norm = _act_conv(nn.LeakyReLU(0.2), g, 2 * g), _in(2 * g)
        self.model_layer2, self.model_layer2norm = _act_conv(nn.LeakyReLU(0.2), 2 * g, 4 * g), _in(4 * g)
        self.model_layer3, self.model_layer3norm = _act_conv(nn.LeakyReLU(0.2), 4 * g, 8 * g), _in(8 * g)
        block = None
        for i in range(cfg.inner_blocks):
            block = UnetBlockCodec(8 * g, block, cfg.dropout if i > 0 else 0.0)
        self.unet_block = block
        self.model_layer11, self.model_layer11norm = _act_conv(nn.ReLU(), 16 * g, 4 * g, True), RAIN(4 * g)
        if cfg.attention:
            self.model_layer11att = _attention(8 * g)
        self.model_layer12, self.model_layer12norm = _act_conv(nn.ReLU(), 8 * g, 2 * g, True), RAIN(2 * g)
        if cfg.attention:
            self.model_layer12att = _attention(4 * g)
        self.model_layer13, self.model_layer13norm = _act_conv(nn.ReLU(), 4 * g, g, True), RAIN(g)
        if cfg.attention:
            self.model_layer13att = _attention(2 * g)
        self.model_out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * g, 3, 4, 2, 1), nn.Tanh())

    def _up(self, i, x, skip, mask):
        y = getattr(self, f"model_layer{i}norm")(getattr(self, f"model_layer{i}")(x), mask)
        y = torch.cat([skip, y], 1)
        return getattr(self, f"model_layer{i}att")(y) * y if self.cfg.attention else y

    def generator(self, x, mask):
        """The official ``RainNet.forward``: composite in [−1, 1] → tanh output in [−1, 1]."""
        # each stage's LeakyReLU is computed once and serves both the next conv and the skip: the
        # official in-place LeakyReLU leaves the skips activated
        a0 = F.leaky_relu(self.model_layer0(x), 0.2)
        a1 = F.leaky_relu(self.model_layer1norm(self.model_layer1[1](a0)), 0.2)
        a2 = F.leaky_relu(self.model_layer2norm(self.model_layer2[1](a1)), 0.2)
        x3 = self.model_layer3norm(self.model_layer3[1](a2))
        h = self.unet_block(x3, mask)
        h = self._up(11, h, a2, mask)
        h = self._up(12, h, a1, mask)
        h = self._up(13, h, a0, mask)
        return self.model_out(h)

    def forward(self, image, mask):
        x = image * 2 - 1
        out = self.generator(x, mask) * mask + x * (1 - mask)
        return (out + 1) / 2


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


register("rainnet", {
    "rainnet256": ({}, 256),                             # the published architecture
    "rainnet128": ({"ngf": 32, "inner_blocks": 3}, 128),
    "rainnet64": ({"ngf": 32, "inner_blocks": 2}, 64),   # CPU-sized
}, net=RainNet, config=RainNetConfig)
