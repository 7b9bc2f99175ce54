"""Colour spaces, one implementation for NumPy arrays and torch tensors: sRGB ↔ linear light,
sRGB ↔ CIELAB (D65), luma.

Every function takes an array or a tensor with its three colour channels on axis ``dim`` (default
last, ``(..., 3)``; ``dim=1`` for ``N×3×H×W``) and returns the same kind, layout, dtype and device.
CIELAB has L in [0, 100]; ``scale`` multiplies L, a and b (GCT works in CIELAB / 100). NumPy inputs
are computed in float64 as given; tensors in their own dtype, with the matrices formed in that dtype
(white point folded into the matrix), and with the powers' bases kept off zero so that gradients
stay finite wherever the other branch of a piecewise curve is taken.
"""
from __future__ import annotations

import sys

import numpy as np

_M_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
_M_XYZ2RGB = np.linalg.inv(_M_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_D = 6 / 29


# torch.linalg.inv of _M_RGB2XYZ as torch computes it in float32 and in float64, written out: a
# tensor gets the inverse in its own precision with no linear solve at run time (an ONNX export's
# graph has none), and this module imports no torch (the ONNX predict path runs without it)
_INV_TORCH = {
    "float32": [[3.240454912185669, -1.5371389389038086, -0.4985315501689911],
                [-0.9692663550376892, 1.8760108947753906, 0.04155607894062996],
                [0.05564340576529503, -0.20402583479881287, 1.0572251081466675]],
    "float64": [[3.2404548360214087, -1.5371388501025751, -0.49853154686848083],
                [-0.9692663898756538, 1.876010928842491, 0.04155608234667354],
                [0.055643419604213644, -0.20402585426769812, 1.0572251624579287]],
}


def _matrices(x) -> tuple:
    """(RGB → XYZ, the white it is divided by after, XYZ → RGB, white) for ``x``: for a tensor in
    its dtype and on its device, white folded into the first matrix (made on each call: a 3×3 costs
    nothing, and a cache would keep tensors made under inference mode or inside a traced export);
    for NumPy in float64, divided after."""
    if not _is_torch(x):
        return _M_RGB2XYZ, _WHITE, _M_XYZ2RGB, _WHITE
    import torch
    dt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    m = torch.tensor(_M_RGB2XYZ.tolist(), dtype=dt)
    white = torch.tensor(_WHITE.tolist(), dtype=dt)
    inv = torch.tensor(_INV_TORCH[str(dt).removeprefix("torch.")], dtype=dt)
    return tuple(t.to(x.device, x.dtype) for t in (m / white[:, None], torch.ones(3, dtype=dt), inv, white))


def _is_torch(x) -> bool:
    """Whether ``x`` is a tensor (asked without importing torch: an array's type is not torch's)."""
    return type(x).__module__.startswith("torch")


def _xp(x):
    """The array library of ``x``: torch (already imported, since ``x`` is a tensor) or numpy."""
    return sys.modules["torch"] if _is_torch(x) else np


def _lib(x):
    """(torch or numpy, the matrices for ``x``)."""
    return _xp(x), _matrices(x)


def _base(x):
    """A power's base: clipped at 0 (NumPy) or at 1e-8 (torch: finite gradients)."""
    return x.clamp_min(1e-8) if _is_torch(x) else np.clip(x, 0, None)


def _channel(x, i: int, dim: int):
    return x.select(dim, i) if _is_torch(x) else np.take(x, i, axis=dim)


def _along(x, dim: int):
    """``x``'s channel axis as a broadcastable shape for a length-3 vector."""
    shape = [1] * x.ndim
    shape[dim] = 3
    return shape


def _mix(m, x, dim: int):
    """The 3×3 matrix ``m`` applied to the colours of ``x`` along ``dim``."""
    if not _is_torch(x):
        return x @ m.T if dim in (-1, x.ndim - 1) else np.moveaxis(np.moveaxis(x, dim, -1) @ m.T, -1, dim)
    axes = "abcdefgh"[:x.ndim]
    d = dim % x.ndim
    return _xp(x).einsum(f"z{axes[d]},{axes}->{axes[:d]}z{axes[d + 1:]}", m, x)


def srgb_to_linear(x):
    return _xp(x).where(x <= 0.04045, x / 12.92, _base((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    x = x.clamp_min(0) if _is_torch(x) else np.clip(x, 0, None)
    return _xp(x).where(x <= 0.0031308, x * 12.92, 1.055 * _base(x) ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb, scale: float = 1.0, dim: int = -1):
    """sRGB (D65) in [0, 1] → CIELAB (L in [0, 100 · scale])."""
    xp, (to_xyz, after, _, _) = _lib(rgb)
    xyz = _mix(to_xyz, srgb_to_linear(rgb), dim) / after.reshape(_along(rgb, dim))
    f = xp.where(xyz > _D ** 3, _base(xyz) ** (1 / 3) if _is_torch(xyz) else np.cbrt(xyz), xyz / (3 * _D ** 2) + 4 / 29)
    fx, fy, fz = (_channel(f, i, dim) for i in range(3))
    return xp.stack([116 * scale * fy - 16 * scale, 500 * scale * (fx - fy), 200 * scale * (fy - fz)], dim)


def lab_to_linear(lab, scale: float = 1.0, dim: int = -1):
    """CIELAB (as :func:`rgb_to_lab` with the same ``scale``) → linear-light RGB, unclipped."""
    xp, (_, _, to_rgb, white) = _lib(lab)
    fy = (_channel(lab, 0, dim) + 16 * scale) / (116 * scale)
    f = xp.stack([fy + _channel(lab, 1, dim) / (500 * scale), fy, fy - _channel(lab, 2, dim) / (200 * scale)], dim)
    return _mix(to_rgb, xp.where(f > _D, f ** 3, 3 * _D ** 2 * (f - 4 / 29)) * white.reshape(_along(lab, dim)), dim)


def lab_to_rgb(lab, scale: float = 1.0, dim: int = -1):
    """CIELAB → sRGB (negative light clipped, out-of-gamut colours above 1 kept)."""
    return linear_to_srgb(lab_to_linear(lab, scale, dim))


def luma(x):
    return x[..., :1] * 0.2126 + x[..., 1:2] * 0.7152 + x[..., 2:3] * 0.0722
