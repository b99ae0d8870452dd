"""The one-pass quantizer kernel (ratedist/_native/quantize.cc) against the pure-JAX path.

- The stream: words 2j, 2j + 1 are the two halves of Threefry-2x32-20 of block j, checked
  against a numpy implementation of the cipher that reproduces Random123's known-answer
  vectors, and against ``jax.random.bits`` (which XORs the two halves).
- Equality: on CPU the native kernel gives the SAME bits as the pure-JAX code (the
  compressors' jax.numpy expressions with the stream's draws), for every mode, both float
  dtypes, 8/16/32 random bits, batched keys (vmap), raw and non-Threefry keys, zeros,
  subnormals, a zero vector.
- Monte Carlo: every stochastic compressor on the new path is unbiased and has the
  per-coordinate variance of its closed form, ``(b - r)(r - a) scale^2`` for rounding r
  between neighbouring levels a < r < b, within 5 standard errors.
- Determinism: the same key gives the same bits with 1 and with several XLA threads, and with
  ``RATEDIST_NATIVE=0`` (subprocesses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness_builds import harness_outputs
from threefry_reference import threefry2x32_20

from ratedist.compressors import _kernels, _symbols, make

pytestmark = pytest.mark.skipif(
    not _kernels.native_available(jnp.float32), reason="native kernels not built here"
)

ROOT = Path(__file__).resolve().parents[2]


def _vector(dtype, d=3000, seed=0):
    """Gaussian entries with exact zeros, -0.0, tiny and (for the dtype) subnormal values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d)
    x[::97] = 0.0
    x[1::97] = -0.0
    x[2::97] *= 1e-30
    tiny = np.finfo(dtype).smallest_subnormal
    x[3::97] = tiny * rng.integers(1, 50, size=x[3::97].shape)
    x[4::97] = -tiny * 3
    return jnp.asarray(x.astype(dtype))


def _rms(x):
    return jnp.sqrt(jnp.sum(x * x) / x.shape[0])


LV16 = np.arange(16) / 15.0
NUQ = np.array([0.0, 0.25, 0.5, 1.0])
SIGNED = np.linspace(-2.0, 2.0, 8)
SIGNED_LONG = np.linspace(-3.0, 3.0, 200)  # binary-search branch of the kernel

#: name -> fn(x, key) -> (x_hat, counts); every mode of the kernel
CASES = {
    "qsgd32": lambda x, k: _kernels.magnitude(x, k, jnp.sqrt(jnp.sum(x * x)), LV16, 32),
    "qsgd8": lambda x, k: _kernels.magnitude(x, k, jnp.sqrt(jnp.sum(x * x)), LV16, 8),
    "qsgd16": lambda x, k: _kernels.magnitude(x, k, jnp.sqrt(jnp.sum(x * x)), LV16, 16),
    "nuqsgd": lambda x, k: _kernels.magnitude(x, k, jnp.sqrt(jnp.sum(x * x)), NUQ, 32),
    "terngrad": lambda x, k: _kernels.magnitude(
        x, k, jnp.max(jnp.abs(x)), np.array([0.0, 1.0]), 32, zero_plus=True
    ),
    "zero_vector": lambda x, k: _kernels.magnitude(0 * x, k, jnp.sum(0 * x), LV16, 32),
    "signed_rms": lambda x, k: _kernels.signed(x, k, _rms(x), SIGNED, 32),
    "signed_raw8": lambda x, k: _kernels.signed(x, k, None, SIGNED, 8),
    "signed_long": lambda x, k: _kernels.signed(x, k, _rms(x), SIGNED_LONG, 16),
    "natural32": lambda x, k: _kernels.natural(x, k, 32),
    "natural8": lambda x, k: _kernels.natural(x, k, 8),
    "nearest": lambda x, k: _kernels.nearest(
        x, _rms(x), np.linspace(-1.5, 1.5, 7), np.linspace(-2, 2, 8)
    ),
    "nearest_long": lambda x, k: _kernels.nearest(
        x, None, np.linspace(-2.9, 2.9, 99), np.linspace(-3, 3, 100)
    ),
    "sign": lambda x, k: _kernels.sign(x),
    "scaled_sign": lambda x, k: _kernels.sign(x, jnp.sum(jnp.abs(x)) / x.shape[0]),
    "threshold": lambda x, k: _kernels.keep_above(x, 0.7 * _rms(x)),
    "rand_keys": lambda x, k: (_kernels.rand_keys(x, k), jnp.zeros((1,), jnp.int32)),
    **{
        f"uniform{bits}": lambda x, k, bits=bits: (
            _kernels.uniform_like(x, k, bits),
            _kernels.bernoulli(k, jnp.abs(x) / (1 + jnp.abs(x)), bits),
        )
        for bits in (32, 16, 8)
    },
}
#: cases whose second output is not the counts of the sent symbols
NO_COUNTS = ("rand_keys", "uniform32", "uniform16", "uniform8")


