"""Exact Top-K selection by magnitude: the one selection routine of the sparsifiers.

``top_k_abs(x, k)`` returns the ``k`` entries of largest ``|x_i|`` and their indices in
INCREASING INDEX order (the order a wire format sends them in). The selected set is that of
``jax.lax.top_k(jnp.abs(x), k)``: magnitudes are ordered as IEEE bit patterns with the sign
cleared (NaN above +inf, ``-0.0`` equal to ``0.0``), and entries tied with the k-th largest
magnitude are taken from the lowest index up.

Implementations (same results, bit for bit):

- CPU, float32/float64, native kernels available (:mod:`ratedist._native`): one O(d) pass
  through an XLA FFI custom call (a lower bracket from a strided sample, a SIMD pass that
  collects the ~2k candidates above it — AVX-512 or AVX2 where the CPU has them — and a radix
  select of the k-th largest key among them; see ``select.cc``). Batched calls (``vmap``) run
  row by row in one custom call.
- Everything else (GPU/TPU, other dtypes, no C++ compiler, ``RATEDIST_NATIVE=0``):
  ``jax.lax.top_k`` on the magnitudes, indices then sorted.

The CPU/other choice is made per lowering platform with ``jax.lax.platform_dependent``, so
one jitted function is correct on every backend. The values are gathered from ``x`` in JAX,
so ``jax.grad`` flows through them (the indices are piecewise constant). Limitation:
``jax.export`` for CPU refuses the kernel's custom call (it has no serialization-compatibility
guarantee); export with ``RATEDIST_NATIVE=0`` (or for GPU/TPU only).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ratedist import _native
from ratedist.compressors.base import count_nonfinite


def _check(x: Any, k: Any) -> tuple[jax.Array, int]:
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"x must have at least one dimension, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    d = x.shape[-1]
    if not 1 <= k <= d:
        raise ValueError(f"k must satisfy 1 <= k <= d = {d}, got k={k}")
    return x, k


def _lax(x: jax.Array, k: int) -> jax.Array:
    _, idx = jax.lax.top_k(jnp.abs(x), k)
    return jnp.sort(idx, axis=-1).astype(jnp.int32)


def _ffi(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The kernel's ``(indices, unsent)``: ``unsent`` (int32, one per row) is 1 where some
    non-finite entry of the row is not among the indices."""
    target, _ = _native.TOP_K_ABS_TARGETS[x.dtype.name]
    outs = (
        jax.ShapeDtypeStruct((*x.shape[:-1], k), jnp.int32),
        jax.ShapeDtypeStruct(x.shape[:-1], jnp.int32),
    )
    return jax.ffi.ffi_call(target, outs, vmap_method="broadcast_all")(x)


def _lax_unsent(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """:func:`_lax` and the unsent flag as :func:`~ratedist.compressors.base
    .propagate_nonfinite_sparse` decides it (count over ``x`` against the sent count)."""
    idx = _lax(x, k)
    sent_bad = ~jnp.isfinite(jnp.take_along_axis(x, idx, axis=-1))
    unsent = count_nonfinite(x) > jnp.sum(sent_bad, axis=-1)
    return idx, unsent.astype(jnp.int32)


def native_available(dtype: Any) -> bool:
    """Whether :func:`top_k_abs` uses the native CPU kernel for arrays of ``dtype``."""
    return jnp.dtype(dtype).name in _native.TOP_K_ABS_TARGETS and _native.status().available


def top_k_abs(x: Any, k: int) -> tuple[jax.Array, jax.Array]:
    """The ``k`` entries of largest magnitude along the last axis, in increasing index order.

    Args:
        x: floating array of shape ``(..., d)``.
        k: number of entries, ``1 <= k <= d``.

    Returns:
        ``(values, indices)`` of shape ``(..., k)``: ``values = x[..., indices]`` (signed),
        ``indices`` int32 and strictly increasing along the last axis. The index set equals
        ``jax.lax.top_k(jnp.abs(x), k)[1]`` as a set (ties to the lower index).

    Raises:
        TypeError: ``x`` is not floating, or ``k`` is not an int.
        ValueError: ``x`` is a scalar, or ``k`` is outside ``[1, d]``.
    """
    values, indices, _ = top_k_abs_unsent(x, k)  # (under jit the unused flag costs nothing)
    return values, indices


def top_k_abs_unsent(x: Any, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`top_k_abs` and whether some non-finite entry was left out.

    Returns:
        ``(values, indices, unsent)``: the first two as :func:`top_k_abs`; ``unsent`` (bool,
        shape ``x.shape[:-1]``) is True where some NaN or ``±inf`` entry of the row is not
        among ``indices``. The magnitude order puts every non-finite entry above every finite
        one, so this happens only when all ``k`` selected entries are non-finite and more
        than ``k`` are; the native kernel decides it from the ``k`` selected entries and
        counts the row only then (the count over ``x`` that
        :func:`ratedist.compressors.base.propagate_nonfinite_sparse` makes is then not
        needed: one pass over ``x`` fewer per call).

    Raises:
        As :func:`top_k_abs`.
    """
    x, k = _check(x, k)
    # indices carry no derivative: select on a stopped copy, gather the values from x itself
    v = jax.lax.stop_gradient(x)
    if native_available(x.dtype):
        idx, unsent = jax.lax.platform_dependent(
            v, cpu=lambda a: _ffi(a, k), default=lambda a: _lax_unsent(a, k)
        )
    else:
        idx, unsent = _lax_unsent(v, k)
    return jnp.take_along_axis(x, idx, axis=-1), idx, unsent.astype(bool)


__all__ = ["native_available", "top_k_abs", "top_k_abs_unsent"]
