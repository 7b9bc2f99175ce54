"""iS2AM without the HRNet backbone: the ``improved_ssam256`` network (iSSAM256) of Sofiiuk et al.,
"Foreground-aware semantic representations for image harmonization" (WACV 2021), as released in
SamsungLabs/image_harmonization (``iharm/model/base/ssam_model.py``, ``iharm/model/modeling/unet.py``).

A U-Net on ``[image, mask]``: ``depth`` encoder levels of two 3×3 conv (+ batch norm from level
``batchnorm_from``) + ReLU, max-pooled between levels; ``depth − 1`` decoder up-blocks (bilinear ×2,
conv + ReLU, concatenation with the skip, two conv + BN + ReLU), the last ``depth − 1 − attend_from``
of them with spatial-separated attention (SSAM: channel-attention gates for background, foreground
(followed by a learning block) and their mix, blended by the blurred mask); then image fusion
``out = a·x + (1 − a)·to_rgb(h)`` with ``a = sigmoid(3·conv(h))``, in the normalised image space.

Module names equal the official ones, so an official state dict loads with the prefix ``net.``
only (``harmonizers.convert``). The defaults are ``improved_ssam256``. One switch of ours, off for
``issam256``: ``output="residual"`` (``out = x + to_rgb(h)`` with ``to_rgb`` zero-initialised, for
the small CPU variants: fusion saturates to ``a = 1`` on a few dozen photos).
Deliberate difference: :func:`init_weights` keeps the 7×7 mask-blurring kernel Gaussian, whereas
the official training script's initialiser overwrites that buffer with random values; a loaded
checkpoint carries its own kernel either way (it is a persistent buffer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.imagenet import IMAGENET_MEAN, IMAGENET_STD

from .net import register


@dataclass(frozen=True)
class ISSAMConfig:
    depth: int = 4
    ch: int = 32
    max_channels: int = 512
    batchnorm_from: int = 2
    attend_from: int = 2
    attention_mid_k: float = 0.5
    image_fusion: bool = True
    # "fusion": the official output; "residual": out = x + y with y zero-initialised (starts at the
    # identity and keeps its gradient; for the CPU variants trained on little data)
    output: str = "fusion"


class ConvBlock(nn.Module):
    """``block = [conv, norm or identity, ReLU]`` (the official ``ConvBlock`` with stride 1)."""

    def __init__(self, cin, cout, norm: bool, bias: bool = True):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=bias),
                                   nn.BatchNorm2d(cout) if norm else nn.Identity(), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.block(x)


class DoubleConv(nn.Module):
    def __init__(self, cin, cout, norm: bool):
        super().__init__()
        self.block = nn.Sequential(ConvBlock(cin, cout, norm), ConvBlock(cout, cout, norm))

    def forward(self, x):
        return self.block(x)


class DownBlock(nn.Module):
    def __init__(self, cin, cout, norm: bool, pool: bool):
        super().__init__()
        self.convs = DoubleConv(cin, cout, norm)
        self.pool = pool

    def forward(self, x):
        y = self.convs(x)
        return y, (F.max_pool2d(y, 2) if self.pool else y)


class ChannelAttention(nn.Module):
    """Gate channels by an MLP on their global average and max (``attention_transform.0/.2``)."""

    def __init__(self, c):
        super().__init__()
        mid = max(c // 16, 8)
        self.attention_transform = nn.Sequential(nn.Linear(2 * c, mid), nn.ReLU(), nn.Linear(mid, c), nn.Sigmoid())

    def forward(self, x):
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return x * self.attention_transform(pooled)[..., None, None]


def gaussian_kernel(k: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """The official ``GaussianSmoothing(1, k, sigma)`` weight: ``1×1×k×k``, summing to 1."""
    x = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    g = torch.exp(-(x / sigma) ** 2 / 2)
    kern = g[:, None] * g[None, :]
    return (kern / kern.sum()).view(1, 1, k, k)


class MaskBlurring(nn.Module):
    """A fixed 7×7 convolution with zero padding 3; the kernel is a persistent buffer ``weight``."""

    def __init__(self, k: int = 7):
        super().__init__()
        self.register_buffer("weight", gaussian_kernel(k))

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)


class SpatialSeparatedAttention(nn.Module):
    def __init__(self, c, mid_k):
        super().__init__()
        mid = int(mid_k * c)
        self.background_gate, self.foreground_gate, self.mix_gate = (ChannelAttention(c) for _ in range(3))
        self.learning_block = nn.Sequential(ConvBlock(c, mid, True, bias=False), ConvBlock(mid, c, True, bias=False))
        self.mask_blurring = MaskBlurring()

    def forward(self, x, mask):
        m = self.mask_blurring(F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True))
        fg = self.learning_block(self.foreground_gate(x))
        return m * (fg + self.mix_gate(x)) + (1 - m) * self.background_gate(x)


class UpBlock(nn.Module):
    def __init__(self, cin_dec, cin_enc, cout, attention: bool, mid_k):
        super().__init__()
        self.upconv = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                    ConvBlock(cin_dec, cout, False))
        self.convs = DoubleConv(cin_enc + cout, cout, True)  # the decoder always normalises
        self.attention = SpatialSeparatedAttention(cin_enc + cout, mid_k) if attention else None

    def forward(self, x, skip, mask):
        x = torch.cat([skip, self.upconv(x)], 1)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.convs(x)


class Encoder(nn.Module):
    """Levels 0 and 1 as ``block0``/``block1``, the rest in ``blocks_connected`` (official names)."""

    def __init__(self, cfg: ISSAMConfig):
        super().__init__()
        self.channels, cin, c, blocks = [], 4, cfg.ch, {}
        for i in range(cfg.depth):
            blocks[f"block{i}"] = DownBlock(cin, c, norm=0 <= cfg.batchnorm_from <= i, pool=i < cfg.depth - 1)
            self.channels.append(c)
            cin, c = c, min(2 * c, cfg.max_channels)
        for name in ("block0", "block1"):
            self.add_module(name, blocks.pop(name))
        self.blocks_connected = nn.ModuleDict(blocks)

    def blocks(self):
        return [getattr(self, f"block{i}") for i in range(min(2, len(self.channels)))] + list(self.blocks_connected.values())

    def forward(self, x):
        outs = []
        for blk in self.blocks():
            y, x = blk(x)
            outs.append(y)
        return outs[::-1]


class Decoder(nn.Module):
    def __init__(self, cfg: ISSAMConfig, channels: list[int]):
        super().__init__()
        chans = list(channels)
        self.up_blocks = nn.ModuleList()
        cin = chans.pop()
        for d in range(cfg.depth - 1):
            cout = chans.pop()
            self.up_blocks.append(UpBlock(cin, cout, cout, attention=0 <= cfg.attend_from <= d,
                                          mid_k=cfg.attention_mid_k))
            cin = cout
        self.fusion = cfg.image_fusion and cfg.output == "fusion"
        if self.fusion:
            self.conv_attention = nn.Conv2d(cin, 1, 1)
        self.to_rgb = nn.Conv2d(cin, 3, 1)

    def forward(self, feats, x, mask):
        h = feats[0]
        for blk, skip in zip(self.up_blocks, feats[1:]):
            h = blk(h, skip, mask)
        y = self.to_rgb(h)
        if self.fusion:
            a = torch.sigmoid(3.0 * self.conv_attention(h))
            return a * x + (1 - a) * y
        return y


def init_weights(model: nn.Module) -> None:
    """The official initialiser, ``XavierGluon(rnd_type='gaussian', magnitude=1)``: conv and linear
    weights ~ N(0, 1/((fan_in + fan_out)/2)), biases 0, batch norm γ = 1, β = 0. The mask-blurring
    kernel stays Gaussian (see the module docstring)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ISSAM(nn.Module):
    """``forward(image N×3×H×W in [0,1], mask N×1×H×W) -> N×3×H×W`` in [0, 1] (H, W multiples of
    ``multiple_of``). The ImageNet normalisation the official model expects happens inside."""

    def __init__(self, cfg: ISSAMConfig = ISSAMConfig()):
        super().__init__()
        if cfg.output not in ("fusion", "residual"):
            raise ValueError(f"output must be fusion or residual, got {cfg.output!r}")
        self.cfg = cfg
        self.multiple_of = 2 ** (cfg.depth - 1)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, self.encoder.channels)
        init_weights(self)
        if cfg.output == "residual":
            nn.init.zeros_(self.decoder.to_rgb.weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image, mask):
        x = (image - self.mean) / self.std
        y = self.decoder(self.encoder(torch.cat([x, mask], 1)), x, mask)
        if self.cfg.output == "residual":
            y = x + y
        return y * self.std + self.mean


register("issam", {
    "issam256": ({}, 256),                       # the published architecture (its checkpoint loads)
    "issam128": ({}, 128),
    "issam64": ({"output": "residual"}, 64),     # CPU-sized: the full-resolution transform does the rest
}, net=ISSAM, config=ISSAMConfig)
