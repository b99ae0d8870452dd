"""Sympy derivations of ratedist.symbolic.gradient_coding against independent numerics.

* the bounds of ratedist.bounds.gradient_coding (hand-written numpy) ≡ the lambdified sympy
  expressions to 1e-12 relative (two codings of the same algebra);
* step limits: the gradient coefficient changes sign exactly at the derived limit;
* horizon constants: sympy's minimiser ≡ scipy.optimize.minimize_scalar to 1e-7 relative (the
  solver's xatol), the minimum to 1e-10;
* decoding-weight moments: closed forms ≡ exact enumeration of every straggler mask (numpy)
  to 1e-12;
* step-size sums: the integral comparisons bound the direct sums.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import sympy as sp

from ratedist import bounds
from ratedist.symbolic import gradient_coding as S
from ratedist.symbolic.lambdify import lambdified

RTOL = 1e-12  # two float64 codings of the same closed form


def test_convex_step_residual_and_limit():
    r = S.convex_step_residual()
    assert sp.simplify(r.coeff(S.g2) - S.gamma / 2 * (S.L * S.gamma - 1)) == 0
    assert S.convex_step_limit() == 1 / S.L
    coef = sp.lambdify((S.gamma, S.L), r.coeff(S.g2))
    assert coef(0.99, 1.0) < 0 < coef(1.01, 1.0)  # sign change exactly at gamma = 1/L
    assert sp.simplify(S.convex_noise() - S.V * S.gamma * (1 + S.L * S.gamma) / 2) == 0
    assert S.nonconvex_step_limit() == 1 / S.L


@pytest.mark.parametrize("seed", range(4))
def test_bounds_equal_sympy(seed):
    rng = np.random.default_rng(seed)
    D0, Delta0, L, V = rng.uniform(0.1, 5, size=4)
    gamma, T = rng.uniform(0.05, 1) / L, float(rng.integers(1, 1000))
    cb = bounds.coded_convex_bound(dist0_sq=D0, L=L, sigma_sq=V, gamma=gamma)
    f = lambdified("gc.convex_bound", ["D0", "gamma", "T", "L", "V"])
    assert cb(T) == pytest.approx(f(D0, gamma, T, L, V), rel=RTOL)
    nb = bounds.coded_nonconvex_bound(delta0=Delta0, L=L, sigma_sq=V, gamma=gamma)
    f = lambdified("gc.nonconvex_bound", ["Delta0", "gamma", "T", "L", "V"])
    assert nb(T) == pytest.approx(f(Delta0, gamma, T, L, V), rel=RTOL)
    assert bounds.coded_convex_bound(dist0_sq=D0, L=L, sigma_sq=V).step_size == pytest.approx(
        lambdified("gc.convex_step_limit", ["L"])(L), rel=RTOL
    )


@pytest.mark.parametrize("seed", range(3))
def test_horizon_constants_against_a_solver(seed):
    rng = np.random.default_rng(10 + seed)
    D0, Delta0, L, V = rng.uniform(0.1, 5, size=4)
    c_cvx = lambdified("gc.convex_horizon_constant", ["D0", "V"])(D0, V)
    c_ncv = lambdified("gc.nonconvex_horizon_constant", ["Delta0", "L", "V"])(Delta0, L, V)
    assert bounds.convex_horizon_constant(dist0_sq=D0, sigma_sq=V) == pytest.approx(c_cvx, rel=RTOL)
    assert bounds.nonconvex_horizon_constant(delta0=Delta0, L=L, sigma_sq=V) == pytest.approx(
        c_ncv, rel=RTOL
    )
    for scaled, c_opt, value in (
        (lambda c: D0 / (2 * c) + c * V, c_cvx, math.sqrt(2 * D0 * V)),
        (lambda c: 2 * Delta0 / c + L * c * V, c_ncv, 2 * math.sqrt(2 * Delta0 * L * V)),
    ):
        res = scipy.optimize.minimize_scalar(
            scaled, bounds=(1e-6, 1e3), method="bounded", options={"xatol": 1e-10}
        )
        assert res.x == pytest.approx(c_opt, rel=1e-7)
        assert scaled(c_opt) == pytest.approx(value, rel=1e-10)
    assert lambdified("gc.convex_horizon_value", ["D0", "V"])(D0, V) == pytest.approx(
        math.sqrt(2 * D0 * V), rel=RTOL
    )
    assert lambdified("gc.nonconvex_horizon_value", ["Delta0", "L", "V"])(
        Delta0, L, V
    ) == pytest.approx(2 * math.sqrt(2 * Delta0 * L * V), rel=RTOL)


def test_horizon_bounds_have_slope_minus_half():
    T = np.array([100.0, 400.0, 1600.0, 6400.0])
    kw = dict(L=2.0, sigma_sq=0.5, c=3.0)  # c/sqrt(T) <= 1/L from T = 36 on
    nb = bounds.nonconvex_horizon_bound(T, delta0=1.0, **kw)
    slope = np.polyfit(np.log(T), np.log(nb), 1)[0]
    assert slope == pytest.approx(-0.5, abs=1e-12)  # exactly (2 Delta0/c + L c V)/sqrt(T)
    cb = bounds.convex_horizon_bound(T, dist0_sq=1.0, **kw)
    assert np.all(
        np.diff(np.log(cb)) / np.diff(np.log(T)) < -0.5 + 1e-12
    )  # (1 + L gamma)/2 shrinks
    assert np.all(cb <= np.sqrt(T) ** -1 * (1.0 / (2 * 3.0) + 3.0 * 0.5) * (1 + 1e-12))


def test_weight_moments_against_enumeration():
    n, d, p = 6, 2, 0.3
    # probability rescaling: one worker's weight, two outcomes
    w = 1 / (d * (1 - p))
    assert lambdified("gc.weight_sq_probability", ["d", "p"])(d, p) == pytest.approx(
        (1 - p) * w * w, rel=RTOL
    )
    assert lambdified("gc.weight_sq_norm_probability", ["n", "d", "p"])(n, d, p) == pytest.approx(
        bounds.probability_weight_sq_norm(n, d, p), rel=RTOL
    )
    # count rescaling: every m-subset gives n^2/(d^2 m)
    for m in range(1, n + 1):
        a = np.zeros(n)
        a[:m] = n / (d * m)
        assert lambdified("gc.weight_sq_norm_count", ["n", "d", "m"])(n, d, m) == pytest.approx(
            a @ a, rel=RTOL
        )
    # variance and covariance of c_j: enumerate the 2^3 answer patterns of three workers,
    # partitions j = {0, 1} and l = {1, 2} (sharing worker 1)
    cj, cl, pr = [], [], []
    for ans in itertools.product([0, 1], repeat=3):
        a = np.array(ans) * w
        cj.append(a[0] + a[1])
        cl.append(a[1] + a[2])
        pr.append(np.prod([(1 - p) if x else p for x in ans]))
    cj, cl, pr = map(np.asarray, (cj, cl, pr))
    var = pr @ (cj - pr @ cj) ** 2
    cov = pr @ ((cj - pr @ cj) * (cl - pr @ cl))
    assert lambdified("gc.coefficient_variance_probability", ["d", "p"])(d, p) == pytest.approx(
        var, rel=RTOL
    )
    f = lambdified("gc.coefficient_covariance_probability", ["s", "d", "p"])
    assert f(1, d, p) == pytest.approx(cov, rel=RTOL)
    assert lambdified("gc.weight_sq_norm_frc", ["n", "s"])(8, 1) == bounds.frc_weight_sq_norm(8, 1)
    G = 1.7
    assert lambdified("gc.straggler_variance_replication", ["G", "d", "p"])(
        G, d, p
    ) == pytest.approx(bounds.replication_straggler_variance(d, p, G), rel=RTOL)


@pytest.mark.parametrize("offset", [1, 2, 7])
def test_step_sum_comparisons(offset):
    lower = lambdified("gc.step_sum_lower", ["T", "offset"])
    upper = lambdified("gc.harmonic_sum_upper", ["T", "offset"])
    for T in (1, 2, 10, 1000, 12345):
        u = np.arange(offset, offset + T, dtype=float)
        assert lower(T, offset) <= np.sum(u**-0.5) * (1 + 1e-15)
        assert upper(T, offset) >= np.sum(1 / u) * (1 - 1e-15)


def test_weighted_convex_sum_below_gamma_squared():
    # gamma_t (1 + L gamma_t) V gamma_t / 2 <= gamma_t^2 V (1 + L gamma_0)/2 for gamma_t <= gamma_0
    f = sp.lambdify((S.gamma, S.L, S.V), S.weighted_convex_sum())
    g0, L, V = 0.8, 1.2, 0.3
    for g in np.linspace(1e-3, g0, 7):
        assert f(g, L, V) <= g * g * V * (1 + L * g0) / 2 * (1 + 1e-15)
