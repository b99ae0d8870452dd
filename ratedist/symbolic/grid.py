"""Stochastic rounding to the grid ``Delta * Z`` and its quadratic floor.

Stochastic rounding (:func:`ratedist.compressors.grid`): write ``x = Delta (k + r)`` with ``k``
an integer and ``r`` in ``[0, 1)``; ``Q = Delta (k + 1)`` with probability ``r`` and
``Delta k`` otherwise. Then

    E Q = Delta (k + r) = x,        E (Q − x)^2 = r (1 − r) Delta^2 <= Delta^2 / 4.

With 8 or 16 random bits the round-up probability is ``r + eps`` (``|eps| <= 2^-(bits+1)``):
``E (Q − x)^2 = Delta^2 (r (1 − r) + eps (1 − 2 r))``, whose maximum over ``r`` is
``Delta^2 (1/4 + eps^2)`` (at ``r = 1/2 − eps``).

Quadratic floor (:mod:`ratedist.bounds.weights`): for ``f(x) = ½ xᵀAx − bᵀx`` and ``δ = Q(x*) −
x*`` with independent zero-mean coordinates of variance ``v_j = r_j (1 − r_j) Delta^2``,
``∇f(Q(x*)) = A δ`` and

    E||A δ||^2 = sum_ij (A^2)_ij E[δ_i δ_j] = sum_j (A^2)_jj v_j,
    E f(Q(x*)) − f* = ½ E δᵀAδ = ½ sum_j A_jj v_j;

verified here on a symbolic symmetric 3 x 3 matrix.

Halving the grid: at ``Delta/2`` the fractional part is ``r' = frac(2 r)``, and the
per-coordinate variance ratio ``v_j(Delta/2) / v_j(Delta)`` is ``(1 − 2 rho)/(2 (1 − rho))``
with ``rho = min(r, 1 − r)``: between 0 (``r = 1/2``, which lands on the finer grid) and 1/2
(``r -> 0``), NOT 1/4. For ``r`` uniform on ``[0, 1)`` the excess ``c(r) = r'(1 − r')/4 −
r(1 − r)/4`` (the variance at ``Delta/2`` minus a quarter of that at ``Delta``, in units of
``Delta^2``) has mean 0 and second moment ``1/1920``, and ``E r(1 − r) = 1/6``: the floors
shrink 4x on average over ``x*``. The ratio of the two floors, ``sum_j w_j a_j / sum_j w_j
b_j`` (weights ``w_j = (A^2)_jj``), has a standard deviation of about ``6 sqrt(1/1920) /
sqrt(d_eff) = 0.137 / sqrt(d_eff)`` around 1/4, i.e. a relative spread ``sqrt(30)/10 /
sqrt(d_eff) = 0.548 / sqrt(d_eff)``, ``d_eff = (sum_j w_j)^2 / sum_j w_j^2`` (delta method,
``r_j`` independent uniform).

Each builder is registered under ``"grid.<quantity>"`` (:mod:`ratedist.symbolic.lambdify`).
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic.lambdify import expression

x = sp.Symbol("x", real=True)
k = sp.Symbol("k", integer=True)
r = sp.Symbol("r", nonnegative=True)
Delta = sp.Symbol("Delta", positive=True)
eps = sp.Symbol("eps", real=True)
rho = sp.Symbol("rho", nonnegative=True)


def _expect(fn, p_up: sp.Expr = r) -> sp.Expr:
    """``E fn(Q)`` for the two-point law ``Q = Delta (k + 1)`` w.p. ``p_up``, ``Delta k``."""
    return p_up * fn(Delta * (k + 1)) + (1 - p_up) * fn(Delta * k)


@expression("grid.mean")
def mean() -> sp.Expr:
    """``E Q(x)`` with ``r = x/Delta − k`` substituted: ``x``."""
    return sp.simplify(_expect(lambda q: q).subs(r, x / Delta - k))


@expression("grid.mse_coordinate")
def mse_coordinate() -> sp.Expr:
    """``E (Q − x)^2`` at ``x = Delta (k + r)``: ``r (1 − r) Delta^2``."""
    return sp.factor(sp.expand(_expect(lambda q: (q - Delta * (k + r)) ** 2)))


@expression("grid.mse_coordinate_rng")
def mse_coordinate_rng() -> sp.Expr:
    """``E (Q − x)^2`` with round-up probability ``r + eps``:
    ``Delta^2 (r (1 − r) + eps (1 − 2 r))``."""
    return sp.expand(_expect(lambda q: (q - Delta * (k + r)) ** 2, r + eps))


@expression("grid.mse_max_rng")
def mse_max_rng() -> sp.Expr:
    """``max_r`` of :func:`mse_coordinate_rng` (concave in ``r``): ``Delta^2 (1/4 + eps^2)``."""
    e = mse_coordinate_rng()
    (r_star,) = sp.solve(sp.diff(e, r), r)
    return sp.factor(sp.expand(e.subs(r, r_star)))


def _variance_at_half(rr: sp.Expr) -> sp.Expr:
    """``r'(1 − r')/4`` with ``r' = frac(2 r)``, in units of ``Delta^2`` (for ``r`` in [0, 1))."""
    return sp.Piecewise(
        (2 * rr * (1 - 2 * rr) / 4, rr < sp.Rational(1, 2)),
        ((2 * rr - 1) * (2 - 2 * rr) / 4, True),
    )


