"""The simulator's runner: ``run(algorithm, problem, ...) -> Trace``.

One step of every method (arXiv 2202.00998, Algorithm 1):

    x^{t+1} = x^t − gamma g^t
    g_i^{t+1} = mechanism_i(g_i^t, grad_i(x^t), grad_i(x^{t+1}))     (per worker)
    g^{t+1} = (1/n) sum_i g_i^{t+1}                                   (collective)

written for one worker against the axis ``"workers"`` (:mod:`ratedist.sim.engines`), driven by
``lax.scan`` in jitted chunks whose state buffers are donated, with a tqdm bar between chunks.
The metrics of the state at ``t = 0..steps`` are recorded (``steps + 1`` entries).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ratedist._validation import check_choice, check_int, check_positive
from ratedist.sim.algorithms import Algorithm, Shared
from ratedist.sim.engines import AGGREGATIONS, ENGINES, Aggregator, run_on_engine
from ratedist.sim.problems import Problem

#: fold_in indices of the shared coin and of the shared key (never worker indices).
_COIN = 0x7FFFFFFF
_SHARED = 0x7FFFFFFE


class Bits(NamedTuple):
    """Cumulative bits sent per worker, raw counts, arrays ``(..., steps + 1, n_workers)``.

    ``bits[t]`` counts every message needed to form ``g^0, ..., g^t`` (so ``bits[0]`` is the
    initial message). Wire convention for uncompressed floats: ``FLOAT_BITS`` (32) per entry.

    Attributes:
        value: bit-packed value symbols (CompressInfo.value_bits).
        index: sparse positions (CompressInfo.index_bits).
        side: scales/norms (CompressInfo.side_bits).
        entropy: ideal entropy-coded payload of the compressor (CompressInfo.entropy_bits).
        flag: 1 bit per LAG/CLAG trigger decision.
        full: uncompressed d-vectors (GD, LAG sends, MARINA/3PCv5 coin steps, initial g_i^0).
    """

    value: np.ndarray
    index: np.ndarray
    side: np.ndarray
    entropy: np.ndarray
    flag: np.ndarray
    full: np.ndarray

    @property
    def container(self) -> np.ndarray:
        """Convention ``container``: bit-packed wire size (values + indices + side + flags + full)."""
        return self.value + self.index + self.side + self.flag + self.full

    @property
    def entropy_coded(self) -> np.ndarray:
        """Convention ``entropy``: ideal entropy-coded compressor payloads + flags + full sends."""
        return self.entropy + self.flag + self.full

    def total(self, convention: str = "container") -> np.ndarray:
        """Cumulative bits per worker under ``convention`` ("container" or "entropy")."""
        if convention == "container":
            return self.container
        if convention == "entropy":
            return self.entropy_coded
        raise ValueError(f"convention must be one of ['container', 'entropy'], got {convention!r}")


class Trace(NamedTuple):
    """Per-step record of a run (numpy; leading replica axis when ``replicas`` was given).

    Step arrays have ``steps + 1`` entries (state ``t = 0..steps``); after a divergence they
    are truncated to the recorded steps (replicas: NaN after each replica's divergence).

    Attributes:
        f: ``f(x^t)``.
        f_gap: ``f(x^t) − f*`` (``f*`` = ``problem.f_star``, or 0 when None).
        grad_norm_sq: exact ``||grad f(x^t)||^2``.
        G: ``(1/n) sum_i ||g_i^t − grad f_i(x^t)||^2`` (exact local gradients).
        server_error: ``||g^t − grad f(x^t)||^2``.
        worker_error: ``||g_i^t − grad f_i(x^t)||^2`` per worker ``(…, steps+1, n)``; for a 3PC
            it is the compression error of the map ``C_{h,y}(x)``.
        lyapunov: ``Phi^t = f(x^t) − f* + gamma/(2A) E^t`` with ``E = G`` (3PCs) or
            ``server_error`` (MARINA); NaN when ``A`` is unknown.
        lyapunov_slack: ``Phi^{t+1} − Phi^t + (gamma/2) ||grad f(x^t)||^2`` (last entry NaN);
            ``<= 0`` in expectation by the 3PC theorem (pathwise for deterministic compressors).
        violations: number of steps with ``slack > tol_t``,
            ``tol_t = violation_rtol (|f^t| + |f^{t+1}| + gamma/(2A)(E^t + E^{t+1}) +
            (gamma/2)||grad f(x^t)||^2)``: the rounding of the sums that make ``f`` and ``G``.
        tpc_residual: ``(1/n) sum_i [||g_i^{t} − x_i||^2 − (1 − A)||h_i − y_i||^2 −
            B||x_i − y_i||^2]`` of the step that produced ``g^t`` (NaN at ``t = 0`` or when A/B
            unknown, and for MARINA whose inequality is on the server estimator); ``<= 0`` in
            expectation for a 3PC, on every path for deterministic ones.
        tpc_residual_max: the max over workers of the same residual.
        trigger_rate: fraction of workers whose trigger fired (LAG/CLAG; NaN otherwise).
        bits: :class:`Bits`, cumulative per worker.
        diverged_at: first step index with a non-finite metric, −1 if none (per replica).
        x: final iterate ``(…, d)``.
        gamma, A, B: step size and 3PC constants used (A, B NaN when unknown).
        steps: number of steps requested.
        violation_tol: ``violation_rtol`` used.
    """

    f: np.ndarray
    f_gap: np.ndarray
    grad_norm_sq: np.ndarray
    G: np.ndarray
    server_error: np.ndarray
    worker_error: np.ndarray
    lyapunov: np.ndarray
    lyapunov_slack: np.ndarray
    violations: np.ndarray
    tpc_residual: np.ndarray
    tpc_residual_max: np.ndarray
    trigger_rate: np.ndarray
    bits: Bits
    diverged_at: np.ndarray
    x: np.ndarray
    gamma: float
    A: float
    B: float
    steps: int
    violation_tol: float


class SimState(NamedTuple):
    """Scan carry (per worker inside the engine; ``x``, ``g`` replicated)."""

    x: Any
    g: Any
    h: Any
    y: Any
    dist: Any  # ||g_i^t - y^t||^2 per worker, carried for the 3PC residual (else None)
    mstate: Any


def theory_gamma(algorithm: Algorithm, problem: Problem) -> float:
    """The theoretical step size.

    3PC methods and MARINA: ``gamma = 1/M1``, ``M1 = L_- + L_+ sqrt(B/A)`` (arXiv 2202.00998,
    Thm 5.5; MARINA: arXiv 2102.07845 Thm 2.1 with ``A = p``, ``B = (1 − p) omega/n``).
    ``L_+`` is ``problem.L_plus`` (exact or bound, see ``problem.labels``). Methods without
    3PC constants (compressed SGD, EF14): the descent-lemma step ``1/L_-`` (SPEC §1).

    Raises:
        ValueError: the problem has no ``L_minus``/``L_plus`` or the compressor declares no
            alpha/omega needed for ``A``/``B``.
    """
    if problem.L_minus is None:
        raise ValueError(
            f"gamma must be a number for problem {problem.name!r}: it has no smoothness constant"
        )
    if algorithm.A is None:
        return 1.0 / problem.L_minus
    A, B = algorithm.constants(problem.dim, problem.n_workers)
    if A is None or B is None:
        raise ValueError(
            f"gamma must be a number for algorithm {algorithm.name!r}: its A and B are unknown "
            "(the compressor declares no alpha/omega, or shares randomness across workers)"
        )
    L_plus = problem.L_plus if problem.L_plus is not None else problem.L_plus_upper
    if L_plus is None:
        raise ValueError(f"gamma must be a number for problem {problem.name!r}: L_plus unknown")
    return 1.0 / (problem.L_minus + L_plus * math.sqrt(B / A))


_METRICS = (
    "f",
    "grad_norm_sq",
    "G",
    "server_error",
    "tpc_residual",
    "tpc_residual_max",
    "trigger_rate",
)


class _Local(NamedTuple):
    """What one worker contributes to the collectives of a step."""

    g_i: Any  # new estimator, averaged into g
    ex: Any  # exact local gradient, averaged into grad f
    scal: Any  # [f_i, ||g_i - grad f_i||^2, 3PC residual, trigger], averaged
    tpc: Any  # 3PC residual, maxed


def _worker_fns(
    algorithm: Algorithm, problem: Problem, gamma: float, A: float, B: float, check_3pc: bool
):
    """Per-worker pieces: ``local_init``/``local_step`` (no collectives) and ``finish``.

    Every collective of a step comes after the local work, so the same local functions run
    under vmap/shard_map (collectives over the named axis) and under the sequential ``loop``
    engine (running sums over workers, one worker's temporaries at a time).
    """
    sgrad = problem.stochastic_grad_fn
    # The per-worker 3PC residual only makes sense for a 3PC (MARINA's inequality is on the
    # server estimator, not per worker): NaN otherwise.
    has_A = check_3pc and not math.isnan(A) and algorithm.lyapunov == "workers"
    A_, B_ = (A, B) if has_A else (1.0, 0.0)
    keep_h = has_A or "h" in algorithm.needs
    keep_y = has_A or "y" in algorithm.needs

    def pack(g_i, y, mstate):
        # State not read by the next step is not stored (saves N x d traffic per step). The
        # residual's ||h - y||^2 at step t+1 is this step's ||g_i - y||^2, carried as a scalar:
        # the next step then reads h only to update it, which lets XLA update h in place.
        dist = jnp.sum((g_i - y) ** 2) if has_A else None
        return (g_i if keep_h else None, y if keep_y else None, dist, mstate)

    def grads(x, data_i, kg):
        """(f_i(x), exact gradient, the gradient the algorithm sees)."""
        f_i, ex = problem.local_value_and_grad(x, data_i)
        y = ex if sgrad is None else sgrad(x, data_i, kg)
        return f_i, ex, y

    def keys(key, t, idx):
        sk = jax.random.fold_in(key, t)
        kg, kc = jax.random.split(jax.random.fold_in(sk, idx))
        coin = None
        if algorithm.coin_p is not None:
            coin = jax.random.bernoulli(jax.random.fold_in(sk, _COIN), algorithm.coin_p)
        return kg, kc, Shared(coin, jax.random.fold_in(sk, _SHARED), idx, problem.n_workers)

    def local_init(x0, data_i, idx, key):
        """-> ((h, y, dist, mstate), _Local, (err_i, bits))."""
        kg, kc, shared = keys(key, 0, idx)
        f_i, ex, y = grads(x0, data_i, kg)
        g_i, mstate, msg = algorithm.init(y, kc, shared, gamma)
        nan = jnp.full((), jnp.nan, x0.dtype)
        err_i = jnp.sum((g_i - ex) ** 2)
        loc = _Local(g_i, ex, jnp.stack([f_i, err_i, nan, nan]), nan)
        part = pack(g_i, y, mstate)
        return part, loc, (err_i, tuple(msg[:6]))

    def local_step(part, x, t, data_i, idx, key):
        """One worker's step at the new iterate ``x`` (already ``x^t − gamma g^t``)."""
        h, y, dist, mstate = part
        kg, kc, shared = keys(key, t, idx)
        f_i, ex, xg = grads(x, data_i, kg)
        g_i, mstate, msg = algorithm.step(h, y, xg, mstate, kc, shared, gamma)
        part = pack(g_i, xg, mstate)
        if has_A:  # part[2] = ||g_i - xg||^2, dist = ||h - y||^2
            tpc_i = part[2] - (1 - A_) * dist - B_ * jnp.sum((xg - y) ** 2)
        else:
            tpc_i = jnp.full((), jnp.nan, x.dtype)
        trig = msg.triggered if algorithm.has_trigger else jnp.full((), jnp.nan, x.dtype)
        err_i = jnp.sum((g_i - ex) ** 2)
        loc = _Local(g_i, ex, jnp.stack([f_i, err_i, tpc_i, trig]), tpc_i)
        # this step's bits; cumulated on the host in float64
        return part, loc, (err_i, tuple(msg[:6]))

    def finish(g, gfull, scal, tpc_max):
        # trigger_rate is NaN at t = 0 and for trigger-free methods: the workers report NaN
        return {
            "f": scal[0],
            "grad_norm_sq": jnp.sum(gfull**2),
            "G": scal[1],
            "server_error": jnp.sum((g - gfull) ** 2),
            "tpc_residual": scal[2],
            "tpc_residual_max": tpc_max,
            "trigger_rate": scal[3],
        }

    return local_init, local_step, finish


def _collective_factory(local_init, local_step, finish, gamma):
    """``agg -> (init_w, chunk_w)`` for the vmap/shard_map engines."""

    def factory(agg: Aggregator):
        def combine(loc: _Local):
            g = agg.mean(loc.g_i)
            return g, finish(g, agg.mean(loc.ex), agg.mean(loc.scal), agg.max(loc.tpc))

        def init_w(x0, data_i, idx, key):
            part, loc, per = local_init(x0, data_i, idx, key)
            g, m = combine(loc)
            return SimState(x0, g, *part), (m, *per)

        def chunk_w(state, ts, data_i, idx, key):
            def body(s, t):
                x = s.x - gamma * s.g
                part, loc, per = local_step((s.h, s.y, s.dist, s.mstate), x, t, data_i, idx, key)
                g, m = combine(loc)
                return SimState(x, g, *part), (m, *per)

            return lax.scan(body, state, ts)

        return init_w, chunk_w

    return factory


_STATE_AXES = SimState(x=None, g=None, h=0, y=0, dist=0, mstate=0)
_OUT_AXES = ({k: None for k in _METRICS}, 0, 0)


def _loop_fns(local_init, local_step, finish, n, gamma):
    """The sequential engine: ``lax.scan`` over workers inside each step, running sums.

    One worker's d-sized temporaries at a time (cache-resident for moderate d) instead of
    N x d intermediates between XLA fusions; sums run in worker order, so results match the
    other engines to float rounding.
    """

    def add(acc, loc):
        return (
            acc[0] + loc.g_i,
            acc[1] + loc.ex,
            acc[2] + loc.scal,
            jnp.maximum(acc[3], loc.tpc),
        )

    def scan_workers(fn, carry0, xs):
        def wbody(acc, inp):
            part, loc, per = fn(*inp)
            return add(acc, loc), (part, per)

        acc, (parts, per) = lax.scan(wbody, carry0, xs)
        return acc, parts, per

    def update_workers(fn, carry0, parts, xs):
        """Like ``scan_workers``, but the state ``(h, y, dist, mstate)`` is updated in place.

        ``h``, ``dist`` and ``mstate`` ride in the carry and worker ``i`` overwrites its row:
        no N x d scan output to allocate, fill and copy back into the state each step. ``y``
        (the fresh gradient, whose new row does not depend on the old one) goes through the
        scan's inputs and outputs: in the carry, XLA CPU copied the whole N x d buffer once
        PER WORKER (measured: 20x slower at N = 128, d = 1e5).
        """
        row = lambda a, i: lax.dynamic_index_in_dim(a, i, keepdims=False)  # noqa: E731
        put = lambda a, v, i: lax.dynamic_update_index_in_dim(a, v, i, 0)  # noqa: E731
        h, y, dist, mstate = parts

        def wbody(carry, inp):
            acc, stacked = carry
            i, y_i, xs_i = inp
            h_i, dist_i, ms_i = jax.tree_util.tree_map(lambda a: row(a, i), stacked)
            part, loc, per = fn((h_i, y_i, dist_i, ms_i), *xs_i)
            new = (part[0], part[2], part[3])
            stacked = jax.tree_util.tree_map(lambda a, v: put(a, v, i), stacked, new)
            return (add(acc, loc), stacked), (part[1], per)

        (acc, (h, dist, mstate)), (y, per) = lax.scan(
            wbody, (carry0, (h, dist, mstate)), (jnp.arange(n), y, xs)
        )
        return acc, (h, y, dist, mstate), per

    def zeros(x):
        return (
            jnp.zeros_like(x),
            jnp.zeros_like(x),
            jnp.zeros((4,), x.dtype),
            jnp.full((), -jnp.inf, x.dtype),
        )

    def reduce(acc):
        g, gfull, scal, tpc = acc[0] / n, acc[1] / n, acc[2] / n, acc[3]
        return g, finish(g, gfull, scal, tpc)

    def init(x0, data, idx, key):
        acc, parts, per = scan_workers(
            lambda d_i, i: local_init(x0, d_i, i, key), zeros(x0), (data, idx)
        )
        g, m = reduce(acc)
        return SimState(x0, g, *parts), (m, *per)

    def chunk(state, ts, data, idx, key):
        def body(s, t):
            x = s.x - gamma * s.g
            acc, parts, per = update_workers(
                lambda p, d_i, i: local_step(p, x, t, d_i, i, key),
                zeros(x),
                (s.h, s.y, s.dist, s.mstate),
                (data, idx),
            )
            g, m = reduce(acc)
            return SimState(x, g, *parts), (m, *per)

        state, (m, err, bits) = lax.scan(body, state, ts)
        # per-worker outputs as the other engines give them: (N, steps)
        swap = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        return state, (m, swap(err), tuple(swap(b) for b in bits))

    return init, chunk


def _build(algorithm, problem, gamma, A, B, engine, aggregate, n, check_3pc=True):
    local_init, local_step, finish = _worker_fns(algorithm, problem, gamma, A, B, check_3pc)
    if engine == "loop":
        if aggregate is not None:
            check_choice("aggregate", aggregate, AGGREGATIONS)
        return _loop_fns(local_init, local_step, finish, n, gamma)
    check_choice("engine", engine, (*ENGINES, "loop"))
    factory = _collective_factory(local_init, local_step, finish, gamma)

    def pick(i):
        return lambda agg: factory(agg)[i]

    init = run_on_engine(
        engine, pick(0), n, (None, 0, 0, None), (_STATE_AXES, _OUT_AXES), aggregate=aggregate
    )
    chunk = run_on_engine(
        engine,
        pick(1),
        n,
        (_STATE_AXES, None, 0, 0, None),
        (_STATE_AXES, _OUT_AXES),
        aggregate=aggregate,
    )
    return init, chunk


def _check_args(algorithm, problem, steps, gamma, replicas, chunk):
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            f"algorithm must be a ratedist.sim Algorithm (e.g. ef21(make('top-k:k=1'))), "
            f"got {type(algorithm).__name__}"
        )
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a ratedist.sim Problem, got {type(problem).__name__}")
    steps = check_int("steps", steps, min_value=1)
    if gamma is None or (isinstance(gamma, str) and gamma == "theory"):
        gamma = theory_gamma(algorithm, problem)
    elif isinstance(gamma, str):
        raise ValueError(f"gamma must be a positive number or 'theory', got {gamma!r}")
    else:
        gamma = check_positive("gamma", gamma)
    if replicas is not None:
        replicas = check_int("replicas", replicas, min_value=1)
    if chunk is not None:
        chunk = check_int("chunk", chunk, min_value=1)
    return steps, gamma, replicas, chunk


#: The last few jitted (init, chunk) pairs, so that runs of the SAME algorithm and problem
#: objects (other keys, steps or chunk sizes) reuse XLA's compilation. Entries hold strong
#: references and are matched by identity, so a recycled ``id`` can never alias.
_JIT_CACHE: OrderedDict = OrderedDict()
_JIT_CACHE_SIZE = 4


def _jitted(algorithm, problem, gamma, A, B, engine, aggregate, n, check_3pc, replicas):
    ck = (id(algorithm), id(problem), float(gamma), engine, aggregate, check_3pc, replicas)
    hit = _JIT_CACHE.get(ck)
    if hit is not None and hit[0] is algorithm and hit[1] is problem:
        _JIT_CACHE.move_to_end(ck)
        return hit[2], hit[3]
    init, chunk_fn = _build(algorithm, problem, gamma, A, B, engine, aggregate, n, check_3pc)
    if replicas is not None:
        init = jax.vmap(init, in_axes=(None, None, None, 0))
        chunk_fn = jax.vmap(chunk_fn, in_axes=(0, None, None, None, 0))
    init_j = jax.jit(init)
    chunk_j = jax.jit(chunk_fn, donate_argnums=(0,))
    _JIT_CACHE[ck] = (algorithm, problem, init_j, chunk_j)
    while len(_JIT_CACHE) > _JIT_CACHE_SIZE:
        _JIT_CACHE.popitem(last=False)
    return init_j, chunk_j


def clear_compiled_cache() -> None:
    """Forget the cached compiled steps (and the algorithm/problem objects they hold)."""
    _JIT_CACHE.clear()


class Stepper(NamedTuple):
    """Compiled pieces of a run (what :func:`run` drives; exposed for benchmarks).

    Attributes:
        init: ``() -> (state, outputs_at_t0)``.
        advance: ``(state, t_start, size) -> (state, outputs)``: ``size`` steps from step
            ``t_start`` in one jitted ``lax.scan`` (the state buffers are donated: do not reuse
            the state passed in).
        gamma, A, B: step size and 3PC constants (NaN when unknown).
        dtype: simulation dtype.
    """

    init: Any
    advance: Any
    gamma: float
    A: float
    B: float
    dtype: Any


def make_stepper(
    algorithm: Algorithm,
    problem: Problem,
    *,
    gamma: float,
    key: Any,
    engine: str = "vmap",
    replicas: int | None = None,
    aggregate: str | None = None,
    dtype: Any = None,
    check_3pc: bool = True,
) -> Stepper:
    """Build the jitted init/chunk functions of a run (see :func:`run` for the arguments)."""
    n, d = problem.n_workers, problem.dim
    A, B = algorithm.constants(d, n)
    A = float("nan") if A is None or B is None else float(A)
    B = float("nan") if math.isnan(A) else float(B)
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)
    data = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), problem.data)
    x0 = jnp.asarray(problem.x0, dtype)
    idx = jnp.arange(n, dtype=jnp.uint32)
    init_j, chunk_j = _jitted(
        algorithm, problem, gamma, A, B, engine, aggregate, n, check_3pc, replicas
    )
    if replicas is not None:
        run_key = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas))
    else:
        run_key = key

    def do_init():
        return init_j(x0, data, idx, run_key)

    def advance(state, t_start, size):
        ts = jnp.arange(t_start, t_start + size, dtype=jnp.uint32)
        return chunk_j(state, ts, data, idx, run_key)

    return Stepper(do_init, advance, float(gamma), A, B, dtype)


