"""Does a harmonizer's change point the right way, and how far?

    python -m eval.probes strength --data data/mini4 --ckpt runs/issam_all.safetensors

``strength``: the harmonizer's change ``d = G(x) − x`` against the needed change ``e = t − x`` in the
foreground, at the metric's size: an output ``x + β·d`` has
``fMSE(β) = |e|² − 2β⟨d, e⟩ + β²|d|²`` (per image, foreground-normalised, averaged as the scorer
does), minimal at ``β* = mean⟨d, e⟩ / mean|d|²`` per domain; ``β* ≤ 0`` means the change points the
wrong way on average. Read off the test split, β* is a diagnosis, not a setting to ship.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from common.cli import shared_args
from common.io import read_image, read_mask
from domains.dataset import load_samples
from common import metrics as M


@shared_args
@torch.inference_mode()
def strength(data="data/mini4", ckpt: str = "runs/issam_all.safetensors", domains="all", split: str = "test",
             size: int = M.EVAL_SIZE, protocol: str = "iharm") -> dict:
    """β* (the best scaling of the model's change) and fMSE at β = 0, 1, β* per domain.

    Args:
        ckpt: harmonizer checkpoint.
        protocol: iharm or fullres, as eval.score.
    """
    from .score import checkpoint_predictor
    proto = M.Protocol(protocol, size)
    predict = checkpoint_predictor(ckpt, protocol=protocol, size=size)
    per = {}
    for s in tqdm(load_samples(data, domains, split), desc="strength", unit="img"):
        x, t, m = proto.inputs(read_image(s.composite), read_image(s.real), read_mask(s.mask))
        y = predict(x, m)
        x, y, t, m = (a[None] for a in (x, y, t, m))
        if protocol == "fullres":
            y = M.prepare(y, t, m, size)[0]
            x, t, m = M.prepare(x, t, m, size)
        else:
            x, y, t, m = x.double() * M.PEAK, y.double().clamp(0, 1) * M.PEAK, (t.double() * M.PEAK).round(), m.double()
        per.setdefault(s.domain, []).append((x, y, t, m))
    per["All"] = [r for d in list(per) for r in per[d]]
    res = {}
    for d, rows in per.items():
        xs, ys, ts, ms = (torch.cat(c) for c in zip(*rows))
        dv, ev = ys - xs, ts - xs
        de, dd = (ms * dv * ev).flatten(1).sum(1), (ms * dv * dv).flatten(1).sum(1)
        b = float(de.mean() / dd.mean().clamp_min(1e-12))

        def fmse(beta):
            p = (xs + beta * dv).clamp(0, M.PEAK)
            if protocol == "fullres":
                return float(M.fmse_255(p, ts, ms).mean())
            return float(M.fmse_soft(p, ts, ms).mean())
        f = {beta: fmse(beta) for beta in (0.0, 1.0, b)}
        res[d] = {"beta_star": b, "fMSE_composite": f[0.0], "fMSE_model": f[1.0], "fMSE_beta_star": f[b]}
    print(f"{ckpt} on {data} ({split}): the change's useful share\n")
    print("| domain | composite fMSE | model fMSE | β* | fMSE at β* |\n|---|---:|---:|---:|---:|")
    for d, r in res.items():
        print(f"| {d} | {r['fMSE_composite']:.1f} | {r['fMSE_model']:.1f} | {r['beta_star']:.2f} | "
              f"{r['fMSE_beta_star']:.1f} |")
    return res

