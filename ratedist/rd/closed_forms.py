"""Closed-form (rate, distortion) of gradient compressors on i.i.d. Gaussian gradients.

Model (arXiv 2108.09899, Sec. 2 of the project SPEC): ``g in R^d`` with i.i.d.
``N(0, sigma^2)`` coordinates; distortion ``D = E||g - g_hat||^2 / (d sigma^2)``; rate in bits
per coordinate including side information, with the bit conventions of
:mod:`ratedist.compressors` (container = bit-packed wire size, entropy = ideal entropy-coded
size). Every function here returns a :class:`ClosedForm` and is registered in
:data:`CLOSED_FORMS` under the compressor's registry name, with the same parameters.

Derivations (each checked against quadrature / Monte Carlo in ``tests/rd``):

* Scaled sign ``g_hat = (||g||_1/d) sign g``: ``||g - g_hat||^2 = ||g||^2 - ||g||_1^2/d``
  pathwise; with ``E g_i^2 = sigma^2`` and ``E|g_i||g_j| = (2/pi) sigma^2`` (i != j),
  ``E||g||_1^2 = d sigma^2 + d(d-1)(2/pi) sigma^2``, hence EXACTLY
  ``D_d = ((d - 1)/d) (1 - 2/pi)``, limit ``1 - 2/pi``.
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
* QSGD / NUQSGD (levels ``l_j`` on ``r_i = |g_i|/||g||``): with the same isotropy,
  ``E||g - g_hat||^2 = E||g||^2 sum_i E[v(r_i)]`` where ``v`` is the stochastic-rounding
  variance of the cell, so EXACTLY ``D = d E[v(r)]`` with ``r = sqrt(B)``, density
  ``2 (1 - r^2)^((d-3)/2) / B(1/2, (d-1)/2)`` on [0, 1].
* TernGrad: ``E||g - g_hat||^2 = E[||g||_inf ||g||_1] - E||g||^2``; swapping the order of
  integration gives EXACTLY ``D = int_0^inf (1 - F(x)^(d-1)) sqrt(2/pi) (1 - e^{-x^2/2}) dx``
  (sigma = 1; ``F`` the half-normal cdf).
* Natural compression, scalar quantizers: sums of exact partial moments of the Gaussian.

Entropy rates are the entropy of the true symbol law (not the plug-in entropy of one draw,
which is lower by about ``(#symbols - 1)/(2 d ln 2)`` bits per coordinate) unless said
otherwise.

References:
    V. Gandikota, D. Kane, R. K. Maity, A. Mazumdar, "vqSGD: Vector Quantized Stochastic
    Gradient Descent", arXiv 2108.09899 (rate–distortion of gradient compressors).
    H. A. David, H. N. Nagaraja, *Order Statistics*, 3rd ed., Sec. 2.2 (conditional
    independence of order statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import integrate, special, stats

from ratedist._registry import Registry
from ratedist._validation import check_in_interval, check_int, check_positive
from ratedist.compressors._common import ceil_log2
from ratedist.compressors.base import FLOAT_BITS
from ratedist.quantizers import exact as qexact
from ratedist.quantizers.core import ScalarQuantizer
from ratedist.sources.classic import Gaussian

_TWO_OVER_PI = 2.0 / math.pi
_QUAD = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 500}


class ClosedForm(NamedTuple):
    """Closed-form operating point of a compressor on Gaussian gradients.

    Attributes:
        rate_bits: container rate, bits per coordinate (side information included), or None
            where the container size has no closed form (lattice label ranges).
        entropy_rate_bits: entropy-layer rate, bits per coordinate, or None where no closed
            form is available.
        distortion: ``E||g - g_hat||^2 / (d sigma^2)``.
        exact: True when exact at this finite d; False for large-d approximations.
    """

    rate_bits: float | None
    entropy_rate_bits: float | None
    distortion: float
    exact: bool


#: Registry: compressor name -> ``f(d, *, sigma, dtype, **compressor_params) -> ClosedForm``.
CLOSED_FORMS: Registry[Callable[..., ClosedForm]] = Registry("closed form")


def log2_binom(d: int, k: Any) -> Any:
    """``log2 C(d, k)`` (vectorized over ``k``) via ``lgamma``."""
    k = np.asarray(k, np.float64)
    return (
        special.gammaln(d + 1) - special.gammaln(k + 1) - special.gammaln(d - k + 1)
    ) / math.log(2)


def _binary_entropy(p: Any) -> np.ndarray:
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p <= 0) | (p >= 1), 0.0, h)


@lru_cache(maxsize=256)
def expected_empirical_binary_entropy_bits(n: int, p: float = 0.5) -> float:
    """``E[n H(C/n)]`` for ``C ~ Bin(n, p)``: the expected plug-in code length of n coins.

    This is exactly what the sign compressors report in their entropy layer.
    """
    c = np.arange(n + 1)
    return float(np.sum(stats.binom.pmf(c, n, p) * n * _binary_entropy(c / n)))


def _check_d(d: Any) -> int:
    return check_int("d", d, min_value=1)


def _k_rates(d: int, k: int, float_bits: int) -> tuple[float, float]:
    container = k * (ceil_log2(d) + float_bits) / d
    entropy = (float(log2_binom(d, k)) + k * float_bits) / d
    return container, entropy


# ----------------------------------------------------------------------------- signs
@CLOSED_FORMS.register("identity")
def identity_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """No compression: ``D = 0`` (to float rounding), ``float_bits`` bits per coordinate."""
    _check_d(d)
    return ClosedForm(float(float_bits), float(float_bits), 0.0, True)


@CLOSED_FORMS.register("sign")
def sign_rd(d: int, *, sigma: float = 1.0, dtype: Any = "float32") -> ClosedForm:
    """Unscaled sign: ``D = 1 - 2 sqrt(2/pi)/sigma + 1/sigma^2`` (not scale invariant).

    ``E(g - sign g)^2 = sigma^2 - 2 E|g| + 1`` with ``E|g| = sigma sqrt(2/pi)``.
    Rate 1 bit; entropy layer: expected plug-in entropy of d fair coins.
    """
    d = _check_d(d)
    sigma = check_positive("sigma", sigma)
    dist = 1.0 - 2.0 * math.sqrt(_TWO_OVER_PI) / sigma + 1.0 / sigma**2
    return ClosedForm(1.0, expected_empirical_binary_entropy_bits(d) / d, dist, True)


def scaled_sign_distortion(d: int) -> float:
    """Exact ``E||g - (||g||_1/d) sign g||^2 / (d sigma^2) = ((d-1)/d)(1 - 2/pi)``.

    References:
        arXiv 2108.09899 (scaled sign); derivation in this module's docstring.
        Assumptions: i.i.d. zero-mean Gaussian coordinates.
    """
    d = _check_d(d)
    return (d - 1) / d * (1.0 - _TWO_OVER_PI)


@CLOSED_FORMS.register("scaled-sign")
def scaled_sign_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Scaled sign: exact ``D_d = ((d-1)/d)(1 - 2/pi)``, rate ``1 + float_bits/d``."""
    d = _check_d(d)
    ent = (expected_empirical_binary_entropy_bits(d) + float_bits) / d
    return ClosedForm(1.0 + float_bits / d, ent, scaled_sign_distortion(d), True)


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


