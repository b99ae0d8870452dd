"""Weight quantization on a quadratic: the exact floor at the optimum and the GD plateau.

Setting (every function below): ``f(x) = ½ xᵀAx − bᵀx`` with ``A`` symmetric; the workers
take gradients at ``Q(x)``, the server's weights rounded to the grid ``Delta * Z`` by unbiased
stochastic rounding (:func:`ratedist.compressors.grid`, arXiv 2004.14180): independent
coordinates, ``E Q(x) = x``, ``Var Q(x)_j = v_j(x) = r_j (1 − r_j) Delta^2`` with ``r_j =
frac(x_j / Delta)``. Derivation: ``docs/theory/weight_quantization.md``; sympy:
:mod:`ratedist.symbolic.grid`.

At a stationary point ``x*`` (``A x* = b``), with ``δ = Q(x*) − x*``:

    ∇f(Q(x*)) = A δ,   E||∇f(Q(x*))||^2 = sum_j (A^2)_jj v_j(x*),
    E f(Q(x*)) − f(x*) = ½ sum_j A_jj v_j(x*)                                    (exact)

and, since ``r (1 − r) <= 1/4``, without knowing ``x*``:

    E||∇f(Q(x*))||^2 <= ||A||_F^2 Delta^2 / 4,   E f(Q(x*)) − f(x*) <= tr(A) Delta^2 / 8   (bound)

The bound is attained only when every ``x*_j`` sits half-way between grid points; for
``x*`` spread over many cells the exact floor is about 2/3 of it (``E r(1 − r) = 1/6``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_array, check_choice, check_int, check_positive

_QUAD = "f(x) = ½ xᵀAx − bᵀx with A symmetric"
_STAT = "x* is a stationary point: A x* = b (the minimizer when A is positive definite)"
_ROUND = (
    "Q(x) = stochastic rounding to Delta Z: independent coordinates, E Q(x) = x, "
    "Var Q(x)_j = r_j (1 − r_j) Delta^2, r_j = frac(x_j / Delta)"
)
_THEOREM = "exact second moment of ∇f(Q(x*)) = A (Q(x*) − x*); docs/theory/weight_quantization.md"


class WeightFloor(NamedTuple):
    """The error floor of gradients (and values) taken at quantized weights ``Q(x*)``.

    Attributes:
        grad_norm_sq: ``E||∇f(Q(x*))||^2`` (exact) or its upper bound.
        suboptimality: ``E f(Q(x*)) − f(x*)`` (exact) or its upper bound.
        exact: True for the exact value at the given ``x*``; False for the ``x*``-free upper
            bound (``r_j (1 − r_j) <= 1/4``).
        delta: the grid resolution.
        theorem: where the statement comes from.
        assumptions: what it assumes.
    """

    grad_norm_sq: float
    suboptimality: float
    exact: bool
    delta: float
    theorem: str
    assumptions: tuple[str, ...]


def grid_rounding_variance(x: Any, delta: Any) -> np.ndarray:
    """Per-coordinate variance ``r_j (1 − r_j) Delta^2`` of stochastic rounding of ``x`` to
    ``Delta * Z`` (``r_j = x_j/Delta − floor(x_j/Delta)``; 0 on the grid).

    Args:
        x: 1-D array (finite).
        delta: the resolution ``Delta > 0``.

    Returns:
        float64 array of the shape of ``x``.

    Raises:
        ValueError: ``x`` not a finite 1-D array, ``delta`` not a finite number > 0.
        TypeError: ``x`` not array-like of reals, ``delta`` not a real number.
    """
    x = check_array("x", x, ndim=1)
    delta = check_positive("delta", delta)
    y = x / delta
    r = y - np.floor(y)
    return r * (1.0 - r) * delta**2


def _check_matrix(A: Any) -> np.ndarray:
    A = check_array("A", A, ndim=2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square (d, d) matrix, got shape {A.shape}")
    if not np.allclose(A, A.T, rtol=1e-12, atol=1e-12):
        raise ValueError("A must be symmetric (A = Aᵀ to 1e-12), got a non-symmetric matrix")
    return A


def _optimum(A: np.ndarray, b: Any, x_star: Any) -> np.ndarray:
    """``x*`` given, or solved from ``A x* = b`` (exactly one of the two)."""
    d = A.shape[0]
    if (b is None) == (x_star is None):
        raise ValueError(
            "give exactly one of b= (x* is solved from A x* = b) or x_star=, got "
            f"{'both' if b is not None else 'neither'}"
        )
    if x_star is not None:
        out = check_array("x_star", x_star, ndim=1)
        if out.shape != (d,):
            raise ValueError(f"x_star must have shape (d,) = {(d,)}, got {out.shape}")
        return out
    b = check_array("b", b, ndim=1)
    if b.shape != (d,):
        raise ValueError(f"b must have shape (d,) = {(d,)}, got {b.shape}")
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        raise ValueError("A is singular: give x_star= (a stationary point) instead of b=") from None


def weight_quantization_floor(
    A: Any, delta: Any, *, b: Any = None, x_star: Any = None
) -> WeightFloor:
    """Exact ``E||∇f(Q(x*))||^2`` and ``E f(Q(x*)) − f(x*)`` at the optimum (module docstring).

    ``sum_j (A^2)_jj r_j (1 − r_j) Delta^2`` and ``½ sum_j A_jj r_j (1 − r_j) Delta^2`` with
    ``r_j = frac(x*_j / Delta)``. Halving ``Delta`` changes the ``r_j`` (``r -> frac(2 r)``),
    so the floor shrinks by exactly 4 only on average over ``x*``; per coordinate the ratio is
    ``(1 − 2 rho)/(2 (1 − rho))``, ``rho = min(r, 1 − r)`` (:mod:`ratedist.symbolic.grid`).

    Args:
        A: the symmetric ``(d, d)`` Hessian.
        delta: the grid resolution ``Delta > 0``.
        b: the linear term (``x*`` solved from ``A x* = b``; needs ``A`` nonsingular), or
        x_star: a stationary point given directly (exactly one of ``b``, ``x_star``).

    Returns:
        :class:`WeightFloor` with ``exact=True``.

    Raises:
        ValueError: ``A`` not square/symmetric/finite, ``delta`` not a finite number > 0,
            not exactly one of ``b``/``x_star``, wrong shapes, singular ``A`` with ``b``.
        TypeError: non-numeric input.

    References:
        Chen, Shen, Huang, Liu, "Quantized Adam with Error Feedback", arXiv 2004.14180 (weight
        quantization converges to a neighbourhood set by the resolution; this is its exact
        size on a quadratic).
    """
    A = _check_matrix(A)
    delta = check_positive("delta", delta)
    v = grid_rounding_variance(_optimum(A, b, x_star), delta)
    return WeightFloor(
        grad_norm_sq=float(np.sum(np.sum(A * A, axis=0) * v)),  # (A^2)_jj = sum_i A_ij^2
        suboptimality=0.5 * float(np.diag(A) @ v),
        exact=True,
        delta=delta,
        theorem=_THEOREM,
        assumptions=(_QUAD, _STAT, _ROUND),
    )


def weight_quantization_floor_bound(A: Any, delta: Any) -> WeightFloor:
    """Upper bounds valid for every ``x*``: ``||A||_F^2 Delta^2/4`` and ``tr(A) Delta^2/8``.

    From the exact floor (:func:`weight_quantization_floor`) with ``r_j (1 − r_j) <= 1/4``;
    attained when every ``x*_j`` is half-way between grid points. The gap bound assumes
    ``A_jj >= 0`` (true for positive semidefinite ``A``). Exactly ``Delta^2``-proportional:
    halving ``Delta`` divides both by 4.

    Args:
        A: the symmetric ``(d, d)`` Hessian.
        delta: the grid resolution ``Delta > 0``.

    Returns:
        :class:`WeightFloor` with ``exact=False``.

    Raises:
        ValueError: ``A`` not square/symmetric/finite or with a negative diagonal entry,
            ``delta`` not a finite number > 0.
    """
    A = _check_matrix(A)
    delta = check_positive("delta", delta)
    diag = np.diag(A)
    if np.any(diag < 0):
        raise ValueError(
            f"A must have a nonnegative diagonal (positive semidefinite), got min {diag.min()!r}"
        )
    return WeightFloor(
        grad_norm_sq=float(np.sum(A * A)) * delta**2 / 4,
        suboptimality=float(np.sum(diag)) * delta**2 / 8,
        exact=False,
        delta=delta,
        theorem=_THEOREM + "; r (1 − r) <= 1/4",
        assumptions=(_QUAD, _STAT, _ROUND, "A_jj >= 0"),
    )


#: What :func:`gd_weight_plateau_deviation` bounds: the trace quantity and its floor.
PLATEAU_QUANTITIES = ("grad_norm_sq", "suboptimality")


class PlateauDeviation(NamedTuple):
    """Bound on how far a window average of ``E||∇f(Q(x_t))||^2`` (or of ``E f(Q(x_t)) − f*``)
    can be from its floor at ``x*``, for GD on quantized weights
    (:func:`gd_weight_plateau_deviation`). With ``B = A^2`` (gradient) or ``B = A/2`` (gap):

    Attributes:
        total: the bound, ``transient + covariance + cell`` (on the absolute deviation).
        transient: window average of ``m_tᵀ B m_t``, ``m_t = E x_t − x* = (I − gamma A)^t
            (x0 − x*)``.
        covariance: ``tr(B S)``, ``S = (gamma Delta^2/4) A (2I − gamma A)^{-1} ⪰ Cov(x_t)``.
        cell: window average of ``sum_j B_jj |E v_j(x_t) − v_j(x*)|``, bounded per coordinate.
    """

    total: float
    transient: float
    covariance: float
    cell: float


def gd_weight_plateau_deviation(
    A: Any,
    delta: Any,
    gamma: Any,
    *,
    x_star: Any,
    x0: Any,
    start: Any,
    stop: Any,
    quantity: str = "grad_norm_sq",
) -> PlateauDeviation:
    """How far the window average ``(1/|W|) sum_{t in W} E||∇f(Q(x_t))||^2`` (or of ``E
    f(Q(x_t)) − f*``) can be from the exact floor at ``x*``, ``W = [start, stop)``, under
    gradient descent on quantized weights.

    Dynamics: ``x_{t+1} = x_t − gamma ∇f(Q(x_t))`` from a deterministic ``x0``, fresh rounding
    each step (the simulator's ``optax.sgd(gamma)`` server with exact gradients at the
    broadcast ``Q(x_t)``). With ``e_t = x_t − x*`` and ``δ_t = Q(x_t) − x_t`` (zero mean given
    ``x_t``, so uncorrelated with ``e_t``): ``e_{t+1} = M e_t − gamma A δ_t``, ``M = I − gamma A``,
    hence

    * ``m_t = E e_t = M^t e_0``;
    * ``Cov(e_t) ⪯ S = (gamma Delta^2/4) A (2I − gamma A)^{-1}`` (``Cov(e_0) = 0``,
      ``E δ_t δ_tᵀ ⪯ Delta^2/4 I``, geometric series ``sum_k M^k A^2 M^k``; needs
      ``0 <= lambda(A) < 2/gamma``);
    * ``E||∇f(Q(x_t))||^2 = ||A m_t||^2 + tr(A Cov(e_t) A) + sum_j (A^2)_jj E v_j(x_t)`` and
      ``E f(Q(x_t)) − f* = ½ m_tᵀ A m_t + ½ tr(A Cov(e_t)) + ½ sum_j A_jj E v_j(x_t)``.

    The last sums differ from the floor's by ``|E v_j(x*_j + e_j) − v_j(x*_j)| <= min(Delta
    sqrt(s_j), Delta |m_j| + s_j / (2 rho_j))`` with ``s_j = m_j^2 + S_jj >= E e_j^2`` and
    ``rho_j = min(r_j, 1 − r_j)``. First, ``v`` is ``Delta``-Lipschitz (``|v'| <= Delta``).
    Second, ``g(u) = v(x* + u) − v(x*) − v'(x*) u = −u^2 + K(u)``: inside a cell ``v'' = −2``,
    and ``K >= 0`` collects the kinks (slope jump ``+2 Delta`` at each grid point crossed, the
    first at distance ``a >= rho Delta``, the next ones ``Delta`` apart), ``K(u) = 2 Delta
    sum_k (|u| − a − k Delta)_+ <= 2 Delta (|u| − a)_+ + (|u| − a)_+^2``; with ``(|u| − a)_+ <=
    u^2 / (4 a)`` this gives ``K − u^2 <= u^2 / (2 rho)``, so ``|g(u)| <= u^2 / (2 rho)``
    (``rho <= 1/2``), and ``E g(e_j) <= s_j / (2 rho_j)`` while ``|v'(x*) E e_j| <= Delta
    |m_j|``. Every term is ``O(gamma)`` once ``m_t`` has decayed (about ``3 gamma L``
    relative to the floor for ``x*`` spread over many cells, dominated by the coordinates
    close to a grid point).

    Args:
        A: symmetric ``(d, d)`` Hessian with eigenvalues in ``[0, 2/gamma)``.
        delta: grid resolution.
        gamma: step size.
        x_star: the stationary point.
        x0: the starting point.
        start, stop: the window of steps ``start <= t < stop`` (``0 <= start < stop``).
        quantity: ``"grad_norm_sq"`` or ``"suboptimality"``.

    Returns:
        :class:`PlateauDeviation` (a bound on the absolute deviation, either sign).

    Raises:
        ValueError: bad shapes, eigenvalues outside ``[0, 2/gamma)``, bad window or quantity.
    """
    A = _check_matrix(A)
    delta = check_positive("delta", delta)
    gamma = check_positive("gamma", gamma)
    quantity = check_choice("quantity", quantity, PLATEAU_QUANTITIES)
    d = A.shape[0]
    x_star = _optimum(A, None, x_star)
    x0 = check_array("x0", x0, ndim=1)
    if x0.shape != (d,):
        raise ValueError(f"x0 must have shape (d,) = {(d,)}, got {x0.shape}")
    start = check_int("start", start, min_value=0)
    stop = check_int("stop", stop, min_value=start + 1)
    lam, U = np.linalg.eigh(A)
    if lam.min() < -1e-12 * max(1.0, abs(lam).max()) or gamma * lam.max() >= 2.0:
        raise ValueError(
            f"A must have eigenvalues in [0, 2/gamma) = [0, {2 / gamma:.6g}), got "
            f"[{lam.min():.6g}, {lam.max():.6g}]"
        )
    lam = np.clip(lam, 0.0, None)
    B = A @ A if quantity == "grad_norm_sq" else A / 2
    S = (U * (gamma * delta**2 / 4 * lam / (2 - gamma * lam))) @ U.T
    covariance = float(np.sum(B * S))  # tr(B S), both symmetric
    # m_t in the eigenbasis: (1 - gamma lam)^t U^T e0, for every t of the window
    t = np.arange(start, stop, dtype=np.float64)[:, None]
    m = (np.power(1.0 - gamma * lam, t) * (U.T @ (x0 - x_star))) @ U.T  # (|W|, d)
    transient = float(np.mean(np.sum((m @ B) * m, axis=1)))
    y = x_star / delta
    r = y - np.floor(y)
    rho = np.minimum(r, 1.0 - r)
    s = m**2 + np.diag(S)
    with np.errstate(divide="ignore"):
        second = delta * np.abs(m) + s / (2.0 * rho)
    per_coord = np.minimum(delta * np.sqrt(s), second)
    cell = float(np.mean(per_coord @ np.diag(B)))
    return PlateauDeviation(transient + covariance + cell, transient, covariance, cell)
