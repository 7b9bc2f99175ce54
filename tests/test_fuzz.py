"""A subset of the fuzz corpus (bench/fuzz_inputs.py): odd and malformed inputs end in a result or
one line, never a traceback, a hang, an output for a refused input or a replaced file."""
import importlib.util

import pytest
import torch

from .conftest import ROOT


def test_fuzz_corpus_subset(tiny_zoo):
    spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "bench" / "fuzz_inputs.py")
    fz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fz)
    res = fz.fuzz(n_random=5, zoo=str(tiny_zoo), backend="torch")
    assert not res["bad"], res["bad"][:3]
    assert res["cases"] >= 150 and res["outcomes"]["ok"] >= 20 and res["outcomes"]["refused"] >= 100
    assert res["batches"]["predict_dir"] == "exit 2, failures listed"
    assert res["batches"]["domains.build"] in ("ok", "refused, naming the file")
    assert res["batches"]["eval.score"] in ("ok", "refused, naming the file")
    assert res["batches"]["userstudy export"].startswith("exit 2, ")


@pytest.mark.parametrize("case", ["config_not_json", "config_a_list", "header_claims_1tb", "empty_file"])
def test_untrusted_checkpoints_are_refused_cleanly(tmp_path, case):
    import json
    import struct

    from safetensors.torch import save_file

    from common import checkpoint
    from common.io import InputError
    p = tmp_path / f"{case}.safetensors"
    if case == "config_not_json":
        save_file({"w": torch.zeros(2)}, str(p), metadata={"config": "{not json"})
    elif case == "config_a_list":
        save_file({"w": torch.zeros(2)}, str(p), metadata={"config": json.dumps([1, 2])})
    elif case == "header_claims_1tb":
        p.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    else:
        p.write_bytes(b"")
    with pytest.raises(InputError, match=p.name):
        checkpoint.read_meta(p)
