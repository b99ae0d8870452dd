"""Truncated quantization of Gaussian gradients: closed-form objective, numeric optimum.

Source ``N(0, sigma^2)``. With the bound objective of :mod:`ratedist.symbolic._common`
(full-range code, ``s`` intervals):

* non-uniform (``lambda* ∝ exp(-g^2/(6 sigma^2))``)::

      V*(alpha) = (3 sqrt(3) pi / 2) sigma^2 erf(alpha/(sqrt(6) sigma))^3 / s^2
      B(alpha)  = 2 [(sigma^2 + alpha^2) Q(alpha/sigma) - alpha sigma phi(alpha/sigma)]
      l(t)      = sqrt(6) sigma erfinv(t erf(alpha/(sqrt(6) sigma)))

  (``V*`` tends to the Panter–Dite constant ``sqrt(3) pi/2`` times 3, the ratio of the
  ``Delta^2/4`` bound to the ``Delta^2/12`` high-rate variance, as ``alpha -> inf``);
* uniform: ``F(alpha) = alpha^2/s^2 + B(alpha)``.

In both cases ``dF/dalpha = 0`` mixes ``erf``/``erfc`` with Gaussian exponentials and has no
closed-form root (unlike Laplace), so ``alpha*`` is the root of the lambdified derivative found
by bracketed root finding (:func:`alpha_opt_numeric`). It grows like ``sigma sqrt(2 log s)``
up to lower-order terms.

References:
    arXiv:2402.01160 Sec. III (objective and level density; the paper specialises to Laplace).
"""

from __future__ import annotations

import math

import sympy as sp
from scipy import optimize

from ratedist.symbolic import _common as C
from ratedist.symbolic.lambdify import expression, lambdified

sigma = sp.Symbol("sigma", positive=True)

#: Relative tolerance of the numeric root of ``dF/dalpha``.
ROOT_RTOL = 1e-14


def density_half() -> sp.Expr:
    """Gaussian density on ``x > 0``."""
    return sp.exp(-(C.x**2) / (2 * sigma**2)) / (sp.sqrt(2 * sp.pi) * sigma)


@expression("tnq_gaussian.variance_bound")
def variance_bound() -> sp.Expr:
    """``V*(alpha; sigma, s)`` with the optimal density."""
    return C.nonuniform_variance_bound(density_half())


@expression("tnq_gaussian.bias")
def bias() -> sp.Expr:
    """``B(alpha; sigma)``: truncation bias."""
    return C.truncation_bias(density_half())


@expression("tnq_gaussian.objective")
def objective() -> sp.Expr:
    """Non-uniform bound objective ``V* + B``."""
    return variance_bound() + bias()


@expression("tnq_gaussian.objective_derivative")
def objective_derivative() -> sp.Expr:
    """``d(V* + B)/dalpha``."""
    return sp.diff(variance_bound(), C.alpha) + C.tail_stable(sp.diff(bias(), C.alpha))


@expression("tuq_gaussian.objective")
def uniform_objective() -> sp.Expr:
    """Uniform bound objective ``alpha^2/s^2 + B``."""
    return C.uniform_variance_bound() + bias()


@expression("tuq_gaussian.objective_derivative")
def uniform_objective_derivative() -> sp.Expr:
    """``d(alpha^2/s^2 + B)/dalpha``."""
    return sp.diff(C.uniform_variance_bound(), C.alpha) + C.tail_stable(sp.diff(bias(), C.alpha))


@expression("tnq_gaussian.level")
def level() -> sp.Expr:
    """Level magnitude ``l(t) = sqrt(6) sigma erfinv(t erf(alpha/(sqrt 6 sigma)))``."""
    return C.solve_level(density_half())


_DERIVATIVES = {"nonuniform": objective_derivative, "uniform": uniform_objective_derivative}


def alpha_opt_numeric(sigma_value: float, s_value: float, level_rule: str = "nonuniform") -> float:
    """Root of the lambdified ``dF/dalpha`` (brentq, relative tolerance :data:`ROOT_RTOL`).

    ``dF/dalpha < 0`` at ``alpha -> 0`` (bias slope ``-4 E[X; X > 0]``) and ``> 0`` for large
    ``alpha`` (the bias slope decays like a Gaussian tail), so the bracket is found by doubling.

    Args:
        sigma_value: standard deviation, > 0.
        s_value: number of intervals (the effective ``s``; ``2 s`` for sign+magnitude codes).
        level_rule: ``"nonuniform"`` or ``"uniform"``.

    Returns:
        The bound-optimal truncation threshold.
    """
    deriv = lambdified(_DERIVATIVES[level_rule], ("alpha", "sigma", "s"))

    def f(a: float) -> float:
        return float(deriv(a, sigma_value, s_value))

    lo, hi = 1e-3 * sigma_value, sigma_value
    while f(hi) <= 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e3 * sigma_value * math.sqrt(1.0 + math.log1p(s_value)):
            raise RuntimeError("no sign change of dF/dalpha found")  # pragma: no cover
    return float(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=ROOT_RTOL, maxiter=500))
