"""ratedist.optax: compression as optax transformations in a user's own training loop.

The reference is the simulator: ``compress_then_average(C) + optax.adam`` on the per-worker
gradients of ``mlp(n_workers=4, batch_size=None)`` must give the iterates of
``run(compressed_sgd(error_feedback(C)), problem, server=optax.adam(lr))``. The shard_map
path needs several devices, emulated with ``XLA_FLAGS=--xla_force_host_platform_device_count``
before JAX is imported, so it runs in a subprocess (the pytest process has one device).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import ratedist
from ratedist.compressors import error_feedback, make
from ratedist.optax import (
    CompressState,
    compress,
    compress_then_average,
    partition_specs,
    shared_key,
    worker_key,
)
from ratedist.sim import compressed_sgd, mlp, run

STEPS = 200
LR = 1e-2
N = 4
#: a deterministic biased one, a sparsifier, a stochastic unbiased one
SPECS = ("scaled-sign", "top-k:k=10", "qsgd:s=4")


@pytest.fixture(scope="module")
def problem():
    prob = mlp(n_workers=N, batch_size=None)  # full local gradients: no simulator noise key
    data = jax.tree_util.tree_map(jnp.asarray, prob.data)
    grads = jax.vmap(prob.grad_fn, in_axes=(None, 0))  # (N, d): worker i's gradient in row i
    return prob, data, grads


@pytest.fixture(scope="module", params=SPECS)
def agreement(request, problem):
    """The simulator's run and the hand-written loops, 200 Adam steps each."""
    prob, data, grads = problem
    spec = request.param
    comp = make(spec)
    key = jax.random.key(7)
    trace = run(
        compressed_sgd(error_feedback(comp)),
        prob,
        steps=STEPS,
        key=key,
        gamma=LR,  # required by the mlp problem; the adam server does not read it
        server=optax.adam(LR),
    )
    x0 = jnp.asarray(prob.x0)

    # (a) the natural loop: one jitted step, compression chained with adam
    tx = optax.chain(compress_then_average(comp, n_workers=N, key=key), optax.adam(LR))

    @jax.jit
    def step(x, state):
        updates, state = tx.update(grads(x, data), state, x)
        return optax.apply_updates(x, updates), state

    x, state = x0, tx.init(x0)
    for _ in range(STEPS):
        x, state = step(x, state)

    # (b) the same transformations, the average and the adam step compiled separately
    ct, adam = compress_then_average(comp, n_workers=N, key=key), optax.adam(LR)
    average = jax.jit(lambda x, s: ct.update(grads(x, data), s))

    @jax.jit
    def server(g, s, x):
        updates, s = adam.update(g, s, x)
        return optax.apply_updates(x, updates), s

    xs, cs, ss = x0, ct.init(x0), adam.init(x0)
    for _ in range(STEPS):
        g, cs = average(xs, cs)
        xs, ss = server(g, ss, xs)
    return spec, trace, np.asarray(x), state[0], np.asarray(xs), cs


def test_separate_programs_match_the_simulator_bit_for_bit(agreement):
    spec, trace, _, _, xs, cs = agreement
    assert np.array_equal(xs, trace.x), (spec, np.max(np.abs(xs - trace.x)))
    # 200 compressions per worker = the simulator's cumulative count through t = 199
    assert float(cs.container_bits) == trace.bits.container[STEPS - 1].sum()
    # entropy bits are not integers: summed per step over workers here, per worker over steps
    # there (float64 rounding of 800 terms)
    np.testing.assert_allclose(
        float(cs.entropy_bits), trace.bits.entropy[STEPS - 1].sum(), rtol=1e-12
    )
    assert int(cs.count) == STEPS


def test_one_jitted_step_matches_the_simulator_to_rounding(agreement):
    spec, trace, x, state, _, _ = agreement
    # Same arithmetic, but in one XLA program the averaging matvec fuses into Adam's moment
    # update and a multiply-add may be contracted to an FMA where the simulator's (whose
    # average crosses the scan carry) is not: last-bit differences, measured 8.6e-16
    # (scaled-sign) and 2.8e-16 (top-k, qsgd) after 200 steps at |x| <= 1.1. 1e-12 leaves
    # room for another CPU's fusion choices; a real error would move x by ~lr = 1e-2.
    assert np.max(np.abs(x - trace.x)) <= 1e-12, spec
    assert float(state.container_bits) == trace.bits.container[STEPS - 1].sum()