@expression("grid.halving_ratio")
def halving_ratio() -> sp.Expr:
    """``v(Delta/2) / v(Delta)`` for ``r = rho <= 1/2``: ``(1 − 2 rho) / (2 (1 − rho))``
    (the same at ``r = 1 − rho``)."""
    return sp.simplify(_variance_at_half(rho).args[0][0] / (rho * (1 - rho)))


@expression("grid.mean_variance_uniform")
def mean_variance_uniform() -> sp.Expr:
    """``E r (1 − r)`` for ``r`` uniform on [0, 1): ``1/6``."""
    return sp.integrate(r * (1 - r), (r, 0, 1))


def halving_excess() -> sp.Expr:
    """``c(r) = r'(1 − r')/4 − r (1 − r)/4`` (units of ``Delta^2``), piecewise in ``r``."""
    return _variance_at_half(r) - r * (1 - r) / 4


@expression("grid.halving_excess_mean")
def halving_excess_mean() -> sp.Expr:
    """``E c(r)`` for ``r`` uniform: 0 (the floors shrink exactly 4x on average)."""
    return sp.integrate(halving_excess(), (r, 0, 1))


@expression("grid.halving_excess_second_moment")
def halving_excess_second_moment() -> sp.Expr:
    """``E c(r)^2`` for ``r`` uniform: ``1/1920``."""
    return sp.integrate(sp.piecewise_fold(halving_excess() ** 2), (r, 0, 1))


@expression("grid.halving_relative_spread")
def halving_relative_spread() -> sp.Expr:
    """``sqrt(E c^2) / E[r(1 − r)/4] = sqrt(30)/10``: the relative spread of the floor ratio
    for one coordinate; divide by ``sqrt(d_eff)`` for ``d_eff`` coordinates."""
    return sp.sqrt(halving_excess_second_moment()) / (mean_variance_uniform() / 4)


def quadratic_floor_check() -> tuple[sp.Expr, sp.Expr]:
    """``(E||A δ||^2 − sum_j (A^2)_jj v_j, E δᵀAδ − sum_j A_jj v_j)`` on a symbolic symmetric
    3 x 3 ``A`` with ``E δ_i δ_j = v_i [i = j]``: both simplify to 0."""
    n = 3
    a = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"a{min(i, j)}{max(i, j)}", real=True))
    v = sp.symbols(f"v0:{n}", nonnegative=True)
    dl = sp.Matrix(sp.symbols(f"delta0:{n}", real=True))

    def expect(e: sp.Expr) -> sp.Expr:
        # E δ_i δ_j = v_i [i = j]: every monomial of e is of degree 2 in δ
        poly = sp.Poly(sp.expand(e), *dl)
        out = sp.Integer(0)
        for monom, coeff in poly.terms():
            if max(monom) == 2:
                out += coeff * v[monom.index(2)]
        return out

    a2 = a * a
    grad = expect((dl.T * a2 * dl)[0, 0]) - sum(a2[j, j] * v[j] for j in range(n))
    gap = expect((dl.T * a * dl)[0, 0]) - sum(a[j, j] * v[j] for j in range(n))
    return sp.simplify(grad), sp.simplify(gap)
