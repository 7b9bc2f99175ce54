"""Prediction without torch: the zoo's networks exported to ONNX and run by ONNX Runtime, with the
pre- and post-processing in numpy and Pillow.

    python -m router.fast export [--zoo DIR] [--overwrite]      # writes DIR/onnx/ (needs torch, onnx, onnxscript)
    python -m router predict image.jpg mask.png                   # uses it when it is there and current

Why: ``import torch`` (and timm, which pulls torchvision) costs seconds before a command does any
work; ``onnxruntime`` + numpy + Pillow import in a fraction of a second. The networks are the same
weights (the export is checked against torch in the tests); the steps around them are the numpy
twins of ``router.api`` / ``harmonizers.fullres.harmonize``:

- resize to the network size with Pillow's bilinear filter on float planes (antialiased when
  shrinking, as ``F.interpolate(..., antialias=True)``);
- the full-resolution step of ``harmonize(method="transform")``: a second-order colour transform
  fitted from the low-resolution input foreground to the network's output, applied to the
  full-resolution foreground's bounding box, plus the bilinearly upsampled remainder.

``DIR/onnx/manifest.json`` records, per checkpoint, the SHA-256 of the file it was exported from;
a checkpoint that changed after the export makes :func:`load` refuse the stale ONNX file (and
``router predict --backend auto`` fall back to torch).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from common.io import InputError, check_strength, write_text

from . import inference, routing
from .zoo import read as read_zoo

OPSET = 18


class Unavailable(RuntimeError):
    """The ONNX path cannot run (onnxruntime missing, no export, or a stale one); says why."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checkpoints(z: dict) -> dict[str, Path]:
    """Every network a prediction can use: name → checkpoint path."""
    out = {"classifier": z["classifier"], **{f"domain:{d}": p for d, p in z["domains"].items()}}
    if z["unified"]:
        out["unified"] = z["unified"]
    return out


# ---- export (torch side) ---------------------------------------------------------------------