def run(
    algorithm: Algorithm,
    problem: Problem,
    *,
    steps: int,
    key: Any,
    engine: str = "vmap",
    replicas: int | None = None,
    chunk: int | None = None,
    progress: bool = False,
    gamma: float | str | None = None,
    aggregate: str | None = None,
    dtype: Any = None,
    violation_rtol: float | None = None,
    check_3pc: bool = True,
) -> Trace:
    """Simulate ``algorithm`` on ``problem`` for ``steps`` steps.

    Args:
        algorithm: an :class:`~ratedist.sim.algorithms.Algorithm` (``gd()``, ``ef21(C)``, ...).
        problem: a :class:`~ratedist.sim.problems.Problem`.
        steps: number of steps T (>= 1); the trace has T + 1 entries.
        key: a JAX PRNG key; step t uses ``fold_in(key, t)``, worker i
            ``fold_in(fold_in(key, t), i)``, the shared coin ``fold_in(fold_in(key, t), 2^31−1)``,
            the shared key of PermK-like compressors ``fold_in(fold_in(key, t), 2^31−2)``.
        engine: "vmap" (one device, workers batched), "shard_map" (all ``jax.devices()``;
            N must be a multiple of the device count) or "loop" (one device, a ``lax.scan``
            over workers inside each step: one worker's temporaries at a time; same numbers
            to float rounding). On CPU, "loop" is the faster one once N x d no longer fits
            in cache (measured: from N x d ≈ 3e6 at d = 1e5; ``benchmarks/README.md``).
        replicas: run this many independent copies (keys ``fold_in(key, r)`` vmapped) for
            expectations of randomized methods; adds a leading replica axis to the trace.
        chunk: steps per jitted ``lax.scan`` call (default: ≤ 1000, balanced); a tqdm bar
            and the divergence check run between chunks.
        progress: show a tqdm progress bar.
        gamma: step size > 0, or None/"theory" for :func:`theory_gamma`.
        aggregate: "gather" or "psum" (default: "gather" for vmap, "psum" for shard_map; see
            :mod:`ratedist.sim.engines`).
        dtype: simulation dtype (default: float64 under x64, else float32; float64 without
            x64 falls back to float32).
        check_3pc: record the per-worker 3PC residual (needs ``g_i^t`` and the previous
            gradient kept in the state: for EF21 one more ``N x d`` buffer per step); False
            sets ``tpc_residual`` to NaN and runs faster.
        violation_rtol: relative tolerance of the Lyapunov check (default ``1000 * eps`` of
            ``dtype``: ≈ the rounding of sums of up to 10^6 terms).

    Returns:
        A :class:`Trace`.

    Raises:
        TypeError: algorithm/problem of the wrong type.
        ValueError: ``steps`` <= 0, ``gamma`` <= 0 or unavailable theory step size, unknown
            engine/aggregate, N not divisible by the device count.

    Warns:
        RuntimeWarning: the run diverged (non-finite metrics); the trace is truncated.
    """
    steps, gamma, replicas, chunk = _check_args(algorithm, problem, steps, gamma, replicas, chunk)
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
    )
    A, B = stepper.A, stepper.B
    rtol = (
        1000 * float(jnp.finfo(stepper.dtype).eps)
        if violation_rtol is None
        else check_positive("violation_rtol", violation_rtol)
    )
    n_chunks = math.ceil(steps / (chunk or 1000))
    size = math.ceil(steps / n_chunks)
    state, out0 = stepper.init()
    outs = [_to_host(out0, replicas, single=True)]
    done = 0
    bar = _progress(steps, progress)
    try:
        for c in range(n_chunks):
            state, out = stepper.advance(state, 1 + c * size, size)
            host = _to_host(out, replicas, single=False)
            take = min(size, steps - done)
            host = _trim(host, take, replicas)
            outs.append(host)
            done += take
            if bar is not None:
                bar.update(take)
            bad = ~np.isfinite(_health(host))
            if bad.any() and (replicas is None or bad.any(axis=-1).all()):
                break
    finally:
        if bar is not None:
            bar.close()
    x_final = np.asarray(state.x)
    return _assemble(outs, replicas, problem, algorithm, gamma, A, B, steps, rtol, x_final)


