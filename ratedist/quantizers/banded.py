"""Newton directions from a tridiagonal Jacobian that may be singular or ill-conditioned.

The optimality conditions of Lloyd–Max and of the variance-optimal design have tridiagonal
Jacobians that are singular for some sources, not only by bad luck of rounding. For a Laplace
source with an even number of levels every cell lies on one half-line, where the density is an
exponential, and shifting every threshold by the same amount shifts every centroid by exactly
that amount: the vector ``(1, …, 1)`` is in the null space of the Jacobian of
``F(t) = t - mid(c(t))`` (``ratedist levels --source laplace --levels 4`` once died on it with
"singular matrix"). A plain banded LU either raises there or, when rounding leaves a pivot of
``1e-17``, returns a step of ``1e15``.

:func:`newton_direction` tries the banded LU first (``O(n)``) and, when it fails or its step is
useless, returns the Levenberg–Marquardt step ``-(J^T J + mu I)^{-1} J^T f`` refined by a few
rounds of iterated Tikhonov regularization: it tends to the minimum-norm Newton step (the
pseudo-inverse one; for a consistent system the null-space component is zero up to
``eps / mu``), each round a pentadiagonal symmetric solve (``O(n)``).

References:
    J. Nocedal, S. J. Wright, *Numerical Optimization*, 2nd ed. (2006), Sec. 10.3
    (Levenberg–Marquardt) and Sec. 11.2 (Newton with a singular Jacobian).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

#: Relative Tikhonov weight of the Levenberg–Marquardt fallback (times ``max diag(J^T J)``):
#: large enough that ``J^T J + mu I`` is safely positive definite in float64 and that rounding
#: leaks only ``~ eps / mu ≈ 2e-8`` (relative) into the null space of ``J``.
LM_MU = 1e-8
#: Callers reject Newton steps longer than this many times ``max|x| + std`` of the design: a
#: genuine step of an ill-conditioned heavy-tail design reaches ~1e2 (Student-t(3), 256
#: variance-optimal levels), one made of rounding noise over a zero pivot is ~1/eps.
MAX_STEP_FACTOR = 1e8
#: Most rounds of iterated Tikhonov: round ``k`` resolves a singular value ``sigma`` of ``J``
#: to a relative ``(mu / (mu + sigma^2))^k``; rounds stop early once ``J d = -f`` holds to
#: ``1e-12`` relative or the residual stops shrinking (what is left is the null space).
LM_ROUNDS = 60


def banded_matvec(ab: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``J @ x`` for a tridiagonal ``J`` in ``scipy.linalg.solve_banded`` ``(1, 1)`` layout."""
    y = ab[1] * x
    y[:-1] += ab[0, 1:] * x[1:]
    y[1:] += ab[2, :-1] * x[:-1]
    return y


def _normal_equations(ab: np.ndarray, mu_rel: float) -> tuple[np.ndarray, float]:
    """Upper banded form (``solveh_banded``, 2 super-diagonals) of ``J^T J``, plus ``mu``."""
    n = ab.shape[1]
    # Columns of J: col j has J[j-1, j] = ab[0, j], J[j, j] = ab[1, j], J[j+1, j] = ab[2, j].
    up, d, lo = ab[0].copy(), ab[1], ab[2].copy()
    up[0] = 0.0
    lo[-1] = 0.0
    diag = up**2 + d**2 + lo**2
    # (J^T J)[j, j+1] = col_j . col_{j+1} = d_j * up_{j+1} + lo_j * d_{j+1}
    sup1 = np.zeros(n)
    sup1[1:] = d[:-1] * up[1:] + lo[:-1] * d[1:]
    # (J^T J)[j, j+2] = lo_j * up_{j+2}
    sup2 = np.zeros(n)
    sup2[2:] = lo[:-2] * up[2:]
    mu = mu_rel * float(np.max(diag)) if diag.size else 0.0
    return np.stack([sup2, sup1, diag + mu]), mu


def _transpose_matvec(ab: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``J^T @ r`` for a tridiagonal ``J`` in ``(1, 1)`` banded layout."""
    y = ab[1] * r
    y[1:] += ab[0, 1:] * r[:-1]
    y[:-1] += ab[2, :-1] * r[1:]
    return y


def lm_direction(
    ab: np.ndarray, f: np.ndarray, *, mu_rel: float = LM_MU, rounds: int = LM_ROUNDS
) -> np.ndarray:
    """Minimum-norm Newton step by iterated Tikhonov (Levenberg–Marquardt) for tridiagonal ``J``.

    ``d_1 = -(J^T J + mu I)^{-1} J^T f``, then ``d_{k+1} = d_k + (J^T J + mu I)^{-1} J^T r_k``
    with ``r_k = -f - J d_k``; every correction lies in the range of ``J^T``, so no null-space
    component is added.

    Args:
        ab: ``J`` in ``solve_banded`` ``(1, 1)`` layout.
        f: residual vector.
        mu_rel: Tikhonov weight relative to ``max diag(J^T J)``.
        rounds: most Tikhonov solves.

    Returns:
        The step (zeros when ``J`` is exactly zero).
    """
    n = f.size
    band, mu = _normal_equations(ab, mu_rel)
    if mu <= 0 or not np.isfinite(mu):
        return np.zeros(n)
    cho = linalg.cholesky_banded(band, check_finite=False)
    d = np.zeros(n)
    r = -np.asarray(f, np.float64)
    norm_f = float(np.max(np.abs(f)))
    best = np.inf
    for _ in range(rounds):
        d = d + linalg.cho_solve_banded((cho, False), _transpose_matvec(ab, r), check_finite=False)
        r = -f - banded_matvec(ab, d)
        norm_r = float(np.max(np.abs(r)))
        if norm_r <= 1e-12 * norm_f or norm_r > 0.999 * best:
            break
        best = norm_r
    return d


def newton_direction(ab: np.ndarray, f: np.ndarray, *, max_step: float) -> np.ndarray:
    """Newton step ``-J^{-1} f``, or the Levenberg–Marquardt step where that is unusable.

    The LU step (backward stable: partial pivoting) is rejected only when the solve raises
    (exactly singular ``J``), when it is not finite, or when it is longer than ``max_step`` in
    the max norm (a pivot that is rounding noise). An ill-conditioned but regular ``J`` keeps
    its Newton step: the Tikhonov weight would wipe out its small but meaningful directions.

    Args:
        ab: ``J`` in ``solve_banded`` ``(1, 1)`` layout.
        f: residual vector (same length).
        max_step: the longest useful step (e.g. a multiple of the design's extent).

    Returns:
        The step ``d``.
    """
    try:
        if f.size == 1:
            step = -f / ab[1]
        else:
            step = linalg.solve_banded((1, 1), ab, -f, check_finite=False)
    except (linalg.LinAlgError, ValueError, ZeroDivisionError):
        step = None
    if step is not None and np.all(np.isfinite(step)) and np.max(np.abs(step)) <= max_step:
        return step
    return lm_direction(ab, f)
