"""Shared pieces of the run-time compressors: input checks, bit counting, random rounding.

Everything here is either static (Python, evaluated once at trace time: shapes, ``log2 C(d, k)``
for a static ``k``) or pure ``jax.numpy`` (safe under ``jit``/``vmap``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from ratedist._validation import check_choice, check_int
from ratedist.compressors.base import CompressInfo

#: Accepted widths of the uniform random numbers used by stochastic rounding.
RNG_BITS = (8, 16, 32)


def info_dtype() -> Any:
    """Float dtype of the :class:`CompressInfo` fields.

    The default JAX float (float64 when x64 is enabled, float32 otherwise), independent of the
    dtype of ``x``: bit counts of a float32 vector at d = 10^7 are ~10^8 and deserve float64
    when it is available.
    """
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def as_bits(value: Any) -> jax.Array:
    return jnp.asarray(value, dtype=info_dtype())


def make_info(value_bits: Any, index_bits: Any, side_bits: Any, entropy_bits: Any) -> CompressInfo:
    """A :class:`CompressInfo` with every field cast to :func:`info_dtype`."""
    return CompressInfo(
        as_bits(value_bits), as_bits(index_bits), as_bits(side_bits), as_bits(entropy_bits)
    )


def check_vector(x: Any) -> jax.Array:
    """``x`` as a 1-D floating JAX array (static checks only: shape and dtype)."""
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(
            f"x must be one worker's flat vector of shape (d,), got shape {tuple(x.shape)}; "
            "use jax.vmap for several workers"
        )
    if x.shape[0] < 1:
        raise ValueError("x must have at least one coordinate, got shape (0,)")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    return x


def check_key(key: Any, name: str) -> Any:
    """Refuse a missing key for a randomized compressor."""
    if key is None:
        raise ValueError(f"compressor {name!r} is randomized: update() needs key=, got key=None")
    return key


def check_float_bits(float_bits: Any) -> int:
    return check_int("float_bits", float_bits, min_value=1, max_value=64)


def check_rng_bits(rng_bits: Any) -> int:
    out = check_int("rng_bits", rng_bits)
    if out not in RNG_BITS:
        raise ValueError(f"rng_bits must be one of {list(RNG_BITS)}, got {out}")
    return out


def check_k(k: int, d: int) -> None:
    """Trace-time check ``k <= d`` (``d`` is only known once ``x`` is seen)."""
    if k > d:
        raise ValueError(f"k must be <= d = {d} (the length of x), got k={k}")


def ceil_log2(n: int) -> int:
    """``ceil(log2 n)`` for an integer ``n >= 1`` (exact, no float rounding)."""
    return (int(n) - 1).bit_length()


def log2_binom(d: int, k: int) -> float:
    """``log2 C(d, k)`` for static integers (float64 via ``lgamma``)."""
    return (math.lgamma(d + 1) - math.lgamma(k + 1) - math.lgamma(d - k + 1)) / math.log(2)


def log2_binom_traced(d: int, m: Any) -> jax.Array:
    """``log2 C(d, m)`` for a traced count ``m`` (in :func:`info_dtype`).

    Computed with ``gammaln``; its absolute error is about ``eps * d log d`` (≈ 1e-8 bits in
    float64, ≈ 10 bits at d = 10^7 in float32).
    """
    m = as_bits(m)
    dd = as_bits(d)
    return (gammaln(dd + 1) - gammaln(m + 1) - gammaln(dd - m + 1)) / jnp.log(as_bits(2.0))


def empirical_entropy_bits(symbols: Any, n_symbols: int) -> jax.Array:
    """Ideal code length ``sum_j c_j log2(N / c_j)`` of a symbol sequence, in bits.

    This is ``N * H(p_hat)`` with the empirical distribution ``p_hat`` of the ``N`` symbols
    actually produced (``0 log 0 = 0``): the length an ideal entropy coder matched to this very
    message would reach. The code table (the counts) is NOT charged.

    Args:
        symbols: integer array with values in ``[0, n_symbols)``.
        n_symbols: static alphabet size.

    Returns:
        A scalar in :func:`info_dtype`.
    """
    symbols = jnp.ravel(symbols)
    n = symbols.shape[0]
    # bincount (a scatter-add) measured faster on CPU than a fused compare-and-count even for
    # 3 symbols at d = 10^7 (the latter reduces over the long leading axis).
    return counts_entropy_bits(jnp.bincount(symbols, length=n_symbols), n)


def counts_entropy_bits(counts: Any, n: Any) -> jax.Array:
    """``sum_j c_j log2(n / c_j)`` bits (``0 log 0 = 0``) of symbol counts summing to ``n``."""
    c = as_bits(counts)
    safe = jnp.where(c > 0, c, 1.0)
    return jnp.sum(jnp.where(c > 0, c * jnp.log2(as_bits(n) / safe), 0.0))


def binary_entropy_bits(n_ones: Any, n: int) -> jax.Array:
    """``N * H(n_ones / N)`` bits for a binary sequence of length ``n`` (static)."""
    c1 = as_bits(n_ones)
    return counts_entropy_bits(jnp.stack([as_bits(n) - c1, c1]), n)


def word_fields(words: jax.Array, n: int, rng_bits: int) -> jax.Array:
    """The first ``n`` little-endian ``rng_bits``-bit (8 or 16) fields of uint32 ``words``
    (``32 / rng_bits`` per word)."""
    udtype = jnp.uint16 if rng_bits == 16 else jnp.uint8
    return jax.lax.bitcast_convert_type(words, udtype).reshape(-1)[:n]


def safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` with ``0`` where ``b == 0`` (a zero vector compresses to zero, not NaN)."""
    nz = b > 0
    return jnp.where(nz, a / jnp.where(nz, b, 1), 0)


def check_rounding(rounding: Any) -> str:
    return check_choice("rounding", rounding, ("deterministic", "stochastic"))


def bit_width(v: jax.Array) -> jax.Array:
    """Bits to write an integer ``0 <= v < 2^31``: ``ceil(log2(v + 1))`` (exact, via clz)."""
    return 32 - jax.lax.clz(v.astype(jnp.int32))
