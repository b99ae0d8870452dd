"""One simulator round as a pipeline of stages, composed per method.

::

    x_w = downlink(x)                          the point the workers hold (x itself by default)
    oracle_i(x_w) -> (f_i, grad f_i, y_i)      exact local gradient and the one the method sees
    encoder_i: g_i, mstate, Message            the Algorithm's mechanism (EF21, LAG, ...)
    participation -> mask                      who answers (stale g_i / frozen state otherwise)
    aggregation -> g                           mean, mean of the answering, decode, majority
    server optimizer: x <- x + update(g)       optax (``optax.sgd(gamma)`` by default)

A :class:`Round` holds the stages; :func:`worker_fns` turns it into the per-worker functions
(no collectives) and :func:`server_fns` into the server's (replicated) step, which the engines
of :mod:`ratedist.sim.engines` drive. The metrics of a step are those of the workers' point
``x_w`` (equal to ``x`` unless the downlink quantizes the weights): ``f(x_w)``,
``||grad f(x_w)||^2``, ``G``, the server error and the 3PC residual.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ratedist.sim.method import Algorithm, Shared, as_dtype, check_gradient_kind
from ratedist.sim.stages import (
    Aggregation,
    Downlink,
    Participation,
    downlink_init,
    downlink_update,
    downlink_weights,
    everyone,
    identity_downlink,
    mean,
    server_step_range,
    server_transform,
)
from ratedist.sim.trace import DIAGNOSTIC_FIELDS

#: fold_in indices of the shared streams of a step (never worker indices).
_COIN = 0x7FFFFFFF
_SHARED = 0x7FFFFFFE
_PART = 0x7FFFFFFD
_DOWN = 0x7FFFFFFC


class Round(NamedTuple):
    """The stages of one simulator round.

    Attributes:
        algorithm: the workers' mechanism (encoder).
        participation: who answers (:func:`ratedist.sim.stages.everyone` by default).
        aggregation: how the server combines (:func:`ratedist.sim.stages.mean`).
        server: an ``optax.GradientTransformation``, a function ``hp -> transformation`` (to
            read swept hyperparameters), or None for ``optax.sgd(gamma)``.
        downlink: what the server broadcasts (:func:`ratedist.sim.stages.identity_downlink`).
        oracle: ``problem -> ((x, data_i, key, hp) -> (f_i, grad f_i, y_i))`` or None for
            the problem's own (exact local value and gradient; its stochastic gradient if
            any, with the problem's hyperparameters from ``hp``).
    """

    algorithm: Algorithm
    participation: Participation = everyone()
    aggregation: Aggregation = mean()
    server: Any = None
    downlink: Downlink = identity_downlink()
    oracle: Callable[..., Any] | None = None

    @property
    def default(self) -> bool:
        """Full participation, mean, ``optax.sgd(gamma)``, identity downlink: the 3PC round."""
        return (
            self.participation.sample is None
            and self.aggregation.weight is None
            and self.server is None
            and self.downlink.mode == "identity"
        )

    @property
    def hyper(self) -> dict[str, float]:
        """Scalar hyperparameters of all stages (inputs of the compiled program)."""
        return {**self.algorithm.hyper, **self.participation.hyper}


class SimState(NamedTuple):
    """Scan carry (per worker inside the engine: ``h``, ``y``, ``dist``, ``mstate``; the
    server's ``x``, ``g``, ``opt`` and ``down`` are replicated)."""

    x: Any
    g: Any
    h: Any
    y: Any
    dist: Any  # ||g_i^t - y^t||^2 per worker, carried for the 3PC residual (else None)
    mstate: Any
    opt: Any
    down: Any


class Local(NamedTuple):
    """What one worker contributes to the collectives of a step."""

    g_i: Any  # contribution to g (g_i, or w_i g_i), averaged
    ex: Any  # exact local gradient, averaged into grad f
    scal: Any  # [f_i, ||g_i - grad f_i||^2, 3PC residual, trigger, ||e_i||^2, rel. error], averaged
    mx: Any  # [3PC residual, worker step max, −worker step min], maxed
    ex_srv: Any  # exact local gradient at the server's point (weight quantization), else (0,)


#: per-worker diagnostics an Algorithm may report (:attr:`Algorithm.diagnostics`)
DIAGNOSTICS = ("ef_norm_sq", "quant_rel_error", "step_min", "step_max")


METRICS = (
    "f",
    "grad_norm_sq",
    "G",
    "server_error",
    "tpc_residual",
    "tpc_residual_max",
    "trigger_rate",
    *DIAGNOSTIC_FIELDS,
)


def checks_3pc(rnd: Round, A: float, check_3pc: bool) -> bool:
    """Whether the per-worker 3PC residual is recorded (a 3PC with known A, full
    participation and the sgd server; MARINA's inequality is on the server estimator)."""
    return (
        check_3pc
        and not math.isnan(A)
        and rnd.algorithm.lyapunov == "workers"
        and rnd.participation.sample is None
        and rnd.server is None
    )


def _diagnostics(algorithm: Algorithm, xg, g_i, mstate, hp, enabled: bool = True):
    """``(||e_i||^2, relative error, step min, step max)`` of a worker (NaN where the
    algorithm reports nothing, or when ``enabled`` is False)."""
    nan = jnp.full((), jnp.nan, g_i.dtype)
    if algorithm.diagnostics is None or not enabled:
        return nan, nan, nan, nan
    d = algorithm.diagnostics(xg, g_i, mstate, hp)
    unknown = set(d) - set(DIAGNOSTICS)
    if unknown:
        raise ValueError(
            f"algorithm {algorithm.name!r} reports unknown diagnostics {sorted(unknown)}; "
            f"allowed: {list(DIAGNOSTICS)}"
        )
    return tuple(jnp.asarray(d.get(k, nan), g_i.dtype) for k in DIAGNOSTICS)


def worker_fns(rnd: Round, problem: Any, has_A: bool, diagnostics: bool = True):
    """Per-worker pieces: ``local_init``/``local_step`` (no collectives), ``combine``,
    ``finish`` and ``zeros`` (the loop engine's running sums). ``diagnostics`` False skips the
    algorithm's per-step diagnostics (their fields are NaN).

    Every collective of a step comes after the local work, so the same local functions run
    under vmap/shard_map (collectives over the named axis) and under the sequential ``loop``
    engine (running sums over workers, one worker's temporaries at a time).
    """
    algorithm = rnd.algorithm
    n = problem.n_workers
    sgrad = problem.stochastic_grad_fn
    part_fn = rnd.participation.sample
    agg = rnd.aggregation
    stale = part_fn is not None and agg.stale
    at_server = rnd.downlink.mode == "weights"  # workers' point differs from the server's
    keep_h = has_A or "h" in algorithm.needs or part_fn is not None
    keep_y = has_A or "y" in algorithm.needs or part_fn is not None

    def pack(g_i, y, mstate):
        # State not read by the next step is not stored (saves N x d traffic per step). The
        # residual's ||h - y||^2 at step t+1 is this step's ||g_i - y||^2, carried as a scalar:
        # the next step then reads h only to update it, which lets XLA update h in place.
        dist = jnp.sum((g_i - y) ** 2) if has_A else None
        return (g_i if keep_h else None, y if keep_y else None, dist, mstate)

    if rnd.oracle is not None:
        grads = rnd.oracle(problem)
    else:

        def grads(x, data_i, kg, hp):
            """(f_i(x), exact gradient, the gradient the algorithm sees)."""
            f_i, ex = problem.local_value_and_grad(x, data_i)
            if sgrad is None:
                return f_i, ex, ex
            return f_i, ex, sgrad(x, data_i, kg, **{k: hp[k] for k in problem.hyper})

    def keys(key, t, idx, hp):
        sk = jax.random.fold_in(key, t)
        kg, kc = jax.random.split(jax.random.fold_in(sk, idx))
        coin = None
        if algorithm.coin:
            coin = jax.random.bernoulli(jax.random.fold_in(sk, _COIN), hp["p"])
        return sk, kg, kc, Shared(coin, jax.random.fold_in(sk, _SHARED), idx, n)

    def contribution(g_i, mask, idx, hp):
        if agg.weight is None:
            return g_i
        return as_dtype(agg.weight(mask, idx, n, hp), g_i) * g_i

    def server_grad(x, data_i):
        if not at_server:
            return jnp.zeros((0,), x.dtype)
        return problem.local_value_and_grad(x, data_i)[1]

    def local(g_i, mask, idx, hp, ex, f_i, err_i, tpc_i, trig, diag, ex_srv):
        ef, rel, smin, smax = diag
        return Local(
            contribution(g_i, mask, idx, hp),
            ex,
            jnp.stack([f_i, err_i, tpc_i, trig, ef, rel]),
            jnp.stack([tpc_i, smax, -smin]),
            ex_srv,
        )

    def zeros(x):
        """Neutral running sums of the loop engine (one Local)."""
        return Local(
            jnp.zeros_like(x),
            jnp.zeros_like(x),
            jnp.zeros((6,), x.dtype),
            jnp.full((3,), -jnp.inf, x.dtype),
            jnp.zeros_like(x) if at_server else jnp.zeros((0,), x.dtype),
        )

    def local_init(x0, data_i, idx, key, hp, x_server):
        """-> ((h, y, dist, mstate), Local, (err_i, bits, answered))."""
        _, kg, kc, shared = keys(key, 0, idx, hp)
        f_i, ex, y = grads(x0, data_i, kg, hp)
        check_gradient_kind(algorithm, y)
        g_i, mstate, msg = algorithm.init(y, kc, shared, hp)
        nan = jnp.full((), jnp.nan, x0.dtype)
        err_i = jnp.sum((g_i - ex) ** 2)
        everyone_ = jnp.ones((n,), bool)
        diag = _diagnostics(algorithm, y, g_i, mstate, hp, diagnostics)
        loc = local(
            g_i, everyone_, idx, hp, ex, f_i, err_i, nan, nan, diag, server_grad(x_server, data_i)
        )
        part = pack(g_i, y, mstate)
        return part, loc, (err_i, tuple(msg[:6]), jnp.ones((), bool))

    def local_step(part, x, t, data_i, idx, key, hp, x_server):
        """One worker's step at the workers' new point ``x`` (the server's is ``x_server``)."""
        h, y, dist, mstate = part
        sk, kg, kc, shared = keys(key, t, idx, hp)
        f_i, ex, xg = grads(x, data_i, kg, hp)
        g_i, new_mstate, msg = algorithm.step(h, y, xg, mstate, kc, shared, hp)
        new = pack(g_i, xg, new_mstate)
        mask = jnp.ones((n,), bool)
        active = jnp.ones((), bool)
        if part_fn is not None:
            mask = part_fn(jax.random.fold_in(sk, _PART), t, n, hp)
            active = mask[idx]
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, part)
            msg = msg._replace(**{f: getattr(msg, f) * active for f in msg._fields})
            if stale:
                g_i = jnp.where(active, g_i, h)
        if has_A:  # new[2] = ||g_i - xg||^2, dist = ||h - y||^2
            one_minus_A = as_dtype(hp["tpc.one_minus_A"], x)
            B = as_dtype(hp["tpc.B"], x)
            tpc_i = new[2] - one_minus_A * dist - B * jnp.sum((xg - y) ** 2)
        else:
            tpc_i = jnp.full((), jnp.nan, x.dtype)
        trig = msg.triggered if algorithm.has_trigger else jnp.full((), jnp.nan, x.dtype)
        err_i = jnp.sum((g_i - ex) ** 2)
        diag = _diagnostics(algorithm, xg, g_i, new[3], hp, diagnostics)
        loc = local(
            g_i, mask, idx, hp, ex, f_i, err_i, tpc_i, trig, diag, server_grad(x_server, data_i)
        )
        # this step's bits (cumulated on the host in float64) and whether the worker answered
        return new, loc, (err_i, tuple(msg[:6]), active)

    def combine(g_mean):
        """The server's ``g`` from the workers' averaged contributions."""
        if agg.weight is None:
            return g_mean
        g = g_mean * n
        return g if agg.finish is None else agg.finish(g)

    def finish(g, gfull, scal, mx, gsrv, sstep):
        # trigger_rate is NaN at t = 0 and for trigger-free methods: the workers report NaN
        gn = jnp.sum(gfull**2)
        return {
            "f": scal[0],
            "grad_norm_sq": gn,
            "G": scal[1],
            "server_error": jnp.sum((g - gfull) ** 2),
            "tpc_residual": scal[2],
            "tpc_residual_max": mx[0],
            "trigger_rate": scal[3],
            "grad_norm_sq_server": jnp.sum(gsrv**2) if at_server else gn,
            "ef_norm_sq": scal[4],
            "quant_rel_error": scal[5],
            "worker_step_min": -mx[2],
            "worker_step_max": mx[1],
            "server_step_min": sstep[0],
            "server_step_max": sstep[1],
        }

    return local_init, local_step, combine, finish, zeros


