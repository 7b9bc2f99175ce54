import pytest
import torch

from common import checkpoint
from syconet.model import create, load, meta

from .test_model import _batch


def test_generation_only_export(tmp_path):
    from syconet.model import export_generation
    torch.manual_seed(0)
    m = create("syconet_test").eval()
    checkpoint.save(tmp_path / "full.safetensors", m.state_dict(), meta(m, "syconet_test", ["A"], "fp"))
    export_generation(tmp_path / "full.safetensors", tmp_path / "gen.safetensors")
    g, md = load(tmp_path / "gen.safetensors")
    assert md["generation_only"] and not hasattr(g, "enc_z")
    assert (tmp_path / "gen.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size
    b = _batch()
    z = torch.randn(2, m.cfg.z_dim)
    assert torch.allclose(m.generate(b["real"], b["mask"], z), g.generate(b["real"], b["mask"], z), atol=2e-2)
    with pytest.raises(ValueError, match="generation-only"):
        g.reconstruct(b["composite"], b["real"], b["mask"])
