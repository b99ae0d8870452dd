"""Optimal uniform (midrise/midtread) scalar quantizer for a symmetric source.

Levels ``l_i = (i - (n - 1)/2) Δ``, ``i = 0..n-1`` (midrise for even ``n``, midtread for odd
``n``), thresholds at the midpoints ``(i + 1 - n/2) Δ``; the step ``Δ`` minimizes the exact MSE
``D(Δ) = sum_i E[(X - l_i)^2; cell i]``. Because thresholds are midpoints, the boundary terms of
Leibniz's rule cancel and

    D'(Δ) = -2 sum_i c_i (E[X; cell i] - c_i Δ P(cell i)),      c_i = i - (n - 1)/2,

so the optimum is the root of ``D'`` found by bracketing on a logarithmic grid followed by
Brent's method to ``xtol = 1e-15 Δ`` (``D`` is unimodal in ``Δ`` for log-concave densities;
for other sources the grid picks the best basin).

References:
    J. Max, "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6 (1960), Table II
    (Gaussian optimal uniform steps). N. S. Jayant, P. Noll, *Digital Coding of Waveforms*
    (1984), Table 4.1.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from ratedist.quantizers.companded import check_n_levels, check_source
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import AbstractSource

#: Relative tolerance on the step of :func:`optimal_uniform` (Brent ``xtol`` relative to Δ).
STEP_RTOL = 1e-15


def uniform_quantizer(n_levels: int, step: float) -> ScalarQuantizer:
    """The zero-centred uniform quantizer with ``n_levels`` levels and step ``step``."""
    n_levels = check_n_levels(n_levels)
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be finite and > 0, got {step!r}")
    c = np.arange(n_levels) - 0.5 * (n_levels - 1)
    return ScalarQuantizer.from_levels(c * step)


def _moments(source: AbstractSource, n_levels: int, step: float):
    c = np.arange(n_levels) - 0.5 * (n_levels - 1)
    t = (c[:-1] + 0.5) * step
    edges = np.concatenate([[-np.inf], t, [np.inf]])
    m0 = source.partial_moment(0, edges[:-1], edges[1:])
    m1 = source.partial_moment(1, edges[:-1], edges[1:])
    m2 = source.partial_moment(2, edges[:-1], edges[1:])
    return c, m0, m1, m2


def uniform_mse(source: AbstractSource, n_levels: int, step: float) -> float:
    """Exact MSE ``D(Δ)`` of the zero-centred uniform quantizer (deterministic mapping)."""
    c, m0, m1, m2 = _moments(source, n_levels, step)
    lv = c * step
    return float(np.sum(m2 - 2 * lv * m1 + lv**2 * m0))


def uniform_mse_derivative(source: AbstractSource, n_levels: int, step: float) -> float:
    """``dD/dΔ = -2 sum_i c_i (M1_i - c_i Δ M0_i)`` (midpoint thresholds: no boundary terms)."""
    c, m0, m1, _ = _moments(source, n_levels, step)
    return float(-2.0 * np.sum(c * (m1 - c * step * m0)))


@DESIGNS.register("uniform", rounding="deterministic", truncated=False, rate="fixed")
def optimal_uniform(source: AbstractSource, n_levels: int, *, grid_points: int = 48) -> Solution:
    """Zero-centred uniform quantizer whose step minimizes the exact MSE.

    The half-range ``A = n Δ / 2`` is scanned on ``grid_points`` log-spaced values in
    ``[1e-2, 1e4]·std``; the best grid point's neighbours bracket a sign change of ``D'``, which
    Brent's method resolves to ``xtol = STEP_RTOL·Δ``.

    Args:
        source: coordinate law (finite variance). Meant for laws symmetric about 0; for others
            the result is the best zero-centred uniform quantizer.
        n_levels: number of levels, integer in ``[2, 65536]``.
        grid_points: points of the bracketing scan (>= 8).

    Returns:
        ``Solution(ScalarQuantizer, converged, n_iter (Brent evaluations), residual)`` with
        ``residual = |D'(Δ)| Δ / Var(X)`` (dimensionless stationarity).

    Raises:
        ValueError/TypeError: on bad arguments.

    References:
        Max (1960), Table II; Jayant & Noll (1984), Table 4.1.
    """
    source = check_source(source)
    n_levels = check_n_levels(n_levels)
    if not isinstance(grid_points, int) or grid_points < 8:
        raise ValueError(f"grid_points must be an integer >= 8, got {grid_points!r}")
    std = source.std()
    half_ranges = np.geomspace(1e-2, 1e4, grid_points) * std
    steps = 2.0 * half_ranges / n_levels
    values = np.array([uniform_mse(source, n_levels, s) for s in steps])
    k = int(np.argmin(values))
    lo, hi = steps[max(k - 1, 0)], steps[min(k + 1, grid_points - 1)]
    d_lo = uniform_mse_derivative(source, n_levels, lo)
    d_hi = uniform_mse_derivative(source, n_levels, hi)
    n_eval = grid_points
    if d_lo < 0 < d_hi:
        step, res = optimize.brentq(
            lambda s: uniform_mse_derivative(source, n_levels, s),
            lo,
            hi,
            xtol=STEP_RTOL * lo,
            rtol=4 * np.finfo(float).eps,
            full_output=True,
        )
        n_eval += res.function_calls
    else:  # flat or boundary optimum (not expected for finite-variance sources)
        res = optimize.minimize_scalar(
            lambda s: uniform_mse(source, n_levels, s),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12 * hi},
        )
        step = float(res.x)
        n_eval += int(res.nfev)
    residual = abs(uniform_mse_derivative(source, n_levels, step)) * step / source.variance()
    # Stationarity to ~1e-12 of the scale is what the floating-point moments allow.
    return Solution(uniform_quantizer(n_levels, step), residual <= 1e-10, n_eval, residual)
