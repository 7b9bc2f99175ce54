"""The helper scripts under scripts/: what they write, and that the v3 pipeline runs recipes that
exist and parses as shell."""
import json
import re
import subprocess
import sys

from common import recipes
from domains.dataset import load_samples

from .conftest import ROOT


def test_benchmark_photos_exports_each_split_photo_once_with_a_mask(mini_data, tmp_path):
    out = tmp_path / "p"
    run = lambda: subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_photos.py"),  # noqa: E731
                                  "--data", str(mini_data), "--split", "test", "--out", str(out)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
    r = run()
    assert r.returncode == 0, r.stderr
    samples = load_samples(mini_data, "all", "test")
    rows = json.loads((out / "manifest.json").read_text())
    assert len(rows) == len({s.real for s in samples}) == json.loads(r.stdout)["photos"]
    for row in rows:
        img = next((out / "images").glob(row["name"] + ".*"))
        assert img.resolve() in {s.real.resolve() for s in samples}
        assert (out / "masks" / (row["name"] + ".png")).resolve().is_file()
    again = run()  # an existing output is never replaced
    assert again.returncode != 0 and "exists" in again.stderr


def test_v3_pipeline_uses_recipes_that_exist_and_parses():
    script = ROOT / "scripts" / "train_v3.sh"
    used = set(re.findall(r"common\.recipes args (\w+)", script.read_text()))
    assert used and used <= set(recipes.RECIPES), used - set(recipes.RECIPES)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