@CLOSED_FORMS.register("top-k")
def top_k_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Top-K: exact order-statistics distortion; container ``k(ceil(log2 d) + b_v)/d``,
    entropy (enumerative index code) ``(log2 C(d,k) + k b_v)/d``."""
    d, k = _check_d_k(d, k)
    r, h = _k_rates(d, k, float_bits)
    return ClosedForm(r, h, float(top_k_distortion(d, k)), True)


@CLOSED_FORMS.register("top-k-sign")
def top_k_sign_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Top-K + scaled sign: exact distortion; rate ``(k + k ceil(log2 d) + b_v)/d``."""
    d, k = _check_d_k(d, k)
    container = (k + k * ceil_log2(d) + float_bits) / d
    # Kept signs are fair coins independent of the magnitudes.
    ent = (float(log2_binom(d, k)) + expected_empirical_binary_entropy_bits(k) + float_bits) / d
    return ClosedForm(container, ent, top_k_sign_distortion(d, k), True)


@CLOSED_FORMS.register("rand-k")
def rand_k_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", k: int = 1, float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Rand-K (biased): ``D = 1 - k/d`` exactly; indices charged as for Top-K."""
    d, k = _check_d_k(d, k)
    r, h = _k_rates(d, k, float_bits)
    return ClosedForm(r, h, 1.0 - k / d, True)


