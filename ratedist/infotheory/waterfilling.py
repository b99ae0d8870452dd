"""Reverse water-filling for independent Gaussian components of unequal variance.

For independent ``X_i ~ N(0, sigma_i^2)`` under total squared error, the rate–distortion
function is (Cover & Thomas, *Elements of Information Theory*, 2nd ed., Thm. 10.3.3)::

    R(D) = sum_i max(0, (1/2) log2(sigma_i^2 / lambda)),   D_i = min(lambda, sigma_i^2),
    sum_i D_i = D,

i.e. a common "water level" ``lambda``; components whose variance lies below the water are not
described at all (``D_i = sigma_i^2``, rate 0). Both directions are solved exactly (no
iteration) by sorting the variances: the distortion is piecewise linear in ``lambda`` and the
rate is piecewise linear in ``log2 lambda``.

Rates and distortions here are TOTALS over the components (bits and squared error summed over
``i``), as in Cover & Thomas; divide by the number of components for per-coordinate values.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_array, check_nonnegative


class WaterFilling(NamedTuple):
    """Solution of reverse water-filling.

    Attributes:
        distortion: total distortion ``sum_i D_i``.
        rate_bits: total rate ``sum_i max(0, (1/2) log2(sigma_i^2 / D_i))`` in bits.
        water_level: the common level ``lambda`` (``max sigma_i^2`` when the rate is 0).
        component_distortions: ``D_i = min(lambda, sigma_i^2)`` in the input order.
        component_rates_bits: per-component rates in bits, in the input order.
    """

    distortion: float
    rate_bits: float
    water_level: float
    component_distortions: np.ndarray
    component_rates_bits: np.ndarray


def _finish(variances: np.ndarray, level: float) -> WaterFilling:
    d_i = np.minimum(level, variances)
    r_i = 0.5 * np.log2(variances / d_i)
    return WaterFilling(float(np.sum(d_i)), float(np.sum(r_i)), float(level), d_i, r_i)


def _level_for_distortion(v_sorted: np.ndarray, distortion: float) -> float:
    # Total distortion at level v_sorted[k] (ascending): sum_{j<=k} v_j + (n-1-k) v_k.
    n = v_sorted.size
    csum = np.cumsum(v_sorted)
    at_knots = csum + (n - 1 - np.arange(n)) * v_sorted
    k = int(np.searchsorted(at_knots, distortion))  # first knot with D(knot) >= distortion
    below = csum[k - 1] if k > 0 else 0.0
    # Between knots k-1 and k: D(lambda) = below + (n - k) lambda.
    return float((distortion - below) / (n - k))


def _level_for_rate(v_sorted: np.ndarray, rate_bits: float) -> float:
    # With the k largest components active: R = (1/2) sum_active log2(v) - (k/2) log2(lambda).
    n = v_sorted.size
    logs = np.log2(v_sorted)
    desc = logs[::-1]
    for k in range(1, n + 1):
        log_level = (np.sum(desc[:k]) - 2.0 * rate_bits) / k
        lower = desc[k] if k < n else -np.inf
        if log_level >= lower:  # the (k+1)-th largest variance stays below the water
            return float(np.exp2(log_level))
    raise AssertionError("unreachable: k = n always satisfies the condition")


def reverse_water_filling(
    variances: Any, *, rate_bits: Any = None, distortion: Any = None
) -> WaterFilling:
    """Reverse water-filling over independent Gaussian components (Cover & Thomas Thm. 10.3.3).

    Exactly one of ``rate_bits`` and ``distortion`` is given.

    Args:
        variances: component variances ``sigma_i^2 > 0`` (1-D).
        rate_bits: total rate in bits, ``>= 0``.
        distortion: total distortion, in ``(0, sum sigma_i^2]``.

    Returns:
        :class:`WaterFilling` with total distortion, total rate and the water level.

    Raises:
        ValueError: if the variances are not positive, both or neither target is given, or the
            target is out of range.

    References:
        T. M. Cover, J. A. Thomas, *Elements of Information Theory*, 2nd ed., Sec. 10.3.3.
        Assumptions: independent Gaussian components, squared-error distortion summed over
        components.
    """
    v = check_array("variances", variances, ndim=1)
    if np.any(v <= 0):
        raise ValueError(f"variances must be > 0, got min {float(v.min())!r}")
    if (rate_bits is None) == (distortion is None):
        raise ValueError("give exactly one of rate_bits and distortion")
    v_sorted = np.sort(v)
    if distortion is not None:
        dist = check_nonnegative("distortion", distortion)
        if not 0 < dist <= float(np.sum(v)) * (1 + 1e-15):
            raise ValueError(
                f"distortion must lie in (0, sum(variances)={np.sum(v)!r}], got {dist!r}"
            )
        return _finish(v, min(_level_for_distortion(v_sorted, dist), float(v_sorted[-1])))
    rate = check_nonnegative("rate_bits", rate_bits)
    if rate == 0:
        return _finish(v, float(v_sorted[-1]))
    return _finish(v, _level_for_rate(v_sorted, rate))
