"""Truncated *uniform* quantization (TQSGD / TUQSGD) for Laplace gradients, in sympy.

Levels ``l_j = -alpha + 2 alpha j / s`` (full-range code, ``s`` intervals). Bounding the
rounding variance of every coordinate by ``Delta^2/4 = alpha^2/s^2`` (the in-range probability
``P(|g| <= alpha)`` is bounded by one) gives the objective::

    F(alpha) = alpha^2 / s^2 + 2 gamma^2 exp(-alpha/gamma)

``F'(alpha) = 0`` reads ``alpha exp(alpha/gamma) = gamma s^2``, i.e.
``(alpha/gamma) exp(alpha/gamma) = s^2``, so ``alpha* = gamma W0(s^2)`` (principal Lambert W),
and with ``exp(-W) = W / s^2``::

    F* = gamma^2 (W^2 + 2 W) / s^2,   W = W0(s^2).

Since ``W0(z) ~ log z - log log z``, ``alpha*`` grows like ``2 gamma log s`` and
``F* ~ 4 gamma^2 log^2(s) / s^2``, a ``log^2 s`` factor worse than the non-uniform design.

F is strictly convex (``F'' = 2/s^2 + 2 exp(-alpha/gamma) > 0``), so the stationary point is the
global minimum.

References:
    G. Yan, T. Li, Y. Xiao, H. Hou, L. Song, "Improved Quantization Strategies for Managing
    Heavy-tailed Gradients in Distributed Learning", arXiv:2402.01798 (2024) (TUQSGD);
    arXiv:2402.01160 Sec. III (uniform baseline).
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic import _common as C
from ratedist.symbolic.lambdify import expression
from ratedist.symbolic.tnq_laplace import density_half, gamma


@expression("tuq_laplace.variance_bound")
def variance_bound() -> sp.Expr:
    """``alpha^2 / s^2``."""
    return C.uniform_variance_bound()


@expression("tuq_laplace.bias")
def bias() -> sp.Expr:
    """``2 gamma^2 exp(-alpha/gamma)``."""
    return C.truncation_bias(density_half())


@expression("tuq_laplace.objective")
def objective() -> sp.Expr:
    """``F(alpha) = alpha^2/s^2 + 2 gamma^2 exp(-alpha/gamma)``."""
    return variance_bound() + bias()


@expression("tuq_laplace.objective_derivative")
def objective_derivative() -> sp.Expr:
    """``dF/dalpha``."""
    return sp.diff(objective(), C.alpha)


@expression("tuq_laplace.alpha_opt")
def alpha_opt() -> sp.Expr:
    """``alpha* = gamma W0(s^2)`` (sympy's ``solve`` of ``dF/dalpha = 0``)."""
    roots = sp.solve(objective_derivative(), C.alpha)
    root = C.select_root(roots, 0.0, 1e6, {C.s: 3.0, gamma: 1.0})
    return sp.simplify(root)


@expression("tuq_laplace.defining_equation")
def defining_equation() -> sp.Expr:
    """``alpha exp(alpha/gamma) - gamma s^2`` (zero exactly at ``alpha*``)."""
    return C.alpha * sp.exp(C.alpha / gamma) - gamma * C.s**2


@expression("tuq_laplace.mse_opt")
def mse_opt() -> sp.Expr:
    """``F(alpha*) = gamma^2 (W^2 + 2 W)/s^2`` with ``W = W0(s^2)``."""
    w = sp.LambertW(C.s**2)
    val = objective().subs(C.alpha, alpha_opt())
    # exp(-W(z)) = W(z)/z is the identity sympy needs to reach the closed form
    val = val.replace(lambda e: e.func is sp.exp, lambda e: sp.exp(sp.expand(e.args[0])))
    val = val.subs(sp.exp(-w), w / C.s**2)
    return sp.factor(sp.simplify(val))
