"""The console-script dispatcher: help on every sub-command, errors exit 2."""

import importlib
import os
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


def test_any_oserror_of_a_command_is_one_line_and_exit_2(monkeypatch, capsys):
    def run(args):
        raise PermissionError(13, "Permission denied", "/results/x.npz")

    monkeypatch.setattr(importlib.import_module(SUBCOMMANDS["validate"].module), "run", run)
    assert cli.main(["validate", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err == "ratedist validate: error: '/results/x.npz': Permission denied\n"


def test_warnings_print_as_one_line_naming_the_command(monkeypatch, capsys):
    import warnings

    def run(args):
        warnings.warn("gd diverged at step 4; the trace is truncated there", stacklevel=1)
        return 0

    monkeypatch.setattr(importlib.import_module(SUBCOMMANDS["validate"].module), "run", run)
    assert cli.main(["validate", "--quick"]) == 0
    err = capsys.readouterr().err
    assert (
        err == "ratedist validate: warning: gd diverged at step 4; the trace is truncated there\n"
    )


def test_a_closed_pipe_ends_quietly_with_status_1(monkeypatch, capsys):
    def run(args):
        raise BrokenPipeError(32, "Broken pipe")  # `ratedist ... | head` after head exits

    monkeypatch.setattr(importlib.import_module(SUBCOMMANDS["validate"].module), "run", run)
    assert cli.main(["validate", "--quick"]) == 1
    assert capsys.readouterr().err == ""


def _fail_if_called(*args, **kwargs):
    raise AssertionError("the work started before the output path was checked")


def _bad_out_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    return [str(tmp_path / "missing" / "x.png"), str(tmp_path / "file" / "x.png"), os.devnull]


def test_rd_checks_the_plot_path_before_computing(tmp_path, monkeypatch, capsys):
    from ratedist.rd import operational

    monkeypatch.setattr(operational, "rd_point", _fail_if_called)
    for path in [*_bad_out_paths(tmp_path), str(tmp_path), str(tmp_path / "x.unknownfmt")]:
        argv = ["rd", "--dim", "100", "--compressor", "top-k:k=10", "--plot", path]
        assert cli.main(argv) == 2, path
        err = capsys.readouterr().err
        assert err.startswith("ratedist rd: error: --plot") and path in err
        assert len(err.splitlines()) == 1


def test_demo_and_simulate_check_their_out_directory_before_computing(
    tmp_path, monkeypatch, capsys
):
    from ratedist.commands import demo
    from ratedist.sim import sweep

    monkeypatch.setattr(demo, "_levels_section", _fail_if_called)
    monkeypatch.setattr(sweep, "run_sweep", _fail_if_called)
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[sweep]\nsteps = 2\n[problem]\nname = 'tridiagonal_quadratic'\nn_workers = 2\n"
        "dim = 4\n[[algorithms]]\nname = 'gd'\n"
    )
    for path in _bad_out_paths(tmp_path)[1:]:
        for argv in (["demo", "--out", path], ["simulate", str(cfg), "--out", path]):
            assert cli.main(argv) == 2, argv
            err = capsys.readouterr().err
            assert f"error: --out {path!r}" in err and len(err.splitlines()) == 1


def test_simulate_names_a_config_that_is_a_directory_or_not_text(tmp_path, capsys):
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    for path, why in ((tmp_path, "is a directory"), (binary, "is not UTF-8 text")):
        assert cli.main(["simulate", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"config file {str(path)!r} {why}" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("table", "why"),
    [
        (
            "[code]\nname = 'random_replication'\nd = 5",
            "d (replication) must be in [1, n] = [1, 4]",
        ),
        ("[code]\nname = 'crc'\ns = 4", "s (stragglers) must be in [0, n - 1] = [0, 3]"),
        ("[code]\nname = 'frc'\ns = 2", "n must be divisible by s + 1 = 3"),
        ("[participation]\nname = 'bernoulli'\np = [0.1, 1.0]", "p must lie in [0.0, 1.0)"),
        ("[code]\nname = 'lt'", "unknown gradient code 'lt'; known: crc, frc"),
        (
            "[participation]\nname = 'sometimes'",
            "unknown participation 'sometimes'; known: adversarial, all",
        ),
        ("[aggregation]\nname = 'median'", "unknown aggregation 'median'; known: decode"),
        ("[code]\nname = 'uncoded'\nn = 6", "the code has 6 partitions but problem"),
        (
            "[[algorithms]]\nname = 'compressed_sgd'\n"
            "compressor = 'stochastic-sign:scale=bound,bound=-1'",
            "bound must be > 0",
        ),
    ],
    ids=[
        "replication-d>n",
        "crc-s>=n",
        "frc-indivisible",
        "straggle-p=1",
        "unknown-code",
        "unknown-participation",
        "unknown-aggregation",
        "partitions!=n_workers",
        "stochastic-sign-R<=0",
    ],
)
def test_simulate_refuses_a_bad_coding_config_in_one_line_before_running(
    table, why, tmp_path, monkeypatch, capsys
):
    from ratedist.sim import sweep

    monkeypatch.setattr(sweep, "run_config", _fail_if_called)
    cfg = tmp_path / "s.toml"
    cfg.write_text(
        "[sweep]\nsteps = 2\ngamma = 0.1\n[problem]\nname = 'tridiagonal_quadratic'\n"
        f"n_workers = 4\ndim = 4\n[[algorithms]]\nname = 'gd'\n{table}\n"
    )
    assert cli.main(["simulate", str(cfg), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ratedist simulate: error: ") and why in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "res").exists()
