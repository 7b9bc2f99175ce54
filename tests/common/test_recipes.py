import importlib
import inspect
import re
import subprocess
import sys

import pytest

from common import recipes
from common.io import InputError

from ..conftest import ROOT


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_option_is_an_option_of_its_command(name):
    """A recipe's flags parse: each is a parameter of the command's main, of its default's type."""
    r = recipes.get(name)
    params = inspect.signature(importlib.import_module(r["command"]).main).parameters
    for k, v in r["args"].items():
        assert k in params, f"{name}: --{k} is not an option of {r['command']}"
        default = params[k].default
        if default not in (None, inspect.Parameter.empty):
            assert isinstance(v, type(default)) or (isinstance(default, float) and isinstance(v, int)), (name, k)


def test_the_training_script_runs_recipes_that_exist():
    script = (ROOT / "scripts" / "train_models.sh").read_text()
    used = set(re.findall(r'^\s*train "[^"]+" (\w+)', script, re.M))
    assert used and used <= set(recipes.RECIPES), used - set(recipes.RECIPES)
    assert used == set(recipes.RECIPES)  # and every recipe is one the script runs


def test_kwargs_overrides_and_the_shell_form():
    assert recipes.kwargs("syconet_all", steps=5, arch=None)["steps"] == 5
    assert recipes.kwargs("syconet_all", arch=None)["arch"] == recipes.RECIPES["syconet_all"]["args"]["arch"]
    with pytest.raises(InputError, match="no recipe 'nope'"):
        recipes.kwargs("nope")
    out = subprocess.run([sys.executable, "-m", "common.recipes", "args", "gct_all"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == recipes.argv("gct_all")
    assert "--augment processes:0.8" in out.stdout and "--steps 2000" in out.stdout
