"""Image and mask IO shared by every package.

Conventions (docs/reference.md, "Conventions"): images are float32 tensors ``3×H×W`` in [0, 1], RGB; masks ``1×H×W`` in
[0, 1] with 1 = foreground. Every reader applies the EXIF orientation and converts grey, palette,
RGBA, CMYK and 16-bit files explicitly. Every problem with a file is an :class:`InputError` whose
message names the file and the problem in one line; CLIs turn it into a non-zero exit.
Writers never overwrite an existing file unless asked and write atomically (temp file + rename).

torch is imported only by the functions that return or take tensors, so that the ONNX Runtime
predict path (``router.fast``) reads and writes images without it: ``read_image_array`` and
``read_mask_array`` are the numpy readers that ``read_image`` and ``read_mask`` wrap.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pixel limit for any image we decode. Pillow's decompression-bomb guard (~179 MP) is a second line,
# not the only one; callers and the HARMONY_MAX_PIXELS environment variable can change ours.
DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
WRITE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


class InputError(ValueError):
    """Bad user input (file missing, unreadable, wrong size, ...). The message is one line."""


class BatchError(InputError):
    """Some members of a batch failed (the others' results are kept): one line per failure."""

    def __init__(self, failures: list[str], total: int, what: str = "composites"):
        self.failures = list(failures)
        lines = [f"{len(failures)} of {total} {what} failed (the other results are written):"]
        super().__init__("\n".join(lines + [f"  {f}" for f in failures]))


def env_megabytes(name: str, default: float) -> float:
    """A memory budget in megabytes from the environment variable ``name`` (``default`` when unset)."""
    v = os.environ.get(name)
    if v is None:
        return float(default)
    try:
        return float(v)
    except ValueError:
        raise InputError(f"{name}={v!r}: not a number of megabytes") from None


def max_pixels() -> int:
    return int(os.environ.get("HARMONY_MAX_PIXELS", DEFAULT_MAX_PIXELS))


_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that transpose the stored image


def _transposed(img: Image.Image) -> bool:
    """Whether the EXIF orientation swaps the stored image's axes (a broken EXIF block: no)."""
    try:
        return img.getexif().get(0x0112) in _SWAPS_AXES
    except Exception:
        return False


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file as the readers return it (after the EXIF orientation), from its
    header only."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            turned = _transposed(img)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read") from None
    except OSError as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    return (w, h) if turned else (h, w)


