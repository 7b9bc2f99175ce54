"""A subset of the fuzz corpus (bench/fuzz_inputs.py): odd and malformed inputs end in a result or
one line, never a traceback, a hang, an output for a refused input or a replaced file."""
import importlib.util

from .conftest import ROOT


def test_fuzz_corpus_subset(tiny_zoo):
    spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "bench" / "fuzz_inputs.py")
    fz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fz)
    res = fz.fuzz(n_random=5, zoo=str(tiny_zoo), backend="torch")
    assert not res["bad"], res["bad"][:3]
    assert res["cases"] >= 150 and res["outcomes"]["ok"] >= 20 and res["outcomes"]["refused"] >= 100
    assert res["batches"]["predict_dir"] == "exit 2, failures listed"
    assert res["batches"]["userstudy export"].startswith("exit 2, ")
