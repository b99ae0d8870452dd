"""Truncated uniform levels for Laplace: the Lambert-W optimum and its value."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic import tuq_laplace as T
from ratedist.symbolic.lambdify import lambdified
from ratedist.symbolic.tnq_laplace import gamma

S_VALUES = [1, 3, 7, 15, 255]
QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}


def objective(alpha, g, s):
    pdf = lambda x: np.exp(-x / g) / (2 * g)  # noqa: E731
    bias = 2 * integrate.quad(lambda x: (x - alpha) ** 2 * pdf(x), alpha, np.inf, **QUAD)[0]
    return alpha**2 / s**2 + bias


def slope(alpha, g, s):
    pdf = lambda x: np.exp(-x / g) / (2 * g)  # noqa: E731
    return (
        2 * alpha / s**2
        - 4 * integrate.quad(lambda x: (x - alpha) * pdf(x), alpha, np.inf, **QUAD)[0]
    )


def test_alpha_opt_is_lambert_w():
    assert sp.simplify(T.alpha_opt() - gamma * sp.LambertW(C.s**2)) == 0


def test_lambert_w_satisfies_defining_equation_symbolically():
    # sympy keeps W(z) exp(W(z)) unevaluated (it *is* the definition of W), so the symbolic
    # check is that F'(alpha*) reduces to that defining relation, and a 50-digit mpmath
    # evaluation confirms both vanish
    w = sp.LambertW(C.s**2)
    eq = T.defining_equation().subs(C.alpha, T.alpha_opt())
    assert sp.simplify(eq / gamma - (w * sp.exp(w) - C.s**2)) == 0
    slope = T.objective_derivative().subs(C.alpha, T.alpha_opt())
    assert sp.simplify(slope * C.s**2 * sp.exp(w) / (2 * gamma) - (w * sp.exp(w) - C.s**2)) == 0
    for s in (1, 3, 255):
        for expr in (eq, slope):
            assert abs(expr.subs({C.s: s, gamma: sp.Rational(7, 10)}).evalf(50)) < 1e-40


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_lambert_w_satisfies_defining_equation_numerically(backend):
    s = np.array(S_VALUES, dtype=float)
    g = 0.7
    alpha = np.asarray(lambdified("tuq_laplace.alpha_opt", ("s", "gamma"), backend)(s, g))
    # alpha exp(alpha/gamma) = gamma s^2; relative 1e-13 (a few ulps times exp's condition)
    np.testing.assert_allclose(alpha * np.exp(alpha / g), g * s**2, rtol=1e-13)


def test_objective_is_convex():
    second = sp.diff(T.objective(), C.alpha, 2)
    assert sp.simplify(second - (2 / C.s**2 + 2 * sp.exp(-C.alpha / gamma))) == 0


def test_optimal_value_closed_form():
    w = sp.LambertW(C.s**2)
    assert sp.simplify(T.mse_opt() - gamma**2 * (w**2 + 2 * w) / C.s**2) == 0


@pytest.mark.parametrize("s", S_VALUES)
def test_closed_form_matches_numeric_minimisation(s):
    g = 1.3
    alpha_cf = float(lambdified("tuq_laplace.alpha_opt", ("s", "gamma"))(s, g))
    mse_cf = float(lambdified("tuq_laplace.mse_opt", ("s", "gamma"))(s, g))
    assert objective(alpha_cf, g, s) == pytest.approx(mse_cf, rel=1e-10)
    res = optimize.minimize_scalar(
        lambda a: objective(a, g, s),
        bounds=(0.05 * alpha_cf, 5 * alpha_cf),
        method="bounded",
        options={"xatol": 1e-12 * alpha_cf},
    )
    assert res.fun == pytest.approx(mse_cf, rel=1e-10)
    assert res.x == pytest.approx(alpha_cf, rel=1e-6)  # flat minimum: see the TNQ test
    root = optimize.brentq(lambda a: slope(a, g, s), 1e-3, 10 * alpha_cf, xtol=1e-15, rtol=1e-15)
    assert root == pytest.approx(alpha_cf, rel=1e-8)
