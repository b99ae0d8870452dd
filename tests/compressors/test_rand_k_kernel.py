"""Rand-K's one-pass kernels (``_kernels.random_subset``, ``_kernels.rand_k_dense``) against
their definitions.

The definition of Rand-K's index set is ``top_k_abs(rand_keys(x, key), k)[1]``: the ``k``
largest of the keys ``w_i >> 2`` (30 bits of stream word ``i``), equal keys to the lower
index, in increasing order. The reference here is numpy: the stream's words (checked against a
numpy Threefry in ``test_kernels.py``), a stable sort of the negated keys, the first ``k``
positions, sorted. The native kernel, the pure-JAX path and the numpy reference must give the
same indices for every size, ``k`` from 1 to ``d``, both float dtypes, batched keys (vmap),
non-Threefry keys, and when the kernel's bracket is forced to miss (its all-keys path). The
dense update's kernel must give the bits of ``where(isfinite(x), zeros.at[idx].set(x[idx] *
scale), x)`` at those indices: built here in numpy, and the pure-JAX path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threefry_reference import threefry2x32_20

from ratedist.compressors import _kernels, make
from ratedist.compressors.select import top_k_abs

pytestmark = pytest.mark.skipif(
    not _kernels.native_available(jnp.float32), reason="native kernels not built here"
)

SIZES = [1, 2, 5, 1000, 4097, 100_000]


def _ks(d):
    return sorted({k for k in (1, 2, d // 100, d // 2, d - 1, d) if 1 <= k <= d})


@functools.cache
def _ranking(k0, k1, d):
    j = np.arange((d + 1) // 2, dtype=np.uint32)
    x0, x1 = threefry2x32_20(k0, k1, np.zeros_like(j), j)
    v = np.stack([x0, x1], axis=1).reshape(-1)[:d] >> np.uint32(2)
    return np.argsort(-v.astype(np.int64), kind="stable")  # equal keys keep index order


def _reference(kd, d, k):
    """numpy: the k largest keys w_i >> 2 of the stream's words w (word 2j, 2j + 1: the two
    outputs of Threefry block j), equal keys to the lower index, in increasing order."""
    return np.sort(_ranking(int(kd[0]), int(kd[1]), d)[:k]).astype(np.int32)


def _words(keys):
    return np.asarray(jax.vmap(_kernels.key_words)(keys))


def _pure(fn, *args, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(_kernels, "native_available", lambda dtype: False)
        return jax.tree.map(np.asarray, jax.jit(fn)(*args))


def test_native_indices_equal_the_numpy_reference():
    """Every size and k, float32 and float64 (the kernel does not depend on the dtype; the
    definition's float64 keys are the float32 keys widened), batched keys (vmap)."""
    keys = jax.random.split(jax.random.key(7), 3)
    kds = _words(keys)
    for d in SIZES:
        ks = _ks(d)

        def all_k(q, d=d, ks=ks):
            return [
                _kernels.random_subset(jnp.zeros((d,), dt), q, k)
                for k in ks
                for dt in (jnp.float32, jnp.float64)
            ]

        got = jax.jit(jax.vmap(all_k))(keys)
        for b, kd in enumerate(kds):
            for n, k in enumerate(ks):
                want = _reference(kd, d, k)
                for dt in range(2):
                    row = np.asarray(got[2 * n + dt][b])
                    assert row.dtype == np.int32
                    np.testing.assert_array_equal(row, want, err_msg=f"{d=} {k=} {dt=}")


def test_native_equals_the_pure_path_and_its_definition(monkeypatch):
    """The kernel (alone in the HLO), the pure-JAX path and the definition (the keys, then
    ``top_k_abs``) agree, batched."""
    keys = jax.random.split(jax.random.key(3), 3)
    cases = [(4097, 40), (4097, 2048), (100_000, 1000), (5, 5)]

    def fn(q):
        return [_kernels.random_subset(jnp.zeros((d,)), q, k) for d, k in cases]

    def definition(q):
        return [top_k_abs(_kernels.rand_keys(jnp.zeros((d,)), q), k)[1] for d, k in cases]

    batched = jax.vmap(fn)
    lowered = jax.jit(batched).lower(keys).as_text()
    assert "ratedist_random_subset" in lowered and "ratedist_quantize" not in lowered
    native = jax.jit(batched)(keys)
    pure = _pure(batched, keys, monkeypatch=monkeypatch)
    defn = jax.jit(jax.vmap(definition))(keys)
    for a, b, c in zip(native, pure, defn, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_a_missed_bracket_falls_back_to_all_keys():
    """sigmas = -1e9: no key passes the bracket, every row takes the all-keys path; -2 and 0:
    the bracket misses for some keys only (P ~ Phi(sigmas))."""
    keys = jax.random.split(jax.random.key(11), 12)
    kds = _words(keys)
    cases = [(1000, 10), (4097, 2048), (5, 1), (100_000, 1000)]
    sigmas = (-1e9, -2.0, 0.0)

    def fn(q):
        return [
            _kernels.random_subset(jnp.zeros((d,)), q, k, sigmas=s)
            for d, k in cases
            for s in sigmas
        ]

    got = jax.jit(jax.vmap(fn))(keys)
    for n, (d, k) in enumerate(cases):
        for b, kd in enumerate(kds):
            want = _reference(kd, d, k)
            for m, s in enumerate(sigmas):
                row = np.asarray(got[len(sigmas) * n + m][b])
                np.testing.assert_array_equal(row, want, err_msg=f"{d=} {k=} {s=}")


def test_other_key_implementations_and_raw_keys(monkeypatch):
    x = jnp.zeros((4097,), jnp.float32)
    ks = (1, 40, 4096)

    def fn(a, q):
        return [_kernels.random_subset(a, q, k) for k in ks]

    for key in (jax.random.key(0, impl="rbg"), jax.random.PRNGKey(4)):
        kd = np.asarray(_kernels.key_words(key))
        got = jax.jit(fn)(x, key)
        pure = _pure(fn, x, key, monkeypatch=monkeypatch)
        for k, a, b in zip(ks, got, pure, strict=True):
            np.testing.assert_array_equal(np.asarray(a), _reference(kd, 4097, k))
            np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("spec", ["rand-k:k=30", "rand-k-unbiased:k=300"])
def test_rand_k_compressors_use_the_kernel_and_keep_their_output(spec, monkeypatch):
    """The dense output is the kept values at the reference indices (scaled by d/k when
    unbiased), zeros elsewhere, and x itself wherever x is NaN or +-inf (sent or not)."""
    d = 3001
    key = jax.random.key(5)
    k = int(spec.split("=")[1])
    idx = _reference(np.asarray(_kernels.key_words(key)), d, k)
    x_np = np.random.default_rng(2).standard_normal(d)
    unsent = np.setdiff1d(np.arange(d), idx)
    x_np[idx[:3]] = [np.nan, np.inf, -np.inf]
    x_np[unsent[:3]] = [-np.inf, np.nan, np.inf]
    x_np[idx[3]] = -0.0
    x = jnp.asarray(x_np)
    c = make(spec)

    def f(v, q):
        return c.update(v, c.init(v), key=q)

    # the dense one-pass kernel up to k = d/100, the keys kernel + top_k_abs above (same
    # indices); the sparse form takes the index kernel up to d/100
    small = k <= _kernels.SUBSET_MAX_FRACTION * d
    text = jax.jit(f).lower(x, key).as_text()
    assert ("ratedist_rand_k_dense" in text) is small, spec
    assert ("ratedist_top_k_abs" in text) is not small, spec
    sparse_text = jax.jit(lambda v, q: c.sparse(v, None, key=q)).lower(x, key).as_text()
    assert ("ratedist_random_subset" in sparse_text) is small, spec
    native = jax.jit(f)(x, key)
    with monkeypatch.context() as m:
        m.setattr(_kernels, "native_available", lambda dtype: False)
        pure = jax.jit(f)(x, key)
    for a, b in zip(jax.tree.leaves(native), jax.tree.leaves(pure), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), spec
    expect = np.zeros(d)
    expect[idx] = x_np[idx] * (d / k if "unbiased" in spec else 1.0)
    expect = np.where(np.isfinite(x_np), expect, x_np)
    assert np.asarray(native[0]).tobytes() == expect.tobytes(), spec


def test_equal_keys_straddling_the_cut_go_to_the_lower_index():
    """Among 1e5 30-bit keys a few pairs are equal (~d^2 / 2^31 of them); a k that cuts through
    such a pair keeps its lower index only (the definition's tie rule)."""
    d = 100_000
    key = jax.random.key(21)
    kd = np.asarray(_kernels.key_words(key))
    order = _ranking(int(kd[0]), int(kd[1]), d)
    j = np.arange((d + 1) // 2, dtype=np.uint32)
    x0, x1 = threefry2x32_20(kd[0], kd[1], np.zeros_like(j), j)
    v = (np.stack([x0, x1], axis=1).reshape(-1)[:d] >> np.uint32(2))[order]
    cuts = np.flatnonzero(v[:-1] == v[1:])[:2] + 1  # k: position r in, position r + 1 out
    assert len(cuts) > 0, "no equal keys in this stream: pick another key"
    ks = [int(k) for k in cuts]
    got = jax.jit(lambda q: [_kernels.random_subset(jnp.zeros((d,)), q, k) for k in ks])(key)
    for k, row in zip(ks, got, strict=True):
        lo, hi = sorted(order[k - 1 : k + 1])  # the tied pair
        row = np.asarray(row)
        assert lo in row and hi not in row, k
        np.testing.assert_array_equal(row, _reference(kd, d, k))


def _dense_reference(x, kd, k, scale):
    """numpy: x[idx] * scale at the reference indices (x[idx] when scale is None), +0
    elsewhere, x itself wherever it is NaN or +-inf."""
    idx = _reference(kd, x.shape[0], k)
    out = np.zeros_like(x)
    out[idx] = x[idx] if scale is None else x[idx] * x.dtype.type(scale)
    return np.where(np.isfinite(x), out, x)


def _awkward(d, dtype, seed):
    """Gaussian entries with -0.0, NaN and +-inf spread over the row (sent or not)."""
    x = np.random.default_rng(seed).standard_normal(d).astype(dtype)
    x[1::37] = -0.0
    x[2::53] = np.nan
    x[3::59] = np.inf
    x[4::61] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_kernel_equals_the_numpy_reference_and_the_pure_path(dtype, monkeypatch):
    """Bit for bit, batched (vmap, three keys): odd and even d, k from 1 to d, unscaled and
    scaled (d/k), and with the bracket forced to miss (sigmas = -1e9: the all-keys path)."""
    keys = jax.random.split(jax.random.key(17), 3)
    kds = _words(keys)
    cases = [(4097, 40, None, None), (4097, 41, 4097 / 41, None), (1000, 10, 100.0, -1e9)]
    cases += [(5, 5, None, None), (100_001, 1000, 100.001, None), (2, 1, 2.0, None)]
    xs = [_awkward(d, dtype, n) for n, (d, *_) in enumerate(cases)]

    def fn(q):
        return [
            _kernels.rand_k_dense(jnp.asarray(x), q, k, scale, sigmas=s)
            for x, (_, k, scale, s) in zip(xs, cases, strict=True)
        ]

    batched = jax.vmap(fn)
    text = jax.jit(batched).lower(keys).as_text()
    assert "ratedist_rand_k_dense" in text and "ratedist_random_subset" not in text
    native = jax.jit(batched)(keys)
    pure = _pure(batched, keys, monkeypatch=monkeypatch)
    for n, (x, (d, k, scale, _)) in enumerate(zip(xs, cases, strict=True)):
        for b, kd in enumerate(kds):
            want = _dense_reference(x, kd, k, scale).tobytes()
            assert np.asarray(native[n][b]).tobytes() == want, (d, k, b)
            assert np.asarray(pure[n][b]).tobytes() == want, (d, k, b)


def test_dense_kernel_derivative_is_the_pure_paths(monkeypatch):
    """jax.grad through rand-k-unbiased's update (the kernel's jvp rule differentiates the
    pure path): of sum(x_hat^2 / 2), (d/k)^2 x_i at the sent coordinates, zero elsewhere."""
    d, k = 5000, 50
    x_np = np.random.default_rng(1).standard_normal(d)
    x = jnp.asarray(x_np)
    key = jax.random.key(9)
    c = make(f"rand-k-unbiased:k={k}")

    def loss(v, q):  # needs the kernel's values, not only its tangent
        return jnp.sum(c.update(v, c.init(v), key=q)[0] ** 2) / 2

    grad = jax.grad(loss)
    assert "ratedist_rand_k_dense" in jax.jit(grad).lower(x, key).as_text()
    native = np.asarray(jax.jit(grad)(x, key))
    pure = _pure(grad, x, key, monkeypatch=monkeypatch)
    assert native.tobytes() == np.asarray(pure).tobytes()
    idx = _reference(np.asarray(_kernels.key_words(key)), d, k)
    want = np.zeros(d)
    want[idx] = (d / k) * (d / k) * x_np[idx]
    np.testing.assert_allclose(native, want, rtol=1e-15, atol=0)


def test_monte_carlo_rand_k_unbiased_on_the_dense_kernel():
    """Rand-K-unbiased on the dense kernel (k = d/100): every coordinate is sent with
    probability k/d, the mean is x and the variance x^2 (d/k - 1), within 5 standard errors."""
    d, k, n = 1000, 10, 6000
    x = np.random.default_rng(8).standard_normal(d) * np.linspace(0.1, 3.0, d)
    xj = jnp.asarray(x)
    comp = make(f"rand-k-unbiased:k={k}")

    def one(q):
        return comp.update(xj, comp.init(xj), key=q)[0]

    keys = jax.random.split(jax.random.key(99), n)
    assert "ratedist_rand_k_dense" in jax.jit(one).lower(keys[0]).as_text()
    out = np.asarray(jax.jit(jax.vmap(one))(keys))
    assert np.all((out != 0).sum(axis=1) == k)
    p = k / d
    freq = (out != 0).mean(axis=0)
    assert np.max(np.abs(freq - p) / np.sqrt(p * (1 - p) / n)) < 5.0
    var = x**2 * (d / k - 1)
    z = np.abs(out.mean(axis=0) - x) / np.sqrt(var / n)
    assert z.max() < 5.0, z.max()
    err = ((out - x) ** 2).sum(axis=1)  # E||C(x) - x||^2 = (d/k - 1) ||x||^2
    assert abs(err.mean() - var.sum()) < 5.0 * err.std(ddof=1) / np.sqrt(n)
