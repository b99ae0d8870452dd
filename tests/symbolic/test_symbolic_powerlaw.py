"""Power-law tails: closed-form optimum of the bound, its growth exponent, and numerics."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic import powerlaw as P
from ratedist.symbolic.lambdify import lambdified

QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 500}


def pdf(x, a, sigma):
    return a / (2 * sigma) * (1 + abs(x) / sigma) ** (-(a + 1))


def tail_integral(fn, alpha, a, sigma):
    """``int_alpha^inf fn(x - alpha) p(x) dx`` via ``v = 1/(1 + x/sigma)`` (finite interval, no
    slowly decaying integrand for quad to extrapolate)."""
    v_max = 1 / (1 + alpha / sigma)

    def integrand(v):
        x = sigma * (1 / v - 1)
        return fn(x - alpha) * a / 2 * v ** (a - 1)

    return integrate.quad(integrand, 0.0, v_max, **QUAD)[0]


def objective(alpha, a, sigma, s, rule="nonuniform"):
    bias = 2 * tail_integral(lambda d: d**2, alpha, a, sigma)
    if rule == "uniform":
        return alpha**2 / s**2 + bias
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, a, sigma)), 0, alpha, **QUAD)[0]
    return mass**3 / (4 * s**2) + bias


def slope(alpha, a, sigma, s):
    tail = tail_integral(lambda d: d, alpha, a, sigma)
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, a, sigma)), 0, alpha, **QUAD)[0]
    return 3 * mass**2 * 2 * np.cbrt(pdf(alpha, a, sigma)) / (4 * s**2) - 4 * tail


def test_constant_and_optimum_closed_forms():
    a = P.a
    assert sp.simplify(P.c_constant() - 3 / P.b * sp.sqrt(3 * a * (a - 1) / 2)) == 0
    c = P.c_constant()
    assert sp.simplify(P.mse_opt() - 27 * a * P.sigma**2 / (P.b**3 * (C.s + c) ** 2)) == 0


def test_laplace_limit_of_the_constant():
    assert sp.limit(P.c_constant(), P.b, sp.oo) == 3 * sp.sqrt(6) / 2


def test_derivative_vanishes_at_alpha_opt():
    d = P.objective_derivative().subs(C.alpha, P.alpha_opt())
    for vals in ({C.s: 7, P.sigma: 1, P.b: 2}, {C.s: 255, P.sigma: 3, P.b: sp.Rational(1, 2)}):
        assert abs(d.subs(vals).evalf(50)) < 1e-40


@pytest.mark.parametrize(("a", "sigma"), [(3.0, 1.0), (5.0, 2.0), (12.0, 0.5)])
@pytest.mark.parametrize("s", [1, 7, 255])
def test_closed_form_matches_numeric_minimisation(a, sigma, s):
    b = a - 2
    alpha_cf = float(lambdified("powerlaw.alpha_opt", ("s", "sigma", "b"))(s, sigma, b))
    mse_cf = float(lambdified("powerlaw.mse_opt", ("s", "sigma", "b"))(s, sigma, b))
    assert objective(alpha_cf, a, sigma, s) == pytest.approx(mse_cf, rel=1e-10)
    res = optimize.minimize_scalar(
        lambda x: objective(x, a, sigma, s),
        bounds=(0.05 * alpha_cf, 5 * alpha_cf),
        method="bounded",
        options={"xatol": 1e-12 * alpha_cf},
    )
    assert res.fun == pytest.approx(mse_cf, rel=1e-10)
    assert res.x == pytest.approx(alpha_cf, rel=1e-5)  # flat minimum; root check is 1e-8
    root = optimize.brentq(
        lambda x: slope(x, a, sigma, s), 0.2 * alpha_cf, 5 * alpha_cf, xtol=1e-15, rtol=1e-15
    )
    assert root == pytest.approx(alpha_cf, rel=1e-8)


@pytest.mark.slow  # sympy's solve of the quantile equation takes ~10 s
def test_level_form_equals_solved_quantile_equation():
    f = lambdified("powerlaw.level", ("t", "alpha", "sigma", "b"))
    g = lambdified("powerlaw.level_derived", ("t", "alpha", "sigma", "b"))
    t = np.linspace(0, 1, 11)
    for alpha, sigma, b in [(0.5, 1.0, 1.0), (20.0, 2.0, 3.0), (3.0, 0.3, 0.5)]:
        # atol: the solved form computes l(0) = 0 as a difference of O(sigma) terms
        np.testing.assert_allclose(
            f(t, alpha, sigma, b), g(t, alpha, sigma, b), rtol=1e-12, atol=1e-14 * sigma
        )


def test_uniform_root_matches_minimisation():
    a, sigma, s = 4.0, 1.0, 15
    alpha = P.uniform_alpha_opt_numeric(a, sigma, s)
    res = optimize.minimize_scalar(
        lambda x: objective(x, a, sigma, s, "uniform"),
        bounds=(0.05 * alpha, 5 * alpha),
        method="bounded",
        options={"xatol": 1e-12 * alpha},
    )
    f = lambdified("powerlaw.uniform_objective", ("alpha", "sigma", "b", "s"))
    assert res.fun == pytest.approx(float(f(alpha, sigma, a - 2, s)), rel=1e-10)
    assert res.x == pytest.approx(alpha, rel=1e-5)
    # defining equation alpha (1 + alpha/sigma)^(a-1) = sigma s^2/(a-1)
    assert alpha * (1 + alpha / sigma) ** (a - 1) == pytest.approx(
        sigma * s**2 / (a - 1), rel=1e-12
    )


@pytest.mark.parametrize("a", [3.0, 4.0, 6.0])
def test_growth_exponent_is_polynomial(a):
    alpha = lambdified("powerlaw.alpha_opt", ("s", "sigma", "b"))
    s = np.array([2.0**16, 2.0**20])
    al = alpha(s, 1.0, a - 2)
    slope_ = np.diff(np.log(al))[0] / np.diff(np.log(s))[0]
    # alpha* = sigma((1 + s/c)^(3/b) - 1): local log-slope -> 3/b with O(c/s) corrections
    assert slope_ == pytest.approx(3 / (a - 2), rel=1e-3)
    al_u = [P.uniform_alpha_opt_numeric(a, 1.0, float(v)) for v in s]
    slope_u = math.log(al_u[1] / al_u[0]) / math.log(s[1] / s[0])
    # uniform: alpha^a (1 + sigma/alpha)^(a-1) ~ sigma^(a-1)... -> 2/a with O(sigma/alpha) terms
    assert slope_u == pytest.approx(2 / a, rel=2e-2)


def test_growth_is_not_logarithmic_unlike_laplace():
    lap = lambdified("tnq_laplace.alpha_opt", ("s", "gamma"))
    pw = lambdified("powerlaw.alpha_opt", ("s", "sigma", "b"))
    s1, s2 = 2.0**16, 2.0**20
    # Laplace: alpha*(16 s) - alpha*(s) -> 3 gamma log 16 (additive); power law multiplies
    assert lap(s2, 1.0) - lap(s1, 1.0) == pytest.approx(3 * math.log(16), rel=1e-3)
    assert pw(s2, 1.0, 2.0) / pw(s1, 1.0, 2.0) == pytest.approx(16 ** (3 / 2), rel=1e-3)
