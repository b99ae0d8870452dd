"""Lloyd–Max (MSE-optimal fixed-rate) scalar quantizer: Newton solve and plain Lloyd.

A fixed-rate quantizer with ``n`` cells is MSE-stationary when (Lloyd 1957/1982, Max 1960)

* every level is the centroid of its cell: ``l_j = E[X | t_{j-1} < X < t_j]``, and
* every threshold is the midpoint of its neighbours: ``t_j = (l_j + l_{j+1}) / 2``.

Plain Lloyd iteration alternates the two conditions; it converges linearly with a rate that
approaches 1 as ``n`` grows (≈ 1.2·10^5 sweeps for 256 Gaussian levels at 1e-12).
:func:`lloyd_max` instead solves ``F(t) = t - mid(c(t)) = 0`` on the thresholds with a damped
Newton method. The Jacobian is tridiagonal with closed-form entries, since the centroid
``c(a, b)`` of a cell moves with its ends as

    dc/db = p(b) (b - c) / P(a < X < b),      dc/da = p(a) (c - a) / P(a < X < b),

so each Newton step is one banded solve (``O(n)``). The Jacobian can be singular: for a Laplace
source with an even number of levels ``(1, …, 1)`` is in its null space (every cell lies on one
half-line, where shifting a cell shifts its centroid by the same amount), so where the banded LU
fails :func:`ratedist.quantizers.banded.newton_direction` takes the Levenberg–Marquardt step.
Both methods stop on the same criterion: ``max_j |l_j - c_j(mid(l))| / max(std(X), |l_j|) <= tol``
(the size of one Lloyd update, relative to the source scale, or to the level itself where that is
larger, since a float64 level far in a heavy tail is only known to ``eps |l_j|``), reported as
``Solution.residual``.

For log-concave densities (Gaussian, Laplace, generalized Gaussian with shape >= 1) the
stationary point is unique and is the global optimum (Fleischer 1964; Trushkin 1982).

References:
    J. Max, "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6 (1960), Table I.
    S. P. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28 (1982).
    P. E. Fleischer, "Sufficient conditions for achieving minimum distortion in a quantizer",
    IEEE Int. Conv. Rec. (1964).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_increasing, check_int, check_positive
from ratedist.quantizers.banded import MAX_STEP_FACTOR, newton_direction
from ratedist.quantizers.companded import check_n_levels, check_source, companded_levels
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import AbstractSource


class _Cells(NamedTuple):
    lo: np.ndarray  # left ends (first is -inf)
    hi: np.ndarray  # right ends (last is +inf)
    mass: np.ndarray  # P(lo < X < hi)
    centroid: np.ndarray  # E[X | cell]


def cells(source: AbstractSource, thresholds: np.ndarray) -> _Cells:
    """Masses and centroids of the cells cut by ``thresholds`` (exact partial moments).

    A cell whose probability underflows to 0 gets its midpoint (or its finite end) as centroid
    so that the iteration stays finite; this only happens far outside any useful design.
    """
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
    lo, hi = edges[:-1], edges[1:]
    m0 = source.partial_moment(0, lo, hi)
    m1 = source.partial_moment(1, lo, hi)
    fallback = np.where(np.isfinite(lo), np.where(np.isfinite(hi), 0.5 * (lo + hi), lo), hi)
    ok = m0 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(ok, m1 / np.where(ok, m0, 1.0), fallback)
    # Rounding can push a centroid of a narrow cell a hair outside it; clip into the cell.
    c = np.clip(c, lo, hi)
    return _Cells(lo, hi, m0, c)


def centroids(source: AbstractSource, thresholds: Any) -> np.ndarray:
    """Conditional means ``E[X | t_{j-1} < X < t_j]`` of the cells (``t_{-1} = -inf``)."""
    return cells(source, np.asarray(thresholds, np.float64)).centroid


def midpoints(levels: np.ndarray) -> np.ndarray:
    """Nearest-neighbour thresholds ``(l_j + l_{j+1}) / 2``."""
    return 0.5 * (levels[:-1] + levels[1:])


def lloyd_residual(source: AbstractSource, levels: np.ndarray) -> float:
    """``max_j |l_j - c_j(mid(l))| / max(std, |l_j|)``: the size of one Lloyd update, relative
    to the source scale (or to the level where it is larger: the resolution of a float64 level
    ``10^5 std`` out in a Student-t(3) tail is ``eps |l_j| ≈ 10^-11 std``)."""
    step = np.abs(centroids(source, midpoints(levels)) - levels)
    return float(np.max(step / np.maximum(source.std(), np.abs(levels))))


#: Newton steps without halving the residual after which lloyd_max stops (not converged).
_STALL_STEPS = 5


def _symmetrize(x: np.ndarray, source: AbstractSource) -> np.ndarray:
    return 0.5 * (x - x[::-1]) if source.symmetric else x


def _check_iteration_args(
    source: Any, n_levels: Any, tol: Any, max_iter: Any
) -> tuple[AbstractSource, int, float, int]:
    """Checked ``(source, n_levels, tol, max_iter)`` of an iterative quantizer design."""
    return (
        check_source(source),
        check_n_levels(n_levels),
        check_positive("tol", tol),
        check_int("max_iter", max_iter, min_value=1),
    )


def lloyd(
    source: AbstractSource,
    n_levels: int,
    *,
    tol: float = 1e-12,
    max_iter: int = 200_000,
    init: Any = None,
    time_limit_s: float | None = None,
) -> Solution:
    """Plain Lloyd iteration (centroid / midpoint sweeps) for the MSE-optimal quantizer.

    Kept as a robust fallback for any source; it converges linearly, slowly for many levels.
    (The speed baseline of :func:`lloyd_max` in ``benchmarks/bench_lloyd_max.py`` is a
    vectorized numpy Lloyd with closed-form Gaussian centroids, ≈ 37x cheaper per sweep than
    this generic version.)

    Args:
        source: coordinate law (finite variance).
        n_levels: number of levels, integer in ``[2, 65536]``.
        tol: stop when one sweep moves no level ``l_j`` by more than ``tol * max(std, |l_j|)``.
        max_iter: maximum number of sweeps (>= 1).
        init: optional initial levels (ascending, ``n_levels`` entries); default: companded.
        time_limit_s: optional wall-clock cap in seconds (the result then reports
            ``converged=False`` with the residual reached).

    Returns:
        ``Solution(ScalarQuantizer with midpoint thresholds, converged, sweeps, residual)``.

    Raises:
        ValueError/TypeError: on bad arguments.
    """
    source, n_levels, tol, max_iter = _check_iteration_args(source, n_levels, tol, max_iter)
    if time_limit_s is not None:
        time_limit_s = check_positive("time_limit_s", time_limit_s)
    levels = _initial_levels(source, n_levels, init)
    std = source.std()
    start = time.perf_counter()
    residual = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        new = _symmetrize(centroids(source, midpoints(levels)), source)
        residual = float(np.max(np.abs(new - levels) / np.maximum(std, np.abs(levels))))
        levels = new
        if residual <= tol:
            break
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            break
    residual = lloyd_residual(source, levels)
    return Solution(ScalarQuantizer.from_levels(levels), residual <= tol, it, residual)


def _initial_levels(source: AbstractSource, n_levels: int, init: Any) -> np.ndarray:
    if init is None:
        return companded_levels(source, n_levels)
    levels = check_increasing("init", init)
    if levels.size != n_levels:
        raise ValueError(f"init must have n_levels = {n_levels} entries, got {levels.size}")
    return levels


def _newton_system(
    source: AbstractSource, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual ``F(t) = t - mid(c(t))`` and its tridiagonal Jacobian in banded form."""
    cl = cells(source, t)
    c, m = cl.centroid, cl.mass
    safe = np.where(m > 0, m, 1.0)
    with np.errstate(invalid="ignore"):
        pa = np.where(np.isfinite(cl.lo), source.pdf(np.where(np.isfinite(cl.lo), cl.lo, 0.0)), 0.0)
        pb = np.where(np.isfinite(cl.hi), source.pdf(np.where(np.isfinite(cl.hi), cl.hi, 0.0)), 0.0)
        dc_da = np.where(
            (m > 0) & np.isfinite(cl.lo),
            pa * (c - np.where(np.isfinite(cl.lo), cl.lo, 0)) / safe,
            0,
        )
        dc_db = np.where(
            (m > 0) & np.isfinite(cl.hi),
            pb * (np.where(np.isfinite(cl.hi), cl.hi, 0) - c) / safe,
            0,
        )
    f = t - midpoints(c)
    n = t.size
    ab = np.zeros((3, n))
    ab[1] = 1.0 - 0.5 * (dc_db[:-1] + dc_da[1:])
    ab[0, 1:] = -0.5 * dc_db[1:-1]  # dF_{j-1}/dt_j
    ab[2, :-1] = -0.5 * dc_da[1:-1]  # dF_{j+1}/dt_j
    return f, ab, c


