"""Gradient compression as optax transformations, for training loops written by the user.

Two lines turn an optax loop into a compressed one::

    tx = optax.chain(ratedist.optax.compress(make("scaled-sign"), key=key), optax.adam(1e-3))
    # several workers, gradients stacked on a leading axis (N, ...):
    tx = optax.chain(
        ratedist.optax.compress_then_average(make("top-k:k=10"), n_workers=N, key=key),
        optax.adam(1e-3),
    )

Both compress the incoming updates with a :class:`~ratedist.compressors.Compressor`, with EF14
error feedback by default (:func:`ratedist.compressors.error_feedback`), and count the bits
sent. Their state, :class:`CompressState`, is a plain pytree of arrays (step counter, key
data, compressor state, bit totals): it can be saved with numpy and restored, and the run
then continues exactly as it would have.

**What is compressed.** The whole update pytree is flattened with
``jax.flatten_util.ravel_pytree`` into ONE vector (leaves in ``jax.tree_util`` order, each
row-major; mixed float dtypes promoted to their common type and cast back), compressed, and
unflattened: a Top-K keeps the K largest entries of the whole model, a scaled sign uses one
scale for the whole model — the convention of the compressors' theory and of the simulator,
whose ``x`` is that flat vector. ``per_leaf=True`` compresses every leaf on its own instead
(one Top-K, one scale per layer; a leaf of size 0 is passed through), with its own
compressor state and key (``fold_in(k, j)`` for leaf ``j``).

**Randomness: the simulator's key schedule.** At step ``t`` (the number of updates made so
far, kept in the state) worker ``i`` compresses with the key :func:`worker_key`::

    kg, kc = jax.random.split(fold_in(fold_in(key, t), i));   kc is the compressor's key

exactly as :mod:`ratedist.sim.round` does (``kg`` is the simulator's gradient-noise key,
unused here). A compressor that shares randomness across workers (``facts.shared``: PermK)
gets :func:`shared_key` ``fold_in(fold_in(key, t), 2^31 − 2)`` with ``worker=i`` and
``n_workers=N``. :func:`compress` is worker 0. Hence ``compress_then_average(C,
n_workers=N, key=key)`` followed by ``optax.adam(lr)`` gives the iterates of ``ratedist.sim.run(compressed_sgd(
error_feedback(C)), problem, server=optax.adam(lr), key=key)`` on the same gradients
— bit for bit when the averaging and the optimizer step are compiled as separate
programs, as in the simulator (whose average crosses the ``lax.scan`` carry); inside ONE
jitted step XLA on CPU may fuse the averaging matvec into Adam's moment update and contract a
multiply–add into an FMA where the simulator does not, which changes the last bit of a
moment now and then (measured on a 161-parameter MLP, 4 workers, 200 Adam steps: max
``|Δx|`` 8.6e-16 with scaled-sign, 2.8e-16 with top-k and qsgd, at ``|x| ≤ 1.1``;
tests/test_optax_adapter.py checks both).

Inside ``jax.shard_map`` (``axis_name=``) the compressor state lives on each worker's device:
:func:`partition_specs` gives the specs of an optimizer state that holds a
:class:`CompressState`.

References:
    Seide et al., "1-bit SGD" (Interspeech 2014) and Stich et al., arXiv 1809.07599 (error
    feedback); Chen et al., "Quantized Adam with Error Feedback", arXiv 2004.14180 (SPEC §5:
    EF-compressed gradients averaged on a server that runs Adam).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec

from ratedist.compressors._common import info_dtype
from ratedist.compressors.base import Compressor
from ratedist.compressors.feedback import error_feedback as _error_feedback

#: ``fold_in`` index of the randomness shared by all workers in a step (the simulator's
#: ``ratedist.sim.round._SHARED``; never a worker index).
SHARED_STREAM = 0x7FFFFFFE


class CompressState(NamedTuple):
    """State of :func:`compress` and :func:`compress_then_average` (a pytree of arrays).

    Attributes:
        count: uint32 scalar, the number of updates made so far (the step ``t`` of the key
            schedule).
        key: the key's raw data (``jax.random.key_data``, uint32), so the state converts to
            numpy.
        compressor: the compressor's state for the flat vector (with error feedback an
            :class:`~ratedist.compressors.ErrorFeedbackState` whose ``error`` is the residual,
            shape ``(d,)``); a tuple of them, one per leaf, with ``per_leaf=True``. With
            ``n_workers=N`` every array carries a leading worker axis ``N``.
        container_bits: total bit-packed bits sent so far by all workers (the dtype of
            :class:`~ratedist.compressors.CompressInfo`: float64 under x64, exact up to 2^53
            bits; else float32, exact up to 2^24 bits and then rounded at every addition, by
            up to 6e-8 relative each).
        entropy_bits: total ideal entropy-coded bits sent so far by all workers.
    """

    count: Any
    key: Any
    compressor: Any
    container_bits: Any
    entropy_bits: Any


# ------------------------------------------------------------------------- key schedule


def worker_key(key: Any, step: Any, worker: Any) -> Any:
    """The compressor key of ``worker`` at ``step``: the simulator's ``kc``.

    ``kg, kc = split(fold_in(fold_in(key, step), worker))`` (:mod:`ratedist.sim.round`,
    ``keys``); ``kg`` draws the simulator's stochastic gradients and is not used here.
    """
    return jax.random.split(jax.random.fold_in(jax.random.fold_in(key, step), worker))[1]


def shared_key(key: Any, step: Any) -> Any:
    """The key shared by all workers at ``step``: ``fold_in(fold_in(key, step), 2^31 − 2)``."""
    return jax.random.fold_in(jax.random.fold_in(key, step), SHARED_STREAM)


# ------------------------------------------------------------------------------- checks


def _check_compressor(compressor: Any, error_feedback: Any) -> Compressor:
    """The compressor to run (wrapped in EF14 when asked); raises on bad arguments."""
    if not isinstance(compressor, Compressor):
        raise TypeError(
            "compressor must be a ratedist.compressors.Compressor (e.g. "
            f"ratedist.compressors.make('top-k:k=10')), got {compressor!r:.80} "
            f"({type(compressor).__name__})"
        )
    if not isinstance(error_feedback, bool):
        raise TypeError(
            f"error_feedback must be True or False, got {error_feedback!r} "
            f"({type(error_feedback).__name__})"
        )
    if error_feedback and compressor.facts.name == "error-feedback":
        raise ValueError(
            "compressor already has error feedback (error_feedback(...)); pass the inner "
            "compressor, or error_feedback=False"
        )
    return _error_feedback(compressor) if error_feedback else compressor


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


class _Key(NamedTuple):
    """How to turn the stored key data back into the key the user gave."""

    data: Any
    wrap: Callable[[Any], Any]


def _check_key(key: Any) -> _Key:
    """A typed key (``jax.random.key``) or a raw uint32 key (``jax.random.PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if key.ndim != 0:
            raise ValueError(f"key must be a single PRNG key, got an array of shape {key.shape}")
        impl = jax.random.key_impl(key)
        return _Key(jax.random.key_data(key), lambda d: jax.random.wrap_key_data(d, impl=impl))
    if dtype == jnp.uint32 and getattr(key, "ndim", 0) == 1:
        return _Key(jnp.asarray(key), lambda d: d)
    raise TypeError(
        "key must be a JAX PRNG key (jax.random.key(0) or jax.random.PRNGKey(0)), got "
        f"{key!r} ({type(key).__name__})"
    )


def _check_float_tree(name: str, tree: Any) -> None:
    """TypeError unless every leaf of ``tree`` is floating-point (ValueError if it has none)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"{name} must contain at least one array, got {tree!r}")
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "(the root)"
            raise TypeError(
                f"{name} must hold floating-point arrays (gradients), got dtype {dtype} at "
                f"{where}; allowed: float16, bfloat16, float32, float64"
            )


def _check_axis_name(axis_name: Any) -> Any:
    ok = isinstance(axis_name, str) or (
        isinstance(axis_name, tuple) and axis_name and all(isinstance(a, str) for a in axis_name)
    )
    if not ok:
        raise TypeError(
            f"axis_name must be a mesh/pmap axis name (a string or a tuple of strings), got "
            f"{axis_name!r}"
        )
    return axis_name


def _check_n_workers(n_workers: Any) -> int:
    if isinstance(n_workers, bool) or not isinstance(n_workers, int):
        raise TypeError(
            f"n_workers must be an int >= 1 (the leading axis of the updates), got "
            f"{n_workers!r} ({type(n_workers).__name__})"
        )
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    return n_workers


# ------------------------------------------------------------------------------ vectors


class _Layout(NamedTuple):
    """How one worker's update pytree becomes the vectors that are compressed: the flat
    vector of ``ravel_pytree``, or one vector per leaf."""

    per_leaf: bool

    def split(self, tree: Any) -> list[Any]:
        if not self.per_leaf:
            return [ravel_pytree(tree)[0]]
        return [jnp.ravel(a) for a in jax.tree_util.tree_leaves(tree)]

    def joiner(self, tree: Any) -> Callable[[list[Any]], Any]:
        """The inverse of :meth:`split` for pytrees shaped like ``tree``."""
        if not self.per_leaf:
            unravel = ravel_pytree(tree)[1]
            return lambda vs: unravel(vs[0])
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        shapes = [jnp.shape(a) for a in leaves]
        return lambda vs: treedef.unflatten([v.reshape(s) for v, s in zip(vs, shapes, strict=True)])

    def init(self, comp: Compressor, tree: Any) -> Any:
        vs = self.split(tree)
        if not self.per_leaf:
            if vs[0].size == 0:
                raise ValueError("params must have at least one entry, got only empty arrays")
            return comp.init(vs[0])
        return tuple(comp.init(v) if v.size else () for v in vs)

    def encode(self, comp: Compressor, vs: list[Any], cstate: Any, keys: dict[str, Any]):
        """``(compressed vectors, cstate, container bits, entropy bits)`` of one worker."""
        if not self.per_leaf:
            x_hat, cstate, info = comp.update(vs[0], cstate, **keys)
            return [x_hat], cstate, info.container_bits, info.entropy_bits
        outs, states = [], []
        container = entropy = _bits_zero()
        for j, (v, s) in enumerate(zip(vs, cstate, strict=True)):
            if v.size == 0:  # nothing to send; compressors refuse empty vectors
                outs.append(v)
                states.append(s)
                continue
            x_hat, s, info = comp.update(
                v, s, **{**keys, "key": jax.random.fold_in(keys["key"], j)}
            )
            outs.append(x_hat)
            states.append(s)
            container = container + info.container_bits
            entropy = entropy + info.entropy_bits
        return outs, tuple(states), container, entropy

    def check(self, comp: Compressor, tree: Any, cstate: Any, lead: int) -> None:
        """Trace-time check that one worker's ``tree`` fits the compressor state ``cstate``
        made by ``init`` (whose arrays carry ``lead`` leading worker axes)."""
        want = jax.eval_shape(lambda t: self.init(comp, t), tree)
        ok = jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(cstate) and all(
            jnp.shape(g)[lead:] == w.shape
            for w, g in zip(
                jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(cstate), strict=True
            )
        )
        if not ok:
            sizes = [v.size for v in self.split(tree)]
            raise ValueError(
                f"updates do not match the params the state was initialised with (vector "
                f"sizes {sizes}); call init with params shaped like one worker's updates"
            )


def _bits_zero() -> Any:
    return jnp.zeros((), info_dtype())


def _fresh(layout: _Layout, comp: Compressor, key: _Key, params: Any) -> CompressState:
    _check_float_tree("params", params)
    z = _bits_zero()
    return CompressState(jnp.zeros((), jnp.uint32), key.data, layout.init(comp, params), z, z)


def _advanced(state: CompressState, cstate: Any, container: Any, entropy: Any) -> CompressState:
    return CompressState(
        state.count + 1,
        state.key,
        cstate,
        state.container_bits + container,
        state.entropy_bits + entropy,
    )


# ------------------------------------------------------------------------ transformations


def compress(
    compressor: Compressor, *, key: Any, error_feedback: bool = True, per_leaf: bool = False
) -> optax.GradientTransformation:
    """Compress the updates (one worker's gradient) before the next transformation.

    ``optax.chain(compress(make("scaled-sign"), key=key), optax.adam(1e-3))`` is
    EF-compressed Adam: ``g_hat = C(g + e)``, ``e <- (g + e) − g_hat``, Adam on ``g_hat``
    (single-worker mode of SPEC §5, arXiv 2004.14180). The update pytree is flattened into one
    vector (see the module docstring); randomness is worker 0's :func:`worker_key` at step
    ``state.count``, so this is ``compress_then_average`` with one worker.

    Args:
        compressor: a :class:`~ratedist.compressors.Compressor` (``make("top-k:k=10")``);
            one that shares randomness across workers (``facts.shared``: PermK) is refused.
        key: a JAX PRNG key (typed or raw); kept in the state as raw data.
        error_feedback: keep the EF14 residual (:func:`ratedist.compressors.error_feedback`).
        per_leaf: compress every leaf on its own instead of the whole flat vector.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`CompressState`; ``update``
        ignores ``params``.

    Raises:
        TypeError: ``compressor`` not a Compressor, ``key`` not a key, a flag not a bool;
            at ``init``/``update``, a non-floating leaf in ``params``/``updates``.
        ValueError: a shared-randomness compressor; a compressor already wrapped in error
            feedback with ``error_feedback=True``; updates that do not match the params of
            ``init``.
    """
    comp = _check_compressor(compressor, error_feedback)
    layout = _Layout(_check_bool("per_leaf", per_leaf))
    if comp.facts.shared:
        raise ValueError(
            f"compressor {compressor.facts.name!r} shares its randomness across workers "
            "(facts.shared) and needs the worker index and count: use "
            "compress_then_average(..., n_workers=N) or (..., axis_name=...)"
        )
    k = _check_key(key)

    def init_fn(params: Any) -> CompressState:
        return _fresh(layout, comp, k, params)

    def update_fn(updates: Any, state: CompressState, params: Any = None):
        del params
        _check_float_tree("updates", updates)
        layout.check(comp, updates, state.compressor, 0)
        kc = worker_key(k.wrap(state.key), state.count, jnp.uint32(0))
        vs, cstate, cb, eb = layout.encode(
            comp, layout.split(updates), state.compressor, {"key": kc}
        )
        return layout.joiner(updates)(vs), _advanced(state, cstate, cb, eb)

    return optax.GradientTransformation(init_fn, update_fn)


def compress_then_average(
    compressor: Compressor,
    *,
    key: Any,
    n_workers: int | None = None,
    axis_name: Any = None,
    error_feedback: bool = True,
    per_leaf: bool = False,
) -> optax.GradientTransformation:
    """Every worker compresses its own update; the output is their average.

    Two ways to hold the workers (give exactly one of ``n_workers`` and ``axis_name``):

    * ``n_workers=N`` (one device): every leaf of the updates has a leading worker axis
      ``(N, ...)``; the workers are vmapped (each with its own compressor state, EF residual
      and key :func:`worker_key` ``(key, t, i)``) and averaged as ``ones(N) @ X / N`` over the
      compressed vectors (the simulator's fixed-order mean, also ≈ 100× faster than
      ``X.mean(0)`` on CPU). The output has no worker axis. ``N`` is needed up front because
      optax's ``init`` sees the params, which have no worker axis.
    * ``axis_name``: the transformation runs inside ``jax.shard_map``, ``jax.pmap`` or
      ``jax.vmap(..., axis_name=...)`` over that axis, one worker per index; the updates are
      that worker's (no worker axis), its index is ``lax.axis_index(axis_name)``, the average
      is ``lax.psum(x_hat, axis_name) / N`` (``N = lax.axis_size(axis_name)``) and the bit
      totals are summed over the axis. The compressor part of the state is per worker (map
      it along the axis, or keep the training loop inside the mapped function); the rest is
      the same on every worker (:func:`partition_specs`). ``psum`` may add in another order
      than ``ones(N) @ X``: iterates then agree with the ``n_workers`` path to float
      rounding only. Under ``jax.shard_map`` the sparsifiers (top-k, rand-k, ...) need
      ``check_vma=False``, as in the simulator's shard_map engine: their internal
      ``lax.switch`` branches differ in varying-axes type.

    ``optax.chain(compress_then_average(C, n_workers=N, key=key), optax.adam(lr))`` is
    SPEC §5 mode (a) (Adam moments on the server, EF-compressed gradients from the workers;
    arXiv 2004.14180) and reproduces ``ratedist.sim.run(compressed_sgd(error_feedback(C)),
    problem, server=optax.adam(lr), key=key)`` given the same per-worker gradients.
    Compressors sharing randomness (``facts.shared``: PermK) get :func:`shared_key` with
    ``worker=i`` and ``n_workers=N`` (checked against their own ``n_workers``).

    Args:
        compressor: a :class:`~ratedist.compressors.Compressor`.
        key: a JAX PRNG key (typed or raw), the same on every worker.
        n_workers: number of workers ``N`` (the leading axis of every leaf of the updates).
        axis_name: the named axis of the workers (a string or a tuple of strings).
        error_feedback: keep an EF14 residual per worker.
        per_leaf: compress every leaf on its own instead of the whole flat vector.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`CompressState`; ``update``
        ignores ``params``.

    Raises:
        TypeError: ``compressor`` not a Compressor, ``key`` not a key, a flag not a bool,
            ``n_workers`` not an int, ``axis_name`` not a string/tuple; at ``init``/``update``
            a non-floating leaf.
        ValueError: both or neither of ``n_workers``/``axis_name``; ``n_workers`` < 1; a
            compressor already wrapped in error feedback with ``error_feedback=True``; at
            ``update``, a leaf whose leading axis is not ``N``, updates that do not match the
            params of ``init``, or a PermK configured for another worker count.
    """
    comp = _check_compressor(compressor, error_feedback)
    layout = _Layout(_check_bool("per_leaf", per_leaf))
    if (n_workers is None) == (axis_name is None):
        raise ValueError(
            "give exactly one of n_workers (updates stacked on a leading worker axis) and "
            f"axis_name (inside shard_map/pmap/vmap), got n_workers={n_workers!r}, "
            f"axis_name={axis_name!r}"
        )
    k = _check_key(key)

    def keys_of(key_data: Any, t: Any, i: Any, n: int) -> dict[str, Any]:
        full = k.wrap(key_data)
        if comp.facts.shared:
            return {"key": shared_key(full, t), "worker": i, "n_workers": n}
        return {"key": worker_key(full, t, i)}

    if axis_name is not None:
        axis_name = _check_axis_name(axis_name)

        def init_fn(params: Any) -> CompressState:
            return _fresh(layout, comp, k, params)

        def update_fn(updates: Any, state: CompressState, params: Any = None):
            del params
            _check_float_tree("updates", updates)
            layout.check(comp, updates, state.compressor, 0)
            n = lax.axis_size(axis_name)
            i = lax.axis_index(axis_name).astype(jnp.uint32)
            keys = keys_of(state.key, state.count, i, n)
            vs, cstate, cb, eb = layout.encode(comp, layout.split(updates), state.compressor, keys)
            mean = [lax.psum(v, axis_name) / n for v in vs]
            cb, eb = lax.psum((cb, eb), axis_name)
            return layout.joiner(updates)(mean), _advanced(state, cstate, cb, eb)

        return optax.GradientTransformation(init_fn, update_fn)

    n = _check_n_workers(n_workers)

    def init_fn(params: Any) -> CompressState:
        one = _fresh(layout, comp, k, params)
        stacked = jax.tree_util.tree_map(
            lambda a: jnp.broadcast_to(a, (n, *a.shape)), one.compressor
        )
        return one._replace(compressor=stacked)

    def update_fn(updates: Any, state: CompressState, params: Any = None):
        del params
        _check_float_tree("updates", updates)
        for path, leaf in jax.tree_util.tree_flatten_with_path(updates)[0]:
            if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != n:
                where = jax.tree_util.keystr(path) or "(the root)"
                raise ValueError(
                    f"updates must have a leading worker axis of size n_workers={n} on every "
                    f"leaf, got shape {jnp.shape(leaf)} at {where}"
                )
        first = jax.tree_util.tree_map(lambda a: a[0], updates)
        layout.check(comp, first, state.compressor, 1)

        def worker(u, cstate, i):
            return layout.encode(
                comp, layout.split(u), cstate, keys_of(state.key, state.count, i, n)
            )

        idx = jnp.arange(n, dtype=jnp.uint32)
        vs, cstate, cb, eb = jax.vmap(worker)(updates, state.compressor, idx)
        mean = [jnp.ones((n,), v.dtype) @ v / n for v in vs]
        return layout.joiner(first)(mean), _advanced(state, cstate, jnp.sum(cb), jnp.sum(eb))

    return optax.GradientTransformation(init_fn, update_fn)


def partition_specs(opt_state: Any, axis_name: Any) -> Any:
    """``shard_map`` specs (a pytree prefix) of an optimizer state run with ``axis_name``.

    Every :class:`CompressState` in ``opt_state`` gets ``PartitionSpec(axis_name)`` for its
    ``compressor`` field (each worker's EF residual and compressor state on its own device:
    globally the per-worker arrays concatenated along their first axis) and
    ``PartitionSpec()`` (replicated) for the rest; every other leaf is replicated (the
    server-side optimizer after ``compress_then_average``)::

        specs = partition_specs(jax.eval_shape(tx.init, params), "workers")
        state = jax.shard_map(tx.init, mesh=mesh, in_specs=P(), out_specs=specs,
                              check_vma=False)(params)

    Args:
        opt_state: an optimizer state or its ``jax.eval_shape``.
        axis_name: the mesh axis of the workers.

    Returns:
        A pytree prefix of ``opt_state`` with ``PartitionSpec`` leaves.
    """
    axis_name = _check_axis_name(axis_name)
    rep = PartitionSpec()

    def spec(node: Any) -> Any:
        if isinstance(node, CompressState):
            return CompressState(rep, rep, PartitionSpec(axis_name), rep, rep)
        return rep

    return jax.tree_util.tree_map(spec, opt_state, is_leaf=lambda n: isinstance(n, CompressState))