def server_fns(rnd: Round):
    """``(server_init, server_step)`` of the round, replicated on every worker.

    ``server_init(x0, key, hp) -> (opt, down, x_w, bits, steps)``;
    ``server_step(x, g, opt, down, t, key, hp) -> (x, x_w, opt, down, bits, steps)``, with
    ``steps`` the (min, max) effective step size of the update
    (:func:`ratedist.sim.stages.server_step_range`).
    """
    down = rnd.downlink

    def server_init(x0, key, hp):
        opt = server_transform(rnd.server, hp, x0).init(x0)
        dkey = jax.random.fold_in(jax.random.fold_in(key, 0), _DOWN)
        dstate, xw, bits = downlink_init(down, x0, dkey)
        nan = jnp.full((2,), jnp.nan, x0.dtype)
        return opt, dstate, xw, bits, nan

    def server_step(x, g, opt, dstate, t, key, hp):
        tx = server_transform(rnd.server, hp, g)
        updates, opt = tx.update(g, opt, x)
        steps = server_step_range(rnd.server, opt, hp, x)
        dkey = jax.random.fold_in(jax.random.fold_in(key, t), _DOWN)
        updates, dstate, ubits = downlink_update(down, dstate, updates, dkey)
        x = optax.apply_updates(x, updates)
        xw, dstate, bits = downlink_weights(down, dstate, x, dkey, ubits)
        return x, xw, opt, dstate, bits, steps

    return server_init, server_step