@DESIGNS.register("lloyd-max", rounding="deterministic", truncated=False, rate="fixed")
def lloyd_max(
    source: AbstractSource,
    n_levels: int,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    warm_sweeps: int = 3,
    init: Any = None,
) -> Solution:
    """MSE-optimal fixed-rate (Lloyd–Max) quantizer by a damped Newton solve.

    Starts from the companded (``p^(1/3)``) levels, does ``warm_sweeps`` Lloyd sweeps, then
    solves ``t = mid(c(t))`` on the thresholds with Newton steps on the analytic tridiagonal
    Jacobian, halving a step until ``||F||_inf`` decreases and the thresholds stay sorted. For
    symmetric sources every iterate is symmetrized, so the design is exactly odd-symmetric.
    The attainable residual is limited by the rounding of the partial moments: ≈ 4e-13 for 256
    Gaussian levels, ≈ 2e-12 for 1024 (so ``tol=1e-12`` is met up to about 512 levels); after
    5 Newton steps that fail to halve the residual the solve stops with ``converged=False``.

    Args:
        source: coordinate law (finite variance).
        n_levels: number of levels, integer in ``[2, 65536]``.
        tol: stop when ``max_j |l_j - c_j(mid(l))| / max(std, |l_j|) <= tol`` (default 1e-12).
        max_iter: maximum Newton steps.
        warm_sweeps: Lloyd sweeps before Newton (>= 0).
        init: optional initial levels (ascending, ``n_levels`` entries).

    Returns:
        ``Solution(ScalarQuantizer(midpoint thresholds, levels), converged, n_iter, residual)``
        with ``n_iter`` = warm sweeps + Newton steps and ``residual`` the criterion above.

    Raises:
        ValueError/TypeError: on bad arguments.

    References:
        Max (1960); Lloyd (1982). The Newton formulation on thresholds is standard (e.g.
        Gersho & Gray 1992, Sec. 6.2, Problem 6.8); derivative formulas in the module docstring.
    """
    source, n_levels, tol, max_iter = _check_iteration_args(source, n_levels, tol, max_iter)
    warm_sweeps = check_int("warm_sweeps", warm_sweeps, min_value=0)
    levels = _initial_levels(source, n_levels, init)
    std = source.std()
    for _ in range(warm_sweeps):
        levels = _symmetrize(centroids(source, midpoints(levels)), source)
    t = midpoints(levels)
    f, ab, c = _newton_system(source, t)
    residual = lloyd_residual(source, _symmetrize(c, source))
    it, best, stalled = 0, residual, 0
    while residual > tol and it < max_iter and stalled < _STALL_STEPS:
        it += 1
        step = newton_direction(ab, f, max_step=MAX_STEP_FACTOR * (np.max(np.abs(t)) + std))
        norm0 = np.max(np.abs(f))
        lam = 1.0
        accepted = False
        for _ in range(40):
            cand = _symmetrize(t + lam * step, source)
            if np.all(np.diff(cand) > 0) and np.all(np.isfinite(cand)):
                f_c, ab_c, c_c = _newton_system(source, cand)
                if np.max(np.abs(f_c)) < norm0 or lam < 1e-6:
                    accepted = True
                    break
            lam *= 0.5
        if not accepted:  # Newton failed to make progress: fall back to one Lloyd sweep
            lv = _symmetrize(centroids(source, midpoints(_symmetrize(c, source))), source)
            cand = midpoints(lv)
            f_c, ab_c, c_c = _newton_system(source, cand)
        t, f, ab, c = cand, f_c, ab_c, c_c
        residual = lloyd_residual(source, _symmetrize(c, source))
        # At the floating-point floor of the partial moments (≈ 2e-12 for 1024 Gaussian
        # levels) Newton cannot improve further: stop instead of spending max_iter steps.
        stalled = 0 if residual < 0.5 * best else stalled + 1
        best = min(best, residual)
    levels = _symmetrize(c, source)
    residual = lloyd_residual(source, levels)
    quantizer = ScalarQuantizer.from_levels(levels)
    return Solution(quantizer, residual <= tol, warm_sweeps + it, residual)
