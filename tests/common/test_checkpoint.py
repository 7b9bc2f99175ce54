"""common.checkpoint: the self-describing checkpoint."""

import pytest
import torch

from common import checkpoint
from common.io import InputError


class TestCheckpoint:
    def test_roundtrip_keeps_tensors_and_meta(self, tmp_path):
        t = {"a.w": torch.randn(3, 4), "a.n": torch.tensor(7, dtype=torch.int64), "b": torch.zeros(2)}
        path = checkpoint.save(tmp_path / "c.safetensors", t, {"kind": "harmonizer", "arch": "x", "config": {"k": 1}})
        got, meta = checkpoint.load(path)
        assert set(got) == set(t) and all(torch.equal(got[k], t[k]) for k in t) and got["a.n"].dtype == torch.int64
        assert meta["kind"] == "harmonizer" and meta["config"] == {"k": 1} and "version" in meta
        assert checkpoint.read_meta(path) == meta
        assert set(checkpoint.prefixed(got, "a")) == {"w", "n"}

    def test_kind_is_checked_before_the_weights(self, tmp_path):
        path = checkpoint.save(tmp_path / "c.safetensors", {"x": torch.zeros(1)}, {"kind": "syconet", "arch": "s"})
        with pytest.raises(InputError, match="is a 'syconet', expected a 'harmonizer'"):
            checkpoint.load(path, kind="harmonizer")
        with pytest.raises(ValueError, match="kind must be one of"):
            checkpoint.save(tmp_path / "d.safetensors", {"x": torch.zeros(1)}, {"kind": "weights"})

    def test_refusals_name_the_file(self, tmp_path):
        with pytest.raises(InputError, match="checkpoint not found"):
            checkpoint.read_meta(tmp_path / "none.safetensors")
        (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
        with pytest.raises(InputError, match="junk.safetensors: not a safetensors checkpoint"):
            checkpoint.read_meta(tmp_path / "junk.safetensors")
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
        with pytest.raises(InputError, match="has no 'config' metadata"):
            checkpoint.read_meta(tmp_path / "plain.safetensors")

    def test_no_overwrite_unless_asked_and_atomic(self, tmp_path):
        path = tmp_path / "c.safetensors"
        checkpoint.save(path, {"x": torch.ones(1)}, {"kind": "classifier", "arch": "c"})
        before = path.read_bytes()
        with pytest.raises(InputError, match="already exists"):
            checkpoint.save(path, {"x": torch.zeros(1)}, {"kind": "classifier", "arch": "c"}, overwrite=False)
        assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
