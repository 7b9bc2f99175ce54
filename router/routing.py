"""Routing rules shared by the torch (``router.api``) and ONNX (``router.fast``) paths; no torch."""
from __future__ import annotations

from common.io import InputError

MODES_NEEDING_PROBS = ("routed", "soft")


def one_size(sizes) -> int:
    """The one training size of a blend's members, or the error that names the sizes found."""
    sizes = set(sizes)
    if len(sizes) != 1:
        raise InputError(f"soft routing needs harmonizers of one training size, the zoo has {sorted(sizes)}")
    return sizes.pop()


def soft_weights(probs: dict, available) -> dict[str, float]:
    """The classifier's probabilities over the domains that have a harmonizer, renormalised to sum
    to 1 (empty when none of them has any probability)."""
    ws = {d: p for d, p in probs.items() if d in available}
    total = sum(ws.values())
    return {d: w / total for d, w in ws.items()} if total > 0 else {}


def choose(mode: str, probs: dict | None, available, has_unified: bool) -> tuple[str, dict[str, float]]:
    """``(model name, {member: weight})`` for a mode; members are domain names with a harmonizer
    (``available``) or ``"unified"``. One member at weight 1, except ``soft``: every available
    domain weighted by its renormalised probability (model name ``"soft"``). ``routed`` takes the
    most likely domain that has a model, else the unified one."""
    available = list(available)
    if mode == "unified":
        if not has_unified:
            raise InputError("this zoo has no unified model (zoo.json 'unified')")
        return "unified", {"unified": 1.0}
    if mode.startswith("oracle:"):
        d = mode.split(":", 1)[1]
        if d not in available:
            raise InputError(f"mode {mode}: no harmonizer for {d!r}; zoo has {sorted(available)}")
        return d, {d: 1.0}
    if mode == "soft":
        ws = soft_weights(probs, available)
        if ws:
            return "soft", ws
        mode = "routed"  # no domain model: fall through to the unified one
    if mode != "routed":
        raise InputError(f"mode must be routed, soft, unified or oracle:DOMAIN, got {mode!r}")
    for d in sorted(probs, key=probs.get, reverse=True):
        if d in available:
            return d, {d: 1.0}
    if has_unified:
        return "unified", {"unified": 1.0}
    raise InputError("the zoo has no harmonizer for any predicted domain")
