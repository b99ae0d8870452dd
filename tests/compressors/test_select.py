"""Exact Top-K by magnitude: the native CPU kernel against ``jax.lax.top_k``.

The reference is the pure-JAX path (``jax.lax.top_k`` on the magnitudes, indices sorted),
an independent implementation; the native kernel must select the same SET on every input,
including ties, NaN, infinities and signed zeros, and return values and indices bit for bit.
"""

import json
import os
import platform
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness_builds import harness_outputs

from ratedist import _native
from ratedist.compressors import make
from ratedist.compressors.base import propagate_nonfinite_sparse
from ratedist.compressors.select import _lax, native_available, top_k_abs, top_k_abs_unsent

native = pytest.mark.skipif(
    not _native.status().available, reason=f"native kernel: {_native.status().reason}"
)


def _reference(x, k):
    """numpy: stable sort of -|x| (NaN first, ties to the lower index), indices increasing."""
    a = np.abs(np.asarray(x))
    order = np.lexsort((np.arange(a.shape[-1]), -np.nan_to_num(a, nan=0.0), ~np.isnan(a)))
    idx = np.sort(order[:k])
    return np.asarray(x)[idx], idx


def _cases():
    rng = np.random.default_rng(0)
    yield "gaussian", rng.standard_normal(1000), 10
    yield "k=1", rng.standard_normal(257), 1
    yield "k=d", rng.standard_normal(64), 64
    yield "all equal", np.full(300, -2.5), 7
    yield "all zero, signed", np.where(rng.random(200) < 0.5, -0.0, 0.0), 5
    yield (
        "ties at the cut",
        np.repeat(np.arange(50.0), 20) * np.where(rng.random(1000) < 0.5, -1, 1),
        33,
    )
    yield (
        "inf and nan",
        np.concatenate([[np.nan, -np.inf, 3.0, np.inf], rng.standard_normal(96)]),
        3,
    )
    yield "few distinct", rng.integers(-3, 4, 5000).astype(float), 1234
    yield "heavy tail", rng.standard_cauchy(20000), 200
    yield "sorted", np.linspace(-1, 1, 10001), 100
    # large values exactly on the sampling grid: the sample bracket misses, fallback path
    bracket_miss = np.ones(100_000)
    bracket_miss[np.arange(1024) * 100_000 // 1024] = 10.0
    yield "bracket miss", bracket_miss, 2000
    yield "tiny d", np.array([0.5]), 1


CASES = list(_cases())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "x", "k"), CASES, ids=[c[0] for c in CASES])
def test_top_k_abs_matches_independent_reference(name, x, k, dtype):
    x = np.asarray(x, dtype)
    vals, idx = jax.jit(lambda v: top_k_abs(v, k))(jnp.asarray(x))
    ref_vals, ref_idx = _reference(x, k)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)
    np.testing.assert_array_equal(np.asarray(vals).view(np.uint8), ref_vals.view(np.uint8))
    assert idx.dtype == jnp.int32 and vals.dtype == x.dtype


@pytest.mark.parametrize(("name", "x", "k"), CASES, ids=[c[0] for c in CASES])
def test_lax_path_matches_independent_reference(name, x, k):
    idx = _lax(jnp.asarray(x), k)
    _, ref_idx = _reference(x, k)
    np.testing.assert_array_equal(np.asarray(idx), ref_idx)


def _key_reference(x, k):
    """numpy, from the bit patterns: stable order of (-key, index), key = |bits| (sign cleared).

    Independent of the kernel's bracketing and of ``jax.lax.top_k``; orders NaNs by payload
    (as the kernel's contract does) and works row by row on the last axis.
    """
    x = np.asarray(x)
    uint = np.uint32 if x.dtype.itemsize == 4 else np.uint64
    key = (x.view(uint) & uint(np.iinfo(uint).max >> 1)).astype(np.int64)
    pos = np.broadcast_to(np.arange(x.shape[-1]), x.shape)
    order = np.lexsort((pos, -key), axis=-1)
    return np.sort(order[..., :k], axis=-1)


def _nan_payloads(rng, n, dtype):
    """NaNs of both signs with random payloads."""
    uint = np.uint32 if np.dtype(dtype).itemsize == 4 else np.uint64
    info = np.finfo(dtype)
    quiet = uint(1) << uint(info.nmant - 1)
    exp = uint((1 << info.nexp) - 1) << uint(info.nmant)
    payload = rng.integers(0, 1 << (info.nmant - 1), n).astype(uint)
    sign = rng.integers(0, 2, n).astype(uint) << uint(8 * np.dtype(dtype).itemsize - 1)
    return (exp | quiet | payload | sign).view(dtype)


