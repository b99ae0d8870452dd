"""The console-script dispatcher: help on every sub-command, errors exit 2."""

import subprocess
import sys

import pytest

from ratedist import cli
from ratedist.commands import SUBCOMMANDS


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: ratedist " + name in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2


def test_console_script_is_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "ratedist.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "levels" in proc.stdout
