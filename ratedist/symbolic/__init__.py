"""Symbolic derivations (sympy), one module per result, one cached lambdify helper.

* :mod:`~ratedist.symbolic.lambdify`: :func:`lambdified` (numpy / JAX backends, cached) and the
  :data:`EXPRESSIONS` registry of expression builders.
* :mod:`~ratedist.symbolic.tnq_laplace`: TNQSGD for Laplace gradients (closed-form ``alpha*``,
  levels, optimal error ``27 gamma^2/(s + 3 sqrt(6)/2)^2``; arXiv:2402.01160).
* :mod:`~ratedist.symbolic.tuq_laplace`: truncated uniform levels, ``alpha* = gamma W0(s^2)``.
* :mod:`~ratedist.symbolic.tnq_gaussian`: Gaussian objective in closed form, numeric ``alpha*``.
* :mod:`~ratedist.symbolic.powerlaw`: power-law tails (arXiv:2402.01798), polynomial ``alpha*``.
* :mod:`~ratedist.symbolic.onebit`: moments of the stochastic 1-bit quantizer, unbiased
  rescaling of random replication (gradient coding).
* :mod:`~ratedist.symbolic.adam`: quantized distributed Adam with error feedback (EF residual
  fixed point, Adam's direction ratio, virtual sequences, the bound and its ``1/sqrt(T)`` rate).
* :mod:`~ratedist.symbolic.grid`: stochastic rounding to ``Delta * Z`` (mean, variance), the
  exact quadratic weight-quantization floor, the floors at ``Delta`` and ``Delta/2``.
* :mod:`~ratedist.symbolic.gradient_coding`: SGD bounds with an unbiased estimator of bounded
  variance (convex, nonconvex, horizon and diminishing steps) and the decoding-weight moments
  of 1-bit gradient coding.

Importing this package registers every builder; nothing is derived until first use.
"""

from ratedist.symbolic import (
    adam,
    gradient_coding,
    grid,
    onebit,
    powerlaw,
    tnq_gaussian,
    tnq_laplace,
    tuq_laplace,
)
from ratedist.symbolic.lambdify import EXPRESSIONS, cache_info, expression, lambdified

__all__ = [
    "EXPRESSIONS",
    "adam",
    "cache_info",
    "expression",
    "gradient_coding",
    "grid",
    "lambdified",
    "onebit",
    "powerlaw",
    "tnq_gaussian",
    "tnq_laplace",
    "tuq_laplace",
]
