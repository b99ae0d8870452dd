"""Gaussian truncation: closed-form objective vs quadrature, numeric optimum vs minimisation."""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic import tnq_gaussian as T
from ratedist.symbolic.lambdify import lambdified

QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}


def pdf(x, sigma):
    return np.exp(-(x**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


def objective(alpha, sigma, s, rule):
    bias = 2 * integrate.quad(lambda x: (x - alpha) ** 2 * pdf(x, sigma), alpha, np.inf, **QUAD)[0]
    if rule == "uniform":
        return alpha**2 / s**2 + bias
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, sigma)), 0, alpha, **QUAD)[0]
    return mass**3 / (4 * s**2) + bias


def slope(alpha, sigma, s, rule):
    tail = integrate.quad(lambda x: (x - alpha) * pdf(x, sigma), alpha, np.inf, **QUAD)[0]
    if rule == "uniform":
        return 2 * alpha / s**2 - 4 * tail
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, sigma)), 0, alpha, **QUAD)[0]
    return 3 * mass**2 * 2 * np.cbrt(pdf(alpha, sigma)) / (4 * s**2) - 4 * tail


NAMES = {"nonuniform": "tnq_gaussian.objective", "uniform": "tuq_gaussian.objective"}


def test_variance_bound_closed_form():
    expected = (
        3
        * sp.sqrt(3)
        * sp.pi
        / 2
        * T.sigma**2
        * sp.erf(C.alpha / (sp.sqrt(6) * T.sigma)) ** 3
        / C.s**2
    )
    assert sp.simplify(T.variance_bound() - expected) == 0


@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
@pytest.mark.parametrize("alpha", [0.05, 0.7, 2.0, 4.5, 8.0])
def test_objective_matches_quadrature(rule, alpha):
    sigma, s = 1.3, 7.0
    f = lambdified(NAMES[rule], ("alpha", "sigma", "s"))
    # 1e-10 relative: quad at 1e-13, closed form in erfc (no tail cancellation)
    assert float(f(alpha * sigma, sigma, s)) == pytest.approx(
        objective(alpha * sigma, sigma, s, rule), rel=1e-10
    )


@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
@pytest.mark.parametrize("s", [1, 3, 7, 15, 255])
def test_numeric_optimum_matches_minimisation(rule, s):
    sigma = 0.6
    alpha = T.alpha_opt_numeric(sigma, s, rule)
    f = lambdified(NAMES[rule], ("alpha", "sigma", "s"))
    res = optimize.minimize_scalar(
        lambda a: objective(a, sigma, s, rule),
        bounds=(0.05 * alpha, 5 * alpha),
        method="bounded",
        options={"xatol": 1e-12 * alpha},
    )
    assert res.fun == pytest.approx(float(f(alpha, sigma, s)), rel=1e-10)
    assert res.x == pytest.approx(alpha, rel=1e-6)  # flat minimum; root check below is 1e-8
    root = optimize.brentq(
        lambda a: slope(a, sigma, s, rule), 0.1 * alpha, 5 * alpha, xtol=1e-15, rtol=1e-15
    )
    assert root == pytest.approx(alpha, rel=1e-8)


@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
def test_sympy_derivative_vanishes_at_numeric_optimum(rule):
    sigma, s = 1.0, 15
    alpha = T.alpha_opt_numeric(sigma, s, rule)
    expr = {"nonuniform": T.objective(), "uniform": T.uniform_objective()}[rule]
    d = sp.diff(expr, C.alpha).subs({C.alpha: alpha, T.sigma: sigma, C.s: s}).evalf(30)
    # brentq at rtol 1e-14 on a slope of size ~F'' alpha leaves |F'| ~ 1e-14 F'' alpha
    d2 = sp.diff(expr, C.alpha, 2).subs({C.alpha: alpha, T.sigma: sigma, C.s: s}).evalf(30)
    assert abs(float(d)) < 1e-12 * float(d2) * alpha


def test_levels_are_quantiles_of_cube_root_density():
    sigma, alpha, s = 0.9, 2.2, 6
    level = lambdified("tnq_gaussian.level", ("t", "alpha", "sigma"))
    total = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, sigma)), 0, alpha, **QUAD)[0]
    for j in range(s + 1):
        ref = optimize.brentq(
            lambda l, j=j: (
                integrate.quad(lambda x: np.cbrt(pdf(x, sigma)), -alpha, l, **QUAD)[0]
                - j / s * total
            ),
            -alpha,
            alpha,
            xtol=1e-14,
        )
        got = math.copysign(float(level(abs(2 * j / s - 1), alpha, sigma)), 2 * j - s)
        assert got == pytest.approx(ref, abs=1e-10)


def test_alpha_grows_like_sqrt_log_s():
    # alpha*/sqrt(2 ln s) -> sigma slowly; check the ratio stays in a sane band and increases
    ratios = [
        T.alpha_opt_numeric(1.0, s) / math.sqrt(2 * math.log(s)) for s in (2**8, 2**16, 2**32)
    ]
    assert all(0.5 < r < 2.0 for r in ratios)