def _adversarial_rows(d, dtype, seed=0):
    """One row per adversarial kind, all of length d (the rows of one batched call)."""
    rng = np.random.default_rng(seed)
    tiny = np.finfo(dtype).smallest_subnormal
    stride = max(d // 1024, 1)
    rows = {
        "gaussian": rng.standard_normal(d),
        "all equal": np.full(d, -2.5),
        "signed zeros": np.where(rng.random(d) < 0.5, -0.0, 0.0),
        "few distinct": rng.integers(-3, 4, d).astype(float),
        "denormals": tiny * rng.integers(-40, 41, d),
        "sorted": np.linspace(0.0, 1.0, d),
        "reversed": np.linspace(1.0, 0.0, d),
        "heavy tail": rng.standard_cauchy(d),
        "alternating signs": np.repeat(np.arange(d // 2 + 1.0), 2)[:d] * (-1.0) ** np.arange(d),
        # the strided sample of the kernel (positions stride/2 + j stride) and the former one
        # (j d // 1024) see only large values: the bracket misses, fallback to all entries
        "sample sees large": np.where(np.arange(d) % stride == stride // 2, 10.0, rng.random(d)),
        "sample sees large 2": np.where(np.arange(d) % stride == 0, 10.0, rng.random(d)),
        "half at the cut": np.where(rng.random(d) < 0.5, 1.0, 0.5 * rng.random(d)),
    }
    x = np.stack([np.asarray(v, dtype) for v in rows.values()])
    special = np.stack([_nan_payloads(rng, d, dtype), np.full(d, np.inf, dtype)])
    mixed = rng.standard_normal(d).astype(dtype)
    where = rng.choice(d, size=(2, max(d // 50, 2)), replace=False)
    mixed[where[0]] = special[0, where[0]]
    mixed[where[1]] = special[1, where[1]] * np.where(rng.random(where.shape[1]) < 0.5, -1, 1)
    return np.concatenate([x, mixed[None]]), [*rows, "nan and inf"]


@native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [777, 3001, 5120])
def test_adversarial_rows_match_the_bit_pattern_reference(d, dtype):
    # d below the sample size, d not a multiple of the SIMD blocks, d = 5 * 1024; batched rows
    x, names = _adversarial_rows(d, dtype)
    for k in sorted({1, 2, max(d // 100, 1), d // 3, d - 1, d}):
        idx = np.asarray(jax.jit(lambda v, k=k: top_k_abs(v, k)[1])(jnp.asarray(x)))
        ref = _key_reference(x, k)
        for r, name in enumerate(names):
            np.testing.assert_array_equal(idx[r], ref[r], err_msg=f"{name}, d={d}, k={k}")


@native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_rows_match_the_bit_pattern_reference(dtype):
    # many candidates (several radix rounds, interleaved histograms), and keys that differ
    # only in their last bits (a bucket per key value)
    d = 1024 * 97
    rng = np.random.default_rng(1)
    x, names = _adversarial_rows(d, dtype, seed=2)
    uint = np.uint32 if np.dtype(dtype).itemsize == 4 else np.uint64
    ulps = (np.asarray(1.5, dtype).view(uint) + rng.integers(0, 3000, d).astype(uint)).view(dtype)
    x = np.concatenate([x, ulps[None]])
    names = [*names, "consecutive ulps"]
    for k in (1000, 30_000):
        idx = np.asarray(jax.jit(lambda v, k=k: top_k_abs(v, k)[1])(jnp.asarray(x)))
        ref = _key_reference(x, k)
        for r, name in enumerate(names):
            np.testing.assert_array_equal(idx[r], ref[r], err_msg=f"{name}, k={k}")


def test_key_reference_agrees_with_the_value_reference():
    # the two numpy references agree where both apply (no NaN payload order involved)
    x, names = _adversarial_rows(3001, np.float64)
    for r, name in enumerate(names[:-1]):
        np.testing.assert_array_equal(
            _key_reference(x[r], 30), _reference(x[r], 30)[1], err_msg=name
        )


@native
@pytest.mark.slow
@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="x86 instruction-set variants"
)
def test_instruction_set_variants_select_the_same_indices(tmp_path):
    # the AVX-512, AVX2 and portable builds of the row function agree on every case of the
    # harness (a hash of the selected indices); the build this CPU runs is checked against
    # the numpy references above
    variants = {
        "avx512": [],
        "avx2": ["-DRATEDIST_SELECT_NO_AVX512"],
        "portable": ["-DRATEDIST_SELECT_PORTABLE"],
    }
    out = harness_outputs("select_harness.cc", "select.cc", "SSRC", variants, tmp_path, ("", "1"))
    sums = {
        isa: [line.split("checksum")[0][:30] + line.split()[-1] for line in lines]
        for isa, lines in out.items()
    }
    assert len(sums["avx512"]) >= 10
    assert sums["avx2"] == sums["avx512"]
    assert sums["portable"] == sums["avx512"]


def test_gradient_flows_through_the_values(key):
    # the values are gathered from x: d/dx sum(w * values) = w scattered at the indices
    x = jax.random.normal(key, (3, 40))
    w = jnp.arange(1.0, 6.0)
    g = jax.grad(lambda a: jnp.sum(top_k_abs(a, 5)[0] * w[None, :]))(x)
    _, idx = top_k_abs(x, 5)
    expected = np.zeros((3, 40))
    for r in range(3):
        expected[r, np.asarray(idx[r])] = np.asarray(w)
    np.testing.assert_array_equal(np.asarray(g), expected)


def test_numpy_integer_k_is_accepted():
    vals, idx = top_k_abs(jnp.asarray([3.0, -1.0, 2.0]), np.int64(2))
    np.testing.assert_array_equal(np.asarray(vals), [3.0, 2.0])
    np.testing.assert_array_equal(np.asarray(idx), [0, 2])


@native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_is_used_on_cpu(dtype):
    assert native_available(dtype)
    text = jax.jit(lambda v: top_k_abs(v, 3)).lower(jnp.zeros(10, dtype)).as_text()
    assert _native.TOP_K_ABS_TARGETS[np.dtype(dtype).name][0] in text


def test_other_dtypes_use_lax():
    assert not native_available(jnp.bfloat16)
    x = jnp.asarray([1.0, -4.0, 2.0, 3.0], jnp.bfloat16)
    vals, idx = top_k_abs(x, 2)
    np.testing.assert_array_equal(np.asarray(idx), [1, 3])
    np.testing.assert_array_equal(np.asarray(vals, np.float32), [-4.0, 3.0])


def test_batched_under_vmap_and_2d(key):
    x = jax.random.normal(key, (6, 3, 500))
    v1, i1 = jax.jit(jax.vmap(jax.vmap(lambda r: top_k_abs(r, 9))))(x)
    v2, i2 = jax.jit(lambda a: top_k_abs(a, 9))(x)
    for r in range(6):
        for c in range(3):
            rv, ri = _reference(np.asarray(x[r, c]), 9)
            np.testing.assert_array_equal(np.asarray(i1[r, c]), ri)
            np.testing.assert_array_equal(np.asarray(v1[r, c]), rv)
    np.testing.assert_array_equal(np.asarray(i1), np.asarray(i2))
    np.testing.assert_array_equal(np.asarray(v1), np.asarray(v2))


@pytest.mark.parametrize(
    ("x", "k", "exc", "words"),
    [
        (np.arange(5), 2, TypeError, "floating"),
        (np.ones(5), 2.0, TypeError, "k must be an int"),
        (np.ones(5), True, TypeError, "k must be an int"),
        (np.ones(5), 0, ValueError, "1 <= k <= d = 5"),
        (np.ones(5), 6, ValueError, "got k=6"),
        (np.float32(1.0), 1, ValueError, "at least one dimension"),
    ],
)
def test_bad_input(x, k, exc, words):
    with pytest.raises(exc, match=words):
        top_k_abs(x, k)


def test_top_k_compressor_sparse_and_dense_agree(key):
    comp = make("top-k:k=17")
    x = jax.random.normal(key, (400,))
    st = comp.init(x)
    x_hat, _, info = comp.update(x, st)
    vals, idx, _, info2 = comp.sparse(x, st)
    dense = np.zeros(400)
    dense[np.asarray(idx)] = np.asarray(vals)
    np.testing.assert_array_equal(np.asarray(x_hat), dense)
    assert np.all(np.diff(np.asarray(idx)) > 0)
    assert [float(v) for v in info] == [float(v) for v in info2]


_FALLBACK = textwrap.dedent(
    """
    import json, logging, os, sys
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
    import jax, jax.numpy as jnp, numpy as np
    from ratedist import _native
    from ratedist.compressors.select import top_k_abs
    st = _native.status()
    v, i = jax.jit(lambda a: top_k_abs(a, 2))(jnp.asarray([1.0, -5.0, 2.0, 5.0]))
    print("RESULT" + json.dumps({"available": st.available, "reason": st.reason,
                                 "idx": np.asarray(i).tolist()}))
    """
)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"RATEDIST_NATIVE": "0"}, "switched off"),
        ({"CXX": "/nonexistent/c++"}, "could not run"),
        ({"CXX": "false"}, "exited 1"),
    ],
)
def test_fallback_when_native_is_off_or_cannot_build(tmp_path, env, reason):
    full = {**os.environ, "RATEDIST_CACHE_DIR": str(tmp_path), **env}
    proc = subprocess.run(
        [sys.executable, "-c", _FALLBACK], capture_output=True, text=True, env=full, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))[6:])
    assert out["available"] is False and reason in out["reason"]
    assert out["idx"] == [1, 3]  # same answer from the fallback
    logged = [s for s in proc.stdout.splitlines() if s.startswith("LOG")]
    assert bool(logged) == ("RATEDIST_NATIVE" not in env)  # a failed build is reported once
    assert len(logged) <= 1


@pytest.mark.parametrize("platforms", [["cuda"], ["tpu"], ["cuda", "tpu"]])
def test_lowering_for_accelerators_uses_lax_top_k(platforms):
    # cross-platform lowering (no accelerator needed): the CPU-only custom call must not be
    # emitted for GPU/TPU, which get jax.lax.top_k
    exported = jax.export.export(jax.jit(lambda v: top_k_abs(v, 3)), platforms=platforms)(
        jax.ShapeDtypeStruct((2, 50), jnp.float32)
    )
    text = exported.mlir_module()
    assert "ratedist_top_k" not in text
    assert "top_k" in text or "TopK" in text


def _unsent_rows(dtype):
    """(row, k, expected unsent flag): none, some, exactly k and k + 1 non-finite entries."""
    rng = np.random.default_rng(5)
    d, k = 300, 7
    bad = [np.nan, np.inf, -np.inf, -np.nan]
    for n_bad, expect in ((0, False), (1, False), (k - 1, False), (k, False), (k + 1, True)):
        for spot in ("front", "spread", "back"):
            x = rng.standard_normal(d).astype(dtype)
            pos = {
                "front": np.arange(n_bad),
                "spread": rng.choice(d, n_bad, replace=False),
                "back": np.arange(d - n_bad, d),
            }[spot]
            x[pos] = [bad[j % 4] for j in range(n_bad)]
            yield x, k, expect
    x = np.full(d, np.inf, dtype)  # every entry non-finite
    yield x, k, True
    x = np.full(d, np.nan, dtype)
    x[3] = 1.0  # d - 1 non-finite
    yield x, d - 1, False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_abs_unsent_flag(dtype):
    """The unsent flag, native and pure-JAX, against its definition: some non-finite entry of
    the row is not among the indices; 2-D calls and vmap agree (one compilation per k)."""
    from ratedist.compressors import select

    rows = list(_unsent_rows(dtype))
    for k in sorted({k for _, k, _ in rows}):
        xs = np.stack([x for x, kk, _ in rows if kk == k])
        expect = [e for _, kk, e in rows if kk == k]
        batch = jnp.asarray(xs)
        vals, idx, unsent = jax.jit(lambda a, k=k: top_k_abs_unsent(a, k))(batch)
        _, idx_v, unsent_v = jax.jit(jax.vmap(lambda r, k=k: top_k_abs_unsent(r, k)))(batch)
        vals_p, idx_p = jax.jit(lambda a, k=k: top_k_abs(a, k))(batch)
        _, pure = jax.jit(lambda a, k=k: select._lax_unsent(a, k))(batch)
        for r, x in enumerate(xs):
            rv, ri = _reference(x, k)
            for got_v, got_i in ((vals[r], idx[r]), (vals_p[r], idx_p[r])):
                np.testing.assert_array_equal(np.asarray(got_i), ri)
                np.testing.assert_array_equal(np.asarray(got_v), rv)
            left = np.setdiff1d(np.flatnonzero(~np.isfinite(x)), ri)
            assert bool(unsent[r]) is expect[r] is (left.size > 0), (k, r)
            assert bool(pure[r]) is expect[r], (k, r)
        np.testing.assert_array_equal(np.asarray(idx_v), np.asarray(idx))
        np.testing.assert_array_equal(np.asarray(unsent_v), np.asarray(unsent))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_sparse_policy_equals_generic(dtype):
    """Top-K's sparse form applies the non-finite policy itself; the values are those of the
    generic policy (propagate_nonfinite_sparse on the selection) bit for bit, NaN included."""
    comp = make("top-k:k=7")

    @jax.jit
    def both(a):
        gv, gi = top_k_abs(a, 7)
        return comp.sparse(a, ())[:2], (propagate_nonfinite_sparse(a, gv, gi), gi)

    for x, k, expect in _unsent_rows(dtype):
        if k != 7:
            continue
        (vals, idx), (want, gi) = both(jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(idx), np.asarray(gi))
        assert np.asarray(vals).tobytes() == np.asarray(want).tobytes()
        if expect:  # a non-finite entry was left out: every sent value is NaN
            assert np.isnan(np.asarray(vals)).all()
