"""Sympy moments of stochastic grid rounding, the quadratic floor and the halving identities
against independent numerics (the two-point law, a quadrature, Monte Carlo over r)."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

from ratedist.symbolic import grid as G
from ratedist.symbolic.lambdify import lambdified


def test_moments_symbolic():
    assert sp.simplify(G.mean() - G.x) == 0
    assert sp.simplify(G.mse_coordinate() - G.r * (1 - G.r) * G.Delta**2) == 0
    assert sp.simplify(G.mse_max_rng() - G.Delta**2 * (sp.Rational(1, 4) + G.eps**2)) == 0
    assert G.quadratic_floor_check() == (0, 0)


@pytest.mark.parametrize(("r", "delta", "eps"), [(0.3, 1.0, 0.0), (0.9, 0.2, 2.0**-9)])
def test_moments_against_the_two_point_law(r, delta, eps):
    k = -4
    x = delta * (k + r)
    outcomes, probs = delta * np.array([k + 1, k]), np.array([r + eps, 1 - r - eps])
    mse = lambdified(G.mse_coordinate_rng, ("r", "Delta", "eps"))
    assert float(mse(r, delta, eps)) == pytest.approx(probs @ (outcomes - x) ** 2, rel=1e-12)
    if eps == 0:
        assert float(lambdified(G.mean, ("x", "Delta"))(x, delta)) == pytest.approx(x, rel=1e-14)


def test_halving_identities_by_quadrature():
    frac = lambda r: 2 * r - np.floor(2 * r)  # noqa: E731
    c = lambda r: frac(r) * (1 - frac(r)) / 4 - r * (1 - r) / 4  # noqa: E731
    opts = {"points": [0.5], "epsabs": 1e-14}
    assert G.mean_variance_uniform() == sp.Rational(1, 6)
    assert G.halving_excess_mean() == 0
    assert G.halving_excess_second_moment() == sp.Rational(1, 1920)
    assert integrate.quad(c, 0, 1, **opts)[0] == pytest.approx(0.0, abs=1e-14)
    assert integrate.quad(lambda r: c(r) ** 2, 0, 1, **opts)[0] == pytest.approx(1 / 1920)
    assert float(G.halving_relative_spread()) == pytest.approx(math.sqrt(30) / 10, rel=1e-15)
    ratio = lambdified(G.halving_ratio, ("rho",))
    for rho in (0.01, 0.2, 0.5):
        for r in (rho, 1 - rho):
            direct = frac(r) * (1 - frac(r)) / 4 / (r * (1 - r))
            assert float(ratio(rho)) == pytest.approx(direct, rel=1e-12, abs=1e-15)
