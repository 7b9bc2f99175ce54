"""Gated colour transform (GCT): a harmonizer that learns from a few hundred photos.

Instead of predicting pixels (iS2AM, RainNet), GCT predicts a handful of numbers: a per-channel
affine map of the foreground in CIELAB (gain about the foreground mean, offset) and a gate
``g ∈ (0, 1)`` that scales the whole change::

    lab' = lab + g · (μ_fg + Δ + s ⊙ (lab − μ_fg) − lab)

from colour statistics of four regions — the foreground, the background, and the rings on both
sides of the mask's boundary, where foreground and background share the light most directly —
and their differences. The output space is the one the field's parametric harmonizers argue for
(Harmonizer, Ke et al. ECCV 2022: white-box filters; PCT-Net, Guerreiro et al. CVPR 2023:
colour-transform parameters; S²CRNet, Liang et al. ECCV 2022: curves): it keeps all texture, is
resolution-free (``harmonizers.fullres.harmonize`` refits the map at full resolution), and with
about 10 k parameters it has little room to memorise photos. The gate is what makes it
conservative: trained with unperturbed pairs among the composites (``--augment processes``), the
foreground-normalised MSE pulls ``g`` towards 0 where the statistics cannot tell a composite from
a real photo, and the last layer starts at zero, so an untrained model is the identity. After
training, a scale on the gate (the ``strength`` buffer) is chosen on held-out training photos: the
lowest error on their composites among the scales that move their real photos, passed through
unedited, by at most 2.5 levels on average — down to 0 (the identity) when the model does not help.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common import colour

from .net import register


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB ``N×3×H×W`` (clipped to [0, 1]) → CIELAB scaled by 1/100 (L in [0, 1], a and b about ±1)."""
    return colour.rgb_to_lab(x.clamp(0, 1), scale=0.01, dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rgb_to_lab`, out-of-gamut colours clipped in linear light."""
    return colour.linear_to_srgb(colour.lab_to_linear(lab, scale=0.01, dim=1).clamp(0, 1))


@dataclass(frozen=True)
class GCTConfig:
    hidden: int = 64
    ring: float = 0.06          # boundary ring width, as a share of the image side
    max_offset: float = 0.4     # largest shift of L, a, b (in Lab/100)
    max_log_gain: float = 0.7   # gains in [e^-0.7, e^0.7]
    dropout: float = 0.1
    # the foreground's mean a and b as features too. A foreground's own colour carries a prior: a
    # composite's is as likely as a real photo's, and its background predicts it poorly, so the best
    # estimate of the real colour moves it towards the colours foregrounds usually have
    # (``python -m eval.probes realness``). Off in the shipped variants: on the benchmark it helped
    # the validation photos but not the test split (docs/results.md).
    fg_chroma: bool = False


def _stats(lab: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation per channel: ``N×3`` each."""
    n = w.flatten(1).sum(1).clamp_min(1e-3)[:, None]
    mean = (lab * w).flatten(2).sum(2) / n
    var = ((lab - mean[..., None, None]) ** 2 * w).flatten(2).sum(2) / n
    return mean, (var + 1e-4).sqrt()


class GatedColourTransform(nn.Module):
    multiple_of = 1
    n_features = 39

    def __init__(self, cfg: GCTConfig = GCTConfig()):
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(
            nn.Linear(self.n_features + 2 * cfg.fg_chroma, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 7))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)      # gain 1, offset 0: the identity until trained
        # a scale on the gate, chosen after training on held-out photos (harmonizers.train.calibrate)
        self.register_buffer("strength", torch.ones(()))

    def features(self, lab: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features ``N×39``, foreground mean ``N×3``)."""
        m = (mask > 0.5).to(lab)
        k = max(3, int(self.cfg.ring * max(lab.shape[-2:])) * 2 + 1)
        grown = F.max_pool2d(m, k, 1, k // 2)
        shrunk = 1 - F.max_pool2d(1 - m, k, 1, k // 2)
        (mf, sf), (mb, sb) = _stats(lab, m), _stats(lab, 1 - m)
        (mi, si), (mo, so) = _stats(lab, m - shrunk), _stats(lab, grown - m)
        area = m.flatten(1).mean(1, keepdim=True)
        # relations, plus the foreground's own mean (lightness; with fg_chroma its a and b too), never
        # the background's absolute colours, which would let the network recognise its training
        # photos and recall their foregrounds
        feats = [mb - mf, mo - mi, mo - mf, mi - mf, mb - mo, (sb / sf).log(), (so / si).log(),
                 (si / sf).log(), (so / sb).log(), sf, mf[:, :3 if self.cfg.fg_chroma else 1], area, area.sqrt(),
                 *self.edge_contrast(lab, m)]
        return torch.cat(feats, 1), mf

    @staticmethod
    def edge_contrast(lab: torch.Tensor, m: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Across the boundary, pixel by pixel: the mean and spread of (local background mean −
        local foreground mean) in ``k×k`` windows that hold both. Where a real foreground meets its
        background the two sides share light and often surface, so the step is small; a foreground
        recoloured alone shows a systematic step."""
        bg = 1 - m
        nf, nb = F.avg_pool2d(m, k, 1, k // 2), F.avg_pool2d(bg, k, 1, k // 2)
        lf = F.avg_pool2d(lab * m, k, 1, k // 2) / nf.clamp_min(1e-3)
        lb = F.avg_pool2d(lab * bg, k, 1, k // 2) / nb.clamp_min(1e-3)
        w = ((nf > 0.2) & (nb > 0.2)).to(lab)
        return _stats(lb - lf, w)

    def params(self, image: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The predicted transform: gain ``N×3``, offset ``N×3``, gate ``N×1``, fg mean ``N×3``."""
        lab = rgb_to_lab(image)
        feats, mf = self.features(lab, mask)
        out = self.mlp(feats)
        c = self.cfg
        return {"gain": torch.exp(c.max_log_gain * torch.tanh(out[:, 0:3])),
                "offset": c.max_offset * torch.tanh(out[:, 3:6]),
                "gate": torch.sigmoid(out[:, 6:7] - 1.0), "mean": mf, "lab": lab}

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.params(image, mask)
        lab, mf = p["lab"], p["mean"][..., None, None]
        target = mf + p["offset"][..., None, None] + p["gain"][..., None, None] * (lab - mf)
        new = lab + self.strength * p["gate"][..., None, None] * (target - lab)
        return lab_to_rgb(new)


register("gct", {   # resolution-free: colour statistics → a gated Lab map
    "gct128": ({}, 128),
    "gct64": ({}, 64),
    "gct64c": ({"fg_chroma": True}, 64),   # + the foreground's mean chroma (docs/results.md)
    "gct64w": ({"hidden": 512}, 64),       # the same statistics and map, 40x the parameters (the learning curve)
}, net=GatedColourTransform, config=GCTConfig)
