"""Every command: flags described in --help, and the README's commands exist and parse as written."""
import importlib
import inspect
import re
import shlex
import subprocess
import sys

import fire
import pytest
from fire import docstrings

from .conftest import ROOT

# every `python -m MODULE` command of the project, with its fire component in MODULE.CLI
COMMANDS = ["common.recipes", "common.wise", "router", "router.fast", "router.zoo", "router.train", "router.demo", "router.detect", "domains.build", "domains.finetune", "domains.masks",
            "harmonizers.train", "harmonizers.convert", "harmonizers.rescale", "syconet.train", "syconet.sample", "syconet.evaluate", "syconet.export",
            "eval.score", "eval.benchmark", "eval.compare", "eval.tables", "eval.probes", "eval.userstudy", "eval.compose", "eval.real", "eval.curve"]


def _component(module: str):
    name = "router.__main__" if module == "router" else module
    return importlib.import_module(name).CLI


def _functions(module: str) -> dict:
    cli = _component(module)
    return dict(cli) if isinstance(cli, dict) else {"": cli}


def test_every_command_is_listed():
    """A module that runs a fire CLI but is missing from COMMANDS would go untested."""
    found = set()
    for pkg in ("common", "domains", "syconet", "harmonizers", "router", "eval"):
        for path in (ROOT / pkg).glob("*.py"):
            if re.search(r"^if __name__ == \"__main__\":", path.read_text(), re.M):
                mod = f"{pkg}.{path.stem}" if path.stem != "__main__" else pkg
                found.add(mod)
    assert found - {"common.fire_main"} == set(COMMANDS)


@pytest.mark.parametrize("module", COMMANDS)
def test_every_flag_is_described(module):
    for name, fn in _functions(module).items():
        doc = inspect.cleandoc(fn.__doc__ or "")
        described = {a.name for a in (docstrings.parse(doc).args or []) if a.description}
        params = [p for p, v in inspect.signature(fn).parameters.items() if v.kind is not v.VAR_KEYWORD]
        missing = [p for p in params if p not in described]
        assert not missing, f"python -m {module} {name}: --help does not describe {missing}"
        assert "see the module docstring" not in doc.splitlines()[0]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_exits_zero(module, capsys):
    for name in _functions(module):
        with pytest.raises(fire.core.FireExit) as e:
            fire.Fire(_component(module), command=[name, "--help"] if name else ["--help"], name=module)
        assert e.value.code == 0
        cap = capsys.readouterr()
        shown = cap.out + cap.err
        fn = _functions(module)[name]
        for arg in docstrings.parse(inspect.cleandoc(fn.__doc__)).args or []:  # the help shows each description
            assert arg.description.split()[0] in shown, (module, name, arg.name)


def readme_commands(text: str) -> list[list[str]]:
    """The command lines of the README's ```bash blocks (continuations joined, comments dropped)."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(shlex.split(line))
    return cmds


def _check_python_m(argv: list[str], where: str):
    """``python -m MODULE [COMMAND] ARGS``: the module is one of ours (or pip), its command exists and
    every --flag is one of that command's parameters."""
    module, rest = argv[0], argv[1:]
    if module not in COMMANDS:
        return
    fns = _functions(module)
    name = rest[0] if rest and rest[0] in fns else ""
    assert name in fns, f"{where}: python -m {module} needs one of {sorted(fns)}"
    params = inspect.signature(fns[name]).parameters
    for tok in rest:
        if tok.startswith("--") and tok != "--help":
            flag = tok[2:].split("=", 1)[0].replace("-", "_")
            assert flag in params, f"{where}: python -m {module} {name} has no flag --{flag}"


def test_readme_commands_exist_and_parse():
    text = (ROOT / "README.md").read_text()
    cmds = readme_commands(text)
    assert len(cmds) >= 10
    make_targets = set(re.findall(r"^([a-z][a-z_-]*):", (ROOT / "Makefile").read_text(), re.M))
    for argv in cmds:
        where = "README: " + " ".join(argv)
        if argv[0] in ("python", ".venv/bin/python", "python3"):
            if argv[1] == "-m":
                if argv[2] == "fire":
                    _check_python_m(argv[3:], where)
                else:
                    _check_python_m(argv[2:], where)
            else:
                assert (ROOT / argv[1]).is_file(), where
        elif argv[0] == "fire":
            _check_python_m(argv[1:], where)
        elif argv[0] == "make":
            assert argv[1] in make_targets, where
        elif argv[0] == "bash":
            assert (ROOT / argv[1]).is_file(), where
        elif argv[0] in ("source", "pip", "torchrun", "open", "git", "cd", "apt-get", "xdg-open"):
            continue
        else:
            raise AssertionError(f"{where}: unknown program {argv[0]!r} (teach this test about it)")
    # the README activates the environment once, so that the python / fire commands run as written
    assert "source .venv/bin/activate" in text


def test_readme_quick_commands_run(tmp_path):
    """The README's first predict command, run as written (inside .venv), on the bundled demo."""
    text = (ROOT / "README.md").read_text()
    line = "python -m router predict assets/demo/koala.jpg assets/demo/koala_mask.png --out"
    assert line in text
    out = tmp_path / "koala.png"
    r = subprocess.run([sys.executable, *shlex.split(line)[1:], str(out), "--backend", "torch"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.is_file()