def _progress(total, on):
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step")


def _to_host(out, replicas, single):
    """Device outputs -> float64 numpy with step axis before the worker axis."""
    m, err, bits = out
    ax = 1 if replicas else 0

    def scal(a):
        a = np.asarray(a, np.float64)
        return np.expand_dims(a, ax) if single else a

    def per_worker(a):
        a = np.asarray(a, np.float64)  # (..., N) for init, (..., N, size) for a chunk
        return np.expand_dims(a, ax) if single else np.swapaxes(a, -1, -2)

    return (
        {k: scal(v) for k, v in m.items()},
        per_worker(err),
        tuple(per_worker(b) for b in bits),
    )


def _trim(host, take, replicas):
    if replicas:
        return jax.tree_util.tree_map(lambda a: a[:, :take], host)
    return jax.tree_util.tree_map(lambda a: a[:take], host)


def _health(host):
    m = host[0]
    return m["f"] + m["grad_norm_sq"]


def _assemble(outs, replicas, problem, algorithm, gamma, A, B, steps, rtol, x_final) -> Trace:
    ax = 1 if replicas else 0
    cat = lambda *a: np.concatenate(a, axis=ax)  # noqa: E731
    m = {k: cat(*(o[0][k] for o in outs)) for k in outs[0][0]}
    err = cat(*(o[1] for o in outs))
    bits = [np.cumsum(cat(*(o[2][i] for o in outs)), axis=ax) for i in range(6)]
    bad = ~np.isfinite(_health((m,)))
    first = np.where(bad.any(axis=-1), bad.argmax(axis=-1), -1)
    if np.any(first >= 0):
        warnings.warn(
            f"{algorithm.name} on {problem.name} diverged (non-finite iterate) at step "
            f"{first.tolist()} with gamma={gamma:g}; the trace is truncated there",
            RuntimeWarning,
            stacklevel=3,
        )
        if replicas is None:
            keep = int(first)
            m = {k: v[:keep] for k, v in m.items()}
            err, bits = err[:keep], [b[:keep] for b in bits]
        else:
            T = m["f"].shape[1]
            mask = np.arange(T)[None, :] >= np.where(first >= 0, first, T)[:, None]
            m = {k: np.where(mask, np.nan, v) for k, v in m.items()}
            err = np.where(mask[..., None], np.nan, err)
            bits = [np.where(mask[..., None], np.nan, b) for b in bits]
    f_star = 0.0 if problem.f_star is None else problem.f_star
    f_gap = m["f"] - f_star
    E = m["server_error"] if algorithm.lyapunov == "server" else m["G"]
    with np.errstate(invalid="ignore", over="ignore"):
        phi = f_gap + gamma / (2 * A) * E if not math.isnan(A) else np.full_like(f_gap, np.nan)
        slack = np.full_like(phi, np.nan)
        slack[..., :-1] = phi[..., 1:] - phi[..., :-1] + gamma / 2 * m["grad_norm_sq"][..., :-1]
        scale = np.full_like(phi, np.nan)
        scale[..., :-1] = (
            np.abs(m["f"][..., 1:])
            + np.abs(m["f"][..., :-1])
            + abs(f_star)
            + (gamma / (2 * A) * (E[..., 1:] + E[..., :-1]) if not math.isnan(A) else 0.0)
            + gamma / 2 * m["grad_norm_sq"][..., :-1]
        )
        viol = np.sum(np.nan_to_num(slack - rtol * scale, nan=-1.0) > 0, axis=-1)
    return Trace(
        f=m["f"],
        f_gap=f_gap,
        grad_norm_sq=m["grad_norm_sq"],
        G=m["G"],
        server_error=m["server_error"],
        worker_error=err,
        lyapunov=phi,
        lyapunov_slack=slack,
        violations=np.asarray(viol),
        tpc_residual=m["tpc_residual"],
        tpc_residual_max=m["tpc_residual_max"],
        trigger_rate=m["trigger_rate"],
        bits=Bits(*bits),
        diverged_at=np.asarray(first),
        x=x_final,
        gamma=float(gamma),
        A=A,
        B=B,
        steps=steps,
        violation_tol=rtol,
    )
