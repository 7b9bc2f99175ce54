"""HRNetV2 with an object-contextual (OCR) head: the backbone of iharm's ``hrnet*_idih256`` models
(Sofiiuk et al., WACV 2021; SamsungLabs/image_harmonization, ``iharm/model/modeling/hrnet_ocr.py``
and ``ocr.py``), written from the architecture with the official module names, so that the released
``backbone.hrnet.*`` tensors load one for one.

Layout (width ``w``; ``small`` halves the blocks per branch and trims the modules per stage):

- stem: two 3×3 stride-2 conv + BN + ReLU (1/4 resolution, 64 channels); the harmonizer adds its
  mask features between them;
- ``layer1``: bottlenecks 64 → 256; then stages 2, 3, 4 with 2, 3, 4 parallel branches of ``w·2^i``
  channels at 1/4 … 1/32, each stage a run of :class:`HighResolutionModule` (basic blocks per branch,
  then every branch fused into every other: 1×1 conv + BN and bilinear upsampling from coarser
  branches, chains of 3×3 stride-2 conv from finer ones); ``transition1..3`` open each new branch;
- the four branches upsampled to 1/4 and concatenated (``15·w`` channels);
- OCR: a 3×3 conv to ``2·ocr`` channels; two soft object regions, the foreground and the background
  (the mask and its complement, each a softmax over positions), gather one feature vector each;
  every pixel attends to the two (query/key/value of ``ocr`` channels) and the context joins its
  own features (``2·ocr`` out).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


def _up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


def _blocks(block, cin: int, c: int, n: int) -> nn.Sequential:
    """``n`` blocks; the first projects ``cin`` with a 1×1 conv + BN when the widths differ."""
    cout = c * block.expansion
    down = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else None
    return nn.Sequential(block(cin, c, 1, down), *(block(cout, c) for _ in range(n - 1)))


def _conv_bn(cin, cout, k, stride, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then each output the sum of every branch brought to its
    resolution and width (``fuse_layers[i][j]`` carries branch j to branch i; ``None`` for i = j)."""

    def __init__(self, channels: list[int], blocks: int):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(_blocks(BasicBlock, c, c, blocks) for c in channels)
        fuse = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:
                    row.append(_conv_bn(channels[j], channels[i], 1, 1, relu=False))
                elif j == i:
                    row.append(None)
                else:  # i - j stride-2 convs; all but the last keep branch j's width and end in ReLU
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(channels[j], channels[i], 3, 2, relu=False)))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse) if n > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [b(x) for b, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = None
            for j, f in enumerate(row):  # summed in branch order, as the official module does
                t = xs[j] if j == i else f(xs[j]) if j < i else _up(f(xs[j]), xs[i])
                y = t if y is None else y + t
            out.append(self.relu(y))
        return out


def _transition(before: list[int], after: list[int]) -> nn.ModuleList:
    """Carry a stage's branches to the next: a 3×3 conv where a width changes (``None`` where it does
    not), and for each new branch a chain of stride-2 convs from the coarsest existing one."""
    layers = []
    for i, c in enumerate(after):
        if i < len(before):
            layers.append(_conv_bn(before[i], c, 3, 1, relu=True) if before[i] != c else None)
        else:
            k = i + 1 - len(before)
            steps = [_conv_bn(before[-1], c if s == k - 1 else before[-1], 3, 2, relu=True) for s in range(k)]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class SpatialGather(nn.Module):
    """One feature vector per soft region: ``feats`` averaged under each region's softmax over positions
    (``N×C×K×1`` for ``K`` regions)."""

    def forward(self, feats, regions):
        p = F.softmax(regions.flatten(2), dim=2)                      # N×K×HW
        return torch.bmm(p, feats.flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(3)


class ObjectAttentionBlock2D(nn.Module):
    """Each pixel attends to the region vectors: scaled dot product of ``key`` channels, the result
    projected back to the input width."""

    def __init__(self, c: int, key: int):
        super().__init__()
        self.key_channels = key
        self.f_pixel = nn.Sequential(nn.Conv2d(c, key, 1, bias=False), _bn_relu(key),
                                     nn.Conv2d(key, key, 1, bias=False), _bn_relu(key))
        self.f_object = nn.Sequential(nn.Conv2d(c, key, 1, bias=False), _bn_relu(key),
                                      nn.Conv2d(key, key, 1, bias=False), _bn_relu(key))
        self.f_down = nn.Sequential(nn.Conv2d(c, key, 1, bias=False), _bn_relu(key))
        self.f_up = nn.Sequential(nn.Conv2d(key, c, 1, bias=False), _bn_relu(c))

    def forward(self, x, proxy):
        n, _, h, w = x.shape
        q = self.f_pixel(x).flatten(2).transpose(1, 2)                # N×HW×K
        k = self.f_object(proxy).flatten(2)                           # N×K×R
        v = self.f_down(proxy).flatten(2).transpose(1, 2)             # N×R×K
        attn = F.softmax(torch.bmm(q, k) * self.key_channels ** -0.5, dim=-1)
        ctx = torch.bmm(attn, v).transpose(1, 2).reshape(n, self.key_channels, h, w)
        return self.f_up(ctx)


class SpatialOCR(nn.Module):
    def __init__(self, c: int, key: int, dropout: float = 0.05):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock2D(c, key)
        self.conv_bn_dropout = nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), _bn_relu(c), nn.Dropout2d(dropout))

    def forward(self, feats, proxy):
        return self.conv_bn_dropout(torch.cat([self.object_context_block(feats, proxy), feats], 1))