def _pure(fn, *args, monkeypatch):
    """``fn`` on the pure-JAX path. A fresh wrapper: jax.jit's trace cache is keyed by the
    function, so ``jax.jit(fn)`` after a native call of ``fn`` would reuse the native trace."""
    with monkeypatch.context() as m:
        m.setattr(_kernels, "native_available", lambda dtype: False)
        lowered = jax.jit(lambda *a: fn(*a)).lower(*args)
        assert "ratedist_quantize" not in lowered.as_text()
        return lowered.compile()(*args)


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- the stream


def test_reference_cipher_reproduces_random123_known_answers():
    # Random123 kat_vectors, "threefry2x32 20": counter (2 words), key (2 words) -> output
    kat = [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF,) * 2, (0xFFFFFFFF,) * 2, (0x1CB996FC, 0xBB002BE7)),
        ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
    ]
    for ctr, key, want in kat:
        got = threefry2x32_20(*key, np.uint32(ctr[0]), np.uint32(ctr[1]))
        assert (int(got[0]), int(got[1])) == want


def test_stream_words_are_both_halves_of_threefry_blocks():
    key = jax.random.key(1234)
    kd = np.asarray(jax.random.key_data(key))
    n = 1001
    w = np.asarray(_kernels.stream_words(jnp.asarray(kd), n))
    j = np.arange((n + 1) // 2, dtype=np.uint32)
    x0, x1 = threefry2x32_20(kd[0], kd[1], np.zeros_like(j), j)
    np.testing.assert_array_equal(w[0::2], x0[: len(w[0::2])])
    np.testing.assert_array_equal(w[1::2], x1[: len(w[1::2])])
    if jax.config.jax_threefry_partitionable:  # jax.random XORs the halves of block j
        bits = np.asarray(jax.random.bits(key, (len(j),), jnp.uint32))
        np.testing.assert_array_equal(bits, x0 ^ x1)
    # the stream's uniforms are 23 bits of word i; the kernel draws the same ones
    u = np.asarray(_kernels.stream_uniform(jnp.asarray(kd), n, jnp.float32))
    np.testing.assert_array_equal(u, (w >> 9).astype(np.float32) * np.float32(2.0**-23))


def test_keys_of_other_implementations_use_the_kernel_too(monkeypatch):
    x = _vector(np.float32, 800, 2)
    key = jax.random.key(6, impl="rbg")
    kd = _kernels.key_words(key)
    assert kd.shape == (2,) and kd.dtype == jnp.uint32
    for name in ("qsgd32", "signed_raw8", "rand_keys"):
        fn = CASES[name]
        assert "ratedist_quantize" in jax.jit(fn).lower(x, key).as_text(), name
        for a, b in zip(
            jax.jit(fn)(x, key), _pure(fn, x, key, monkeypatch=monkeypatch), strict=True
        ):
            assert _same_bits(a, b), name


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
def test_native_equals_pure_jax_bit_for_bit(dtype, monkeypatch):
    x = _vector(dtype)
    key = jax.random.key(11)
    for name, fn in CASES.items():
        native = jax.jit(fn)(x, key)
        pure = _pure(fn, x, key, monkeypatch=monkeypatch)
        for a, b in zip(native, pure, strict=True):
            assert _same_bits(a, b), name
        # the counts are the histogram of what was sent: they sum to d
        assert name in NO_COUNTS or int(np.sum(native[1])) == x.shape[0], name


def test_native_equals_pure_jax_under_vmap_and_raw_keys(monkeypatch):
    xs = jnp.stack([_vector(np.float32, 1000, s) for s in range(3)])
    keys = jax.random.split(jax.random.key(5), 3)
    raw = jax.random.PRNGKey(9)  # a raw uint32 key of the default implementation
    for name in ("qsgd32", "natural8", "scaled_sign"):
        fn = jax.vmap(CASES[name])
        for a, b in zip(
            jax.jit(fn)(xs, keys), _pure(fn, xs, keys, monkeypatch=monkeypatch), strict=True
        ):
            assert _same_bits(a, b), name
        one = CASES[name]
        for a, b in zip(
            jax.jit(one)(xs[0], raw), _pure(one, xs[0], raw, monkeypatch=monkeypatch), strict=True
        ):
            assert _same_bits(a, b), name


def test_compressors_use_the_kernel_and_match_the_pure_path(monkeypatch):
    """Whole compressors (info included) agree with the pure-JAX path; the kernel is in the HLO."""
    x = _vector(np.float64, 2000, 3)
    key = jax.random.key(2)
    specs = [
        "qsgd:s=4",
        "natural",
        "scalar:method=tnq,bits=3",
        "scalar:method=lloyd-max,bits=3",
        "threshold:kappa=0.05",
        "rand-k-unbiased:k=20",  # k <= d/100: the one-pass kernel
    ]
    for spec in specs:
        c = make(spec)

        def f(x, k, c=c):
            return c.update(x, c.init(x), key=k)

        lowered = jax.jit(f).lower(x, key)
        target = "ratedist_rand_k_dense" if spec.startswith("rand-k") else "ratedist_quantize_f64"
        assert target in lowered.as_text(), spec
        native = lowered.compile()(x, key)
        pure = _pure(f, x, key, monkeypatch=monkeypatch)
        for a, b in zip(jax.tree.leaves(native), jax.tree.leaves(pure), strict=True):
            assert _same_bits(a, b), spec


def test_derivatives_are_those_of_the_pure_path(monkeypatch):
    """jax.grad through a kernel-backed compressor equals jax.grad of the pure-JAX code (the
    kernel has no derivative of its own; its jvp rule differentiates the pure path)."""
    x = jnp.asarray(np.random.default_rng(4).standard_normal(500))
    w = jnp.asarray(np.random.default_rng(5).standard_normal(500))
    key = jax.random.key(3)
    for spec in ["scaled-sign", "sign", "qsgd:s=4", "scalar:method=lloyd-max,bits=3"]:
        c = make(spec)

        def loss(x, k, c=c):
            return jnp.sum(w * c.update(x, c.init(x), key=k)[0] ** 2)  # needs the values too

        grad = jax.grad(loss)
        lowered = jax.jit(grad).lower(x, key)
        assert "ratedist_quantize" in lowered.as_text(), spec
        native = lowered.compile()(x, key)
        pure = _pure(grad, x, key, monkeypatch=monkeypatch)
        assert _same_bits(native, pure), spec
        assert spec == "sign" or np.any(np.asarray(native) != 0), spec


# ----------------------------------------------------------------------------- Monte Carlo
def _two_point_variance(r, levels):
    """Closed form: variance of unbiased rounding of r (in [L0, L-1]) between its levels."""
    r = np.clip(r, levels[0], levels[-1])
    hi_idx = np.clip(np.searchsorted(levels, r, side="right"), 1, len(levels) - 1)
    a, b = levels[hi_idx - 1], levels[hi_idx]
    return (b - r) * (r - a)


def _reference(spec, x):
    """(mean, variance) per coordinate, computed here with numpy from the papers' formulas."""
    ax = np.abs(x)
    if spec.startswith("qsgd") or spec.startswith("nuqsgd"):
        s = int(spec.split("=")[1])
        if spec.startswith("qsgd"):
            levels = np.arange(s + 1) / s
        else:
            levels = np.concatenate([[0.0], 2.0 ** -np.arange(s - 1, -1, -1)])
        norm = np.linalg.norm(x)
        return x, norm**2 * _two_point_variance(ax / norm, levels)
    if spec == "terngrad":
        st = ax.max()
        return x, st * ax - x**2
    if spec == "natural":
        low = 2.0 ** np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
        return x, np.where(ax > 0, (2 * low - ax) * (ax - low), 0.0)
    raise AssertionError(spec)


@pytest.mark.parametrize(
    "spec", ["qsgd:s=1", "qsgd:s=4", "nuqsgd:s=3", "terngrad", "natural", "tnq"]
)
def test_monte_carlo_unbiased_with_closed_form_variance(spec):
    d, n = 48, 4000
    rng = np.random.default_rng(7)
    x = rng.standard_normal(d) * rng.choice([0.01, 1.0, 3.0], size=d)
    x[5] = 0.0
    if spec == "tnq":
        comp = make("scalar:method=tnq,bits=3")
        levels = np.asarray(comp.facts.params["levels"])
        for _ in range(100):  # clip into the levels' range (a fixed point: no truncation)
            sigma = np.linalg.norm(x) / np.sqrt(d)
            x = np.clip(x, 0.9 * levels[0] * sigma, 0.9 * levels[-1] * sigma)
        sigma = np.linalg.norm(x) / np.sqrt(d)
        assert levels[0] < (x / sigma).min() and (x / sigma).max() < levels[-1]
        mean, var = x, sigma**2 * _two_point_variance(x / sigma, levels)
    else:
        comp = make(spec)
        mean, var = _reference(spec, x)
    xj = jnp.asarray(x)
    keys = jax.random.split(jax.random.key(123), n)
    hlo = jax.jit(lambda k: comp.update(xj, comp.init(xj), key=k)[0]).lower(keys[0]).as_text()
    assert "ratedist_quantize" in hlo  # the Monte Carlo runs on the new path
    out = np.asarray(jax.jit(jax.vmap(lambda k: comp.update(xj, comp.init(xj), key=k)[0]))(keys))
    emp_mean = out.mean(axis=0)
    se_mean = np.sqrt(var / n)
    exact = var < 1e-12 * np.maximum(x**2, 1e-300)
    np.testing.assert_allclose(emp_mean[exact], mean[exact], rtol=1e-12, atol=1e-300)
    z = np.abs(emp_mean - mean)[~exact] / se_mean[~exact]
    assert z.max() < 5.0, (spec, z.max())
    # total variance E||C(x) - x||^2 against sum of the closed-form variances
    err = ((out - x) ** 2).sum(axis=1)
    se_tot = err.std(ddof=1) / np.sqrt(n)
    assert abs(err.mean() - var.sum()) < 5.0 * se_tot, (spec, err.mean(), var.sum(), se_tot)


# ----------------------------------------------------------------------------- determinism
_SCRIPT = textwrap.dedent(
    """
    import hashlib, json
    import jax, jax.numpy as jnp, numpy as np
    from ratedist.compressors import _kernels, make
    x = jnp.asarray(np.random.default_rng(0).standard_normal(100_003).astype(np.float32))
    h = hashlib.sha256()
    specs = ("qsgd:s=15", "natural:rng_bits=8", "rand-k:k=1000", "grid:delta=0.5",
             "lattice:lattice=zn,dither=True")
    for spec in specs:
        c = make(spec)
        f = jax.jit(lambda v, k, c=c: c.update(v, c.init(v), key=k)[0])
        h.update(np.asarray(f(x, jax.random.key(42))).tobytes())
    print(json.dumps({"native": _kernels.native_available(jnp.float32), "hash": h.hexdigest()}))
    """
)


def _run(env_extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_key_same_bits_with_one_or_many_threads_and_without_the_kernel():
    single = " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    base = os.environ.get("XLA_FLAGS", "").replace(single, "")
    one = _run({"XLA_FLAGS": base + single})
    many = _run({"XLA_FLAGS": base})  # XLA's default: a multi-threaded CPU client
    off = _run({"RATEDIST_NATIVE": "0"})
    assert one["native"] and many["native"] and not off["native"]
    assert one["hash"] == many["hash"] == off["hash"]


def test_non_finite_entries_pass_through_on_both_paths(monkeypatch):
    """x_hat_i = x_i where x_i is NaN or +-inf (the compressors' policy), in the kernel too."""
    x = np.array(_vector(np.float32, 600, 4))
    bad = np.array([np.nan, np.inf, -np.inf], np.float32)
    x[[7, 300, 599]] = bad
    x = jnp.asarray(x)
    key = jax.random.key(8)
    names = ("qsgd32", "natural8", "signed_rms", "signed_long", "nearest", "nearest_long")
    for name in (*names, "sign", "threshold"):
        fn = CASES[name]
        native = np.asarray(jax.jit(fn)(x, key)[0])
        pure = np.asarray(_pure(fn, x, key, monkeypatch=monkeypatch)[0])
        assert _same_bits(native, pure), name
        assert np.isnan(native[7]) and native[300] == np.inf and native[599] == -np.inf, name


def _table(n, lo, hi):
    """``n`` increasing levels from ``lo`` to ``hi``, unevenly spaced (a tilt of the grid)."""
    t = np.linspace(0.0, 1.0, n)
    return lo + (hi - lo) * (t + 0.3 * t * (1 - t))


def test_native_equals_pure_jax_across_the_fused_table_sizes(monkeypatch):
    """The kernel rounds 2/3/4-bit tables in one fused pass (up to 2, 6 and 14 interior levels
    of a stochastic table, 3, 7 and 15 thresholds of a nearest-level table, padded) and longer
    ones in several passes: the same bits as the pure path on both sides of every size limit,
    with raw and normalized inputs, a zero and a NaN scale, non-finite entries, and a length
    that ends inside a block and inside a 128-element chunk."""
    finite = np.array(_vector(np.float32, 1100, 6))
    bad = finite.copy()
    bad[[5, 600, 1099]] = [np.nan, np.inf, -np.inf]
    key = jax.random.key(12)
    sizes = (2, 4, 5, 9, 16, 17)  # 8 levels: CASES

    def fn(x, k):
        out = []
        for n in sizes:
            lv = _table(n, -2.0, 2.0)
            out.append(_kernels.signed(x, k, _rms(x), lv, 32))
            out.append(_kernels.signed(x, k, None, lv, 8))
            th = 0.5 * (lv[1:] + lv[:-1])
            out.append(_kernels.nearest(x, _rms(x), th, lv))
            out.append(_kernels.nearest(x, None, th, lv))
        lv = _table(8, -2.0, 2.0)
        out.append(_kernels.signed(x, k, jnp.float32(0.0), lv, 32))
        out.append(_kernels.signed(x, k, jnp.float32(np.nan), lv, 16))
        out.append(_kernels.nearest(x, jnp.float32(0.0), 0.5 * (lv[1:] + lv[:-1]), lv))
        return out

    for x in (finite, bad):  # one compilation per path: same shape and dtype
        native = jax.jit(fn)(jnp.asarray(x), key)
        pure = _pure(fn, jnp.asarray(x), key, monkeypatch=monkeypatch)
        assert len(native) == len(pure) == 4 * len(sizes) + 3
        for i, (a, b) in enumerate(zip(native, pure, strict=True)):
            assert _same_bits(a[0], b[0]), i
            # counts: unspecified where x has non-finite entries
            assert x is bad or _same_bits(a[1], b[1]), i
            assert int(np.sum(a[1])) == x.shape[0], i


def test_natural_without_division_matches_pure_jax_at_exponent_edges(monkeypatch):
    """Natural compression draws against the mantissa of |x| (``|x| / 2^floor(log2 |x|) - 1``
    read from the bits): the same bits as the pure path at powers of two, just below them,
    the largest and smallest normal numbers, subnormals, zeros, inf and NaN."""
    for dtype in (np.float32, np.float64):
        fi = np.finfo(dtype)
        special = [1.0, 2.0, 0.5, np.nextafter(dtype(2.0), dtype(0)), fi.max, -fi.max]
        special += [fi.tiny, -fi.tiny, fi.smallest_subnormal, 0.0, -0.0, 3.0, -0.75]
        x = np.array(_vector(dtype, 700, 7))
        x[: len(special)] = np.array(special, dtype)
        finite = x.copy()
        x[[300, 301, 302]] = [np.nan, np.inf, -np.inf]
        key = jax.random.key(3)

        def fn(a, k):
            return [_kernels.natural(a, k, bits) for bits in (32, 8, 16)]

        for arr, check_counts in ((finite, True), (x, False)):  # one compilation per path
            native = jax.jit(fn)(jnp.asarray(arr), key)
            pure = _pure(fn, jnp.asarray(arr), key, monkeypatch=monkeypatch)
            for a, b in zip(native, pure, strict=True):
                assert _same_bits(a[0], b[0]), dtype
                assert not check_counts or _same_bits(a[1], b[1]), dtype


@pytest.mark.slow
def test_threefry_chain_widths_give_the_same_stream(tmp_path):
    # the stream is generated by C interleaved 16-lane chains (C per instruction set: 8, 4, 2)
    # and a flat loop for the rest; builds of the harness with every fixed C (1, 2, 4, 8,
    # for the x86-64 baseline here) and the default multiversioned build agree on every
    # mode's counts (the integer-grid rows: entropy and symbol range) and output (the build
    # this CPU runs is checked against JAX above)
    variants = {"default": []}
    variants.update({f"chains={c}": [f"-DRATEDIST_THREEFRY_CHAINS={c}"] for c in (1, 2, 4, 8)})
    out = harness_outputs("quantize_harness.cc", "quantize.cc", "QSRC", variants, tmp_path)
    sums = {
        label: [line[:16] + line.split("checksum")[1] for line in lines]  # name, checksums
        for label, lines in out.items()
    }
    assert len(sums["default"]) == 12  # 8 quantizer modes, 3 integer-grid rows, Rand-K
    for label, lines in sums.items():
        assert lines == sums["default"], label


# ----------------------------------------------------------------------------- symbol counts


@pytest.mark.parametrize(
    "values",
    [
        np.array([5], np.int32),
        np.array([3, -2, 3, 3, 7, -2, 0], np.int32),
        np.random.default_rng(0).integers(-40, 40, size=5000).astype(np.int32),
        # a span wider than any histogram
        np.random.default_rng(1).integers(-(2**30), 2**30, size=3000).astype(np.int32),
        np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max, 0, 0], np.int32),
    ],
)
def test_pure_symbol_summary_counts_against_numpy(values):
    """The pure-JAX entropy layer's counts (the twin of the native histograms and sorts):
    numpy's unique counts, in increasing order of the values, then zeros; the range."""
    counts, lo, hi = jax.jit(_symbols._jax_symbol_summary)(jnp.asarray(values))
    assert int(lo) == values.min() and int(hi) == values.max()
    _, want = np.unique(values, return_counts=True)
    expect = np.zeros(values.size, np.int32)
    expect[: want.size] = want
    np.testing.assert_array_equal(np.asarray(counts), expect)


