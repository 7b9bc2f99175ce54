"""Which routing mode is best on held-out training photos?

    python -m eval.probes modes --data data/mini4 --runs runs # unified, routed, soft, oracle on held-out photos
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from common.cli import shared_args
from common.io import InputError
from domains.build import composite_sources
from common import metrics as M


@shared_args
@torch.no_grad()  # not inference_mode: the probe head is fitted with autograd
def modes(data="data/mini4", zoo: str | None = None, runs: str = "runs", family: str = "gct", folds: int = 5,
          batch_size: int = 32) -> dict:
    """Unified, routed, soft and oracle routing on held-out training photos (cross-fitted).

    Args:
        zoo: the zoo whose probe classifier is refitted per fold and whose models' gate scales are used.
        runs: folder with the fold models of a cross-fitted calibration.
        family: their name prefix (<runs>/<family>_all.fold<k>.safetensors, <family>_<domain>.fold<k>...).
        folds: K of --calibrate_folds.
    """
    from common import checkpoint
    from domains.dataset import HarmonyDataset, photo_fold
    from harmonizers.models import load as load_h
    from router.api import Harmonizer
    from router.train import HeadRefit
    h = Harmonizer.from_zoo(zoo)
    clf = h.classifier
    if clf.cfg.head != "probe":
        raise InputError(f"{h.manifest['classifier']}: a {clf.cfg.head} classifier; modes refits a probe head")
    doms = list(clf.cfg.domains)
    roles = {d: f"{family}_{d}" for d in doms if d in h.models}
    if h.unified is not None:
        roles["unified"] = f"{family}_all"
    scale = {r: float(h.unified.net.strength if r == "unified" else h.models[r].net.strength) for r in roles}
    paths = {(r, k): Path(runs) / f"{name}.fold{k}.safetensors" for r, name in roles.items() for k in range(folds)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no fold model ({len(missing)} missing; train with --calibrate_folds {folds})")
    size = checkpoint.read_meta(next(iter(paths.values())))["size"]
    sets = {s: HarmonyDataset(data, "all", "train", size=s, train=False, domain_names=doms) for s in {size, clf.cfg.size}}
    samples = sets[size].samples
    where = composite_sources(data)
    fitted = checkpoint.read_meta(h.manifest["classifier"]).get("probe", {})
    refit = HeadRefit(clf, fitted, sets[clf.cfg.size], samples, [where.get(s.composite.name, "unknown") for s in samples],
                      batch_size)
    fold = torch.tensor([photo_fold(s.domain, s.real.name, folds) for s in samples])
    mode_names = ("unified", "routed", "soft", "oracle") if h.unified is not None else ("routed", "soft", "oracle")
    avail = [d for d in doms if d in roles]  # the domains with a model, and their classifier columns
    col = torch.tensor([doms.index(d) for d in avail])
    one_hot = lambda a: torch.nn.functional.one_hot(a, len(doms)).float()  # noqa: E731
    top = lambda p: one_hot(col[p[:, col].argmax(1)])  # noqa: E731 (routed: the likeliest domain with a model)
    rows = {m: {"fMSE": [], "drift": []} for m in mode_names}
    base, photo, hits = [], [], []
    for k in range(folds):
        held = torch.nonzero(fold == k).flatten().tolist()
        if not held:
            continue
        refit.fit(fold != k)
        nets = {}
        for r in roles:
            nets[r] = load_h(paths[r, k])[0].eval()
            nets[r].net.strength.fill_(scale[r])
        for i0 in tqdm(range(0, len(held), batch_size), desc=f"fold {k}", unit="batch"):
            idx = held[i0:i0 + batch_size]
            small = [sets[size][i] for i in idx]
            big = [sets[clf.cfg.size][i] for i in idx]
            comp, real, mask = (torch.stack([it[key] for it in small]) for key in ("composite", "real", "mask"))
            m_big = torch.stack([it["mask"] for it in big])
            true = torch.tensor([it["domain"] for it in small])
            p_comp = clf.probabilities(torch.stack([it["composite"] for it in big]), m_big)
            p_real = clf.probabilities(torch.stack([it["real"] for it in big]), m_big)
            hits.append(p_comp.argmax(1) == true)
            with torch.inference_mode():
                outs = {x: {r: nets[r](inp, mask) for r in roles} for x, inp in (("comp", comp), ("real", real))}

            def mix(x, w):
                """Σ_d w_d·G_d over the domains with a model, weights renormalised; where they all
                weigh 0 (oracle on a domain without a model), the unified model, as eval.benchmark."""
                w, inp = w[:, col], comp if x == "comp" else real
                tot = w.sum(1, keepdim=True)
                out = sum((w / tot.clamp_min(1e-12))[:, j, None, None, None] * outs[x][d] for j, d in enumerate(avail))
                return torch.where(tot[..., None, None] > 0, out, outs[x].get("unified", inp))

            for m in mode_names:
                if m == "unified":
                    o_c, o_r = outs["comp"]["unified"], outs["real"]["unified"]
                else:
                    pc, pr = {"routed": (top(p_comp), top(p_real)), "soft": (p_comp, p_real),
                              "oracle": (one_hot(true), one_hot(true))}[m]
                    o_c, o_r = mix("comp", pc), mix("real", pr)
                rows[m]["fMSE"].append(M.fmse(o_c, real, mask))
                rows[m]["drift"].append(M.drift(o_r, real, mask))
            base.append(M.fmse(comp, real, mask))
            photo += [str(samples[i].real) for i in idx]
    base = torch.cat(base)
    groups = [torch.tensor([i for i, q in enumerate(photo) if q == p]) for p in dict.fromkeys(photo)]
    res = {"composites": len(base), "photos": len(groups), "fMSE_composite": float(base.mean()),
           "router_accuracy": float(torch.cat(hits).float().mean()), "scales": scale, "modes": {}}
    for m, v in rows.items():
        f, d = torch.cat(v["fMSE"]), torch.cat(v["drift"])
        res["modes"][m] = {"fMSE": float(f.mean()), "change": float(f.mean() / base.mean() - 1),
                           "harm_rate": float(M.harms(f, base).float().mean()),
                           "drift": float(torch.stack([d[g].mean() for g in groups]).mean())}
    print(f"{res['composites']} training composites of {res['photos']} photos, each harmonized by the models of the "
          f"fold that left its photo out ({folds} folds); router accuracy on them {res['router_accuracy']:.3f}\n")
    print("| mode | fMSE | change | harm rate | real-photo drift |\n|---|---:|---:|---:|---:|")
    print(f"| composite | {res['fMSE_composite']:.1f} | | | |")
    for m, r in res["modes"].items():
        print(f"| {m} | {r['fMSE']:.1f} | {r['change']:+.2%} | {r['harm_rate']:.1%} | {r['drift']:.2f} |")
    return res

