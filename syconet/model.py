"""SycoNet (Niu et al., ICCV 2023, section 3.1): real image + mask + random vector → composite.

Generation branch: ``f^r = E^r([I^r, M])``, ``α = softmax(FC([f^r, z]))``, ``φ = Σ α_l φ_l`` over L
learnable basis LUTs, ``I^g = M·φ(I^r) + (1−M)·I^r``. Reconstruction branch: ``E^z([I^c, I^r, M])``
→ ``μ, log σ²``, ``z^c = μ + ε·σ``, the same FC → ``Ĩ^c``; loss ``L1(Ĩ^c, I^c) + w·KL``.
The encoders see the images at ``enc_size``; the LUT is applied at any resolution.

Ablations of Table 2 are config switches: ``rec_branch=False`` (adversarial loss instead),
``ez_real=False`` (``E^z`` sees ``[I^c, M]``), ``z_at_input=True`` (z tiled spatially and appended to
``E^r``'s input instead of the FC's), ``lut_design="lutv2"`` (identity + zero residual LUTs,
unnormalised coefficients, trained with [42]'s smoothness and monotonicity terms on the basis LUTs,
as [42, 4]); sampling ``z^c`` is :meth:`SycoNet.generate_zc`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import timm
import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint, registry
from common.device import resolve as resolve_device
from common.gan import lsgan_terms

from common.lut import apply_lut, combine, identity_lut, lut_regularisers

from .bank import basis_bank
from .official import OfficialSycoNet, OfficialSycoNetConfig


@dataclass(frozen=True)
class SycoNetConfig:
    backbone: str = "resnet18"   # any timm model name for E^r and E^z
    n_luts: int = 20             # L basis LUTs
    lut_dim: int = 17            # D lattice points per channel
    z_dim: int = 32              # d_z
    enc_size: int = 256          # encoders see this size
    kl_weight: float = 1e-3      # weight of KL (summed over z) against the foreground L1 (see README)
    kl_warmup: float = 0.2       # fraction of training over which the KL weight ramps up from 0
    rec_branch: bool = True      # False: "w/o rec", adversarial loss against real composites
    ez_real: bool = True         # False: "w/o I^r" in E^z's input
    z_at_input: bool = False     # True: "move z" to the encoder input
    lut_design: str = "syconet"  # "syconet" (identity + k-means looks, softmax) | "lutv2"
    bank_seed: int = 0
    adv_weight: float = 0.1
    lut_smooth: float = 0.0      # weight of [42]'s smoothness term on the basis LUTs (+ coefficients²)
    lut_mono: float = 0.0        # weight of [42]'s monotonicity term on the basis LUTs


VARIANTS = {
    "syconet_r18": {},
    "syconet_r18_96": {"enc_size": 96},
}


def register(variants: dict[str, dict]) -> None:
    """Add SycoNet variants (name: :class:`SycoNetConfig` overrides), here and in :mod:`common.registry`."""
    VARIANTS.update(variants)
    registry.register_variants("syconet", list(variants), create)


def _encoder(name: str, in_chans: int, pretrained_file: str | None = None) -> nn.Module:
    kw = {}
    if pretrained_file:
        kw = {"pretrained": True, "pretrained_cfg_overlay": {"file": pretrained_file}}
    return timm.create_model(name, in_chans=in_chans, num_classes=0, **kw)


class Discriminator(nn.Module):
    """A small PatchGAN-style critic on ``[I, M]`` for the "w/o rec" ablation."""

    def __init__(self, ch: int = 32):
        super().__init__()
        layers, c = [], 4
        for i, o in enumerate((ch, ch * 2, ch * 4)):
            layers += [nn.Conv2d(c, o, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c = o
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, image, mask):
        return self.net(torch.cat([image, mask], 1))


class SycoNet(nn.Module):
    def __init__(self, cfg: SycoNetConfig = SycoNetConfig(), pretrained_file: str | None = None, bank=None):
        super().__init__()
        self.cfg = cfg
        zin = cfg.z_dim if cfg.z_at_input else 0
        self.enc_r = _encoder(cfg.backbone, 4 + zin, pretrained_file)
        feat = self.enc_r.num_features
        self.fc = nn.Linear(feat + (0 if cfg.z_at_input else cfg.z_dim), cfg.n_luts)
        if cfg.rec_branch:
            self.enc_z = _encoder(cfg.backbone, 7 if cfg.ez_real else 4, pretrained_file)
            self.to_stats = nn.Linear(self.enc_z.num_features, 2 * cfg.z_dim)
        else:
            self.disc = Discriminator()
        if bank is None:
            if cfg.lut_design == "lutv2":
                bank = torch.cat([identity_lut(cfg.lut_dim)[None],
                                  torch.zeros(cfg.n_luts - 1, 3, *(cfg.lut_dim,) * 3)])
            else:
                bank = basis_bank(cfg.n_luts, cfg.lut_dim, cfg.bank_seed)
        self.bank = nn.Parameter(bank.clone())  # L×3×D×D×D, learned
        self.kl_scale = 1.0  # set by the trainer during KL warm-up
        if cfg.lut_design == "lutv2":  # start from the identity: w_0 = 1, the rest 0
            nn.init.zeros_(self.fc.weight)
            with torch.no_grad():
                self.fc.bias.zero_()
                self.fc.bias[0] = 1.0

    # -- pieces ---------------------------------------------------------------------------------
    def _small(self, x):
        s = self.cfg.enc_size
        if x.shape[-2:] == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)

    def coefficients(self, real, mask, z):
        """``α`` (``N×L``) for real images, masks and latent codes ``z`` (``N×d_z``)."""
        x = self._small(torch.cat([real, mask], 1))
        if self.cfg.z_at_input:
            x = torch.cat([x, z[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
            logits = self.fc(self.enc_r(x))
        else:
            logits = self.fc(torch.cat([self.enc_r(x), z], 1))
        return logits if self.cfg.lut_design == "lutv2" else logits.softmax(1)

    def render(self, real, mask, alpha):
        """Apply the combined LUT to the foreground, at the input's resolution, clamped to [0, 1]."""
        lut = combine(alpha, self.bank)
        return (mask * apply_lut(real, lut) + (1 - mask) * real).clamp(0, 1)  # as the official output

    def encode(self, composite, real, mask):
        """``E^z`` → ``(μ, log σ²)``."""
        x = torch.cat([composite, real, mask] if self.cfg.ez_real else [composite, mask], 1)
        mu, logvar = self.to_stats(self.enc_z(self._small(x))).chunk(2, 1)
        return mu, logvar.clamp(-10, 10)

    # -- public API -----------------------------------------------------------------------------
    def generate(self, real, mask, z=None, generator: torch.Generator | None = None):
        """Synthetic composites ``I^g`` for ``z ~ N(0, I)`` (or the ``z`` given)."""
        if z is None:
            z = torch.randn(real.shape[0], self.cfg.z_dim, generator=generator, device=real.device)
        return self.render(real, mask, self.coefficients(real, mask, z))

    def generate_zc(self, composite, real, mask):
        """The "sampling z^c" ablation: ``z ~ N(μ, σ²)`` from ``E^z`` on an original composite."""
        return self.reconstruct(composite, real, mask, sample=True)[0]

    def posterior_coefficients(self, composite, real, mask, sample: bool = True):
        """``(α, μ, log σ²)``: the coefficients for ``z^c = μ + ε·σ`` (``μ`` without ``sample``)."""
        if not hasattr(self, "enc_z"):
            raise ValueError("this SycoNet is generation-only (no E^z): it cannot reconstruct")
        mu, logvar = self.encode(composite, real, mask)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return self.coefficients(real, mask, z), mu, logvar

    def reconstruct(self, composite, real, mask, sample: bool = True):
        alpha, mu, logvar = self.posterior_coefficients(composite, real, mask, sample)
        return self.render(real, mask, alpha), mu, logvar

    def forward(self, batch: dict) -> dict:
        """Training losses for a batch dict with ``composite``, ``real``, ``mask``."""
        comp, real, mask = batch["composite"], batch["real"], batch["mask"]
        area = mask.flatten(1).sum(1).clamp_min(1.0)
        if self.cfg.rec_branch:
            alpha, mu, logvar = self.posterior_coefficients(comp, real, mask)
            rec = self.render(real, mask, alpha)
            l1 = ((rec - comp).abs() * mask).flatten(1).sum(1) / (3 * area)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = l1.mean() + self.kl_scale * self.cfg.kl_weight * kl.mean()
            out = {"rec_l1": l1.mean().detach(), "kl": kl.mean().detach()}
            if self.cfg.lut_smooth or self.cfg.lut_mono:  # [42]: λ_s (Σα² + TV) + λ_m mono
                tv, mono = lut_regularisers(self.bank)
                loss = loss + self.cfg.lut_smooth * (alpha.pow(2).mean() + tv) + self.cfg.lut_mono * mono
                out.update(tv=tv.detach(), mono=mono.detach())
            return {"loss": loss, **out}
        # "w/o rec": make I^g indistinguishable from the real composites (LSGAN, one optimizer:
        # the generator's term sees the critic's weights detached, the critic's term I^g detached)
        g_adv, d_loss = lsgan_terms(self.disc, self.generate(real, mask), comp, mask)
        return {"loss": self.cfg.adv_weight * g_adv + d_loss, "g_adv": g_adv.detach(), "d": d_loss.detach()}