def test_pure_symbol_summary_under_vmap():
    cols = jnp.asarray(np.random.default_rng(2).integers(0, 9, size=(3, 700)).astype(np.int32))
    batched, lo, hi = jax.vmap(_symbols._jax_symbol_summary)(cols)
    for row, out in zip(np.asarray(cols), np.asarray(batched), strict=True):
        _, counts = np.unique(row, return_counts=True)
        np.testing.assert_array_equal(out[: counts.size], counts)
        assert not out[counts.size :].any()
    np.testing.assert_array_equal(lo, np.asarray(cols).min(axis=1))
    np.testing.assert_array_equal(hi, np.asarray(cols).max(axis=1))


# ----------------------------------------------------------------------------- integer grid
def _grid_inputs(dtype):
    """Named inputs for the integer-grid kernel: Gaussian with heavy tails (blocks of narrow
    and of wide symbol spans), a ramp whose symbols drift (the histogram is widened many
    times), a span too wide for any histogram (the redo-and-sort branch), non-finite
    entries, zeros, one element."""
    rng = np.random.default_rng(8)
    g = rng.standard_normal(20_000) * rng.exponential(size=20_000)
    out = {
        "gauss": g,
        "ramp": np.linspace(-30.0, 900.0, 9_001),
        "wide": np.r_[g[:3000], 3e8, -3e8],
        "nonfinite": np.r_[g[:500], np.nan, np.inf, -np.inf, 1e30, -1e30],
        "zeros": np.zeros(700),
        "one": np.array([0.3]),
    }
    return {k: jnp.asarray(v.astype(dtype)) for k, v in out.items()}


