"""Coded workers: a problem whose workers are data partitions, re-dealt to ``n`` workers by a
gradient code (:mod:`ratedist.sim.codes`), with the worker oracle and the decoding
aggregation to run it (``run(..., oracle=c.oracle, aggregation=c.aggregation)``).

Theory: ``docs/theory/gradient_coding.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ratedist.sim.codes import GradientCode
from ratedist.sim.problems import Problem
from ratedist.sim.stages import Aggregation


class Coded(NamedTuple):
    """A problem with ``n`` coded workers and the stages that go with it.

    Attributes:
        problem: the :class:`Problem` of the ``n`` coded workers (``f``, ``grad f``, ``f*`` and
            ``L_-`` those of the base problem; see :func:`coded`).
        oracle: the worker oracle stage (``run(..., oracle=coded.oracle)``): worker ``i``'s
            gradient ``y_i = sum_j B_ij grad f_j(x) / k``.
        aggregation: ``decode(code.weights)``.
        code: the code.
    """

    problem: Problem
    oracle: Callable[[Problem], Callable[..., Any]]
    aggregation: Aggregation
    code: GradientCode


def _support(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column indices of its nonzeros padded to the longest row (index 0), and
    the padding mask."""
    nz = B != 0
    m = int(nz.sum(axis=1).max())
    idx = np.zeros((B.shape[0], m), np.int64)
    real = np.zeros((B.shape[0], m), bool)
    for i in range(B.shape[0]):  # host, once
        cols = np.flatnonzero(nz[i])
        idx[i, : cols.size] = cols
        real[i, : cols.size] = True
    return idx, real


def coded(problem: Problem, code: GradientCode) -> Coded:
    """The problem with ``n`` coded workers built from ``problem``, whose ``k`` workers are the
    data partitions, and the worker oracle that computes the coded gradients.

    Worker ``i`` holds the data of the partitions in the support of row ``i`` of ``B`` (the
    base problem's per-worker data, gathered on the host; rows padded to the longest with
    weight 0) and sends

        y_i = sum_j B_ij grad f_j(x) / k

    (``g_j = grad f_j / k`` are the summands of ``grad f = (1/k) sum_j grad f_j``, so an
    exact decoder gives ``grad f``). The base problem's stochastic gradient, if any, is used
    per partition (independent noise on every worker and partition).

    The coded problem's own local functions (what the simulator records as ``f_i`` and the
    exact local gradient) share each partition equally among the workers that hold it,
    ``F_i = sum_j (n/k) f_j / c_j`` with ``c_j`` the number of workers holding ``j``, so that
    ``(1/n) sum_i F_i = f``: the recorded ``f``, ``||grad f||^2`` and ``server_error =
    ||g − grad f||^2`` are those of the base problem (``G`` and ``worker_error`` compare the
    coded ``y_i`` with ``grad F_i`` and carry no meaning here). ``L_-``, ``f*`` are the base
    problem's; ``L_+`` of the ``F_i`` is not computed (None).

    Raises:
        ValueError: ``problem.n_workers`` differs from the code's number of partitions.
        TypeError: ``problem`` not a Problem or ``code`` not a GradientCode.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a ratedist.sim Problem, got {type(problem).__name__}")
    if not isinstance(code, GradientCode):
        raise TypeError(f"code must be a GradientCode (see CODES), got {type(code).__name__}")
    n, k = code.B.shape
    if problem.n_workers != k:
        raise ValueError(
            f"problem must have n_workers = {k} (the partitions of code {code.name!r}), got "
            f"{problem.n_workers}"
        )
    idx, real = _support(code.B)
    count = (code.B != 0).sum(axis=0)
    coef = np.where(real, np.take_along_axis(code.B, idx, axis=1), 0.0) / k
    share = np.where(real, (n / k) / count[idx], 0.0)
    parts = jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], problem.data)
    data = {"parts": parts, "coef": coef, "share": share}
    base_vg = problem.local_value_and_grad
    base_sgrad = problem.stochastic_grad_fn

    def parts_vg(x, data_i):
        return jax.vmap(base_vg, in_axes=(None, 0))(x, data_i["parts"])

    def value_and_grad(x, data_i):
        f, g = parts_vg(x, data_i)
        return data_i["share"] @ f, data_i["share"] @ g

    def loss(x, data_i):
        return value_and_grad(x, data_i)[0]

    def grad(x, data_i):
        return value_and_grad(x, data_i)[1]

    def oracle(prob):
        hyper = tuple(prob.hyper)

        def fn(x, data_i, key, hp):
            f, g = parts_vg(x, data_i)
            if base_sgrad is None:
                y = data_i["coef"] @ g
            else:
                keys = jax.random.split(key, data_i["coef"].shape[0])
                kw = {h: hp[h] for h in hyper}
                sg = jax.vmap(lambda p, kk: base_sgrad(x, p, kk, **kw))(data_i["parts"], keys)
                y = data_i["coef"] @ sg
            return data_i["share"] @ f, data_i["share"] @ g, y

        return fn

    cfg = {"problem": "coded", "code": dict(code.config), "base": dict(problem.config)}
    prob = Problem(
        name=f"{problem.name}/{code.name}",
        n_workers=n,
        dim=problem.dim,
        data=data,
        loss_fn=loss,
        grad_fn=grad,
        x0=problem.x0,
        f_star=problem.f_star,
        L_minus=problem.L_minus,
        L_plus=None,
        L_plus_upper=None,
        L_i=None,
        labels={
            **{k_: v for k_, v in problem.labels.items() if k_ in ("f_star", "L_minus")},
            "L_plus": "unknown: not computed for the coded workers' shares",
        },
        stochastic_grad_fn=None,
        variance_fn=None,
        config=cfg,
        value_and_grad_fn=value_and_grad,
        hyper=dict(problem.hyper),
    )
    return Coded(prob, oracle, code.aggregation(), code)
