"""Moments of the stochastic 1-bit quantizer and the unbiasedness of random replication.

Stochastic sign (:func:`ratedist.compressors.stochastic_sign`): for ``|v| <= R``,
``Q = +R`` with probability ``q = (1 + v/R)/2`` and ``−R`` otherwise. Then

    E Q = R q − R (1 − q) = v,      E (Q − v)^2 = R^2 − v^2,

and summed over ``d`` coordinates ``E||Q(v) − v||^2 = d R^2 − ||v||^2``. With ``R = ||v||_2``
that is ``(d − 1)||v||^2`` (omega = d − 1).

Random replication (:func:`ratedist.sim.codes.random_replication`): partition ``j`` is held by
``d`` workers; the decoded coefficient of ``g_j`` is ``c_j = sum_{i holds j} a_i``.

* probability rescaling, ``a_i = 1{i answers} / (d (1 − p))`` with Bernoulli(``p``)
  stragglers: ``E c_j = d (1 − p) / (d (1 − p)) = 1``;
* count rescaling, ``a_i = 1{i answers} n / (d m)`` given ``m`` answering workers (a uniform
  ``m``-subset): ``E[c_j | m] = d (m/n) n / (d m) = 1``.

Each builder is registered under ``"onebit.<quantity>"`` (:mod:`ratedist.symbolic.lambdify`).
"""

from __future__ import annotations

import sympy as sp

from ratedist.symbolic.lambdify import expression

v = sp.Symbol("v", real=True)
R, d, n, m = sp.symbols("R d n m", positive=True)
p = sp.Symbol("p", nonnegative=True)


def up_probability() -> sp.Expr:
    """``P(Q = +R) = (1 + v/R)/2``."""
    return (1 + v / R) / 2


def _expect(fn) -> sp.Expr:
    q = up_probability()
    return sp.simplify(q * fn(R) + (1 - q) * fn(-R))


@expression("onebit.mean")
def mean() -> sp.Expr:
    """``E Q(v) = v``."""
    return _expect(lambda y: y)


@expression("onebit.mse_coordinate")
def mse_coordinate() -> sp.Expr:
    """``E (Q(v) − v)^2 = R^2 − v^2``."""
    return sp.expand(_expect(lambda y: (y - v) ** 2))


@expression("onebit.omega_l2")
def omega_l2() -> sp.Expr:
    """``(d R^2 − ||v||^2) / ||v||^2`` at ``R = ||v||_2``: ``d − 1``."""
    norm_sq = sp.Symbol("norm_sq", positive=True)
    return sp.simplify((d * R**2 - norm_sq).subs(R, sp.sqrt(norm_sq)) / norm_sq)


@expression("onebit.replication_weight_probability")
def replication_weight_probability() -> sp.Expr:
    """``E c_j`` under Bernoulli(p) stragglers with ``a_i = 1/(d (1 − p))``: 1."""
    return sp.simplify(d * (1 - p) / (d * (1 - p)))


@expression("onebit.replication_weight_count")
def replication_weight_count() -> sp.Expr:
    """``E[c_j | m]`` with ``a_i = n/(d m)`` and a uniform answering ``m``-subset: 1."""
    return sp.simplify(d * (m / n) * n / (d * m))
