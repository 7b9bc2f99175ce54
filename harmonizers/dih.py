"""DIH / iDIH and their HRNet-backboned versions: ``dih256``, ``improved_dih256`` (iDIH256) and
``hrnet18_idih256`` and its siblings of Sofiiuk et al., "Foreground-aware semantic representations
for image harmonization" (WACV 2021), as released in SamsungLabs/image_harmonization
(``iharm/model/base/dih_model.py``, ``modeling/conv_autoencoder.py``, ``backboned/hrnet.py``).

**DIH**: an encoder of ``depth`` 4×4 stride-2 conv + (BN from block ``batchnorm_from``) + ELU blocks
on ``[image, mask]`` (the last without padding, down to 1×1 at 256 px), a decoder of ``depth`` 4×4
stride-2 transposed conv + BN + ELU blocks, each but the last followed by the encoder output of its
size (added), then ``to_rgb`` (1×1); iDIH adds image fusion ``out = a·x + (1 − a)·to_rgb(h)`` with
``a = sigmoid(3·conv(h))``. All in the ImageNet-normalised image space; the normalisation happens
inside. Inputs: sides multiples of ``2^depth`` and at least ``2^(depth+1)`` (256 for depth 7).

**HRNet + iDIH** (:class:`HRNetDIH`): the mask, through a 3×3 stride-2 conv scaled by a learnable
``|s|`` (initial 0.1), joins the backbone's stem; the backbone (:mod:`harmonizers.hrnet`) reads the
image and the two regions (mask, 1 − mask) and gives its OCR features at 1/4 resolution, which join
the encoder before block 2 (``mode`` ``cat``: concatenated; ``catc``: concatenated then a 1×1 conv;
``sum``: a 1×1 conv then added). With ``pyramid_channels`` > 0 the backbone's features become a
pyramid of 4 maps joining blocks 2–5 (``hrnet18_v2p_idih256``). ``downsize`` runs the backbone at half
size (the 512-px models), its features then joining block 3.

Module names equal the official ones (``encoder.block0``, ``model.decoder.deconv_blocks.3``,
``backbone.hrnet.stage4.2.fuse_layers.3.0.1``, ``mask_conv.1.scale``, ...), so a released state dict
loads under our ``net.`` prefix (``harmonizers.convert``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.imagenet import IMAGENET_MEAN, IMAGENET_STD

from .hrnet import HighResolutionNet
from .net import register

MODES = ("cat", "catc", "sum")


@dataclass(frozen=True)
class DIHConfig:
    depth: int = 7
    ch: int = 64
    max_channels: int = 512
    batchnorm_from: int = 2      # 0: the original DIH (BN everywhere)
    image_fusion: bool = True    # False: the original DIH


@dataclass(frozen=True)
class HRNetDIHConfig(DIHConfig):
    width: int = 18              # HRNet branch width: 18 or 32 as released
    small: bool = False          # HRNet18s: 2 blocks per branch, fewer modules per stage
    ocr: int = 64                # OCR key width (features of 2·ocr channels); 0: no OCR head
    pyramid_channels: int = -1   # > 0: a 4-level feature pyramid of this width (the "v2p" models)
    mode: str = "cat"
    mask_fusion: str = "sum"     # sum: the mask joins the backbone's stem; none: it does not
    downsize: bool = False       # the backbone at half size (the 512-px models)


class ConvBlock(nn.Module):
    """``block = [conv k×k, BN or identity, ELU]`` (the official ``ConvBlock``)."""

    def __init__(self, cin, cout, k=4, stride=2, padding=1, norm: bool = True):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding),
                                   nn.BatchNorm2d(cout) if norm else nn.Identity(), nn.ELU())

    def forward(self, x):
        return self.block(x)


class DeconvBlock(nn.Module):
    def __init__(self, cin, cout, padding):
        super().__init__()
        self.block = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, padding), nn.BatchNorm2d(cout), nn.ELU())

    def forward(self, x):
        return self.block(x)


class FeaturesConnector(nn.Module):
    """How backbone features join an encoder block's input (``cat``, ``catc``, ``sum``)."""

    def __init__(self, mode: str, cin: int, cfeat: int):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        if mode == "catc":
            self.reduce_conv = nn.Conv2d(cin + cfeat, cin, 1)
        elif mode == "sum":
            self.reduce_conv = nn.Conv2d(cfeat, cin, 1)
        self.out_channels = cin + cfeat if mode == "cat" else cin

    def forward(self, x, feats):
        if self.mode == "sum":
            return self.reduce_conv(feats) + x
        y = torch.cat((x, feats), 1)
        return self.reduce_conv(y) if self.mode == "catc" else y


