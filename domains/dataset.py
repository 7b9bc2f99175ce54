"""Reader for the iHarmony4 layout and the torch ``Dataset`` on top of it.

Layout: ``<root>/<Domain>/{composite_images,masks,real_images}/`` with ``<Domain>_train.txt`` and
``<Domain>_test.txt`` inside each domain folder (or at the root), and optionally the combined
``<root>/IHD_train.txt`` / ``IHD_test.txt`` whose entries start with the domain folder. A list
entry may be a bare file name (``a0001_1_2.jpg``), ``composite_images/a0001_1_2.jpg`` or
``<Domain>/composite_images/a0001_1_2.jpg``. Composite ``x_1_2.jpg`` has mask ``x_1.png`` and real
image ``x.jpg`` (the split is on the last underscores, so ``x`` may itself contain underscores).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from common.io import InputError, env_megabytes, image_size, read_image_chw_u8, read_mask_u8

IHARMONY4 = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
MINI4 = ("MiniCOCO", "MiniAdobe", "MiniFlickr", "MiniDay2night")
SPLITS = ("train", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


@dataclass(frozen=True)
class Sample:
    domain: str
    composite: Path
    mask: Path
    real: Path


def is_domain_dir(path: Path) -> bool:
    return all((path / d).is_dir() for d in ("composite_images", "masks", "real_images"))


def list_domains(root) -> list[str]:
    """Domain folders under ``root`` in iHarmony4 layout (known names first, in their usual order)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset root not found")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and is_domain_dir(p))
    order = {n: i for i, n in enumerate(MINI4 + IHARMONY4)}
    found.sort(key=lambda n: (order.get(n, len(order)), n))
    if not found:
        raise InputError(f"{root}: no domain folder with composite_images/, masks/ and real_images/")
    return found


def resolve_domains(root, domains) -> list[str]:
    """``'all'``, a comma-separated string or a list → validated domain names present under root."""
    present = list_domains(root)
    if domains in (None, "all", ("all",), ["all"]):
        return present
    if isinstance(domains, str):
        domains = [d for d in domains.split(",") if d]
    missing = [d for d in domains if d not in present]
    if missing:
        raise InputError(f"{root}: unknown domain(s) {missing}; present: {present}")
    return list(domains)


def _find_real(real_dir: Path, stem: str) -> Path:
    for ext in IMAGE_EXTS:
        p = real_dir / (stem + ext)
        if p.exists():
            return p
    return real_dir / (stem + ".jpg")


def sample_from_entry(root: Path, domain: str, entry: str) -> Sample:
    """Map one list entry to its composite, mask and real paths (not checked for existence)."""
    parts = Path(entry.strip().replace("\\", "/")).parts
    if len(parts) > 1 and parts[0] == domain:
        parts = parts[1:]
    name = parts[-1]
    ddir = root / domain
    comp = ddir.joinpath(*parts) if len(parts) > 1 else ddir / "composite_images" / name
    stem = Path(name).stem
    pieces = stem.rsplit("_", 2)
    if len(pieces) < 3:
        raise InputError(f"{entry}: composite name must look like <real>_<mask>_<k>.jpg")
    return Sample(domain, comp, ddir / "masks" / (f"{pieces[0]}_{pieces[1]}.png"),
                  _find_real(ddir / "real_images", pieces[0]))


def _read_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def load_samples(root, domains="all", split: str = "train", check: bool = True) -> list[Sample]:
    """All samples of ``split`` in ``domains``; every path is checked to exist and lie inside root."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    names = resolve_domains(root, domains)
    samples: list[Sample] = []
    for d in names:
        for cand in (root / d / f"{d}_{split}.txt", root / f"{d}_{split}.txt"):
            if cand.is_file():
                samples += [sample_from_entry(root, d, e) for e in _read_list(cand)]
                break
        else:
            ihd = root / f"IHD_{split}.txt"
            if not ihd.is_file():
                raise InputError(f"{root / d}: no {d}_{split}.txt and no {ihd.name} at the root")
            for e in _read_list(ihd):
                if Path(e).parts[0] == d:
                    samples.append(sample_from_entry(root, d, "/".join(Path(e).parts[1:])))
    if check:
        _check_samples(root, samples)
    return samples


def split_holdout(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Split training samples into (fit, validation) by real image, so that no photo is on both
    sides: the ``max(1, round(fraction·n))`` real images whose names hash lowest (SHA-1 of
    ``domain/file``, the same on every machine) go to validation. Nothing is held out when
    ``fraction`` is 0 or there are fewer than 2 real images. iHarmony4 ships train and test lists
    only; validating on test would pick checkpoints on the data the paper's numbers are read on."""
    reals = sorted({(s.domain, s.real.name) for s in samples})
    if fraction <= 0 or len(reals) < 2:
        return list(samples), []
    key = lambda r: hashlib.sha1(f"{r[0]}/{r[1]}".encode()).hexdigest()  # noqa: E731
    held = set(sorted(reals, key=key)[:max(1, round(fraction * len(reals)))])
    fit = [s for s in samples if (s.domain, s.real.name) not in held]
    return fit, [s for s in samples if (s.domain, s.real.name) in held]