def test_key_schedule_is_the_simulators():
    from ratedist.sim import round as sim_round

    key = jax.random.key(3)
    _, kc = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 5), 2))
    assert jnp.array_equal(jax.random.key_data(worker_key(key, 5, 2)), jax.random.key_data(kc))
    want = jax.random.fold_in(jax.random.fold_in(key, 5), sim_round._SHARED)
    assert jnp.array_equal(jax.random.key_data(shared_key(key, 5)), jax.random.key_data(want))


def _quadratic_step(tx):
    """A jitted adam step on ``sum_leaves ||p - 1||^2`` (pytree params)."""
    grad = jax.grad(lambda p: sum(jnp.sum((a - 1.0) ** 2) for a in jax.tree.leaves(p)))

    @jax.jit
    def step(p, s):
        updates, s = tx.update(grad(p), s, p)
        return optax.apply_updates(p, updates), s

    return step


def test_state_saves_to_numpy_and_continues_identically(tmp_path):
    params = {"w": jnp.linspace(-1.0, 2.0, 12).reshape(3, 4), "b": jnp.zeros(5)}
    tx = optax.chain(compress(make("qsgd:s=2"), key=jax.random.key(0)), optax.adam(0.05))
    step = _quadratic_step(tx)
    p, s = params, tx.init(params)
    trajectory = []
    for _ in range(10):
        p, s = step(p, s)
        trajectory.append((p, s))

    p, s = trajectory[4]  # after 5 steps: save, restore, continue
    leaves, treedef = jax.tree_util.tree_flatten(s)
    np.savez(tmp_path / "ckpt.npz", *[np.asarray(a) for a in leaves])
    with np.load(tmp_path / "ckpt.npz") as f:
        restored = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(leaves))]
    s = jax.tree_util.tree_unflatten(treedef, restored)
    for _ in range(5):
        p, s = step(p, s)

    for a, b in zip(jax.tree.leaves((p, s)), jax.tree.leaves(trajectory[-1]), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert int(s[0].count) == 10 and float(s[0].container_bits) > 0


def test_compress_is_compress_then_average_with_one_worker():
    comp = make("qsgd:s=4")
    key = jax.random.PRNGKey(2)  # raw keys work as well as typed ones
    one, many = compress(comp, key=key), compress_then_average(comp, n_workers=1, key=key)
    x = {"a": jnp.arange(6.0) - 2.5, "b": jnp.array([[0.3, -0.7]])}
    s1, sn = one.init(x), many.init(x)
    update1, update_n = jax.jit(one.update), jax.jit(many.update)
    for t in range(3):
        g = jax.tree.map(lambda a, t=t: jnp.cos(a + t), x)
        u1, s1 = update1(g, s1)
        un, sn = update_n(jax.tree.map(lambda a: a[None], g), sn)
        assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, u1, un)))
    assert float(s1.container_bits) == float(sn.container_bits)


def test_compressing_a_pytree_is_compressing_its_flat_vector():
    comp = make("top-k:k=3")
    tree = {"a": jnp.array([0.1, -5.0, 0.2]), "b": jnp.array([[4.0, 0.0], [0.3, -3.0]])}
    key = jax.random.key(0)
    tx = compress(comp, key=key, error_feedback=False)
    out, state = tx.update(tree, tx.init(tree))
    flat, unravel = jax.flatten_util.ravel_pytree(tree)
    want, _, info = comp.update(flat, (), key=worker_key(key, 0, 0))
    assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, out, unravel(want))))
    assert float(state.container_bits) == float(info.container_bits)


def test_per_leaf_compresses_every_leaf_on_its_own():
    comp = make("top-k:k=1")
    tree = {"a": jnp.array([0.1, -5.0, 0.2]), "b": jnp.array([4.0, 0.5]), "c": jnp.zeros((0,))}
    key = jax.random.key(0)
    tx = compress(comp, key=key, error_feedback=False, per_leaf=True)
    out, state = tx.update(tree, tx.init(tree))
    np.testing.assert_array_equal(out["a"], [0.0, -5.0, 0.0])  # one entry per leaf
    np.testing.assert_array_equal(out["b"], [4.0, 0.0])
    assert out["c"].shape == (0,)  # an empty leaf passes through
    bits = sum(float(comp.update(tree[k], (), key=key)[2].container_bits) for k in ("a", "b"))
    assert float(state.container_bits) == bits


