"""The simulator's runner: ``run(algorithm, problem, ...) -> Trace``.

One step of every method (arXiv 2202.00998, Algorithm 1, with the stages of
:mod:`ratedist.sim.round`; defaults shown):

    x^{t+1} = x^t − gamma g^t                                         (server optimizer)
    g_i^{t+1} = mechanism_i(g_i^t, grad_i(x^t), grad_i(x^{t+1}))     (per worker)
    g^{t+1} = (1/n) sum_i g_i^{t+1}                                   (aggregation)

written for one worker against the axis ``"workers"`` (:mod:`ratedist.sim.engines`), driven by
``lax.scan`` in jitted chunks whose state buffers are donated, with a tqdm bar between chunks.
The metrics of the state at ``t = 0..steps`` are recorded (``steps + 1`` entries).

Scalars — the step size ``gamma``, the method's ``zeta``/``p``, a straggler probability, the
3PC constants — are inputs of the compiled program: runs that differ only in them reuse it,
and a sweep over them (``gamma=[...]``, ``hyper={...}``) is ONE vmapped program.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_choice, check_int, check_positive
from ratedist.sim import distributed, engines
from ratedist.sim.method import Algorithm, bits_dtype
from ratedist.sim.problems import Problem
from ratedist.sim.round import Round, checks_3pc, server_fns, worker_fns
from ratedist.sim.stages import (
    Aggregation,
    Downlink,
    Participation,
    check_server,
)
from ratedist.sim.trace import Trace, assemble, health, to_host


def theory_gamma(
    algorithm: Algorithm, problem: Problem, hyper: Mapping[str, float] | None = None
) -> float:
    """The theoretical step size.

    3PC methods and MARINA: ``gamma = 1/M1``, ``M1 = L_- + L_+ sqrt(B/A)`` (arXiv 2202.00998,
    Thm 5.5; MARINA: arXiv 2102.07845 Thm 2.1 with ``A = p``, ``B = (1 − p) omega/n``).
    ``L_+`` is ``problem.L_plus`` (exact or bound, see ``problem.labels``; not needed when
    ``B = 0``, as for GD, so coded problems without ``L_+`` have it). Methods without
    3PC constants (compressed SGD, EF14): the descent-lemma step ``1/L_-`` (SPEC §1).
    ``hyper`` overrides the method's hyperparameters (``zeta``, ``p``).

    Raises:
        ValueError: the problem has no ``L_minus``/``L_plus`` or the compressor declares no
            alpha/omega needed for ``A``/``B``.
    """
    if isinstance(algorithm, Round):
        algorithm = algorithm.algorithm
    if problem.L_minus is None:
        raise ValueError(
            f"gamma must be a number for problem {problem.name!r}: it has no smoothness constant"
        )
    if algorithm.A is None:
        return 1.0 / problem.L_minus
    A, B = algorithm.constants(problem.dim, problem.n_workers, hyper)
    if A is None or B is None:
        raise ValueError(
            f"gamma must be a number for algorithm {algorithm.name!r}: its A and B are unknown "
            "(the compressor declares no alpha/omega, or shares randomness across workers)"
        )
    if B == 0:  # M1 = L_-: L_+ does not enter (GD; needed for problems without L_+)
        return 1.0 / problem.L_minus
    L_plus = problem.L_plus if problem.L_plus is not None else problem.L_plus_upper
    if L_plus is None:
        raise ValueError(f"gamma must be a number for problem {problem.name!r}: L_plus unknown")
    return 1.0 / (problem.L_minus + L_plus * math.sqrt(B / A))


def make_round(
    algorithm: Algorithm | Round,
    *,
    participation: Participation | None = None,
    aggregation: Aggregation | None = None,
    server: Any = None,
    downlink: Downlink | None = None,
    oracle: Any = None,
) -> Round:
    """A :class:`~ratedist.sim.round.Round` of ``algorithm`` with the given stages (the others
    default, or those of ``algorithm`` when it is already a Round).

    Raises:
        TypeError: a stage of the wrong type.
    """
    if isinstance(algorithm, Round):
        rnd = algorithm
    elif isinstance(algorithm, Algorithm):
        rnd = Round(algorithm)
    else:
        raise TypeError(
            f"algorithm must be a ratedist.sim Algorithm (e.g. ef21(make('top-k:k=1'))) or a "
            f"Round, got {type(algorithm).__name__}"
        )
    for name, value, cls in (
        ("participation", participation, Participation),
        ("aggregation", aggregation, Aggregation),
        ("downlink", downlink, Downlink),
    ):
        if value is not None and not isinstance(value, cls):
            raise TypeError(
                f"{name} must be a ratedist.sim {cls.__name__} (see ratedist.sim.stages), "
                f"got {type(value).__name__}"
            )
    if oracle is not None and not callable(oracle):
        raise TypeError(f"oracle must be a function problem -> oracle, got {oracle!r}")
    changes = {
        "participation": participation,
        "aggregation": aggregation,
        "server": check_server(server),
        "downlink": downlink,
        "oracle": oracle,
    }
    return rnd._replace(**{k: v for k, v in changes.items() if v is not None})


class _Batch(NamedTuple):
    """The hyperparameter points of a run: host values and the device inputs."""

    size: int | None  # number of sweep points, None for a single run
    points: list[dict[str, float]]  # per point: every hyperparameter, gamma, A, B
    hp: dict[str, Any]  # device inputs (canonical float), (size,) arrays when batched


def _sweep_values(name: str, v: Any) -> list[float] | float:
    if isinstance(v, (list, tuple, np.ndarray, jax.Array)):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a number or a 1-D sequence of numbers, got {v!r}")
        return [float(u) for u in a]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers, got {v!r}")
    return float(v)


def _points(rnd: Round, problem: Problem, gamma: Any, hyper: Mapping[str, Any] | None):
    """Expand ``gamma`` and ``hyper`` (scalars or equal-length 1-D sequences) into points."""
    own = {**problem.hyper, **rnd.hyper}
    hyper = dict(hyper or {})
    unknown = sorted(set(hyper) - set(own))
    if unknown:
        raise ValueError(
            f"hyper has unknown names {unknown}; this round's hyperparameters: {sorted(own)}"
        )
    vals: dict[str, Any] = {k: _sweep_values(f"hyper[{k!r}]", v) for k, v in hyper.items()}
    if not (gamma is None or (isinstance(gamma, str) and gamma == "theory")):
        if isinstance(gamma, str):
            raise ValueError(f"gamma must be a positive number or 'theory', got {gamma!r}")
        vals["gamma"] = _sweep_values("gamma", gamma)
    sizes = {k: len(v) for k, v in vals.items() if isinstance(v, list)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"swept hyperparameters must have equal lengths, got {sizes}")
    size = next(iter(sizes.values())) if sizes else None
    pts = []
    for j in range(size or 1):
        pick = {k: (v[j] if isinstance(v, list) else v) for k, v in vals.items()}
        p = {**own, **{k: v for k, v in pick.items() if k != "gamma"}}
        checks = {
            **{k: (lambda v, k=k: check_positive(k, v)) for k in problem.hyper},
            **rnd.algorithm.hyper_checks,
            **rnd.participation.hyper_checks,
        }
        for k in hyper:
            p[k] = checks[k](p[k]) if k in checks else p[k]
        g = pick.get("gamma")
        g = theory_gamma(rnd.algorithm, problem, p) if g is None else check_positive("gamma", g)
        A, B = rnd.algorithm.constants(problem.dim, problem.n_workers, p)
        A = float("nan") if A is None or B is None else float(A)
        B = float("nan") if math.isnan(A) else float(B)
        pts.append({**p, "gamma": float(g), "tpc.one_minus_A": 1 - A, "tpc.B": B, "A": A})
    dt = bits_dtype()
    keys = [k for k in pts[0] if k != "A"]
    if size is None:
        hp = {k: jnp.asarray(pts[0][k], dt) for k in keys}
    else:
        hp = {k: jnp.asarray([p[k] for p in pts], dt) for k in keys}
    return _Batch(size, pts, hp)


#: The last few jitted (init, chunk) pairs, so that runs of the SAME round stages and problem
#: objects (other keys, steps, chunk sizes or hyperparameter values) reuse XLA's compilation.
#: Entries hold strong references and are matched by identity, so a recycled ``id`` can
#: never alias.
_JIT_CACHE: OrderedDict = OrderedDict()
_JIT_CACHE_SIZE = 4


def _build(rnd, problem, has_A, engine, aggregate, diagnostics=True):
    worker = worker_fns(rnd, problem, has_A, diagnostics)
    return engines.build(engine, worker, server_fns(rnd), problem.n_workers, aggregate)


def _jitted(rnd, problem, has_A, engine, aggregate, replicas, batched, diagnostics=True):
    objs = (*rnd, problem)
    ck = (tuple(map(id, objs)), has_A, engine, aggregate, replicas, batched, diagnostics)
    hit = _JIT_CACHE.get(ck)
    if hit is not None and all(a is b for a, b in zip(hit[0], objs, strict=True)):
        _JIT_CACHE.move_to_end(ck)
        return hit[1], hit[2]
    init, chunk_fn = _build(rnd, problem, has_A, engine, aggregate, diagnostics)
    if replicas is not None:
        init = jax.vmap(init, in_axes=(None, None, None, 0, None))
        chunk_fn = jax.vmap(chunk_fn, in_axes=(0, None, None, None, 0, None))
    if batched:
        init = jax.vmap(init, in_axes=(None, None, None, None, 0))
        chunk_fn = jax.vmap(chunk_fn, in_axes=(0, None, None, None, None, 0))
    init_j = jax.jit(init)
    chunk_j = jax.jit(chunk_fn, donate_argnums=(0,))
    _JIT_CACHE[ck] = (objs, init_j, chunk_j)
    while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
        _JIT_CACHE.popitem(last=False)
    return init_j, chunk_j


def clear_compiled_cache() -> None:
    """Forget the cached compiled steps (and the objects they hold)."""
    _JIT_CACHE.clear()


def _as_dtype(a: Any, dtype: Any) -> Any:
    """A data leaf in the simulation dtype; integer leaves (sparse indices) stay integers."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return jnp.asarray(a)
    return jnp.asarray(a, dtype)


