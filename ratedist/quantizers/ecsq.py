"""Entropy-constrained scalar quantizer (ECSQ) by the generalized Lloyd algorithm.

Minimizes the Lagrangian ``J = D + lam H`` (``D`` the MSE, ``H`` the output entropy in bits)
over scalar quantizers with at most ``n_levels`` cells (Chou, Lookabaugh & Gray 1989):

* encoder: ``x -> argmin_j (x - l_j)^2 + lam (-log2 p_j)``. After subtracting ``x^2`` every
  cost is a line in ``x`` with slope ``-2 l_j``, so the cells are the pieces of the lower
  envelope of those lines (a cell can vanish, and then its level is dropped);
* decoder: ``l_j`` = centroid of cell ``j`` and ``p_j`` = its probability.

Each step does not increase ``J``; the iteration stops when the relative decrease of ``J`` is
below ``tol``. With a target output entropy (``entropy_bits``), ``lam`` is found by Brent's
method on ``log lam`` so that ``H = entropy_bits`` (``H`` decreases with ``lam``); every
evaluation starts from the same uniform quantizer with the high-rate step
``Δ = 2^(h - H)`` (``h`` the differential entropy), so ``H(lam)`` is a deterministic function.

At high rate the optimal ECSQ is uniform, ``D ≈ Δ^2/12`` and ``H ≈ h - log2 Δ``: its gap to the
Shannon bound is ``(1/2) log2(pi e / 6) ≈ 0.2546`` bit (1.53 dB) (Gish & Pierce 1968).

References:
    P. A. Chou, T. Lookabaugh, R. M. Gray, "Entropy-constrained vector quantization", IEEE
    Trans. ASSP 37 (1989). H. Gish, J. N. Pierce, "Asymptotically efficient quantizing", IEEE
    Trans. Inf. Theory 14 (1968). N. Farvardin, J. W. Modestino, "Optimum quantizer
    performance for a class of non-Gaussian memoryless sources", IEEE Trans. IT 30 (1984).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize

from ratedist._validation import check_choice, check_int, check_nonnegative, check_positive
from ratedist.quantizers import exact
from ratedist.quantizers.companded import check_source
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import AbstractSource

#: Entropy targets are met to this many bits (Brent on log lam; H(lam) can jump where a cell
#: vanishes, and then the residual reports the distance actually reached).
ENTROPY_TOL_BITS = 1e-6


class _State(NamedTuple):
    thresholds: np.ndarray
    levels: np.ndarray
    probs: np.ndarray
    mse: float
    entropy_bits: float


def _envelope(levels: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Active indices and breakpoints of ``min_j (-2 l_j x + l_j^2 + costs_j)``.

    ``levels`` strictly increasing (slopes decreasing), ``costs`` finite. Convex-hull trick.
    """
    k = levels**2 + costs
    # Fast path: adjacent breakpoints already increasing (the usual case).
    x = (k[1:] - k[:-1]) / (2.0 * (levels[1:] - levels[:-1]))
    if np.all(np.diff(x) > 0):
        return np.arange(levels.size), x
    stack: list[int] = []
    for j in range(levels.size):
        while len(stack) >= 2:
            i1, i2 = stack[-2], stack[-1]
            x12 = (k[i2] - k[i1]) / (2.0 * (levels[i2] - levels[i1]))
            x1j = (k[j] - k[i1]) / (2.0 * (levels[j] - levels[i1]))
            if x1j <= x12:
                stack.pop()
            else:
                break
        stack.append(j)
    idx = np.array(stack)
    brk = (k[idx[1:]] - k[idx[:-1]]) / (2.0 * (levels[idx[1:]] - levels[idx[:-1]]))
    return idx, brk


