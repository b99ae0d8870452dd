"""Levels minimizing the exact error of truncation + unbiased stochastic rounding (ALQ-style).

For levels ``l_0 < … < l_s`` the per-coordinate error of clipping to ``[l_0, l_s]`` and then
rounding stochastically (unbiased) between neighbouring levels is (arXiv 2402.01160)

    f(l) = sum_j V(l_j, l_{j+1}) + E[(X - l_s)^2; X > l_s] + E[(X - l_0)^2; X < l_0],
    V(a, b) = E[(b - X)(X - a); a < X < b].

ALQ (Faghri et al., arXiv 2010.12460, Sec. 3) minimizes the variance term by coordinate
descent; here the full objective (variance + truncation bias) is minimized by a damped Newton
method (Levenberg–Marquardt where the Hessian is singular: :mod:`ratedist.quantizers.banded`).
Differentiating under the integral (the integrands vanish at the cell ends):

    df/dl_j = A(l_{j-1}, l_j) - B(l_j, l_{j+1}),    A(a, b) = E[X - a; a<X<b],
                                                  B(a, b) = E[b - X; a<X<b],
    df/dl_0 = -B(l_0, l_1) + 2 E[l_0 - X; X < l_0],   df/dl_s = A(l_{s-1}, l_s) - 2 E[X - l_s; X > l_s],

and the Hessian is tridiagonal: ``H_jj = (l_{j+1} - l_{j-1}) p(l_j)`` (end levels:
``(l_1 - l_0) p(l_0) + 2 P(X < l_0)`` and ``(l_s - l_{s-1}) p(l_s) + 2 P(X > l_s)``),
``H_{j,j+1} = -P(l_j < X < l_{j+1})``. Setting ``df/dl_j = 0`` for one ``j`` is ALQ's
closed-form coordinate condition; Newton solves all of them at once. The stopping criterion is
``max_j |g_j / H_jj| / std <= tol`` (the size of one ALQ coordinate update, relative to scale).

References:
    F. Faghri, I. Tabrizian, I. Markov, D. Alistarh, D. Roy, A. Ramezani-Kebrya, "Adaptive
    Gradient Quantization for Data-Parallel SGD", NeurIPS 2020, arXiv 2010.12460, Sec. 3.
    Error decomposition: arXiv 2402.01160 (TNQSGD), error of ``Q(T_alpha(g))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ratedist.quantizers.banded import MAX_STEP_FACTOR, newton_direction
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.exact import stochastic_error
from ratedist.quantizers.lloyd_max import _check_iteration_args, _initial_levels, _symmetrize
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import AbstractSource


def stochastic_objective(source: AbstractSource, levels: np.ndarray) -> float:
    """Exact ``variance + truncation bias`` of stochastic rounding onto ``levels``."""
    return stochastic_error(ScalarQuantizer.from_levels(levels), source).mse


def stochastic_gradient_hessian(
    source: AbstractSource, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ``df/dl`` and the banded tridiagonal Hessian (``solve_banded`` layout)."""
    lv = np.asarray(levels, np.float64)
    a, b = lv[:-1], lv[1:]
    m0 = source.partial_moment(0, a, b)
    m1 = source.partial_moment(1, a, b)
    big_a = m1 - a * m0  # E[X - a; cell]
    big_b = b * m0 - m1  # E[b - X; cell]
    lo, hi = lv[0], lv[-1]
    p_dn = float(source.partial_moment(0, -np.inf, lo))
    p_up = float(source.partial_moment(0, hi, np.inf))
    t_dn = lo * p_dn - float(source.partial_moment(1, -np.inf, lo))  # E[l_0 - X; X < l_0]
    t_up = float(source.partial_moment(1, hi, np.inf)) - hi * p_up  # E[X - l_s; X > l_s]
    g = np.zeros(lv.size)
    g[1:] += big_a
    g[:-1] -= big_b
    g[0] += 2.0 * t_dn
    g[-1] -= 2.0 * t_up
    pdf = source.pdf(lv)
    diag = np.zeros(lv.size)
    diag[1:-1] = (lv[2:] - lv[:-2]) * pdf[1:-1]
    diag[0] = (lv[1] - lv[0]) * pdf[0] + 2.0 * p_dn
    diag[-1] = (lv[-1] - lv[-2]) * pdf[-1] + 2.0 * p_up
    ab = np.zeros((3, lv.size))
    ab[1] = diag
    ab[0, 1:] = -m0
    ab[2, :-1] = -m0
    return g, ab