def subset_photos(samples: list[Sample], n: int, seed: int = 0) -> list[Sample]:
    """The samples of ``n`` real images: those whose SHA-1 (of ``seed/domain/file``) is lowest, so
    that for one seed the subsets are nested (200 ⊂ 400 ⊂ 800) and the same on every machine."""
    reals = sorted({(s.domain, s.real.name) for s in samples})
    if n <= 0 or n >= len(reals):
        return list(samples)
    key = lambda r: hashlib.sha1(f"{seed}/{r[0]}/{r[1]}".encode()).hexdigest()  # noqa: E731
    keep = set(sorted(reals, key=key)[:n])
    return [s for s in samples if (s.domain, s.real.name) in keep]


def group_weights(samples: list[Sample], groups: dict[str, str]) -> np.ndarray:
    """Sampling weights under which every group (a photo folder, a source: ``groups`` maps a
    composite's file name to it; unknown ones form one group) weighs the same in total, and the
    samples inside a group alike. Sums to 1."""
    keys = [groups.get(s.composite.name, "unknown") for s in samples]
    count = Counter(keys)
    w = np.array([1.0 / count[k] for k in keys])
    return w / w.sum()


def photo_fold(domain: str, name: str, folds: int) -> int:
    """The fold of a real image: its SHA-1 (of ``domain/file``, as :func:`split_holdout`) modulo
    ``folds``. It depends on nothing but the photo, so a domain's folds are the all-domain folds
    restricted to it, and a model finetuned on fold k's complement can start from the base model
    trained on the same complement."""
    return int(hashlib.sha1(f"{domain}/{name}".encode()).hexdigest(), 16) % folds


def split_folds(samples: list[Sample], folds: int, fold: int) -> tuple[list[Sample], list[Sample]]:
    """Fold ``fold`` of ``folds`` by real image (:func:`photo_fold`): (the samples of every other
    fold, this fold's). The folds partition the photos and are the same on every machine; on few
    photos a fold may be empty."""
    if folds < 2 or not 0 <= fold < folds:
        raise InputError(f"fold {fold} of {folds}: at least 2 folds, numbered 0 to {folds - 1}")
    inside = [photo_fold(s.domain, s.real.name, folds) == fold for s in samples]
    return [s for s, i in zip(samples, inside) if not i], [s for s, i in zip(samples, inside) if i]


def _check_samples(root: Path, samples: list[Sample]) -> None:
    rroot = root.resolve()
    outside, missing = [], []
    for s in samples:
        for p in (s.composite, s.mask, s.real):
            rp = p.resolve()
            if rroot not in rp.parents:
                outside.append(str(p))
            elif not rp.is_file():
                missing.append(str(p))
    for bad, what in ((outside, "point outside the dataset root"), (missing, "are missing")):
        if bad:
            uniq = list(dict.fromkeys(bad))
            raise InputError(f"{root}: {len(uniq)} listed file(s) {what}, e.g. {', '.join(uniq[:3])}")


def fingerprint(samples: list[Sample]) -> str:
    """A short hash of the sample list (names, not pixels): recorded in checkpoints."""
    h = hashlib.sha1()
    for s in samples:
        h.update(f"{s.domain}/{s.composite.name}\n".encode())
    return h.hexdigest()[:16]


def default_cache_mb() -> float:
    """The per-process image cache budget: ``HARMONY_CACHE_MB`` or 512."""
    return env_megabytes("HARMONY_CACHE_MB", 512)


