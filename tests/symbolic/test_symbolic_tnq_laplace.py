"""TNQSGD closed forms for Laplace (arXiv 2402.01160) against sympy identities and numerics.

The numeric references never call ratedist: the Laplace density is written out here, integrals
are ``scipy.integrate.quad`` and optima come from ``minimize_scalar`` / ``brentq``.
"""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic import tnq_laplace as T
from ratedist.symbolic.lambdify import lambdified

S_VALUES = [1, 3, 7, 15, 255]
QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}


def pdf(x, gamma):
    return np.exp(-abs(x) / gamma) / (2 * gamma)


def bound_objective(alpha, gamma, s):
    """Independent numeric bound: (int_{-a}^{a} p^(1/3))^3/(4 s^2) + 2 int_a^inf (x-a)^2 p."""
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, gamma)), 0, alpha, **QUAD)[0]
    bias = 2 * integrate.quad(lambda x: (x - alpha) ** 2 * pdf(x, gamma), alpha, np.inf, **QUAD)[0]
    return mass**3 / (4 * s**2) + bias


def bound_slope(alpha, gamma, s):
    """Leibniz rule on ``bound_objective`` (quadrature), for a root-based reference optimum."""
    mass = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, gamma)), 0, alpha, **QUAD)[0]
    tail = integrate.quad(lambda x: (x - alpha) * pdf(x, gamma), alpha, np.inf, **QUAD)[0]
    return 3 * mass**2 * 2 * np.cbrt(pdf(alpha, gamma)) / (4 * s**2) - 4 * tail


def test_optimal_error_is_the_quoted_constant():
    g = T.gamma
    quoted = 27 * g**2 / (C.s + 3 * sp.sqrt(6) / 2) ** 2
    assert sp.simplify(T.mse_opt() - quoted) == 0


def test_alpha_opt_simplified_form():
    expected = 3 * T.gamma * sp.log(1 + 2 * C.s / (3 * sp.sqrt(6)))
    assert sp.simplify(sp.expand_log(T.alpha_opt() - expected, force=True)) == 0


def test_derivative_vanishes_at_alpha_opt_symbolically():
    assert sp.simplify(sp.diff(T.objective(), C.alpha).subs(C.alpha, T.alpha_opt())) == 0
    assert sp.simplify(T.objective_derivative().subs(C.alpha, T.alpha_opt())) == 0


def test_objective_pieces_have_the_documented_closed_form():
    g, a, s = T.gamma, C.alpha, C.s
    u = sp.exp(-a / (3 * g))
    assert sp.simplify(T.variance_bound() - 27 * g**2 * (1 - u) ** 3 / s**2) == 0
    assert sp.simplify(T.bias() - 2 * g**2 * sp.exp(-a / g)) == 0


def test_level_form_equals_solved_quantile_equation():
    diff = T.level() - T.level_derived()
    # both are real logs; exp(diff/(3 gamma)) == 1 proves diff == 0 without branch issues
    assert sp.simplify(sp.exp(diff / (3 * T.gamma))) == 1


@pytest.mark.parametrize(
    ("gamma", "s"), [(1.0, 1), (0.01, 3), (3.0, 7), (1.0, 15), (0.01, 255), (3.0, 255)]
)
def test_closed_form_matches_numeric_minimisation(gamma, s):
    alpha_cf = float(lambdified("tnq_laplace.alpha_opt", ("s", "gamma"))(s, gamma))
    mse_cf = float(lambdified("tnq_laplace.mse_opt", ("s", "gamma"))(s, gamma))
    obj_cf = float(lambdified("tnq_laplace.objective", ("alpha", "gamma", "s"))(alpha_cf, gamma, s))
    # optimal value and objective: quadrature reference to 1e-10 (quad at 1e-13)
    assert obj_cf == pytest.approx(mse_cf, rel=1e-12)
    assert bound_objective(alpha_cf, gamma, s) == pytest.approx(mse_cf, rel=1e-10)
    # direct minimisation: the minimum value agrees to 1e-10; the argmin of a flat minimum is
    # only determined to ~sqrt(eps) ~ 1e-8 relative by values alone, so alpha is checked to
    # 1e-6 here and to 1e-8 via the root of the quadrature derivative below
    res = optimize.minimize_scalar(
        lambda a: bound_objective(a, gamma, s),
        bounds=(0.05 * alpha_cf, 5 * alpha_cf),
        method="bounded",
        options={"xatol": 1e-12 * alpha_cf},
    )
    assert res.fun == pytest.approx(mse_cf, rel=1e-10)
    assert res.x == pytest.approx(alpha_cf, rel=1e-6)
    root = optimize.brentq(
        lambda a: bound_slope(a, gamma, s), 0.2 * alpha_cf, 5 * alpha_cf, xtol=1e-15, rtol=1e-15
    )
    assert root == pytest.approx(alpha_cf, rel=1e-8)


@pytest.mark.parametrize("s", [1, 4, 7, 16])
def test_levels_are_quantiles_of_cube_root_density(s):
    gamma, alpha = 0.8, 2.5
    level = lambdified("tnq_laplace.level", ("t", "alpha", "gamma"))
    total = 2 * integrate.quad(lambda x: np.cbrt(pdf(x, gamma)), 0, alpha, **QUAD)[0]
    for j in range(s + 1):
        ref = optimize.brentq(
            lambda l, j=j: (
                integrate.quad(lambda x: np.cbrt(pdf(x, gamma)), -alpha, l, **QUAD)[0]
                - j / s * total
            ),
            -alpha,
            alpha,
            xtol=1e-14,
        )
        t = abs(2 * j / s - 1)
        got = math.copysign(float(level(t, alpha, gamma)), 2 * j - s)
        assert got == pytest.approx(ref, abs=1e-10)


def test_level_density_is_normalised():
    lam = lambdified("tnq_laplace.level_density", ("x", "alpha", "gamma"))
    total = 2 * integrate.quad(lambda x: lam(x, 2.0, 0.5), 0, 2.0, **QUAD)[0]
    assert total == pytest.approx(1.0, rel=1e-12)


def test_high_resolution_exact_forms():
    g, s = T.gamma, C.s
    assert sp.simplify(T.mse_opt_highres() - 18 * g**2 / (s + 3) ** 2) == 0
    assert (
        sp.simplify(sp.expand_log(T.alpha_opt_highres() - 3 * g * sp.log(1 + s / 3), force=True))
        == 0
    )


def test_high_resolution_forms_approach_the_exact_optimum():
    from ratedist.quantizers.truncated import optimal_truncation
    from ratedist.sources.classic import Laplace

    mse = lambdified("tnq_laplace.mse_opt_highres", ("s", "gamma"))
    alpha = lambdified("tnq_laplace.alpha_opt_highres", ("s", "gamma"))
    errs = []
    for s in (15, 255):
        ex = optimal_truncation(Laplace(1.0), s, objective="exact")
        errs.append(abs(float(mse(s, 1.0)) / ex.exact.mse - 1))
        assert float(alpha(s, 1.0)) == pytest.approx(ex.alpha, rel=1e-2)
    # asymptotic: the relative gap shrinks with s (measured 7e-3 at s=15, 5e-4 at s=255)
    assert errs[1] < errs[0] and errs[1] < 1e-3
