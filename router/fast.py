"""Prediction without torch: the zoo's networks exported to ONNX (:mod:`router.onnx_export`) and run
by ONNX Runtime, with the pre- and post-processing in numpy and Pillow (:mod:`router.arrays`).

    python -m router.fast export [--zoo DIR] [--overwrite]      # writes DIR/onnx/ (needs torch, onnx, onnxscript)
    python -m router predict image.jpg mask.png                   # uses it when it is there and current

Why: ``import torch`` (and timm, which pulls torchvision) costs seconds before a command does any
work; ``onnxruntime`` + numpy + Pillow import in a fraction of a second. The networks are the same
weights (the export is checked against torch in the tests); the steps around them are the numpy
twins of ``router.api`` / ``harmonizers.fullres.harmonize`` (:mod:`router.arrays`).

A checkpoint that changed after its export makes :class:`FastHarmonizer` refuse the stale ONNX file
(and ``router predict --backend auto`` fall back to torch).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.io import check_strength, sha256

from . import inference, routing
from .arrays import full_resolution, resize
from .onnx_export import export, networks
from .zoo import read as read_zoo

__all__ = ["FastHarmonizer", "Unavailable", "export"]


class Unavailable(RuntimeError):
    """The ONNX path cannot run (onnxruntime missing, no export, or a stale one); says why."""


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
        missing = set(networks(z)) - set(entries)
        if missing:
            raise Unavailable(f"{mf}: no export of {sorted(missing)} (export again with --overwrite)")
        return cls(z, entries, threads)

    def _session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort
            e, ckpt = self.entries[name], networks(self.zoo)[name]
            if sha256(ckpt) != e["sha256"]:
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
        """Create the sessions a mode (default: the zoo's) needs up front (so that timings separate loading)."""
        inference.load(self, mode)

    def warm(self, network: str) -> None:
        if network in self.entries:
            self._session(network)

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
        :func:`router.routing.choose`."""
        sizes = {n.split(":", 1)[1]: e["size"] for n, e in self.entries.items() if n.startswith("domain:")}
        name, weights = routing.choose(mode, probs, sizes, self.has_unified)
        sessions = {(m if m == "unified" else f"domain:{m}"): w for m, w in weights.items()}
        return name, sessions, weights

    def network(self, sessions: dict, image: np.ndarray, mask: np.ndarray, strength: float) -> tuple:
        s = self.entries[next(iter(sessions))]["size"]  # one size for all members (select checks)
        xs, ms = resize(image, s), np.clip(resize(mask[..., None], s)[..., 0], 0, 1)
        x_in = self._nchw(xs)
        ys = sum(w * self._infer(self._session(n)[0], x_in, ms[None, None]) for n, w in sessions.items())
        ys = ys.transpose(1, 2, 0)
        return image, mask, xs, ms, (xs + strength * (ys - xs) if strength != 1.0 else ys)

    def full_resolution(self, small: tuple, inplace: bool = False) -> np.ndarray:
        return full_resolution(*small, inplace=inplace)

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
