"""One-pass elementwise quantizers: the native CPU kernel and its pure-JAX twin.

Every function here returns ``(x_hat, counts)``: the dequantized vector, with the compressors'
non-finite policy already applied (``x_hat_i = x_i`` where ``x_i`` is NaN or ``±inf``, see
:func:`~ratedist.compressors.base.propagate_nonfinite`; updates built on these functions are
marked :func:`propagates_nonfinite` so :class:`~ratedist.compressors.base.Compressor` does
not add a second pass), and the counts of the symbols the entropy layer codes
(``counts_entropy_bits(counts, d)`` is the empirical entropy of the message; unspecified, and
not necessarily equal between the two paths, when ``x`` has non-finite entries). One family, parameterized by a level table:

=============  ====================================================  =========================
function       rounding                                              users
=============  ====================================================  =========================
magnitude      ``|x|/scale`` stochastically onto levels in [0, 1]     qsgd, nuqsgd, terngrad
signed         ``x/scale`` (or ``x``) stochastically onto levels      scalar, stochastic-sign
natural        ``|x|`` stochastically onto the powers of two          natural
nearest        ``x/scale`` (or ``x``) to the nearest-cell level       scalar (deterministic)
sign           ``scale * (+-1)`` (or ``+-1``)                         sign, scaled-sign
keep           ``x`` where ``|x| > t``, else 0                         threshold
rand_keys      30 random bits as positive float32 keys (x not read)   rand-k, rand-k-unbiased
=============  ====================================================  =========================

The integer symbols of grid and the lattices (rounding with their entropy, symbol summaries,
label entropies) are in :mod:`ratedist.compressors._symbols`, built on this module's stream
and platform switch.

:func:`random_subset` (Rand-K's indices) and :func:`rand_k_dense` (Rand-K's dense update)
are the exceptions to the ``(x_hat, counts)`` shape: the first returns
``top_k_abs(rand_keys(x, key), k)[1]``, on CPU from a native pass that never writes the ``d``
keys; the second ``x_hat`` alone, from the same pass.

Randomness (both implementations): ratedist's counter-based stream, :func:`stream_words`.
Block ``j`` is Threefry-2x32-20 (Salmon et al., SC'11; the function behind ``jax.random``) of
the counter ``(hi, lo) = (j >> 32, j & 0xffffffff)`` under the key's two 32-bit words
(:func:`key_words`), and its two output words are words ``2j`` and ``2j + 1`` of the stream.
``jax.random.bits`` XORs the two halves into one number per block; using both halves the
generator work per number (measured ≈ 0.37 ns instead of ≈ 0.75 ns per float32 uniform with
AVX-512 on the reference machine, ``benchmarks/README.md``). Element ``i`` draws its uniform
from word ``i`` (float32: 23 random mantissa bits, built as ``jax.random.uniform`` builds
them), from the 64-bit word ``(w[2i] << 32) | w[2i+1]`` (float64: 52 bits), or from the
``rng_bits``-bit field ``i mod (32/rng_bits)`` of word ``i // (32/rng_bits)`` (8/16 bits,
little-endian); Rand-K's keys use word ``i``. Element ``i`` depends only on ``(key, i)``: not on
threads, chunking, the batch layout or the platform.

Implementations (same results, bit for bit; ``tests/compressors/test_kernels.py``):

- CPU, float32/float64, native kernels available (:mod:`ratedist._native`): one XLA FFI custom
  call reads ``x`` once and writes ``x_hat`` and the counts. The scale (a reduction) is
  computed by the caller in JAX and passed in.
- Everything else (GPU/TPU, other dtypes, ``RATEDIST_NATIVE=0``): the ``_jax_*`` functions
  below (``jax.numpy``; the stream from ``jax.extend.random.threefry_2x32``).

The choice is made per lowering platform with ``jax.lax.platform_dependent`` (as
:func:`ratedist.compressors.select.top_k_abs`). Limitations of the native path: its derivative
is the pure-JAX path's (a custom JVP rule), no ``jax.export`` for CPU (use
``RATEDIST_NATIVE=0``), NaN/inf inputs are not guaranteed to give the same counts as the
pure-JAX path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from ratedist import _native
from ratedist.compressors._common import safe_div, word_fields
from ratedist.compressors.base import propagate_nonfinite
from ratedist.compressors.select import top_k_abs

#: kernel modes (the ``Mode`` enum of ``ratedist/_native/quantize.cc``)
MAGNITUDE, SIGNED, NATURAL, SIGN, NEAREST, THRESHOLD, RAND_KEYS, UNIFORM = range(8)


# ----------------------------------------------------------------------------- stream
def key_words(key: Any) -> jax.Array:
    """The two uint32 words that key the stream: the key data of a Threefry-2x32 key (typed,
    or a raw ``uint32[2]`` under the default Threefry implementation); for any other key
    (e.g. ``rbg``), ``jax.random.bits(key, (2,), uint32)``."""
    if _typed(key):
        if "threefry2x32" in str(jax.random.key_impl(key)) and jnp.shape(key) == ():
            return jax.random.key_data(key)
        return jax.random.bits(key, (2,), jnp.uint32)
    raw = jnp.asarray(key)
    if (
        raw.dtype == jnp.uint32
        and raw.shape == (2,)
        and "threefry2x32" in str(jax.config.jax_default_prng_impl)
    ):
        return raw
    return jax.random.bits(key, (2,), jnp.uint32)


def stream_words(kd: jax.Array, n: int) -> jax.Array:
    """Words ``0 .. n-1`` (uint32) of the stream keyed by ``kd`` (:func:`key_words`): block
    ``j`` = Threefry-2x32-20 of the counter ``(0, j)``, its outputs at ``2j`` and ``2j + 1``."""
    m = -(-n // 2)
    count = jnp.concatenate([jnp.zeros((m,), jnp.uint32), jnp.arange(m, dtype=jnp.uint32)])
    out = threefry_2x32(kd, count)  # [x0 of blocks 0..m-1, x1 of blocks 0..m-1]
    return jnp.stack([out[:m], out[m:]], axis=1).reshape(-1)[:n]


def stream_uniform(kd: jax.Array, n: int, dtype: Any) -> jax.Array:
    """Uniforms in ``[0, 1)`` from the stream, ``1.f - 1`` with the dtype's mantissa ``f``
    taken from the top bits of word ``i`` (16/32-bit floats: e.g. 23 bits for float32) or of
    the 64-bit word ``(w[2i] << 32) | w[2i+1]`` (float64: 52 bits)."""
    dtype = jnp.dtype(dtype)
    fi = jnp.finfo(dtype)
    one = np.array(1, dtype)
    if fi.bits == 64:
        w = stream_words(kd, 2 * n).reshape(n, 2).astype(jnp.uint64)
        mant = ((w[:, 0] << 32) | w[:, 1]) >> (64 - fi.nmant)
        return jax.lax.bitcast_convert_type(mant | jnp.uint64(one.view(np.uint64)), dtype) - 1
    if fi.bits in (16, 32):
        uint = np.uint32 if fi.bits == 32 else np.uint16
        mant = (stream_words(kd, n) >> (32 - fi.nmant)).astype(uint)
        return jax.lax.bitcast_convert_type(mant | uint(one.view(uint)), dtype) - 1
    raise TypeError(f"stream_uniform: dtype must be a 16, 32 or 64-bit float, got {dtype}")


def stream_fields(kd: jax.Array, n: int, rng_bits: int) -> jax.Array:
    """``n`` uniform ``rng_bits``-bit (8 or 16) integers: the little-endian fields of the
    stream's words, ``32 / rng_bits`` per word."""
    return word_fields(stream_words(kd, -(-n // (32 // rng_bits))), n, rng_bits)


def _typed(key: Any) -> bool:
    return hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def native_available(dtype: Any) -> bool:
    """Whether the quantizer kernel serves arrays of ``dtype`` on CPU in this process."""
    return jnp.dtype(dtype).name in _native.QUANTIZE_TARGETS and _native.status().available


def _ffi(x, kd, scale, *, mode, rng_bits, flag, table, n_sym):
    target, _ = _native.QUANTIZE_TARGETS[x.dtype.name]
    outs = (
        jax.ShapeDtypeStruct(x.shape, x.dtype),
        jax.ShapeDtypeStruct((n_sym,), jnp.int32),
    )
    return jax.ffi.ffi_call(target, outs, vmap_method="broadcast_all")(
        x,
        kd,
        jnp.reshape(jnp.asarray(scale, x.dtype), (1,)),
        mode=np.int32(mode),
        rng_bits=np.int32(rng_bits),
        flag=np.int32(flag),
        table=np.asarray(table, np.float64),
    )


def _dispatch(x, key, scale, jax_fn, *, mode, rng_bits=32, flag=0, table=(), n_sym, policy=True):
    """``jax_fn(x, kd, scale)`` (``kd``: the stream's key words) or the native kernel with the
    same result, per platform."""
    scale = jnp.asarray(0 if scale is None else scale, x.dtype)
    kd = jnp.zeros((2,), jnp.uint32) if key is None else key_words(key)

    def pure(a, k, s):
        x_hat, counts = jax_fn(a, k, s)
        return (propagate_nonfinite(a, x_hat) if policy else x_hat), counts

    if not native_available(x.dtype):
        return pure(x, kd, scale)
    kw = {"mode": mode, "rng_bits": rng_bits, "flag": flag, "table": table, "n_sym": n_sym}
    return _platform_call(x, kd, scale, pure, lambda a, k, s: _ffi(a, k, s, **kw))


def _platform_call(x, kd, scale, pure, native):
    """``native(x, kd, scale)`` on CPU, ``pure`` elsewhere; the first output is the only one
    with a derivative, that of ``pure`` (whose values the kernel reproduces bit for bit, so
    grad is that of ``RATEDIST_NATIVE=0``); the others (counts, entropies) are piecewise
    constant: zero tangents."""

    @jax.custom_jvp
    def call(a, k, s):
        return jax.lax.platform_dependent(a, k, s, cpu=native, default=pure)

    @call.defjvp
    def _jvp(primals, tangents):
        a, k, s = primals
        ta, _, ts = tangents
        out = call(a, k, s)
        _, dout = jax.jvp(lambda a, s: pure(a, k, s), (a, s), (ta, ts))
        zeros = [
            jnp.zeros_like(o)
            if jnp.issubdtype(o.dtype, jnp.inexact)
            else np.zeros(o.shape, jax.dtypes.float0)
            for o in out[1:]
        ]
        return out, (dout[0], *zeros)

    return call(x, kd, scale)


# ----------------------------------------------------------------------------- pure JAX
def _jax_uniforms(kd, n, dtype, rng_bits):
    if rng_bits == 32:
        return stream_uniform(kd, n, dtype)
    return (stream_fields(kd, n, rng_bits).astype(dtype) + 0.5) * float(2.0**-rng_bits)


def round_up(kd: jax.Array, p: jax.Array, rng_bits: int) -> jax.Array:
    """Bernoulli(``p``) draws for stochastic rounding from the stream keyed by ``kd``:
    ``u < p`` (``rng_bits = 32``: :func:`stream_uniform`; 8/16: ``u = (b + 1/2) 2^-rng_bits``,
    the bias that :func:`bernoulli` states)."""
    return _jax_uniforms(kd, p.shape[0], p.dtype, rng_bits) < p


def stochastic_levels(kd: jax.Array, r: jax.Array, levels: np.ndarray, rng_bits: int) -> jax.Array:
    """Unbiased stochastic rounding of ``r`` clipped to ``[levels[0], levels[-1]]`` onto
    ``levels``; the chosen level INDEX (int32). The cell is a fused compare-and-count."""
    lv = jnp.asarray(levels, dtype=r.dtype)
    r = jnp.clip(r, lv[0], lv[-1])
    lo = jnp.sum(r[:, None] >= lv[None, 1:-1], axis=1, dtype=jnp.int32)
    l_lo, l_hi = lv[lo], lv[lo + 1]
    p = (r - l_lo) / (l_hi - l_lo)
    return lo + round_up(kd, p, rng_bits).astype(jnp.int32)


def _jax_magnitude(x, key, scale, levels, rng_bits, zero_plus):
    s = len(levels) - 1
    r = safe_div(jnp.abs(x), scale)
    idx = stochastic_levels(key, r, levels, rng_bits)
    lv = jnp.asarray(levels, dtype=x.dtype)
    neg = x < 0
    v = lv[idx]
    flip = neg & (v != 0) if zero_plus else neg
    x_hat = scale * jnp.where(flip, -v, v)
    signed = jnp.where(neg, s - idx, s + idx)  # in [0, 2s]; both zeros map to s
    return x_hat, jnp.bincount(signed, length=2 * s + 1).astype(jnp.int32)


def _jax_signed(x, key, scale, levels, rng_bits, normalize):
    y = safe_div(x, scale) if normalize else x
    idx = stochastic_levels(key, y, levels, rng_bits)
    q = jnp.asarray(levels, x.dtype)[idx]
    return (scale * q if normalize else q), jnp.bincount(idx, length=len(levels)).astype(jnp.int32)


def _exponent_range(dtype: Any) -> tuple[int, int]:
    """Range of ``frexp`` exponents ``e`` (``|x| = m 2^e``, ``m in [1/2, 1)``) of a dtype."""
    fi = jnp.finfo(dtype)
    return int(fi.minexp) - int(fi.nmant) + 1, int(fi.maxexp) + 1


def natural_symbols(dtype: Any) -> int:
    """Alphabet size of natural compression's signed exponents (0, then the two signs)."""
    e_min, e_max = _exponent_range(dtype)
    return 2 * (e_max - e_min + 2) + 1


def _jax_natural(x, key, rng_bits):
    ax = jnp.abs(x)
    _, e = jnp.frexp(ax)  # ax = m 2^e, m in [1/2, 1)
    low = jnp.ldexp(jnp.ones_like(ax), e - 1)  # 2^(e-1) <= ax < 2^e
    p = jnp.where(ax > 0, ax / low - 1, 0)
    up = round_up(key, p, rng_bits)
    mag = jnp.where(ax > 0, jnp.where(up, 2 * low, low), 0).astype(x.dtype)
    x_hat = jnp.where(x < 0, -mag, mag)
    e_min, e_max = _exponent_range(x.dtype)
    n_exp = e_max - e_min + 2  # +1 for the rounded-up top exponent
    e_out = jnp.clip(e + up.astype(e.dtype) - e_min, 0, n_exp - 1)
    sym = jnp.where(ax > 0, jnp.where(x < 0, 1 + e_out, 1 + n_exp + e_out), 0)
    return x_hat, jnp.bincount(sym, length=2 * n_exp + 1).astype(jnp.int32)


def _jax_nearest(x, scale, thresholds, levels, normalize):
    y = safe_div(x, scale) if normalize else x
    th = jnp.asarray(thresholds, x.dtype)
    idx = jnp.sum(y[:, None] > th[None, :], axis=1, dtype=jnp.int32)
    q = jnp.asarray(levels, x.dtype)[idx]
    return (scale * q if normalize else q), jnp.bincount(idx, length=len(levels)).astype(jnp.int32)


def _sign_pm1(x: jax.Array) -> jax.Array:
    """``+1`` for ``x >= 0`` (including ``-0.0``), ``-1`` otherwise: the 1-bit sign code."""
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def _two_counts(n_one: jax.Array, d: int) -> jax.Array:
    return jnp.stack([d - n_one, n_one]).astype(jnp.int32)


def _jax_sign(x, scale, scaled):
    s = _sign_pm1(x)
    n_pos = jnp.sum(x >= 0, dtype=jnp.int32)
    return (scale * s if scaled else s), _two_counts(n_pos, x.shape[0])


def _jax_keep(x, t):
    keep = jnp.abs(x) > t
    x_hat = jnp.where(keep, x, jnp.zeros_like(x))
    return x_hat, _two_counts(jnp.sum(keep, dtype=jnp.int32), x.shape[0])


# ----------------------------------------------------------------------------- public
def propagates_nonfinite(update: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``update`` as returning ``x_hat`` with the non-finite policy applied (its
    ``x_hat`` comes straight from a function of this module), so ``Compressor`` does not
    wrap it in :func:`~ratedist.compressors.base.propagate_nonfinite` again."""
    update.propagates_nonfinite = True
    return update


def magnitude(x, key, scale, levels: np.ndarray, rng_bits: int, zero_plus: bool = False):
    """``scale * sign(x) L[xi]``, ``xi`` the unbiased stochastic rounding of
    ``clip(|x|/scale, L[0], L[-1])`` onto ``L = levels`` (increasing, in [0, 1], ``s + 1``
    of them); counts of the signed levels ``s +- xi`` (``2s + 1`` symbols; both zeros are
    ``s``). ``zero_plus``: level 0 is written ``+0.0`` (TernGrad), else it keeps the sign
    of ``x`` (QSGD). ``scale = 0`` gives zeros."""

    def fn(a, k, sc):
        return _jax_magnitude(a, k, sc, levels, rng_bits, zero_plus)

    return _dispatch(
        x,
        key,
        scale,
        fn,
        mode=MAGNITUDE,
        rng_bits=rng_bits,
        flag=int(zero_plus),
        table=levels,
        n_sym=2 * len(levels) - 1,
    )


def signed(x, key, scale, levels: np.ndarray, rng_bits: int):
    """Stochastic rounding of ``x / scale`` (``scale=None``: of ``x``) clipped onto
    ``levels``; ``x_hat = scale * L[idx]`` (or ``L[idx]``); counts of ``idx``."""
    normalize = scale is not None

    def fn(a, k, sc):
        return _jax_signed(a, k, sc, levels, rng_bits, normalize)

    return _dispatch(
        x,
        key,
        scale,
        fn,
        mode=SIGNED,
        rng_bits=rng_bits,
        flag=int(normalize),
        table=levels,
        n_sym=len(levels),
    )


def natural(x, key, rng_bits: int):
    """Natural compression (stochastic rounding of ``|x|`` to a power of two, signed);
    counts of the signed exponents (:func:`natural_symbols` symbols, 0 = exact zero)."""
    return _dispatch(
        x,
        key,
        None,
        lambda a, k, sc: _jax_natural(a, k, rng_bits),
        mode=NATURAL,
        rng_bits=rng_bits,
        n_sym=natural_symbols(x.dtype),
    )


def nearest(x, scale, thresholds: np.ndarray, levels: np.ndarray):
    """Deterministic scalar quantization: ``L[#{thresholds < x/scale}]`` (times ``scale``;
    ``scale=None``: of ``x``); counts of the level indices."""
    normalize = scale is not None
    thresholds = np.asarray(thresholds, np.float64)
    levels = np.asarray(levels, np.float64)
    return _dispatch(
        x,
        None,
        scale,
        lambda a, k, sc: _jax_nearest(a, sc, thresholds, levels, normalize),
        mode=NEAREST,
        flag=int(normalize),
        table=np.concatenate([thresholds, levels]),
        n_sym=len(levels),
    )


def sign(x, scale=None):
    """``+-1`` by ``x >= 0`` (times ``scale`` unless None); counts ``[#negative, #(x >= 0)]``."""
    scaled = scale is not None
    return _dispatch(
        x,
        None,
        scale,
        lambda a, k, sc: _jax_sign(a, sc, scaled),
        mode=SIGN,
        flag=int(scaled),
        n_sym=2,
    )


def keep_above(x, t):
    """``x`` where ``|x| > t``, else 0; counts ``[#dropped, #kept]``."""
    return _dispatch(x, None, t, lambda a, k, sc: _jax_keep(a, sc), mode=THRESHOLD, n_sym=2)


def _jax_keys(kd, d, dtype):
    bits = stream_words(kd, d)
    keys = jax.lax.bitcast_convert_type((bits >> 2) + jnp.uint32(0x00800000), jnp.float32)
    return keys.astype(dtype)


def _jax_rand_keys(x, kd):
    return _jax_keys(kd, x.shape[0], x.dtype), jnp.full((1,), x.shape[0], jnp.int32)


def uniform_like(x, key, rng_bits: int = 32):
    """The stream's uniforms for stochastic rounding, shaped and typed like ``x`` (only its
    shape and dtype are used): ``u < p`` is a Bernoulli(``p``) draw. ``rng_bits = 32``:
    :func:`stream_uniform` (all mantissa bits of the dtype); 8 or 16: ``(b + 1/2)
    2^-rng_bits`` of the stream's ``rng_bits``-bit fields ``b``, the midpoints of the
    ``2^n`` cells (``P(u < p) = round(p 2^n) / 2^n``). The draws of the kernel-backed
    quantizers, as one native pass on CPU (≈ 0.5 ns per float32 number with the write of the
    output, AVX-512, one core, against ≈ 2.7 ns for this function's pure-JAX form and
    ≈ 5.5 ns for ``jax.random.uniform``)."""
    shape, n = x.shape, x.size
    flat = jnp.reshape(x, (n,))
    u, _ = _dispatch(
        flat,
        key,
        None,
        lambda a, k, sc: (_jax_uniforms(k, n, a.dtype, rng_bits), jnp.full((1,), n, jnp.int32)),
        mode=UNIFORM,
        rng_bits=rng_bits,
        n_sym=1,
        policy=False,
    )
    return jnp.reshape(u, shape)


def bernoulli(key, p, rng_bits: int = 32):
    """Bernoulli(``p``) draws, ``p`` in ``[0, 1]``, as every stochastic rounding here makes
    them: ``uniform_like(p, key, rng_bits) < p``, from the quantizers' stream (the reference
    statement of the ``rng_bits`` bias that the compressors' docstrings cite).

    ``rng_bits = 32`` compares uniforms with every mantissa bit of ``p``'s dtype (resolution
    2^-23 in float32, 2^-52 in float64): unbiased to the float resolution. ``rng_bits = 8``
    or ``16`` compares ``(b + 1/2) / 2^n`` for ``n``-bit integers ``b``; then ``P(up) =
    round(p 2^n) / 2^n``, a per-coordinate bias of at most ``2^-(n+1)`` times the level
    spacing (≤ 7.6e-6 at 16 bits, ≤ 2e-3 at 8 bits), so a compressor that uses them is only
    approximately unbiased (its facts say ``unbiased=False``).
    """
    return uniform_like(p, key, rng_bits) < p


def rand_keys(x, key):
    """Rand-K's selection keys: ``(w >> 2) + 2^23`` of the stream's words ``w`` (see the
    module docstring) bit-cast to normal positive float32 numbers (monotone in the bits), in
    ``x.dtype`` (an exact widening, so the order and the ties are those of the float32 keys).
    Only ``x``'s shape and dtype are used."""
    keys, _ = _dispatch(
        x,
        key,
        None,
        lambda a, k, sc: _jax_rand_keys(a, k),
        mode=RAND_KEYS,
        n_sym=1,
        policy=False,
    )
    return keys


#: the bracket of :func:`random_subset`'s kernel in standard deviations: it keeps the keys
#: above a threshold that ``k + SUBSET_SIGMAS sqrt(k) + 16`` of the ``d`` keys exceed on
#: average, and redoes the row with every key when fewer than ``k`` do
SUBSET_SIGMAS = 7.0

#: Rand-K takes :func:`random_subset` for ``k <= SUBSET_MAX_FRACTION * d`` and the keys +
#: ``top_k_abs`` above (the same indices either way). Measured on one core (float32, idle):
#: at k = d/100 the one-pass kernel is 13 % faster at d = 1e7 (6.4 against 7.4 ms) and level
#: at d = 1e5-1e6; at k = d/50 it is 13 % slower at d = 1e7 and at k = d/10 2-2.3x slower at
#: d = 1e6-1e7 (its selection among ~k survivors grows with k; ``top_k_abs``'s radix select
#: does not).
SUBSET_MAX_FRACTION = 0.01


def _ffi_subset(kd, d, k, sigmas):
    target, _ = _native.RANDOM_SUBSET_TARGET
    out = jax.ShapeDtypeStruct((k,), jnp.int32)
    return jax.ffi.ffi_call(target, out, vmap_method="broadcast_all")(
        kd, d=np.int64(d), sigmas=np.float64(sigmas)
    )


def random_subset(x, key, k: int, *, sigmas: float | None = None):
    """Rand-K's index set: ``top_k_abs(rand_keys(x, key), k)[1]`` (``k`` distinct indices,
    increasing, int32), which stays the definition (and the code off CPU, for other dtypes
    and with ``RATEDIST_NATIVE=0``).

    On CPU for float32/float64 (the dtypes whose keys are the float32 keys widened exactly,
    so the order and the ties do not depend on the dtype) one custom call generates the
    stream's words and keeps only the keys above an analytic bracket (the keys are i.i.d.
    uniform 30-bit integers), then selects the exact top ``k`` among those ~``k`` survivors
    with the same tie rule (equal keys: lower index first); when fewer than ``k`` keys pass the
    bracket it redoes the row with all of them. The same indices, without writing ``d`` keys.

    Args:
        x: the vector (only its length ``d`` and dtype are used).
        key: the JAX key (see :func:`key_words`).
        k: ``1 <= k <= d`` (checked by the caller).
        sigmas: the kernel's bracket in standard deviations (default :data:`SUBSET_SIGMAS`);
            tests force the all-keys path with a very negative value. No effect on the result.
    """
    sigmas = SUBSET_SIGMAS if sigmas is None else float(sigmas)
    d, dtype = x.shape[0], x.dtype
    kd = key_words(key)

    def pure(kd):
        return top_k_abs(_jax_keys(kd, d, dtype), k)[1]

    if not native_available(dtype):
        return pure(kd)
    return jax.lax.platform_dependent(
        kd, cpu=lambda kd: _ffi_subset(kd, d, k, sigmas), default=pure
    )


def _ffi_rand_k_dense(x, kd, scale, k, sigmas):
    target, _ = _native.RAND_K_DENSE_TARGETS[x.dtype.name]
    out = jax.ShapeDtypeStruct(x.shape, x.dtype)
    call = jax.ffi.ffi_call(target, out, vmap_method="broadcast_all")
    return (call(x, kd, jnp.reshape(scale, (1,)), k=np.int64(k), sigmas=np.float64(sigmas)),)


def rand_k_dense(x, key, k: int, scale=None, *, sigmas: float | None = None):
    """Rand-K's dense ``x_hat``, the non-finite policy applied:
    ``where(isfinite(x), zeros.at[idx].set(x[idx] * scale), x)`` with ``idx`` the indices of
    :func:`random_subset` (``scale=None``: ``x[idx]``, unscaled). That jax.numpy expression
    stays the definition (and the code off CPU, for other dtypes and with
    ``RATEDIST_NATIVE=0``).

    On CPU for float32/float64 one custom call gives the same bits: :func:`random_subset`'s
    pass over the stream also writes the zero background under the policy (``x_i`` where it
    is NaN or ``±inf``, else ``+0``) block by block, overlapping that memory traffic with the
    stream's arithmetic, and then sets the ``k`` sent entries (``x_i * scale``; ``x_i * 1 =
    x_i`` exactly, so the unscaled form multiplies by one). Its derivative is the pure path's.

    Args:
        x: the vector (1-D).
        key: the JAX key (see :func:`key_words`).
        k: ``1 <= k <= d`` (checked by the caller).
        scale: the factor of the sent values (a Python number, converted to ``x.dtype``), or
            None.
        sigmas: as for :func:`random_subset` (no effect on the result).
    """
    sigmas = SUBSET_SIGMAS if sigmas is None else float(sigmas)
    d = x.shape[0]
    kd = key_words(key)
    sc = jnp.asarray(1 if scale is None else scale, x.dtype)

    def pure(a, kw, s):
        idx = top_k_abs(_jax_keys(kw, d, a.dtype), k)[1]
        vals = a[idx] if scale is None else a[idx] * s
        sent = jnp.zeros((d,), a.dtype).at[idx].set(vals, unique_indices=True)
        return (propagate_nonfinite(a, sent),)

    if not native_available(x.dtype):
        return pure(x, kd, sc)[0]

    def native(a, kw, s):
        return _ffi_rand_k_dense(a, kw, s, k, sigmas)

    return _platform_call(x, kd, sc, pure, native)[0]


__all__ = [
    "SUBSET_MAX_FRACTION",
    "SUBSET_SIGMAS",
    "bernoulli",
    "keep_above",
    "key_words",
    "magnitude",
    "native_available",
    "natural",
    "natural_symbols",
    "nearest",
    "propagates_nonfinite",
    "rand_k_dense",
    "rand_keys",
    "random_subset",
    "sign",
    "signed",
    "stochastic_levels",
    "stream_fields",
    "stream_uniform",
    "stream_words",
    "uniform_like",
]
