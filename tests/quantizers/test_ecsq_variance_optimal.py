"""ECSQ (high-rate gap, slope, generalized Lloyd), companded and variance-optimal designs."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, optimize

from ratedist.quantizers import (
    ScalarQuantizer,
    companded,
    ecsq,
    generalized_lloyd,
    lloyd_max,
    variance_optimal,
)
from ratedist.quantizers.companded import cube_root_ppf
from ratedist.quantizers.ecsq import auto_cells
from ratedist.quantizers.exact import (
    deterministic_mse,
    deterministic_probabilities,
    entropy_bits,
    stochastic_error,
)
from ratedist.sources import Gaussian, GeneralizedGaussian, Laplace, StudentT

GAUSS = Gaussian(1.0)
B = 1.0 / math.sqrt(2.0)
LAPLACE = Laplace(B)
PDFS = {
    "gaussian": (GAUSS, lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),
    "laplace": (LAPLACE, lambda x: math.exp(-abs(x) / B) / (2 * B)),
}
GISH_PIERCE_BITS = 0.5 * math.log2(math.pi * math.e / 6)  # 0.2546 bit = 1.533 dB


def _quad(f, a, b):
    return integrate.quad(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]


def _ent(q, src):
    return entropy_bits(deterministic_probabilities(q, src))


# ------------------------------------------------------------------------------------- ECSQ
@pytest.mark.parametrize("name", ["gaussian", "laplace"])
def test_ecsq_high_rate_gap_is_gish_pierce(name):
    src = PDFS[name][0]
    d = {}
    for rate in (6, 7, 8):
        sol = ecsq(src, auto_cells(rate), entropy_bits=float(rate))
        q = sol.value
        assert sol.converged and abs(_ent(q, src) - rate) <= 1e-6
        d[rate] = deterministic_mse(q, src)
        # Gap to the Shannon (lower) bound at the entropy rate: R - R_SLB(D).
        r_slb = src.entropy_bits() - 0.5 * math.log2(2 * math.pi * math.e * d[rate])
        assert abs((rate - r_slb) - GISH_PIERCE_BITS) < 0.01
    # -6.02 dB per bit of entropy.
    for r in (6, 7):
        assert abs(10 * math.log10(d[r] / d[r + 1]) - 20 * math.log10(2)) < 0.02


def test_ecsq_entropy_target_and_beats_fixed_rate():
    for rate in (1, 2, 3):
        sol = ecsq(GAUSS, auto_cells(rate), entropy_bits=float(rate))
        assert sol.residual <= 1e-6 and abs(_ent(sol.value, GAUSS) - rate) <= 1e-6
        # At equal (entropy) rate ECSQ beats the fixed-rate Lloyd–Max quantizer with 2^R levels.
        assert deterministic_mse(sol.value, GAUSS) < deterministic_mse(
            lloyd_max(GAUSS, 2**rate).value, GAUSS
        )
    # Independent check of the exact MSE of an ECSQ design by quadrature.
    q = ecsq(GAUSS, 32, entropy_bits=2.0).value
    pdf = PDFS["gaussian"][1]
    edges = np.concatenate([[-np.inf], q.thresholds, [np.inf]])
    ref = sum(
        _quad(lambda x, l=lv: (x - l) ** 2 * pdf(x), a, b)
        for a, b, lv in zip(edges[:-1], edges[1:], q.levels, strict=True)
    )
    assert abs(deterministic_mse(q, GAUSS) - ref) <= 1e-10


def test_generalized_lloyd_decreases_lagrangian_and_general_structure_is_no_worse():
    lam = 0.05
    init = np.linspace(-3, 3, 12)
    sol = generalized_lloyd(GAUSS, init, lam)
    j = deterministic_mse(sol.value, GAUSS) + lam * _ent(sol.value, GAUSS)
    j0_q = ScalarQuantizer.from_levels(init)
    j0 = deterministic_mse(j0_q, GAUSS) + lam * _ent(j0_q, GAUSS)
    assert sol.converged and j < j0
    # Stationarity: levels are centroids of their cells (quadrature).
    pdf = PDFS["gaussian"][1]
    edges = np.concatenate([[-np.inf], sol.value.thresholds, [np.inf]])
    cents = [
        _quad(lambda x: x * pdf(x), a, b) / _quad(pdf, a, b) for a, b in itertools.pairwise(edges)
    ]
    np.testing.assert_allclose(cents, sol.value.levels, atol=1e-8)
    # The general (generalized-Lloyd) ECSQ at 1.5 bits is at least as good as the
    # uniform-threshold one (within its stopping tolerance).
    gen = ecsq(GAUSS, 16, entropy_bits=1.5, structure="general")
    utq = ecsq(GAUSS, 16, entropy_bits=1.5)
    assert abs(_ent(gen.value, GAUSS) - 1.5) < 1e-6
    assert deterministic_mse(gen.value, GAUSS) <= deterministic_mse(utq.value, GAUSS) * (1 + 1e-6)
    assert ecsq(GAUSS, 8, lam=0.01, structure="general").converged


def test_ecsq_bad_inputs():
    with pytest.raises(ValueError, match="entropy_bits"):
        ecsq(GAUSS, 8)
    with pytest.raises(ValueError, match="entropy_bits"):
        ecsq(GAUSS, 8, entropy_bits=2.0, lam=0.1)
    with pytest.raises(ValueError, match="entropy_bits"):
        ecsq(GAUSS, 8, entropy_bits=3.0)  # needs < log2(8)
    with pytest.raises(ValueError, match="entropy_bits"):
        ecsq(GAUSS, 8, entropy_bits=-1.0)
    with pytest.raises(ValueError, match="entropy_bits"):
        ecsq(GAUSS, 8, entropy_bits=float("nan"))
    with pytest.raises(ValueError, match="lam"):
        ecsq(GAUSS, 8, lam=-1.0, structure="general")
    with pytest.raises(ValueError, match="structure"):
        ecsq(GAUSS, 8, lam=0.1)
    with pytest.raises(ValueError, match="structure"):
        ecsq(GAUSS, 8, entropy_bits=1.0, structure="lattice")
    with pytest.raises(ValueError, match="n_levels"):
        ecsq(GAUSS, 1, entropy_bits=0.5)


# ---------------------------------------------------------------------------- companded
def test_cube_root_laws_match_numeric_quadrature():
    q = np.array([0.02, 0.3, 0.5, 0.77, 0.995])
    for src in (GAUSS, LAPLACE, StudentT(df=5.0, scale=0.8), GeneralizedGaussian(0.7, 1.3)):

        def g(x, src=src):
            return float(src.pdf(x)) ** (1 / 3)

        z = 2 * _quad(g, 0, np.inf)
        x = cube_root_ppf(src, q)
        cdf = np.array([0.5 + math.copysign(_quad(g, 0, abs(v)), v) / z for v in x])
        np.testing.assert_allclose(cdf, q, atol=1e-10)


def test_companded_gaussian_levels_are_normal_quantiles():
    from scipy import stats

    q = companded(GAUSS, 8).value
    np.testing.assert_allclose(
        q.levels, stats.norm.ppf((np.arange(8) + 0.5) / 8, scale=math.sqrt(3)), atol=1e-14
    )
    np.testing.assert_allclose(
        q.thresholds, stats.norm.ppf(np.arange(1, 8) / 8, scale=math.sqrt(3)), atol=1e-14
    )
    qm = companded(GAUSS, 8, thresholds="midpoint").value
    np.testing.assert_allclose(qm.thresholds, 0.5 * (qm.levels[1:] + qm.levels[:-1]))


# --------------------------------------------------------------------- variance-optimal
def _best_uniform_stochastic(src, n):
    def f(a):
        return stochastic_error(ScalarQuantizer.from_levels(np.linspace(-a, a, n)), src).mse

    res = optimize.minimize_scalar(f, bounds=(0.05, 30), method="bounded", options={"xatol": 1e-10})
    return res.fun


@pytest.mark.parametrize("name", ["gaussian", "laplace"])
@pytest.mark.parametrize("n", [2, 3, 4, 8, 16, 64])
def test_variance_optimal_is_stationary_and_beats_uniform(name, n):
    src, pdf = PDFS[name]
    sol = variance_optimal(src, n)
    q = sol.value
    lv = q.levels
    assert sol.converged and sol.residual <= 1e-10
    np.testing.assert_array_equal(lv, -lv[::-1])
    # Exact error vs quadrature (variance inside + truncation bias in both tails).
    var = sum(
        _quad(lambda x, a=a, b=b: (b - x) * (x - a) * pdf(x), a, b)
        for a, b in itertools.pairwise(lv)
    )
    bias = 2 * _quad(lambda x: (x - lv[-1]) ** 2 * pdf(x), lv[-1], np.inf)
    err = stochastic_error(q, src)
    assert abs(err.mse - (var + bias)) <= 1e-10
    # ALQ optimality conditions under quadrature: E[X - l_{j-1}; cell j-1] = E[l_{j+1} - X; cell j]
    # for interior levels, and 2 E[X - l_s; X > l_s] = E[X - l_{s-1}; last cell] at the end.
    for j in range(1, n - 1):
        a_ = _quad(lambda x, j=j: (x - lv[j - 1]) * pdf(x), lv[j - 1], lv[j])
        b_ = _quad(lambda x, j=j: (lv[j + 1] - x) * pdf(x), lv[j], lv[j + 1])
        assert abs(a_ - b_) <= 1e-10
    end = _quad(lambda x: (x - lv[-2]) * pdf(x), lv[-2], lv[-1])
    tail = 2 * _quad(lambda x: (x - lv[-1]) * pdf(x), lv[-1], np.inf)
    assert abs(end - tail) <= 1e-10
    best_uniform = _best_uniform_stochastic(src, n)
    if n <= 3:  # 2 and 3 symmetric levels are uniform: same optimum
        assert err.mse == pytest.approx(best_uniform, rel=1e-8)
    else:
        assert err.mse < best_uniform * (1 - 1e-3)


def test_variance_optimal_many_levels_and_heavy_tails():
    sol = variance_optimal(GAUSS, 256)
    assert sol.converged and sol.n_iter < 50
    assert stochastic_error(sol.value, GAUSS).mse < _best_uniform_stochastic(GAUSS, 256)
    assert variance_optimal(StudentT(df=4.0), 16).converged


def test_variance_optimal_bad_inputs():
    with pytest.raises(ValueError, match="n_levels"):
        variance_optimal(GAUSS, 1)
    with pytest.raises(TypeError, match="n_levels"):
        variance_optimal(GAUSS, 4.5)
    with pytest.raises(ValueError, match="tol"):
        variance_optimal(GAUSS, 4, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        variance_optimal(GAUSS, 4, max_iter=0)
    with pytest.raises(ValueError, match="init"):
        variance_optimal(GAUSS, 4, init=[0.0, 1.0])
    with pytest.raises(TypeError, match="source"):
        variance_optimal(None, 4)
