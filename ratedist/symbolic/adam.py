"""Symbolic derivations behind :mod:`ratedist.bounds.adam` (quantized distributed Adam with
error feedback, SPEC §5, arXiv 2004.14180). Write-up: ``docs/theory/quantized_adam.md``.

What sympy does here (each builder registered as ``"adam.<quantity>"``):

* the EF residual recursion ``e' = q (A + e)`` (``q = sqrt(1 − delta)``, a delta-contractive
  compressor, inputs of norm ``<= A``): its fixed point ``qA/(1 − q) = q(1 + q)A/delta`` bounds
  the residual, ``(1 + q)A/(1 − q)`` the message;
* Adam's coordinatewise ratio ``|mu_hat_t|/sqrt(nu_hat_t) <= R_t`` (Cauchy–Schwarz on the two
  exponential averages, bias-corrected, ``b1^2 < b2``), as a closed form in ``t``;
* the virtual-sequence identities of both modes (the EF residual and the momentum lag are
  folded into ``z``, so that ``z_{k+1} = z_k − D_k h_k + (D_{k−1} − D_k) w_k`` exactly);
* the one-step inequality, its telescoped average, and the learning-rate trade-off
  (``transient/(lr T) + slope lr`` is smallest at ``lr* = sqrt(transient/(slope T))``, value
  ``2 sqrt(transient slope / T)``: the ``O(1/sqrt(T))`` rate).

Symbols: ``eta_min``/``eta_max`` range of the per-coordinate steps ``D_k`` (learning rate
included), ``L`` smoothness of f, ``G`` bound on every local gradient's norm, ``W`` bound on
``||w_k||`` (the vector the step-size changes multiply), ``X`` bound on ``||x_k − z_k||``,
``M_w`` bound on ``E||Q_w(x) − x||^2`` (weight quantization; 0 without), ``TV`` the total
variation ``sum_k ||D_{k−1} − D_k||_1``, ``Delta0 = f(x_0) − f*``, ``T`` steps.
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic.lambdify import expression

_pos = {"positive": True}
eta_min, eta_max, L, G, W, X, TV, Delta0, T = sp.symbols(
    "eta_min eta_max L G W X TV Delta0 T", **_pos
)
M_w = sp.Symbol("M_w", nonnegative=True)
q, c, A_in, delta = sp.symbols("q c A delta", nonnegative=True)
b1, b2, t = sp.symbols("b1 b2 t", positive=True)
lr, d, U, kappa = sp.symbols("lr d U kappa", positive=True)
transient_s, slope_s = sp.symbols("transient slope", positive=True)


# --- error feedback ----------------------------------------------------------------------
@expression("adam.ef_residual")
def ef_residual() -> sp.Expr:
    """``qA/(1 − q)``: the fixed point of ``e' = q (A + e)``.

    ``e_{k+1} = v_k − C(v_k)`` with ``v_k = a_k + e_k``, ``||a_k|| <= A``, ``e_0 = 0`` and
    ``||C(v) − v|| <= q ||v||``: ``||e_{k+1}|| <= q (A + ||e_k||)``, an increasing affine
    map with slope ``q < 1`` whose iterates from 0 stay below its fixed point.
    """
    e = sp.Symbol("e", nonnegative=True)
    (root,) = sp.solve(sp.Eq(e, q * (A_in + e)), e)
    return sp.simplify(root)


@expression("adam.ef_message")
def ef_message() -> sp.Expr:
    """``(1 + q) A/(1 − q)``: ``||C(v)|| <= ||v|| + ||C(v) − v|| <= (1 + q) ||v||`` with
    ``||v|| <= A + qA/(1 − q)``."""
    return sp.simplify((1 + q) * (A_in + ef_residual()))


def ef_residual_in_delta() -> sp.Expr:
    """``qA/(1 − q) − q (1 + q) A/delta`` at ``q = sqrt(1 − delta)``: simplifies to 0, so the
    residual bound is ``q(1 + q)A/delta <= 2 sqrt(1 − delta) A/delta`` — the ``(1 − delta)/
    delta^2`` terms of the bounds come from its square."""
    expr = ef_residual() - q * (1 + q) * A_in / delta
    return sp.simplify(sp.radsimp(expr.subs(q, sp.sqrt(1 - delta))))


# --- Adam's direction --------------------------------------------------------------------
def geometric_sum(ratio: sp.Expr, n: sp.Expr) -> sp.Expr:
    """``sum_{k=1}^n ratio^{n−k} = (1 − ratio^n)/(1 − ratio)`` (``ratio != 1``; the tests
    compare it with ``sympy.summation``)."""
    return (1 - ratio**n) / (1 - ratio)


@expression("adam.direction_ratio")
def direction_ratio() -> sp.Expr:
    """``R_t``: the largest ``|mu_hat_t|/sqrt(nu_hat_t)`` over gradient sequences (eps = 0).

    ``mu_t = (1 − b1) sum_{k=1}^t b1^{t−k} g_k``, ``nu_t = (1 − b2) sum b2^{t−k} g_k^2``;
    writing ``b1^{t−k} = gam^{t−k} b2^{(t−k)/2}`` with ``gam = b1/sqrt(b2)``, Cauchy–Schwarz
    gives ``|mu_t| <= (1 − b1) sqrt(sum gam^{2(t−k)}) sqrt(nu_t/(1 − b2))``, with equality
    for ``g_k ∝ (b1/b2)^{t−k}``; the bias corrections divide by ``1 − b1^t`` and
    ``sqrt(1 − b2^t)``. Finite as ``t -> inf`` iff ``b1^2 < b2``.
    """
    geo = geometric_sum(b1**2 / b2, t)
    ratio = (1 - b1) * sp.sqrt(geo) / sp.sqrt(1 - b2)
    return ratio * sp.sqrt(1 - b2**t) / (1 - b1**t)


# --- virtual sequences -------------------------------------------------------------------
def virtual_sequence_residual_server() -> sp.Expr:
    """Mode (a), one coordinate: ``z_{k+1} − (z_k − D_k h_k + (D_{k−1} − D_k) w_k)``, 0.

    ``x_{k+1} = x_k − D_k m_k``, ``m_k = b1 m_{k−1} + (1 − b1) p_k``, ``p_k = h_k + e_k −
    e_{k+1}`` (the EF identity, averaged over workers), ``c = b1/(1 − b1)``,
    ``z_k = x_k − c D_{k−1} m_{k−1} − D_{k−1} e_k``, ``w_k = c m_{k−1} + e_k``.
    """
    x0, m0, e0, e1, h, D0, D1 = sp.symbols("x m_prev e e_next h D_prev D", real=True)
    cc = b1 / (1 - b1)
    p = h + e0 - e1
    m1 = b1 * m0 + (1 - b1) * p
    x1 = x0 - D1 * m1
    z0 = x0 - cc * D0 * m0 - D0 * e0
    z1 = x1 - cc * D1 * m1 - D1 * e1
    w = cc * m0 + e0
    return sp.simplify(z1 - (z0 - D1 * h + (D0 - D1) * w))


def virtual_sequence_residual_worker() -> sp.Expr:
    """Mode (b), one worker, one coordinate: the same identity with ``w_k = c m_{k−1}``.

    ``x_{k+1} = x_k − lr s_k``, ``s_k = u_k + e_k − e_{k+1}`` (the sent ``C(u_k + e_k)``),
    ``u_k = D'_k m_k``, ``m_k = b1 m_{k−1} + (1 − b1) h_k``; ``D_k = lr D'_k``;
    ``z_k = x_k − lr e_k − c D_{k−1} m_{k−1}``.
    """
    x0, m0, e0, e1, h, D0, D1 = sp.symbols("x m_prev e e_next h D_prev D", real=True)
    cc = b1 / (1 - b1)
    m1 = b1 * m0 + (1 - b1) * h
    u = D1 / lr * m1
    x1 = x0 - lr * (u + e0 - e1)
    z0 = x0 - lr * e0 - cc * D0 * m0
    z1 = x1 - lr * e1 - cc * D1 * m1
    return sp.simplify(z1 - (z0 - D1 * h + (D0 - D1) * cc * m0))


# --- the bound ---------------------------------------------------------------------------
def one_step() -> tuple[sp.Expr, sp.Expr]:
    """``(gain, noise)`` of ``E f(z_{k+1}) − E f(z_k) <= −gain E||h_k||^2 + noise_k``.

    L-smoothness at ``z_k`` with ``z_{k+1} − z_k = −D_k h_k + Δ_k w_k`` (``Δ_k = D_{k−1} −
    D_k``, entries ``|Δ| <= eta_max``, ``tv_k = ||Δ_k||_1``):

    * ``<∇f(z), −D h> = −||h||_D^2 + <r, D h> <= −½||h||_D^2 + ½||r||_D^2`` with ``r = h −
      ∇f(z)``, ``E||r||^2 <= L^2 (X + sqrt(M_w))^2`` (``h = ∇f(Q_w(x))``);
    * ``<∇f(z), Δ w> <= ||∇f(z)||_inf ||w||_inf ||Δ||_1 <= G W tv``;
    * ``(L/2)||−D h + Δ w||^2 <= L||D h||^2 + L||Δ w||^2 <= L eta_max^2 G^2 + L eta_max W^2 tv``;
    * ``||h||_D^2 >= eta_min ||h||^2``.

    The per-step ``tv_k`` is kept as the symbol ``TV`` divided by ``T`` (it enters linearly).
    """
    tv = TV / T
    gain = eta_min / 2
    noise = (
        eta_max / 2 * L**2 * (X + sp.sqrt(M_w)) ** 2
        + G * W * tv
        + L * eta_max**2 * G**2
        + L * eta_max * W**2 * tv
    )
    return gain, noise


@expression("adam.bound")
def bound() -> sp.Expr:
    """``(1/T) sum_{k<T} E||h_k||^2 <= (Delta0 + T noise)/(T gain)`` (telescoping ``f(z_T)
    >= f*``, ``z_0 = x_0``)."""
    gain, noise = one_step()
    return sp.expand((Delta0 + T * noise) / (T * gain))


@expression("adam.server_W")
def server_W() -> sp.Expr:
    """Mode (a): ``W = c P + E`` with the mean residual ``E = qG/(1 − q)`` and the mean
    message ``P = (1 + q)G/(1 − q)`` (``||m|| <= P``: a convex combination of messages)."""
    return sp.simplify(c * ef_message().subs(A_in, G) + ef_residual().subs(A_in, G))


@expression("adam.server_X")
def server_X() -> sp.Expr:
    """Mode (a): ``||x_k − z_k|| = ||D_{k−1} w_k|| <= eta_max W``."""
    return eta_max * server_W()


@expression("adam.worker_W")
def worker_W() -> sp.Expr:
    """Mode (b): ``W = c G`` (the moments average raw gradients, ``||m|| <= G``)."""
    return c * G


@expression("adam.worker_X")
def worker_X() -> sp.Expr:
    """Mode (b): ``||x_k − z_k|| <= lr ||e_k|| + c eta_max ||m_{k−1}|| <= lr qU/(1 − q) + c
    eta_max G``, ``U`` a bound on the direction's norm."""
    return lr * ef_residual().subs(A_in, U) + c * eta_max * G


