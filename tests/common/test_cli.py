"""common.cli: the commands' plumbing."""
import json
import subprocess
import sys

import pytest

from common import cli
from common.io import InputError

from ..conftest import ROOT


class TestCli:
    def test_guarded_turns_input_errors_into_exit_2(self, capsys):
        def bad():
            raise InputError("photo.jpg: not an image")
        with pytest.raises(SystemExit) as e:
            cli.guarded(bad)
        assert e.value.code == 2 and capsys.readouterr().err == "error: photo.jpg: not an image\n"
        assert cli.guarded(lambda: 5) == 5
        with pytest.raises(ZeroDivisionError):  # a bug is not bad input: it keeps its traceback
            cli.guarded(lambda: 1 / 0)

    def test_shared_args_describe_common_flags_once(self):
        def fn(data="d", steps=1, mine=0):
            """Do it.

            Args:
                mine: my own flag.
            """
        cli.shared_args(fn)
        assert "mine: my own flag." in fn.__doc__
        assert f"data: {cli.SHARED_ARGS['data']}" in fn.__doc__ and f"steps: {cli.SHARED_ARGS['steps']}" in fn.__doc__

    def test_names_and_json(self, capsys):
        assert cli.names("a, b,,c") == ["a", "b", "c"] and cli.names(["x", "y"]) == ["x", "y"]
        cli.print_json({"k": 1.5})
        assert json.loads(capsys.readouterr().out) == {"k": 1.5}

    def test_a_command_fails_with_one_line(self, tmp_path):
        r = subprocess.run([sys.executable, "-m", "eval.score", "--data", str(tmp_path / "nowhere")], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nowhere" in r.stderr
