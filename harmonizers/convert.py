"""Convert a published checkpoint (iS2AM, HRNet + iDIH, RainNet, SycoNet) into our self-describing
safetensors.

    python -m harmonizers.convert issam256.pth runs/issam256.safetensors --kind issam
    python -m harmonizers.convert hrnet18_idih256.pth runs/hrnet18_idih256.safetensors --kind hrnet18_idih256
    python -m harmonizers.convert net_G_last.pth runs/rainnet256.safetensors --kind rainnet
    python -m harmonizers.convert pretrained_net_Er.pth runs/syconet_released.safetensors --kind syconet \\
        --luts pretrained_net_LUTs.pth

The file is read with ``torch.load(weights_only=True)``: anything that needs unpickling code is
refused. Every key and shape is checked against the official model's facts
(``harmonizers/official/*.json``, taken from the official code); missing, unexpected or mis-shaped
tensors are refused naming the first offenders. The name mapping is documented per kind in
:data:`KINDS`: our modules carry the official names, under ``net.`` for harmonizers and ``enc_r.``
for SycoNet's encoder; SycoNet's 20 LUT files entries ``'0'…'19'`` (``{'LUT': 3×17×17×17}``) stack
into ``bank``. A uniform ``module.`` prefix (a ``DataParallel`` save) is removed first.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from common import checkpoint
from common.cli import print_json, run, shared_args
from common.io import InputError, check_new, sha256

FACTS_DIR = Path(__file__).with_name("official")

# kind: (facts file, prefix of our keys, our variant, what it becomes). Kinds without a facts file are
# checked against our variant's own state dict, equal key for key to the official network's built
# from its source (docs/reference.md, "Published weights").
KINDS = {
    "issam": ("issam_improved_ssam256_state_dict.json", "net.", "issam256",
              "harmonizer issam256 (iSSAM256, improved_ssam256)"),
    "rainnet": ("rainnet_net_G_state_dict.json", "net.", "rainnet256", "harmonizer rainnet256 (RainNet generator net_G)"),
    "hrnet18_idih256": ("issam_hrnet18_idih256_state_dict.json", "net.", "hrnet18_idih256",
                        "harmonizer hrnet18_idih256 (HRNet18 + OCR + iDIH256)"),
    "hrnet18s_idih256": (None, "net.", "hrnet18s_idih256", "harmonizer hrnet18s_idih256 (HRNet18s + OCR + iDIH256)"),
    "hrnet32_idih256": (None, "net.", "hrnet32_idih256", "harmonizer hrnet32_idih256 (HRNet32 + OCR + iDIH256)"),
    "hrnet18_v2p_idih256": (None, "net.", "hrnet18_v2p_idih256",
                            "harmonizer hrnet18_v2p_idih256 (HRNet18 + OCR pyramid + iDIH256)"),
    "idih256": (None, "net.", "idih256", "harmonizer idih256 (iDIH256, improved_dih256)"),
    "dih256": (None, "net.", "dih256", "harmonizer dih256 (DIH, dih256)"),
    "syconet": ("syconet_released_state_dict.json", "enc_r.", None, "syconet_official (netEr + 20 basis LUTs)"),
}
OFFICIAL_REPO = ("SamsungLabs/image_harmonization", "4d16b1257eaae115c8714bf147f3113a9dabdf51")
LUT_FACTS = "syconet_released_luts_state_dict.json"


def facts(name: str) -> dict:
    return json.loads((FACTS_DIR / name).read_text())


def expected_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    """Official key → shape for ``kind``, in the official order."""
    facts_file, prefix, variant, _ = KINDS[kind]
    if facts_file is None:  # shapes only: built on the meta device, no weights drawn
        from common import registry
        with torch.device("meta"):
            return {k[len(prefix):]: tuple(v.shape) for k, v in registry.create(variant).state_dict().items()}
    return {e["key"]: tuple(e["shape"]) for e in facts(facts_file)["keys"]}


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """A plain ``{key: tensor}`` from a ``.pth`` file, never running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if found:
            raise InputError(f"{path}: refused, loading it would run pickled code ({found.group(1)}); "
                             "only plain tensor state dicts are read") from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint (corrupt or not a torch file)") from None
    except Exception as e:  # truncated or not a torch file at all
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and set(obj) == {"state_dict"}:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, expected a state dict (name → tensor)")
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def check(sd: dict, want: dict[str, tuple[int, ...]], path) -> None:
    """Refuse unless ``sd`` has exactly the keys of ``want``, every one a tensor of that shape."""
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    bad = [f"{k} {tuple(sd[k].shape)} (expected {want[k]})" for k in want
           if k in sd and (not torch.is_tensor(sd[k]) or tuple(sd[k].shape) != want[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected ({', '.join(map(str, extra[:3]))})")
    if bad:
        problems.append(f"{len(bad)} mis-shaped ({'; '.join(bad[:3])})")
    if problems:
        raise InputError(f"{path}: not an official checkpoint of this kind: " + ", ".join(problems))


def _source(kind: str, *paths) -> dict:
    repo, commit = OFFICIAL_REPO
    if KINDS[kind][0] is not None:
        f = facts(KINDS[kind][0])["source"]
        repo, commit = f["official_repo"], f["commit"]
    return {"official_repo": repo, "official_commit": commit,
            "files": [{"name": Path(p).name, "sha256": sha256(p)} for p in paths]}


def _tensors(sd: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def convert_harmonizer(src, kind: str, domains=("all",)) -> tuple[dict, dict]:
    """``(tensors, meta)`` of our checkpoint for an official iS2AM, iDIH (± HRNet) or RainNet file."""
    from common import registry

    from .models import meta
    sd = read_state_dict(src)
    check(sd, expected_shapes(kind), src)
    model = registry.create(KINDS[kind][2])
    tensors = _tensors(sd, KINDS[kind][1])
    model.load_state_dict(tensors, strict=True)  # our modules agree with the facts: a tested invariant
    m = meta(model, domains, fingerprint="official:" + sha256(src)[:16],
             converted=_source(kind, src))
    return tensors, m


def convert_syconet(src, luts) -> tuple[dict, dict]:
    """``(tensors, meta)`` for the released SycoNet (``netEr`` file + LUT file)."""
    from syconet.official import OfficialSycoNet, meta
    sd = read_state_dict(src)
    check(sd, expected_shapes("syconet"), src)
    lut_sd = read_state_dict(luts)
    lut_facts = facts(LUT_FACTS)["entries"]
    want = {e["key"]: tuple(e["state_dict"][0]["shape"]) for e in lut_facts}
    flat = {}
    for k, v in lut_sd.items():  # '3' → {'LUT': tensor}
        if isinstance(v, dict) and set(v) == {"LUT"}:
            flat[k] = v["LUT"]
        else:
            flat[k] = v if torch.is_tensor(v) else torch.empty(0)
    check(flat, want, luts)
    bank = torch.stack([flat[str(i)].float() for i in range(len(want))])
    model = OfficialSycoNet(bank=bank)
    tensors = {**_tensors(sd, KINDS["syconet"][1]), "bank": bank.contiguous()}
    model.load_state_dict(tensors, strict=True)
    return tensors, meta(model, ("all",), "official:" + sha256(src)[:16], converted=_source("syconet", src, luts))


def convert(src, out, kind: str, luts=None, domains=("all",), overwrite: bool = False) -> Path:
    if kind not in KINDS:
        raise InputError(f"unknown --kind {kind!r}; choose from {sorted(KINDS)}")
    out = check_new(out, overwrite)
    if kind == "syconet":
        if luts is None:
            guess = Path(str(src).replace("net_Er", "net_LUTs"))
            if guess == Path(src) or not guess.is_file():
                raise InputError(f"{src}: a SycoNet needs its LUT file too (--luts …_net_LUTs.pth)")
            luts = guess
        tensors, m = convert_syconet(src, luts)
    else:
        tensors, m = convert_harmonizer(src, kind, tuple(domains))
    return checkpoint.save(out, tensors, m, overwrite=overwrite)


@shared_args
def main(src: str, out: str, kind: str, luts: str | None = None, domains: str = "all", overwrite: bool = False):
    """Convert an official checkpoint into a self-describing safetensors checkpoint.

    Args:
        src: the official file (issam256.pth, hrnet18_idih256.pth, net_G_last.pth, pretrained_net_Er.pth).
        out: the .safetensors file to write.
        kind: issam, hrnet18_idih256 (or hrnet18s_idih256, hrnet32_idih256, hrnet18_v2p_idih256,
            idih256, dih256), rainnet or syconet.
        luts: SycoNet's LUT file (default: SRC with net_Er replaced by net_LUTs).
        domains: the domains recorded in the checkpoint, comma-separated (all: trained on every
            domain; name one, e.g. HCOCO, to use it as that domain's harmonizer in a zoo).
    """
    doms = tuple(d.strip() for d in str(domains).split(",") if d.strip()) if isinstance(domains, str) else tuple(domains)
    p = convert(src, out, kind, luts, doms, overwrite)
    m = checkpoint.read_meta(p)
    print_json({"out": str(p), "kind": m["kind"], "arch": m["arch"], "what": KINDS[kind][3],
                "tensors": len(checkpoint.load(p)[0]), "domains": m.get("domains")})


CLI = main

if __name__ == "__main__":
    run(CLI)
