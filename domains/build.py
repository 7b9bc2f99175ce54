"""Build the offline benchmark: four domains in the iHarmony4 layout from photos + masks.

    python -m domains.build --photos assets/photos --out data/mini4 --seed 0
    python -m domains.build --photos my_photos --out data/mine --seed 1 --max_side 768 --overwrite
    python -m domains.build --photos assets/photos,/path/to/labelme/photos=MiniFlickr --out data/v3   # v3

``--photos`` holds ``images/<name>.<ext>`` and ``masks/<name>.png`` (255 = foreground), and
optionally ``manifest.json`` rows ``{"name", "domain"}`` that put each photo in a domain by its
content (the rule is in the README; without them photos are shared out at random) and
``radiance/<name>.png`` for HDR photos. Several folders (comma-separated) are *collections*: each
is assigned to domains and splits on its own, the first exactly as if it were alone (so the
benchmark built from it alone has the same test photos), and every composite records its
collection (``harmonizers.train --balance collection`` weighs them alike); ``FOLDER=DOMAIN`` puts
a whole folder in one domain (v3: LabelMe's outdoor scenes are MiniFlickr photos whatever region
their mask outlines, by the subject rule). Each photo goes to one
domain, and inside it to one split; each domain imitates one of iHarmony4's foreground-adjustment
processes (docs/reference.md, "The offline benchmark", and ``domains.transfer``). Same seed → same
bytes.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.cli import run, shared_args
from common.grid import image_grid
from common.io import IMAGE_SUFFIXES, InputError, read_image, read_pair, write_image, write_text

from . import transfer as T

log = logging.getLogger(__name__)

# name: (stands in for, file prefix, share of photos without a manifest domain, composites per real
# image, processes)
DOMAIN_SPECS = {
    "MiniCOCO": ("HCOCO", "c", 0.40, 4, ("reinhard", "xiao", "histogram", "pitie")),
    "MiniAdobe": ("HAdobe5k", "a", 0.32, 4, ("expert",)),
    "MiniFlickr": ("HFlickr", "f", 0.17, 3, ("reinhard", "xiao", "histogram", "pitie")),
    "MiniDay2night": ("Hday2night", "d", 0.11, 4, ("illumination",)),
}
MINI4_NAMES = tuple(DOMAIN_SPECS)
MIN_PHOTOS = 8
TEST_FRACTION = 0.25
MIN_TEST = 8             # test photos per domain when the domain has at least twice as many
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


def manifest_domains(photos) -> dict[str, str]:
    """name → domain from ``photos/manifest.json`` rows that have a ``domain`` (else empty)."""
    path = Path(photos) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    out = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("domain"):
            if row["domain"] not in DOMAIN_SPECS:
                raise InputError(f"{path}: photo {row.get('name')!r} has domain {row['domain']!r}; "
                                 f"choose from {', '.join(DOMAIN_SPECS)}")
            out[str(row["name"])] = row["domain"]
    return out


def allocate(n: int) -> dict[str, int]:
    """Photos per domain: shares with at least 2 each (one train, one test)."""
    counts = {d: max(2, int(n * spec[2])) for d, spec in DOMAIN_SPECS.items()}
    while sum(counts.values()) > n:
        big = max(counts, key=counts.get)
        counts[big] -= 1
    counts[max(counts, key=lambda d: DOMAIN_SPECS[d][2])] += n - sum(counts.values())
    return counts


def assign(names: list[str], tagged: dict[str, str], rng: np.random.Generator) -> dict[str, list[str]]:
    """Domain → photo names: the manifest's domain where it gives one, else random by shares.

    Photos without a manifest domain are shared out at random only when none has one; otherwise
    they are skipped (a benchmark whose domains differ by content must not mix in random photos).
    """
    if tagged:
        untagged = [n for n in names if n not in tagged]
        if untagged:
            log.warning("%d photo(s) have no domain in the manifest and are left out, e.g. %s",
                        len(untagged), untagged[:3])
        groups = {d: [n for n in names if tagged.get(n) == d] for d in DOMAIN_SPECS}
        small = [d for d, g in groups.items() if len(g) < 2]
        for d in small:
            log.warning("%s: %d photo(s) in the manifest; a domain needs 2 (train + test), skipped",
                        d, len(groups[d]))
        groups = {d: [g[i] for i in rng.permutation(len(g))] for d, g in groups.items() if d not in small}
        if not groups:
            raise InputError("no domain has 2 photos in the manifest")
        return groups
    if len(names) < MIN_PHOTOS:
        raise InputError(f"found {len(names)} photo(s) with masks; the benchmark needs at least "
                         f"{MIN_PHOTOS} (each of 4 domains needs a train and a test photo), or a "
                         "manifest.json that gives each photo its domain")
    order = [names[i] for i in rng.permutation(len(names))]
    groups, start = {}, 0
    for d, n in allocate(len(order)).items():
        groups[d], start = order[start:start + n], start + n
    return groups


def split(names: list[str]) -> dict[str, list[str]]:
    """A quarter for test, at least one and at least MIN_TEST while the domain has twice as many."""
    n = len(names)
    n_test = min(n - 1, max(1, min(MIN_TEST, n // 2), round(n * TEST_FRACTION)))
    return {"test": names[:n_test], "train": names[n_test:]}


def resize_max(x: torch.Tensor, max_side: int) -> torch.Tensor:
    h, w = x.shape[1:]
    s = max_side / max(h, w)
    if s >= 1:
        return x
    return F.interpolate(x[None], size=(round(h * s), round(w * s)), mode="bilinear",
                         antialias=True, align_corners=False)[0].clamp(0, 1)


def _fg_pixels(image: torch.Tensor, mask: torch.Tensor, n: int = 20000,
               rng: np.random.Generator | None = None) -> np.ndarray:
    px = image.permute(1, 2, 0).reshape(-1, 3)[mask[0].reshape(-1) > 0.5].double().numpy()
    if len(px) > n:
        px = px[rng.choice(len(px), n, replace=False)]
    return px


def saturated_fraction(image: torch.Tensor, mask: torch.Tensor) -> float:
    fg = mask[0] > 0.5
    sat = (image.amin(0) <= 0.5 / 255) | (image.amax(0) >= 254.5 / 255)  # any channel at an end
    return float(torch.tensor(float((sat & fg).sum()), dtype=torch.float32) / int(fg.sum()))  # float32, as a mean


def fmse255(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = (mask > 0.5).float()
    return float(((a - b) * 255).pow(2).mul(m).sum() / (3 * m.sum()))


def make_composite(image, mask, method, rng, refs, headroom=None):
    """Try up to 12 parameter draws; keep the first plausible one (else the least bad).

    ``refs`` are (name, image, mask) of other photos whose foregrounds the colour transfers copy;
    ``headroom`` (HDR photos only) lets ``illumination`` re-expose the scene radiance.
    """
    base_sat = saturated_fraction(image, mask)
    best = None
    for attempt in range(12):
        comp, params = _draw(image, mask, method, rng, refs, headroom)
        sat = saturated_fraction(comp, mask) - base_sat
        fm = fmse255(comp, image, mask)
        bad = max(0.0, sat - SAT_MARGIN) * 1e4 + max(0.0, MIN_FMSE - fm) + max(0.0, fm - MAX_FMSE) / 10
        rec = {"method": method, "params": params, "fmse": round(fm, 2),
               "saturated_increase": round(sat, 4), "attempts": attempt + 1}
        if best is None or bad < best[0]:
            best = (bad, comp, rec)
        if bad == 0:
            break
    return best[1], best[2]


def _draw(image, mask, method, rng, refs, headroom):
    """One composite with freshly drawn parameters: (composite, parameters)."""
    if method == "illumination" and headroom is not None:
        params = T.sample_illumination(rng)
        return mask * T.relight_hdr(image, headroom, params) + (1 - mask) * image, \
            dict(params, radiance=True)
    if method in T.LOOKS:
        params = T.sample_retouch(rng) if method == "retouch" else T.sample_illumination(rng)
        return T.transfer(image, mask, method, params=params), params
    if method == "expert":
        k = int(rng.integers(len(T.EXPERTS)))
        return T.look_on(image, mask, T.expert_lut(k), clamp=True), {"expert": k}
    ref_name, ref_img, ref_mask = refs[int(rng.integers(len(refs)))]
    strength = float(rng.uniform(0.6, 1.0))
    seed = int(rng.integers(2 ** 31))
    ref = _fg_pixels(ref_img, ref_mask, rng=rng)
    comp = T.transfer(image, mask, method, ref=ref, strength=strength, seed=seed)
    return comp, {"reference": ref_name, "region": "foreground", "strength": strength, "seed": seed}


def _load(items, names, photos, max_side):
    """name → (image, mask, headroom or None) at ``max_side`` for the photos in ``names``."""
    loaded = {}
    for name, ip, mp in tqdm([it for it in items if it[0] in names], desc="read photos", unit="photo"):
        img, m = read_pair(ip, mp)
        hr = Path(photos) / "radiance" / f"{name}.png"
        headroom = None
        if hr.is_file():   # HDR photo: log2 radiance above white ×16 (scripts/photo_pool.py)
            h = read_image(hr)
            if h.shape[1:] == img.shape[1:]:
                headroom = resize_max(h * (255 / 16), max_side)
        loaded[name] = (resize_max(img, max_side), (resize_max(m, max_side) > 0.5).float(), headroom)
    return loaded


def _photo_composites(d, di, idx, name, photo, split_name, pools, seed):
    """(real image, [(composite, record)]) of one photo in domain ``d``."""
    img, m, headroom = photo
    _, _, _, k_per, methods = DOMAIN_SPECS[d]
    if methods == ("expert",):    # HAdobe5k: ground truth by one expert, foregrounds by the others
        j = int(np.random.default_rng([seed, di, idx, 0]).integers(len(T.EXPERTS)))
        real = T.render_expert(img, j)
        comps = []
        for k in [k for k in range(len(T.EXPERTS)) if k != j][:k_per]:
            fg = T.render_expert(img, k)
            comps.append((m * fg + (1 - m) * real, {"method": "expert", "params": {"foreground": k, "real": j},
                                                    "fmse": round(fmse255(fg, real, m), 2)}))
        return real, comps
    refs = [r for r in pools[split_name] if r[0] != name]
    out = []
    for k in range(1, k_per + 1):
        crng = np.random.default_rng([seed, di, idx, k])
        method = methods[int(crng.integers(len(methods)))]
        out.append(make_composite(img, m, method, crng, refs, headroom))
    return img, out


def _write_domain(root: Path, d: str, plan: dict, loaded: dict, pools: dict, seed: int, bar):
    """Write one domain's folder; returns its manifest entry and its composite lists."""
    stands_for, prefix, _, _, methods = DOMAIN_SPECS[d]
    di = MINI4_NAMES.index(d)
    ddir = root / d
    for sub in ("composite_images", "masks", "real_images"):
        (ddir / sub).mkdir(parents=True)
    entries, lists, preview, idx = [], {"train": [], "test": []}, [], 0
    for split_name in ("train", "test"):
        for name in plan[split_name]:
            idx += 1
            rid = f"{prefix}{idx:04d}"
            m = loaded[name][1]
            real, comps = _photo_composites(d, di, idx, name, loaded[name], split_name, pools, seed)
            write_image(real, ddir / "real_images" / f"{rid}.jpg")
            write_image(m, ddir / "masks" / f"{rid}_1.png")
            for k, (comp, rec) in enumerate(comps, 1):
                cname = f"{rid}_1_{k}.jpg"
                write_image(comp, ddir / "composite_images" / cname)
                lists[split_name].append(cname)
                entries.append({"composite": cname, "real": f"{rid}.jpg", "mask": f"{rid}_1.png",
                                "photo": name, "split": split_name, **rec})
                if len(preview) < 8 and k == 1:
                    preview.append([comp, m, real])
            bar.update()
    for split_name in ("train", "test"):
        write_text("\n".join(lists[split_name]) + "\n", ddir / f"{d}_{split_name}.txt")
    write_image(image_grid(preview, height=160), ddir / "preview.png")
    info = {"stands_in_for": stands_for, "processes": list(methods), "photos": plan, "composites": entries}
    return info, lists