def create(name: str = "syconet_r18", pretrained_file: str | None = None, **overrides) -> SycoNet:
    """Build a registered variant; ``overrides`` left as ``None`` keep the variant's default."""
    if name not in VARIANTS:
        registry.variants()  # imports the HARMONY_VARIANTS modules
    if name not in VARIANTS:
        raise ValueError(f"unknown SycoNet variant {name!r}; choose from {sorted(VARIANTS)}")
    valid = {f.name for f in fields(SycoNetConfig)}
    bad = set(overrides) - valid
    if bad:
        raise ValueError(f"unknown SycoNet config keys {sorted(bad)}")
    kw = {**VARIANTS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return SycoNet(SycoNetConfig(**kw), pretrained_file=pretrained_file)


def meta(model: SycoNet, arch: str, domains, fingerprint: str) -> dict:
    return {"kind": "syconet", "arch": arch, "config": asdict(model.cfg), "domains": list(domains),
            "data_fingerprint": fingerprint}


GENERATION_PREFIXES = ("enc_r.", "fc.", "bank")


def load(path, device="cpu") -> tuple[SycoNet, dict]:
    """Rebuild a SycoNet from its checkpoint alone (config checked before the weights). A
    generation-only checkpoint (:func:`export_generation`) has no ``E^z`` / critic: it generates."""
    device = resolve_device(device)
    tensors, m = checkpoint.load(path, kind="syconet", device=device)
    if m.get("arch") == "syconet_official":  # a converted released checkpoint (harmonizers.convert)
        model = OfficialSycoNet(OfficialSycoNetConfig(**m["config"]), bank=tensors["bank"].float())
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
        return model.to(device).eval(), m
    cfg = SycoNetConfig(**m["config"])
    bank = tensors["bank"].float()
    model = SycoNet(cfg, bank=bank)
    gen_only = bool(m.get("generation_only"))
    if gen_only:
        for name in ("enc_z", "to_stats", "disc"):
            if hasattr(model, name):
                delattr(model, name)
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    return model.to(device).eval(), m



def create_official(name: str = "syconet_official", **overrides) -> OfficialSycoNet:
    """The released SycoNet network (:mod:`syconet.official`), identity basis LUTs."""
    return OfficialSycoNet(OfficialSycoNetConfig(**{k: v for k, v in overrides.items() if v is not None}))


registry.register_variants("syconet", list(VARIANTS), create)
registry.register_variants("syconet", ["syconet_official"], create_official)
registry.register_loader("syconet", load)

def export_generation(src, dst, fp16: bool = True, overwrite: bool = False):
    """Keep what generation needs (``E^r``, the FC, the basis LUTs): half the size, for shipping."""
    tensors, m = checkpoint.load(src, kind="syconet")
    keep = {k: (v.half() if fp16 and v.is_floating_point() and k != "bank" else v)
            for k, v in tensors.items() if k.startswith(GENERATION_PREFIXES)}
    m = {**m, "generation_only": True, "stored_as": "float16" if fp16 else "float32"}
    m.pop("optimizer", None)
    return checkpoint.save(dst, keep, m, overwrite=overwrite)
