"""Compressor constants for the bounds: from the compressor's declaration or a measurement.

* Declared: :class:`ratedist.compressors.base.Facts` carries ``omega(d)`` (unbiased,
  ``E||C(x) - x||^2 <= omega ||x||^2``) and ``alpha(d)`` (contractive,
  ``E||C(x) - x||^2 <= (1 - alpha)||x||^2``).
* Measured: from Monte Carlo draws ``x_hat_m = C(x)`` of a fixed input ``x``, the ratio
  ``mean_m ||x_hat_m - x||^2 / ||x||^2`` estimates the worst-case-free constant at that input,
  with its standard error. A measured constant is an estimate of the constant AT THE INPUTS
  TRIED, not a certificate for all inputs; the bounds accept either.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_array, check_int


class Estimate(NamedTuple):
    """A Monte Carlo estimate with its standard error and sample count."""

    value: float
    se: float
    n: int


def _facts(compressor: Any) -> Any:
    facts = getattr(compressor, "facts", compressor)
    if not all(hasattr(facts, a) for a in ("omega", "alpha", "unbiased")):
        raise TypeError(
            f"compressor must be a Compressor or its Facts, got {type(compressor).__name__}"
        )
    return facts


def declared_omega(compressor: Any, d: Any) -> float:
    """The declared relative variance ``omega`` at dimension ``d``.

    Args:
        compressor: a :class:`~ratedist.compressors.base.Compressor` or its ``Facts``.
        d: dimension.

    Returns:
        ``omega(d)``.

    Raises:
        ValueError: if the compressor declares no ``omega``.
        TypeError: if ``compressor`` carries no facts.
    """
    facts = _facts(compressor)
    d = check_int("d", d, min_value=1)
    if facts.omega is None:
        raise ValueError(f"compressor {facts.name!r} declares no omega (is it unbiased?)")
    return float(facts.omega(d))


def declared_alpha(compressor: Any, d: Any) -> float:
    """The declared contraction ``alpha`` at dimension ``d``.

    Unbiased compressors without a declared ``alpha`` are turned into contractive ones by
    scaling, ``C/(1 + omega)``, with ``alpha = 1/(1 + omega)`` (arXiv 2202.00998, Section 2);
    this function returns that value when only ``omega`` is declared.

    Raises:
        ValueError: if neither ``alpha`` nor ``omega`` is declared.
    """
    facts = _facts(compressor)
    d = check_int("d", d, min_value=1)
    if facts.alpha is not None:
        return float(facts.alpha(d))
    if facts.omega is not None:
        return 1.0 / (1.0 + float(facts.omega(d)))
    raise ValueError(f"compressor {facts.name!r} declares neither alpha nor omega")


def _ratios(x: Any, x_hat: Any) -> np.ndarray:
    x = check_array("x", x, ndim=1)
    x_hat = check_array("x_hat", x_hat, ndim=2)
    if x_hat.shape[1] != x.shape[0]:
        raise ValueError(f"x_hat must have shape (draws, {x.shape[0]}), got {x_hat.shape}")
    if x_hat.shape[0] < 2:
        raise ValueError(f"x_hat must hold at least 2 draws, got {x_hat.shape[0]}")
    nx = float(x @ x)
    if nx == 0:
        raise ValueError("x must be non-zero")
    return np.sum((x_hat - x[None, :]) ** 2, axis=1) / nx


def measure_omega(x: Any, x_hat: Any) -> Estimate:
    """Estimate ``E||C(x) - x||^2 / ||x||^2`` from draws ``x_hat[m] = C(x)``.

    Args:
        x: the input, shape ``(d,)``, non-zero.
        x_hat: draws, shape ``(M, d)`` with ``M >= 2``.

    Returns:
        :class:`Estimate` (value, standard error, M).
    """
    r = _ratios(x, x_hat)
    return Estimate(float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size)), int(r.size))


def measure_alpha(x: Any, x_hat: Any) -> Estimate:
    """Estimate ``alpha = 1 - E||C(x) - x||^2 / ||x||^2`` from draws (see :func:`measure_omega`)."""
    est = measure_omega(x, x_hat)
    return Estimate(1.0 - est.value, est.se, est.n)
