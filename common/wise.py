"""Weight-space ensembling of a finetuned model with the model it started from (WiSE-FT).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): the weights
``(1 - alpha) * base + alpha * tuned`` of a finetune and its starting point keep what the
finetune learned about its own data and what the base knew about the rest; on small data they
are often better than either end. Any of our checkpoints works (a SycoNet, a harmonizer, a
classifier) as long as ``tuned`` was finetuned from ``base``: same kind, architecture and tensor
names and shapes (anything else is refused, naming the file and the difference).

    python -m common.wise --base runs/syconet_all.safetensors --tuned runs/syconet_MiniFlickr.safetensors \\
        --alpha 0.5 --out runs/syconet_MiniFlickr.wise.safetensors

Floating-point tensors are interpolated; integer ones (batch-norm step counters) are the tuned
model's. The result keeps the tuned checkpoint's metadata and records ``wise``: both paths and alpha.
"""
from __future__ import annotations

import torch

from . import checkpoint
from .cli import print_json, run, shared_args
from .io import InputError, check_new


def interpolate(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float,
                where: str = "tuned") -> dict[str, torch.Tensor]:
    """``(1 - alpha) * base + alpha * tuned`` per floating-point tensor, in float32, cast back."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    if base.keys() != tuned.keys():
        missing, extra = sorted(base.keys() - tuned.keys()), sorted(tuned.keys() - base.keys())
        raise InputError(f"{where}: its tensors are not the base's (missing {missing[:3]}, extra {extra[:3]})")
    out = {}
    for k, t in tuned.items():
        b = base[k]
        if b.shape != t.shape:
            raise InputError(f"{where}: {k} is {tuple(t.shape)}, the base's {tuple(b.shape)}")
        if t.is_floating_point():
            out[k] = torch.lerp(b.to(t.device, torch.float32), t.float(), alpha).to(t.dtype)
        else:
            out[k] = t.clone()
    return out


@shared_args
def main(base: str, tuned: str, out: str, alpha: float = 0.5, overwrite: bool = False) -> dict:
    """Write the weight-space mix of ``tuned`` and the ``base`` it was finetuned from.

    Args:
        base: the checkpoint the finetune started from.
        tuned: the finetuned checkpoint.
        out: where to write the mix (refused when it exists, unless --overwrite).
        alpha: weight of the finetuned model (0 = base, 1 = tuned).
    """
    check_new(out, overwrite)
    tb, mb = checkpoint.load(base)
    tt, mt = checkpoint.load(tuned)
    for key in ("kind", "arch"):  # training options in the config may differ (a finetune's KL warm-up)
        if mb.get(key) != mt.get(key):
            raise InputError(f"{tuned}: its {key} differs from {base}'s; WiSE mixes a finetune with its own start")
    mixed = interpolate(tb, tt, float(alpha), where=tuned)
    meta = {**mt, "wise": {"base": str(base), "tuned": str(tuned), "alpha": float(alpha)}}
    checkpoint.save(out, mixed, meta, overwrite=overwrite)
    res = {"out": str(out), "alpha": float(alpha), "tensors": len(mixed)}
    print_json(res)
    return res


CLI = main

if __name__ == "__main__":
    run(CLI)
