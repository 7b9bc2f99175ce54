"""Choose a calibrated harmonizer's gate scale again, from the held-out scores its file records.

    python -m harmonizers.rescale runs/gct_all.safetensors runs/gct_all_full.safetensors --drift_limit inf

A gated model (``gct…``) trained with ``--val_every`` or ``--calibrate_folds`` keeps, in its
metadata, the held-out composites' fMSE and the held-out real photos' drift at every scale of
:data:`harmonizers.train.CALIBRATION_GRID`. This writes a copy with the scale that another drift
limit picks, without training again: ``--drift_limit inf`` (the lowest held-out fMSE, whatever it
does to real photos) is the setting for harmonizers that sit behind a zoo's composite detector,
whose gate keeps real photos as they are; the default 2.5 levels is the rule for a model on its own.
"""
from __future__ import annotations

import math

from common import registry
from common.cli import print_json, run, shared_args
from common.io import InputError, check_new

from .train import DRIFT_LIMIT, drift_limit_value, set_scale


def strongest(scores: dict, cap: float = 1.0) -> float:
    """The largest scale up to ``cap`` whose held-out fMSE is still below the identity's (the most
    visible change that still helps on held-out photos); 0 when none is."""
    ok = [s for s, v in scores.items() if 0 < s <= cap and v["fMSE"] < scores[0.0]["fMSE"]]
    return max(ok) if ok else 0.0


def rescale(src, out, drift_limit=DRIFT_LIMIT, overwrite: bool = False, rule: str = "lowest") -> dict:
    """Write ``out``: ``src`` with the gate scale ``drift_limit`` picks from its recorded scores
    (``rule="lowest"``), or the strongest that still helps (``rule="strongest"``, :func:`strongest`)."""
    if rule not in ("lowest", "strongest"):
        raise InputError(f"--rule must be lowest or strongest, got {rule!r}")
    limit = drift_limit_value(drift_limit)
    check_new(out, overwrite)
    model, meta = registry.load(src, kind="harmonizer")
    scores = (meta.get("calibration") or {}).get("scores")
    if not hasattr(model.net, "strength") or not scores:
        raise InputError(f"{src}: no recorded calibration scores (a gct model trained with --val_every or "
                         f"--calibrate_folds has them)")
    scores = {float(k): v for k, v in scores.items()}
    before = float(model.net.strength)
    keep = {k: v for k, v in meta["calibration"].items() if k not in ("strength", "drift_limit", "rule", "scores", "from", "rescaled_from")}
    if rule == "strongest":
        info = set_scale(out, (model, meta), src, scores, math.inf, pick=strongest(scores), rescaled_from=before,
                         **{**keep, "rule": "strongest that lowers held-out fMSE"})
    else:
        info = set_scale(out, (model, meta), src, scores, limit, rescaled_from=before, **keep)
    return {"out": str(out), "strength": info["strength"], "was": before,
            "fMSE": round(scores[info["strength"]]["fMSE"], 2), "drift": round(scores[info["strength"]]["drift"], 3)}


@shared_args
def main(src, out, drift_limit="inf", overwrite: bool = False, rule: str = "lowest"):
    """Rescale a calibrated gated harmonizer's gate from its recorded held-out scores.

    Args:
        src: a gct checkpoint with calibration scores in its metadata.
        out: the checkpoint to write.
        drift_limit: limit on a held-out real photo's mean change (8-bit levels), or inf for none.
        overwrite: replace an existing OUT.
        rule: lowest (the lowest held-out fMSE within the drift limit) or strongest (the largest scale
            up to 1 whose held-out fMSE is still below the composites': the most visible change that helps).
    """
    print_json(rescale(src, out, drift_limit, overwrite, rule))


CLI = main

if __name__ == "__main__":
    run(CLI)
