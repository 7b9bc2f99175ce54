"""A full-size iHarmony4 stand-in: the real layout, names and counts, with small images.

    .venv/bin/python bench/fake_iharmony4.py --out /tmp/ih4 [--fraction 1.0] [--size 64] [--seed 0]

Writes ``HCOCO``, ``HAdobe5k``, ``HFlickr`` and ``Hday2night`` (each ``composite_images/``,
``masks/``, ``real_images/`` and its ``<name>_train.txt`` / ``<name>_test.txt`` of composite names),
and the root's ``IHD_train.txt`` / ``IHD_test.txt`` (``<name>/composite_images/<file>``), as the data
set ships. At ``--fraction 1.0`` it holds the real counts: 65,742 training and 7,404 test
composites (HCOCO 38,545 + 4,283, HAdobe5k 19,437 + 2,160, HFlickr 7,449 + 828, Hday2night 311 + 133),
several composites per real image (4, 5, 2 and 4 as in the real set, a real image in one split),
named ``<prefix><id>_1_<k>.jpg`` with mask ``<prefix><id>_1.png`` and real ``<prefix><id>.jpg``.

Content: each real image is a ``--size`` crop of a bundled photo (``assets/photos``) with its mask
cropped alike (a random ellipse where the crop misses the foreground), and each composite recolours
the foreground with a random colour transform (per-channel gain, gamma and offset), so that
training on it does something. Every image depends on ``(seed, sub-dataset, index)`` only: the same
seed gives the same bytes, whatever the worker count. JPEG quality 90, masks PNG.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# name: (file prefix, train composites, test composites, composites per real image, first id)
SUBSETS = {
    "HCOCO": ("c", 38545, 4283, 4, 100000),
    "HAdobe5k": ("a", 19437, 2160, 5, 1),
    "HFlickr": ("f", 7449, 828, 2, 1),
    "Hday2night": ("d", 311, 133, 4, 90000),
}
TOTAL_TRAIN = sum(v[1] for v in SUBSETS.values())
TOTAL_TEST = sum(v[2] for v in SUBSETS.values())

_POOL: list[tuple[np.ndarray, np.ndarray]] = []


def _load_pool(side: int, photos: Path = ROOT / "assets" / "photos") -> list[tuple[np.ndarray, np.ndarray]]:
    """The bundled photos and masks, their long side at ``side`` (uint8 H×W×3, bool H×W)."""
    out = []
    for m in sorted((photos / "masks").glob("*.png")):
        img_path = next((photos / "images").glob(m.stem + ".*"), None)
        if img_path is None:
            continue
        im, mk = Image.open(img_path).convert("RGB"), Image.open(m).convert("L")
        s = side / max(im.size)
        size = (max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s)))
        out.append((np.asarray(im.resize(size, Image.BILINEAR)), np.asarray(mk.resize(size, Image.NEAREST)) > 127))
    return out


def _init(side: int) -> None:
    global _POOL
    _POOL = _load_pool(side)


def _real(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` crop of a pool photo and its mask (an ellipse where the crop has too little foreground)."""
    img, mask = _POOL[int(rng.integers(len(_POOL)))]
    h, w = mask.shape
    c = int(min(h, w) * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
    crop = Image.fromarray(img[y:y + c, x:x + c]).resize((size, size), Image.BILINEAR)
    m = np.asarray(Image.fromarray(mask[y:y + c, x:x + c].astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 127
    if not 0.05 <= m.mean() <= 0.8:
        yy, xx = np.mgrid[0:size, 0:size] / size
        cy, cx, ry, rx = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.3)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return np.asarray(crop), m


def _recolour(real: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = real.astype(np.float32) / 255
    gain, gamma, offset = rng.uniform(0.7, 1.3, 3), rng.uniform(0.75, 1.35, 3), rng.uniform(-0.08, 0.08, 3)
    y = np.clip(np.clip(x, 1e-6, 1) ** gamma * gain + offset, 0, 1)
    out = np.where(mask[..., None], y, x)
    return np.rint(out * 255).astype(np.uint8)


def _write_reals(args) -> list[str]:
    """Write real images ``lo..hi-1`` of one sub-dataset with their masks and composites; returns the
    composite names in order."""
    root, name, di, lo, hi, counts, size, seed = args
    prefix, _, _, _, first = SUBSETS[name]
    d = Path(root) / name
    names = []
    for i in range(lo, hi):
        rng = np.random.default_rng([seed, di, i])
        real, mask = _real(rng, size)
        rid = f"{prefix}{first + i}"
        Image.fromarray(real).save(d / "real_images" / f"{rid}.jpg", quality=90)
        Image.fromarray(mask.astype(np.uint8) * 255).save(d / "masks" / f"{rid}_1.png")
        for k in range(1, counts[i] + 1):
            Image.fromarray(_recolour(real, mask, rng)).save(d / "composite_images" / f"{rid}_1_{k}.jpg", quality=90)
            names.append(f"{rid}_1_{k}.jpg")
    return names


def _per_real(n: int, k: int) -> list[int]:
    """Composites per real image: ``k`` each, the last real taking the remainder."""
    full, rest = divmod(n, k)
    return [k] * full + ([rest] if rest else [])


def generate(out, fraction: float = 1.0, size: int = 64, seed: int = 0, workers: int | None = None) -> dict:
    """Write the tree; returns ``{sub-dataset: (train composites, test composites)}``."""
    if not 0 < fraction <= 1:
        raise SystemExit(f"--fraction must be in (0, 1], got {fraction}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: already exists and is not empty")
    workers = workers or os.cpu_count() or 1
    counts, lists = {}, {"train": [], "test": []}
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(2 * size,)) as pool:
        for di, (name, (_, n_train, n_test, k, _)) in enumerate(SUBSETS.items()):
            for sub in ("composite_images", "masks", "real_images"):
                (out / name / sub).mkdir(parents=True)
            per = {"train": _per_real(max(1, round(n_train * fraction)), k),
                   "test": _per_real(max(1, round(n_test * fraction)), k)}
            plan = per["train"] + per["test"]
            n_reals_train = len(per["train"])
            chunks = [(str(out), name, di, lo, min(lo + 500, len(plan)), plan, size, seed)
                      for lo in range(0, len(plan), 500)]
            names = [n for part in pool.map(_write_reals, chunks) for n in part]
            n_train_comps = sum(per["train"])
            split = {"train": names[:n_train_comps], "test": names[n_train_comps:]}
            assert len(split["train"]) == n_train_comps and n_reals_train == len(per["train"])
            for sp, items in split.items():
                (out / name / f"{name}_{sp}.txt").write_text("\n".join(items) + "\n")
                lists[sp] += [f"{name}/composite_images/{n}" for n in items]
            counts[name] = (len(split["train"]), len(split["test"]))
    for sp, items in lists.items():
        (out / f"IHD_{sp}.txt").write_text("\n".join(items) + "\n")
    return counts


def main(out: str, fraction: float = 1.0, size: int = 64, seed: int = 0, workers: int | None = None) -> None:
    """Write a fake iHarmony4 tree (see the module docstring).

    Args:
        out: the new dataset root (must not exist or be empty).
        fraction: share of the real counts per sub-dataset (1.0: 73,146 composites).
        size: side of every image, pixels.
        seed: the same seed gives the same bytes.
        workers: processes (default: one per core).
    """
    import time
    t0 = time.perf_counter()
    counts = generate(out, fraction, size, seed, workers)
    total = sum(a + b for a, b in counts.values())
    print(f"wrote {out}: {total} composites ({', '.join(f'{k} {a}+{b}' for k, (a, b) in counts.items())}) "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    import fire
    fire.Fire(main)