def photo_specs(photos) -> list[tuple[str, str | None]]:
    """``--photos`` as (folder, domain or None) pairs: a comma-separated string, a list or one path;
    ``FOLDER=DOMAIN`` puts every photo of that folder in DOMAIN whatever its manifest says."""
    items = photos if isinstance(photos, (list, tuple)) else str(photos).split(",")
    out = []
    for item in (str(p).strip() for p in items):
        if not item:
            continue
        folder, sep, dom = item.rpartition("=")
        if not sep or not folder:
            out.append((item, None))
        elif dom not in DOMAIN_SPECS:
            raise InputError(f"--photos {item}: {dom!r} is not a domain; domains: {', '.join(DOMAIN_SPECS)}")
        else:
            out.append((folder, dom))
    if not out:
        raise InputError("--photos: no folder given")
    return out


def photo_folders(photos) -> list[str]:
    """``--photos`` as a list of folders (:func:`photo_specs` without the domains)."""
    return [f for f, _ in photo_specs(photos)]


def _plan_collections(specs: list[tuple[str, str | None]], rng) -> tuple[dict, dict, list]:
    """(domain → split → names, name → collection, [(name, image, mask, folder)]): each folder
    assigned (to its ``FOLDER=DOMAIN`` domain, else by its manifest) and split on its own, in order,
    the first drawing from ``rng`` as a lone folder does."""
    plan, collection, items = {}, {}, []
    for ci, (folder, forced) in enumerate(specs):
        found = find_photos(folder)
        clash = sorted({n for n, _, _ in found} & set(collection))
        if clash:
            raise InputError(f"{folder}: photo name(s) also in an earlier folder, e.g. {clash[:3]}; names must be unique")
        r = rng if ci == 0 else np.random.default_rng([int(rng.integers(2 ** 31)), ci])
        try:
            by_name = {n: forced for n, _, _ in found} if forced else manifest_domains(folder)
            groups = assign([n for n, _, _ in found], by_name, r)
        except InputError as e:
            raise InputError(f"{folder}: {e}") from None
        for d, g in groups.items():
            part = split(g)
            dst = plan.setdefault(d, {"train": [], "test": []})
            for sp in ("train", "test"):
                dst[sp] += part[sp]
            collection.update({n: folder for n in g})
        items += [(n, ip, mp, folder) for n, ip, mp in found]
    return {d: plan[d] for d in DOMAIN_SPECS if d in plan}, collection, items