class Stepper(NamedTuple):
    """Compiled pieces of a run (what :func:`run` drives; exposed for benchmarks).

    Attributes:
        init: ``() -> (state, outputs_at_t0)``.
        advance: ``(state, t_start, size) -> (state, outputs)``: ``size`` steps from step
            ``t_start`` in one jitted ``lax.scan`` (the state buffers are donated: do not reuse
            the state passed in).
        gamma, A, B: step size and 3PC constants (NaN when unknown); arrays over the points
            of a hyperparameter sweep.
        dtype: simulation dtype.
        round: the :class:`~ratedist.sim.round.Round` run.
        lead: number of leading batch axes of the outputs (sweep points, replicas).
        hyper: the hyperparameters (arrays over the sweep points).
    """

    init: Any
    advance: Any
    gamma: Any
    A: Any
    B: Any
    dtype: Any
    round: Round
    lead: int
    hyper: dict[str, Any]


def make_stepper(
    algorithm: Algorithm | Round,
    problem: Problem,
    *,
    gamma: Any,
    key: Any,
    engine: str = engines.DEFAULT_ENGINE,
    replicas: int | None = None,
    aggregate: str | None = None,
    dtype: Any = None,
    check_3pc: bool = True,
    hyper: Mapping[str, Any] | None = None,
    diagnostics: bool = True,
    **stages: Any,
) -> Stepper:
    """Build the jitted init/chunk functions of a run (see :func:`run` for the arguments)."""
    rnd = make_round(algorithm, **stages)
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a ratedist.sim Problem, got {type(problem).__name__}")
    check_choice("engine", engine, engines.ENGINES)
    if rnd.participation.check is not None:
        rnd.participation.check(problem.n_workers)
    if replicas is not None:
        replicas = check_int("replicas", replicas, min_value=1)
    batch = _points(rnd, problem, gamma, hyper)
    A0 = batch.points[0]["A"]
    has_A = checks_3pc(rnd, A0, check_3pc)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    data = jax.tree_util.tree_map(lambda a: _as_dtype(a, dtype), problem.data)
    x0 = jnp.asarray(problem.x0, dtype)
    idx = jnp.arange(problem.n_workers, dtype=jnp.uint32)
    if engine == "shard_map" and distributed.is_multiprocess():
        # global arrays: each process builds only its own workers' rows
        data, idx = distributed.worker_sharded((data, idx), problem.n_workers)
    if not isinstance(diagnostics, bool):
        raise TypeError(f"diagnostics must be a bool, got {diagnostics!r}")
    init_j, chunk_j = _jitted(
        rnd, problem, has_A, engine, aggregate, replicas, batch.size is not None, diagnostics
    )
    if replicas is not None:
        run_key = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas))
    else:
        run_key = key
    hp = batch.hp

    def do_init():
        return init_j(x0, data, idx, run_key, hp)

    def advance(state, t_start, size):
        ts = jnp.arange(t_start, t_start + size, dtype=jnp.uint32)
        return chunk_j(state, ts, data, idx, run_key, hp)

    def per_point(k):
        vals = [p[k] for p in batch.points]
        return vals[0] if batch.size is None else np.asarray(vals)

    A = per_point("A")
    B = np.where(np.isnan(A), np.nan, per_point("tpc.B"))
    B = float(B) if batch.size is None else B
    names = [*problem.hyper, *rnd.hyper]
    lead = (batch.size is not None) + (replicas is not None)
    return Stepper(
        do_init,
        advance,
        per_point("gamma"),
        A,
        B,
        dtype,
        rnd,
        lead,
        {k: per_point(k) for k in names},
    )


