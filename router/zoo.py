"""The model zoo: a folder with ``zoo.json`` naming the classifier, one harmonizer per domain, the
unified harmonizer, the composite detector and the SycoNets used, by paths relative to the folder.

    python -m router.zoo build --out models/default --classifier runs/router.safetensors \\
        --unified runs/issam_unified.safetensors \\
        --domains MiniCOCO=runs/issam_MiniCOCO.safetensors,MiniFlickr=runs/issam_MiniFlickr.safetensors \\
        --syconets all=runs/syconet_all.safetensors --detector runs/detector.safetensors --fp16
    python -m router.zoo check models/default

Loading refuses paths that resolve outside the folder, checks each checkpoint's ``kind`` and that
every harmonizer's domain is one the classifier knows.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from common import checkpoint
from common.cli import print_json, run, shared_args
from common.io import InputError, write_text
from common.shipped import DEFAULT_ZOO

from .routing import check_zoo_mode, default_mode


def _inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if Path(rel).is_absolute() or root.resolve() not in p.parents:
        raise InputError(f"{root / 'zoo.json'}: path {rel!r} resolves outside the zoo folder")
    if not p.is_file():
        raise InputError(f"{root / 'zoo.json'}: {rel} not found")
    return p


def read(zoo=None) -> dict:
    """The validated manifest with absolute paths: classifier, domains{D: path}, unified, syconets."""
    root = Path(zoo) if zoo else DEFAULT_ZOO
    mf = root / "zoo.json"
    if not mf.is_file():
        raise InputError(f"{root}: no zoo.json (build one with python -m router.zoo build)")
    try:
        man = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{mf}: not valid JSON ({e})") from None
    if "classifier" not in man or "domains" not in man:
        raise InputError(f"{mf}: needs 'classifier' and 'domains'")
    out = {"root": root, "classifier": _inside(root, man["classifier"]), "domains": {}, "unified": None,
           "syconets": {}}
    cmeta = checkpoint.read_meta(out["classifier"])
    if cmeta.get("kind") != "classifier":
        raise InputError(f"{out['classifier']}: is a {cmeta.get('kind')!r}, zoo.json names it as the classifier")
    known = cmeta["domains"]
    sizes = {}
    for d, rel in man["domains"].items():
        p = _inside(root, rel)
        m = checkpoint.read_meta(p)
        sizes[d] = m.get("size")
        if m.get("kind") != "harmonizer":
            raise InputError(f"{p}: is a {m.get('kind')!r}, zoo.json names it as the harmonizer of {d}")
        if d not in known:
            raise InputError(f"{mf}: domain {d!r} is not one the classifier predicts ({known})")
        if m.get("domains") != [d]:
            raise InputError(f"{p}: trained on {m.get('domains')}, zoo.json names it as the harmonizer of {d}")
        out["domains"][d] = p
    if man.get("unified"):
        out["unified"] = _inside(root, man["unified"])
        if checkpoint.read_meta(out["unified"]).get("kind") != "harmonizer":
            raise InputError(f"{out['unified']}: the unified model must be a harmonizer")
    for k, rel in (man.get("syconets") or {}).items():
        p = _inside(root, rel)
        if checkpoint.read_meta(p).get("kind") != "syconet":
            raise InputError(f"{p}: zoo.json names it as a SycoNet but it is not one")
        out["syconets"][k] = p
    out["detector"] = None
    if man.get("detector"):
        out["detector"] = _inside(root, man["detector"])
        if checkpoint.read_meta(out["detector"]).get("kind") != "detector":
            raise InputError(f"{out['detector']}: zoo.json names it as the detector but it is not one")
    out["classifier_domains"] = known
    # the mode `router predict` runs when none is given; a zoo.json without it routes
    out["mode"] = check_zoo_mode(man.get("mode", "routed"), list(sizes.values()), bool(out["unified"]), mf)
    out["sizes"] = sizes  # domain → its harmonizer's training size (router.routing.choose)
    return out


def _copy(src, dst: Path, fp16: bool) -> str:
    tensors, meta = checkpoint.load(src)
    if fp16:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        meta = {**meta, "stored_as": "float16"}
    meta.pop("optimizer", None)
    checkpoint.save(dst, tensors, meta, overwrite=True)
    return dst.name


def _pairs(spec) -> dict:
    if not spec:
        return {}
    if isinstance(spec, dict):
        return spec
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    out = {}
    for it in items:
        if "=" not in it:
            raise InputError(f"expected NAME=PATH, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build(out, classifier, domains=None, unified=None, syconets=None, fp16: bool = False,
          overwrite: bool = False, mode: str | None = None, detector=None) -> Path:
    """Copy checkpoints into ``out`` (optionally as float16) and write ``zoo.json``, with the default
    mode ``mode`` (``None``: :func:`router.routing.default_mode` of the domain harmonizers) and the
    composite ``detector`` whose gate scales every change (copied as it is)."""
    sizes = [checkpoint.read_meta(p).get("size") for p in _pairs(domains).values()]
    mode = check_zoo_mode(mode or default_mode(sizes, bool(unified)), sizes, bool(unified), "--mode")
    out = Path(out)
    if (out / "zoo.json").exists() and not overwrite:
        raise InputError(f"{out}/zoo.json: already exists (pass --overwrite to rebuild the zoo)")
    out.mkdir(parents=True, exist_ok=True)
    man = {"classifier": _copy(classifier, out / "classifier.safetensors", fp16), "domains": {}}
    for d, p in _pairs(domains).items():
        man["domains"][d] = _copy(p, out / f"harmonizer_{d}.safetensors", fp16)
    if unified:
        man["unified"] = _copy(unified, out / "harmonizer_unified.safetensors", fp16)
    sy = _pairs(syconets)
    if sy:
        man["syconets"] = {k: _copy(p, out / f"syconet_{k}.safetensors", fp16) for k, p in sy.items()}
    if detector:
        if checkpoint.read_meta(detector).get("kind") != "detector":
            raise InputError(f"--detector {detector}: not a detector checkpoint (python -m router.detect)")
        shutil.copyfile(detector, out / "detector.safetensors")
        man["detector"] = "detector.safetensors"
    man["mode"] = mode
    write_text(json.dumps(man, indent=1) + "\n", out / "zoo.json", overwrite=True)
    read(out)  # validate what we wrote
    return out


@shared_args
def _cli_build(out, classifier, domains=None, unified=None, syconets=None, fp16: bool = False, overwrite: bool = False,
               mode: str | None = None, detector=None):
    """Build a model zoo folder: copy the checkpoints in and write zoo.json.

    Args:
        out: the zoo folder to write.
        classifier: domain classifier checkpoint.
        domains: per-domain harmonizers as DOMAIN=PATH, comma-separated.
        unified: the unified harmonizer checkpoint.
        syconets: per-domain SycoNets as DOMAIN=PATH, comma-separated (recorded for provenance).
        fp16: store the weights as float16 (loaded back as float32).
        mode: the mode `router predict` runs by default: routed, soft or unified (default soft
            when two or more domain harmonizers share one training size, else routed).
        detector: composite detector checkpoint (python -m router.detect): its score sets how
            strongly every mode acts (predict --gate False turns that off).
    """
    p = build(out, classifier, domains, unified, syconets, fp16, overwrite, mode, detector)
    size = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    print_json({"zoo": str(p), "bytes": size})


@shared_args
def _cli_check(zoo=None):
    """Check a zoo: every path inside the folder, every checkpoint of the kind and domain zoo.json says.

    Args:
        zoo: model zoo folder (default models/default).
    """
    z = read(zoo)
    print_json({"zoo": str(z["root"]), "domains": sorted(z["domains"]), "unified": bool(z["unified"]),
                "detector": bool(z["detector"]), "syconets": sorted(z["syconets"])})


CLI = {"build": _cli_build, "check": _cli_check}

if __name__ == "__main__":
    run(CLI)
