"""Coded workers: a problem whose workers are data partitions, re-dealt to ``n`` workers by a
gradient code (:mod:`ratedist.sim.codes`), with the worker oracle and the decoding
aggregation to run it (``run(c.round(algorithm, participation), c.problem, ...)``).

Two encodings (``coded(..., encode=...)``):

* ``"combination"``: worker ``i`` encodes its coded combination ``y_i = sum_j B_ij g_j``
  (one message of ``d`` entries: ``d`` bits for a 1-bit encoder);
* ``"partitions"``: worker ``i`` encodes each of its summands ``B_ij g_j`` separately (``m_i``
  messages, ``m_i d`` bits, ``m_i`` = the partitions it holds); the server decodes
  ``g = sum_i a_i sum_j Q(B_ij g_j)``. The algorithm's mechanism runs once per partition
  (:func:`partitionwise`: its own state, e.g. an error-feedback residual, per partition).

With an identity encoder both give the same ``g``. Theory: ``docs/theory/gradient_coding.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_choice
from ratedist.sim.codes import GradientCode
from ratedist.sim.method import Algorithm, Message, PartitionGrads
from ratedist.sim.problems import Problem
from ratedist.sim.round import Round
from ratedist.sim.stages import Aggregation, Participation, everyone

#: what a coded worker encodes (:func:`coded`)
ENCODINGS = ("combination", "partitions")


def _partition_sum(g, real):
    return jnp.where(real[:, None], g, 0).sum(axis=0)


def _message_sum(msg: Message, real) -> Message:
    """Bits of the real partitions summed; ``triggered`` if any partition sent."""
    tot = [jnp.where(real, v, 0).sum() for v in msg[:6]]
    return Message(*tot, jnp.where(real, msg.triggered, 0).max())


def partitionwise(algorithm: Algorithm) -> Algorithm:
    """Run ``algorithm``'s mechanism on each partition a coded worker holds.

    The worker's oracle gives :class:`PartitionGrads`; ``algorithm`` runs ``vmap``-ped over
    the rows with its own state per row (the estimator ``h`` and previous gradient ``y`` of
    each row are kept when it reads them) and key ``split(key, m)[r]``; the worker's
    estimator is the sum of the rows' estimators, and its message the sum of the real rows'
    bits. Not a 3PC at the worker level (``A = B = None``).

    Raises:
        TypeError: ``algorithm`` not an Algorithm (and, when the round is traced, an oracle
            that does not give :class:`PartitionGrads`).
    """
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"algorithm must be an Algorithm, got {type(algorithm).__name__}")
    inner = algorithm
    keep_h, keep_y = "h" in inner.needs, "y" in inner.needs

    def init(grad0, key, shared, hp):
        rows = grad0
        keys = jax.random.split(key, rows.parts.shape[0])
        g, st, msg = jax.vmap(inner.init, in_axes=(0, 0, None, None))(rows.parts, keys, shared, hp)
        state = (st, g if keep_h else None, rows.parts if keep_y else None)
        return _partition_sum(g, rows.real), state, _message_sum(msg, rows.real)

    def step(h, y, x, mstate, key, shared, hp):
        rows = x
        st, h_rows, y_rows = mstate
        keys = jax.random.split(key, rows.parts.shape[0])
        g, st, msg = jax.vmap(inner.step, in_axes=(0, 0, 0, 0, 0, None, None))(
            h_rows, y_rows, rows.parts, st, keys, shared, hp
        )
        state = (st, g if keep_h else None, rows.parts if keep_y else None)
        return _partition_sum(g, rows.real), state, _message_sum(msg, rows.real)

    return inner._replace(
        name=f"partitionwise[{inner.name}]",
        init=init,
        step=step,
        A=None,
        B=None,
        config={"algorithm": "partitionwise", "inner": dict(inner.config)},
        needs=("partitions",),
        bits_per_step=None,
        diagnostics=None,  # the inner's are per partition; not aggregated per worker
    )


class Coded(NamedTuple):
    """A problem with ``n`` coded workers and the stages that go with it.

    Attributes:
        problem: the :class:`Problem` of the ``n`` coded workers (``f``, ``grad f``, ``f*`` and
            ``L_-`` those of the base problem; see :func:`coded`).
        oracle: the worker oracle stage (``run(..., oracle=coded.oracle)``): worker ``i``'s
            gradient ``y_i = sum_j B_ij grad f_j(x) / k``.
        aggregation: ``decode(code.weights)``.
        code: the code.
        encode: ``"combination"`` or ``"partitions"`` (module docstring).
    """

    problem: Problem
    oracle: Callable[[Problem], Callable[..., Any]]
    aggregation: Aggregation
    code: GradientCode
    encode: str = "combination"

    def round(
        self,
        algorithm: Algorithm,
        participation: Participation | None = None,
        *,
        aggregation: Aggregation | None = None,
        server: Any = None,
    ) -> Round:
        """The simulator round of ``algorithm`` on these coded workers: this oracle, the
        code's decoding (or ``aggregation``, e.g. a majority vote), ``participation``
        (default everyone) and, under ``encode="partitions"``, the mechanism run per
        partition (:func:`partitionwise`)."""
        if not isinstance(algorithm, Algorithm):
            raise TypeError(f"algorithm must be an Algorithm, got {type(algorithm).__name__}")
        alg = partitionwise(algorithm) if self.encode == "partitions" else algorithm
        return Round(
            alg,
            everyone() if participation is None else participation,
            self.aggregation if aggregation is None else aggregation,
            server,
            oracle=self.oracle,
        )


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


def coded(problem: Problem, code: GradientCode, encode: str = "combination") -> Coded:
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

    Under ``encode="partitions"`` the oracle gives each worker its summands
    ``B_ij grad f_j / k`` (:class:`PartitionGrads`) instead of their sum; run it through
    :meth:`Coded.round`, which wraps the algorithm with :func:`partitionwise`.

    Raises:
        ValueError: ``problem.n_workers`` differs from the code's number of partitions;
            unknown ``encode``.
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
    encode = check_choice("encode", encode, ENCODINGS)
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

        def parts_fn(x, data_i, key, hp):
            f, g = parts_vg(x, data_i)
            sg = g
            if base_sgrad is not None:
                keys = jax.random.split(key, data_i["coef"].shape[0])
                kw = {h: hp[h] for h in hyper}
                sg = jax.vmap(lambda p, kk: base_sgrad(x, p, kk, **kw))(data_i["parts"], keys)
            rows = PartitionGrads(data_i["coef"][:, None] * sg, data_i["coef"] != 0)
            return data_i["share"] @ f, data_i["share"] @ g, rows

        if encode == "partitions":
            return parts_fn

        return fn

    cfg = {"problem": "coded", "code": dict(code.config), "base": dict(problem.config)}
    if encode != "combination":
        cfg["encode"] = encode
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
    return Coded(prob, oracle, code.aggregation(), code, encode)
