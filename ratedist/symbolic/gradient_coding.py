"""Symbolic derivations behind :mod:`ratedist.bounds.gradient_coding`: SGD with an unbiased
gradient estimator of bounded variance (convex and nonconvex, constant and diminishing steps)
and the variance of 1-bit gradient coding with stragglers.

Setting: ``x^{t+1} = x^t − gamma_t g^t`` with ``E[g^t | x^t] = ∇f(x^t)`` and
``E||g^t − ∇f(x^t)||^2 <= V`` (``V = sigma^2``). Scalar symbols stand for the quantities of
one step: ``g2 = ||∇f(x^t)||^2``, ``ip = <∇f(x^t), x^t − x*>``, ``D``/``D1`` the squared
distances ``||x^t − x*||^2``/``E||x^{t+1} − x*||^2``, ``F = f(x^t) − f*``, ``Delta0``,
``D0`` the initial gap and distance, ``T`` steps, ``c`` the constant of a horizon step
``gamma = c / sqrt(T)``.

Decoding (:mod:`ratedist.sim.codes`): worker ``i`` answers with weight ``a_i``; partition
``j`` (held by the workers ``S_j``, ``|S_j| = d``) gets the coefficient
``c_j = sum_{i in S_j} a_i``; the straggler variance is ``E||sum_j (c_j − 1) g_j||^2``.

Every builder is registered under ``"gc.<quantity>"`` (:mod:`ratedist.symbolic.lambdify`) and
compared with the numpy formulas of :mod:`ratedist.bounds.gradient_coding` in
``tests/symbolic/test_symbolic_gradient_coding.py``.
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic.lambdify import expression

_pos = {"positive": True}
gamma, L, V, g2, T, D, D0, Delta0, c = sp.symbols("gamma L V g2 T D D0 Delta0 c", **_pos)
ip = sp.Symbol("ip", real=True)
D1, F1 = sp.symbols("D1 F1", real=True)
n, d, m, s, k, G = sp.symbols("n d m s k G", **_pos)
p = sp.Symbol("p", nonnegative=True)
u, offset, gamma0 = sp.symbols("u offset gamma0", **_pos)


# --- one step ---------------------------------------------------------------------------------
def distance_step() -> sp.Expr:
    """``E||x^{t+1} − x*||^2 = D − 2 gamma ip + gamma^2 (g2 + V)`` (expanding the square;
    ``E||g||^2 = ||E g||^2 + Var = g2 + V``)."""
    return D - 2 * gamma * ip + gamma**2 * (g2 + V)


def descent_step() -> sp.Expr:
    """``E f(x^{t+1}) − f* <= F − gamma g2 + (L gamma^2/2)(g2 + V)`` (L-smoothness)."""
    F = sp.Symbol("F", real=True)
    return F - gamma * g2 + L * gamma**2 / 2 * (g2 + V)


def convex_step_residual() -> sp.Expr:
    """The convex one-step bound minus ``(D − D1)/(2 gamma)``, as a function of g2 and V.

    Convexity gives ``F <= ip``; solving :func:`distance_step` ``= D1`` for ``ip`` and
    substituting into :func:`descent_step` leaves ``E f(x^{t+1}) − f* <= (D − D1)/(2 gamma)
    + (gamma/2)(L gamma − 1) g2 + (gamma/2)(1 + L gamma) V``: the returned residual. Its g2
    coefficient is ``<= 0`` iff ``gamma <= 1/L``.
    """
    F = sp.Symbol("F", real=True)
    (ip_of_D1,) = sp.solve(sp.Eq(distance_step(), D1), ip)
    bound = descent_step().subs(F, ip_of_D1)
    return sp.expand(bound - (D - D1) / (2 * gamma))


@expression("gc.convex_step_limit")
def convex_step_limit() -> sp.Expr:
    """``1/L``: the positive root of the g2 coefficient of :func:`convex_step_residual`."""
    coef = convex_step_residual().coeff(g2)
    (root,) = [r for r in sp.solve(sp.Eq(coef, 0), gamma) if r != 0]
    return sp.simplify(root)


@expression("gc.convex_noise")
def convex_noise() -> sp.Expr:
    """Per-step noise term of the convex bound: ``gamma (1 + L gamma) V / 2`` (``<= gamma V``
    for ``gamma <= 1/L``)."""
    return sp.factor(convex_step_residual().coeff(V) * V)


@expression("gc.convex_bound")
def convex_bound() -> sp.Expr:
    """``(1/T) sum_{t=1}^{T} E f(x^t) − f* <= D0/(2 gamma T) + gamma (1 + L gamma) V / 2``:
    the one-step bound (g2 term dropped, ``gamma <= 1/L``) summed over ``t = 0..T−1``, the
    distances telescoping to ``D0 − E D_T <= D0``."""
    return sp.expand((D0 / (2 * gamma) + T * convex_noise()) / T)


@expression("gc.nonconvex_step_limit")
def nonconvex_step_limit() -> sp.Expr:
    """``1/L``: where the g2 coefficient ``−gamma + L gamma^2/2`` of :func:`descent_step`
    reaches ``−gamma/2``."""
    coef = sp.expand(descent_step()).coeff(g2)
    (root,) = [r for r in sp.solve(sp.Eq(coef, -gamma / 2), gamma) if r != 0]
    return sp.simplify(root)


@expression("gc.nonconvex_bound")
def nonconvex_bound() -> sp.Expr:
    """``(1/T) sum_{t<T} E||∇f(x^t)||^2 <= 2 Delta0/(gamma T) + L gamma V``: from
    ``E f^{t+1} <= f^t − (gamma/2) g2 + L gamma^2 V / 2`` (``gamma <= 1/L``) summed, with
    ``f^0 − E f^T <= Delta0``."""
    noise = L * gamma**2 / 2 * V
    return sp.expand((Delta0 + T * noise) / (T * gamma / 2))


# --- horizon step gamma = c / sqrt(T) ---------------------------------------------------------
def _at_horizon(bound: sp.Expr) -> sp.Expr:
    return sp.expand(bound.subs(gamma, c / sp.sqrt(T)) * sp.sqrt(T))


def _optimum(scaled: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Minimiser over c of ``scaled`` (the bound times sqrt(T)) and the minimum."""
    (c_opt,) = [r for r in sp.solve(sp.diff(scaled, c), c) if r.is_positive is not False]
    return sp.simplify(c_opt), sp.simplify(scaled.subs(c, c_opt))


