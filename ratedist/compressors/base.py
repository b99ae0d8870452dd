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

from collections.abc import Callable
from typing import Any, NamedTuple

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
    """

    name: str
    params: dict[str, Any]
    unbiased: bool
    deterministic: bool
    omega: Callable[[int], float] | None = None
    alpha: Callable[[int], float] | None = None
    shared: bool = False


class Compressor(NamedTuple):
    """``init(x) -> state`` and ``update(x, state, *, key) -> (x_hat, state, info)``.

    Sparsifiers also offer ``sparse(x, state, *, key) -> (values, indices, state, info)``:
    the same call before densification, ``x_hat = zeros(d).at[indices].set(values)`` with
    ``indices`` distinct int32. A caller that only adds ``x_hat`` to a d-vector (EF21's
    ``h + C(x − h)``) can then touch the K sent entries instead of all d. None otherwise.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, CompressInfo]]
    facts: Facts
    sparse: Callable[..., tuple[Any, Any, Any, CompressInfo]] | None = None


#: Registry of compressor factories; facts: ``unbiased``, ``deterministic``, ``params``
#: (name -> (type, default)), ``examples`` (parameter sets used by generic tests).
COMPRESSORS: Registry[Callable[..., Compressor]] = Registry("compressor")
register = COMPRESSORS.register
