"""Zoos side by side, as markdown, from the reports ``eval.benchmark`` and ``eval.real`` wrote
(scripts/train_v3.sh runs them): per benchmark, the default's All fMSE against the composite's,
its harm rate, the domains it makes worse, the real-photo drift and the routing accuracy; on real
sets, the change inside the mask, the drift of unedited photos, the selectivity and the detector's
AUC of each composite set against each photo set.

    python scripts/zoo_table.py --runs runs/v3 --zoos v2_h,v3_h --benches v3,mini4,lm_unseen
"""
from __future__ import annotations

import json
from pathlib import Path

import fire
import numpy as np

from common.metrics import roc_auc
from eval.benchmark import harm_rates


def synthetic(res: dict, method: str = "default") -> dict:
    s, c = res["methods"][method]["summary"], res["methods"]["composite"]["summary"]
    harm = harm_rates(res, [method])[method]
    return {"fMSE": s["All"]["fMSE"] / c["All"]["fMSE"] - 1, "harm": harm["All"],
            "worse": [d for d in s if d != "All" and s[d]["fMSE"] > c[d]["fMSE"]],
            "drift": res["methods"][method].get("real_drift", {}).get("All"),
            "routing": (res.get("router") or {}).get("accuracy")}


def real(res: dict, method: str = "default") -> dict:
    sets = res["sets"]
    scores = {n: np.array([r["score"] for r in v["images"] if "error" not in r and r.get("score") is not None])
              for n, v in sets.items()}
    out = {n: v["summary"][method]["change"] for n, v in sets.items()}
    out["selectivity"] = (res.get("selectivity") or {}).get(method)
    for c in (n for n, v in sets.items() if v["kind"] == "composites"):
        for p in (n for n, v in sets.items() if v["kind"] == "photos"):
            if len(scores[c]) and len(scores[p]):
                out[f"AUC {c} vs {p}"] = roc_auc(scores[c], scores[p])
    return out


def main(runs="runs/v3", zoos="v2_h,v3_h", benches="v3,mini4,lm_unseen") -> None:
    runs, zoos = Path(runs), zoos.split(",") if isinstance(zoos, str) else list(zoos)
    benches = benches.split(",") if isinstance(benches, str) else list(benches)
    print("| benchmark (test split) | " + " | ".join(f"{z}: fMSE · harm · drift · routing · worse domains"
                                                   for z in zoos) + " |")
    print("|---|" + "---|" * len(zoos))
    for b in benches:
        cells = []
        for z in zoos:
            f = runs / f"bench_{z}_{b}" / "results.json"
            if not f.exists():
                cells.append("—")
                continue
            r = synthetic(json.loads(f.read_text()))
            cells.append(f"{r['fMSE']:+.1%} · {r['harm']:.0%} · {r['drift']:.1f} · {r['routing']:.0%} · "
                         f"{', '.join(r['worse']) or 'none'}")
        print(f"| {b} | " + " | ".join(cells) + " |")
    reals = {z: real(json.loads((runs / f"real_{z}" / "results.json").read_text()))
             for z in zoos if (runs / f"real_{z}" / "results.json").exists()}
    if reals:
        print()
        print("| real set (default mode) | " + " | ".join(reals) + " |")
        print("|---|" + "---|" * len(reals))
        for k in next(iter(reals.values())):
            print(f"| {k} | " + " | ".join(f"{r.get(k, float('nan')):.3g}" for r in reals.values()) + " |")


if __name__ == "__main__":
    fire.Fire(main)