class Encoder(nn.Module):
    def __init__(self, cfg: DIHConfig, feature_channels=(), join_from: int = -1):
        super().__init__()
        bf = cfg.batchnorm_from
        c = cfg.ch
        self.block0 = ConvBlock(4, c, norm=bf == 0)
        self.block1 = ConvBlock(c, c, norm=0 <= bf <= 1)
        self.channels = [c, c]
        self.blocks_connected = nn.ModuleDict()
        self.connectors = nn.ModuleDict()
        feats = list(feature_channels)
        cin = c
        for i in range(2, cfg.depth):
            if i % 2 == 0:  # the width doubles on even blocks
                cin, c = c, min(2 * c, cfg.max_channels)
            else:
                cin = c
            if 0 <= join_from <= i and feats:
                conn = FeaturesConnector(cfg.mode, cin, feats.pop(0))
                self.connectors[f"connector{i}"] = conn
                cin = conn.out_channels
            self.blocks_connected[f"block{i}"] = ConvBlock(cin, c, padding=int(i < cfg.depth - 1),
                                                           norm=0 <= bf <= i)
            self.channels.append(c)

    def forward(self, x, feats=()):
        feats = list(feats)
        outs = [self.block0(x)]
        outs.append(self.block1(outs[-1]))
        for name, block in self.blocks_connected.items():
            y, key = outs[-1], "connector" + name[len("block"):]
            if key in self.connectors:
                y = self.connectors[key](y, feats.pop(0))
            outs.append(block(y))
        return outs[::-1]


class Decoder(nn.Module):
    def __init__(self, cfg: DIHConfig, channels: list[int]):
        super().__init__()
        chans = list(channels)
        cin = chans.pop()
        self.deconv_blocks = nn.ModuleList()
        for d in range(cfg.depth):
            cout = chans.pop() if chans else cin // 2
            self.deconv_blocks.append(DeconvBlock(cin, cout, padding=0 if d == 0 else 1))
            cin = cout
        self.image_fusion = cfg.image_fusion
        if cfg.image_fusion:
            self.conv_attention = nn.Conv2d(cin, 1, 1)
        self.to_rgb = nn.Conv2d(cin, 3, 1)

    def forward(self, outs, x):
        h = outs[0]
        for block, skip in zip(self.deconv_blocks[:-1], outs[1:]):
            h = block(h) + skip
        h = self.deconv_blocks[-1](h)
        if self.image_fusion:
            a = torch.sigmoid(3.0 * self.conv_attention(h))
            return a * x + (1.0 - a) * self.to_rgb(h)
        return self.to_rgb(h)