GRID_SPECS = (
    "grid:delta=0.37",
    "grid:delta=0.37,rng_bits=8",
    "grid:delta=0.05,rng_bits=16",
    "grid:delta=0.25,rounding=deterministic",
    "lattice:lattice=zn,step=0.3",
    "lattice:lattice=zn,dither=True",
    "lattice:lattice=zn,dither=True,step=0.01",
)


@pytest.mark.parametrize("dtype", [np.float32, pytest.param(np.float64, marks=pytest.mark.slow)])
@pytest.mark.parametrize("spec", GRID_SPECS)
def test_integer_grid_kernel_equals_the_pure_path(spec, dtype, monkeypatch):
    """x_hat and the bit widths bit for bit; the entropy (summed in float64 in increasing
    symbol order by the kernel, in XLA's order on the pure path) to the rounding of the sum."""
    c = make(spec)
    key = jax.random.key(13)

    def f(x, k):
        return c.update(x, c.init(x), key=k)

    for name, x in _grid_inputs(dtype).items():
        lowered = jax.jit(f).lower(x, key)
        assert "ratedist_grid_f" in lowered.as_text(), spec
        native = lowered.compile()(x, key)
        pure = _pure(f, x, key, monkeypatch=monkeypatch)
        assert _same_bits(native[0], pure[0]), (spec, name)
        for field in ("value_bits", "index_bits", "side_bits"):
            assert _same_bits(getattr(native[2], field), getattr(pure[2], field)), (spec, name)
        a, b = float(native[2].entropy_bits), float(pure[2].entropy_bits)
        if name != "nonfinite":  # unspecified there
            assert a == pytest.approx(b, rel=1e-12, abs=1e-9), (spec, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_grid_kernel_counts_against_numpy(dtype):
    """Deterministic grid and Z^1: the bits from numpy's own rounding and np.unique counts."""
    for name, x in _grid_inputs(dtype).items():
        if name == "nonfinite":
            continue
        xn = np.asarray(x)
        d = xn.size
        for spec in ("grid:delta=0.25,rounding=deterministic", "lattice:lattice=zn,step=0.3"):
            c = make(spec)
            x_hat, _, info = jax.jit(lambda v, c=c: c.update(v, c.init(v)))(x)
            if spec.startswith("grid"):
                i = np.round(xn * (dtype(1) / dtype(0.25)))
                np.testing.assert_array_equal(np.asarray(x_hat), dtype(0.25) * i)
            else:  # Z^1 at scale s = rms(x) 0.3: i = round(x (1/s))
                s = np.asarray(jnp.sqrt(jnp.sum(x * x) / d) * jnp.asarray(0.3, x.dtype))
                inv = dtype(1) / s if s > 0 else dtype(1)
                i = np.round(xn * inv) if s > 0 else np.zeros(d)
            _, counts = np.unique(i.astype(np.int64), return_counts=True)
            ent = float(np.sum(counts * np.log2(d / counts)))
            width = int(np.ceil(np.log2(i.max() - i.min() + 1)))
            header = float(info.side_bits)
            assert float(info.value_bits) == d * width, (spec, name)
            assert float(info.entropy_bits) - (header if spec.startswith("grid") else 32) == (
                pytest.approx(ent, rel=1e-12, abs=1e-9)
            ), (spec, name)


def test_integer_grid_kernel_batched_rows_match_single_calls():
    """vmap over keys and vectors: rows of one kernel call equal the single calls, bit for
    bit, even where the rounding is sensitive to the last bit (|y| ~ 1e4). (The pure-JAX
    path is not: XLA contracts x (1/s) - w into an FMA, and turns (p + w) / (1/s) into a
    product, in some fusions and not in others, so its batched and single calls differ in
    such places; the native path is the same computation in every context.)"""
    c = make("lattice:lattice=zn,dither=True,step=0.0001")
    xs = jnp.stack([_vector(np.float32, 5000, s) for s in range(3)])
    keys = jax.random.split(jax.random.key(4), 3)

    def f(x, k):
        return c.update(x, c.init(x), key=k)

    batched = jax.jit(jax.vmap(f))(xs, keys)
    for r in range(3):
        one = jax.jit(f)(xs[r], keys[r])
        assert _same_bits(batched[0][r], one[0])
        assert float(batched[2].entropy_bits[r]) == float(one[2].entropy_bits)
        assert float(batched[2].value_bits[r]) == float(one[2].value_bits)


@pytest.mark.parametrize(
    "labels",
    [
        np.random.default_rng(0).integers(-20, 20, size=(5000, 4)),
        np.random.default_rng(1).integers(-(2**30), 2**30, size=(3000, 8)),  # sorted columns
        np.c_[  # one narrow and one wide column
            np.random.default_rng(2).integers(0, 3, 1000),
            np.random.default_rng(3).integers(-(2**30), 2**30, 1000),
        ],
        np.zeros((1, 1)),
        np.array([[np.iinfo(np.int32).min, np.iinfo(np.int32).max]] * 3),
    ],
)
def test_column_entropy_against_numpy_and_the_pure_path(labels):
    """Per column: lo/hi equal to numpy's, the entropy equal to numpy's unique counts to
    rounding, on the native and the pure path, and under vmap."""
    lab = jnp.asarray(labels, jnp.int32)
    assert "ratedist_column_entropy" in jax.jit(_symbols.column_entropy).lower(lab).as_text()
    m = labels.shape[0]
    want = []
    for col in np.asarray(labels, np.int64).T:
        _, counts = np.unique(col, return_counts=True)
        want.append(float(np.sum(counts * np.log2(m / counts))))
    for fn in (_symbols.column_entropy, _symbols._jax_column_entropy):
        ent, lo, hi = jax.jit(fn)(lab)
        np.testing.assert_array_equal(np.asarray(lo), np.asarray(labels).min(axis=0))
        np.testing.assert_array_equal(np.asarray(hi), np.asarray(labels).max(axis=0))
        np.testing.assert_allclose(np.asarray(ent), want, rtol=1e-12, atol=1e-9)
    batched = jax.vmap(_symbols.column_entropy)(jnp.stack([lab, lab[::-1]]))
    for out in batched:
        assert _same_bits(out[0], out[1])
    with pytest.raises(TypeError, match="int32"):
        _symbols.column_entropy(jnp.zeros((4, 2), jnp.float32))
    with pytest.raises(ValueError, match="shape"):
        _symbols.column_entropy(jnp.zeros((4,), jnp.int32))
