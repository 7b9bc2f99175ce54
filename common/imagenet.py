"""ImageNet normalisation, as timm's ``IMAGENET_DEFAULT_MEAN`` / ``_STD`` (kept here without
importing torch, for the ONNX and mask paths)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
