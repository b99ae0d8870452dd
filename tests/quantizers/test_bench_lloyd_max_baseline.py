"""The baseline of benchmarks/bench_lloyd_max.py is a correct plain Lloyd iteration.

A benchmark's speed-up means something only if its baseline solves the same problem: the
vectorized numpy Lloyd must converge to the levels of :func:`ratedist.quantizers.lloyd_max`.
Plain Lloyd contracts linearly (factor ``rho`` per sweep), so stopped when a sweep moves the
levels by at most ``tol`` it is within about ``tol / (1 - rho)`` of its fixed point: with
``tol = 1e-14`` and ``rho < 0.99`` (16 levels) that is below 1e-11.
"""

import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from ratedist.quantizers import lloyd_max
from ratedist.quantizers.companded import companded_levels
from ratedist.quantizers.lloyd_max import lloyd_residual
from ratedist.sources import Gaussian

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_lloyd_max.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(BENCH), run_name="bench_lloyd_max")


@pytest.mark.parametrize("n", [2, 3, 8, 16])
def test_numpy_baseline_converges_to_the_lloyd_max_levels(bench, n):
    src = Gaussian()
    out = bench["numpy_lloyd"](companded_levels(src, n), tol=1e-14, max_iter=20_000)
    assert out.residual <= 1e-14 and out.sweeps < 20_000
    assert lloyd_residual(src, out.levels) <= 1e-12  # the library's own criterion
    np.testing.assert_allclose(out.levels, lloyd_max(src, n).value.levels, rtol=0, atol=1e-11)


def test_numpy_baseline_stops_on_the_step_criterion(bench):
    src = Gaussian()
    start = companded_levels(src, 8)
    few = bench["numpy_lloyd"](start, tol=1e-12, max_iter=3)
    assert few.sweeps == 3 and few.residual > 1e-12
    full = bench["numpy_lloyd"](start, tol=1e-12)
    assert (
        full.residual
        <= 1e-12
        < bench["numpy_lloyd"](start, tol=1e-12, max_iter=full.sweeps - 1).residual
    )


def test_benchmark_script_runs_small(bench, capsys):
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        assert bench["main"](["--levels", "8", "--repeats", "1"]) == 0
    finally:
        if cores is not None:
            os.sched_setaffinity(0, cores)  # the script pins its process to one core
    out = capsys.readouterr().out
    assert "numpy Lloyd (baseline)" in out and "lloyd_max (Newton)" in out and "CPU s" in out
