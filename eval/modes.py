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
    from common import checkpoint, registry
    from domains.dataset import HarmonyDataset, photo_fold
    from router.api import Harmonizer
    from router.train import HeadRefit, photo_folders
    h = Harmonizer.from_zoo(zoo)
    clf = h.classifier
    if clf.cfg.head != "probe":
        raise InputError(f"{h.manifest['classifier']}: a {clf.cfg.head} classifier; modes refits a probe head")
    scorer = _Mixer(clf, h, family)
    scale = {r: float(h.unified.net.strength if r == "unified" else h.models[r].net.strength) for r in scorer.roles}
    paths = {(r, k): Path(runs) / f"{name}.fold{k}.safetensors" for r, name in scorer.roles.items() for k in range(folds)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no fold model ({len(missing)} missing; train with --calibrate_folds {folds})")
    size = checkpoint.read_meta(next(iter(paths.values())))["size"]
    sets = {s: HarmonyDataset(data, "all", "train", size=s, train=False, domain_names=scorer.doms)
            for s in {size, clf.cfg.size}}
    samples = sets[size].samples
    where = composite_sources(data)
    fitted = checkpoint.read_meta(h.manifest["classifier"]).get("probe", {})
    refit = HeadRefit(clf, fitted, sets[clf.cfg.size], samples, [where.get(s.composite.name, "unknown") for s in samples],
                      batch_size, folders=photo_folders(data, samples))
    fold = torch.tensor([photo_fold(s.domain, s.real.name, folds) for s in samples])
    rows = {m: {"fMSE": [], "drift": []} for m in scorer.mode_names}
    base, photo, hits = [], [], []
    for k in range(folds):
        held = torch.nonzero(fold == k).flatten().tolist()
        if not held:
            continue
        refit.fit(fold != k)
        nets = {}
        for r in scorer.roles:
            nets[r] = registry.load(paths[r, k], kind="harmonizer")[0].eval()
            nets[r].net.strength.fill_(scale[r])
        for i0 in tqdm(range(0, len(held), batch_size), desc=f"fold {k}", unit="batch"):
            idx = held[i0:i0 + batch_size]
            b, hit = scorer.batch(nets, [sets[size][i] for i in idx], [sets[clf.cfg.size][i] for i in idx], rows)
            base.append(b)
            hits.append(hit)
            photo += [str(samples[i].real) for i in idx]
    res = _summary(rows, torch.cat(base), photo, hits, scale)
    _print_modes(res, folds)
    return res


class _Mixer:
    """The modes of one zoo on batches: each role's model (a domain's, or ``unified``), mixed by the
    classifier's probabilities as each mode mixes them."""

    def __init__(self, clf, h, family: str):
        self.clf, self.doms = clf, list(clf.cfg.domains)
        self.roles = {d: f"{family}_{d}" for d in self.doms if d in h.models}
        if h.unified is not None:
            self.roles["unified"] = f"{family}_all"
        self.mode_names = ("unified", "routed", "soft", "oracle") if h.unified is not None else ("routed", "soft", "oracle")
        self.avail = [d for d in self.doms if d in self.roles]  # the domains with a model, and their classifier columns
        self.col = torch.tensor([self.doms.index(d) for d in self.avail])

    def one_hot(self, a):
        return torch.nn.functional.one_hot(a, len(self.doms)).float()

    def top(self, p):
        """Routed: the likeliest domain with a model."""
        return self.one_hot(self.col[p[:, self.col].argmax(1)])

    def mix(self, outs: dict, w, inp):
        """Σ_d w_d·G_d over the domains with a model, weights renormalised; where they all weigh 0
        (oracle on a domain without a model), the unified model, as eval.benchmark."""
        w = w[:, self.col]
        tot = w.sum(1, keepdim=True)
        out = sum((w / tot.clamp_min(1e-12))[:, j, None, None, None] * outs[d] for j, d in enumerate(self.avail))
        return torch.where(tot[..., None, None] > 0, out, outs.get("unified", inp))

    def batch(self, nets: dict, small: list, big: list, rows: dict):
        """Score one batch (items at the harmonizers' size and at the classifier's) into ``rows``;
        returns the composites' fMSE and whether the classifier routed each right."""
        comp, real, mask = (torch.stack([it[key] for it in small]) for key in ("composite", "real", "mask"))
        m_big = torch.stack([it["mask"] for it in big])
        true = torch.tensor([it["domain"] for it in small])
        p_comp = self.clf.probabilities(torch.stack([it["composite"] for it in big]), m_big)
        p_real = self.clf.probabilities(torch.stack([it["real"] for it in big]), m_big)
        with torch.inference_mode():
            outs = {x: {r: nets[r](inp, mask) for r in self.roles} for x, inp in (("comp", comp), ("real", real))}
        for m in self.mode_names:
            if m == "unified":
                o_c, o_r = outs["comp"]["unified"], outs["real"]["unified"]
            else:
                pc, pr = {"routed": (self.top(p_comp), self.top(p_real)), "soft": (p_comp, p_real),
                          "oracle": (self.one_hot(true), self.one_hot(true))}[m]
                o_c, o_r = self.mix(outs["comp"], pc, comp), self.mix(outs["real"], pr, real)
            rows[m]["fMSE"].append(M.fmse(o_c, real, mask))
            rows[m]["drift"].append(M.drift(o_r, real, mask))
        return M.fmse(comp, real, mask), p_comp.argmax(1) == true


def _summary(rows: dict, base, photo: list, hits: list, scale: dict) -> dict:
    """Per mode: fMSE, its change against the composites, harm rate and real-photo drift (each
    photo weighing the same)."""
    groups = [torch.tensor([i for i, q in enumerate(photo) if q == p]) for p in dict.fromkeys(photo)]
    res = {"composites": len(base), "photos": len(groups), "fMSE_composite": float(base.mean()),
           "router_accuracy": float(torch.cat(hits).float().mean()), "scales": scale, "modes": {}}
    for m, v in rows.items():
        f, d = torch.cat(v["fMSE"]), torch.cat(v["drift"])
        res["modes"][m] = {"fMSE": float(f.mean()), "change": float(f.mean() / base.mean() - 1),
                           "harm_rate": float(M.harms(f, base).float().mean()),
                           "drift": float(torch.stack([d[g].mean() for g in groups]).mean())}
    return res


def _print_modes(res: dict, folds: int) -> None:
    print(f"{res['composites']} training composites of {res['photos']} photos, each harmonized by the models of the "
          f"fold that left its photo out ({folds} folds); router accuracy on them {res['router_accuracy']:.3f}\n")
    print("| mode | fMSE | change | harm rate | real-photo drift |\n|---|---:|---:|---:|---:|")
    print(f"| composite | {res['fMSE_composite']:.1f} | | | |")
    for m, r in res["modes"].items():
        print(f"| {m} | {r['fMSE']:.1f} | {r['change']:+.2%} | {r['harm_rate']:.1%} | {r['drift']:.2f} |")
