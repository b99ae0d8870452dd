"""Engines: vmap, shard_map, loop and group run the same worker code and give the same numbers.

shard_map needs several devices; 8 CPU devices are emulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``, which must be set before JAX is
imported, so that part runs in a subprocess (the pytest process has one device).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ratedist.compressors import error_feedback, make
from ratedist.sim import compressed_sgd, ef21, lag, marina, run, tridiagonal_quadratic
from ratedist.sim.stages import bernoulli_stragglers, quantized_weights

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from ratedist.compressors import make, error_feedback
    from ratedist.sim import ef21, marina, compressed_sgd, run, tridiagonal_quadratic

    assert jax.device_count() == 8, jax.devices()
    out = {}
    key = jax.random.key(3)
    for n in (8, 16):
        prob = tridiagonal_quadratic(n_workers=n, dim=24, seed=n)
        algs = {
            "ef21": ef21(make("top-k:k=3")),
            "marina": marina(make("rand-k-unbiased:k=4"), 0.3),
            "ef_sign": compressed_sgd(error_feedback(make("scaled-sign"))),
        }
        if 24 % n == 0:  # PermK: shared permutation, d must be a multiple of n
            algs["marina_perm"] = marina(make(f"perm-k:n_workers={n}"), 0.3)
        for name, alg in algs.items():
            gamma = None if name not in ("ef_sign", "marina_perm") else 0.05
            v = run(alg, prob, steps=60, key=key, gamma=gamma, engine="vmap")
            sg = run(alg, prob, steps=60, key=key, gamma=gamma, engine="shard_map",
                     aggregate="gather")
            sp = run(alg, prob, steps=60, key=key, gamma=gamma, engine="shard_map")
            out[f"{name}/{n}"] = {
                "gather_equal": bool(np.array_equal(v.x, sg.x)
                                     and np.array_equal(v.bits.container, sg.bits.container)),
                "gather_maxdiff_f": float(np.max(np.abs(v.f - sg.f) / np.abs(v.f).max())),
                "psum_maxdiff_x": float(np.max(np.abs(v.x - sp.x))),
                "psum_maxdiff_f": float(np.max(np.abs(v.f - sp.f))),
                "bits_equal": bool(np.array_equal(v.bits.container, sp.bits.container)),
            }
    prob = tridiagonal_quadratic(n_workers=8, dim=24, seed=5)
    alg = marina(make("rand-k-unbiased:k=4"), 0.3)
    rv = run(alg, prob, steps=30, key=key, replicas=3, engine="vmap")
    rs = run(alg, prob, steps=30, key=key, replicas=3, engine="shard_map", aggregate="gather")
    out["replicas"] = {
        "equal": bool(np.array_equal(rv.x, rs.x)
                      and np.array_equal(rv.bits.container, rs.bits.container)),
        "shape": list(rs.x.shape),
        "distinct": bool(not np.array_equal(rs.x[0], rs.x[1])),
    }
    try:
        run(ef21(make("top-k:k=3")), tridiagonal_quadratic(n_workers=12, dim=8), steps=2,
            key=key, engine="shard_map")
        out["indivisible"] = "no error"
    except ValueError as exc:
        out["indivisible"] = str(exc)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def shard_results():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["ef21/8", "marina/8", "ef_sign/8", "marina_perm/8", "ef21/16", "marina/16"]
)
def test_shard_map_gather_matches_vmap_bitwise(shard_results, case):
    # iterates and bits agree bit for bit; per-worker losses f_i are dot products that XLA
    # vectorizes differently for a batch of N (vmap) and of N/8 (one device), so f differs
    # by float64 rounding only
    assert shard_results[case]["gather_equal"]
    assert shard_results[case]["gather_maxdiff_f"] <= 1e-14


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ef21/8", "marina/8", "ef21/16", "marina/16", "ef_sign/16"])
def test_shard_map_psum_matches_vmap_to_rounding(shard_results, case):
    r = shard_results[case]
    # psum sums in another order than the fixed matvec: float64 rounding, amplified by at most
    # 60 contractive steps; scaled-sign EF can flip signs of tiny coordinates, still << 1e-12
    # here at these sizes (checked) - a larger drift would be a real bug.
    assert r["psum_maxdiff_x"] <= 1e-12
    assert r["psum_maxdiff_f"] <= 1e-12
    assert r["bits_equal"]


@pytest.mark.slow
def test_shard_map_with_replicas_matches_vmap(shard_results):
    r = shard_results["replicas"]
    assert r["shape"] == [3, 24] and r["distinct"]  # three independent replicas
    assert r["equal"]


@pytest.mark.slow
def test_shard_map_rejects_indivisible_worker_count(shard_results):
    assert "n_workers must be divisible" in shard_results["indivisible"]


@pytest.mark.slow
def test_vmap_psum_matches_gather(key):
    # in-process check of the two aggregation modes on one device
    prob = tridiagonal_quadratic(n_workers=5, dim=16, seed=2)
    alg = marina(make("rand-k-unbiased:k=4"), 0.3)
    a = run(alg, prob, steps=40, key=key, engine="vmap")
    b = run(alg, prob, steps=40, key=key, engine="vmap", aggregate="psum")
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)  # reduction order only
    np.testing.assert_array_equal(a.bits.container, b.bits.container)


def test_shard_map_single_device_equals_vmap(key):
    # with one device shard_map still runs (all workers local): same numbers as vmap
    prob = tridiagonal_quadratic(n_workers=3, dim=10, seed=0)
    alg = ef21(make("top-k:k=2"))
    a = run(alg, prob, steps=20, key=key, engine="vmap")
    b = run(alg, prob, steps=20, key=key, engine="shard_map", aggregate="gather")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)


def test_loop_engine_matches_vmap(key):
    # the sequential engine sums workers in order instead of the gather-matvec: rounding only
    prob = tridiagonal_quadratic(n_workers=4, dim=12, seed=5)
    alg = marina(make("rand-k-unbiased:k=3"), 0.4)
    a = run(alg, prob, steps=30, key=key, engine="vmap")
    b = run(alg, prob, steps=30, key=key, engine="loop")
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)
    # f passes through 0 (f* < 0 here): relative to the largest |f|, not to each entry, whose
    # last bits come from cancellation (1.6e-17 absolute seen at f = -1.2e-5)
    np.testing.assert_allclose(b.f, a.f, rtol=1e-13, atol=1e-13 * np.abs(a.f).max())
    np.testing.assert_array_equal(a.bits.container, b.bits.container)
    assert b.worker_error.shape == a.worker_error.shape == (31, 4)


# ----------------------------------------------------------------------------- group engine


@pytest.fixture
def group_of(monkeypatch):
    """Force the group engine's group size (the compiled-step cache is keyed on the engine,
    not on G: clear it before and after)."""
    from ratedist.sim import engines, runner

    def force(g):
        runner.clear_compiled_cache()
        monkeypatch.setattr(engines, "group_size", lambda n, d, itemsize: g)

    yield force
    runner.clear_compiled_cache()


_GROUP_METHODS = {
    "ef21_topk": (lambda: ef21(make("top-k:k=3")), None),
    "marina": (lambda: marina(make("rand-k-unbiased:k=4"), 0.3), None),
    "ef_sign": (lambda: compressed_sgd(error_feedback(make("scaled-sign"))), 0.05),
    "lag": (lambda: lag(0.5), None),
}


@pytest.mark.parametrize(
    ("method", "g"),
    [
        ("ef21_topk", 2),
        ("ef_sign", 2),
        ("lag", 3),
        pytest.param("ef21_topk", 1, marks=pytest.mark.slow),  # the loop schedule
        pytest.param("ef21_topk", 6, marks=pytest.mark.slow),  # one group: vmap's schedule
        pytest.param("marina", 3, marks=pytest.mark.slow),
    ],
)
def test_group_engine_matches_vmap(method, g, key, group_of):
    # Only the order of the sums over workers differs (vmap: ones(N) @ X; group: the same
    # product per group, then a running sum over groups): float64 rounding, 1e-12 on x of
    # order 1, compounded over 25 steps; the random streams and so the bits are identical.
    build, gamma = _GROUP_METHODS[method]
    prob = tridiagonal_quadratic(n_workers=6, dim=20, seed=4)
    a = run(build(), prob, steps=25, key=key, gamma=gamma, engine="vmap")
    group_of(g)
    b = run(build(), prob, steps=25, key=key, gamma=gamma, engine="group")
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.f, a.f, rtol=1e-12, atol=1e-12 * np.abs(a.f).max())
    np.testing.assert_allclose(b.worker_error, a.worker_error, rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)
    assert b.worker_error.shape == a.worker_error.shape == (26, 6)


def test_group_engine_large_groups_sum_by_matvec(key, group_of, monkeypatch):
    # groups above GROUP_UNROLL_MAX sum with ones(G) @ X: same tolerance as above
    from ratedist.sim import engines

    monkeypatch.setattr(engines, "GROUP_UNROLL_MAX", 2)
    prob = tridiagonal_quadratic(n_workers=6, dim=20, seed=4)
    alg = ef21(make("top-k:k=3"))
    a = run(alg, prob, steps=25, key=key, engine="vmap")
    group_of(3)
    b = run(alg, prob, steps=25, key=key, engine="group")
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)


@pytest.mark.slow
def test_group_engine_float32_matches_vmap(key, group_of):
    # float32: 1e-5 relative, the simulator's float32 tolerance (rounding of the group sums)
    prob = tridiagonal_quadratic(n_workers=8, dim=300, seed=1)
    alg = ef21(make("top-k:k=10"))
    a = run(alg, prob, steps=20, key=key, dtype=np.float32, engine="vmap")
    group_of(4)
    b = run(alg, prob, steps=20, key=key, dtype=np.float32, engine="group")
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-5 * np.abs(a.x).max())
    np.testing.assert_allclose(b.grad_norm_sq, a.grad_norm_sq, rtol=1e-5)


def test_group_engine_with_stragglers_and_quantized_weights(key, group_of):
    # stragglers' state is frozen in place (group rows included); quantized weights add the
    # exact gradient at the server's point to the group sums
    prob = tridiagonal_quadratic(n_workers=4, dim=12, seed=2)
    alg = ef21(make("top-k:k=2"))
    stages = {
        "participation": bernoulli_stragglers(0.4),
        "downlink": quantized_weights(make("qsgd:s=8")),
    }
    a = run(alg, prob, steps=15, key=key, engine="vmap", **stages)
    group_of(2)
    b = run(alg, prob, steps=15, key=key, engine="group", **stages)
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)


def test_group_size_rule():
    from ratedist.sim.engines import GROUP_CACHE_BYTES, GROUP_LIVE_VECTORS, group_size

    def expected(n, d, itemsize):  # the documented rule, by brute force
        fits = [g for g in range(1, n + 1) if n % g == 0]
        ok = [g for g in fits if g * GROUP_LIVE_VECTORS * d * itemsize <= GROUP_CACHE_BYTES]
        return max(ok, default=1)

    for n in (1, 7, 8, 12, 32, 128):
        for d in (10, 1000, 10**5, 10**6, 10**8):
            for itemsize in (4, 8):
                assert group_size(n, d, itemsize) == expected(n, d, itemsize), (n, d, itemsize)
    assert group_size(7, 10**5, 4) == 1  # prime N: no divisor fits, the loop schedule
    assert group_size(128, 100, 4) == 128  # everything fits: one vmapped group
