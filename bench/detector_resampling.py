"""How far a composite detector's score moves when its input is resampled: detectors side by side.

    .venv/bin/python bench/detector_resampling.py --detectors A.safetensors,B.safetensors \
        --positives LE=/path/composites,cut=/path/cutout_composites \
        --negatives LM=/path/photos,bundled=/path/photos [--out bench/detector_resampling.md]

Every picture of every set (a folder ``router predict_dir`` reads: ``images/`` or ``composites/``
plus ``masks/``) is scored as it is, at half its size (box filter), at twice (bicubic) and at three
times (bilinear). Per detector and set: the mean score at each size and the mean absolute change
against the picture as it is; per detector and size, the ROC AUC of each positive set against each
negative set. A user's composite comes at any size and through any resampling, so a detector whose
score moves less with it gates the same composite the same way. Also the demo composite
(``assets/demo/koala.jpg``) scored at 0.5–4 times its size.
"""
from __future__ import annotations

import platform
from pathlib import Path

import fire
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCALES = (("as is", 1.0, None), ("half, box", 0.5, Image.BOX), ("×2 bicubic", 2.0, Image.BICUBIC),
          ("×3 bilinear", 3.0, Image.BILINEAR))
DEMO_FACTORS = (0.5, 1.0, 1.6, 2.0, 4.0)


def resized(x: np.ndarray, m: np.ndarray, f: float, how) -> tuple[np.ndarray, np.ndarray]:
    if f == 1.0:
        return x, m
    size = (max(1, round(m.shape[1] * f)), max(1, round(m.shape[0] * f)))
    xi = Image.fromarray(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)).resize(size, how)
    mi = Image.fromarray(m.astype(np.float32), "F").resize(size, Image.BILINEAR)
    return np.asarray(xi, np.float32) / 255, np.clip(np.asarray(mi, np.float32), 0, 1)


def _sets(spec: str | tuple) -> dict[str, Path]:
    """``NAME=FOLDER,...`` (a comma-separated value or a list, as python-fire passes it) → {name: folder}."""
    from common.cli import names
    out = {}
    for item in names(spec):
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"{item!r}: give a set as NAME=FOLDER")
        out[name] = Path(folder)
    return out


def main(detectors: str | tuple, positives: str | tuple, negatives: str | tuple,
         out: str = "bench/detector_resampling.md") -> None:
    from common.cli import names
    from common.io import find_pairs, read_image_array, read_mask_array
    from common.metrics import roc_auc
    from router.detector import Detector
    dets_paths = names(detectors)
    dets = {f"{Path(d).parent.name}/{Path(d).stem}": Detector.load(d) for d in dets_paths}
    pos, neg = _sets(positives), _sets(negatives)
    pairs = {name: find_pairs(folder) for name, folder in {**pos, **neg}.items()}
    scores = {}
    for dname, det in dets.items():
        for sname, ps in pairs.items():
            for label, f, how in SCALES:
                scores[dname, sname, label] = np.array([det.score(*resized(read_image_array(a), read_mask_array(b), f, how))
                                                         for a, b in ps])
    lines = ["# Composite detector: scores under resampling", "",
             f"Machine: {platform.machine()}, {platform.system()}; `.venv/bin/python bench/detector_resampling.py "
             f"--detectors {','.join(dets_paths)}` (sets: "
             + ", ".join(f"{k} {len(v)}" for k, v in pairs.items()) + ").", "",
             "Mean score at each size · mean |change| against the picture as it is:", "",
             "| detector | set | " + " | ".join(s[0] for s in SCALES) + " |", "|---|---|" + "---:|" * len(SCALES)]
    for dname in dets:
        for sname in pairs:
            base = scores[dname, sname, "as is"]
            cells = [f"{base.mean():.3f}"] + [f"{scores[dname, sname, s[0]].mean():.3f} · "
                                              f"{np.abs(scores[dname, sname, s[0]] - base).mean():.3f}" for s in SCALES[1:]]
            lines.append(f"| {dname} | {sname} | " + " | ".join(cells) + " |")
    lines += ["", "ROC AUC, positive set against negative set, at each size:", "",
              "| detector | pair | " + " | ".join(s[0] for s in SCALES) + " |", "|---|---|" + "---:|" * len(SCALES)]
    for dname in dets:
        for p in pos:
            for n in neg:
                lines.append(f"| {dname} | {p} vs {n} | " + " | ".join(
                    f"{roc_auc(scores[dname, p, s[0]], scores[dname, n, s[0]]):.3f}" for s in SCALES) + " |")
    k, km = read_image_array(ROOT / "assets/demo/koala.jpg"), read_mask_array(ROOT / "assets/demo/koala_mask.png")
    lines += ["", "The demo composite (its own size ×, bicubic):", "",
              "| detector | " + " | ".join(f"×{f:g}" for f in DEMO_FACTORS) + " |", "|---|" + "---:|" * len(DEMO_FACTORS)]
    for dname, det in dets.items():
        lines.append(f"| {dname} | " + " | ".join(f"{det.score(*resized(k, km, f, Image.BICUBIC)):.3f}"
                                                   for f in DEMO_FACTORS) + " |")
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    fire.Fire(main)
