"""One registry: every kind's variants are created by name, every checkpoint loads by one ``load``."""
import json

import pytest
import torch

from common import checkpoint, registry
from common.io import InputError


def test_every_kind_registers_its_variants():
    names = registry.variants()
    for n in ("issam256", "rainnet256", "gct64", "issam_test", "syconet_r18", "syconet_official", "domain_classifier"):
        assert n in names
    assert registry.variants("syconet") == sorted(n for n in names if n.startswith("syconet"))
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        registry.create("nope")


def _roundtrip(model, meta, path):
    checkpoint.save(path, model.state_dict(), meta)
    loaded, m = registry.load(path)
    assert type(loaded) is type(model) and m["kind"] == meta["kind"]
    return loaded


def test_create_and_load_every_kind(tmp_path):
    from harmonizers.models import meta as hmeta
    from router.classifier import meta as cmeta
    from syconet.model import meta as smeta
    x, m = torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).float()
    h = registry.create("issam_test").eval()
    h2 = _roundtrip(h, hmeta(h, ["all"], "x"), tmp_path / "h.safetensors")
    with torch.no_grad():
        assert torch.allclose(h(x, m), h2(x, m))
    s = registry.create("syconet_test", n_luts=4).eval()
    assert s.bank.shape[0] == 4  # an override reaches the config
    s2 = _roundtrip(s, smeta(s, "syconet_test", ["all"], "x"), tmp_path / "s.safetensors")
    z = torch.randn(1, s.cfg.z_dim)
    with torch.no_grad():
        assert torch.allclose(s.generate(x, m, z), s2.generate(x, m, z), atol=1e-6)
    c = registry.create("domain_classifier", domains=["A", "B"], backbone="resnet10t", size=32).eval()
    c2 = _roundtrip(c, cmeta(c, "x"), tmp_path / "c.safetensors")
    with torch.no_grad():
        assert torch.allclose(c.probabilities(x, m), c2.probabilities(x, m), atol=1e-6)


def test_load_refuses_an_unknown_kind(tmp_path):
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "w.safetensors"), metadata={"config": json.dumps({"kind": "weird"})})
    with pytest.raises(InputError, match="checkpoint kind 'weird' is not one of"):
        registry.load(tmp_path / "w.safetensors")


def test_load_with_a_kind_refuses_another_kind(tmp_path):
    from harmonizers.models import meta as hmeta
    h = registry.create("gct_test")
    checkpoint.save(tmp_path / "h.safetensors", h.state_dict(), hmeta(h, ["all"], "x"))
    with pytest.raises(InputError, match=r"h.safetensors: checkpoint is a 'harmonizer', expected a 'syconet'"):
        registry.load(tmp_path / "h.safetensors", kind="syconet")
    assert registry.load(tmp_path / "h.safetensors", kind="harmonizer")[1]["arch"] == "gct"


def test_families_and_variants_from_another_module(monkeypatch, tmp_path):
    """A module named in HARMONY_VARIANTS registers variants of a shipped family; its name must import."""
    assert registry.family("issam64") == "issam" and registry.family("hrnet18_idih256") == "hrnet"
    assert registry.family("syconet_r18") == "syconet" and registry.family("nope") == "nope"
    (tmp_path / "my_variants.py").write_text(
        'from harmonizers.net import register\nregister("gct", {"gct_wide_x": ({"hidden": 12}, 48)})\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARMONY_VARIANTS", "tests.variants, my_variants")
    m = registry.create("gct_wide_x")
    assert m.cfg.hidden == 12 and m.size == 48 and registry.family("gct_wide_x") == "gct"
    monkeypatch.setenv("HARMONY_VARIANTS", "no_such_module_here")
    with pytest.raises(InputError, match="HARMONY_VARIANTS=no_such_module_here: cannot import 'no_such_module_here'"):
        registry.create("still_unknown")
