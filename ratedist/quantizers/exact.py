"""Exact (quadrature-free) error and output statistics of a scalar quantizer on a source.

Everything here is a linear combination of the source's partial moments
``M_k(a, b) = E[X^k; a < X < b]`` and centred partial moments
``C_k(a, b; c) = E[(X - c)^k; a < X < b]`` (:meth:`AbstractSource.centered_moment`), so it
is exact to the accuracy of those (closed form, or direct quadrature of the cells where the
expansion into ``M_k`` would cancel digits). The errors are written with centred moments
because ``M2 - 2 l M1 + l^2 M0`` loses ``log10((l/w)^2)`` digits on a cell of width ``w``
(≈ 5 digits on the outer cells of 256 Gaussian levels).

Deterministic mapping (cells ``(t_{j-1}, t_j)``, output ``l_j``)::

    MSE = sum_j C2_j(l_j)

Unbiased stochastic rounding between neighbouring levels after clipping to
``[l_0, l_s]`` (arXiv 2402.01160, eq. for ``E(Q(T(g)) - g)^2``)::

    variance = sum_j E[(l_{j+1} - X)(X - l_j); l_j < X < l_{j+1}]
             = sum_j h_j^2 M0_j - C2_j(m_j)      (m_j, h_j: midpoint, half-width of cell j)
    bias     = E[(X - l_s)^2; X > l_s] + E[(X - l_0)^2; X < l_0]
             = C2(l_s, inf; l_s) + C2(-inf, l_0; l_0)

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


def deterministic_mse(quantizer: ScalarQuantizer, source: AbstractSource) -> float:
    """Exact MSE ``E[(X - q(X))^2]`` of the deterministic mapping."""
    t = np.concatenate([[-np.inf], quantizer.thresholds, [np.inf]])
    return float(np.sum(source.centered_moment(2, t[:-1], t[1:], quantizer.levels)))


def deterministic_probabilities(quantizer: ScalarQuantizer, source: AbstractSource) -> np.ndarray:
    """Probability of each output level under the deterministic mapping."""
    t = np.concatenate([[-np.inf], quantizer.thresholds, [np.inf]])
    return np.clip(source.partial_moment(0, t[:-1], t[1:]), 0.0, 1.0)


def stochastic_error(quantizer: ScalarQuantizer, source: AbstractSource) -> StochasticError:
    """Exact rounding variance and truncation bias of unbiased stochastic rounding."""
    lv = quantizer.levels
    mid, half = 0.5 * (lv[:-1] + lv[1:]), 0.5 * (lv[1:] - lv[:-1])
    # (b - x)(x - a) = h^2 - (x - m)^2 on a cell [a, b]: no cancellation (C2 <= h^2 M0).
    m0 = source.partial_moment(0, lv[:-1], lv[1:])
    var = float(np.sum(half**2 * m0 - source.centered_moment(2, lv[:-1], lv[1:], mid)))
    bias = truncation_bias(source, lv[0], lv[-1])
    return StochasticError(var, bias, var + bias)


def truncation_bias(source: AbstractSource, lo: float, hi: float) -> float:
    """Clipping error ``E[(X - hi)^2; X > hi] + E[(X - lo)^2; X < lo]`` (centred moments)."""
    up = source.centered_moment(2, hi, np.inf, hi)
    dn = source.centered_moment(2, -np.inf, lo, lo)
    return float(up + dn)


def stochastic_probabilities(quantizer: ScalarQuantizer, source: AbstractSource) -> np.ndarray:
    """Probability of each output level under clipping + unbiased stochastic rounding."""
    lv = quantizer.levels
    m0 = source.partial_moment(0, lv[:-1], lv[1:])
    width = lv[1:] - lv[:-1]
    # mass sent to the upper level of each cell: E[(X - l_j) / w_j; cell j]
    up = source.centered_moment(1, lv[:-1], lv[1:], lv[:-1]) / width
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
