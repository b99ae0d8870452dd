"""Decoding moments of gradient codes under a straggler law, and their closed forms per code.

The unbiased 1-bit gradient-coding design of :mod:`ratedist.bounds.gradient_coding` decodes
``g = sum_i a_i(mask) Q(y_i)``; its variance needs the moments of the decoding weights
``a(mask)`` and of the decoded partition coefficients ``c(mask)^T = a(mask)^T B`` over the
straggler law: ``E[a_i^2]`` and ``M = E[(c − 1)(c − 1)^T]`` (:class:`DecodingMoments`),
computed here from enumerated or sampled weights, and in closed form for the fractional
repetition code and for unbiased rescaling by a probability or a count of answering workers.
:mod:`ratedist.sim.code_moments` computes them for any code of the simulator.

References:
    Tandon et al., arXiv 1612.03301 (FRC/CRC); Bitar et al., arXiv 1905.05383 (random
    replication with unbiased rescaling).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import (
    check_array,
    check_in_interval,
    check_int,
    check_nonnegative,
)


def _square(name: str, value: Any) -> np.ndarray:
    M = check_array(name, value, ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square (k x k), got shape {M.shape}")
    return M


# ------------------------------------------------------------------------- decoding moments
class DecodingMoments(NamedTuple):
    """Moments of a code's decoding weights over a straggler law.

    Attributes:
        weight_sq: ``E[a_i(mask)^2]`` per worker, ``(n,)``.
        weight_sq_norm: ``E||a(mask)||^2`` (the sum of ``weight_sq``).
        weight_sq_norm_max: ``max ||a(mask)||^2`` over the masks examined (positive
            probability): the worst (adversarial) pattern among them.
        coefficient_mean: ``E c(mask)``, ``(k,)`` (1 for an unbiased decoder).
        coefficient_second: ``M = E[(c − 1)(c − 1)^T]``, ``(k, k)`` (the covariance of ``c``
            when unbiased).
        masks: number of masks examined (0 for a closed form).
        exact: True when the expectations are exact (every mask of the law with its
            probability, or a closed form), False for a Monte Carlo sample.
        law: description of the straggler law.
    """

    weight_sq: np.ndarray
    weight_sq_norm: float
    weight_sq_norm_max: float
    coefficient_mean: np.ndarray
    coefficient_second: np.ndarray
    masks: int
    exact: bool
    law: str

    @property
    def bias(self) -> float:
        """``max_j |E c_j − 1|`` (0 for an unbiased decoder, up to rounding)."""
        return float(np.max(np.abs(self.coefficient_mean - 1.0)))


def decoding_moments_from_weights(
    weights: Any, B: Any, probs: Any = None, *, law: str = "", exact: bool = True
) -> DecodingMoments:
    """:class:`DecodingMoments` from decoding vectors ``a(mask)`` of a set of masks.

    Args:
        weights: ``(M, n)`` decoding vectors, one row per mask.
        B: ``(n, k)`` encoding matrix.
        probs: ``(M,)`` probabilities of the masks (summing to 1), or None for equal weights
            (a uniform law or a Monte Carlo sample).
        law: description stored in the result.
        exact: whether ``probs`` enumerate the law exactly.

    Raises:
        ValueError: shapes that do not match, negative probabilities or a sum other than 1.
    """
    a = check_array("weights", weights, ndim=2)
    B = check_array("B", B, ndim=2)
    if a.shape[1] != B.shape[0]:
        raise ValueError(
            f"weights must have one column per worker (B has {B.shape[0]} rows), got shape "
            f"{a.shape}"
        )
    if probs is None:
        w = np.full(a.shape[0], 1.0 / a.shape[0])
    else:
        w = check_array("probs", probs, ndim=1)
        if w.shape[0] != a.shape[0] or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(
                f"probs must be {a.shape[0]} nonnegative probabilities summing to 1, got "
                f"shape {w.shape} and sum {w.sum()!r}"
            )
    c = a @ B
    dev = c - 1.0
    sq = a * a
    norms = sq.sum(axis=1)
    return DecodingMoments(
        weight_sq=w @ sq,
        weight_sq_norm=float(w @ norms),
        weight_sq_norm_max=float(np.max(norms[w > 0])),
        coefficient_mean=w @ c,
        coefficient_second=(dev * w[:, None]).T @ dev,
        masks=int(a.shape[0]),
        exact=bool(exact),
        law=str(law),
    )


# ------------------------------------------------------------------- closed forms per code
def frc_weight_sq_norm(n: Any, s: Any) -> float:
    """``||a||^2 = n/(s + 1)`` for the fractional repetition code with at most ``s``
    stragglers (one weight 1 per group of ``s + 1``), for EVERY such pattern.

    Raises:
        ValueError: ``s`` not in ``[0, n − 1]`` or ``n`` not divisible by ``s + 1``.
    """
    n = check_int("n", n, min_value=1)
    s = check_int("s", s, min_value=0, max_value=n - 1)
    if n % (s + 1):
        raise ValueError(f"n must be divisible by s + 1 = {s + 1} (FRC groups), got n={n}")
    return n / (s + 1)


def _check_p(p: Any) -> float:
    return check_in_interval("p", p, 0.0, 1.0, closed=(True, False))


def probability_weight_sq_norm(n: Any, d: Any, p: Any) -> float:
    """``E||a||^2 = n / (d^2 (1 − p))`` for random ``d``-replication with probability
    rescaling ``a_i = 1{answers}/(d (1 − p))`` under Bernoulli(``p``) stragglers
    (``E a_i^2 = (1 − p)/(d (1 − p))^2``; sympy: ``gc.weight_sq_norm_probability``).

    Raises:
        ValueError: ``n`` or ``d`` < 1, ``p`` not in ``[0, 1)``.
    """
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=1)
    return n / (d * d * (1.0 - _check_p(p)))


def count_weight_sq_norm(n: Any, d: Any, answering: Any) -> float:
    """``||a||^2 = n^2 / (d^2 m)`` for the count rescaling ``a_i = 1{answers} n/(d m)`` with
    ``m`` answering workers (uncoded: ``d = 1``; exactly ``s`` stragglers: ``m = n − s``).

    Raises:
        ValueError: ``n`` or ``d`` < 1, ``answering`` not in ``[1, n]``.
    """
    n = check_int("n", n, min_value=1)
    d = check_int("d", d, min_value=1)
    m = check_int("answering", answering, min_value=1, max_value=n)
    return n * n / (d * d * m)


def probability_coefficient_covariance(B: Any, p: Any) -> np.ndarray:
    """``Cov(c) = p / (d^2 (1 − p)) B^T B`` for the probability rescaling under Bernoulli(p):
    ``c = B^T a`` with independent ``a_i``, ``Var a_i = p (1 − p) / (d (1 − p))^2``;
    ``(B^T B)_jl = |S_j ∩ S_l|`` for 0/1 ``B``.

    Raises:
        ValueError: ``B`` not 2-D, or its column sums ``d`` not all equal (the rescaling
            assumes every partition on ``d`` workers), ``p`` not in ``[0, 1)``.
    """
    B = check_array("B", B, ndim=2)
    p = _check_p(p)
    d = _column_sum(B)
    return p / (d * d * (1.0 - p)) * (B.T @ B)


def replication_straggler_variance(d: Any, p: Any, G: Any) -> float:
    """``sigma_s^2 <= p G^2 / (d (1 − p))``: random ``d``-replication, probability rescaling,
    Bernoulli(``p``) stragglers, ``||∇f_j(x)|| <= G`` for every partition.

    From ``E||sum_j (c_j − 1) g_j||^2 = sum_{j,l} Cov(c_j, c_l) <g_j, g_l>
    <= max_{jl} Cov (sum_j ||g_j||)^2`` with ``max Cov = Var c_j = p/(d (1 − p))`` and
    ``sum_j ||g_j|| <= G``. Looser than :func:`straggler_variance_bound` with the code's
    covariance (which keeps the overlap structure ``|S_j ∩ S_l|``), never tighter.

    Raises:
        ValueError: ``d`` < 1, ``p`` not in ``[0, 1)``, ``G`` < 0.
    """
    d = check_int("d", d, min_value=1)
    p = _check_p(p)
    G = check_nonnegative("G", G)
    return p * G * G / (d * (1.0 - p))


def moments_from_weight_law(
    B: Any, mean: Any, cov: Any, *, weight_sq_norm_max: Any, law: str = ""
) -> DecodingMoments:
    """Exact :class:`DecodingMoments` from the first two moments of the decoding vector
    ``a`` (``E a = mean``, ``Cov(a) = cov``): ``E[a_i^2] = cov_ii + mean_i^2``,
    ``E c = B^T mean`` and ``M = B^T cov B + (E c − 1)(E c − 1)^T``.

    Args:
        B: ``(n, k)`` encoding matrix.
        mean: ``(n,)``.
        cov: ``(n, n)``.
        weight_sq_norm_max: the largest ``||a||^2`` of the law (stored as is).
        law: description.

    Raises:
        ValueError: mismatched shapes, a negative ``weight_sq_norm_max``.
    """
    B = check_array("B", B, ndim=2)
    mu = check_array("mean", mean, ndim=1)
    C = _square("cov", cov)
    n = B.shape[0]
    if mu.shape != (n,) or C.shape != (n, n):
        raise ValueError(
            f"mean and cov must have shapes ({n},) and ({n}, {n}) (B has {n} rows), got "
            f"{mu.shape} and {C.shape}"
        )
    sq = np.diag(C) + mu * mu
    c = B.T @ mu
    dev = c - 1.0
    return DecodingMoments(
        weight_sq=sq,
        weight_sq_norm=float(sq.sum()),
        weight_sq_norm_max=check_nonnegative("weight_sq_norm_max", weight_sq_norm_max),
        coefficient_mean=c,
        coefficient_second=B.T @ C @ B + np.outer(dev, dev),
        masks=0,
        exact=True,
        law=str(law),
    )


def probability_rescaling_moments(B: Any, *, p: Any, law_p: Any = None) -> DecodingMoments:
    """Moments of ``a_i = 1{answers}/(d (1 − p))`` under Bernoulli(``law_p``) stragglers
    (default ``law_p = p``: unbiased), ``d`` the column sum of ``B``: independent ``a_i`` with
    mean ``w q`` and variance ``w^2 q (1 − q)``, ``w = 1/(d (1 − p))``, ``q = 1 − law_p``.

    Raises:
        ValueError: ``p``/``law_p`` not in ``[0, 1)``, unequal column sums of ``B``.
    """
    B = check_array("B", B, ndim=2)
    p = _check_p(p)
    q = 1.0 - (p if law_p is None else check_in_interval("law_p", law_p, 0.0, 1.0))
    d = _column_sum(B)
    n = B.shape[0]
    w = 1.0 / (d * (1.0 - p))
    return moments_from_weight_law(
        B,
        np.full(n, w * q),
        np.eye(n) * (w * w * q * (1.0 - q)),
        weight_sq_norm_max=n * w * w if q > 0 else 0.0,
        law=f"probability rescaling (p={p:g}), Bernoulli({1 - q:g}) stragglers, closed form",
    )


def count_rescaling_moments(B: Any, *, stragglers: Any) -> DecodingMoments:
    """Moments of ``a_i = 1{answers} n/(d m)`` with exactly ``s`` stragglers drawn uniformly
    (``m = n − s``, ``d`` the column sum of ``B``; uncoded: ``B = I``): ``P(i answers) = m/n``,
    ``P(i and i' answer) = m (m − 1)/(n (n − 1))``; every pattern has ``||a||^2 = n^2/(d^2 m)``.

    Raises:
        ValueError: ``stragglers`` not in ``[0, n − 1]``, unequal column sums of ``B``.
    """
    B = check_array("B", B, ndim=2)
    n = B.shape[0]
    s = check_int("stragglers", stragglers, min_value=0, max_value=n - 1)
    d = _column_sum(B)
    m = n - s
    w = n / (d * m)
    q = m / n
    q2 = m * (m - 1) / (n * (n - 1)) if n > 1 else q
    cov = np.full((n, n), w * w * (q2 - q * q))
    np.fill_diagonal(cov, w * w * q * (1 - q))
    return moments_from_weight_law(
        B,
        np.full(n, w * q),
        cov,
        weight_sq_norm_max=n * n / (d * d * m),
        law=f"count rescaling, exactly {s} stragglers (uniform), closed form",
    )


def frc_moments(n: Any, s: Any, stragglers: Any) -> DecodingMoments:
    """Moments of the FRC decoder (first answering worker of each group of ``s + 1``, weight
    1) with exactly ``stragglers <= s`` stragglers drawn uniformly: ``c = 1`` and
    ``||a||^2 = n/(s + 1)`` on every pattern, and the worker in position ``r`` of its group is
    the chosen one with probability ``C(n − r − 1, stragglers − r) / C(n, stragglers)``
    (its ``r`` predecessors straggle, it answers).

    Raises:
        ValueError: bad ``n``/``s`` (see :func:`frc_weight_sq_norm`), ``stragglers`` not in
            ``[0, s]``.
    """
    norm = frc_weight_sq_norm(n, s)
    n, s = int(n), int(s)
    st = check_int("stragglers", stragglers, min_value=0, max_value=s)
    r = np.arange(n) % (s + 1)
    total = math.comb(n, st)
    sq = np.array([math.comb(n - ri - 1, st - ri) if ri <= st else 0 for ri in r]) / total
    return DecodingMoments(
        weight_sq=sq,
        weight_sq_norm=norm,
        weight_sq_norm_max=norm,
        coefficient_mean=np.ones(n),
        coefficient_second=np.zeros((n, n)),
        masks=0,
        exact=True,
        law=f"FRC, exactly {st} <= s stragglers (uniform), closed form",
    )


def _column_sum(B: np.ndarray) -> float:
    cols = B.sum(axis=0)
    if not np.allclose(cols, cols[0], rtol=0, atol=1e-12) or cols[0] <= 0:
        raise ValueError(f"B must have equal positive column sums d, got {np.unique(cols)}")
    return float(cols[0])


__all__ = [
    "DecodingMoments",
    "count_rescaling_moments",
    "count_weight_sq_norm",
    "decoding_moments_from_weights",
    "frc_moments",
    "frc_weight_sq_norm",
    "moments_from_weight_law",
    "probability_coefficient_covariance",
    "probability_rescaling_moments",
    "probability_weight_sq_norm",
    "replication_straggler_variance",
]