def init_weights(model: nn.Module, magnitude: float = 2.0) -> None:
    """The official training scripts' initialiser, ``XavierGluon(rnd_type='gaussian', magnitude=2)``:
    every conv, transposed conv and linear weight ~ N(0, magnitude / ((fan_in + fan_out)/2)), biases 0,
    BN γ = 1, β = 0 (the mask scale keeps its 0.1)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            nn.init.normal_(m.weight, 0.0, math.sqrt(magnitude / ((fan_in + fan_out) / 2)))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _Normalised(nn.Module):
    """ImageNet normalisation around the official network, and the size rule."""

    def __init__(self, depth: int):
        super().__init__()
        self.multiple_of = 2 ** depth
        self.min_side = 2 ** (depth + 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _check(self, image):
        h, w = image.shape[-2:]
        if min(h, w) < self.min_side:
            raise ValueError(f"{type(self).__name__} needs sides of at least {self.min_side} px, got {h}×{w}")


class DIH(_Normalised):
    """``forward(image N×3×H×W in [0, 1], mask N×1×H×W) -> N×3×H×W``; :meth:`harmonize` works in the
    normalised space and takes backbone features (what :class:`HRNetDIH` calls)."""

    def __init__(self, cfg: DIHConfig = DIHConfig(), feature_channels=(), join_from: int = -1):
        super().__init__(cfg.depth)
        self.cfg = cfg
        self.encoder = Encoder(cfg, feature_channels, join_from)
        self.decoder = Decoder(cfg, self.encoder.channels)
        init_weights(self)

    def harmonize(self, x, mask, feats=()):
        return self.decoder(self.encoder(torch.cat((x, mask), 1), feats), x)

    def forward(self, image, mask):
        self._check(image)
        return self.harmonize((image - self.mean) / self.std, mask) * self.std + self.mean


class ScaleLayer(nn.Module):
    def __init__(self, init: float = 0.1):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), init))

    def forward(self, x):
        return x * self.scale.abs()


class MaxPoolDownSize(nn.Module):
    """The pyramid of the ``v2p`` models: a 1×1 reduction, then ``depth`` 3×3 blocks, each level
    max-pooled ×2 from the previous."""

    def __init__(self, cin: int, mid: int, cout: int, depth: int):
        super().__init__()
        self.reduce_conv = ConvBlock(cin, mid, k=1, stride=1, padding=0)
        self.convs = nn.ModuleList(ConvBlock(mid, cout, k=3, stride=1, padding=1) for _ in range(depth))
        self.pool2d = nn.MaxPool2d(2)

    def forward(self, x):
        y, outs = self.reduce_conv(x), []
        for i, conv in enumerate(self.convs):
            y = y if i == 0 else self.pool2d(y)
            outs.append(conv(y))
        return outs


class HRNetBackbone(nn.Module):
    def __init__(self, cfg: HRNetDIHConfig, pyramid_depth: int):
        super().__init__()
        self.hrnet = HighResolutionNet(cfg.width, cfg.ocr, cfg.small)
        c = self.hrnet.out_channels
        if cfg.pyramid_channels > 0:
            self.downsize = MaxPoolDownSize(c, cfg.pyramid_channels, cfg.pyramid_channels, pyramid_depth)
            self.out_channels = [cfg.pyramid_channels] * pyramid_depth
        else:
            self.downsize = None
            self.out_channels = [c]

    def forward(self, x, regions, stem_extra):
        y = self.hrnet(x, regions, stem_extra)
        return self.downsize(y) if self.downsize is not None else [y]


class HRNetDIH(_Normalised):
    """HRNet (+ OCR) features joining an iDIH encoder: ``backbone.hrnet``, ``model`` (the DIH) and
    ``mask_conv``, in the official order. ``forward`` as :class:`DIH`."""

    def __init__(self, cfg: HRNetDIHConfig = HRNetDIHConfig()):
        super().__init__(cfg.depth)
        if cfg.mask_fusion not in ("sum", "none"):
            raise ValueError(f"mask_fusion must be sum or none, got {cfg.mask_fusion!r}")
        self.cfg = cfg
        self.backbone = HRNetBackbone(cfg, min(cfg.depth - (3 if cfg.downsize else 2), 4))
        self.model = DIH(cfg, self.backbone.out_channels, join_from=3 if cfg.downsize else 2)
        if cfg.mask_fusion == "sum":
            self.mask_conv = nn.Sequential(nn.Conv2d(1, 64, 3, 2, 1), ScaleLayer(0.1))
        init_weights(self)

    def features(self, x, mask) -> list[torch.Tensor]:
        """The backbone's features for normalised ``x``."""
        regions = torch.cat((mask, 1.0 - mask), 1)
        if self.cfg.downsize:
            x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)
            regions = F.interpolate(regions, size=x.shape[-2:], mode="bilinear", align_corners=True)
        stem = self.mask_conv(regions[:, :1]) if self.cfg.mask_fusion == "sum" else None
        return self.backbone(x, regions, stem)

    def forward(self, image, mask):
        self._check(image)
        x = (image - self.mean) / self.std
        return self.model.harmonize(x, mask, self.features(x, mask)) * self.std + self.mean

    def slow_parameters(self) -> list[nn.Parameter]:
        """The HRNet's own parameters, its OCR head aside: what the official recipe trains at 0.1×."""
        return [p for n, p in self.backbone.hrnet.named_parameters() if not n.startswith(("conv3x3_ocr", "ocr_"))]

    @torch.no_grad()
    def load_backbone(self, sd: dict) -> int:
        """Load ImageNet HRNet weights (HRNet-Image-Classification's ``hrnetv2_w18_imagenet_pretrained``
        layout, a ``model.`` prefix dropped as the official loader does) into ``backbone.hrnet``: every
        tensor whose name and shape match; returns how many did."""
        own = self.backbone.hrnet.state_dict()
        hits = 0
        for k, v in sd.items():
            k = k.replace("last_layer", "aux_head").replace("model.", "")
            if k in own and tuple(own[k].shape) == tuple(v.shape):
                own[k].copy_(v)
                hits += 1
        return hits


register("dih", {   # the published DIH and iDIH architectures (harmonizers.convert loads their checkpoints)
    "dih256": ({"batchnorm_from": 0, "image_fusion": False}, 256),
    "idih256": ({}, 256),
}, net=DIH, config=DIHConfig)
register("hrnet", {  # HRNet + iDIH, the published variants
    "hrnet18_idih256": ({}, 256),
    "hrnet18s_idih256": ({"small": True}, 256),
    "hrnet32_idih256": ({"width": 32}, 256),
    "hrnet18_v2p_idih256": ({"pyramid_channels": 256}, 256),
}, net=HRNetDIH, config=HRNetDIHConfig)
