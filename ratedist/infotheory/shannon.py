"""Shannon rate–distortion functions for memoryless sources (bits, MSE per coordinate).

References:
    T. M. Cover, J. A. Thomas, *Elements of Information Theory*, 2nd ed., Thm. 10.3.2
    (Gaussian R(D)) and Sec. 10.3.3 / Problem 10.8 (Shannon lower bound).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ratedist._validation import check_array, check_positive


def gaussian_distortion(rate_bits: Any, variance: float = 1.0) -> np.ndarray:
    """``D(R) = sigma^2 2^(-2R)`` for a Gaussian source (Cover & Thomas Thm. 10.3.2).

    Args:
        rate_bits: rate(s) in bits per coordinate, >= 0.
        variance: source variance sigma^2 > 0.
    """
    variance = check_positive("variance", variance)
    r = check_array("rate_bits", rate_bits)
    if np.any(r < 0):
        raise ValueError("rate_bits must be >= 0")
    return variance * np.exp2(-2.0 * r)


def gaussian_rate(distortion: Any, variance: float = 1.0) -> np.ndarray:
    """``R(D) = max(0, (1/2) log2(sigma^2 / D))`` bits per coordinate."""
    variance = check_positive("variance", variance)
    dist = check_array("distortion", distortion)
    if np.any(dist <= 0):
        raise ValueError("distortion must be > 0")
    return np.maximum(0.0, 0.5 * np.log2(variance / dist))


def shannon_lower_bound_distortion(rate_bits: Any, entropy_bits: float) -> np.ndarray:
    """Shannon lower bound ``D(R) >= 2^(2(h - R)) / (2 pi e)`` for MSE (h in bits)."""
    r = check_array("rate_bits", rate_bits)
    h = float(entropy_bits)
    if not math.isfinite(h):
        raise ValueError(f"entropy_bits must be finite, got {entropy_bits!r}")
    return np.exp2(2.0 * (h - r)) / (2 * math.pi * math.e)


def shannon_lower_bound_rate(distortion: Any, entropy_bits: float) -> np.ndarray:
    """Shannon lower bound ``R(D) >= h - (1/2) log2(2 pi e D)``, clipped at 0."""
    dist = check_array("distortion", distortion)
    if np.any(dist <= 0):
        raise ValueError("distortion must be > 0")
    return np.maximum(0.0, float(entropy_bits) - 0.5 * np.log2(2 * math.pi * math.e * dist))


def gap_to_shannon(
    rate_bits: Any, mse: Any, *, variance: float, entropy_bits: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gap of an operational point ``(R, D)`` to the Shannon bound, in dB and in bits.

    For a Gaussian source pass ``entropy_bits=None`` (exact D(R)); otherwise the Shannon lower
    bound with the source's differential entropy is used, so the gap is an upper bound on
    the true gap.

    Returns:
        ``(gap_db, gap_bits)``: ``10 log10(D / D_sh(R))`` and ``R - R_sh(D)``.
    """
    r = np.asarray(rate_bits, np.float64)
    d = np.asarray(mse, np.float64)
    if entropy_bits is None:
        d_sh = gaussian_distortion(r, variance)
        r_sh = gaussian_rate(d, variance)
    else:
        d_sh = shannon_lower_bound_distortion(r, entropy_bits)
        r_sh = shannon_lower_bound_rate(d, entropy_bits)
    return 10.0 * np.log10(d / d_sh), r - r_sh
