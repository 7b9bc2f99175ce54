"""Route a composite to its domain's harmonizer.

    python -m fire router predict image.jpg mask.png            # or: fire router predict ..., python -m router predict ...
    python -m router predict image.jpg mask.png --mode unified --out result.png --overwrite
    python -m router predict_dir composites/ --out results/

``predict`` writes the harmonized image at the input's resolution (default
``<image stem>_harmonized.png`` next to the input; never over an existing file without
``--overwrite``) and prints one JSON line: chosen domain, class probabilities, model used, output
path and seconds per stage. Bad input exits with status 2 and a one-line reason, writing nothing.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common.io import InputError, find_pairs, write_image

from .api import Harmonizer

__all__ = ["Harmonizer", "predict", "predict_dir"]

_CACHE: dict = {}


def _harmonizer(zoo, device) -> Harmonizer:
    key = (str(zoo), str(device))
    if key not in _CACHE:
        _CACHE[key] = Harmonizer.from_zoo(zoo, device)
    return _CACHE[key]


def _predict_one(image, mask, out=None, zoo=None, mode="routed", overwrite=False, device="cpu") -> dict:
    t0 = time.perf_counter()
    out = Path(out) if out else Path(image).with_name(Path(image).stem + "_harmonized.png")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists (pass --overwrite to replace it)")
    fresh = (str(zoo), str(device)) not in _CACHE
    h = _harmonizer(zoo, device)
    if mode == "routed":
        h.classifier  # noqa: B018 - load it here, so that "load" holds all loading
    t_load = time.perf_counter() - t0
    r = h.run(image, mask, mode)
    t1 = time.perf_counter()
    write_image(r["output"], out, overwrite=overwrite)
    seconds = {"load": round(t_load if fresh else 0.0, 4), **{k: round(v, 4) for k, v in r["seconds"].items()},
               "write": round(time.perf_counter() - t1, 4)}
    seconds["total"] = round(time.perf_counter() - t0, 4)
    probs = {k: round(v, 4) for k, v in r["probabilities"].items()} if r["probabilities"] else None
    return {"domain": r["domain"], "probabilities": probs, "model": r["model"], "mode": mode, "output": str(out),
            "seconds": seconds}


def _cli(fn):
    """Run ``fn`` as a CLI: InputError → one line on stderr and exit status 2 (also under python -m fire)."""
    try:
        return fn()
    except (InputError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def predict(image, mask, out=None, zoo=None, mode: str = "routed", overwrite: bool = False, device: str = "cpu"):
    """Harmonize IMAGE with MASK; print one JSON line (see the module docstring)."""
    res = _cli(lambda: _predict_one(str(image), str(mask), out, zoo, mode, overwrite, device))
    print(json.dumps(res))


def predict_dir(composites, masks=None, out=None, zoo=None, mode: str = "routed", overwrite: bool = False,
                device: str = "cpu"):
    """Harmonize every image in COMPOSITES that has a mask (``MASKS/<stem>.png``, by default a
    ``masks`` folder next to or inside COMPOSITES, or ``<stem>_mask.png`` beside the image; see
    ``common.io.find_pairs``); results go to OUT (default ``<composites>_harmonized``). Prints one
    JSON line per image."""
    from tqdm import tqdm

    def run():
        src = Path(composites)
        pairs = find_pairs(src, masks)
        dst = Path(out) if out else src.with_name(src.name + "_harmonized")
        rows = []
        for img, m in tqdm(pairs, desc="predict", unit="img"):
            rows.append(_predict_one(str(img), str(m), dst / f"{img.stem}_harmonized.png", zoo, mode, overwrite, device))
            print(json.dumps(rows[-1]))
        return rows
    _cli(run)
