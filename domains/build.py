"""Build the offline benchmark: four domains in the iHarmony4 layout from photos + masks.

    python -m domains.build --photos assets/photos --out data/mini4 --seed 0
    python -m domains.build --photos my_photos --out data/mine --seed 1 --max_side 768 --overwrite

``--photos`` holds ``images/<name>.<ext>`` and ``masks/<name>.png`` (255 = foreground). Each photo
goes to one domain, and inside it to one split; each domain imitates one of iHarmony4's
foreground-adjustment processes (see DESIGN.md and ``domains.transfer``). Same seed → same bytes.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.cli import run, shared_args
from common.io import IMAGE_SUFFIXES, InputError, image_grid, read_pair, write_image, write_text

from . import transfer as T

log = logging.getLogger(__name__)

# name: (stands in for, file prefix, share of photos, composites per real image, processes)
DOMAIN_SPECS = {
    "MiniCOCO": ("HCOCO", "c", 0.40, 4, ("reinhard", "xiao")),
    "MiniAdobe": ("HAdobe5k", "a", 0.32, 5, ("retouch",)),
    "MiniFlickr": ("HFlickr", "f", 0.17, 3, ("histogram", "pitie")),
    "MiniDay2night": ("Hday2night", "d", 0.11, 4, ("illumination",)),
}
MINI4_NAMES = tuple(DOMAIN_SPECS)
MIN_PHOTOS = 8
TEST_FRACTION = 0.25
SAT_MARGIN = 0.03        # allowed increase of the saturated-pixel fraction in the foreground
MIN_FMSE, MAX_FMSE = 60.0, 3000.0  # composite vs real, 0–255 scale: visible but not destroyed


def find_photos(photos) -> list[tuple[str, Path, Path]]:
    """(name, image, mask) for every image with a mask of the same stem."""
    photos = Path(photos)
    idir, mdir = photos / "images", photos / "masks"
    if not idir.is_dir() or not mdir.is_dir():
        raise InputError(f"{photos}: expected images/ and masks/ folders")
    out, unmatched = [], []
    for p in sorted(idir.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = mdir / (p.stem + ".png")
        (out.append((p.stem, p, m)) if m.exists() else unmatched.append(p.name))
    if unmatched:
        log.warning("%d image(s) without a mask skipped, e.g. %s", len(unmatched), unmatched[:3])
    return out


def allocate(n: int) -> dict[str, int]:
    """Photos per domain: shares with at least 2 each (one train, one test)."""
    counts = {d: max(2, int(n * spec[2])) for d, spec in DOMAIN_SPECS.items()}
    while sum(counts.values()) > n:
        big = max(counts, key=counts.get)
        counts[big] -= 1
    counts[max(counts, key=lambda d: DOMAIN_SPECS[d][2])] += n - sum(counts.values())
    return counts


def resize_max(x: torch.Tensor, max_side: int) -> torch.Tensor:
    h, w = x.shape[1:]
    s = max_side / max(h, w)
    if s >= 1:
        return x
    return F.interpolate(x[None], size=(round(h * s), round(w * s)), mode="bilinear",
                         antialias=True, align_corners=False)[0].clamp(0, 1)


def _fg_pixels(image: torch.Tensor, mask: torch.Tensor, whole: bool, n: int = 20000,
               rng: np.random.Generator | None = None) -> np.ndarray:
    px = image.permute(1, 2, 0).reshape(-1, 3).double().numpy()
    if not whole:
        px = px[mask[0].reshape(-1).numpy() > 0.5]
    if len(px) > n:
        px = px[rng.choice(len(px), n, replace=False)]
    return px


def saturated_fraction(image: torch.Tensor, mask: torch.Tensor) -> float:
    fg = mask[0] > 0.5
    sat = ((image <= 0.5 / 255) | (image >= 254.5 / 255)).any(0)
    return float(sat[fg].float().mean())


def fmse255(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = (mask > 0.5).float()
    return float(((a - b) * 255).pow(2).mul(m).sum() / (3 * m.sum()))


def make_composite(image, mask, method, rng, refs):
    """Try up to 12 parameter draws; keep the first plausible one (else the least bad)."""
    base_sat = saturated_fraction(image, mask)
    best = None
    for attempt in range(12):
        rec = {"method": method}
        if method in T.LOOKS:
            params = T.sample_retouch(rng) if method == "retouch" else T.sample_illumination(rng)
            comp = T.transfer(image, mask, method, params=params)
            rec["params"] = params
        else:
            ref_name, ref_img, ref_mask = refs[int(rng.integers(len(refs)))]
            whole = bool(rng.random() < 0.5)
            strength = float(rng.uniform(0.6, 1.0))
            seed = int(rng.integers(2 ** 31))
            ref = _fg_pixels(ref_img, ref_mask, whole, rng=rng)
            comp = T.transfer(image, mask, method, ref=ref, strength=strength, seed=seed)
            rec["params"] = {"reference": ref_name, "region": "image" if whole else "foreground",
                             "strength": strength, "seed": seed}
        sat = saturated_fraction(comp, mask) - base_sat
        fm = fmse255(comp, image, mask)
        bad = max(0.0, sat - SAT_MARGIN) * 1e4 + max(0.0, MIN_FMSE - fm) + max(0.0, fm - MAX_FMSE) / 10
        rec.update(fmse=round(fm, 2), saturated_increase=round(sat, 4), attempts=attempt + 1)
        if best is None or bad < best[0]:
            best = (bad, comp, rec)
        if bad == 0:
            break
    return best[1], best[2]


def build(photos="assets/photos", out="data/mini4", seed: int = 0, max_side: int = 512,
          overwrite: bool = False) -> Path:
    """Write the four domains under ``out`` (refuses an existing ``out`` unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty (pass --overwrite to rebuild it)")
    items = find_photos(photos)
    if len(items) < MIN_PHOTOS:
        raise InputError(f"{photos}: found {len(items)} photo(s) with masks; the benchmark needs at "
                         f"least {MIN_PHOTOS} (each of 4 domains needs a train and a test photo)")
    rng = np.random.default_rng(seed)
    order = [items[i] for i in rng.permutation(len(items))]
    counts = allocate(len(order))
    loaded = {}
    for name, ip, mp in tqdm(order, desc="read photos", unit="photo"):
        img, m = read_pair(ip, mp)
        loaded[name] = (resize_max(img, max_side), (resize_max(m, max_side) > 0.5).float())

    plan, start = {}, 0  # domain -> {split: [names]}
    for d, n in counts.items():
        names = [nm for nm, _, _ in order[start:start + n]]
        start += n
        n_test = min(n - 1, max(1, round(n * TEST_FRACTION)))
        plan[d] = {"test": names[:n_test], "train": names[n_test:]}
    pools = {s: [(nm, *loaded[nm]) for d in plan for nm in plan[d][s]] for s in ("train", "test")}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    manifest = {"seed": seed, "photos": str(photos), "max_side": max_side, "domains": {}}
    ihd = {"train": [], "test": []}
    try:
        total = sum(len(v["train"]) + len(v["test"]) for v in plan.values())
        bar = tqdm(total=total, desc="compose", unit="photo")
        for di, (d, splits) in enumerate(plan.items()):
            stands_for, prefix, _, k_per, methods = DOMAIN_SPECS[d]
            ddir = tmp / d
            for sub in ("composite_images", "masks", "real_images"):
                (ddir / sub).mkdir(parents=True)
            entries, lists, preview = [], {"train": [], "test": []}, []
            idx = 0
            for split in ("train", "test"):
                for name in splits[split]:
                    idx += 1
                    rid = f"{prefix}{idx:04d}"
                    img, m = loaded[name]
                    write_image(img, ddir / "real_images" / f"{rid}.jpg")
                    write_image(m, ddir / "masks" / f"{rid}_1.png")
                    refs = [r for r in pools[split] if r[0] != name]
                    for k in range(1, k_per + 1):
                        crng = np.random.default_rng([seed, di, idx, k])
                        method = methods[int(crng.integers(len(methods)))]
                        comp, rec = make_composite(img, m, method, crng, refs)
                        cname = f"{rid}_1_{k}.jpg"
                        write_image(comp, ddir / "composite_images" / cname)
                        lists[split].append(cname)
                        ihd[split].append(f"{d}/composite_images/{cname}")
                        entries.append({"composite": cname, "real": f"{rid}.jpg", "mask": f"{rid}_1.png",
                                        "photo": name, "split": split, **rec})
                        if len(preview) < 8 and k == 1:
                            preview.append([comp, m, img])
                    bar.update()
            for split in ("train", "test"):
                write_text("\n".join(lists[split]) + "\n", ddir / f"{d}_{split}.txt")
            write_image(image_grid(preview, height=160), ddir / "preview.png")
            manifest["domains"][d] = {"stands_in_for": stands_for, "processes": list(methods),
                                      "photos": splits, "composites": entries}
        bar.close()
        for split in ("train", "test"):
            write_text("\n".join(ihd[split]) + "\n", tmp / f"IHD_{split}.txt")
        write_text(json.dumps(manifest, indent=1) + "\n", tmp / "manifest.json")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    counts = ", ".join(f"{d}: {len(v['train'])}+{len(v['test'])}" for d, v in plan.items())
    print(f"wrote {out} (train+test photos: {counts})")
    return out


@shared_args
def main(photos="assets/photos", out="data/mini4", seed: int = 0, max_side: int = 512,
         overwrite: bool = False) -> None:
    """Build the offline benchmark (four domains in the iHarmony4 layout) from photos and masks.

    Args:
        photos: folder with images/ and masks/ (and optionally a manifest that assigns domains).
        out: output dataset root.
        seed: random seed: the same seed gives byte-identical output.
        max_side: photos are scaled to this long side.
    """
    build(photos, out, seed, max_side, overwrite)


CLI = main

if __name__ == "__main__":
    run(CLI)