@expression("adam.lr_optimum")
def lr_optimum() -> sp.Expr:
    """``argmin_lr transient/(lr T) + slope lr = sqrt(transient/(slope T))``."""
    f = transient_s / (lr * T) + slope_s * lr
    roots = [r for r in sp.solve(sp.diff(f, lr), lr) if r.is_positive is not False]
    (root,) = roots
    return sp.simplify(root)


@expression("adam.lr_optimal_value")
def lr_optimal_value() -> sp.Expr:
    """``2 sqrt(transient slope / T)`` at :func:`lr_optimum`: ``O(1/sqrt(T))``."""
    f = transient_s / (lr * T) + slope_s * lr
    return sp.simplify(f.subs(lr, lr_optimum()))


@expression("adam.weight_floor_limit")
def weight_floor_limit() -> sp.Expr:
    """The floor of :func:`bound` for mode (a) as the steps shrink at a fixed spread
    ``eta_max = kappa eta_min`` (both ``∝ lr``): ``kappa L^2 M_w``, set by the weight
    quantizer alone (0 without one)."""
    b = bound()
    floor = sp.expand(b - b.coeff(1 / T) / T).subs(TV, 0)
    floor = floor.subs(X, server_X()).subs(eta_max, kappa * eta_min)
    return sp.simplify(sp.limit(floor, eta_min, 0))


__all__ = [
    "bound",
    "direction_ratio",
    "ef_message",
    "ef_residual",
    "ef_residual_in_delta",
    "geometric_sum",
    "lr_optimal_value",
    "lr_optimum",
    "one_step",
    "server_W",
    "server_X",
    "virtual_sequence_residual_server",
    "virtual_sequence_residual_worker",
    "weight_floor_limit",
    "worker_W",
    "worker_X",
]
