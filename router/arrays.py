"""NumPy twins of the torch pre- and post-processing, for the ONNX predict path (:mod:`router.fast`):

- resize to the network size with Pillow's bilinear filter on float planes (antialiased when
  shrinking, as ``F.interpolate(..., antialias=True)``);
- the full-resolution step of ``harmonizers.fullres.harmonize(method="transform")``: a second-order
  colour transform fitted from the low-resolution input foreground to the network's output, applied
  to the full-resolution foreground's bounding box, plus the bilinearly upsampled remainder.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_POOL = None
THREADED_FROM = 1 << 20  # pixels from which the planes are resized in parallel


def _plane(arr: np.ndarray, c: int, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c]), mode="F").resize((size, size), Image.BILINEAR))


def resize(arr: np.ndarray, size: int) -> np.ndarray:
    """``H×W×C`` float32 → ``size×size×C``, bilinear, antialiased when shrinking (Pillow on float
    planes: the filter ``F.interpolate(mode="bilinear", antialias=True)`` was ported from). Large
    images have their planes resized on parallel threads (Pillow releases the GIL; same result)."""
    if arr.shape[2] == 1 or arr.shape[0] * arr.shape[1] < THREADED_FROM:
        return np.stack([_plane(arr, c, size) for c in range(arr.shape[2])], -1)
    return np.stack(list(_pool().map(lambda c: _plane(arr, c, size), range(arr.shape[2]))), -1)


def _poly(px: np.ndarray) -> np.ndarray:
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return np.stack([np.ones_like(r), r, g, b, r * r, g * g, b * b, r * g, r * b, g * b], -1)


def fit_colour_transform(src: np.ndarray, dst: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """``harmonizers.fullres.fit_colour_transform`` in numpy: ``P×3`` → ``P×3`` → ``10×3``."""
    a = _poly(src.astype(np.float64))
    eye = np.zeros((10, 3))
    eye[1, 0] = eye[2, 1] = eye[3, 2] = 1.0
    lam = ridge * len(a)
    return np.linalg.solve(a.T @ a + lam * np.eye(10), a.T @ dst.astype(np.float64) + lam * eye).astype(np.float32)


def apply_colour_transform(px: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``…×3`` float32 pixels through ``10×3`` coefficients, term by term (no ``…×10`` array)."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    out = np.empty_like(px)
    rr, gg, bb, rg, rb, gb = r * r, g * g, b * b, r * g, r * b, g * b
    terms = (1.0, r, g, b, rr, gg, bb, rg, rb, gb)
    for c in range(3):
        acc = np.full(r.shape, coef[0, c], dtype=np.float32)
        for k in range(1, 10):
            acc += coef[k, c] * terms[k]
        out[..., c] = acc
    return out


def interp_matrix(n_out: int, n_in: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the ``n_out×n_in`` bilinear (half-pixel centres, edge-clamped)
    upsampling matrix: ``grid_sample(align_corners=False, padding_mode="border")``."""
    src = np.clip((np.arange(start, stop) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0).astype(np.float32)
    m = np.zeros((stop - start, n_in), np.float32)
    rows = np.arange(stop - start)
    np.add.at(m, (rows, i0), 1 - w1)
    np.add.at(m, (rows, i1), w1)
    return m


def bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return slice(0, mask.shape[0]), slice(0, mask.shape[1])
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


ROWS = 256  # rows of the foreground's bounding box per work unit of the full-resolution step


def _pool():
    global _POOL
    if _POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=min(3, os.cpu_count() or 1))
    return _POOL


def full_resolution(image: np.ndarray, mask: np.ndarray, xs: np.ndarray, ms: np.ndarray,
                    ys: np.ndarray, inplace: bool = False) -> np.ndarray:
    """The ``transform`` full-resolution step. ``image`` ``H×W×3`` and ``mask`` ``H×W`` at full
    size; ``xs``, ``ms``, ``ys`` the network's input, mask and output at its size (``S×S×3``,
    ``S×S``, ``S×S×3``). Returns ``H×W×3`` float32 with the background untouched: a copy of
    ``image``, or ``image`` itself changed in place with ``inplace``.

    The foreground's bounding box is done in bands of :data:`ROWS` rows on parallel threads (numpy
    releases the GIL): every temporary stays a few megabytes, so a 24-MP photo costs no large
    fresh allocations (whose first touch, page by page, cost more than the arithmetic)."""
    fg = ms > 0.5
    if fg.sum() < 16:
        fg = ms > 0
    coef = fit_colour_transform(xs[fg], ys[fg])
    change = (ys - np.clip(apply_colour_transform(xs, coef), 0, 1)) * ms[..., None]  # as torch: clamped
    h, w = mask.shape
    wy, wx = bbox(mask > 0)
    rx = interp_matrix(w, change.shape[1], wx.start, wx.stop)
    cols = [change[..., c] @ rx.T for c in range(3)]  # S × box width, per channel
    result = image if inplace else image.copy()

    def band(y0: int) -> None:
        y1 = min(y0 + ROWS, wy.stop)
        ry = interp_matrix(h, change.shape[0], y0, y1)
        up = np.stack([ry @ cols[c] for c in range(3)], -1)
        xw, mw = image[y0:y1, wx], mask[y0:y1, wx, None]
        out = apply_colour_transform(xw, coef)
        np.clip(out, 0, 1, out=out)
        out += up
        np.clip(out, 0, 1, out=out)
        result[y0:y1, wx] = mw * out + (1 - mw) * xw

    starts = range(wy.start, wy.stop, ROWS)
    if (wy.stop - wy.start) * (wx.stop - wx.start) < THREADED_FROM:
        for y0 in starts:
            band(y0)
    else:
        list(_pool().map(band, starts))
    return result