@CLOSED_FORMS.register("rand-k-unbiased")
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


@CLOSED_FORMS.register("threshold")
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


# ----------------------------------------------------------------------------- QSGD family
def _radial_density(d: int) -> Callable[[np.ndarray], np.ndarray]:
    """Density of ``r = |g_1|/||g||`` on [0, 1]: ``2 (1 - r^2)^((d-3)/2) / B(1/2, (d-1)/2)``."""
    log_c = math.log(2.0) - special.betaln(0.5, (d - 1) / 2.0)

    def pdf(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, np.float64)
        with np.errstate(divide="ignore"):
            return np.exp(log_c + 0.5 * (d - 3) * np.log1p(-np.minimum(r * r, 1.0)))

    return pdf


def _cell_integrals(d: int, lo: float, hi: float) -> tuple[float, float, float]:
    """``E[r^k; lo < r < hi]`` for k = 0, 1, 2 under the radial density."""
    pdf = _radial_density(d)
    # The mass sits at r ~ 1/sqrt(d): give quad breakpoints on that scale.
    scale = 1.0 / math.sqrt(d)
    pts = [p for p in (scale, 3 * scale, 6 * scale, 12 * scale) if lo < p < hi] or None
    out = []
    for kk in range(3):
        val, _ = integrate.quad(lambda r, kk=kk: r**kk * pdf(r), lo, hi, points=pts, **_QUAD)
        out.append(val)
    return out[0], out[1], out[2]


def norm_levels_moments(d: int, levels: Any) -> tuple[float, np.ndarray]:
    """Rounding variance ``d E[v(r)]`` and output-level probabilities of ``||g|| sign L[xi]``.

    Args:
        d: dimension (``d >= 2``).
        levels: increasing levels on [0, 1] with ``levels[0] = 0`` and ``levels[-1] = 1``.

    Returns:
        ``(D, p)``: the exact normalized distortion and the probability of each level index.
    """
    lv = np.asarray(levels, np.float64)
    var = 0.0
    p = np.zeros(lv.size)
    for j in range(lv.size - 1):
        a, b = lv[j], lv[j + 1]
        m0, m1, m2 = _cell_integrals(d, a, b)
        var += -m2 + (a + b) * m1 - a * b * m0
        up = (m1 - a * m0) / (b - a)
        p[j + 1] += up
        p[j] += m0 - up
    return d * var, p


def _signed_level_entropy_bits(p: np.ndarray) -> float:
    """Entropy of ``sign * level`` when nonzero levels carry a fair sign, level 0 none."""
    p = np.clip(p, 0.0, None)
    h0 = -p[0] * math.log2(p[0]) if p[0] > 0 else 0.0
    nz = p[1:][p[1:] > 0]
    return float(h0 - np.sum(nz * np.log2(nz / 2.0)))


def _norm_level_rd(d: int, levels: np.ndarray, float_bits: int, rng_bits: int) -> ClosedForm:
    d = check_int("d", d, min_value=2)
    s = levels.size - 1
    dist, p = norm_levels_moments(d, levels)
    container = 1 + s.bit_length() + float_bits / d
    ent = _signed_level_entropy_bits(p) + float_bits / d
    # With 8/16 random bits the rounding probabilities are quantized: O(2^-rng_bits) error.
    return ClosedForm(float(container), float(ent), float(dist), rng_bits == 32)