def convex_horizon_scaled() -> sp.Expr:
    """``sqrt(T)`` times the convex bound with ``gamma (1 + L gamma)/2 <= gamma`` at
    ``gamma = c / sqrt(T)``: ``D0/(2c) + c V`` (no T left: slope −1/2)."""
    upper = D0 / (2 * gamma * T) + gamma * V
    return _at_horizon(upper)


@expression("gc.convex_horizon_constant")
def convex_horizon_constant() -> sp.Expr:
    """``c* = sqrt(D0 / (2 V))`` minimising :func:`convex_horizon_scaled`."""
    return _optimum(convex_horizon_scaled())[0]


@expression("gc.convex_horizon_value")
def convex_horizon_value() -> sp.Expr:
    """``min_c (D0/(2c) + c V) = sqrt(2 D0 V)``: the bound is ``sqrt(2 D0 V / T)``."""
    return _optimum(convex_horizon_scaled())[1]


def nonconvex_horizon_scaled() -> sp.Expr:
    """``sqrt(T)`` times the nonconvex bound at ``gamma = c/sqrt(T)``: ``2 Delta0/c + L c V``."""
    return _at_horizon(nonconvex_bound())


@expression("gc.nonconvex_horizon_constant")
def nonconvex_horizon_constant() -> sp.Expr:
    """``c* = sqrt(2 Delta0 / (L V))``."""
    return _optimum(nonconvex_horizon_scaled())[0]


@expression("gc.nonconvex_horizon_value")
def nonconvex_horizon_value() -> sp.Expr:
    """``min_c (2 Delta0/c + L c V) = 2 sqrt(2 Delta0 L V)``."""
    return _optimum(nonconvex_horizon_scaled())[1]


# --- diminishing steps -------------------------------------------------------------------------
def weighted_convex_sum() -> sp.Expr:
    """``gamma_t (E f(x^{t+1}) − f*) <= (D_t − D_{t+1})/2 + gamma_t^2 (1 + L gamma_t) V/2``:
    the convex one-step bound times ``gamma_t`` (its ``(D − D1)/(2 gamma)`` becomes a
    telescoping ``(D − D1)/2``). Returned: the per-step noise ``gamma (1 + L gamma) V gamma/2``
    — at most ``gamma^2 V`` for ``gamma <= 1/L``."""
    return sp.expand(gamma * convex_noise())


