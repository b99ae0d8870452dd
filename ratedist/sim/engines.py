"""Engines: run the round's per-worker code over all workers, with collectives on ``"workers"``.

Worker code aggregates through an :class:`Aggregator` bound to the engine's axis names, so the
same function runs under

* ``"vmap"``: ``jax.vmap(..., axis_name="workers")`` on one device;
* ``"shard_map"``: ``jax.shard_map`` over a 1-D device mesh with axis ``"workers"`` (CPU devices
  can be emulated with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before JAX is
  imported); several workers per device are vmapped inside over axis ``"local"``. After
  :func:`ratedist.sim.distributed.initialize` the mesh spans the devices of all processes;
* ``"loop"``: one device, a ``lax.scan`` over workers inside each step with running sums (one
  worker's temporaries at a time; same numbers to float rounding);
* ``"group"``: one device, a ``lax.scan`` over groups of G workers with the worker code vmapped
  inside each group and running sums over groups; G (:func:`group_size`) is the largest
  divisor of N whose group's temporaries fit a cache budget (N on accelerators). Same numbers
  as vmap to float rounding (the order of the sums over workers).

:func:`build` turns a round's worker and server functions (:mod:`ratedist.sim.round`) into the
jit-able ``init``/``chunk`` pair of any engine; :data:`ENGINES` lists them all, and
:data:`DEFAULT_ENGINE` (``"group"``) is the one :func:`ratedist.sim.run` uses unless told: on
one CPU core it was the fastest of the one-device engines in most rows of
``benchmarks/bench_sim.py`` (``benchmarks/README.md``), and on an accelerator it runs the vmap
schedule.

Aggregation modes: ``"gather"`` all-gathers the per-worker vectors and reduces them with a
fixed-order matrix-vector product ``ones(N) @ X / N`` (identical arithmetic in both engines, so
results agree bit for bit); ``"psum"`` uses ``lax.psum`` (reduction order is the backend's: the
engines agree to float rounding); the sequential engines (``"loop"``, ``"group"``) sum in
worker order and ignore the mode. Under vmap, ``psum`` lowers to ``X.sum(0)``, measured ≈ 140×
slower than the matrix-vector product on CPU (58 ms vs 0.41 ms at N = 32, d = 10^5), so the
vmap engine defaults to ``"gather"`` (which under vmap copies nothing) and shard_map to
``"psum"`` (a real all-gather moves N·d numbers to every device).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from ratedist._validation import check_choice
from ratedist.sim.round import METRICS, SimState

AXIS = "workers"
LOCAL_AXIS = "local"
AGGREGATIONS = ("gather", "psum")
#: engines with collectives over the named axis (:func:`run_on_engine`)
COLLECTIVE_ENGINES = ("vmap", "shard_map")
#: engines that run the workers in sequence on one device, with running sums
SEQUENTIAL_ENGINES = ("loop", "group")
#: every engine :func:`build` accepts
ENGINES = (*COLLECTIVE_ENGINES, *SEQUENTIAL_ENGINES)
#: the engine of :func:`ratedist.sim.run` and :func:`ratedist.sim.runner.make_stepper` when none
#: is named (sweep files keep ``"vmap"``: the engine is part of a stored config's hash)
DEFAULT_ENGINE = "group"


class Aggregator(NamedTuple):
    """Collectives over all workers, bound to the engine's axis names.

    Attributes:
        mean: per-worker array -> its mean over workers (same shape, replicated).
        max: per-worker array -> its max over workers.
        n_workers: N.
    """

    mean: Callable[[Any], Any]
    max: Callable[[Any], Any]
    n_workers: int


def make_aggregator(mode: str, axes: tuple[str, ...], n_workers: int) -> Aggregator:
    """Aggregator over ``axes`` (innermost first) in ``mode`` ("gather" or "psum")."""
    check_choice("aggregate", mode, AGGREGATIONS)

    def gather(v):
        out = lax.all_gather(v, axes[0])
        for ax in axes[1:]:
            out = lax.all_gather(out, ax, tiled=True)
        return out  # (N, ...) in worker order

    if mode == "gather":

        def mean(v):
            G = gather(v)
            flat = G.reshape(n_workers, -1)
            return (jnp.ones((n_workers,), v.dtype) @ flat / n_workers).reshape(v.shape)

        def vmax(v):
            return jnp.max(gather(v), axis=0)

    else:

        def mean(v):
            return lax.psum(v, axes) / n_workers

        def vmax(v):
            return lax.pmax(v, axes)

    return Aggregator(mean, vmax, n_workers)


def worker_mesh(devices: Any = None) -> Mesh:
    """The shard_map engine's 1-D mesh ``("workers",)`` over ``devices`` (default
    ``jax.devices()``: after :func:`ratedist.sim.distributed.initialize`, the devices of every
    process, process by process). Worker ``i`` lives on device ``i // (N / n_devices)``."""
    devs = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devs.reshape(devs.size), (AXIS,))


