"""The run-time compressor interface (optax-style pure pair) and its registry.

A compressor acts on ONE worker's flat vector ``x`` of shape ``(d,)``:

    comp = make("top-k:k=10")               # or top_k(k=10)
    state = comp.init(x)                    # per-worker state (often empty)
    x_hat, state, info = comp.update(x, state, key=key)

``update`` is pure and jit/vmap-safe; randomness only through ``key``. The rate is part of
the output: :class:`CompressInfo` carries the bits of this call in separate raw counts so
that the simulator can cumulate them and convert to any convention.

Static facts (``unbiased``, ``omega(d)``, ``alpha(d)``, ``deterministic``) live in
:class:`Facts` on the compressor and in the registry, so ``ratedist.bounds`` and the generic
tests can read them without running anything.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import jax.numpy as jnp

from ratedist._registry import Registry

#: Default width in bits of a transmitted float (scales, norms, unquantized values).
FLOAT_BITS = 32


class CompressInfo(NamedTuple):
    """Bits one worker sends in one call, as raw counts (JAX scalars, float).

    Attributes:
        value_bits: bit-packed symbols for the values (1 bit per sign, ``ceil(log2 n)`` per
            fixed-rate index, ``float_bits`` per raw float).
        index_bits: positions of sparse entries as sent by the container (naive
            ``ceil(log2 d)`` per index unless the compressor documents otherwise).
        side_bits: scales, norms and other side information (``float_bits`` each).
        entropy_bits: ideal entropy-coded size of the whole payload (empirical entropy of the
            symbols actually produced, ``log2 C(d, K)`` for a K-subset, side info as is).
    """

    value_bits: Any
    index_bits: Any
    side_bits: Any
    entropy_bits: Any

    @property
    def container_bits(self) -> Any:
        """Wire size of the bit-packed container: values + indices + side information."""
        return self.value_bits + self.index_bits + self.side_bits


def zero_info(dtype: Any = jnp.float32) -> CompressInfo:
    z = jnp.zeros((), dtype)
    return CompressInfo(z, z, z, z)


class Facts(NamedTuple):
    """Static theoretical facts of a configured compressor.

    Attributes:
        name: registry name.
        params: the configuration (JSON-able).
        unbiased: ``E[C(x)] = x`` for every x.
        deterministic: ``C`` uses no randomness (pathwise 3PC checks apply).
        omega: ``d -> omega`` with ``E||C(x) - x||^2 <= omega ||x||^2`` (unbiased ones), or None.
        alpha: ``d -> alpha`` with ``E||C(x) - x||^2 <= (1 - alpha) ||x||^2``, or None.
        shared: the compressor uses randomness SHARED by the workers (PermK): ``update``
            wants the same ``key`` on every worker plus ``worker=i`` and ``n_workers=N``; the
            simulator passes them. False: ``key`` is the worker's own.
        abs_mse: ``d -> V`` with ``E||C(x) - x||^2 <= V`` for EVERY finite x, an absolute
            bound (pathwise for a deterministic compressor), or None. Quantizers of a fixed
            resolution (rounding to a grid) have one and neither omega nor alpha: their error
            does not shrink with ``||x||``.
    """

    name: str
    params: dict[str, Any]
    unbiased: bool
    deterministic: bool
    omega: Callable[[int], float] | None = None
    alpha: Callable[[int], float] | None = None
    shared: bool = False
    abs_mse: Callable[[int], float] | None = None


class _CompressorFields(NamedTuple):
    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, CompressInfo]]
    facts: Facts
    sparse: Callable[..., tuple[Any, Any, Any, CompressInfo]] | None = None


class Compressor(_CompressorFields):
    """``init(x) -> state`` and ``update(x, state, *, key) -> (x_hat, state, info)``.

    Sparsifiers also offer ``sparse(x, state, *, key) -> (values, indices, state, info)``:
    the same call before densification, ``x_hat = zeros(d).at[indices].set(values)`` with
    ``indices`` distinct int32. A caller that only adds ``x_hat`` to a d-vector (EF21's
    ``h + C(x − h)``) can then touch the K sent entries instead of all d. None otherwise.

    Non-finite inputs (enforced here, for every compressor, when the record is built):

    * ``update``: where ``x_i`` is NaN, ``+inf`` or ``-inf``, ``x_hat_i`` is ``x_i`` itself
      (:func:`propagate_nonfinite`), whatever the compressor computed there; a sparsifier
      that did not send coordinate ``i`` still returns ``x_i`` at ``i``. The other
      coordinates, the state and ``info`` are unspecified (a norm of ``x`` is then
      non-finite, so they are often NaN or 0).
    * ``sparse`` (it cannot carry an unsent coordinate): a sent value whose input is
      non-finite is that input; if a non-finite ``x_i`` was NOT sent, every sent value is NaN
      (:func:`propagate_nonfinite_sparse`), so ``h + C(x − h)`` turns non-finite too.
      ``sparse`` and ``update`` agree wherever ``x`` is finite.

    Hence a non-finite input never yields an all-finite output, and the simulator's
    divergence check (a non-finite ``f`` or ``||grad f||^2``) sees it instead of a sign
    compressor's ``±1`` or a sparsifier's 0. Finite inputs are untouched bit for bit (a
    select, not arithmetic). Cost: one extra elementwise pass over ``x`` per call (fused
    under ``jit``; ``sparse`` adds a gather of the K sent inputs and a count over ``x``).
    Building the record wraps ``update`` and ``sparse`` once (idempotent: rebuilding a
    record, e.g. with ``_replace``, does not wrap them twice).
    """

    __slots__ = ()

    def __new__(
        cls,
        init: Callable[[Any], Any],
        update: Callable[..., tuple[Any, Any, CompressInfo]],
        facts: Facts,
        sparse: Callable[..., tuple[Any, Any, Any, CompressInfo]] | None = None,
    ) -> Compressor:
        update = _guard(update, _propagating_update)
        if sparse is not None:
            sparse = _guard(sparse, _propagating_sparse)
        return super().__new__(cls, init, update, facts, sparse)

    @classmethod
    def _make(cls, iterable: Any) -> Compressor:
        # NamedTuple's _make (and so _replace) bypasses __new__; route it through the guard.
        return cls(*iterable)


def propagate_nonfinite(x: Any, out: Any) -> Any:
    """``out`` with ``out_i = x_i`` wherever ``x_i`` is NaN or ``±inf`` (dtype of ``out``).

    Bit for bit ``out`` where ``x`` is finite (``jnp.where`` selects, it does not compute).
    """
    x = jnp.asarray(x)
    out = jnp.asarray(out)
    return jnp.where(jnp.isfinite(x), out, x.astype(out.dtype))


def count_nonfinite(x: Any) -> Any:
    """Number of non-finite entries of ``x`` along its last axis.

    Counted in float32 below 2^24 entries (exact: every partial sum is an integer below 2^24,
    whatever the summation order): XLA's CPU backend sums a bool-to-int32 array through a
    chain of reduce-windows, measured 2.4x slower than the float sum (48 against 20 us at
    d = 10^5, one core), and the sparsifiers run this count on every call.
    """
    dtype = jnp.float32 if x.shape[-1] < 2**24 else jnp.int32
    return jnp.sum(jnp.where(jnp.isfinite(x), 0, 1).astype(dtype), axis=-1)


def propagate_nonfinite_sparse(x: Any, values: Any, indices: Any) -> Any:
    """The sparse form of :func:`propagate_nonfinite` for ``x_hat = 0`` except at ``indices``.

    A value whose input ``x[indices_j]`` is non-finite becomes that input; if some non-finite
    ``x_i`` is not among ``indices`` (distinct), every value is NaN. Bit for bit ``values``
    when ``x`` is finite.
    """
    x = jnp.asarray(x)
    values = jnp.asarray(values)
    sent = x[indices]
    sent_ok = jnp.isfinite(sent)
    values = jnp.where(sent_ok, values, sent.astype(values.dtype))
    unsent_bad = count_nonfinite(x) > jnp.sum(~sent_ok)
    return jnp.where(unsent_bad, jnp.asarray(jnp.nan, values.dtype), values)


class _Propagating:
    """``fn`` followed by the non-finite policy of :class:`Compressor` (see there)."""

    def __init__(self, fn: Callable[..., Any], post: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._post = post

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else kwargs["x"]
        return self._post(x, self._fn(*args, **kwargs))


def _propagating_update(x: Any, result: tuple[Any, Any, CompressInfo]) -> tuple[Any, ...]:
    x_hat, state, info = result
    return propagate_nonfinite(x, x_hat), state, info


def _propagating_sparse(x: Any, result: tuple[Any, Any, Any, CompressInfo]) -> tuple[Any, ...]:
    values, indices, state, info = result
    return propagate_nonfinite_sparse(x, values, indices), indices, state, info


def _guard(fn: Callable[..., Any], post: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under the policy ``post``, wrapped once (a rebuilt record keeps its wrapper)."""
    if isinstance(fn, _Propagating) and fn._post in (post, _already_applied):
        return fn
    if getattr(fn, "propagates_nonfinite", False):
        # the output already follows the policy (ratedist.compressors._kernels, Top-K's
        # sparse form): no second pass
        return _Propagating(fn, _already_applied)
    return _Propagating(fn, post)


