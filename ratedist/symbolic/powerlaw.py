"""Truncated quantization of power-law-tailed gradients, in sympy.

Source: :class:`ratedist.sources.heavy.PowerLaw` (double Lomax),
``p(g) = a / (2 sigma) (1 + |g|/sigma)^(-(a+1))``, tail index ``a`` (``P(|X| > x) ~ x^-a``),
scale ``sigma``. The truncation bias is finite iff ``a > 2``; we write ``a = 2 + b``, ``b > 0``.

Non-uniform levels (bound objective of :mod:`ratedist.symbolic._common`, full-range code). With
``w = 1 + alpha/sigma`` and ``z = w^(-b/3)`` in ``(0, 1)``::

    V*(alpha) = 27 a sigma^2 (1 - z)^3 / (b^3 s^2),   B(alpha) = 2 sigma^2 z^3 / ((a-1) b)

the same cubic structure as for Laplace, so ``z* = c_a/(s + c_a)`` with
``c_a = (3/b) sqrt(3 a (a-1)/2)`` and::

    alpha* = sigma [(1 + s/c_a)^(3/b) - 1]          (polynomial growth, exponent 3/(a-2))
    F*     = 27 a sigma^2 / (b^3 (s + c_a)^2)

As ``a -> inf`` with ``sigma/a -> gamma`` this tends to the Laplace result
(``c_a -> 3 sqrt(6)/2``, ``alpha* -> 3 gamma log(1 + s/c)``).

Uniform levels: ``F = alpha^2/s^2 + B``; ``F' = 0`` reads
``alpha (1 + alpha/sigma)^(a-1) = sigma s^2/(a-1)`` (no closed form for general ``a``); the root
grows like ``sigma (s^2/(a-1))^(1/a)``, exponent ``2/a``.

These are ratedist's derivations for ratedist's power-law model; arXiv 2402.01798 states its
results for a generic power-law tail.

References:
    G. Yan, T. Li, Y. Xiao, H. Hou, L. Song, arXiv:2402.01798 (2024), Sec. IV-V.
"""

from __future__ import annotations

import sympy as sp
from scipy import optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic.lambdify import expression, lambdified

sigma = sp.Symbol("sigma", positive=True)
#: ``b = a - 2 > 0`` (excess of the tail index over 2).
b = sp.Symbol("b", positive=True)
z = sp.Symbol("z", positive=True)
#: Tail index ``a = 2 + b``.
a = 2 + b


def density_half() -> sp.Expr:
    """Power-law density on ``x > 0``."""
    return a / (2 * sigma) * (1 + C.x / sigma) ** (-(a + 1))


def _z_of_alpha() -> sp.Expr:
    return (1 + C.alpha / sigma) ** (-b / 3)


def _alpha_of_z() -> sp.Expr:
    return sigma * (z ** (-3 / b) - 1)


@expression("powerlaw.variance_bound")
def variance_bound() -> sp.Expr:
    """``V*(alpha; sigma, b, s)`` with the optimal density ``lambda* ∝ p^(1/3)``."""
    return C.nonuniform_variance_bound(density_half())


@expression("powerlaw.bias")
def bias() -> sp.Expr:
    """``B(alpha) = 2 sigma^2 (1 + alpha/sigma)^(-b) / ((a-1) b)``."""
    return sp.simplify(C.truncation_bias(density_half()))


@expression("powerlaw.objective")
def objective() -> sp.Expr:
    """Non-uniform bound objective ``V* + B``."""
    return variance_bound() + bias()


@expression("powerlaw.objective_derivative")
def objective_derivative() -> sp.Expr:
    """``dF/dalpha`` (non-uniform)."""
    return sp.diff(objective(), C.alpha)


@expression("powerlaw.objective_z")
def objective_z() -> sp.Expr:
    """The objective in the variable ``z = (1 + alpha/sigma)^(-b/3)``: a cubic in ``z``."""
    return sp.powsimp(sp.simplify(objective().subs(C.alpha, _alpha_of_z())), force=True)


