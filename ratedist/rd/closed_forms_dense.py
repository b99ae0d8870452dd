"""Closed forms of the dense quantizers: every coordinate is sent (signs, QSGD family,
TernGrad, natural compression, designed scalar quantizers).

Model and conventions: :mod:`ratedist.rd.closed_forms`. Derivations (each checked against
quadrature / Monte Carlo in ``tests/rd``):

* Scaled sign ``g_hat = (||g||_1/d) sign g``: ``||g - g_hat||^2 = ||g||^2 - ||g||_1^2/d``
  pathwise; with ``E g_i^2 = sigma^2`` and ``E|g_i||g_j| = (2/pi) sigma^2`` (i != j),
  ``E||g||_1^2 = d sigma^2 + d(d-1)(2/pi) sigma^2``, hence EXACTLY
  ``D_d = ((d - 1)/d) (1 - 2/pi)``, limit ``1 - 2/pi``.
* QSGD / NUQSGD (levels ``l_j`` on ``r_i = |g_i|/||g||``): with
  ``B = r^2 ~ Beta(1/2, (d-1)/2)`` independent of ``||g||^2`` (isotropy),
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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import integrate, special

from ratedist._validation import check_int, check_positive
from ratedist.compressors._common import ceil_log2
from ratedist.compressors.base import FLOAT_BITS
from ratedist.quantizers import exact as qexact
from ratedist.quantizers.core import ScalarQuantizer
from ratedist.rd.closed_form_base import (
    _QUAD,
    _TWO_OVER_PI,
    ClosedForm,
    _check_d,
    expected_empirical_binary_entropy_bits,
    register_closed_form,
)
from ratedist.sources.classic import Gaussian


# ----------------------------------------------------------------------------- signs
@register_closed_form("identity")
def identity_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """No compression: ``D = 0`` (to float rounding), ``float_bits`` bits per coordinate."""
    _check_d(d)
    return ClosedForm(float(float_bits), float(float_bits), 0.0, True)


@register_closed_form("sign")
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


@register_closed_form("scaled-sign")
def scaled_sign_rd(
    d: int, *, sigma: float = 1.0, dtype: Any = "float32", float_bits: int = FLOAT_BITS
) -> ClosedForm:
    """Scaled sign: exact ``D_d = ((d-1)/d)(1 - 2/pi)``, rate ``1 + float_bits/d``."""
    d = _check_d(d)
    ent = (expected_empirical_binary_entropy_bits(d) + float_bits) / d
    return ClosedForm(1.0 + float_bits / d, ent, scaled_sign_distortion(d), True)


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


def _signed_levels(params: dict[str, Any]) -> int:
    """Symbols of QSGD(s)/NUQSGD(s): level 0 and s signed nonzero levels."""
    return 2 * params["s"] + 1


def _norm_level_rd(d: int, levels: np.ndarray, float_bits: int, rng_bits: int) -> ClosedForm:
    d = check_int("d", d, min_value=2)
    s = levels.size - 1
    dist, p = norm_levels_moments(d, levels)
    container = 1 + s.bit_length() + float_bits / d
    ent = _signed_level_entropy_bits(p) + float_bits / d
    # With 8/16 random bits the rounding probabilities are quantized: O(2^-rng_bits) error.
    return ClosedForm(float(container), float(ent), float(dist), rng_bits == 32)


@register_closed_form("qsgd", entropy_alphabet=_signed_levels)
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


@register_closed_form("nuqsgd", entropy_alphabet=_signed_levels)
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


@register_closed_form("terngrad")
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


def _natural_alphabet(params: dict[str, Any]) -> int:
    """Symbols of natural compression with non-negligible mass: sign x about 20 binades."""
    return 40


@register_closed_form("natural", entropy_alphabet=_natural_alphabet)
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
def _scalar_alphabet(params: dict[str, Any]) -> int:
    return len(params["levels"])


@register_closed_form("scalar", entropy_alphabet=_scalar_alphabet)
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


__all__ = [
    "identity_rd",
    "natural_rd",
    "norm_levels_moments",
    "nuqsgd_rd",
    "qsgd_rd",
    "scalar_rd",
    "scaled_sign_distortion",
    "scaled_sign_rd",
    "sign_rd",
    "terngrad_distortion",
    "terngrad_rd",
]