@CLOSED_FORMS.register("qsgd")
def qsgd_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    s: int = 1,
    float_bits: int = FLOAT_BITS,
    rng_bits: int = 32,
) -> ClosedForm:
    """QSGD(s): exact ``D = d E[v(s r)]/s^2``, ``r = |g_1|/||g||`` (module docstring).

    The closed form assumes exact uniform rounding (``rng_bits = 32``); with 8/16 random bits
    the compressor's rounding probabilities are quantized and D differs by O(2^-rng_bits).
    """
    s = check_int("s", s, min_value=1)
    return _norm_level_rd(d, np.arange(s + 1, dtype=np.float64) / s, float_bits, rng_bits)


@CLOSED_FORMS.register("nuqsgd")
def nuqsgd_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    s: int = 3,
    float_bits: int = FLOAT_BITS,
    rng_bits: int = 32,
) -> ClosedForm:
    """NUQSGD(s): levels ``{0, 2^-(s-1), ..., 1/2, 1}``; exact D as for QSGD."""
    s = check_int("s", s, min_value=1)
    levels = np.concatenate([[0.0], 2.0 ** -np.arange(s - 1, -1, -1, dtype=np.float64)])
    return _norm_level_rd(d, levels, float_bits, rng_bits)


def terngrad_distortion(d: int) -> float:
    """Exact TernGrad distortion ``int_0^inf (1 - F(x)^(d-1)) sqrt(2/pi)(1 - e^{-x^2/2}) dx``.

    References:
        Wen et al., arXiv 1705.07878 (TernGrad); derivation in the module docstring.
        Assumption: i.i.d. Gaussian g (scale invariant).
    """
    d = _check_d(d)
    if d == 1:
        return 0.0  # |g| = max|g|: the single coordinate is sent exactly

    def integrand(x: float) -> float:
        # 1 - F^(d-1) with F = erf(x/sqrt 2), computed as -expm1((d-1) log1p(-erfc)).
        tail = -math.expm1((d - 1) * math.log1p(-math.erfc(x / math.sqrt(2.0))))
        return tail * math.sqrt(_TWO_OVER_PI) * (-math.expm1(-0.5 * x * x))

    peak = math.sqrt(2.0 * math.log(d)) + 1.0  # where F^(d-1) switches on (max of d)
    a, _ = integrate.quad(integrand, 0.0, peak, **_QUAD)
    b, _ = integrate.quad(integrand, peak, np.inf, **_QUAD)
    return float(a + b)


@CLOSED_FORMS.register("terngrad")
def terngrad_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    float_bits: int = FLOAT_BITS,
    rng_bits: int = 32,
) -> ClosedForm:
    """TernGrad: exact distortion; container ``2 + b_v/d``; no closed-form entropy rate."""
    d = _check_d(d)
    return ClosedForm(2.0 + float_bits / d, None, terngrad_distortion(d), rng_bits == 32)


# ----------------------------------------------------------------------------- natural
def _natural_cells(sigma: float) -> np.ndarray:
    e0 = math.floor(math.log2(sigma))
    return np.arange(e0 - 60, e0 + 14)  # cells [2^e, 2^(e+1)); mass outside < 1e-18