def export(zoo=None, overwrite: bool = False) -> Path:
    """Export the zoo's classifier and harmonizers to ``<zoo>/onnx/`` (one file each, fixed input
    size, opset 18) with a manifest of the checkpoints' hashes."""
    import logging

    import torch
    from tqdm import tqdm

    from harmonizers.models import load as load_h

    from .classifier import load as load_c

    z = read_zoo(zoo)
    dst = Path(z["root"]) / "onnx"
    if (dst / "manifest.json").exists() and not overwrite:
        raise InputError(f"{dst}/manifest.json: already exists (pass --overwrite to export again)")
    dst.mkdir(parents=True, exist_ok=True)
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    entries = {}
    for name, ckpt in tqdm(_checkpoints(z).items(), desc="onnx export", unit="model"):
        if name == "classifier":
            model, _ = load_c(ckpt)
            size = model.cfg.size
        else:
            model, _ = load_h(ckpt)
            size = model.size
        file = dst / (Path(ckpt).stem + ".onnx")
        tmp = file.with_name(f".{file.name}.tmp")
        args = (torch.rand(1, 3, size, size), (torch.rand(1, 1, size, size) > 0.5).float())
        torch.onnx.export(model, args, str(tmp), input_names=["image", "mask"], output_names=["output"],
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
        tmp.replace(file)
        entries[name] = {"onnx": file.name, "checkpoint": Path(ckpt).name, "sha256": _sha256(Path(ckpt)),
                         "size": int(size)}
    write_text(json.dumps({"opset": OPSET, "torch": torch.__version__, "models": entries}, indent=1) + "\n",
               dst / "manifest.json", overwrite=True)
    return dst


# ---- numpy twins of the torch pre/post-processing --------------------------------------------

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


def _interp_matrix(n_out: int, n_in: int, start: int, stop: int) -> np.ndarray:
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
    rx = _interp_matrix(w, change.shape[1], wx.start, wx.stop)
    cols = [change[..., c] @ rx.T for c in range(3)]  # S × box width, per channel
    result = image if inplace else image.copy()

    def band(y0: int) -> None:
        y1 = min(y0 + ROWS, wy.stop)
        ry = _interp_matrix(h, change.shape[0], y0, y1)
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


# ---- the runtime -----------------------------------------------------------------------------

class FastHarmonizer:
    """The zoo on ONNX Runtime, a :class:`router.inference.Backend` like ``router.api.Harmonizer``;
    sessions are created on first use."""

    def __init__(self, z: dict, entries: dict, threads: int = 0):
        self.zoo, self.entries = z, entries
        self.domains = list(z["classifier_domains"])
        self.default_mode = z["mode"]
        self.threads = threads
        self._sessions: dict = {}
        self.has_unified = "unified" in entries
        self._detector = None

    @property
    def detector(self):
        """The zoo's composite detector (NumPy, shared with the torch path), or ``None``."""
        if self._detector is None and self.zoo.get("detector"):
            self._detector = inference.load_detector(self.zoo["detector"])
        return self._detector

    @classmethod
    def from_zoo(cls, zoo=None, threads: int = 0) -> "FastHarmonizer":
        """Raises :class:`Unavailable` with the reason when the ONNX path cannot serve this zoo."""
        return cls.from_manifest(read_zoo(zoo), threads)

    @classmethod
    def from_manifest(cls, z: dict, threads: int = 0) -> "FastHarmonizer":
        """:meth:`from_zoo` for a zoo already read (:func:`router.zoo.read`)."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise Unavailable("onnxruntime is not installed (pip install -e '.[fast]')") from None
        mf = Path(z["root"]) / "onnx" / "manifest.json"
        if not mf.is_file():
            raise Unavailable(f"{mf.parent}: no ONNX export (python -m router.fast export --zoo {z['root']})")
        try:
            entries = json.loads(mf.read_text())["models"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise Unavailable(f"{mf}: unreadable manifest ({e!r}; export again with --overwrite)") from None
        missing = set(_checkpoints(z)) - set(entries)
        if missing:
            raise Unavailable(f"{mf}: no export of {sorted(missing)} (export again with --overwrite)")
        return cls(z, entries, threads)

    def _session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort
            e, ckpt = self.entries[name], _checkpoints(self.zoo)[name]
            if _sha256(ckpt) != e["sha256"]:
                raise Unavailable(f"{ckpt}: changed since its ONNX export (export again with --overwrite)")
            opt = ort.SessionOptions()
            opt.log_severity_level = 3
            if self.threads:
                opt.intra_op_num_threads = self.threads
            path = Path(self.zoo["root"]) / "onnx" / e["onnx"]
            self._sessions[name] = (ort.InferenceSession(str(path), opt, providers=["CPUExecutionProvider"]),
                                    e["size"])
        return self._sessions[name]

    def load(self, mode: str | None = None) -> None:
        """Create the sessions a mode needs up front (so that timings separate loading)."""
        mode = mode or self.default_mode
        self.detector  # noqa: B018
        if mode in routing.MODES_NEEDING_PROBS:
            self._session("classifier")
        elif mode == "unified" and self.has_unified:
            self._session("unified")
        elif mode.startswith("oracle:") and f"domain:{mode[7:]}" in self.entries:
            self._session(f"domain:{mode[7:]}")

    @staticmethod
    def _nchw(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    @staticmethod
    def _infer(sess, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run a session on ``1×3×S×S`` / ``1×1×S×S``, feeding only the inputs its graph kept (the
        exporter drops an input the network ignores, e.g. the mask of a classifier without it)."""
        feed = {"image": image, "mask": np.ascontiguousarray(mask, np.float32)}
        return sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})[0][0]

    def probabilities(self, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        sess, s = self._session("classifier")
        m = resize(mask[..., None], s)[None, None, ..., 0]
        logits = self._infer(sess, self._nchw(resize(image, s)), m).astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {d: float(v) for d, v in zip(self.domains, p)}

    def select(self, mode: str, probs: dict | None) -> tuple[str, dict[str, float], dict[str, float]]:
        """(model name, {session name: weight}, {member: weight}) for a mode, by
        :func:`router.routing.choose`; a blend's members must share one size (as ``router.api.Blend``)."""
        doms = [n.split(":", 1)[1] for n in self.entries if n.startswith("domain:")]
        name, weights = routing.choose(mode, probs, doms, self.has_unified)
        sessions = {(m if m == "unified" else f"domain:{m}"): w for m, w in weights.items()}
        routing.one_size(self.entries[n]["size"] for n in sessions)
        return name, sessions, weights

    def network(self, sessions: dict, image: np.ndarray, mask: np.ndarray, strength: float) -> tuple:
        s = self.entries[next(iter(sessions))]["size"]  # one size for all members (select checks)
        xs, ms = resize(image, s), np.clip(resize(mask[..., None], s)[..., 0], 0, 1)
        x_in = self._nchw(xs)
        ys = sum(w * self._infer(self._session(n)[0], x_in, ms[None, None]) for n, w in sessions.items())
        ys = ys.transpose(1, 2, 0)
        return xs, ms, (xs + strength * (ys - xs) if strength != 1.0 else ys)

    def full_resolution(self, image: np.ndarray, mask: np.ndarray, small: tuple, inplace: bool = False) -> np.ndarray:
        return full_resolution(image, mask, *small, inplace=inplace)

    def score(self, image, mask) -> float:
        """``router.api.Harmonizer.score`` without torch."""
        img, m, _, names = inference.as_arrays(image, mask)
        return inference.score(self.detector, img, m, names, self.zoo["root"])

    def run(self, image, mask, mode: str | None = None, strength: float = 1.0, gate: bool = True) -> inference.Prediction:
        """``router.api.Harmonizer.run`` on ONNX Runtime (paths, PIL images or numpy arrays in;
        ``output`` in the input's type, float32 ``H×W×3`` for float arrays)."""
        img, m, kind, names = inference.as_arrays(image, mask)
        r = inference.run(self, img, m, mode, check_strength(strength), names, gate=gate)
        r.output = inference.like(r.output, kind, getattr(image, "dtype", None))
        return r


def _export(zoo=None, overwrite: bool = False):
    """Export a zoo's networks to ONNX (``<zoo>/onnx/``, with a manifest of checkpoint hashes).

    Args:
        zoo: model zoo folder (default models/default).
        overwrite: replace an existing export.
    """
    from common.cli import print_json
    print_json({"onnx": str(export(zoo, overwrite))})


CLI = {"export": _export}

if __name__ == "__main__":
    from common.cli import run
    run(CLI)
