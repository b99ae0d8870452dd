"""Exact (quadrature-free) error and output statistics of a scalar quantizer on a source.

Everything here is a linear combination of the source's partial moments
``M_k(a, b) = E[X^k; a < X < b]``, so it is exact to the accuracy of those moments (closed
form for Gaussian and Laplace).

Deterministic mapping (cells ``(t_{j-1}, t_j)``, output ``l_j``)::

    MSE = sum_j M2_j - 2 l_j M1_j + l_j^2 M0_j

Unbiased stochastic rounding between neighbouring levels after clipping to
``[l_0, l_s]`` (arXiv 2402.01160, eq. for ``E(Q(T(g)) - g)^2``)::

    variance = sum_j E[(l_{j+1} - X)(X - l_j); l_j < X < l_{j+1}]
             = sum_j -M2_j + (l_j + l_{j+1}) M1_j - l_j l_{j+1} M0_j
    bias     = E[(X - l_s)^2; X > l_s] + E[(X - l_0)^2; X < l_0]

Output probabilities for stochastic rounding: level ``j`` receives
``E[(X - l_{j-1})/(l_j - l_{j-1}); cell j-1] + E[(l_{j+1} - X)/(l_{j+1} - l_j); cell j]`` plus the
tail mass at the two end levels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ratedist.quantizers.core import ScalarQuantizer
from ratedist.sources.base import AbstractSource


class StochasticError(NamedTuple):
    """Per-coordinate error of truncation + unbiased stochastic rounding.

    Attributes:
        variance: rounding variance inside ``[l_0, l_s]`` (the ``E[(l_{j+1}-x)(x-l_j)]`` term).
        bias: truncation error ``E[(|X| - alpha)^2; |X| > alpha]`` (both tails).
        mse: ``variance + bias``.
    """

    variance: float
    bias: float
    mse: float


def _moments(source: AbstractSource, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(source.partial_moment(k, a, b) for k in range(3))


def deterministic_mse(quantizer: ScalarQuantizer, source: AbstractSource) -> float:
    """Exact MSE ``E[(X - q(X))^2]`` of the deterministic mapping."""
    t = np.concatenate([[-np.inf], quantizer.thresholds, [np.inf]])
    m0, m1, m2 = _moments(source, t[:-1], t[1:])
    lv = quantizer.levels
    return float(np.sum(m2 - 2 * lv * m1 + lv**2 * m0))


def deterministic_probabilities(quantizer: ScalarQuantizer, source: AbstractSource) -> np.ndarray:
    """Probability of each output level under the deterministic mapping."""
    t = np.concatenate([[-np.inf], quantizer.thresholds, [np.inf]])
    return np.clip(source.partial_moment(0, t[:-1], t[1:]), 0.0, 1.0)


def stochastic_error(quantizer: ScalarQuantizer, source: AbstractSource) -> StochasticError:
    """Exact rounding variance and truncation bias of unbiased stochastic rounding."""
    lv = quantizer.levels
    m0, m1, m2 = _moments(source, lv[:-1], lv[1:])
    var = float(np.sum(-m2 + (lv[:-1] + lv[1:]) * m1 - lv[:-1] * lv[1:] * m0))
    bias = truncation_bias(source, lv[0], lv[-1])
    return StochasticError(var, bias, var + bias)


def truncation_bias(source: AbstractSource, lo: float, hi: float) -> float:
    """Clipping error ``E[(X - hi)^2; X > hi] + E[(X - lo)^2; X < lo]`` from partial moments."""
    up = source.partial_moment(2, hi, np.inf) - 2 * hi * source.partial_moment(1, hi, np.inf)
    up = up + hi**2 * source.partial_moment(0, hi, np.inf)
    dn = source.partial_moment(2, -np.inf, lo) - 2 * lo * source.partial_moment(1, -np.inf, lo)
    dn = dn + lo**2 * source.partial_moment(0, -np.inf, lo)
    return float(up + dn)


def stochastic_probabilities(quantizer: ScalarQuantizer, source: AbstractSource) -> np.ndarray:
    """Probability of each output level under clipping + unbiased stochastic rounding."""
    lv = quantizer.levels
    m0, m1, _ = _moments(source, lv[:-1], lv[1:])
    width = lv[1:] - lv[:-1]
    up = (m1 - lv[:-1] * m0) / width  # mass sent to the upper level of each cell
    down = m0 - up
    p = np.zeros(lv.size)
    p[:-1] += down
    p[1:] += up
    p[0] += source.partial_moment(0, -np.inf, lv[0])
    p[-1] += source.partial_moment(0, lv[-1], np.inf)
    return np.clip(p, 0.0, 1.0)


def entropy_bits(probabilities: np.ndarray) -> float:
    """Shannon entropy ``-sum p log2 p`` of a probability vector (``0 log 0 = 0``)."""
    p = np.asarray(probabilities, np.float64)
    nz = p[p > 0]
    return float(-np.sum(nz * np.log2(nz)))