@CLOSED_FORMS.register("natural")
def natural_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", rng_bits: int = 32
) -> ClosedForm:
    """Natural compression: exact D from Gaussian partial moments on the binades.

    ``D = sum_e E[(2^(e+1) - A)(A - 2^e); 2^e < A < 2^(e+1)] / sigma^2``; container rate
    ``1 + nexp(dtype)`` bits; entropy rate ``1 + H(output exponent)`` (fair sign).
    """
    _check_d(d)
    sigma = check_positive("sigma", sigma)
    src = Gaussian(sigma)
    e = _natural_cells(sigma).astype(np.float64)
    lo, hi = np.exp2(e), np.exp2(e + 1)
    m0, m1, m2 = (2.0 * src.partial_moment(k, lo, hi) for k in range(3))
    var = float(np.sum(-m2 + (lo + hi) * m1 - lo * hi * m0))
    up = (m1 - lo * m0) / lo  # probability of rounding up to 2^(e+1)
    p = np.zeros(e.size + 1)
    p[:-1] += m0 - up
    p[1:] += up
    p = p[p > 0]
    ent = 1.0 + float(-np.sum(p * np.log2(p)))
    nexp = int(np.finfo(np.dtype(dtype)).nexp)
    return ClosedForm(1.0 + nexp, ent, var / sigma**2, rng_bits == 32)


# ----------------------------------------------------------------------------- scalar
@CLOSED_FORMS.register("scalar")
def scalar_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    levels: Any,
    thresholds: Any,
    rounding: str = "deterministic",
    normalize: str = "rms",
    float_bits: int = FLOAT_BITS,
    rng_bits: int = 32,
    method: str | None = None,
    bits: int | None = None,
) -> ClosedForm:
    """Scalar quantizer on every coordinate: exact MSE of the design on the source.

    With ``normalize="rms"`` the quantizer sees ``g / sigma_hat``; the closed form uses
    ``sigma_hat = sigma`` (large-d approximation, error O(1/d), so ``exact=False``). With
    ``normalize="none"`` it sees ``g`` itself and the result is exact. Container rate
    ``ceil(log2 n) + side/d``; entropy rate: entropy of the output index law.
    """
    d = _check_d(d)
    sigma = check_positive("sigma", sigma)
    q = ScalarQuantizer(np.asarray(thresholds, np.float64), np.asarray(levels, np.float64))
    rms = normalize == "rms"
    src = Gaussian(1.0 if rms else sigma)
    if rounding == "stochastic":
        mse = qexact.stochastic_error(q, src).mse
        probs = qexact.stochastic_probabilities(q, src)
    else:
        mse = qexact.deterministic_mse(q, src)
        probs = qexact.deterministic_probabilities(q, src)
    dist = mse if rms else mse / sigma**2
    side = float_bits if rms else 0
    container = ceil_log2(q.n_levels) + side / d
    ent = qexact.entropy_bits(probs) + side / d
    return ClosedForm(container, ent, float(dist), not rms and rng_bits == 32)


# ----------------------------------------------------------------------------- lattice
@CLOSED_FORMS.register("lattice")
def lattice_rd(
    d: int,
    *,
    sigma: float = 1.0,
    dtype: Any = "float32",
    lattice: str = "e8",
    step: float = 0.5,
    dither: bool = False,
    float_bits: int = FLOAT_BITS,
) -> ClosedForm:
    """Entropy-coded lattice quantizer, high-rate theory (:mod:`ratedist.rd.lattice`).

    ``D = G step^2`` (exact at every step with subtractive dither, high-rate otherwise);
    entropy rate ``h - log2(step) + float_bits/d`` (high rate, ideal coder, the scale charged);
    the container rate (bit-packed label ranges) has no closed form (``rate_bits=None``).
    """
    from ratedist.rd.lattice import lattice_high_rate_point

    d = _check_d(d)
    rate, mse = lattice_high_rate_point(lattice, step, 1.0)
    return ClosedForm(None, rate + float_bits / d, float(mse), False)


__all__ = [
    "CLOSED_FORMS",
    "ClosedForm",
    "expected_empirical_binary_entropy_bits",
    "log2_binom",
    "norm_levels_moments",
    "scaled_sign_distortion",
    "terngrad_distortion",
    "threshold_distortion",
    "threshold_kept_fraction",
    "top_k_distortion",
    "top_k_distortion_binomial",
    "top_k_distortion_large_d",
    "top_k_sign_distortion",
    "top_k_sign_distortion_large_d",
    "top_k_threshold",
]
