"""Shared symbols and the generic (source-independent) steps of the truncation derivations.

Setting (arXiv 2402.01160 Sec. III; arXiv 2402.01798 Sec. IV), for a symmetric density ``p``:

* truncation ``T_alpha(g) = clip(g, -alpha, alpha)``, then unbiased stochastic rounding onto
  ``s + 1`` levels ``-alpha = l_0 < ... < l_s = alpha`` placed by a level density ``lambda``
  on ``[-alpha, alpha]`` (``int lambda = 1``; the cell around ``g`` has width ``1/(s lambda(g))``);
* the rounding variance of a coordinate in a cell of width ``Delta`` is at most
  ``Delta^2 / 4``, so the variance is bounded (to leading order in the cell width) by
  ``V = (1/(4 s^2)) int_{-alpha}^{alpha} p / lambda^2``;
* Hölder's inequality makes ``lambda* = p^{1/3} / int p^{1/3}`` optimal, with
  ``V* = (1/(4 s^2)) (int_{-alpha}^{alpha} p^{1/3})^3``;
* the truncation bias is ``B = 2 int_alpha^inf (g - alpha)^2 p(g) dg``.

The functions here take the *positive half* of the density as a sympy expression in
:data:`x` and return the pieces; the per-source modules differentiate and solve.
"""

from __future__ import annotations

import sympy as sp

#: Truncation threshold.
alpha = sp.Symbol("alpha", positive=True)
#: Number of quantization intervals (``s + 1`` levels).
s = sp.Symbol("s", positive=True)
#: Integration variable (a nonnegative gradient value).
x = sp.Symbol("x", positive=True)
#: Fraction of the half-mass of ``lambda`` on ``[0, l]``: ``t = |2 j / s - 1|`` for level ``j``.
t = sp.Symbol("t", nonnegative=True)
#: A level magnitude.
level = sp.Symbol("l", positive=True)


def half_cube_root_mass(p_half: sp.Expr, upper: sp.Expr = alpha) -> sp.Expr:
    """``int_0^upper p(x)^{1/3} dx``."""
    return sp.integrate(p_half ** sp.Rational(1, 3), (x, 0, upper))


def nonuniform_variance_bound(p_half: sp.Expr) -> sp.Expr:
    """``V* = (2 int_0^alpha p^{1/3})^3 / (4 s^2)`` for a symmetric density."""
    return sp.simplify((2 * half_cube_root_mass(p_half)) ** 3 / (4 * s**2))


def uniform_variance_bound() -> sp.Expr:
    """``Delta^2/4 = alpha^2 / s^2`` with ``Delta = 2 alpha / s`` (every coordinate; the
    in-range probability is bounded by 1, which is what makes the optimum a Lambert-W)."""
    return alpha**2 / s**2


def truncation_bias(p_half: sp.Expr) -> sp.Expr:
    """``B = 2 int_alpha^inf (x - alpha)^2 p(x) dx`` for a symmetric density.

    ``erf`` is rewritten as ``1 - erfc`` (and the result expanded, not re-simplified) so the
    lambdified tail terms do not cancel catastrophically at large ``alpha``.
    """
    return tail_stable(sp.simplify(2 * sp.integrate((x - alpha) ** 2 * p_half, (x, alpha, sp.oo))))


def tail_stable(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every ``erf(z)`` written as ``1 - erfc(z)``, expanded and collected."""
    out = sp.expand(expr.replace(sp.erf, lambda z: 1 - sp.erfc(z)))
    return sp.collect(out, sp.erfc(sp.Wild("z")), evaluate=True)


def level_equation(p_half: sp.Expr) -> sp.Eq:
    """``int_0^l p^{1/3} = t int_0^alpha p^{1/3}``: level ``l_j = sign(2j - s) l(t)`` with
    ``t = |2 j / s - 1|`` (the ``j``-th quantile of ``lambda*``)."""
    return sp.Eq(half_cube_root_mass(p_half, level), t * half_cube_root_mass(p_half))


def solve_level(p_half: sp.Expr) -> sp.Expr:
    """The level magnitude ``l(t)`` solving :func:`level_equation`, simplified.

    Raises:
        RuntimeError: if sympy's ``solve`` does not return exactly one solution.
    """
    sols = sp.solve(level_equation(p_half), level)
    if len(sols) != 1:  # pragma: no cover - guards a change in sympy's solver
        raise RuntimeError(f"expected one level solution, got {sols}")
    return sp.simplify(sols[0])


def select_root(roots: list[sp.Expr], lo: float, hi: float, at: dict[sp.Symbol, float]) -> sp.Expr:
    """The unique root lying in ``(lo, hi)`` at the sample parameter point(s) ``at``.

    Raises:
        ValueError: if not exactly one candidate lies in the interval.
    """
    good = []
    for r in roots:
        val = complex(r.evalf(subs=at))
        if abs(val.imag) < 1e-12 and lo < val.real < hi:
            good.append(r)
    if len(good) != 1:
        raise ValueError(f"expected one root in ({lo}, {hi}) at {at}, got {good}")
    return good[0]
