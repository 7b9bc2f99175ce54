"""Routing rules shared by the torch (``router.api``) and ONNX (``router.fast``) paths; no torch."""
from __future__ import annotations


def soft_weights(probs: dict, available) -> dict[str, float]:
    """The classifier's probabilities over the domains that have a harmonizer, renormalised to sum
    to 1 (empty when none of them has any probability)."""
    ws = {d: p for d, p in probs.items() if d in available}
    total = sum(ws.values())
    return {d: w / total for d, w in ws.items()} if total > 0 else {}
