"""The ``ratedist levels`` command: JSON contract, table output, errors exit 2."""

import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from ratedist import cli
from ratedist.quantizers import DESIGNS, design, evaluate
from ratedist.sources import SOURCES, make_source

REQUIRED_KEYS = {"method", "source", "levels", "thresholds", "mse", "entropy_bits"}


def run_json(capsys, *argv):
    assert cli.main(["levels", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_choices_and_flags_come_from_the_registries():
    parser = cli.build_parser(only="levels")
    sub = next(a for a in parser._actions if a.dest == "command").choices["levels"]
    actions = {a.dest: a for a in sub._actions}
    assert list(actions["source"].choices) == SOURCES.names()
    assert list(actions["method"].choices) == DESIGNS.names()
    for option in SOURCES.option_names():
        assert option in actions and actions[option].type is float


@pytest.mark.parametrize("method", DESIGNS.names())
def test_json_contract_for_every_method(method, capsys):
    res = run_json(
        capsys, "--source", "laplace", "--scale", "0.5", "--bits", "2", "--method", method
    )
    assert REQUIRED_KEYS <= set(res)
    assert res["method"] == method and res["source"] == "laplace"
    lv = np.array(res["levels"])
    assert np.all(np.diff(lv) > 0) and len(res["thresholds"]) == lv.size - 1
    rounding = DESIGNS.facts(method)["rounding"]
    assert res["rounding"] == rounding
    # The mse is the library's exact number under that method's own rounding.
    src = make_source("laplace", scale=0.5)
    sol = design(method, src, bits=2)
    ev = evaluate(sol.value, src, rounding=rounding)
    assert res["mse"] == pytest.approx(ev.mse, rel=1e-12)
    assert res["entropy_bits"] == pytest.approx(ev.entropy_bits, rel=1e-12)
    assert sum(res["probabilities"]) == pytest.approx(1.0, abs=1e-12)
    if DESIGNS.facts(method)["truncated"]:
        assert res["alpha"] == pytest.approx(lv[-1]) and res["form"] == "bound"
    assert all(math.isfinite(res[k]) for k in ("gap_db", "gap_bits", "rate_bits"))


def test_json_values_for_gaussian_lloyd_max(capsys):
    res = run_json(capsys, "--source", "gaussian", "--levels", "2", "--method", "lloyd-max")
    assert res["levels"] == pytest.approx(
        [-math.sqrt(2 / math.pi), math.sqrt(2 / math.pi)], abs=1e-14
    )
    assert res["mse"] == pytest.approx(1 - 2 / math.pi, abs=1e-14)
    assert res["converged"] and res["residual"] <= 1e-12
    assert res["source_params"] == {"sigma": 1.0}


def test_exact_flag_and_ecsq_budget(capsys):
    bound = run_json(capsys, "--source", "laplace", "--levels", "8", "--method", "tnq")
    exact = run_json(capsys, "--source", "laplace", "--levels", "8", "--method", "tnq", "--exact")
    assert bound["form"] == "bound" and exact["form"] == "exact"
    assert exact["mse"] <= bound["mse"] + 1e-12
    e = run_json(capsys, "--source", "gaussian", "--bits", "3", "--method", "ecsq")
    assert e["entropy_bits"] == pytest.approx(3.0, abs=1e-6)
    e2 = run_json(
        capsys, "--source", "gaussian", "--bits", "2", "--levels", "9", "--method", "ecsq"
    )
    assert len(e2["levels"]) <= 9 and e2["entropy_bits"] == pytest.approx(2.0, abs=1e-6)


def test_heavy_sources_from_the_command_line(capsys):
    t = run_json(
        capsys, "--source", "student-t", "--df", "5", "--bits", "3", "--method", "lloyd-max"
    )
    assert t["source_params"]["df"] == 5.0 and t["converged"]
    g = run_json(
        capsys,
        "--source",
        "gen-gaussian",
        "--shape",
        "0.8",
        "--bits",
        "2",
        "--method",
        "variance-optimal",
    )
    assert g["rounding"] == "stochastic" and g["converged"]


def test_table_output(capsys):
    assert cli.main(["levels", "--source", "gaussian", "--bits", "2", "--method", "uniform"]) == 0
    out = capsys.readouterr().out
    assert "method uniform" in out and "mse" in out and "gap to Shannon" in out
    assert "0.9956866" in out  # Max's optimal uniform step for 4 levels: levels ±Δ/2, ±3Δ/2
    assert len(out.strip().splitlines()) == 7 + 4


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--bits", "0"], "--bits"),
        (["--bits", "17"], "--bits"),
        (["--levels", "1"], "--levels"),
        (["--levels", "65537"], "--levels"),
        (["--bits", "2", "--scale", "-1"], "--scale"),
        (["--bits", "2", "--scale", "0"], "--scale"),
        (["--bits", "2", "--scale", "nan"], "--scale"),
        (["--bits", "2", "--scale", "inf"], "--scale"),
        ([], "--bits or --levels"),
        (["--bits", "2", "--levels", "4"], "bits or levels"),
        (["--bits", "2", "--exact"], "exact"),
        (["--bits", "2", "--df", "4"], "df"),  # gaussian takes no df
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(argv, flag, capsys):
    code = cli.main(["levels", "--source", "gaussian", "--method", "lloyd-max", *argv])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("df", ["2", "2.0001", "2.9", "1.5", "-3", "nan"])
def test_student_t_needs_df_in_the_design_range(df, capsys):
    code = cli.main(
        ["levels", "--source", "student-t", "--df", df, "--bits", "2", "--method", "uniform"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--df" in err and len(err.strip().splitlines()) == 1
    assert "[3, 1e+06]" in err or "finite" in err  # names the allowed range
    assert cli.main(["levels", "--source", "student-t", "--bits", "2", "--method", "uniform"]) == 2
    assert "--df" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # once OverflowError / "variance must be > 0" without naming the flag
        (["--source", "gaussian", "--scale", "1e300"], "--scale (gaussian sigma) must lie in"),
        (["--source", "gaussian", "--scale", "1e-300"], "--scale (gaussian sigma) must lie in"),
        (["--source", "laplace", "--scale", "1e-80"], "--scale must lie in [1e-75, 1e+75]"),
        (["--source", "power-law", "--shape", "2.5"], "--shape (power-law tail_index)"),
        (["--source", "gen-gaussian", "--shape", "0.1"], "--shape must lie in [0.2, 50]"),
        (["--source", "gaussian", "--df", "3"], "--df: source 'gaussian' does not take it"),
    ],
)
def test_source_flags_outside_their_range_name_flag_value_and_range(argv, message, capsys):
    assert cli.main(["levels", *argv, "--levels", "4", "--method", "lloyd-max"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--source", "cauchy", "--bits", "2", "--method", "uniform"],
        ["--source", "gaussian", "--bits", "2", "--method", "kmeans"],
        ["--source", "gaussian", "--bits", "two", "--method", "uniform"],
        ["--bits", "2", "--method", "uniform"],
    ],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["levels", *argv])
    assert exc.value.code == 2


def test_console_script_subprocess():
    exe = shutil.which("ratedist")
    assert exe is not None, "the ratedist console script is not installed"
    proc = subprocess.run(
        [exe, "levels", "--source", "gaussian", "--bits", "1", "--method", "lloyd-max", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["mse"] == pytest.approx(1 - 2 / math.pi, abs=1e-14)