def run_on_engine(
    engine: str,
    fn_factory: Callable[[Aggregator], Callable],
    n_workers: int,
    in_axes: tuple,
    out_axes: Any,
    *,
    aggregate: str | None = None,
    devices: Any = None,
) -> Callable:
    """Wrap a per-worker function for ``engine``.

    Args:
        engine: "vmap" or "shard_map".
        fn_factory: ``aggregator -> per_worker_fn``.
        n_workers: N.
        in_axes: per positional argument, 0 (worker-sharded, leading axis N) or None
            (replicated); pytree prefixes allowed.
        out_axes: same for the outputs.
        aggregate: "gather" or "psum" (None: engine default).
        devices: devices of the shard_map mesh (default all ``jax.devices()``).

    Returns:
        A function of the stacked (all-worker) arguments.

    Raises:
        ValueError: unknown engine/aggregate, or N not divisible by the number of devices.
    """
    check_choice("engine", engine, COLLECTIVE_ENGINES)
    if aggregate is None:
        aggregate = "gather" if engine == "vmap" else "psum"
    check_choice("aggregate", aggregate, AGGREGATIONS)
    if engine == "vmap":
        agg = make_aggregator(aggregate, (AXIS,), n_workers)
        return jax.vmap(fn_factory(agg), in_axes=in_axes, out_axes=out_axes, axis_name=AXIS)
    mesh = worker_mesh(devices)
    n_dev = mesh.devices.size
    if n_workers % n_dev:
        raise ValueError(
            f"n_workers must be divisible by the number of devices {n_dev} for engine "
            f"'shard_map', got {n_workers}"
        )
    to_spec = lambda a: PartitionSpec(AXIS) if a == 0 else PartitionSpec()  # noqa: E731
    is_leaf = lambda a: a is None or isinstance(a, int)  # noqa: E731
    in_specs = jax.tree_util.tree_map(to_spec, in_axes, is_leaf=is_leaf)
    out_specs = jax.tree_util.tree_map(to_spec, out_axes, is_leaf=is_leaf)
    axes = (LOCAL_AXIS, AXIS)
    agg = make_aggregator(aggregate, axes, n_workers)
    inner = jax.vmap(fn_factory(agg), in_axes=in_axes, out_axes=out_axes, axis_name=LOCAL_AXIS)
    return jax.shard_map(inner, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


# ----------------------------------------------------------------------------- drivers


def _collective_factory(worker, server):
    """``agg -> (init_w, chunk_w)`` for the vmap/shard_map engines."""
    local_init, local_step, combine, finish, _ = worker
    server_init, server_step = server

    def factory(agg: Aggregator):
        def reduce(loc, steps):
            g = combine(agg.mean(loc.g_i))
            gsrv = agg.mean(loc.ex_srv) if loc.ex_srv.size else loc.ex_srv
            m = finish(g, agg.mean(loc.ex), agg.mean(loc.scal), agg.max(loc.mx), gsrv, steps)
            return g, m

        def init_w(x0, data_i, idx, key, hp):
            opt, down, xw, dbits, steps = server_init(x0, key, hp)
            part, loc, per = local_init(xw, data_i, idx, key, hp, x0)
            g, m = reduce(loc, steps)
            return SimState(x0, g, *part, opt, down), (m, *per, dbits)

        def chunk_w(state, ts, data_i, idx, key, hp):
            def body(s, t):
                x, xw, opt, down, dbits, steps = server_step(s.x, s.g, s.opt, s.down, t, key, hp)
                part = (s.h, s.y, s.dist, s.mstate)
                part, loc, per = local_step(part, xw, t, data_i, idx, key, hp, x)
                g, m = reduce(loc, steps)
                return SimState(x, g, *part, opt, down), (m, *per, dbits)

            return lax.scan(body, state, ts)

        return init_w, chunk_w

    return factory


_STATE_AXES = SimState(x=None, g=None, h=0, y=0, dist=0, mstate=0, opt=None, down=None)
_OUT_AXES = ({k: None for k in METRICS}, 0, 0, 0, None)


def _sequential_fns(worker, server, n, run_all, update_all):
    """``(init, chunk)`` of an engine that runs the workers in sequence on one device.

    ``run_all(fn, x, xs) -> (acc, parts, per)`` runs ``fn`` (a worker's first step) over the
    workers with running sums from ``zeros(x)``; ``update_all(fn, x, parts, xs)`` runs a step
    with the state rows ``parts`` updated in place. The server's side is the same for every
    sequential engine.
    """
    local_init, local_step, combine, finish, _ = worker
    server_init, server_step = server

    def reduce(acc, steps):
        g = combine(acc.g_i / n)
        m = finish(g, acc.ex / n, acc.scal / n, acc.mx, acc.ex_srv / n, steps)
        return g, m

    def init(x0, data, idx, key, hp):
        opt, down, xw, dbits, steps = server_init(x0, key, hp)
        acc, parts, per = run_all(
            lambda d_i, i: local_init(xw, d_i, i, key, hp, x0), x0, (data, idx)
        )
        g, m = reduce(acc, steps)
        return SimState(x0, g, *parts, opt, down), (m, *per, dbits)

    def chunk(state, ts, data, idx, key, hp):
        def body(s, t):
            x, xw, opt, down, dbits, steps = server_step(s.x, s.g, s.opt, s.down, t, key, hp)
            acc, parts, per = update_all(
                lambda p, d_i, i: local_step(p, xw, t, d_i, i, key, hp, x),
                x,
                (s.h, s.y, s.dist, s.mstate),
                (data, idx),
            )
            g, m = reduce(acc, steps)
            return SimState(x, g, *parts, opt, down), (m, *per, dbits)

        state, (m, err, bits, answered, dbits) = lax.scan(body, state, ts)
        # per-worker outputs as the other engines give them: (N, steps)
        swap = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        return state, (m, swap(err), tuple(swap(b) for b in bits), swap(answered), dbits)

    return init, chunk


def _add_local(acc, loc):
    """Running sums of the workers' :class:`~ratedist.sim.round.Local` contributions."""
    return acc._replace(
        g_i=acc.g_i + loc.g_i,
        ex=acc.ex + loc.ex,
        scal=acc.scal + loc.scal,
        mx=jnp.maximum(acc.mx, loc.mx),
        ex_srv=acc.ex_srv + loc.ex_srv,
    )


def _loop_fns(worker, server, n):
    """The sequential engine: ``lax.scan`` over workers inside each step, running sums.

    One worker's d-sized temporaries at a time (cache-resident for moderate d) instead of
    N x d intermediates between XLA fusions; sums run in worker order, so results match the
    other engines to float rounding.
    """
    zeros = worker[4]

    def scan_workers(fn, x, xs):
        def wbody(acc, inp):
            part, loc, per = fn(*inp)
            return _add_local(acc, loc), (part, per)

        acc, (parts, per) = lax.scan(wbody, zeros(x), xs)
        return acc, parts, per

    def update_workers(fn, x, parts, xs):
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
            return (_add_local(acc, loc), stacked), (part[1], per)

        (acc, (h, dist, mstate)), (y, per) = lax.scan(
            wbody, (zeros(x), (h, dist, mstate)), (jnp.arange(n), y, xs)
        )
        return acc, (h, y, dist, mstate), per

    return _sequential_fns(worker, server, n, scan_workers, update_workers)


#: bytes of live per-worker d-vectors one group of the ``"group"`` engine aims to keep in cache
#: (a quarter of the 32 MB L3 of the machines measured: other processes share it)
GROUP_CACHE_BYTES = 8 * 2**20
#: d-vectors one worker keeps live through a step (gradient, state row, message, residual,
#: compressor temporaries: an estimate that holds for the benchmarked methods)
GROUP_LIVE_VECTORS = 5


def group_size(n_workers: int, dim: int, itemsize: int) -> int:
    """Workers per group of the ``"group"`` engine: the largest divisor of ``n_workers`` whose
    group keeps ``GROUP_LIVE_VECTORS`` d-vectors per worker within ``GROUP_CACHE_BYTES``
    (at least 1: then the ``"loop"`` schedule; ``n_workers`` when everything fits: one
    vmapped group).

    A divisor, so that every group has the same shape (one compiled body, no ragged tail).
    """
    per_worker = GROUP_LIVE_VECTORS * max(dim, 1) * itemsize
    target = max(1, min(n_workers, GROUP_CACHE_BYTES // per_worker))
    return max(g for g in range(1, target + 1) if n_workers % g == 0)


#: largest group whose contributions are added worker by worker (unrolled); larger groups
#: (small d) sum with ``ones(G) @ X``, whose compile time does not grow with G (unrolled, one
#: EF21 program at N = G = 256, d = 100 compiled in 11 s against vmap's 4 s)
GROUP_UNROLL_MAX = 16


def _add_group(acc, loc):
    """``acc`` plus the contributions of a group (a ``Local`` with leading axis G).

    Up to :data:`GROUP_UNROLL_MAX` workers, added one by one in index order (as the loop
    engine does): unrolled elementwise adds that XLA fuses into one pass with the running sum
    (measured ≈ 15 % faster per EF-sign / EF21 step at N = 32, d = 1e5, G = 4 than the
    matrix-vector product). Larger groups: vectors summed as ``ones(G) @ X`` (the fast CPU
    reduction over the leading axis, see the module docstring), ``mx`` maxed.
    """
    g = loc.scal.shape[0]
    if g <= GROUP_UNROLL_MAX:
        for i in range(g):
            acc = _add_local(acc, jax.tree_util.tree_map(lambda a, i=i: a[i], loc))
        return acc

    def total(a):
        flat = a.reshape(g, math.prod(a.shape[1:]))  # explicit: -1 is ambiguous at size 0
        return (jnp.ones((g,), a.dtype) @ flat).reshape(a.shape[1:])

    summed = loc._replace(
        g_i=total(loc.g_i),
        ex=total(loc.ex),
        scal=jnp.sum(loc.scal, axis=0),
        mx=jnp.max(loc.mx, axis=0),
        ex_srv=total(loc.ex_srv),
    )
    return _add_local(acc, summed)


def _group_fns(worker, server, n):
    """The grouped engine: ``lax.scan`` over groups of G workers, the worker code vmapped over
    each group, running sums over groups.

    G is fixed at trace time: :func:`group_size` of N, the dimension and the dtype on CPU
    (a group's G x d temporaries stay in cache between XLA's fusions, which the ``"vmap"``
    engine's N x d ones do not at large N d, and a step runs N / G scan iterations instead
    of the ``"loop"`` engine's N, whose fixed cost per iteration dominates at small d); N on
    another default backend (accelerators want the widest batch). G = 1 is the loop engine's
    schedule and G = N the vmap engine's, up to the order of the sums: results agree with
    both to float rounding.
    """
    zeros = worker[4]

    def size_of(x):
        if jax.default_backend() != "cpu":
            return n
        g = int(group_size(n, math.prod(x.shape), jnp.dtype(x.dtype).itemsize))
        if g < 1 or n % g:
            raise ValueError(f"group size must divide n_workers = {n}, got {g}")
        return g

    def grouped(tree, g):
        return jax.tree_util.tree_map(lambda a: a.reshape(n // g, g, *a.shape[1:]), tree)

    def flat(tree):
        return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[2:]), tree)

    def init_groups(fn, x, xs):
        g = size_of(x)

        def body(acc, inp):
            part, loc, per = jax.vmap(fn)(*inp)
            return _add_group(acc, loc), (part, per)

        acc, (parts, per) = lax.scan(body, zeros(x), grouped(xs, g))
        return acc, flat(parts), flat(per)

    def update_groups(fn, x, parts, xs):
        """Like the loop engine's ``update_workers``, a group of rows at a time: ``h``,
        ``dist`` and ``mstate`` ride in the carry (group rows overwritten in place), ``y``
        goes through the scan's inputs and outputs."""
        g = size_of(x)
        h, y, dist, mstate = parts
        rows = lambda a, s: lax.dynamic_slice_in_dim(a, s, g)  # noqa: E731
        put = lambda a, v, s: lax.dynamic_update_slice_in_dim(a, v, s, 0)  # noqa: E731

        def body(carry, inp):
            acc, stacked = carry
            j, y_g, xs_g = inp
            start = j * g
            h_g, dist_g, ms_g = jax.tree_util.tree_map(lambda a: rows(a, start), stacked)
            part, loc, per = jax.vmap(fn)((h_g, y_g, dist_g, ms_g), *xs_g)
            new = (part[0], part[2], part[3])
            stacked = jax.tree_util.tree_map(lambda a, v: put(a, v, start), stacked, new)
            return (_add_group(acc, loc), stacked), (part[1], per)

        (acc, (h, dist, mstate)), (y, per) = lax.scan(
            body, (zeros(x), (h, dist, mstate)), (jnp.arange(n // g), grouped(y, g), grouped(xs, g))
        )
        return acc, (h, flat(y), dist, mstate), flat(per)

    return _sequential_fns(worker, server, n, init_groups, update_groups)


def build(engine: str, worker, server, n_workers: int, aggregate: str | None = None):
    """The ``(init, chunk)`` pair of a round on ``engine``.

    ``init(x0, data, idx, key, hp) -> (state, outputs)``;
    ``chunk(state, ts, data, idx, key, hp) -> (state, outputs)`` runs the steps ``ts`` in one
    ``lax.scan``. ``worker`` is :func:`ratedist.sim.round.worker_fns`' five functions, ``server``
    :func:`ratedist.sim.round.server_fns`' pair.

    Raises:
        ValueError: unknown engine or aggregate; N not divisible by the device count.
    """
    check_choice("engine", engine, ENGINES)
    if engine in SEQUENTIAL_ENGINES:
        if aggregate is not None:
            check_choice("aggregate", aggregate, AGGREGATIONS)
        if engine == "loop":
            return _loop_fns(worker, server, n_workers)
        return _group_fns(worker, server, n_workers)
    factory = _collective_factory(worker, server)

    def pick(i):
        return lambda agg: factory(agg)[i]

    init = run_on_engine(
        engine,
        pick(0),
        n_workers,
        (None, 0, 0, None, None),
        (_STATE_AXES, _OUT_AXES),
        aggregate=aggregate,
    )
    chunk = run_on_engine(
        engine,
        pick(1),
        n_workers,
        (_STATE_AXES, None, 0, 0, None, None),
        (_STATE_AXES, _OUT_AXES),
        aggregate=aggregate,
    )
    return init, chunk
