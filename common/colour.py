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

import functools

import numpy as np
import torch

_M_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
_WHITE = np.array([0.95047, 1.0, 1.08883])
_D = 6 / 29


def _torch_matrices(dtype) -> tuple:
    m = torch.tensor(_M_RGB2XYZ.tolist(), dtype=dtype)
    white = torch.tensor(_WHITE.tolist(), dtype=dtype)
    return m / white[:, None], torch.ones(3, dtype=dtype), torch.linalg.inv(m), white


# made once at import, in the dtype they serve (not inside a traced export or under inference mode)
_TORCH = {dt: _torch_matrices(dt) for dt in (torch.float32, torch.float64)}


@functools.lru_cache(maxsize=16)
def _matrices(dtype, device) -> tuple:
    """(RGB → XYZ, the white it is divided by after, XYZ → RGB, white) for tensors of a dtype and
    device (white folded into the first matrix), or for NumPy (``dtype`` None: divided after)."""
    if dtype is None:
        return _M_RGB2XYZ, _WHITE, np.linalg.inv(_M_RGB2XYZ), _WHITE
    with torch.inference_mode(False):  # cached: usable by autograd even when first asked for under inference mode
        return tuple(t.to(device, dtype) for t in _TORCH.get(dtype, _TORCH[torch.float32]))


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


def _lib(x):
    """(torch or numpy, the matrices for ``x``)."""
    return (torch, _matrices(x.dtype, x.device)) if _is_torch(x) else (np, _matrices(None, None))


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
    return torch.einsum(f"z{axes[d]},{axes}->{axes[:d]}z{axes[d + 1:]}", m, x)


def srgb_to_linear(x):
    xp = torch if _is_torch(x) else np
    return xp.where(x <= 0.04045, x / 12.92, _base((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    xp = torch if _is_torch(x) else np
    x = x.clamp_min(0) if _is_torch(x) else np.clip(x, 0, None)
    return xp.where(x <= 0.0031308, x * 12.92, 1.055 * _base(x) ** (1 / 2.4) - 0.055)


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