def _residual(g: np.ndarray, ab: np.ndarray, std: float) -> float:
    return float(np.max(np.abs(g / ab[1])) / std)


@DESIGNS.register("variance-optimal", rounding="stochastic", truncated=False, rate="fixed")
def variance_optimal(
    source: AbstractSource,
    n_levels: int,
    *,
    tol: float = 1e-10,
    max_iter: int = 200,
    init: Any = None,
) -> Solution:
    """Levels minimizing the exact stochastic-rounding error (variance + truncation bias).

    Damped Newton on the tridiagonal Hessian from the companded (``p^(1/3)``) levels, with an
    Armijo backtracking line search on the exact objective; when the Newton direction is not a
    descent direction a diagonally scaled gradient step is used instead. Symmetric sources get
    exactly symmetric levels. The outermost levels are the truncation points ``±alpha``.

    Args:
        source: coordinate law (finite variance).
        n_levels: number of levels ``s + 1``, integer in ``[2, 65536]``.
        tol: stop when ``max_j |g_j / H_jj| / std <= tol``.
        max_iter: maximum Newton steps.
        init: optional ascending initial levels.

    Returns:
        ``Solution(ScalarQuantizer (midpoint thresholds; apply with .stochastic), converged,
        n_iter, residual)``.

    Raises:
        ValueError/TypeError: on bad arguments.

    References:
        Faghri et al., arXiv 2010.12460, Sec. 3 (ALQ); arXiv 2402.01160 (error of Q(T(g))).
    """
    source, n_levels, tol, max_iter = _check_iteration_args(source, n_levels, tol, max_iter)
    lv = _initial_levels(source, n_levels, init)
    std = source.std()
    noise = 64 * np.finfo(float).eps * source.variance()
    f = stochastic_objective(source, lv)
    g, ab = stochastic_gradient_hessian(source, lv)
    residual = _residual(g, ab, std)
    it = 0
    while residual > tol and it < max_iter:
        it += 1
        # The Hessian may be singular (see ratedist.quantizers.banded): then the
        # Levenberg–Marquardt step, and a gradient step if that is not a descent direction.
        step = newton_direction(ab, g, max_step=MAX_STEP_FACTOR * (np.max(np.abs(lv)) + std))
        if not np.all(np.isfinite(step)) or step @ g >= 0:
            step = -g / ab[1]  # Jacobi-scaled gradient step
        slope = float(step @ g)
        lam, accepted = 1.0, False
        for _ in range(50):
            cand = _symmetrize(lv + lam * step, source)
            if np.all(np.diff(cand) > 0):
                f_c = stochastic_objective(source, cand)
                g_c, ab_c = stochastic_gradient_hessian(source, cand)
                res_c = _residual(g_c, ab_c, std)
                # Armijo on f far from the optimum; near it f is flat to rounding (its terms are
                # of order Var(X), so it is known to ~eps·Var(X)), and a step that shrinks the
                # stationarity residual without raising f beyond that noise is accepted too.
                armijo = f_c <= f + 1e-4 * lam * slope
                flat = res_c < residual and f_c <= f + noise
                if armijo or flat:
                    accepted = True
                    break
            lam *= 0.5
        if not accepted:
            break
        lv, f, g, ab, residual = cand, f_c, g_c, ab_c, res_c
    quantizer = ScalarQuantizer.from_levels(lv)
    return Solution(quantizer, residual <= tol, it, residual)