def test_error_feedback_residual_is_what_was_not_sent():
    comp = make("top-k:k=1")
    tx = compress_then_average(comp, n_workers=2, key=jax.random.key(0))
    g = jnp.array([[1.0, -3.0, 2.0], [0.5, 0.25, -1.0]])
    out, state = tx.update(g, tx.init(jnp.zeros(3)))
    np.testing.assert_array_equal(out, [0.0, -1.5, -0.5])  # mean of [0,-3,0] and [0,0,-1]
    np.testing.assert_array_equal(state.compressor.error, [[1.0, 0.0, 2.0], [0.5, 0.25, 0.0]])


def test_axis_name_under_vmap_matches_the_stacked_path():
    comp = make("scaled-sign")
    key = jax.random.key(4)
    params = jnp.linspace(-1.0, 1.0, 7)
    g = jnp.sin(jnp.arange(N * 7.0).reshape(N, 7))
    stacked = compress_then_average(comp, n_workers=N, key=key)
    named = compress_then_average(comp, axis_name="w", key=key)
    s_stacked = stacked.init(params)
    s_named = jax.vmap(lambda _: named.init(params))(jnp.arange(N))
    step = jax.jit(jax.vmap(named.update, axis_name="w"))
    update = jax.jit(stacked.update)
    for _ in range(3):
        u1, s_stacked = update(g, s_stacked)
        u2, s_named = step(g, s_named)
        # psum adds in its own order; the mean of 4 values differs by rounding at most
        np.testing.assert_allclose(np.asarray(u2), np.broadcast_to(u1, (N, 7)), atol=1e-15)
        g = g * 0.5 + 0.1
    np.testing.assert_array_equal(s_named.container_bits, float(s_stacked.container_bits))
    np.testing.assert_allclose(s_named.compressor.error, s_stacked.compressor.error, atol=1e-15)


def test_shared_compressor_gets_the_shared_key_and_worker_index():
    comp = make("perm-k:n_workers=4")
    tx = compress_then_average(comp, n_workers=4, key=jax.random.key(1), error_feedback=False)
    x = jnp.arange(8.0) + 1.0
    out, state = tx.update(jnp.broadcast_to(x, (4, 8)), tx.init(x))
    # the blocks of one shared permutation partition the coordinates: the mean is x
    np.testing.assert_allclose(out, x, rtol=1e-15)
    assert float(state.container_bits) == 4 * 2 * 32  # each worker sends d/n = 2 floats

    with pytest.raises(ValueError, match="perm-k is configured for n_workers=4"):
        bad = compress_then_average(comp, n_workers=2, key=jax.random.key(1))
        bad.update(jnp.ones((2, 8)), bad.init(jnp.ones(8)))
    with pytest.raises(ValueError, match=r"shares its randomness.*compress_then_average"):
        compress(comp, key=jax.random.key(1))


def test_partition_specs_shard_only_the_compressor_state():
    tx = optax.chain(
        compress_then_average(make("sign"), axis_name="workers", key=jax.random.key(0)),
        optax.adam(1e-3),
    )
    specs = partition_specs(jax.eval_shape(tx.init, jnp.zeros(3)), "workers")
    assert specs[0] == CompressState(P(), P(), P("workers"), P(), P())
    assert all(s == P() for s in jax.tree.leaves(specs[1]))


def test_root_package_exports_the_adapter():
    assert ratedist.optax.compress is compress
    assert "optax" in ratedist.__all__


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "build",
    [
        lambda c: compress(c, key=jax.random.key(0)),
        lambda c: compress_then_average(c, n_workers=2, key=jax.random.key(0)),
    ],
)
@pytest.mark.parametrize("bad", ["top-k:k=10", optax.adam(1e-3)])
def test_non_compressor_is_a_type_error_naming_the_argument(build, bad):
    with pytest.raises(TypeError, match=r"compressor must be a ratedist\.compressors\.Compressor"):
        build(bad)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"key": 0}, TypeError, "key must be a JAX PRNG key"),
        ({"key": jax.random.split(jax.random.key(0))}, ValueError, "single PRNG key"),
        ({"error_feedback": 1}, TypeError, "error_feedback must be True or False"),
        ({"per_leaf": "yes"}, TypeError, "per_leaf must be True or False"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compress(make("sign"), **{"key": jax.random.key(0), **kwargs})


def test_error_feedback_twice_is_refused():
    with pytest.raises(ValueError, match="already has error feedback"):
        compress(error_feedback(make("sign")), key=jax.random.key(0))
    compress(error_feedback(make("sign")), key=jax.random.key(0), error_feedback=False)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, ValueError, "exactly one of n_workers"),
        ({"n_workers": 2, "axis_name": "w"}, ValueError, "exactly one of n_workers"),
        ({"n_workers": 0}, ValueError, "n_workers must be >= 1, got 0"),
        ({"n_workers": 2.0}, TypeError, "n_workers must be an int"),
        ({"axis_name": 3}, TypeError, "axis_name must be"),
    ],
)
def test_bad_worker_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compress_then_average(make("sign"), key=jax.random.key(0), **kwargs)


