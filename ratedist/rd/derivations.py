"""Sympy derivations of the closed-form distortions in :mod:`ratedist.rd.closed_forms`.

Each function derives an expression from the model (``g_i`` i.i.d. ``N(0, 1)``; the results
are scale invariant) with sympy's integration, so the numeric code can be checked against an
independent symbolic route. They are small and cached; ``tests/rd`` lambdifies them.

References:
    Gandikota et al., arXiv 2108.09899 (scaled sign, Top-K, Top-K + sign on Gaussian
    gradients).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

x, t = sp.symbols("x t", positive=True)
d = sp.symbols("d", positive=True, integer=True)
kappa = sp.symbols("kappa", positive=True)

_phi = sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)


@cache
def scaled_sign_distortion_expr() -> sp.Expr:
    """``D_d = (E||g||^2 - E||g||_1^2 / d) / d`` from ``E|g|`` and ``E g^2`` by integration.

    ``||g - (||g||_1/d) sign g||^2 = ||g||^2 - ||g||_1^2 / d`` pathwise, and
    ``E||g||_1^2 = d E g^2 + d (d - 1) (E|g|)^2`` by independence. Returns an expression in ``d``
    that simplifies to ``((d - 1)/d)(1 - 2/pi)``.
    """
    e_abs = 2 * sp.integrate(x * _phi, (x, 0, sp.oo))
    e_sq = 2 * sp.integrate(x**2 * _phi, (x, 0, sp.oo))
    e_l1_sq = d * e_sq + d * (d - 1) * e_abs**2
    return sp.simplify((d * e_sq - e_l1_sq / d) / d)


@cache
def top_k_kept_energy_expr() -> sp.Expr:
    """``E[g^2; |g| > t] = 2 int_t^inf x^2 phi(x) dx`` as an expression in ``t``.

    Simplifies to ``erfc(t/sqrt 2) + 2 t phi(t)``, i.e. ``kappa + 2 t phi(t)`` at
    ``t = Phi^-1(1 - kappa/2)``; the large-d Top-K distortion is one minus this.
    """
    return sp.simplify(2 * sp.integrate(x**2 * _phi, (x, t, sp.oo)))


@cache
def top_k_sign_distortion_large_d_expr() -> sp.Expr:
    """Large-d Top-K + scaled sign: ``1 - E[g^2;|g|>t] + E[g^2;|g|>t] - (E[|g|;|g|>t])^2/kappa``.

    With ``kappa = P(|g| > t)`` and the kept mean magnitude ``E[|g|; |g|>t] / kappa``; an
    expression in ``t`` (``kappa`` eliminated) that simplifies to ``1 - 4 phi(t)^2 / kappa``.
    """
    kept_mass = 2 * sp.integrate(_phi, (x, t, sp.oo))
    kept_l1 = 2 * sp.integrate(x * _phi, (x, t, sp.oo))
    return sp.simplify(1 - kept_l1**2 / kept_mass)


__all__ = [
    "scaled_sign_distortion_expr",
    "top_k_kept_energy_expr",
    "top_k_sign_distortion_large_d_expr",
]
