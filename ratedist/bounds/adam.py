"""Quantized distributed Adam with error feedback (SPEC §5; arXiv 2004.14180): what can be
proved here, as pure functions of named constants.

Derivation: ``docs/theory/quantized_adam.md``; sympy: :mod:`ratedist.symbolic.adam` (the
numpy formulas below are compared with it in ``tests/bounds/test_bounds_adam.py``).

Setting of every theorem below (the simulator's :func:`ratedist.sim.quantized_adam`):

* ``f = (1/N) sum_i f_i`` is L-smooth and bounded below (``Delta0 = f(x_0) − f*``);
* bounded gradients: ``||∇f_i(y)||_2 <= G`` for every ``y`` and ``i`` (the assumption of the
  Adam analyses arXiv 2004.14180 builds on); exact local gradients (no sampling noise);
* the compressor is DETERMINISTIC and delta-contractive, ``||C(v) − v||^2 <= (1 − delta)
  ||v||^2`` for every v (``delta`` = the registry's ``alpha``: ``1/d`` for the l1 scaled sign,
  ``k/d`` for Top-K); ``q = sqrt(1 − delta)``;
* the gradients are taken at ``y_k = Q_w(x_k)``, a weight quantizer with ``E||Q_w(x) − x||^2
  <= M_w`` (``M_w = d Delta^2/4`` for stochastic rounding to ``Delta Z``; ``y_k = x_k`` and
  ``M_w = 0`` without weight quantization); ``h_k = ∇f(y_k)`` (``Trace.grad_norm_sq``);
* the per-coordinate steps ``D_k = lr/((sqrt(nu_hat_k) + eps)(1 − b1^{k+1}))`` (the step that
  multiplies the un-corrected first moment) lie in ``[eta_min, eta_max]``; their total
  variation ``TV = sum_k ||D_{k−1} − D_k||_1`` is at most ``d (eta_max − eta_min)`` for
  AMSGrad (monotone ``D_k``) and has no a-priori bound for Adam.

Result (both modes, :func:`quantized_adam_bound`)::

    (1/T) sum_{k<T} E||h_k||^2 <= 2 [Delta0 + (G W + L eta_max W^2) TV] / (eta_min T)
                                  + [2 L eta_max^2 G^2 + L^2 eta_max (X + sqrt(M_w))^2] / eta_min

with ``c = b1/(1 − b1)`` and

* mode ``"server"`` (moments on the server, EF on the gradients): ``W = c P + E``,
  ``X = eta_max W``, ``E = qG/(1 − q)`` (residual), ``P = G + 2E = (1 + q)G/(1 − q)``
  (message);
* mode ``"worker"`` (moments on the worker, EF on the Adam direction), ``N = 1`` or identical
  local objectives only: ``W = c G``, ``X = lr qU/(1 − q) + c eta_max G`` with ``U =
  min(R sqrt(d), eta_max G/lr)`` a bound on the direction's norm (``R`` from
  :func:`adam_direction_bound`). With heterogeneous workers mode (b) has no such statement:
  the mean of the workers' Adam directions vanishes at points that are not stationary for f
  (the simulator shows the resulting floor even without compression).

Structure: with ``eta_min, eta_max ∝ lr`` the first line is ``O(1/(lr T)) + O(1/T)`` and the
second ``O(lr) + L^2 (eta_max/eta_min) M_w``; ``lr ∝ 1/sqrt(T)`` gives ``O(1/sqrt(T))`` to a
stationary point without weight quantization, and a neighbourhood of size ``L^2 (eta_max/
eta_min) M_w`` (``∝ Delta_w^2``) with it. Compression enters through ``E`` and ``P``, which
grow like ``sqrt(1 − delta)/delta``: the squares give the ``(1 − delta)/delta^2`` terms of the
error-feedback literature, and at ``delta = 1`` everything reduces to the uncompressed
AMSGrad bound. The constants are those of OUR proof (a virtual-sequence argument), not the
paper's; with ``eps = 1e-8`` the a-priori step range (:func:`adam_step_range`) makes the
bound vacuous, so the checks evaluate it with the step range a run actually used.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import (
    check_choice,
    check_in_interval,
    check_int,
    check_nonnegative,
    check_positive,
)
from ratedist.bounds.core import SublinearBound
from ratedist.bounds.weights import weight_quantization_floor

#: where the moments live: server (mode a) or worker (mode b)
ADAM_MODES = ("server", "worker")

_THEOREM = (
    "virtual-sequence EF argument for Adam-type steps (docs/theory/quantized_adam.md); "
    "structure of arXiv 2004.14180 (gradient quantization + EF: stationary point; weight "
    "quantization: neighbourhood set by the resolution)"
)
_SMOOTH = "f = (1/N) sum_i f_i is L-smooth and bounded below (Delta0 = f(x_0) − f*)"
_BOUNDED = "||∇f_i(y)||_2 <= G for every y and every worker; exact local gradients"
_CONTRACT = "deterministic C with ||C(v) − v||^2 <= (1 − delta)||v||^2 for every v"
_STEPS = "per-coordinate steps D_k (learning rate and 1/(1 − b1^k) included) in [eta_min, eta_max]"
_WEIGHTS = "gradients at y_k = Q_w(x_k) with E||Q_w(x) − x||^2 <= M_w (M_w = 0: no quantizer)"


def _check_b1(b1: Any) -> float:
    return check_in_interval("b1", b1, 0.0, 1.0, closed=(True, False))


def _check_betas(b1: Any, b2: Any) -> tuple[float, float]:
    b1 = _check_b1(b1)
    b2 = check_in_interval("b2", b2, 0.0, 1.0, closed=(False, False))
    if b1 * b1 >= b2:
        raise ValueError(
            f"b1^2 must be < b2 (else Adam's ratio |mu_hat|/sqrt(nu_hat) is unbounded), got "
            f"b1 = {b1!r}, b2 = {b2!r}"
        )
    return b1, b2


def adam_direction_ratio(b1: Any, b2: Any, t: Any) -> Any:
    """``R_t``: the largest ``|mu_hat_t|/sqrt(nu_hat_t)`` of one coordinate after ``t`` Adam
    updates, over all gradient sequences (``eps = 0``; exact, attained).

    ``R_t = (1 − b1)/(1 − b1^t) sqrt((1 − b2^t)/(1 − b2)) sqrt((1 − g^{2t})/(1 − g^2))``,
    ``g = b1/sqrt(b2)`` (Cauchy–Schwarz, equality for ``g_k ∝ (b2/b1)^k``;
    :func:`ratedist.symbolic.adam.direction_ratio`). ``R_1 = 1``.

    Args:
        b1, b2: Adam's decay rates, ``0 <= b1``, ``b1^2 < b2 < 1``.
        t: number of updates (>= 1), scalar or array.

    Returns:
        float or float64 array like ``t``.

    Raises:
        ValueError: ``b1``/``b2`` out of range or ``b1^2 >= b2``; ``t < 1``.
    """
    b1, b2 = _check_betas(b1, b2)
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)) or np.any(tt < 1):
        raise ValueError(f"t must be >= 1 (number of Adam updates), got {t!r}")
    g2 = b1 * b1 / b2
    out = (
        (1 - b1)
        / (1 - b1**tt)
        * np.sqrt((1 - b2**tt) / (1 - b2))
        * np.sqrt((1 - g2**tt) / (1 - g2))
    )
    return float(out) if out.ndim == 0 else out


def adam_direction_bound(b1: Any = 0.9, b2: Any = 0.999, *, steps: Any = None) -> float:
    """``R = max_{1 <= t <= steps} R_t`` (:func:`adam_direction_ratio`); ``steps`` None: the
    supremum over all ``t``. Every coordinate of Adam's (or AMSGrad's) direction
    ``mu_hat/(sqrt(nu_hat) + eps)`` is at most ``R`` in absolute value, whatever the
    gradients; ``R = 7.27...`` at optax's defaults (``b1 = 0.9``, ``b2 = 0.999``).

    The supremum: ``R_t`` tends to ``(1 − b1)/sqrt((1 − b2)(1 − b1^2/b2))``; every power in
    ``R_t`` is below ``e^{−40}`` beyond ``t_0 = 40/min(−ln b1, −ln b2, −ln(b1^2/b2))``, so the
    maximum over ``t <= t_0`` and the limit cover it (to ``1e-17`` relative).

    Raises:
        ValueError: as :func:`adam_direction_ratio`; ``steps`` not an integer >= 1.
    """
    b1, b2 = _check_betas(b1, b2)
    rates = [b2] + ([b1, b1 * b1 / b2] if b1 > 0 else [])
    t0 = math.ceil(40.0 / min(-math.log(r) for r in rates))
    n = t0 if steps is None else min(check_int("steps", steps, min_value=1), t0)
    best = float(np.max(adam_direction_ratio(b1, b2, np.arange(1, n + 1))))
    if steps is None or steps > t0:
        limit = (1 - b1) / math.sqrt((1 - b2) * (1 - b1 * b1 / b2))
        best = max(best, limit)
    return best


def _q(alpha: Any) -> float:
    return math.sqrt(1.0 - check_in_interval("alpha", alpha, 0.0, 1.0, closed=(False, True)))


def ef_residual_bound(alpha: Any, input_bound: Any) -> float:
    """``qA/(1 − q) = q(1 + q)A/alpha``, ``q = sqrt(1 − alpha)``: a bound on ``||e_k||`` for
    ``e_{k+1} = v_k − C(v_k)``, ``v_k = a_k + e_k``, ``||a_k|| <= A``, ``e_0 = 0``.

    Pathwise for a deterministic alpha-contractive ``C`` (:func:`ratedist.symbolic.adam.
    ef_residual`); it also bounds the mean of the workers' residuals.

    Args:
        alpha: contraction constant in ``(0, 1]``.
        input_bound: ``A >= 0``.

    Raises:
        ValueError: ``alpha`` outside ``(0, 1]``, ``input_bound < 0``.
    """
    q = _q(alpha)
    return q * check_nonnegative("input_bound", input_bound) / (1.0 - q)


def ef_message_bound(alpha: Any, input_bound: Any) -> float:
    """``(1 + q)A/(1 − q)``: a bound on the sent ``||C(a_k + e_k)||`` (same setting as
    :func:`ef_residual_bound`)."""
    q = _q(alpha)
    return (1.0 + q) * check_nonnegative("input_bound", input_bound) / (1.0 - q)


def adam_step_range(lr: Any, *, b1: Any = 0.9, eps: Any = 1e-8, gradient_bound: Any) -> tuple:
    """A-priori range ``[lr/(M + eps), lr/((1 − b1) eps)]`` of the per-coordinate steps
    ``D_k`` when every coordinate Adam sees is at most ``M`` in absolute value (``nu_hat <=
    M^2``). The upper end is what makes Adam analyses depend on ``1/eps``; at ``eps = 1e-8``
    the bound of :func:`quantized_adam_bound` is vacuous with it.

    Raises:
        ValueError: ``lr``/``eps``/``gradient_bound`` not positive, ``b1`` outside ``[0, 1)``.
    """
    lr = check_positive("lr", lr)
    b1 = _check_b1(b1)
    eps = check_positive("eps", eps)
    m = check_positive("gradient_bound", gradient_bound)
    return lr / (m + eps), lr / ((1.0 - b1) * eps)


class QuantizedAdamConstants(NamedTuple):
    """The intermediate constants of :func:`quantized_adam_bound`.

    Attributes:
        mode: ``"server"`` or ``"worker"``.
        q: ``sqrt(1 − alpha)``.
        c: ``b1/(1 − b1)``.
        residual: bound on the EF residual (mode a: gradient scale ``E``; mode b: direction
            scale ``qU/(1 − q)``).
        W: bound on ``||w_k||`` (what the step-size changes multiply).
        X: bound on ``||x_k − z_k||`` (distance to the virtual sequence).
        total_variation: ``TV`` used.
    """

    mode: str
    q: float
    c: float
    residual: float
    W: float
    X: float
    total_variation: float


def quantized_adam_constants(
    mode: str,
    *,
    G: Any,
    alpha: Any,
    d: Any,
    lr: Any,
    eta_min: Any,
    eta_max: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    amsgrad: bool = True,
    total_variation: Any = None,
    residual: Any = None,
) -> QuantizedAdamConstants:
    """``W``, ``X``, the residual bound and ``TV`` of either mode (module docstring).

    ``residual`` (optional) replaces the a-priori EF residual bound by a measured one: mode
    a, ``sup_k ||mean_i e_i,k||`` on the gradient scale (``<= sqrt(max_k
    Trace.ef_norm_sq)``); mode b, ``sup_k ||e_k||`` on the direction scale. The message bound
    follows from the EF identity ``mean_i p_i,k = h_k + e_k − e_{k+1}``: ``P = G + 2E``
    (equal to ``(1 + q)G/(1 − q)`` at the a-priori ``E``).

    Raises:
        ValueError: unknown mode, a constant out of range, ``eta_min > eta_max``, Adam
            (``amsgrad=False``) without a measured ``total_variation``.
        TypeError: ``amsgrad`` not a bool.
    """
    mode = check_choice("mode", mode, ADAM_MODES)
    G = check_positive("G", G)
    q = _q(alpha)
    d = check_int("d", d, min_value=1)
    lr = check_positive("lr", lr)
    eta_min = check_positive("eta_min", eta_min)
    eta_max = check_positive("eta_max", eta_max)
    if eta_min > eta_max:
        raise ValueError(f"eta_min must be <= eta_max, got {eta_min!r} > {eta_max!r}")
    if not isinstance(amsgrad, bool):
        raise TypeError(f"amsgrad must be a bool, got {amsgrad!r}")
    b1 = _check_b1(b1)
    c = b1 / (1.0 - b1)
    if total_variation is None:
        if not amsgrad:
            raise ValueError(
                "total_variation must be given for Adam (amsgrad=False): its steps are not "
                "monotone, so sum_k ||D_{k-1} - D_k||_1 has no a-priori bound; got None"
            )
        tv = d * (eta_max - eta_min)
    else:
        tv = check_nonnegative("total_variation", total_variation)
    measured = None if residual is None else check_nonnegative("residual", residual)
    if mode == "server":
        E = q * G / (1.0 - q) if measured is None else measured
        W = c * (G + 2.0 * E) + E
        X = eta_max * W
    else:
        if measured is None:
            U = min(adam_direction_bound(b1, b2) * math.sqrt(d), eta_max * G / lr)
            E = q * U / (1.0 - q)
        else:
            E = measured
        W = c * G
        X = lr * E + c * eta_max * G
    return QuantizedAdamConstants(mode, q, c, E, W, X, tv)


def quantized_adam_bound(
    mode: str,
    *,
    delta0: Any,
    L: Any,
    G: Any,
    alpha: Any,
    d: Any,
    lr: Any,
    eta_min: Any,
    eta_max: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    amsgrad: bool = True,
    total_variation: Any = None,
    weight_mse: Any = 0.0,
    residual: Any = None,
) -> SublinearBound:
    """Average ``E||∇f(y_k)||^2`` over ``k < T`` of quantized Adam with error feedback.

    ``transient/T + floor`` with ``transient = 2 [Delta0 + (G W + L eta_max W^2) TV]/eta_min``
    and ``floor = [2 L eta_max^2 G^2 + L^2 eta_max (X + sqrt(M_w))^2]/eta_min`` (module
    docstring; ``W``, ``X``, ``TV`` from :func:`quantized_adam_constants`). ``y_k = x_k``
    without weight quantization; with it, ``E||∇f(x_k)||^2 <= 2 E||∇f(y_k)||^2 + 2 L^2 M_w``
    (:func:`smooth_weight_gradient_bound`).

    Assumptions:
        See the module docstring (L-smooth f bounded below; ``||∇f_i|| <= G`` everywhere;
        exact local gradients; deterministic alpha-contractive compressor; steps in
        ``[eta_min, eta_max]``; AMSGrad or a measured ``TV``; mode "worker": ``N = 1`` or
        identical local objectives).

    Args:
        mode: ``"server"`` (mode a) or ``"worker"`` (mode b).
        delta0: ``f(x_0) − f*`` (>= 0).
        L: smoothness constant of f.
        G: bound on every local gradient's l2 norm.
        alpha: the compressor's contraction constant ``delta`` in ``(0, 1]`` (1: no
            compression).
        d: dimension.
        lr: Adam's learning rate (the simulator's ``gamma``).
        eta_min, eta_max: range of the per-coordinate steps (learning rate included; for a
            run: ``Trace.server_step_min``/``max`` (mode a) or ``worker_step_min``/``max``
            (mode b), the maximum divided by ``1 − b1`` for the first moment's bias
            correction).
        b1, b2: Adam's decay rates (``b2`` enters mode b only).
        amsgrad: AMSGrad (monotone steps, ``TV <= d (eta_max − eta_min)``) or Adam.
        total_variation: measured ``TV`` (required for Adam; overrides the AMSGrad bound).
        weight_mse: ``M_w``, a bound on ``E||Q_w(x) − x||^2`` (the grid's ``abs_mse``
            fact); 0 without weight quantization.
        residual: a measured bound on the EF residual (see
            :func:`quantized_adam_constants`), or None for the a-priori one.

    Returns:
        :class:`~ratedist.bounds.SublinearBound` with ``step_size = lr``.

    Raises:
        ValueError: a constant out of range (the message names it).

    References:
        Chen, Shen, Huang, Liu, "Quantized Adam with Error Feedback", arXiv 2004.14180 (the
        statements this mirrors; its constants are not reproduced). Karimireddy et al.,
        arXiv 1901.09847 (EF virtual sequence); Chen, Liu, Sun, Hong, arXiv 1808.02941
        (Adam-type steps, the ``sum ||D_{k-1} − D_k||_1`` term).
    """
    k = quantized_adam_constants(
        mode,
        G=G,
        alpha=alpha,
        d=d,
        lr=lr,
        eta_min=eta_min,
        eta_max=eta_max,
        b1=b1,
        b2=b2,
        amsgrad=amsgrad,
        total_variation=total_variation,
        residual=residual,
    )
    delta0 = check_nonnegative("delta0", delta0)
    L = check_positive("L", L)
    m_w = check_nonnegative("weight_mse", weight_mse)
    G, lo, hi = float(G), float(eta_min), float(eta_max)
    transient = 2.0 * (delta0 + (G * k.W + L * hi * k.W**2) * k.total_variation) / lo
    floor = (2.0 * L * hi**2 * G**2 + L**2 * hi * (k.X + math.sqrt(m_w)) ** 2) / lo
    assumptions = [_SMOOTH, _BOUNDED, _CONTRACT, _STEPS]
    if m_w > 0:
        assumptions.append(_WEIGHTS)
    assumptions.append(
        "AMSGrad: monotone steps, TV <= d (eta_max − eta_min)"
        if total_variation is None
        else "TV = sum_k ||D_{k-1} − D_k||_1 as given"
    )
    if residual is not None:
        assumptions.append("EF residual bounded by the measured value given")
    if k.mode == "worker":
        assumptions.append("mode worker: N = 1 or identical local objectives")
    return SublinearBound(
        transient=transient,
        floor=floor,
        step_size=float(lr),
        theorem=_THEOREM + f"; mode {k.mode}",
        assumptions=tuple(assumptions),
    )


def smooth_weight_gradient_bound(grad_norm_sq: Any, *, L: Any, weight_mse: Any) -> float:
    """``2 a + 2 L^2 M_w``: bounds ``E||∇f(Q_w(x))||^2`` by ``a = ||∇f(x)||^2`` and, the other
    way round, ``||∇f(x)||^2`` by ``a = E||∇f(Q_w(x))||^2``.

    ``||∇f(y) − ∇f(x)|| <= L ||y − x||`` and ``(u + v)^2 <= 2u^2 + 2v^2``; ``M_w >= E||Q_w(x)
    − x||^2`` (``d Delta^2/4`` for stochastic rounding to ``Delta Z``). For a quadratic the
    exact excess is :func:`quadratic_weight_excess`.

    Raises:
        ValueError: a negative argument, ``L <= 0``.
    """
    a = check_nonnegative("grad_norm_sq", grad_norm_sq)
    L = check_positive("L", L)
    return 2.0 * a + 2.0 * L * L * check_nonnegative("weight_mse", weight_mse)


def quadratic_weight_excess(A: Any, delta: Any, x: Any) -> float:
    """``E||∇f(Q(x))||^2 − ||∇f(x)||^2 = sum_j (A^2)_jj r_j (1 − r_j) Delta^2`` (exact) for
    ``f = ½ xᵀAx − bᵀx`` and stochastic rounding ``Q`` to ``Delta Z`` at ANY ``x``
    (``r_j = frac(x_j/Delta)``).

    ``∇f(Q(x)) = ∇f(x) + A δ`` with ``E δ = 0``: the cross term vanishes and ``E||Aδ||^2`` is
    the sum (``docs/theory/weight_quantization.md``). At a stationary point it is the floor of
    :func:`ratedist.bounds.weight_quantization_floor` (which evaluates the same sum).

    Raises:
        ValueError/TypeError: as :func:`ratedist.bounds.weight_quantization_floor`.
    """
    return weight_quantization_floor(A, delta, x_star=x).grad_norm_sq


__all__ = [
    "ADAM_MODES",
    "QuantizedAdamConstants",
    "adam_direction_bound",
    "adam_direction_ratio",
    "adam_step_range",
    "ef_message_bound",
    "ef_residual_bound",
    "quadratic_weight_excess",
    "quantized_adam_bound",
    "quantized_adam_constants",
    "smooth_weight_gradient_bound",
]