def _already_applied(x: Any, result: Any) -> Any:
    return result


#: Registry of compressor factories, the one place a compressor is enrolled (use
#: :func:`register`). Facts: ``unbiased``, ``deterministic``, ``params`` (name -> (type,
#: default), read from the factory's signature), ``examples`` (parameter sets used by the
#: generic tests), ``rd_sweep`` (parameter sets of the default rate–distortion curve,
#: ``ratedist rd --all``; the examples where absent), ``rd_curve`` (a denser sweep for the
#: closed-form curves of figures; ``rd_sweep`` where absent), ``omega``/``alpha``/``shared``/
#: ``abs_mse`` where declared, ``selects`` (every output entry is 0 or the input entry: a pure
#: selection).
#: A closed form, where one exists, registers itself against the same name in
#: :data:`ratedist.rd.CLOSED_FORMS` (the rd layer sits above this one).
COMPRESSORS: Registry[Callable[..., Compressor]] = Registry("compressor")


def _plain_type(annotation: Any) -> Any:
    """``X`` from ``X | None`` (the optional parameters); other annotations unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def signature_params(factory: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """``name -> (type, default)`` of a factory's parameters, from its signature.

    The type is the annotation (``X`` for ``X | None``); the default is None for a required
    parameter.
    """
    out = {}
    for name, p in inspect.signature(factory, eval_str=True).parameters.items():
        default = None if p.default is inspect.Parameter.empty else p.default
        out[name] = (_plain_type(p.annotation), default)
    return out


F = TypeVar("F", bound=Callable[..., Compressor])


def register(name: str, **facts: Any) -> Callable[[F], F]:
    """Decorator enrolling a compressor factory in :data:`COMPRESSORS` under ``name``.

    The ``params`` fact is read from the factory's signature; ``examples`` and ``rd_sweep``
    are checked against it.

    Args:
        name: registry name (the spec-string name, e.g. ``"top-k"``).
        **facts: static facts (see :data:`COMPRESSORS`), not ``params``.

    Raises:
        TypeError: ``params`` given as a fact.
        ValueError: ``name`` already registered, or an example/sweep entry names a parameter
            the factory does not take.
    """
    if "params" in facts:
        raise TypeError(f"compressor {name!r}: params are read from the factory signature")

    def deco(factory: F) -> F:
        params = signature_params(factory)
        for fact in ("examples", "rd_sweep", "rd_curve"):
            for entry in facts.get(fact, ()):
                unknown = sorted(set(entry) - set(params))
                if unknown:
                    raise ValueError(
                        f"compressor {name!r}: {fact} entry {entry!r} names unknown "
                        f"parameter(s) {', '.join(unknown)}; allowed: {', '.join(params)}"
                    )
        COMPRESSORS.add(name, factory, params=params, **facts)
        return factory

    return deco
