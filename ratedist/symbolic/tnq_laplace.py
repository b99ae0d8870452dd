"""TNQSGD for Laplace gradients: optimal truncation, level density and error bound in sympy.

Source: ``p(g) = exp(-|g|/gamma) / (2 gamma)``. With the bound objective of
:mod:`ratedist.symbolic._common` (full-range code, ``s`` intervals on ``[-alpha, alpha]``)::

    V*(alpha) = 27 gamma^2 (1 - u)^3 / s^2,   B(alpha) = 2 gamma^2 u^3,   u = exp(-alpha/(3 gamma))

so ``F(u) = gamma^2 (27 (1-u)^3 / s^2 + 2 u^3)``. ``dF/du = 0`` is the quadratic
``6 u^2 s^2 = 81 (1 - u)^2``, whose root in ``(0, 1)`` is ``u* = c / (s + c)``, ``c = 3 sqrt(6)/2``::

    alpha* = 3 gamma log(1 + s / c) = 3 gamma log(1 + 2 s / (3 sqrt 6))
    F*     = 27 gamma^2 / (s + 3 sqrt(6)/2)^2

which is the value quoted in arXiv 2402.01160 (Theorem 2 / eq. for ``E_TQ``, per coordinate).
Levels: ``lambda*(g) ∝ exp(-|g|/(3 gamma))`` and ``l_j = sign(2j - s) l(|2j/s - 1|)`` with
``l(t) = -3 gamma log(1 - t (1 - u))``.

The expressions are *derived* below (sympy integrates and solves); the formulas in this
docstring are only the simplified result, checked against the derivation in
``tests/symbolic/test_tnq_laplace.py``.

References:
    G. Yan, T. Li, Y. Xiao, C. Li, L. Song, "Truncated Non-Uniform Quantization for Distributed
    SGD", arXiv:2402.01160 (2024), Sec. III-IV.
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic import _common as C
from ratedist.symbolic.lambdify import expression

gamma = sp.Symbol("gamma", positive=True)
u = sp.Symbol("u", positive=True)

#: The constant ``c = 3 sqrt(6) / 2`` of the optimal error.
C_LAPLACE = 3 * sp.sqrt(6) / 2


def density_half() -> sp.Expr:
    """Laplace density on ``x > 0``."""
    return sp.exp(-C.x / gamma) / (2 * gamma)


@expression("tnq_laplace.variance_bound")
def variance_bound() -> sp.Expr:
    """``V*(alpha; gamma, s)``: bound on the rounding variance with the optimal density."""
    return C.nonuniform_variance_bound(density_half())


@expression("tnq_laplace.bias")
def bias() -> sp.Expr:
    """``B(alpha; gamma) = 2 gamma^2 exp(-alpha/gamma)``."""
    return C.truncation_bias(density_half())


@expression("tnq_laplace.objective")
def objective() -> sp.Expr:
    """Bound objective ``F = V* + B`` as a function of ``alpha``."""
    return variance_bound() + bias()


@expression("tnq_laplace.objective_derivative")
def objective_derivative() -> sp.Expr:
    """``dF/dalpha``."""
    return sp.simplify(sp.diff(objective(), C.alpha))


@expression("tnq_laplace.u_opt")
def u_opt() -> sp.Expr:
    """``u* = exp(-alpha*/(3 gamma))``, the root in ``(0, 1)`` of ``dF/du = 0``."""
    f_u = sp.simplify(objective().subs(C.alpha, -3 * gamma * sp.log(u)))
    roots = sp.solve(sp.diff(f_u, u), u)
    root = C.select_root(roots, 0.0, 1.0, {C.s: 3.0, gamma: 1.0})
    return sp.factor(sp.cancel(root, extension=sp.sqrt(6)), extension=sp.sqrt(6))


@expression("tnq_laplace.alpha_opt")
def alpha_opt() -> sp.Expr:
    """``alpha* = -3 gamma log u* = 3 gamma log(1 + 2 s/(3 sqrt 6))``."""
    # written as log(1/u*) (not simplified into log(u*^(3 gamma)), which underflows)
    return 3 * gamma * sp.log(sp.cancel(1 / u_opt()))


@expression("tnq_laplace.mse_opt")
def mse_opt() -> sp.Expr:
    """``F(alpha*) = 27 gamma^2 / (s + 3 sqrt(6)/2)^2``."""
    f_u = sp.simplify(objective().subs(C.alpha, -3 * gamma * sp.log(u)))
    return sp.factor(sp.simplify(f_u.subs(u, u_opt())), extension=sp.sqrt(6))


@expression("tnq_laplace.level_derived")
def level_derived() -> sp.Expr:
    """Level magnitude ``l(t)`` as sympy's ``solve`` returns it from the quantile equation."""
    (sol,) = sp.solve(C.level_equation(density_half()), C.level)
    return sp.simplify(sol)


@expression("tnq_laplace.level")
def level() -> sp.Expr:
    """Level magnitude ``l(t; alpha, gamma) = -3 gamma log(1 - t (1 - exp(-alpha/(3 gamma))))``.

    The same function as :func:`level_derived` (tested symbolically), in the form that neither
    overflows for large ``alpha/gamma`` nor cancels near ``t = 0``.
    """
    return -3 * gamma * sp.log(1 - C.t * (1 - sp.exp(-C.alpha / (3 * gamma))))


@expression("tnq_laplace.level_density")
def level_density() -> sp.Expr:
    """``lambda*(x)`` for ``0 <= x <= alpha`` (half of the symmetric density)."""
    p13 = density_half() ** sp.Rational(1, 3)
    return sp.simplify(p13 / (2 * C.half_cube_root_mass(density_half())))


def _highres(expr: sp.Expr) -> sp.Expr:
    # exact within-cell variance of stochastic rounding is Delta^2/6 to leading order (a cell
    # with locally uniform density), versus the bound's Delta^2/4: (1/6) = (1/4) (1/(s sqrt(3/2)))^2 * s^2
    return expr.subs(C.s, C.s * sp.sqrt(sp.Rational(3, 2)))


@expression("tnq_laplace.alpha_opt_highres")
def alpha_opt_highres() -> sp.Expr:
    """High-resolution approximation of the *exact*-error optimum: ``3 gamma log(1 + s/3)``.

    Replacing the bound ``Delta^2/4`` by the leading-order exact cell variance ``Delta^2/6``
    rescales ``s`` by ``sqrt(3/2)`` in every formula (``c / sqrt(3/2) = 3``).
    """
    return sp.simplify(_highres(alpha_opt()))


@expression("tnq_laplace.mse_opt_highres")
def mse_opt_highres() -> sp.Expr:
    """High-resolution approximation of the exact optimal error: ``18 gamma^2 / (s + 3)^2``."""
    return sp.factor(sp.radsimp(_highres(mse_opt())))
