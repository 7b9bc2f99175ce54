import json


def test_scorer_pred_dir(mini_data, tmp_path):
    import subprocess
    import sys

    from common.io import read_image, write_image
    from domains.dataset import load_samples

    from ..conftest import ROOT
    samples = load_samples(mini_data, "MiniDay2night", "test")
    pred = tmp_path / "pred"
    for s in samples[:-1]:  # perfect results: the real images, named by the composite's stem
        write_image(read_image(s.real), pred / f"{s.composite.stem}.png")
    cmd = [sys.executable, "-m", "eval.score", "--data", str(mini_data), "--domains", "MiniDay2night",
           "--pred", str(pred), "--json", str(tmp_path / "r.json")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "1 prediction(s) missing" in r.stderr and samples[-1].composite.stem in r.stderr
    write_image(read_image(samples[-1].real), pred / f"{samples[-1].composite.stem}.jpg")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-1500:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["summary"]["MiniDay2night"]["fMSE"] < 5  # PNG exact, one JPEG: near zero
    base = subprocess.run([sys.executable, "-m", "eval.score", "--data", str(mini_data), "--domains", "MiniDay2night",
                           "--pred", "composite"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert base.returncode == 0 and "| MiniDay2night |" in base.stdout
