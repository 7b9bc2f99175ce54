"""3D colour look-up tables: identity, trilinear application, ``.cube`` files.

A LUT is a tensor ``3×D×D×D`` indexed ``[c, b, g, r]`` (red fastest), so that ``grid_sample`` on a
5-D input with the grid's x, y, z = r, g, b performs trilinear interpolation. A batch of LUTs is
``N×3×D×D×D``; a bank ``L×3×D×D×D``. Default ``D = 17`` (16 bins per channel, as in the paper).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.io import InputError, write_text

DEFAULT_DIM = 17
__all__ = ["DEFAULT_DIM", "identity_lut", "lut_from_function", "apply_lut", "combine", "lut_regularisers",
           "read_cube", "write_cube", "apply_lut_u8"]


def identity_lut(dim: int = DEFAULT_DIM, dtype=torch.float32, device=None) -> torch.Tensor:
    """The LUT that maps every colour to itself: ``3×D×D×D``, ``lut[0, b, g, r] = r/(D−1)``."""
    v = torch.linspace(0, 1, dim, dtype=dtype, device=device)
    b, g, r = torch.meshgrid(v, v, v, indexing="ij")
    return torch.stack([r, g, b])


def lut_from_function(fn, dim: int = DEFAULT_DIM) -> torch.Tensor:
    """Sample a colour function ``fn(rgb: (..., 3) in [0,1]) -> (..., 3)`` on the lattice."""
    ident = identity_lut(dim)
    rgb = ident.permute(1, 2, 3, 0)  # (D, D, D, 3) indexed [b, g, r]
    out = np.asarray(fn(rgb.double().numpy()), dtype=np.float32)
    return torch.from_numpy(out).permute(3, 0, 1, 2).contiguous()


def _check(image: torch.Tensor, lut: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be N×3×H×W, got {tuple(image.shape)}")
    if lut.ndim not in (4, 5) or lut.shape[-4] != 3 or not (lut.shape[-1] == lut.shape[-2] == lut.shape[-3]):
        raise ValueError(f"lut must be 3×D×D×D or N×3×D×D×D, got {tuple(lut.shape)}")
    if lut.ndim == 5 and lut.shape[0] != image.shape[0]:
        raise ValueError(f"{lut.shape[0]} LUTs for {image.shape[0]} images")


def apply_lut(image: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Trilinear LUT application: ``image`` ``N×3×H×W`` in [0, 1], ``lut`` one ``3×D×D×D`` for all
    or one per image ``N×3×D×D×D``. Differentiable in both; inputs outside [0, 1] are clamped.
    """
    _check(image, lut)
    n, _, h, w = image.shape
    luts = lut.expand(n, *lut.shape) if lut.ndim == 4 else lut  # (N, 3, D, D, D)
    grid = image.clamp(0, 1).permute(0, 2, 3, 1).unsqueeze(1) * 2 - 1  # (N, 1, H, W, 3) = (r, g, b)
    out = F.grid_sample(luts.to(image.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, 3, h, w)


def combine(weights: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``weights`` ``N×L`` and a bank ``L×3×D×D×D`` → ``N×3×D×D×D`` (``Σ_l w_l φ_l``)."""
    return torch.einsum("nl,lcbgr->ncbgr", weights, bank)


def lut_regularisers(bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothness and monotonicity of LUTs ``…×3×D×D×D`` as Zeng et al. [42] train their basis
    LUTs with: ``tv`` the mean squared difference between neighbouring lattice points along the
    b, g and r axes (every output channel), ``mono`` the mean of the decreases along them
    (``relu(φ[i] − φ[i+1])``). Both 0 for a constant LUT; ``mono`` is 0 for the identity."""
    d_b = bank[..., :-1, :, :] - bank[..., 1:, :, :]
    d_g = bank[..., :, :-1, :] - bank[..., :, 1:, :]
    d_r = bank[..., :, :, :-1] - bank[..., :, :, 1:]
    tv = sum(d.pow(2).mean() for d in (d_b, d_g, d_r))
    mono = sum(F.relu(d).mean() for d in (d_b, d_g, d_r))
    return tv, mono


# ---- .cube files (Adobe / Resolve) -------------------------------------------------------------

_KEYWORDS = ("TITLE", "LUT_3D_SIZE", "LUT_1D_SIZE", "DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE",
             "LUT_1D_INPUT_RANGE")


def read_cube(path) -> torch.Tensor:
    """Read a 3-D ``.cube`` file into a ``3×D×D×D`` LUT over the input domain [0, 1].

    Files whose ``DOMAIN_MIN/MAX`` is not [0, 1] are resampled onto [0, 1] (inputs outside the
    file's domain take its border values). 1-D ``.cube`` files are refused.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    size, dmin, dmax, rows = None, [0.0] * 3, [1.0] * 3, []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        key = ln.split()[0]
        if key in _KEYWORDS:
            vals = ln.split()[1:]
            if key == "LUT_1D_SIZE":
                raise InputError(f"{path}: a 1-D .cube (LUT_1D_SIZE); only 3-D LUTs are supported")
            if key == "LUT_3D_SIZE":
                size = int(vals[0])
            elif key == "DOMAIN_MIN":
                dmin = [float(v) for v in vals]
            elif key == "DOMAIN_MAX":
                dmax = [float(v) for v in vals]
            elif key == "LUT_3D_INPUT_RANGE":
                dmin, dmax = [float(vals[0])] * 3, [float(vals[1])] * 3
            continue
        if re.match(r"^[A-Za-z_]", ln):  # unknown keyword lines are skipped, as Resolve does
            continue
        try:
            rows.append([float(v) for v in ln.split()[:3]])
        except ValueError:
            raise InputError(f"{path}: bad data line {ln!r}") from None
    if size is None:
        raise InputError(f"{path}: no LUT_3D_SIZE line (not a 3-D .cube file)")
    if len(rows) != size ** 3:
        raise InputError(f"{path}: LUT_3D_SIZE {size} needs {size ** 3} rows, found {len(rows)}")
    arr = np.asarray(rows, dtype=np.float32).reshape(size, size, size, 3)  # [b, g, r, c]
    lut = torch.from_numpy(arr).permute(3, 0, 1, 2).contiguous()
    if dmin != [0.0] * 3 or dmax != [1.0] * 3:
        lo, hi = torch.tensor(dmin), torch.tensor(dmax)
        if torch.any(hi <= lo):
            raise InputError(f"{path}: DOMAIN_MAX must exceed DOMAIN_MIN")
        ident = identity_lut(size)  # lattice over [0,1] → position inside the file's domain
        pos = (ident - lo.view(3, 1, 1, 1)) / (hi - lo).view(3, 1, 1, 1)
        lut = apply_lut(pos.reshape(3, size, size * size)[None], lut)[0].reshape(3, size, size, size)
    return lut


def write_cube(lut: torch.Tensor, path, title: str | None = None, overwrite: bool = False) -> Path:
    """Write a ``3×D×D×D`` LUT as a 3-D ``.cube`` (red fastest, domain [0, 1])."""
    if lut.ndim != 4 or lut.shape[0] != 3:
        raise ValueError(f"lut must be 3×D×D×D, got {tuple(lut.shape)}")
    d = lut.shape[1]
    rows = lut.detach().float().cpu().permute(1, 2, 3, 0).reshape(-1, 3).numpy()
    head = ([f'TITLE "{title}"'] if title else []) + [
        f"LUT_3D_SIZE {d}", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    body = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in rows)
    return write_text("\n".join(head) + "\n" + body + "\n", path, overwrite=overwrite)


# ---- fast 8-bit inference path -----------------------------------------------------------------

def _lut_rgb_last(lut: torch.Tensor) -> np.ndarray:
    """``3×D×D×D`` ``[c, b, g, r]`` → contiguous float32 ``D×D×D×3`` ``[b, g, r, c]`` in 0..255."""
    if lut.ndim != 4 or lut.shape[0] != 3 or not (lut.shape[1] == lut.shape[2] == lut.shape[3]):
        raise ValueError(f"lut must be 3×D×D×D, got {tuple(lut.shape)}")
    if lut.shape[1] < 2:
        raise ValueError("a LUT needs at least 2 lattice points per axis")
    arr = lut.detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 3, 0).numpy() * 255.0
    return np.ascontiguousarray(arr, dtype=np.float32)


def _axis_tables(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """For each 8-bit level: the lower lattice index and the fractional weight (float32), with the
    same arithmetic as the float reference (``pos = x/255·(D−1)``); level 255 sits on the last node
    as index D−2 with weight 1."""
    pos = np.arange(256, dtype=np.float64) / 255.0 * (dim - 1)
    idx = np.minimum(np.floor(pos), dim - 2).astype(np.int32)
    return idx, (pos - idx).astype(np.float32)


_U8_KERNELS = None
PLANES_FROM = 1 << 20  # pixels from which the per-LUT plane tables pay for themselves


def _u8_kernels():
    """The numba kernels, compiled on first use and cached on disk: ``direct`` interpolates each
    pixel from the lattice; ``planes`` builds, once per LUT, every (g, r) level pair's value on each
    blue lattice plane (``D×256×256×3``, the red and green interpolation done), and ``from_planes``
    then interpolates blue only: a quarter of the gathers and a seventh of the arithmetic."""
    global _U8_KERNELS
    if _U8_KERNELS is None:
        import numba

        @numba.njit(cache=True, fastmath=False, inline="always")
        def on_plane(lut, ib, ig, ir, fg, fr, c):  # pragma: no cover - compiled
            """Bilinear in green and red on blue lattice plane ``ib``."""
            c00 = lut[ib, ig, ir, c] * (1 - fr) + lut[ib, ig, ir + 1, c] * fr
            c01 = lut[ib, ig + 1, ir, c] * (1 - fr) + lut[ib, ig + 1, ir + 1, c] * fr
            return c00 * (1 - fg) + c01 * fg

        @numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
        def direct(px, lut, idx, frac, out):  # pragma: no cover - compiled
            for i in numba.prange(px.shape[0]):  # pixels N×3, flat
                r, g, b = px[i, 0], px[i, 1], px[i, 2]
                ir, ig, ib = idx[r], idx[g], idx[b]
                fr, fg, fb = frac[r], frac[g], frac[b]
                for c in range(3):
                    c0 = on_plane(lut, ib, ig, ir, fg, fr, c)
                    c1 = on_plane(lut, ib + 1, ig, ir, fg, fr, c)
                    out[i, c] = np.uint8(min(max(c0 * (1 - fb) + c1 * fb + 0.5, 0.0), 255.0))

        @numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
        def planes(lut, idx, frac, table):  # pragma: no cover - compiled
            for ib in numba.prange(lut.shape[0]):
                for g in range(256):
                    ig, fg = idx[g], frac[g]
                    for r in range(256):
                        ir, fr = idx[r], frac[r]
                        for c in range(3):
                            table[ib, g, r, c] = on_plane(lut, ib, ig, ir, fg, fr, c)

        @numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
        def from_planes(px, table, idx, frac, out):  # pragma: no cover - compiled
            for i in numba.prange(px.shape[0]):
                ib, fb = idx[px[i, 2]], frac[px[i, 2]]
                for c in range(3):
                    v = table[ib, px[i, 1], px[i, 0], c] * (1 - fb) + table[ib + 1, px[i, 1], px[i, 0], c] * fb
                    out[i, c] = np.uint8(min(max(v + 0.5, 0.0), 255.0))

        _U8_KERNELS = {"direct": direct, "planes": planes, "from_planes": from_planes}
    return _U8_KERNELS


def apply_lut_u8(image: np.ndarray, lut: torch.Tensor, out: np.ndarray | None = None,
                 method: str = "auto") -> np.ndarray:
    """Inference fast path: apply a ``3×D×D×D`` LUT to an ``H×W×3`` uint8 array, returning uint8.

    Same trilinear interpolation as :func:`apply_lut` (the float reference), rounded to the nearest
    level: at most 1/255 from it. Compiled, multi-threaded numba kernels with per-level index and
    weight tables; from :data:`PLANES_FROM` pixels (``method="auto"``) the LUT is first expanded into
    per-blue-plane tables of every (green, red) level pair, so that each pixel costs one
    interpolation instead of seven (``method`` forces ``planes`` or ``direct``).
    Not differentiable: training uses :func:`apply_lut`.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an H×W×3 uint8 array, got {got}")
    table = _lut_rgb_last(lut)
    if out is None:
        out = np.empty(image.shape, np.uint8)
    if not out.flags.c_contiguous or out.shape != image.shape or out.dtype != np.uint8:
        raise ValueError("out must be a C-contiguous uint8 array of the image's shape")
    if method == "auto":
        method = "planes" if image.shape[0] * image.shape[1] >= PLANES_FROM else "direct"
    if method not in ("planes", "direct"):
        raise ValueError(f"method must be auto, planes or direct, got {method!r}")
    idx, frac = _axis_tables(table.shape[0])
    k, px, flat = _u8_kernels(), np.ascontiguousarray(image).reshape(-1, 3), out.reshape(-1, 3)
    if method == "planes":
        planes = np.empty((table.shape[0], 256, 256, 3), np.float32)
        k["planes"](table, idx, frac, planes)
        k["from_planes"](px, planes, idx, frac, flat)
    else:
        k["direct"](px, table, idx, frac, flat)
    return out
    lut_f = lut.detach().to("cpu", torch.float32)
    for y in range(0, image.shape[0], 256):  # bounded float32 memory for large images
        part = torch.from_numpy(image[y:y + 256]).permute(2, 0, 1)[None].float() / 255
        res = apply_lut(part, lut_f)[0].permute(1, 2, 0).mul(255).round_().clamp_(0, 255)
        out[y:y + 256] = res.to(torch.uint8).numpy()
    return out
