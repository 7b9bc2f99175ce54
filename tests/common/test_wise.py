"""common.wise: weight-space mixing of a finetune with its starting point."""

import pytest
import torch

from common import checkpoint, wise
from common.io import InputError


def _pair(tmp_path, shape=(3, 4), arch="gct64"):
    torch.manual_seed(0)
    base = {"w": torch.randn(3, 4), "h": torch.randn(5).half(), "n": torch.tensor(3)}
    tuned = {"w": torch.randn(*shape), "h": torch.randn(5).half(), "n": torch.tensor(9)}
    b = checkpoint.save(tmp_path / "base.safetensors", base, {"kind": "harmonizer", "arch": "gct64", "config": {"a": 1}})
    t = checkpoint.save(tmp_path / "tuned.safetensors", tuned, {"kind": "harmonizer", "arch": arch, "config": {"a": 2}})
    return base, tuned, b, t


def test_the_ends_and_the_middle(tmp_path):
    base, tuned, b, t = _pair(tmp_path)
    for alpha, want in ((0.0, base["w"]), (1.0, tuned["w"]), (0.25, 0.75 * base["w"] + 0.25 * tuned["w"])):
        out = tmp_path / f"m{alpha}.safetensors"
        wise.main(str(b), str(t), str(out), alpha=alpha)
        got, meta = checkpoint.load(out)
        assert torch.allclose(got["w"], want, atol=1e-6)
        assert got["h"].dtype == torch.float16  # each tensor keeps its dtype
        assert int(got["n"]) == 9  # integer counters are the finetune's
        assert meta["config"] == {"a": 2} and meta["wise"] == {"base": str(b), "tuned": str(t), "alpha": alpha}


def test_a_mixed_harmonizer_loads_and_sits_between(tmp_path):
    from harmonizers.models import create, load, meta as hmeta
    torch.manual_seed(1)
    a, c = create("gct64"), create("gct64")
    for p in c.parameters():
        p.data.add_(0.1)
    sa, sc = a.state_dict(), c.state_dict()
    meta = hmeta(a, ["x"], "fp")
    checkpoint.save(tmp_path / "a.safetensors", sa, meta)
    checkpoint.save(tmp_path / "c.safetensors", sc, meta)
    wise.main(str(tmp_path / "a.safetensors"), str(tmp_path / "c.safetensors"), str(tmp_path / "m.safetensors"))
    net, _ = load(tmp_path / "m.safetensors")
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (sa[k] + sc[k]) / 2, atol=1e-6), k


def test_refusals(tmp_path):
    _, _, b, t = _pair(tmp_path, shape=(4, 3))
    with pytest.raises(InputError, match=r"tuned.safetensors: w is \(4, 3\), the base's \(3, 4\)"):
        wise.main(str(b), str(t), str(tmp_path / "m.safetensors"))
    _, _, b, t = _pair(tmp_path, arch="issam64")
    with pytest.raises(InputError, match="its arch differs"):
        wise.main(str(b), str(t), str(tmp_path / "m.safetensors"))
    _, _, b, t = _pair(tmp_path)
    with pytest.raises(InputError, match=r"alpha must be in \[0, 1\]"):
        wise.main(str(b), str(t), str(tmp_path / "m.safetensors"), alpha=1.5)
    (tmp_path / "m.safetensors").write_bytes(b"keep")
    with pytest.raises(InputError, match="exists"):
        wise.main(str(b), str(t), str(tmp_path / "m.safetensors"))
    assert (tmp_path / "m.safetensors").read_bytes() == b"keep"
    with pytest.raises(InputError, match="not the base's"):
        wise.interpolate({"a": torch.zeros(1)}, {"b": torch.zeros(1)}, 0.5)
