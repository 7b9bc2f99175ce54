"""Our iharm networks against the official ones built from their own source, on the same random weights.

    python scripts/compare_official.py --source /path/to/image_harmonization --out runs/official_check.json

``--source`` is a checkout of SamsungLabs/image_harmonization (tested at commit 4d16b12); nothing of
it is copied here. For each variant (HRNet18/18s/32/18-pyramid + iDIH256, iDIH256, DIH256,
iSSAM256) the official module is built from its config, given random weights (BN statistics
included), and its state dict is loaded into ours under ``net.``; both run on the same two 256×256
composites and the largest difference of the outputs (0–255 levels, everywhere and inside the mask)
is written. The official code needs two shims on today's stack, applied here: ``np.int`` (removed
from NumPy) and its logger module (which imports tensorboard).
"""
from __future__ import annotations

import copy
import json
import logging
import sys
import types
from pathlib import Path

import fire
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEAN = torch.tensor([.485, .456, .406]).view(1, 3, 1, 1)
STD = torch.tensor([.229, .224, .225]).view(1, 3, 1, 1)


def _official(source: Path):
    np.int = int  # noqa: NPY001 (the official hrnet_ocr.py calls np.int)
    sys.modules["iharm.utils.log"] = types.SimpleNamespace(logger=logging.getLogger("iharm"))
    sys.path.insert(0, str(source))
    from iharm.mconfigs import BMCONFIGS
    from iharm.model.backboned import HRNetIHModel
    from iharm.model.base import DeepImageHarmonization, SSAMImageHarmonization

    def hrnet(**kw):  # a fresh copy of the base config: the official constructor mutates it
        return lambda: HRNetIHModel(copy.deepcopy(BMCONFIGS["improved_dih256"]), **kw)
    return {
        "hrnet18_idih256": hrnet(small=False),
        "hrnet18s_idih256": hrnet(small=True),
        "hrnet32_idih256": hrnet(small=False, width=32),
        "hrnet18_v2p_idih256": hrnet(small=False, pyramid_channels=256),
        "idih256": lambda: DeepImageHarmonization(**BMCONFIGS["improved_dih256"]["params"]),
        "dih256": lambda: DeepImageHarmonization(**BMCONFIGS["dih256"]["params"]),
        "issam256": lambda: SSAMImageHarmonization(**BMCONFIGS["improved_ssam256"]["params"]),
    }


def _random(sd: dict, seed: int) -> dict:
    """Random weights of order one through a deep net: He-scaled kernels, BN near identity."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.dim() > 1:
            out[k] = torch.randn(v.shape, generator=g) / float(np.sqrt(v[0].numel()))
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.1 + (1.0 if k.endswith(".weight") else 0.0)
    return out


def main(source: str, out: str = "runs/official_check.json", seed: int = 1) -> None:
    """Compare every variant; print and write the differences.

    Args:
        source: a checkout of SamsungLabs/image_harmonization.
        out: the JSON report to write.
        seed: the random weights' seed.
    """
    from common import registry
    builders = _official(Path(source))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 256, 256, generator=g)
    m = torch.zeros(2, 1, 256, 256)
    m[0, :, 40:170, 60:200] = 1
    m[1, :, 100:250, 10:90] = 1
    res = {}
    for name, build in builders.items():
        off = build().eval()
        sd = _random(off.state_dict(), seed)
        off.load_state_dict(sd)
        ours = registry.create(name).eval()
        keys_equal = list(sd) == [k[len("net."):] for k in ours.state_dict()]
        ours.load_state_dict({"net." + k: v for k, v in sd.items()})
        with torch.no_grad():
            want = off((x - MEAN) / STD, m)["images"] * STD + MEAN
            got = ours(x, m, keep_background=False)
        d = (want - got).abs() * 255
        res[name] = {"keys_equal": keys_equal, "parameters": sum(p.numel() for p in ours.parameters()),
                     "max_diff_levels": float(d.max()), "max_diff_in_mask_levels": float(d[m.expand_as(d) > 0].max())}
        print(name, res[name], flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    fire.Fire(main)
