"""Routing rules shared by the torch (``router.api``) and ONNX (``router.fast``) paths; no torch."""
from __future__ import annotations

from common.io import InputError

MODES_NEEDING_PROBS = ("routed", "soft")
ZOO_MODES = ("routed", "soft", "unified")  # what a zoo may name as its default mode (zoo.json "mode")


def default_mode(sizes, has_unified: bool) -> str:
    """The default mode of a new zoo whose domain harmonizers have training ``sizes``: ``soft`` when
    there are two or more of one size (a blend is never worse than its members on average when the
    probabilities are right, and it keeps the change smaller where the classifier hesitates: on the
    benchmark's held-out training photos it beat ``routed`` on error, harm rate and real-photo drift
    together, docs/results.md), else ``routed`` (``unified`` when there is no domain harmonizer)."""
    sizes = list(sizes)
    if len(sizes) >= 2 and len(set(sizes)) == 1:
        return "soft"
    return "routed" if sizes or not has_unified else "unified"


def check_zoo_mode(mode, sizes, has_unified: bool, where) -> str:
    """``mode`` if a zoo with these domain harmonizer ``sizes`` can run it by default, else an
    :class:`InputError` naming ``where`` (the zoo.json)."""
    if mode not in ZOO_MODES:
        raise InputError(f"{where}: mode must be one of {ZOO_MODES}, got {mode!r}")
    if mode == "unified" and not has_unified:
        raise InputError(f"{where}: mode 'unified' but the zoo has no unified model")
    if mode in MODES_NEEDING_PROBS and not sizes and not has_unified:
        raise InputError(f"{where}: mode {mode!r} but the zoo has no harmonizer")
    if mode == "soft" and sizes:
        try:
            one_size(sizes)
        except InputError as e:
            raise InputError(f"{where}: mode 'soft': {e}") from None
    return mode


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


def choose(mode: str, probs: dict | None, sizes: dict, has_unified: bool) -> tuple[str, dict[str, float]]:
    """``(model name, {member: weight})`` for a mode; members are domain names with a harmonizer
    (the keys of ``sizes``, domain → its training size) or ``"unified"``. One member at weight 1,
    except ``soft``: every available domain weighted by its renormalised probability (model name
    ``"soft"``; its members must share one training size). ``routed`` takes the most likely domain
    that has a model, else the unified one."""
    available = list(sizes)
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
            one_size(sizes[d] for d in ws)
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