class Upload(io.BytesIO):
    """An image's bytes that every reader here takes in place of a path (an upload to the web app):
    read the same way, refused with the same messages, ``name`` naming it in them."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def _open(path: str | os.PathLike | Upload, limit: int | None, at_least: tuple[int, int] | None = None) -> Image.Image:
    """Open, check the pixel limit, decode and apply the EXIF orientation. ``at_least = (H, W)``
    lets a JPEG decode at a reduced DCT scale (1/2, 1/4, 1/8) whose size is still at least that
    (oriented), 4–40× faster on large photos; other formats decode at full size."""
    if isinstance(path, Upload):
        path.seek(0)
        if not path.getbuffer().nbytes:
            raise InputError(f"{path}: empty file")
    else:
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: file not found")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
    limit = max_pixels() if limit is None else limit
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    w, h = img.size
    if w * h > limit:
        img.close()
        raise InputError(f"{path}: image has {w}x{h} = {w * h} pixels, over the limit of {limit} "
                         "(set HARMONY_MAX_PIXELS or max_pixels to raise it)")
    if at_least is not None and img.format == "JPEG":
        h_min, w_min = at_least
        img.draft(img.mode, (h_min, w_min) if _transposed(img) else (w_min, h_min))
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: truncated or corrupt image ({e})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        pass
    return img


def _to_float_array(img: Image.Image, path) -> np.ndarray:
    """Any Pillow mode → float32 H×W×C in [0, 1] (C = 1, 3 or 4), converting explicitly."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        return arr[..., None]
    if mode == "I":  # 32-bit int; 16-bit PNGs often open like this
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / peak, 0, 1)[..., None]
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return np.clip(arr / peak, 0, 1)[..., None]
    if mode in ("1", "L"):
        return (np.asarray(img.convert("L"), dtype=np.float32) / 255.0)[..., None]
    if mode == "LA":
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode not in ("RGB", "RGBA"):
        try:
            img = img.convert("RGB")
        except Exception as e:
            raise InputError(f"{path}: unsupported image mode {mode!r} ({e})") from None
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image_array(path: str | os.PathLike, max_pixels: int | None = None,
                     at_least: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as RGB float32 ``H×W×3`` in [0, 1].

    Grey (L, 16-bit) is repeated to three channels, palette and CMYK are converted to RGB, and the
    alpha channel of RGBA / LA images is dropped (the colour values are kept as stored).
    ``at_least = (H, W)``: a JPEG may come back smaller than the file, but at least that size
    (reduced DCT decoding; for loaders that shrink the image anyway).
    """
    img = _open(path, max_pixels, at_least)
    arr = _to_float_array(img, path)
    if arr.shape[2] in (1, 2):
        arr = np.repeat(arr[..., :1], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def read_rgba_array(path: str | os.PathLike | Upload, max_pixels: int | None = None) -> np.ndarray:
    """Read an image with its alpha (a cut-out) as float32 ``H×W×4`` in [0, 1]; a file without an
    alpha channel is opaque (alpha 1)."""
    img = _open(path, max_pixels)
    arr = _to_float_array(img, path)
    c = arr.shape[2]
    rgb = np.repeat(arr[..., :1], 3, axis=2) if c in (1, 2) else arr[..., :3]
    alpha = arr[..., -1:] if c in (2, 4) else np.ones_like(arr[..., :1])
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


def read_image_u8(path: str | os.PathLike, max_pixels: int | None = None,
                  at_least: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`read_image_array` as uint8 ``H×W×3``: 8-bit RGB and grey files come as stored (no
    float pass), anything else through the float reading, rounded."""
    img = _open(path, max_pixels, at_least)
    if img.mode == "RGB":
        return np.asarray(img)
    if img.mode == "L":
        return np.repeat(np.asarray(img)[..., None], 3, axis=2)
    arr = _to_float_array(img, path)
    if arr.shape[2] in (1, 2):
        arr = np.repeat(arr[..., :1], 3, axis=2)
    return np.rint(arr[..., :3] * 255).astype(np.uint8)


def read_image_chw_u8(path: str | os.PathLike, max_pixels: int | None = None,
                      at_least: tuple[int, int] | None = None):
    """:func:`read_image_u8` as a ``3×H×W`` uint8 tensor for the training loader: a channels-last
    view of the decoded pixels, with no transposing copy (torchvision's 8-bit resize reads that
    layout directly)."""
    import torch
    u = read_image_u8(path, max_pixels, at_least)
    return torch.from_numpy(u if u.flags.writeable else u.copy()).permute(2, 0, 1)


def read_mask_u8(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_mask_array` rounded to 8 bits (``H×W`` uint8, 255 = foreground): an 8-bit grey
    mask without a noise floor comes as stored, with no float pass; anything else is read by
    :func:`read_mask_array` and rounded."""
    img = _open(path, max_pixels)
    if img.mode == "L":
        arr = np.array(img)  # a writable copy
        if arr.max(initial=0) == 1:  # a label mask
            return (arr != 0).astype(np.uint8) * np.uint8(255)
        if _floor_level(np.bincount(_subsample(arr).ravel(), minlength=256)[:128]) is None:
            return arr
    return np.rint(read_mask_array(path, max_pixels) * 255).astype(np.uint8)


def read_mask_array(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a foreground mask as float32 ``H×W`` in [0, 1] (1 = foreground), by its content, the way
    a person reads the file, whatever its mode:

    - an 8-bit grey file holding only 0 and 1, or a palette file using index 0 and one other, is a
      label mask (non-zero = foreground; VOC-style palette masks);
    - an RGBA / LA file whose alpha has transparent pixels is a cut-out: its alpha is the mask; one
      whose alpha is opaque everywhere (at least 0.5, as some tools store grey masks) is read by its
      colour channels;
    - a colour file is read by its luminance; one that holds a colourful, many-coloured picture is
      refused as a photo (an image and mask given the wrong way round);
    - a grey mask whose background sits on a noise floor (e.g. 22 instead of 0) is stretched so
      that its background reads 0 (soft edges stay soft; a clean mask is returned as stored).
    """
    img = _open(path, max_pixels)
    if img.mode == "P" and "transparency" not in img.info:
        idx = np.asarray(img)
        used = np.unique(idx)
        if len(used) == 2 and used[0] == 0:
            return np.ascontiguousarray((idx != 0).astype(np.float32))
    if img.mode == "L":
        arr = np.asarray(img)
        if arr.max(initial=0) == 1:
            return np.ascontiguousarray(arr.astype(np.float32))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0
        if alpha.min() < 0.5:  # transparent somewhere: a cut-out, its alpha is the mask
            return np.ascontiguousarray(alpha)
        img = rgba.convert("RGB")
    arr = _to_float_array(img, path)
    if arr.shape[2] >= 3:
        if looks_like_photo(arr[..., :3]):
            raise InputError(f"{path}: looks like a photo, not a mask (many colours); give the image first "
                             "and the mask second")
        arr = (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2])[..., None]
    return np.ascontiguousarray(_stretch_levels(arr[..., 0]))


def _subsample(arr: np.ndarray, n: int = 65536) -> np.ndarray:
    """A strided view of about ``n`` pixels of an ``H×W[×C]`` array (for cheap content checks)."""
    step = max(1, int(math.sqrt(arr.shape[0] * arr.shape[1] / n)))
    return arr[::step, ::step]


def looks_like_photo(rgb: np.ndarray) -> bool:
    """Whether an ``H×W×3`` array in [0, 1] is a colourful picture rather than a mask: clearly
    coloured on average and more than 256 distinct colours at 5 bits per channel (a grey mask with
    JPEG artefacts or a few-colour label mask has neither)."""
    a = _subsample(rgb)
    chroma = float((a.max(axis=2) - a.min(axis=2)).mean()) * 255
    if chroma < 8:
        return False
    q = (np.clip(a, 0, 1) * 31 + 0.5).astype(np.int32)
    return len(np.unique(q[..., 0] * 1024 + q[..., 1] * 32 + q[..., 2])) > 256


def looks_like_mask(rgb: np.ndarray) -> bool:
    """Whether an image (``H×W×3`` array or ``3×H×W`` tensor in [0, 1]) is a black-and-white mask
    rather than a photo: grey, nearly every pixel within 10 levels of black or white, and both."""
    if hasattr(rgb, "detach"):  # a tensor: look at it as H×W×3 without importing torch here
        rgb = rgb.detach().float().cpu().numpy().transpose(1, 2, 0)
    a = _subsample(rgb)
    if float((a.max(axis=2) - a.min(axis=2)).mean()) * 255 > 2:
        return False
    g = a[..., 0]
    dark, light = float((g <= 10 / 255).mean()), float((g >= 245 / 255).mean())
    return dark + light >= 0.97 and min(dark, light) >= 0.005


def _stretch_levels(m: np.ndarray) -> np.ndarray:
    """Map a grey mask's background level to 0, so that a noise floor (background at 22 instead of
    0) does not leak into soft blending: ``(m − floor) / (1 − floor)``, clipped. The floor is the
    most common value below 0.5, used only where it is one: at most 64 and holding, ±4 levels, half
    of the pixels below 0.5. Anything else (a clean mask, a soft one) stays exactly as stored."""
    q = np.rint(_subsample(m) * 255).astype(np.int32).ravel()
    lo = _floor_level(np.bincount(q, minlength=256)[:128])
    if lo is None:
        return m
    f = lo / 255.0
    return np.clip((m - f) / (1.0 - f), 0, 1).astype(np.float32)


def _floor_level(counts: np.ndarray) -> int | None:
    """The noise-floor level of a grey mask from the counts of its levels below 128, or None."""
    if not counts.any():
        return None
    lo = int(np.argmax(counts))
    if lo <= 1 or lo > 64 or counts[max(0, lo - 4):lo + 5].sum() < 0.5 * counts.sum():
        return None
    return lo


def read_image(path: str | os.PathLike, max_pixels: int | None = None,
               at_least: tuple[int, int] | None = None) -> torch.Tensor:
    """:func:`read_image_array` as a float32 tensor ``3×H×W`` in [0, 1]."""
    import torch
    arr = read_image_array(path, max_pixels, at_least)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_mask(path: str | os.PathLike, max_pixels: int | None = None) -> torch.Tensor:
    """:func:`read_mask_array` as a float32 tensor ``1×H×W`` in [0, 1] (1 = foreground)."""
    import torch
    return torch.from_numpy(read_mask_array(path, max_pixels)[None].copy())


def check_mask(mask, name: str = "mask") -> None:
    """Refuse a mask (tensor or array) with no foreground or with nothing but foreground
    (binarised at 0.5)."""
    fg = float((mask > 0.5).sum()) / mask.numel() if hasattr(mask, "numel") else float((mask > 0.5).mean())
    if fg == 0.0:
        raise InputError(f"{name}: mask has no foreground (no pixel above 0.5)")
    if fg == 1.0:
        raise InputError(f"{name}: mask is all foreground (no background to harmonize against)")


def check_image(image, name: str = "image") -> None:
    """Refuse an image that is a black-and-white mask (an image and mask given the wrong way round)."""
    if looks_like_mask(image):
        raise InputError(f"{name}: looks like a mask, not a photo (black and white only); give the image "
                         "first and the mask second")


def check_strength(strength) -> float:
    """A harmonization strength (the share of the network's change applied) as a float ≥ 0, or an
    InputError naming the problem."""
    try:
        v = float(strength)
    except (TypeError, ValueError):
        raise InputError(f"--strength must be a number >= 0, got {strength!r}") from None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"--strength must be a number >= 0, got {strength!r}")
    return v


def read_pair(image_path, mask_path, max_pixels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and validate a composite and its mask: same size, some foreground and some background."""
    image = read_image(image_path, max_pixels)
    mask = read_mask(mask_path, max_pixels)
    if image.shape[1:] != mask.shape[1:]:
        raise InputError(f"{mask_path}: mask is {mask.shape[2]}x{mask.shape[1]} but image {image_path} "
                         f"is {image.shape[2]}x{image.shape[1]}")
    check_mask(mask, str(mask_path))
    return image, mask


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``C×H×W`` float in [0, 1] → ``H×W×C`` uint8 (rounded)."""
    import torch
    arr = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(1, 2, 0)


def to_pil(image: torch.Tensor) -> Image.Image:
    arr = to_uint8(image)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def check_new(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a Path, or an :class:`InputError` when it exists and ``overwrite`` is off."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (pass --overwrite to replace it)")
    return path


def image_format(path: str | os.PathLike, what: str = "") -> str:
    """The format an image path's suffix names (``WRITE_FORMATS``), or an :class:`InputError`
    naming the path (after ``what``, e.g. ``--out``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise InputError(f"{what + ' ' if what else ''}{path}: unknown image suffix {suffix!r} (use .png or .jpg"
                         + (", or an existing folder)" if what else ")"))
    return WRITE_FORMATS[suffix]


def atomic_write(path: str | os.PathLike, write_fn, overwrite: bool = False) -> Path:
    """Call ``write_fn(tmp_path)`` then rename onto ``path``; refuse an existing path unless asked."""
    path = check_new(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        try:
            write_fn(tmp)
        except OSError as e:  # disk full, file-size limit, ...: nothing partial is left, and we say why
            raise InputError(f"{path}: could not write it ({e.strerror or e}); nothing was written") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_image(image, path: str | os.PathLike, overwrite: bool = False, quality: int = 95) -> Path:
    """Write a ``C×H×W`` float tensor in [0, 1], a uint8 ``H×W×C`` array or a PIL image.

    The format follows the suffix (JPEG at ``quality``, PNG lossless).
    """
    if hasattr(image, "detach"):  # a tensor (torch is not imported just to ask)
        image = to_pil(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    fmt = image_format(path)
    # PNG: zlib level 1 writes several times faster than Pillow's default 6 for a few % more bytes
    kwargs = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {"compress_level": 1} if fmt == "PNG" else {}
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **kwargs), overwrite)


def write_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    def _w(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return atomic_write(path, _w, overwrite)


COMPOSITE_DIRS = ("composites", "composite", "composite_images", "images", "image", "comp")


def find_pairs(folder, masks=None) -> list[tuple[Path, Path]]:
    """Composite/mask pairs in a folder of real composites, in the layouts public sets use.

    ``folder`` may also be a set's root holding no image itself, only a ``composites/``
    (``composite/``, ``composite_images/``, ``images/``, ``image/``, ``comp/``) folder beside its
    masks folder, as ``eval.userstudy compose`` and DIH's distribution lay them out.

    A composite ``<stem>.<ext>`` pairs with the first of: ``MASKS/<stem>[_mask].*`` (when ``masks``
    is given), else the same in a ``masks`` or ``mask`` folder next to or inside ``folder``, then
    ``<folder>/<stem>_mask.*`` (``.png`` preferred, then any image suffix). Files ending in ``_mask`` or ``_harmonized`` are
    never composites. Raises InputError when nothing pairs up.
    """
    src = Path(folder)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    if masks is not None and not Path(masks).is_dir():
        raise InputError(f"{masks}: not a folder")
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in src.iterdir()):  # a set's root: composites one level down
        sub = next((src / d for d in COMPOSITE_DIRS if (src / d).is_dir()), None)
        if sub is not None:
            src = sub
    dirs = [Path(masks)] if masks is not None else [
        d for d in (src.parent / "masks", src.parent / "mask", src / "masks", src / "mask") if d.is_dir()]
    suffixes = (".png",) + tuple(s for s in IMAGE_SUFFIXES if s != ".png")
    pairs = []
    for p in sorted(src.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.stem.endswith(("_mask", "_harmonized")):
            continue
        cands = [d / f"{p.stem}{tag}{s}" for d in dirs for tag in ("", "_mask") for s in suffixes]
        cands += [src / f"{p.stem}_mask{s}" for s in suffixes]
        m = next((c for c in cands if c.is_file() and c != p), None)
        if m is not None:
            pairs.append((p, m))
    if not pairs:
        where = ", ".join(str(d) for d in dirs) or f"{src}/<stem>_mask.png"
        raise InputError(f"{src}: no composite with a mask (looked in {where})")
    return pairs


def sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (hex)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
