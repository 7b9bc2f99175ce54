"""Full-resolution inference: a harmonizer runs at its training size, and its change is carried to
the input's resolution (:func:`harmonize`, or its two stages :func:`network_pass` and
:func:`to_full_resolution` for callers that time them apart). ``router.fast`` holds the numpy twin.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import HarmonizerNet


def _poly_features(x: torch.Tensor) -> torch.Tensor:
    """Second-order colour features of ``P×3`` pixels: 1, r, g, b, r², g², b², rg, rb, gb."""
    r, g, b = x.unbind(-1)
    return torch.stack([torch.ones_like(r), r, g, b, r * r, g * g, b * b, r * g, r * b, g * b], -1)


def fit_colour_transform(src: torch.Tensor, dst: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Least-squares second-order colour map ``src → dst`` (``P×3`` each) → ``10×3`` coefficients,
    with a small ridge towards the identity so that few pixels cannot blow it up."""
    a = _poly_features(src.double())
    eye = torch.zeros(10, 3, dtype=torch.float64, device=src.device)
    eye[1, 0] = eye[2, 1] = eye[3, 2] = 1.0
    lhs = a.T @ a + ridge * len(a) * torch.eye(10, dtype=torch.float64, device=src.device)
    rhs = a.T @ dst.double() + ridge * len(a) * eye
    return torch.linalg.solve(lhs, rhs).float()


def apply_colour_transform(image: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Apply ``10×3`` coefficients to ``3×H×W``."""
    px = image.permute(1, 2, 0).reshape(-1, 3)
    return (_poly_features(px) @ coef).clamp(0, 1).T.reshape(image.shape)


def _resize(x, size):
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _bbox(mask: torch.Tensor) -> tuple[slice, slice]:
    """Rows and columns of a ``H×W`` mask's non-zero region (the whole image when it is empty)."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    if len(rows) == 0:
        return slice(0, mask.shape[0]), slice(0, mask.shape[1])
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _upsample_window(x: torch.Tensor, size: tuple[int, int], ys: slice, xs: slice) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)[..., ys, xs]`` without
    computing the rest of the full-size image (bilinear sampling at the window's pixel centres)."""
    h, w = size
    gy = (torch.arange(ys.start, ys.stop, device=x.device, dtype=x.dtype) + 0.5) / h * 2 - 1
    gx = (torch.arange(xs.start, xs.stop, device=x.device, dtype=x.dtype) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.inference_mode()
def harmonize(model: HarmonizerNet, image: torch.Tensor, mask: torch.Tensor, method: str = "transform",
              crop: bool = True, strength: float = 1.0) -> torch.Tensor:
    """Harmonize one ``3×H×W`` image with its ``1×H×W`` mask at its own resolution.

    The network runs at its training size (``model.size`` square). ``method``:

    - ``"transform"`` (default): fit a second-order colour transform from the low-resolution input
      foreground to the network's output, apply it to the full-resolution foreground, and add the
      upsampled remainder that the transform does not explain (local changes). Full-resolution
      texture and edges come from the input, so nothing is blurred.
    - ``"upsample"``: add the upsampled low-resolution change ``G(x↓) − x↓`` to the input.
    - ``"full"``: run the network at full resolution (slow, and off its training scale).

    ``strength`` (checked by the caller: :func:`common.io.check_strength`) scales the network's
    change before anything else: its output ``y`` becomes ``x + strength·(y − x)`` (0 returns the
    input, 1 the network's result, up to 2 or so pushes further); the foreground only, as always.

    The background is returned unchanged. With ``crop`` (default) the full-resolution work of
    ``transform`` and ``upsample`` is done on the mask's bounding box only (same result, less
    work for small foregrounds). The two stages are :func:`network_pass` and
    :func:`to_full_resolution`, for callers that time them apart.
    """
    if method not in ("transform", "upsample", "full"):
        raise ValueError(f"unknown method {method!r}; use transform, upsample or full")
    small = network_pass(model, image, mask, strength, full=method == "full")
    return to_full_resolution(small, method, crop)


@torch.inference_mode()
def network_pass(model: HarmonizerNet, image: torch.Tensor, mask: torch.Tensor, strength: float = 1.0,
                 full: bool = False) -> dict[str, torch.Tensor]:
    """The network on one ``3×H×W`` image and ``1×H×W`` mask, at its training size (or, with
    ``full``, at the image's): the batched full-size input and mask ``x``, ``m``, the network's
    input, mask and output ``xs``, ``ms``, ``ys`` (its change scaled by ``strength``)."""
    dev = next(model.parameters()).device
    x, m = image[None].to(dev).float(), mask[None].to(dev).float()
    xs, ms = (x, m) if full else (_resize(x, (model.size,) * 2), _resize(m, (model.size,) * 2).clamp(0, 1))
    ys = model(xs, ms)
    ys = xs + strength * (ys - xs) if strength != 1.0 else ys
    return {"x": x, "m": m, "xs": xs, "ms": ms, "ys": ys, "full": full}


@torch.inference_mode()
def to_full_resolution(small: dict, method: str = "transform", crop: bool = True) -> torch.Tensor:
    """:func:`network_pass`'s result carried to the input's resolution → ``3×H×W`` on the CPU."""
    x, m = small["x"], small["m"]
    if small["full"]:
        return (m * small["ys"].clamp(0, 1) + (1 - m) * x)[0].cpu()
    return _to_full_resolution(x, m, small["xs"], small["ms"], small["ys"], method, crop).cpu()


def _to_full_resolution(x, m, xs, ms, ys, method: str, crop: bool) -> torch.Tensor:
    """The low-resolution result ``ys`` of input ``xs`` (mask ``ms``) carried to the full-resolution
    input ``x`` (mask ``m``): a fitted colour transform plus the upsampled remainder (``transform``),
    or the upsampled change alone (``upsample``); on the mask's bounding box with ``crop``."""
    h, w = x.shape[-2:]
    if method == "upsample":
        change = ys - xs
    else:
        fg = ms[0, 0] > 0.5
        if fg.sum() < 16:
            fg = ms[0, 0] > 0
        src, dst = xs[0].permute(1, 2, 0)[fg], ys[0].permute(1, 2, 0)[fg]
        coef = fit_colour_transform(src, dst)
        change = (ys[0] - apply_colour_transform(xs[0], coef))[None] * ms  # what the global map misses
    wy, wx = _bbox(m[0, 0] > 0) if crop else (slice(0, h), slice(0, w))
    xw, mw = x[..., wy, wx], m[..., wy, wx]
    base = apply_colour_transform(xw[0], coef)[None] if method == "transform" else xw
    out = base + _upsample_window(change, (h, w), wy, wx)
    result = x[0].clone()
    result[:, wy, wx] = (mw * out.clamp(0, 1) + (1 - mw) * xw)[0]
    return result