def test_non_float_updates_are_a_type_error():
    tx = compress(make("sign"), key=jax.random.key(0))
    state = tx.init({"w": jnp.zeros(3)})
    with pytest.raises(TypeError, match=r"updates must hold floating-point.*int32.*\['w'\]"):
        tx.update({"w": jnp.arange(3, dtype=jnp.int32)}, state)
    with pytest.raises(TypeError, match="params must hold floating-point"):
        tx.init({"w": jnp.arange(3)})


def test_updates_of_another_shape_are_refused():
    tx = compress(make("sign"), key=jax.random.key(0))
    state = tx.init(jnp.zeros(3))
    with pytest.raises(ValueError, match="do not match the params"):
        tx.update(jnp.zeros(4), state)
    many = compress_then_average(make("sign"), n_workers=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="leading worker axis of size n_workers=2"):
        many.update(jnp.zeros((3, 3)), many.init(jnp.zeros(3)))


# ------------------------------------------------------------------------------ shard_map

_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import Mesh, PartitionSpec as P
    from ratedist.compressors import make
    from ratedist.optax import compress_then_average, partition_specs
    from ratedist.sim import mlp

    assert jax.device_count() == 4, jax.devices()
    prob = mlp(n_workers=4, batch_size=None)
    data = jax.tree_util.tree_map(jnp.asarray, prob.data)
    x0 = jnp.asarray(prob.x0)
    key = jax.random.key(7)
    mesh = Mesh(np.array(jax.devices()), ("workers",))
    grads = jax.vmap(prob.grad_fn, in_axes=(None, 0))
    out = {}
    for spec in ("scaled-sign", "qsgd:s=4"):
        comp = make(spec)
        tx = optax.chain(compress_then_average(comp, axis_name="workers", key=key),
                         optax.adam(1e-2))
        specs = partition_specs(jax.eval_shape(tx.init, x0), "workers")
        init = jax.jit(jax.shard_map(tx.init, mesh=mesh, in_specs=P(), out_specs=specs,
                                     check_vma=False))

        def step(x, s, d):  # one worker per device: its slice of the data
            g = prob.grad_fn(x, jax.tree.map(lambda a: a[0], d))
            u, s = tx.update(g, s, x)
            return optax.apply_updates(x, u), s

        step = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), specs, P("workers")),
                                     out_specs=(P(), specs), check_vma=False))
        ref = optax.chain(compress_then_average(comp, n_workers=4, key=key), optax.adam(1e-2))

        @jax.jit
        def ref_step(x, s):
            u, s = ref.update(grads(x, data), s, x)
            return optax.apply_updates(x, u), s

        x, s, xr, sr = x0, init(x0), x0, ref.init(x0)
        for _ in range(200):
            x, s = step(x, s, data)
            xr, sr = ref_step(xr, sr)
        out[spec] = {
            "maxdiff_x": float(jnp.max(jnp.abs(x - xr))),
            "bits_equal": float(s[0].container_bits) == float(sr[0].container_bits),
            "error_shape": list(s[0].compressor.error.shape),
            "count": int(s[0].count),
        }
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def shard_results():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["scaled-sign", "qsgd:s=4"])
def test_shard_map_matches_the_stacked_path(shard_results, spec):
    r = shard_results[spec]
    # psum over 4 devices adds in the backend's order, the stacked path in ones(N) @ X's:
    # float64 rounding (measured <= 4e-16 after 200 Adam steps); a drift of lr = 1e-2
    # would be a real bug
    assert r["maxdiff_x"] <= 1e-12
    assert r["bits_equal"]
    assert r["error_shape"] == [4 * 161]  # the four workers' residuals, one per device
    assert r["count"] == 200
