"""Every repository path named in README.md and in the sub-commands' help texts exists."""

import re
from pathlib import Path

import pytest

from ratedist import cli
from ratedist.commands import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
_PATH = re.compile(r"\b((?:simulations|paper_figures|benchmarks|analysis|docs)/[\w./-]*\w)")


def _paths(text: str) -> set[str]:
    return set(_PATH.findall(text))


def test_readme_paths_exist():
    missing = sorted(p for p in _paths((ROOT / "README.md").read_text()) if not (ROOT / p).exists())
    assert not missing, missing


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_paths_exist(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    missing = sorted(p for p in _paths(text) if not (ROOT / p).exists())
    assert not missing, missing
