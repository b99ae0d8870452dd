"""Closed forms of the sparsifiers: Top-K, Top-K + scaled sign, Rand-K and threshold.

Model and conventions: :mod:`ratedist.rd.closed_forms`. Derivations (each checked against
quadrature / Monte Carlo in ``tests/rd``):

* Top-K, large d: kept energy ``E[g^2; |g| > t] = kappa + 2 t phi(t)`` (sigma = 1) with
  ``t = Phi^-1(1 - kappa/2)``, so ``D = 1 - kappa - 2 t phi(t)``.
* Top-K, exact finite d (order statistics): let ``A_i = |g_i|`` (half-normal, cdf ``F``) and
  ``T = A_(m)`` the largest DROPPED magnitude, ``m = d - K``. Given ``T = t`` the other
  ``m - 1`` dropped magnitudes are i.i.d. ``A | A < t`` and the K kept are i.i.d. ``A | A > t``;
  ``1 - F(T) ~ Beta(K + 1, m)``. So ``d D = E[T^2 + (m - 1) E[A^2 | A < T]]``, a 1-D
  integral (computed over the Beta quantile ``w``, where the integrand is smooth).
  Independent form used in tests: ``d D = d int a^2 f(a) P(Bin(d-1, 1-F(a)) >= K) da``.
* Top-K + scaled sign of the kept values: pathwise error ``sum_dropped g^2 + sum_S g^2 -
  (sum_S |g|)^2/K``; given ``T = t`` the last two terms have mean ``(K - 1) Var(A | A > t)``,
  so ``d D = E[T^2 + (m - 1) E[A^2 | A < T] + (K - 1) Var(A | A > T)]``; large d:
  ``D = 1 - 4 phi(t)^2 / kappa``.
* Rand-K: ``D = 1 - kappa`` (biased), ``D = 1/kappa - 1`` (scaled by d/K), exact.
* Threshold ``|g_i| > c sigma_hat``, ``sigma_hat = ||g||/sqrt d``, ``c = Phi^-1(1 - kappa/2)``:
  ``B_i = g_i^2/||g||^2 ~ Beta(1/2, (d-1)/2)`` independent of ``||g||^2`` (isotropy), and
  coordinate i is kept iff ``B_i > c^2/d``. Hence EXACTLY
  ``kappa_d = P(kept) = 1 - I_{c^2/d}(1/2, (d-1)/2)`` and
  ``D = d E[B; B < c^2/d] = I_{c^2/d}(3/2, (d-1)/2)`` (regularized incomplete beta).

Index sets are charged ``ceil(log2 d)`` bits per index in the container and ``log2 C(d, K)``
bits in the entropy layer (enumerative code).

References:
    V. Gandikota, D. Kane, R. K. Maity, A. Mazumdar, "vqSGD: Vector Quantized Stochastic
    Gradient Descent", arXiv 2108.09899 (rate–distortion of gradient compressors).
    H. A. David, H. N. Nagaraja, *Order Statistics*, 3rd ed., Sec. 2.2 (conditional
    independence of order statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import integrate, special, stats

from ratedist._validation import check_in_interval, check_int
from ratedist.compressors._common import ceil_log2
from ratedist.compressors.base import FLOAT_BITS
from ratedist.rd.closed_form_base import (
    _QUAD,
    ClosedForm,
    _check_d,
    expected_empirical_binary_entropy_bits,
    log2_binom,
    register_closed_form,
)
from ratedist.rd.closed_forms_dense import scaled_sign_distortion


def _k_rates(d: int, k: int, float_bits: int) -> tuple[float, float]:
    container = k * (ceil_log2(d) + float_bits) / d
    entropy = (float(log2_binom(d, k)) + k * float_bits) / d
    return container, entropy


# ----------------------------------------------------------------------------- Top-K family
def _check_k(k: Any, d: int) -> int:
    return check_int("k", k, min_value=1, max_value=d)


def _check_d_k(d: Any, k: Any) -> tuple[int, int]:
    d = _check_d(d)
    return d, _check_k(k, d)


def _check_kappa_array(kappa: Any) -> np.ndarray:
    kap = np.asarray(kappa, np.float64)
    if np.any((kap <= 0) | (kap > 1)) or not np.all(np.isfinite(kap)):
        raise ValueError(f"kappa must lie in (0, 1], got {kappa!r}")
    return kap


def top_k_threshold(kappa: Any) -> np.ndarray:
    """``t = Phi^-1(1 - kappa/2)`` computed as ``-Phi^-1(kappa/2)`` (no cancellation)."""
    return -special.ndtri(np.asarray(kappa, np.float64) / 2.0)


def top_k_distortion_large_d(kappa: Any) -> np.ndarray:
    """Large-d Top-K distortion ``1 - kappa - 2 t phi(t)``, ``t = Phi^-1(1 - kappa/2)``.

    Args:
        kappa: kept fraction K/d in (0, 1].

    References:
        arXiv 2108.09899 (Top-K through the threshold). Assumption: d -> inf at fixed kappa,
        so the K-th largest magnitude concentrates at t.
    """
    kap = _check_kappa_array(kappa)
    t = top_k_threshold(kap)
    return np.maximum(1.0 - kap - 2.0 * t * stats.norm.pdf(t), 0.0)


def top_k_sign_distortion_large_d(kappa: Any) -> np.ndarray:
    """Large-d distortion of Top-K + scaled sign: ``1 - 4 phi(t)^2 / kappa``."""
    kap = _check_kappa_array(kappa)
    t = top_k_threshold(kap)
    return 1.0 - 4.0 * stats.norm.pdf(t) ** 2 / kap


def _half_normal_moments(t: float) -> tuple[float, float, float, float, float]:
    """``F(t)``, ``E[A^2; A<t]``, tail ``1-F``, ``E[A; A>t]``, ``E[A^2; A>t]`` for A = |N(0,1)|."""
    f_lo = math.erf(t / math.sqrt(2.0))
    f_hi = math.erfc(t / math.sqrt(2.0))
    phi = math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    m1_hi = 2.0 * phi
    m2_hi = f_hi + 2.0 * t * phi
    m2_lo = f_lo - 2.0 * t * phi
    return f_lo, m2_lo, f_hi, m1_hi, m2_hi


def _order_stat_expectation(d: int, k: int, h: Callable[[float], float]) -> float:
    """``E[h(T)]`` with ``T = A_(d-k)`` the largest of the ``d - k`` smallest of d half-normals.

    ``V = 1 - F(T) ~ Beta(k + 1, d - k)``; integrate over its quantile ``w`` in (0, 1) so the
    integrand is smooth and the peak is spread out.
    """
    m = d - k
    a, b = k + 1, m

    def integrand(w: float) -> float:
        v = float(special.betaincinv(a, b, w))
        t = float(-special.ndtri(v / 2.0))
        return h(t)

    pts = [0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999]
    val, _ = integrate.quad(integrand, 0.0, 1.0, points=pts, **_QUAD)
    return float(val)


def top_k_distortion(d: int, k: int) -> float:
    """Exact finite-d Top-K distortion by order statistics (one 1-D integral).

    ``d D = E[T^2 + (m - 1) E[A^2 | A < T]]`` with ``m = d - k`` and ``T`` the largest
    dropped magnitude (module docstring).

    Args:
        d: dimension.
        k: kept coordinates, ``1 <= k <= d``.

    References:
        arXiv 2108.09899 (Top-K); David & Nagaraja, *Order Statistics*, Thm. 2.5 (given an
        order statistic the others are i.i.d. truncated). Assumption: i.i.d. Gaussian g.
    """
    d, k = _check_d_k(d, k)
    m = d - k
    if m == 0:
        return 0.0

    def h(t: float) -> float:
        f_lo, m2_lo, *_ = _half_normal_moments(t)
        cond = m2_lo / f_lo if f_lo > 0 else t * t / 3.0
        return t * t + (m - 1) * cond

    return _order_stat_expectation(d, k, h) / d


def top_k_distortion_binomial(d: int, k: int) -> float:
    """Independent exact form: ``D = int a^2 f(a) P(Bin(d-1, 1-F(a)) >= k) da``.

    A coordinate is dropped iff fewer than k of the other d-1 exceed it. Used to check
    :func:`top_k_distortion` (different integrand, different variable).
    """
    d, k = _check_d_k(d, k)
    if k == d:
        return 0.0

    def integrand(a: float) -> float:
        v = math.erfc(a / math.sqrt(2.0))
        return a * a * 2.0 * stats.norm.pdf(a) * float(stats.binom.sf(k - 1, d - 1, v))

    t = float(top_k_threshold(k / d))  # > 0 since k < d; the integrand switches off near t
    lo, _ = integrate.quad(integrand, 0.0, t, **_QUAD)
    hi, _ = integrate.quad(integrand, t, np.inf, **_QUAD)
    return float(lo + hi)


def top_k_sign_distortion(d: int, k: int) -> float:
    """Exact finite-d distortion of Top-K followed by scaled sign of the kept values.

    ``d D = E[T^2 + (m-1) E[A^2|A<T] + (k-1) Var(A|A>T)]`` (module docstring); ``k = d`` is
    the scaled sign ``((d-1)/d)(1 - 2/pi)``.

    References:
        arXiv 2108.09899 (Top-K + sign variant). Assumption: i.i.d. Gaussian g.
    """
    d, k = _check_d_k(d, k)
    m = d - k
    if m == 0:
        return scaled_sign_distortion(d)

    def h(t: float) -> float:
        f_lo, m2_lo, f_hi, m1_hi, m2_hi = _half_normal_moments(t)
        cond_lo = m2_lo / f_lo if f_lo > 0 else t * t / 3.0
        if f_hi > 0:
            mu = m1_hi / f_hi
            var_hi = max(m2_hi / f_hi - mu * mu, 0.0)
        else:
            var_hi = 0.0
        return t * t + (m - 1) * cond_lo + (k - 1) * var_hi

    return _order_stat_expectation(d, k, h) / d


@register_closed_form("top-k")
def top_k_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Top-K: exact order-statistics distortion; container ``k(ceil(log2 d) + b_v)/d``,
    entropy (enumerative index code) ``(log2 C(d,k) + k b_v)/d``."""
    d, k = _check_d_k(d, k)
    r, h = _k_rates(d, k, float_bits)
    return ClosedForm(r, h, float(top_k_distortion(d, k)), True)