class HighResolutionNet(nn.Module):
    """``forward(x, regions, stem_extra)`` → the OCR features (``2·ocr`` channels at 1/4), or the
    concatenated branches (``15·width``) when ``ocr`` is 0. ``regions``: ``N×2×H×W`` (mask, 1 − mask);
    ``stem_extra`` is added after the first stem conv (the mask features)."""

    def __init__(self, width: int = 18, ocr: int = 64, small: bool = False):
        super().__init__()
        nb = 2 if small else 4
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _blocks(Bottleneck, 64, 64, nb)
        prev = [256]
        modules = {2: 1, 3: 3 if small else 4, 4: 2 if small else 3}
        for s in (2, 3, 4):
            chans = [width * 2 ** i for i in range(s)]
            setattr(self, f"transition{s - 1}", _transition(prev, chans))
            setattr(self, f"stage{s}", nn.Sequential(*(HighResolutionModule(chans, nb) for _ in range(modules[s]))))
            prev = chans
        self.out_channels = sum(prev)
        self.ocr = ocr
        if ocr > 0:
            self.conv3x3_ocr = nn.Sequential(nn.Conv2d(sum(prev), 2 * ocr, 3, 1, 1), nn.BatchNorm2d(2 * ocr),
                                             nn.ReLU(inplace=True))
            self.ocr_gather_head = SpatialGather()
            self.ocr_distri_head = SpatialOCR(2 * ocr, ocr)
            self.out_channels = 2 * ocr

    def branches(self, x, stem_extra=None) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        if stem_extra is not None:
            x = x + stem_extra
        xs = [self.layer1(self.relu(self.bn2(self.conv2(x))))]
        for s in (2, 3, 4):
            trans = getattr(self, f"transition{s - 1}")
            xs = [xs[i] if t is None else t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        return xs

    def forward(self, x, regions, stem_extra=None):
        xs = self.branches(x, stem_extra)
        feats = torch.cat([xs[0], *(_up(y, xs[0]) for y in xs[1:])], 1)
        if self.ocr <= 0:
            return feats
        feats = self.conv3x3_ocr(feats)
        regions = F.interpolate(regions, size=feats.shape[-2:], mode="bilinear", align_corners=True)
        return self.ocr_distri_head(feats, self.ocr_gather_head(feats, regions))