@expression("gc.step_sum_lower")
def step_sum_lower() -> sp.Expr:
    """``int_{offset}^{offset+T} u^{-1/2} du = 2 (sqrt(offset + T) − sqrt(offset))``, a lower
    bound of ``sum_{t<T} (t + offset)^{-1/2}`` (decreasing summand)."""
    return sp.simplify(sp.integrate(u ** sp.Rational(-1, 2), (u, offset, offset + T)))


@expression("gc.harmonic_sum_upper")
def harmonic_sum_upper() -> sp.Expr:
    """``1/offset + int_{offset}^{offset+T−1} du/u``, an upper bound of
    ``sum_{t<T} 1/(t + offset)``."""
    return 1 / offset + sp.integrate(1 / u, (u, offset, offset + T - 1))


# --- decoding weights --------------------------------------------------------------------------
def _two_point(value: sp.Expr, prob: sp.Expr, fn) -> sp.Expr:
    """``E fn(X)`` for ``X = value`` with probability ``prob``, else 0."""
    return sp.simplify(prob * fn(value) + (1 - prob) * fn(sp.Integer(0)))


@expression("gc.weight_sq_probability")
def weight_sq_probability() -> sp.Expr:
    """Probability rescaling under Bernoulli(p): ``E a_i^2 = 1/(d^2 (1 − p))`` for
    ``a_i = 1{answers}/(d (1 − p))``."""
    return _two_point(1 / (d * (1 - p)), 1 - p, lambda a: a**2)


@expression("gc.weight_sq_norm_probability")
def weight_sq_norm_probability() -> sp.Expr:
    """``E||a||^2 = n / (d^2 (1 − p))``."""
    return sp.simplify(n * weight_sq_probability())


@expression("gc.weight_sq_norm_count")
def weight_sq_norm_count() -> sp.Expr:
    """Count rescaling with ``m`` answering: ``||a||^2 = m (n/(d m))^2 = n^2/(d^2 m)``
    (uncoded: ``d = 1``; exactly ``s`` stragglers: ``m = n − s``)."""
    return sp.simplify(m * (n / (d * m)) ** 2)


@expression("gc.weight_sq_norm_frc")
def weight_sq_norm_frc() -> sp.Expr:
    """FRC with at most ``s`` stragglers: one weight 1 in each of the ``n/(s+1)`` groups."""
    return n / (s + 1)


@expression("gc.coefficient_variance_probability")
def coefficient_variance_probability() -> sp.Expr:
    """``Var c_j = d p (1 − p) / (d (1 − p))^2 = p / (d (1 − p))``: a sum of ``d``
    independent ``a_i``, each ``Var a_i = p (1 − p) w^2`` with ``w = 1/(d (1 − p))``."""
    w = 1 / (d * (1 - p))
    var_a = _two_point(w, 1 - p, lambda a: a**2) - _two_point(w, 1 - p, lambda a: a) ** 2
    return sp.simplify(d * var_a)


@expression("gc.coefficient_covariance_probability")
def coefficient_covariance_probability() -> sp.Expr:
    """``Cov(c_j, c_l) = |S_j ∩ S_l| p / (d^2 (1 − p))`` (``|S_j ∩ S_l|`` is the symbol
    ``s``): only the shared workers' weights are common to both sums."""
    return sp.simplify(s * coefficient_variance_probability() / d)


@expression("gc.straggler_variance_replication")
def straggler_variance_replication() -> sp.Expr:
    """The closed-form straggler variance bound ``p G^2 / (d (1 − p))``.

    ``E||sum_j (c_j − 1) g_j||^2 = sum_{j,l} Cov(c_j, c_l) <g_j, g_l>
    <= max_{j,l} Cov(c_j, c_l) (sum_j ||g_j||)^2``, with ``|S_j ∩ S_l| <= d`` (so
    ``Cov <= Var c_j``) and ``sum_j ||g_j|| <= k (G/k) = G`` under ``||∇f_j|| <= G``.
    """
    cov_max = coefficient_covariance_probability().subs(s, d)
    return sp.simplify(cov_max * (k * (G / k)) ** 2)