def _decode(source: AbstractSource, thresholds: np.ndarray) -> _State:
    """Centroids, probabilities, MSE and entropy of the cells cut by ``thresholds``."""
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
    m0 = source.partial_moment(0, edges[:-1], edges[1:])
    m1 = source.partial_moment(1, edges[:-1], edges[1:])
    m2 = source.partial_moment(2, edges[:-1], edges[1:])
    keep = m0 > 0
    if not np.all(keep):  # merge empty cells away: drop the threshold on their right/left
        drop = np.flatnonzero(~keep)
        drop = np.minimum(drop, thresholds.size - 1)
        thresholds = np.delete(thresholds, np.unique(drop))
        return _decode(source, thresholds)
    lv = np.clip(m1 / m0, edges[:-1], edges[1:])
    mse = float(np.sum(m2 - 2 * lv * m1 + lv**2 * m0))
    p = np.clip(m0, 0.0, 1.0)
    h = float(-np.sum(p * np.log2(p)))
    return _State(thresholds, lv, p, mse, h)


def generalized_lloyd(
    source: AbstractSource,
    init_levels: np.ndarray,
    lam: float,
    *,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> Solution:
    """Generalized Lloyd iteration for ``min D + lam H`` from ``init_levels``.

    Args:
        source: coordinate law.
        init_levels: ascending initial levels; their number caps the number of cells.
        lam: Lagrange multiplier (MSE per bit), >= 0 (0 gives plain Lloyd).
        tol: stop when ``(J_old - J_new) <= tol * J_new``.
        max_iter: maximum iterations.

    Returns:
        ``Solution(ScalarQuantizer, converged, n_iter, residual = relative decrease of J)``.
    """
    lam = check_nonnegative("lam", lam)
    state = _decode(source, 0.5 * (init_levels[1:] + init_levels[:-1]))
    j_old = state.mse + lam * state.entropy_bits
    residual, it = np.inf, 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        costs = -np.log2(state.probs)
        idx, brk = _envelope(state.levels, lam * costs)
        if idx.size < 2:  # everything in one cell: a constant quantizer is not representable
            break
        state = _decode(source, brk)
        j_new = state.mse + lam * state.entropy_bits
        residual = max(j_old - j_new, 0.0) / j_new
        j_old = j_new
        if residual <= tol:
            break
    quantizer = ScalarQuantizer(state.thresholds, state.levels)
    return Solution(quantizer, residual <= tol, it, float(residual))


def _uniform_start(source: AbstractSource, n_cells: int, entropy_bits: float) -> np.ndarray:
    step = 2.0 ** (source.entropy_bits() - entropy_bits)
    # Never coarser than what covers +-6 std with the cells available, never absurdly fine.
    step = max(step, 12.0 * source.std() / n_cells)
    return (np.arange(n_cells) - 0.5 * (n_cells - 1)) * step


#: Largest cap on the number of ECSQ cells (above the fixed-rate 65536: a 16-bit entropy
#: target needs about 3.4·2^16 cells).
MAX_CELLS = 2**20


def auto_cells(entropy_bits: float) -> int:
    """Default cap on the number of cells for a target entropy: ``min(2^20, 2^(ceil H + 3))``.

    At high rate a Gaussian needs about ``3.4·2^H`` cells with non-negligible mass (±7 std).
    """
    return int(min(MAX_CELLS, 2 ** (math.ceil(entropy_bits) + 3)))


def uniform_threshold_quantizer(
    source: AbstractSource, n_cells: int, step: float, *, midtread: bool
) -> ScalarQuantizer:
    """Uniform thresholds of step ``step`` with centroid reconstruction (at most ``n_cells``).

    Midtread: thresholds ``(k + 1/2) step`` (a cell centred on 0, odd number of cells);
    midrise: thresholds ``k step`` (0 is a threshold, even number of cells).
    """
    state = _utq_state(source, n_cells, step, midtread=midtread)
    return ScalarQuantizer(state.thresholds, state.levels)


def _utq_state(source: AbstractSource, n_cells: int, step: float, *, midtread: bool) -> _State:
    m = (n_cells - 1) // 2 if midtread else n_cells // 2
    if midtread:
        t = (np.arange(-m, m) + 0.5) * step
    else:
        t = np.arange(-(m - 1), m) * step
    return _decode(source, t)


def _utq_entropy_target(
    source: AbstractSource, n_cells: int, target: float, *, midtread: bool
) -> Solution | None:
    """Step of the uniform-threshold quantizer with output entropy ``target`` (Brent on log Δ)."""
    if n_cells < (3 if midtread else 2):
        return None

    def entropy(log_step: float) -> float:
        state = _utq_state(source, n_cells, math.exp(log_step), midtread=midtread)
        return state.entropy_bits - target

    # With capped cells H(step) rises from ~1 bit (tiny steps: the two outer cells hold all the
    # mass), peaks, then falls to 0/1 bit (huge steps): bracket on the falling side of the peak.
    std = source.std()
    grid = np.linspace(math.log(1e-3 * std * 8.0 / n_cells), math.log(20.0 * std), 24)
    values = np.array([entropy(v) for v in grid])
    k = int(np.argmax(values))
    lo, hi = float(grid[k]), float(grid[-1])
    if not (values[k] > 0 > values[-1]):
        return None
    log_step, res = optimize.brentq(entropy, lo, hi, xtol=1e-14, rtol=1e-15, full_output=True)
    q = uniform_threshold_quantizer(source, n_cells, math.exp(log_step), midtread=midtread)
    residual = abs(entropy(log_step))
    return Solution(q, residual <= ENTROPY_TOL_BITS, res.function_calls + grid.size, residual)


_STRUCTURES = ("uniform-threshold", "general")


@DESIGNS.register("ecsq", rounding="deterministic", truncated=False, rate="entropy")
def ecsq(
    source: AbstractSource,
    n_levels: int,
    *,
    entropy_bits: float | None = None,
    lam: float | None = None,
    structure: str = "uniform-threshold",
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> Solution:
    """Entropy-constrained scalar quantizer with at most ``n_levels`` cells.

    Exactly one of ``entropy_bits`` (target output entropy) and ``lam`` (fixed multiplier of
    ``D + lam H``) must be given.

    * ``structure="uniform-threshold"`` (default, target entropy only): uniform thresholds
      with centroid levels (midtread and midrise both tried, the lower MSE kept); the step
      is solved by Brent's method so that ``H = entropy_bits``. At high rate this is the
      optimal ECSQ (Gish & Pierce 1968) and it is fast at any rate.
    * ``structure="general"``: the generalized Lloyd algorithm (Chou, Lookabaugh & Gray 1989)
      over arbitrary cells, with ``lam`` fixed or found by Brent's method on ``log lam``.
      It converges slowly at high rate (≈ 2·10^4 iterations at 4 bits): meant for low rates.

    Args:
        source: coordinate law (finite variance).
        n_levels: cap on the number of cells, integer in ``[2, 2^20]`` (cells whose
            probability vanishes are dropped, so the result may have fewer levels).
        entropy_bits: target output entropy in bits, in ``(0, log2 n_levels)``.
        lam: fixed Lagrange multiplier (MSE per bit), >= 0 (requires ``structure="general"``).
        structure: ``"uniform-threshold"`` or ``"general"``.
        tol: generalized-Lloyd stopping tolerance on the relative decrease of ``D + lam H``.
        max_iter: maximum generalized-Lloyd iterations per ``lam``.

    Returns:
        ``Solution(ScalarQuantizer, converged, n_iter, residual)``; with a target entropy,
        ``residual = |H - entropy_bits|`` in bits and ``converged`` means it is at most
        ``ENTROPY_TOL_BITS``; with a fixed ``lam`` the residual is the last relative decrease
        of the Lagrangian.

    Raises:
        ValueError/TypeError: on bad arguments (both or neither of ``entropy_bits``/``lam``,
            entropy target outside ``(0, log2 n_levels)``, or unreachable).

    References:
        Chou, Lookabaugh & Gray (1989); Gish & Pierce (1968); Farvardin & Modestino (1984).
    """
    source = check_source(source)
    n_levels = check_int("n_levels", n_levels, min_value=2, max_value=MAX_CELLS)
    structure = check_choice("structure", structure, _STRUCTURES)
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, min_value=1)
    if (entropy_bits is None) == (lam is None):
        raise ValueError(
            "ecsq needs exactly one of entropy_bits (target output entropy) or lam "
            f"(Lagrange multiplier), got entropy_bits={entropy_bits!r}, lam={lam!r}"
        )
    if lam is not None:
        lam = check_nonnegative("lam", lam)
        if structure != "general":
            raise ValueError('lam (fixed multiplier) requires structure="general"')
        init = _uniform_start(source, n_levels, math.log2(n_levels))
        return generalized_lloyd(source, init, lam, tol=tol, max_iter=max_iter)
    target = check_positive("entropy_bits", entropy_bits)
    if target >= math.log2(n_levels):
        raise ValueError(
            f"entropy_bits must be < log2(n_levels) = {math.log2(n_levels):g} "
            f"(at most n_levels cells), got {target!r}"
        )
    if structure == "uniform-threshold":
        candidates = [
            s
            for s in (
                _utq_entropy_target(source, n_levels, target, midtread=True),
                _utq_entropy_target(source, n_levels, target, midtread=False),
            )
            if s is not None and s.converged
        ]
        if not candidates:
            raise ValueError(
                f"entropy_bits={target!r} is not reachable by a uniform-threshold quantizer "
                f"with at most n_levels={n_levels} cells"
            )
        return min(candidates, key=lambda s: exact.deterministic_mse(s.value, source))
    return _general_entropy_target(source, n_levels, target, tol=tol, max_iter=max_iter)


def _general_entropy_target(
    source: AbstractSource, n_levels: int, target: float, *, tol: float, max_iter: int
) -> Solution:
    init = _uniform_start(source, n_levels, target)

    def _entropy(q: ScalarQuantizer) -> float:
        return exact.entropy_bits(exact.deterministic_probabilities(q, source))

    runs: dict[float, Solution] = {}

    def run(log_lam: float) -> Solution:
        if log_lam not in runs:
            runs[log_lam] = generalized_lloyd(
                source, init, math.exp(log_lam), tol=tol, max_iter=max_iter
            )
        return runs[log_lam]

    def gap(log_lam: float) -> float:
        return _entropy(run(log_lam).value) - target

    # High-rate guess lam ≈ -dD/dH = 2 ln2 · D with D ≈ Δ²/12, bracketed outward.
    step = 2.0 ** (source.entropy_bits() - target)
    center = math.log(2 * math.log(2) * step**2 / 12.0)
    lo, hi = center - 2.0, center + 2.0
    for _ in range(40):
        if gap(lo) > 0:
            break
        lo -= 2.0
    for _ in range(40):
        if gap(hi) <= 0:
            break
        hi += 2.0
    if gap(lo) > 0 >= gap(hi):
        log_lam = optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=1e-14, maxiter=200)
    else:  # not bracketed (e.g. no quantizer with that few bits): report the closest point
        log_lam = lo if abs(gap(lo)) < abs(gap(hi)) else hi
    # brentq may end on either side of a jump of H(lam); keep the closest evaluated point.
    best_key = min(runs, key=lambda k: abs(gap(k)))
    if abs(gap(best_key)) < abs(gap(log_lam)):
        log_lam = best_key
    sol = run(log_lam)
    residual = abs(gap(log_lam))
    n_iter = sum(s.n_iter for s in runs.values())
    return Solution(
        sol.value, bool(sol.converged and residual <= ENTROPY_TOL_BITS), n_iter, residual
    )
