"""Reverse water-filling against a convex solver; Blahut–Arimoto against the Gaussian D(R)."""

import math

import numpy as np
import pytest
from scipy import optimize

from ratedist.rd import blahut_arimoto, grid_probabilities, reverse_water_filling, shannon
from ratedist.sources import Gaussian, Laplace

VARIANCES = np.array([2.0, 1.0, 0.5, 0.1, 0.03])


def _solver_rate(variances, distortion):
    """min sum (1/2) log2(v_i / D_i) s.t. sum D_i = D, 0 < D_i <= v_i, by SLSQP."""
    n = variances.size

    def rate(x):
        return float(np.sum(0.5 * np.log2(variances / x)))

    x0 = np.full(n, distortion / n)
    x0 = np.minimum(x0, variances)
    x0 *= distortion / x0.sum() if x0.sum() < distortion else 1.0
    res = optimize.minimize(
        rate,
        np.minimum(x0, variances * 0.999),
        method="SLSQP",
        bounds=[(1e-9, v) for v in variances],
        constraints=[{"type": "eq", "fun": lambda x: np.sum(x) - distortion}],
        options={"ftol": 1e-13, "maxiter": 1000},
    )
    assert res.success, res.message
    return res.fun, res.x


@pytest.mark.parametrize("distortion", [0.05, 0.3, 1.0, 2.5])
def test_water_filling_matches_convex_solver(distortion):
    wf = reverse_water_filling(VARIANCES, distortion=distortion)
    r_solver, d_solver = _solver_rate(VARIANCES, distortion)
    # SLSQP stops at ftol 1e-13 on the objective; its minimiser is accurate to ~1e-6.
    assert wf.rate_bits == pytest.approx(r_solver, abs=1e-6)
    np.testing.assert_allclose(wf.component_distortions, d_solver, atol=1e-5)
    assert wf.rate_bits <= r_solver + 1e-9  # the exact solution is never worse than the solver
    assert wf.distortion == pytest.approx(distortion, rel=1e-12)


@pytest.mark.parametrize("rate", [0.1, 1.0, 3.0, 12.0])
def test_water_filling_rate_and_distortion_are_inverse(rate):
    wf = reverse_water_filling(VARIANCES, rate_bits=rate)
    assert wf.rate_bits == pytest.approx(rate, rel=1e-12)
    back = reverse_water_filling(VARIANCES, distortion=wf.distortion)
    assert back.rate_bits == pytest.approx(rate, rel=1e-12)
    assert back.water_level == pytest.approx(wf.water_level, rel=1e-12)
    # Components below the water are not described at all.
    below = VARIANCES <= wf.water_level
    np.testing.assert_array_equal(wf.component_rates_bits[below], 0.0)


def test_equal_variances_reduce_to_gaussian_dr():
    n, v, rate = 7, 1.3, 5.0
    wf = reverse_water_filling(np.full(n, v), rate_bits=rate)
    assert wf.distortion == pytest.approx(n * v * 2 ** (-2 * rate / n), rel=1e-12)
    assert reverse_water_filling(np.full(n, v), rate_bits=0.0).distortion == pytest.approx(n * v)


def test_water_filling_bad_inputs():
    with pytest.raises(ValueError, match="variances"):
        reverse_water_filling([1.0, -1.0], rate_bits=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        reverse_water_filling([1.0], rate_bits=1.0, distortion=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        reverse_water_filling([1.0])
    with pytest.raises(ValueError, match="distortion"):
        reverse_water_filling([1.0, 2.0], distortion=4.0)
    with pytest.raises(ValueError, match="rate_bits"):
        reverse_water_filling([1.0, 2.0], rate_bits=-1.0)
    with pytest.raises(TypeError, match="rate_bits"):
        reverse_water_filling([1.0, 2.0], rate_bits="a lot")


# Blahut–Arimoto -----------------------------------------------------------------------------
STEP = 0.1
GRID = np.arange(-7.0, 7.0 + STEP / 2, STEP)


def test_blahut_arimoto_reproduces_gaussian_dr_within_grid_error():
    target = np.array([0.5, 0.25, 0.1, 0.03])
    ba = blahut_arimoto(Gaussian(1.0), 1.0 / (2.0 * target), GRID)
    assert ba.converged.all()
    # At slope beta the Gaussian optimum has D = 1/(2 beta) exactly; the discretized source
    # keeps that to the stopping tolerance.
    np.testing.assert_allclose(ba.distortion, target, rtol=1e-6)
    # The discretized source is (to O(h^4)) Gaussian with variance 1 + h^2/12 (midpoint cell
    # masses), so D_BA(R) = (1 + h^2/12) 2^(-2R): compare with the CONTINUOUS D(R) at a
    # tolerance of that size, h^2/12 = 8.3e-4 relative at h = 0.1 ...
    d_sh = shannon.gaussian_distortion(ba.rate_bits)
    assert np.all(np.abs(ba.distortion / d_sh - 1) <= 1.2 * STEP**2 / 12)
    # ... and, sharper, with the D(R) of the discretized variance (stopping tolerance).
    p = grid_probabilities(Gaussian(1.0), GRID)
    var_h = float(p @ GRID**2)
    np.testing.assert_allclose(ba.distortion, var_h * d_sh, rtol=1e-6)


def test_blahut_arimoto_laplace_lies_between_slb_and_gaussian_bound():
    lap = Laplace(1.0 / math.sqrt(2.0))  # unit variance
    # tol 1e-7 keeps this fast (BA converges slowly on the Laplace law); a run at 1e-8 moves
    # R by < 5e-4 bits, well inside the margins to both bounds (>= 0.16 % in D, 13 % in D).
    ba = blahut_arimoto(lap, np.array([2.0, 5.0, 10.0]), GRID, tol=1e-7)
    slb = shannon.shannon_lower_bound_distortion(ba.rate_bits, lap.entropy_bits())
    gauss = shannon.gaussian_distortion(ba.rate_bits, 1.0)
    # Slack for the grid: the same h^2/12 relative error as above.
    assert np.all(ba.distortion >= slb * (1 - 1e-3))
    assert np.all(ba.distortion <= gauss * (1 + 1e-3))
    assert np.all(np.diff(ba.rate_bits) > 0)  # larger slope, higher rate


def test_blahut_arimoto_bad_inputs():
    with pytest.raises(ValueError, match="beta"):
        blahut_arimoto(Gaussian(1.0), [-1.0], GRID)
    with pytest.raises(ValueError, match="grid"):
        blahut_arimoto(Gaussian(1.0), [1.0], GRID[::-1])
    with pytest.raises(TypeError, match="source"):
        blahut_arimoto("gaussian", [1.0], GRID)
    with pytest.raises(ValueError, match="tol"):
        blahut_arimoto(Gaussian(1.0), [1.0], GRID, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        blahut_arimoto(Gaussian(1.0), [1.0], GRID, max_iter=0)
