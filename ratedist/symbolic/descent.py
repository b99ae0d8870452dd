"""Symbolic derivations behind :mod:`ratedist.bounds` (descent lemma, 3PC Lyapunov algebra).

Each builder starts from the one-step inequality of its proof, written with scalar symbols
for the norms and inner products involved, and lets sympy do the algebra: solve the step-size
condition, telescope, and simplify. The resulting expressions are registered with
:func:`ratedist.symbolic.lambdify.expression` under ``"descent.<quantity>"`` and are compared
with the hand-written numpy formulas of :mod:`ratedist.bounds` in ``tests/bounds``.

Symbols (all positive unless said): ``eta``/``gamma`` step size, ``L`` (``L_minus``,
``L_plus``) smoothness, ``g2 = ||∇f(x^t)||^2``, ``V`` variance of the aggregate,
``b2 = ||beta||^2`` squared bias, ``ip = <∇f, beta>`` (real), ``R = ||x^{t+1} - x^t||^2``,
``G`` the 3PC error ``G^t``, ``Delta0 = f(x^0) - f*``, ``T`` steps, ``N`` workers.

A step-size condition "coefficient of g2 <= -eta/2" is solved as an equation for its
boundary; the sign on either side is checked in the tests.
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic.lambdify import expression

_pos = {"positive": True}
eta, L, g2, V, b2, T, Delta0, N = sp.symbols("eta L g2 V b2 T Delta0 N", **_pos)
ip = sp.Symbol("ip", real=True)
sigma_sq, eps_q, d, omega, zeta_sq = sp.symbols("sigma_sq eps_q d omega zeta_sq", **_pos)
gamma, L_minus, L_plus, A, B, R, G, G0, mu, F = sp.symbols(
    "gamma L_minus L_plus A B R G G0 mu F", **_pos
)
eps, c, b = sp.symbols("eps c b", **_pos)


def descent_step(second_moment: sp.Expr, inner: sp.Expr) -> sp.Expr:
    """``E f(x^{t+1}) - f(x^t) <= -eta <∇f, E ĝ> + (L eta^2/2) E||ĝ||^2`` (L-smoothness)."""
    return -eta * inner + L * eta**2 / 2 * second_moment


def telescoped_average(per_step_gain: sp.Expr, per_step_noise: sp.Expr) -> sp.Expr:
    """From ``f_{t+1} - f_t <= -gain * g2_t + noise`` and ``f_T - f_0 >= -Delta0``:
    ``(1/T) sum g2_t <= (Delta0 + T noise) / (T gain)``."""
    return sp.simplify((Delta0 + T * per_step_noise) / (T * per_step_gain))


def step_limit(step: sp.Expr, coefficient_of_g2: sp.Expr) -> sp.Expr:
    """Boundary of ``coefficient_of_g2 <= -step/2``: the unique positive root in ``step``."""
    roots = [r for r in sp.solve(sp.Eq(coefficient_of_g2, -step / 2), step) if r != 0]
    (root,) = [r for r in roots if r.is_positive is not False]
    return sp.simplify(root)


# --- compressed SGD, unbiased, absolute variance -----------------------------------------
def _unbiased_second_moment(var: sp.Expr) -> sp.Expr:
    # E||ĝ||^2 = ||E ĝ||^2 + Var = g2 + Var, with E ĝ = ∇f
    return g2 + var


@expression("descent.sgd_unbiased_step_limit")
def sgd_unbiased_step_limit() -> sp.Expr:
    """``1/L``: where ``-eta + L eta^2/2`` (coefficient of g2) reaches ``-eta/2``."""
    step = descent_step(_unbiased_second_moment(V), g2)
    return step_limit(eta, sp.expand(step).coeff(g2))


@expression("descent.sgd_unbiased_bound")
def sgd_bound() -> sp.Expr:
    """``2 Delta0/(eta T) + eta L (sigma^2 + d eps_q)/N`` for ``eta <= 1/L``.

    Variance of the mean of N independent unbiased messages, each with variance
    ``<= sigma^2 + d eps_q`` about ``∇f_i``: ``V = (sigma^2 + d eps_q)/N``. With
    ``L eta <= 1`` the g2 coefficient ``-eta + L eta^2/2`` is ``<= -eta/2``.
    """
    var = (sigma_sq + d * eps_q) / N
    noise = L * eta**2 / 2 * var
    return sp.expand(telescoped_average(eta / 2, noise))


# --- compressed SGD, unbiased, relative variance ------------------------------------------
def _relative_second_moment() -> sp.Expr:
    # worker i: E||Q(g_i) - ∇f_i||^2 = E||Q(g_i)-g_i||^2 + E||g_i-∇f_i||^2
    #                               <= omega (||∇f_i||^2 + sigma^2) + sigma^2
    # mean over i with (1/N) sum ||∇f_i||^2 <= g2 + zeta^2, divided by N (independence)
    mean_sq_local = g2 + zeta_sq
    worker_var = omega * (mean_sq_local + sigma_sq) + sigma_sq
    return g2 + worker_var / N


@expression("descent.sgd_relative_step_limit")
def relative_variance_step_limit() -> sp.Expr:
    """``1/(L (1 + omega/N))``."""
    step = descent_step(_relative_second_moment(), g2)
    return step_limit(eta, sp.expand(step).coeff(g2))


@expression("descent.sgd_relative_bound")
def relative_variance_bound() -> sp.Expr:
    """``2 Delta0/(eta T) + eta L ((1 + omega) sigma^2 + omega zeta^2)/N`` (eta below the limit)."""
    step = sp.expand(descent_step(_relative_second_moment(), g2))
    noise = step - step.coeff(g2) * g2  # the g2-free part
    return sp.expand(telescoped_average(eta / 2, noise))


# --- biased compressed SGD ------------------------------------------------------------------
def bias_identity() -> sp.Expr:
    """``-<a, a+b> + ||a+b||^2/2 - (-||a||^2/2 + ||b||^2/2)``; simplifies to 0."""
    aa, ab, bb = sp.symbols("aa ab bb", real=True)
    return sp.expand(-(aa + ab) + (aa + 2 * ab + bb) / 2 - (-aa / 2 + bb / 2))


@expression("descent.sgd_biased_bound")
def biased_bound() -> sp.Expr:
    """``2 Delta0/(eta T) + eta L V + b2`` with ``V = (sigma^2 + d eps_q)/N`` and ``eta <= 1/L``.

    ``E ĝ = ∇f + beta``: ``E||ĝ||^2 = g2 + 2 ip + b2 + V``; using ``L eta^2 <= eta`` on the
    ``||∇f + beta||^2`` part, the inner product cancels (:func:`bias_identity`).
    """
    var = (sigma_sq + d * eps_q) / N
    mean_sq = g2 + 2 * ip + b2
    step = -eta * (g2 + ip) + eta / 2 * mean_sq + L * eta**2 / 2 * var
    step = sp.expand(step)
    if step.coeff(ip) != 0:  # the cross term must cancel, else the derivation is wrong
        raise RuntimeError("bias cross term did not cancel")
    gain = -step.coeff(g2)
    noise = step - step.coeff(g2) * g2
    return sp.expand(telescoped_average(gain, noise))


# --- 3PC --------------------------------------------------------------------------------------
def three_pc_lyapunov_residual() -> sp.Expr:
    """``Phi^{t+1} - Phi^t + (gamma/2) g2`` after the two one-step inequalities.

    f-step (L_- smooth, ``||g - ∇f||^2 <= G``):
    ``f^{t+1} <= f^t - (gamma/2) g2 - (1/(2 gamma) - L_-/2) R + (gamma/2) G``;
    3PC step: ``G^{t+1} <= (1 - A) G + B L_+^2 R``; ``Phi = f - f* + gamma/(2A) G``.
    The result has no G term, and its R coefficient is the step condition.
    """
    f_step = -gamma / 2 * g2 - (1 / (2 * gamma) - L_minus / 2) * R + gamma / 2 * G
    G_next = (1 - A) * G + B * L_plus**2 * R
    phi_change = f_step + gamma / (2 * A) * (G_next - G)
    return sp.expand(phi_change + gamma / 2 * g2)


def _positive_gamma_root(coef: sp.Expr) -> sp.Expr:
    """The root of ``coef = 0`` in gamma that is positive (checked at ``A = B = L_± = 1``)."""
    roots = [r for r in sp.solve(sp.Eq(coef, 0), gamma) if r.is_positive is not False]
    (root,) = [r for r in roots if sp.simplify(r.subs({A: 1, B: 1, L_minus: 1, L_plus: 1})) > 0]
    return sp.simplify(root)


@expression("descent.three_pc_step_exact")
def three_pc_step_condition() -> sp.Expr:
    """Positive root of the R coefficient of :func:`three_pc_lyapunov_residual` in gamma.

    Equals ``2/(L_- + sqrt(L_-^2 + 4 B L_+^2/A))``; any smaller gamma makes the coefficient
    negative, and ``1/M1`` is one such gamma.
    """
    coef = three_pc_lyapunov_residual().coeff(R)
    return _positive_gamma_root(coef)


@expression("descent.three_pc_m1_slack")
def three_pc_m1_slack() -> sp.Expr:
    """The R coefficient at ``gamma = 1/M1`` (must be ``<= 0``): ``-s L_-/(2(L_- + s))``
    with ``s = L_+ sqrt(B/A)``."""
    coef = three_pc_lyapunov_residual().coeff(R)
    M1 = L_minus + L_plus * sp.sqrt(B / A)
    return sp.simplify(coef.subs(gamma, 1 / M1))


@expression("descent.three_pc_bound")
def three_pc_bound() -> sp.Expr:
    """``2 Phi^0/(gamma T) = 2 Delta0/(gamma T) + G0/(A T)`` (telescoping the Lyapunov step)."""
    phi0 = Delta0 + gamma / (2 * A) * G0
    return sp.expand(phi0 / (gamma / 2 * T))


def three_pc_pl_residual() -> sp.Expr:
    """``Psi^{t+1} - (1 - gamma mu) Psi^t`` with ``Psi = F + (gamma/A) G``, ``F = f - f*``,
    after PL (``-(gamma/2) g2 <= -gamma mu F``)."""
    f_next = F - gamma * mu * F - (1 / (2 * gamma) - L_minus / 2) * R + gamma / 2 * G
    G_next = (1 - A) * G + B * L_plus**2 * R
    psi_next = f_next + gamma / A * G_next
    return sp.expand(psi_next - (1 - gamma * mu) * (F + gamma / A * G))


@expression("descent.three_pc_pl_step_g")
def three_pc_pl_step_from_G() -> sp.Expr:
    """Boundary of the G coefficient of :func:`three_pc_pl_residual`: ``gamma = A/(2 mu)``."""
    coef = three_pc_pl_residual().coeff(G)
    (root,) = [r for r in sp.solve(sp.Eq(coef, 0), gamma) if r != 0]
    return sp.simplify(root)


@expression("descent.three_pc_pl_step_r")
def three_pc_pl_step_from_R() -> sp.Expr:
    """Positive root of the R coefficient: ``2/(L_- + sqrt(L_-^2 + 8 B L_+^2/A))``
    (``>= 1/M2`` with ``M2 = L_- + L_+ sqrt(2B/A)``)."""
    coef = three_pc_pl_residual().coeff(R)
    return _positive_gamma_root(coef)


# --- step size for a target -----------------------------------------------------------------
@expression("descent.best_step_size")
def best_step_size() -> sp.Expr:
    """Minimiser of ``T(eta) = a/(eta (eps - b - c eta))`` over eta: ``(eps - b)/(2c)``."""
    (root,) = sp.solve(sp.diff(eta * (eps - b - c * eta), eta), eta)
    return sp.simplify(root)