def run(
    algorithm: Algorithm | Round,
    problem: Problem,
    *,
    steps: int,
    key: Any,
    engine: str = engines.DEFAULT_ENGINE,
    replicas: int | None = None,
    chunk: int | None = None,
    progress: bool = False,
    gamma: Any = None,
    aggregate: str | None = None,
    dtype: Any = None,
    violation_rtol: float | None = None,
    check_3pc: bool = True,
    hyper: Mapping[str, Any] | None = None,
    participation: Participation | None = None,
    aggregation: Aggregation | None = None,
    server: Any = None,
    downlink: Downlink | None = None,
    oracle: Any = None,
    diagnostics: bool = True,
) -> Trace:
    """Simulate ``algorithm`` on ``problem`` for ``steps`` steps.

    Args:
        algorithm: an :class:`~ratedist.sim.method.Algorithm` (``gd()``, ``ef21(C)``, ...) or
            a :class:`~ratedist.sim.round.Round` with its stages.
        problem: a :class:`~ratedist.sim.problems.Problem`.
        steps: number of steps T (>= 1); the trace has T + 1 entries.
        key: a JAX PRNG key; step t uses ``fold_in(key, t)``, worker i
            ``fold_in(fold_in(key, t), i)``, the shared coin ``fold_in(fold_in(key, t), 2^31−1)``,
            the shared key of PermK-like compressors ``fold_in(fold_in(key, t), 2^31−2)``,
            participation ``2^31−3`` and the downlink ``2^31−4``. Every point of a sweep uses
            the same numbers (common random numbers).
        engine: "group" (default; one device, a ``lax.scan`` over groups of workers sized
            to the cache, vmapped inside: :func:`ratedist.sim.engines.group_size`), "vmap"
            (one device, all workers batched), "shard_map" (all ``jax.devices()``; N must be
            a multiple of the device count; after
            :func:`ratedist.sim.distributed.initialize`, the devices of all processes, and
            every process gets the complete trace) or "loop" (one device, a ``lax.scan``
            over workers inside each step: one worker's temporaries at a time). "group" and
            "loop" give vmap's numbers to float rounding (the order of the sums over
            workers); vmap and shard_map with ``aggregate="gather"`` agree bit for bit.
        replicas: run this many independent copies (keys ``fold_in(key, r)`` vmapped) for
            expectations of randomized methods; adds a leading replica axis to the trace.
        chunk: steps per jitted ``lax.scan`` call (default: ≤ 1000, balanced); a tqdm bar
            and the divergence check run between chunks.
        progress: show a tqdm progress bar.
        gamma: step size > 0, None/"theory" for :func:`theory_gamma`, or a 1-D sequence of
            step sizes: a sweep run as one vmapped program (a leading axis in the trace).
        aggregate: "gather" or "psum" (default: "gather" for vmap, "psum" for shard_map;
            ignored by "group" and "loop"; see :mod:`ratedist.sim.engines`).
        dtype: simulation dtype (default: float64 under x64, else float32; float64 without
            x64 falls back to float32).
        diagnostics: record the algorithm's per-step diagnostics (``Trace.ef_norm_sq``,
            ``quant_rel_error``, ``worker_step_min/max``); False skips them (NaN), which saves
            two passes over each worker's vector per step for the error-feedback methods
            (measured ≈ 10 % of an EF14 step at N = 8, d = 1e5; ``benchmarks/README.md``).
        check_3pc: record the per-worker 3PC residual (needs ``g_i^t`` and the previous
            gradient kept in the state: for EF21 one more ``N x d`` buffer per step); False
            sets ``tpc_residual`` to NaN and runs faster.
        violation_rtol: relative tolerance of the Lyapunov check (default ``1000 * eps`` of
            ``dtype``: ≈ the rounding of sums of up to 10^6 terms).
        hyper: values of the round's hyperparameters (``zeta``, ``p``, ``straggle_p``, ...),
            each a number or a 1-D sequence (swept together with ``gamma``; equal lengths).
        participation, aggregation, server, downlink, oracle: the round's stages
            (:mod:`ratedist.sim.stages`); None keeps the default (everyone, mean,
            ``optax.sgd(gamma)``, identity, the problem's oracle).

    Returns:
        A :class:`~ratedist.sim.trace.Trace`.

    Raises:
        TypeError: algorithm/problem/stage of the wrong type.
        ValueError: ``steps`` <= 0, ``gamma`` <= 0 or unavailable theory step size, unknown
            engine/aggregate/hyperparameter, N not divisible by the device count.

    Warns:
        RuntimeWarning: the run diverged (non-finite metrics); the trace is truncated.
    """
    steps = check_int("steps", steps, min_value=1)
    if chunk is not None:
        chunk = check_int("chunk", chunk, min_value=1)
    stepper = make_stepper(
        algorithm,
        problem,
        gamma=gamma,
        key=key,
        engine=engine,
        replicas=replicas,
        aggregate=aggregate,
        dtype=dtype,
        check_3pc=check_3pc,
        hyper=hyper,
        diagnostics=diagnostics,
        participation=participation,
        aggregation=aggregation,
        server=server,
        downlink=downlink,
        oracle=oracle,
    )
    rtol = (
        1000 * float(jnp.finfo(stepper.dtype).eps)
        if violation_rtol is None
        else check_positive("violation_rtol", violation_rtol)
    )
    lead = stepper.lead
    n_chunks = math.ceil(steps / (chunk or 1000))
    size = math.ceil(steps / n_chunks)
    fetch = distributed.fetch  # the identity in one process
    state, out0 = stepper.init()
    # several processes: outputs gathered on every process (a collective each chunk)
    outs = [to_host(fetch(out0), lead, single=True)]
    done = 0
    bar = _progress(steps, progress)
    try:
        for _ in range(n_chunks):
            take = min(size, steps - done)
            state, out = stepper.advance(state, 1 + done, take)
            outs.append(to_host(fetch(out), lead, single=False))
            done += take
            if bar is not None:
                bar.update(take)
            bad = ~np.isfinite(health(outs[-1]))
            if bad.any() and (lead == 0 or bad.any(axis=-1).all()):
                break
    finally:
        if bar is not None:
            bar.close()
    rnd = stepper.round
    lyap = rnd.algorithm.lyapunov if rnd.default else None
    return assemble(
        outs,
        lead,
        problem,
        rnd.algorithm.name,
        stepper.gamma,
        stepper.A,
        stepper.B,
        steps,
        rtol,
        np.asarray(fetch(state.x)),
        lyap,
        stepper.hyper,
    )


def _progress(total, on):
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step")