class ImageCache(dict):
    """Reduced uint8 images by ``(path, dataset size)``, kept while their bytes fit ``budget``."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget, self.bytes = budget, 0

    def put(self, key, t: torch.Tensor) -> None:
        if self.bytes + t.numel() <= self.budget:
            self[key] = t
            self.bytes += t.numel()


_SHARED: dict[int, ImageCache] = {}  # budget → the process's cache: every dataset with that budget shares it


def shared_cache(budget: int) -> ImageCache:
    """The process's image cache for ``budget`` bytes (the datasets of several trainings in one
    process, a training set and its validation set, share one budget instead of holding one each)."""
    return _SHARED.setdefault(budget, ImageCache(budget))


class HarmonyDataset(Dataset):
    """Yields dicts with ``composite``, ``real`` (``3×S×S``), ``mask`` (``1×S×S``), ``domain``
    (index into ``self.domains``) and ``domain_name``.

    Every image is first reduced so that its short side is ``2·size`` at most (the crops are taken
    from that). ``train=True`` then applies one random resized crop (scale 0.5–1) and horizontal flip
    identically to all three images; otherwise everything is resized to ``size``. ``cache=True``
    keeps the reduced images as uint8 in memory, up to ``HARMONY_CACHE_MB`` megabytes (else 512) per
    process, shared by every dataset in it (each DataLoader worker holds its own; ``cache_mb`` gives
    a dataset a cache of its own with that budget instead): on a small dataset the
    whole set fits and JPEG decoding, the loader's largest cost, happens once; on iHarmony4 (about
    100 GB reduced at ``size`` 256) the first images up to the budget are kept and the rest decoded
    each time, so memory stays bounded. Cached or not, an item is the same.
    """

    def __init__(self, root, domains="all", split: str = "train", size: int = 256, train: bool | None = None,
                 cache: bool = True, domain_names: list[str] | None = None, samples: list[Sample] | None = None,
                 cache_mb: float | None = None):
        self.root = Path(root)
        self.samples = load_samples(root, domains, split) if samples is None else list(samples)
        if not self.samples:
            raise InputError(f"{root}: no {split} samples in domains {domains}")
        self.domains = list(domain_names) if domain_names else resolve_domains(root, domains)
        self.size = size
        self.train = split == "train" if train is None else train
        budget = int((default_cache_mb() if cache_mb is None else cache_mb) * 2 ** 20)
        self.cache = None if not cache else shared_cache(budget) if cache_mb is None else ImageCache(budget)
        if self.train:
            self.tf = v2.Compose([v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
                                  v2.RandomHorizontalFlip()])
        else:
            self.tf = v2.Resize((size, size), antialias=True)

    def __len__(self):
        return len(self.samples)

    @property
    def cache_budget(self) -> int:
        return self.cache.budget if self.cache is not None else 0

    @property
    def cache_bytes(self) -> int:
        return self.cache.bytes if self.cache is not None else 0

    def key(self, path) -> tuple[str, int]:
        """A file's cache key: the reduced image depends on the dataset's size."""
        return str(path), self.size

    def reduced_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The size an image of ``hw`` is reduced to before cropping: short side ``2·size`` at most."""
        short = min(hw)
        if short <= 2 * self.size:
            return tuple(hw)
        return tuple(round(x * 2 * self.size / short) for x in hw)

    def load(self, path: Path, is_mask: bool, target: tuple[int, int] | None = None) -> torch.Tensor:
        """One file as the dataset holds it, in [0, 1]: :meth:`load_u8` as float."""
        return self.load_u8(path, is_mask, target).float() / 255

    def load_u8(self, path: Path, is_mask: bool, target: tuple[int, int] | None = None) -> torch.Tensor:
        """One file as the dataset holds it: reduced (to ``target``, default :meth:`reduced_size`),
        quantised to uint8 (the cached form), through the cache."""
        key = self.key(path)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        if target is None:
            target = self.reduced_size(image_size(path))
        if is_mask:  # masks stay 8-bit where the file is (read_mask_u8); soft and odd ones are rounded
            t = torch.from_numpy(read_mask_u8(path))[None]
        else:  # a large JPEG decodes at a reduced DCT scale no smaller than the target (4-40x faster)
            t = read_image_chw_u8(path, at_least=target)
        return self.store(key, t, target)

    def store(self, key: tuple[str, int], t: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
        """A decoded uint8 image at ``target`` size in the cached form (cached while the budget lasts)."""
        if tuple(t.shape[1:]) != target:  # resized in float from the 8-bit values, then rounded
            t = v2.functional.resize(t.contiguous().float() / 255, list(target), antialias=True)
            t = t.mul(255).round().to(torch.uint8)  # the cached form, so that cached and decoded items agree
        if self.cache is not None:
            self.cache.put(key, t)
        return t

    def __getitem__(self, i):
        s = self.samples[i]
        paths = (s.composite, s.real, s.mask)
        target, mask_u8 = None, None  # all three cached: sized and checked when they were first decoded
        if self.cache is None or not all(self.key(p) in self.cache for p in paths):
            # the photos' sizes from their headers, the mask's from its pixels (a PNG header read
            # decodes the file to look for EXIF): a mismatch is refused before any JPEG is decoded
            mask_u8 = None if self.cache is not None and self.key(s.mask) in self.cache else read_mask_u8(s.mask)
            sizes = [image_size(s.composite), image_size(s.real),
                     tuple(mask_u8.shape) if mask_u8 is not None else image_size(s.mask)]
            if len(set(sizes)) > 1:
                raise InputError(f"{s.composite}: composite {sizes[0][1]}x{sizes[0][0]}, real {sizes[1][1]}x"
                                 f"{sizes[1][0]} and mask {sizes[2][1]}x{sizes[2][0]} sizes differ")
            target = self.reduced_size(sizes[0])
            if mask_u8 is not None:
                mask_u8 = self.store(self.key(s.mask), torch.from_numpy(mask_u8)[None], target)
        comp, real = self.load_u8(s.composite, False, target), self.load_u8(s.real, False, target)
        mask = self.load_u8(s.mask, True, target) if mask_u8 is None else mask_u8
        if not self.train:  # evaluation items: resized in float, as scored
            comp, real, mask = comp.float() / 255, real.float() / 255, mask.float() / 255
        # training crops: cropped and resized in uint8 (a quarter of the memory traffic), then float
        comp, real, mask = self.tf(tv_tensors.Image(comp), tv_tensors.Image(real), tv_tensors.Mask(mask))
        if self.train:  # uint8 / 255 is in [0, 1] already
            comp, real, mask = (x.as_subclass(torch.Tensor).float().div_(255).contiguous() for x in (comp, real, mask))
        else:
            comp, real, mask = (x.as_subclass(torch.Tensor).clamp(0, 1).contiguous() for x in (comp, real, mask))
        return {"composite": comp, "real": real, "mask": mask, "domain": self.domains.index(s.domain),
                "domain_name": s.domain}


class Mixed(Dataset):
    """``main`` with a share ``replay`` of the items drawn from ``other`` (finetuning with replay).

    Each epoch (a permutation of ``len(self)``) holds every item of ``other`` once and the items
    of ``main`` repeated so that they make up ``1 − replay`` of it. ``replay = 0`` is ``main``."""

    def __init__(self, main: Dataset, other: Dataset | None, replay: float):
        if not 0 <= replay < 1:
            raise InputError(f"replay must be in [0, 1), got {replay}")
        self.main, self.other = main, other if replay > 0 else None
        n_o = len(self.other) if self.other is not None else 0
        self.n_main = max(len(main), round(n_o * (1 - replay) / replay)) if n_o else len(main)
        self.n_other = n_o
        self.domains = getattr(main, "domains", None)

    def __len__(self):
        return self.n_main + self.n_other

    def __getitem__(self, i):
        if i < self.n_main:
            return self.main[i % len(self.main)]
        return self.other[i - self.n_main]


def train_val(root, domains="all", size: int = 256, cache: bool = True, val_fraction: float = 0.0,
              fold: tuple[int, int] | None = None) -> tuple[HarmonyDataset, HarmonyDataset | None]:
    """The training set and, when ``val_fraction > 0``, a validation set held out of the training
    split by real image (:func:`split_holdout`; evaluated without augmentation). ``fold=(k, K)``
    holds out the k-th of K folds instead (:func:`split_folds`)."""
    full = HarmonyDataset(root, domains, "train", size=size, cache=cache)
    fit, held = split_folds(full.samples, fold[1], fold[0]) if fold else split_holdout(full.samples, val_fraction)
    if not held:
        return full, None
    return (HarmonyDataset(root, domains, "train", size=size, cache=cache, samples=fit),
            HarmonyDataset(root, domains, "train", size=size, train=False, cache=cache, samples=held))


def batches(ds: Dataset, batch: int = 16, limit: int | None = None, device=None):
    """Evaluation batches of the first ``limit`` items, in order: dicts with ``composite``, ``real``,
    ``mask`` stacked (on ``device``) and ``domain_name`` as a list."""
    n = len(ds) if limit is None else min(len(ds), limit)
    for i in range(0, n, batch):
        items = [ds[j] for j in range(i, min(n, i + batch))]
        out = {k: torch.stack([it[k] for it in items]).to(device) for k in ("composite", "real", "mask")}
        out["domain_name"] = [it["domain_name"] for it in items]
        yield out


def real_images(samples: list[Sample]) -> list[tuple[str, Path, Path]]:
    """Unique (domain, real, mask) triples, in order: what augmenters start from."""
    seen, out = set(), []
    for s in samples:
        if (s.real, s.mask) not in seen:
            seen.add((s.real, s.mask))
            out.append((s.domain, s.real, s.mask))
    return out