def cubic_coefficients() -> tuple[sp.Expr, sp.Expr]:
    """``(K1, K2)`` with ``F(z) = K1 (1 - z)^3 / s^2 + K2 z^3`` (read off at ``z = 0, 1``).

    Raises:
        RuntimeError: if the objective is not of that form (checked exactly).
    """
    f_z = objective_z()
    k1 = sp.simplify(f_z.subs(z, 0) * C.s**2)
    k2 = sp.simplify(f_z.subs(z, 1))
    if sp.simplify(sp.expand(f_z - (k1 * (1 - z) ** 3 / C.s**2 + k2 * z**3))) != 0:
        raise RuntimeError("power-law objective is not K1 (1-z)^3/s^2 + K2 z^3")  # pragma: no cover
    return k1, k2


@expression("powerlaw.c")
def c_constant() -> sp.Expr:
    """``c_a = sqrt(K1/K2) = (3/b) sqrt(3 a (a-1)/2)``."""
    k1, k2 = cubic_coefficients()
    return sp.simplify(sp.sqrt(k1 / k2))


@expression("powerlaw.z_opt")
def z_opt() -> sp.Expr:
    """``z* = c_a/(s + c_a)``, the root in ``(0, 1)`` of ``dF/dz = 3 K2 z^2 - 3 K1 (1-z)^2/s^2``
    (the positive square-root branch; the other root is ``c_a/(c_a - s)``, outside ``(0, 1)``)."""
    c = c_constant()
    return c / (C.s + c)


@expression("powerlaw.alpha_opt")
def alpha_opt() -> sp.Expr:
    """``alpha* = sigma [(1 + s/c_a)^(3/b) - 1]``."""
    return sigma * ((1 + C.s / c_constant()) ** (3 / b) - 1)


@expression("powerlaw.mse_opt")
def mse_opt() -> sp.Expr:
    """``F(alpha*) = K2 z*^2`` (at the optimum ``K1 (1-z)^2/s^2 = K2 z^2``)."""
    _, k2 = cubic_coefficients()
    return sp.simplify(k2 * c_constant() ** 2) / (C.s + c_constant()) ** 2


@expression("powerlaw.uniform_objective")
def uniform_objective() -> sp.Expr:
    """Uniform bound objective ``alpha^2/s^2 + B``."""
    return C.uniform_variance_bound() + bias()


@expression("powerlaw.uniform_objective_derivative")
def uniform_objective_derivative() -> sp.Expr:
    """``d(alpha^2/s^2 + B)/dalpha``."""
    return sp.diff(uniform_objective(), C.alpha)


@expression("powerlaw.level_derived")
def level_derived() -> sp.Expr:
    """Level magnitude ``l(t)`` as sympy's ``solve`` returns it from the quantile equation."""
    return C.solve_level(density_half())


@expression("powerlaw.level")
def level() -> sp.Expr:
    """Level magnitude ``l(t) = sigma [(1 - t (1 - z))^(-3/b) - 1]`` with
    ``z = (1 + alpha/sigma)^(-b/3)``; equal to :func:`level_derived` (tested), written so that
    large powers do not overflow."""
    return sigma * ((1 - C.t * (1 - _z_of_alpha())) ** (-3 / b) - 1)


def uniform_alpha_opt_numeric(tail_index: float, scale: float, s_value: float) -> float:
    """Root of ``alpha^2/s^2 + B``'s derivative (brentq, bracket found by doubling)."""
    deriv = lambdified(uniform_objective_derivative, ("alpha", "sigma", "b", "s"))
    bb = tail_index - 2.0

    def f(al: float) -> float:
        return float(deriv(al, scale, bb, s_value))

    lo, hi = 0.0, scale
    while f(hi) <= 0.0:
        lo, hi = hi, 2.0 * hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500))