def build(photos="assets/photos", out="data/mini4", seed: int = 0, max_side: int = 512,
          overwrite: bool = False) -> Path:
    """Write the domains under ``out`` (refuses an existing ``out`` unless ``overwrite``).

    A photo's domain comes from its folder's ``manifest.json`` (its ``domain`` field) where the
    manifest gives one; a folder without domains is shared out at random; ``FOLDER=DOMAIN`` puts a
    whole folder in one domain. ``photos`` may name several folders (collections, see the module
    docstring).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty (pass --overwrite to rebuild it)")
    specs = photo_specs(photos)
    folders = [f for f, _ in specs]
    rng = np.random.default_rng(seed)
    plan, collection, items = _plan_collections(specs, rng)
    names = {n for d in plan.values() for sp in d.values() for n in sp}
    loaded = {}
    for folder in folders:
        loaded.update(_load([(n, ip, mp) for n, ip, mp, f in items if f == folder], names, folder, max_side))
    pools = {s: [(nm, *loaded[nm][:2]) for d in plan for nm in plan[d][s]] for s in ("train", "test")}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    manifest = {"seed": seed, "photos": folders[0] if len(folders) == 1 else folders, "max_side": max_side,
                "domains": {}}
    if any(d for _, d in specs):
        manifest["folder_domains"] = {f: d for f, d in specs if d}
    ihd = {"train": [], "test": []}
    try:
        bar = tqdm(total=len(names), desc="compose", unit="photo")
        for d in plan:
            manifest["domains"][d], lists = _write_domain(tmp, d, plan[d], loaded, pools, seed, bar)
            if len(folders) > 1:
                for c in manifest["domains"][d]["composites"]:
                    c["collection"] = collection[c["photo"]]
            for split_name in ("train", "test"):
                ihd[split_name] += [f"{d}/composite_images/{c}" for c in lists[split_name]]
        bar.close()
        for split_name in ("train", "test"):
            write_text("\n".join(ihd[split_name]) + "\n", tmp / f"IHD_{split_name}.txt")
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


def source_of(package: str) -> str:
    """A photo's source: its package's name without version and platform (``gcompris-qt-data``)."""
    m = re.match(r"[A-Za-z][\w.+-]*?(?=[-_ ]\d| |$)", package)
    return m.group(0) if m else package


def photo_source(row: dict) -> str:
    """The source of a photo manifest row: its package's name (:func:`source_of`) where it names a
    ``source_package`` (the bundled photos), else its ``source`` (LabelMe), else ``unknown``."""
    return source_of(row["source_package"]) if "source_package" in row else row.get("source", "unknown")


def _bench_manifest(data) -> dict | None:
    man = Path(data) / "manifest.json"
    if not man.is_file():
        return None
    bench = json.loads(man.read_text())
    return bench if "domains" in bench else None


def composite_sources(data) -> dict[str, str]:
    """Composite file name → source of its photo, for a benchmark built by :func:`build` (whose
    photo manifests name each photo's ``source_package`` or ``source``); empty for other data
    (iHarmony4)."""
    bench = _bench_manifest(data)
    if bench is None or not bench.get("photos"):
        return {}
    src = {}
    for folder in photo_folders(bench.get("photos", "")):
        if not (Path(folder) / "manifest.json").is_file():
            continue
        for r in json.loads((Path(folder) / "manifest.json").read_text()):
            src[r["name"]] = photo_source(r)
    if not src:
        return {}
    return {c["composite"]: src.get(c["photo"], "unknown") for d in bench["domains"].values() for c in d["composites"]}


def composite_collections(data) -> dict[str, str]:
    """Composite file name → the photo folder (collection) it came from, for a benchmark built from
    several folders; empty otherwise."""
    bench = _bench_manifest(data)
    if bench is None:
        return {}
    return {c["composite"]: c["collection"] for d in bench["domains"].values() for c in d["composites"]
            if "collection" in c}


@shared_args
def main(photos="assets/photos", out="data/mini4", seed: int = 0, max_side: int = 512,
         overwrite: bool = False) -> None:
    """Build the offline benchmark (four domains in the iHarmony4 layout) from photos and masks.

    Args:
        photos: folder with images/ and masks/ (and optionally a manifest that assigns domains);
            several folders comma-separated (each a collection, the first split as if alone);
            FOLDER=DOMAIN puts every photo of a folder in that domain.
        out: output dataset root.
        seed: random seed: the same seed gives byte-identical output.
        max_side: photos are scaled to this long side.
    """
    build(photos, out, seed, max_side, overwrite)


CLI = main

if __name__ == "__main__":
    run(CLI)