@register_closed_form("top-k-sign")
def top_k_sign_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Top-K + scaled sign: exact distortion; rate ``(k + k ceil(log2 d) + b_v)/d``."""
    d, k = _check_d_k(d, k)
    container = (k + k * ceil_log2(d) + float_bits) / d
    # Kept signs are fair coins independent of the magnitudes.
    ent = (float(log2_binom(d, k)) + expected_empirical_binary_entropy_bits(k) + float_bits) / d
    return ClosedForm(container, ent, top_k_sign_distortion(d, k), True)


@register_closed_form("rand-k")
def rand_k_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Rand-K (biased): ``D = 1 - k/d`` exactly; indices charged as for Top-K."""
    d, k = _check_d_k(d, k)
    r, h = _k_rates(d, k, float_bits)
    return ClosedForm(r, h, 1.0 - k / d, True)


@register_closed_form("rand-k-unbiased")
def rand_k_unbiased_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Rand-K scaled by d/k: ``D = d/k - 1`` exactly (``k(d/k - 1)^2 + (d - k)`` over d)."""
    d, k = _check_d_k(d, k)
    r, h = _k_rates(d, k, float_bits)
    return ClosedForm(r, h, d / k - 1.0, True)


# ----------------------------------------------------------------------------- threshold
def _threshold_c2(d: Any, kappa: Any) -> tuple[int, float]:
    """Checked ``d`` and the squared threshold multiplier ``c^2``, ``c = Phi^-1(1 - kappa/2)``."""
    d = _check_d(d)
    kappa = check_in_interval("kappa", kappa, 0.0, 1.0, closed=(False, True))
    return d, float(top_k_threshold(kappa)) ** 2


def threshold_kept_fraction(d: int, kappa: float) -> float:
    """Exact expected kept fraction of the threshold sparsifier: ``1 - I_{c^2/d}(1/2, (d-1)/2)``."""
    d, c2 = _threshold_c2(d, kappa)
    if d == 1:
        return 1.0 if c2 < 1 else 0.0
    return float(special.betaincc(0.5, (d - 1) / 2.0, min(c2 / d, 1.0)))


def threshold_distortion(d: int, kappa: float) -> float:
    """Exact distortion of ``g_i 1{|g_i| > c ||g||/sqrt d}``: ``I_{c^2/d}(3/2, (d-1)/2)``.

    References:
        arXiv 2108.09899 (threshold form of Top-K); derivation in the module docstring.
        Assumption: i.i.d. zero-mean Gaussian g (isotropy makes ``g/||g||`` independent of
        ``||g||``).
    """
    d, c2 = _threshold_c2(d, kappa)
    if d == 1:
        return 0.0 if c2 < 1 else 1.0
    return float(special.betainc(1.5, (d - 1) / 2.0, min(c2 / d, 1.0)))


@register_closed_form("threshold")
def threshold_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    kappa: float = 0.01,
    float_bits: int = FLOAT_BITS,
) -> ClosedForm:
    """Threshold sparsifier: exact distortion and exact EXPECTED container rate
    ``kappa_d (ceil(log2 d) + b_v) + b_v/d`` (length field ``b_v`` bits).

    The entropy rate models the kept count as ``Bin(d, kappa_d)`` (exact marginals; the weak
    dependence through ``sigma_hat`` is ignored) and averages ``log2 C(d, m)``.
    """
    d = _check_d(d)
    kap_d = threshold_kept_fraction(d, kappa)
    container = kap_d * (ceil_log2(d) + float_bits) + float_bits / d
    m = np.arange(d + 1)
    e_log2c = float(np.sum(stats.binom.pmf(m, d, kap_d) * log2_binom(d, m)))
    ent = (e_log2c + d * kap_d * float_bits + float_bits) / d
    return ClosedForm(container, ent, threshold_distortion(d, kappa), True)


__all__ = [
    "rand_k_rd",
    "rand_k_unbiased_rd",
    "threshold_distortion",
    "threshold_kept_fraction",
    "threshold_rd",
    "top_k_distortion",
    "top_k_distortion_binomial",
    "top_k_distortion_large_d",
    "top_k_rd",
    "top_k_sign_distortion",
    "top_k_sign_distortion_large_d",
    "top_k_sign_rd",
    "top_k_threshold",
]
