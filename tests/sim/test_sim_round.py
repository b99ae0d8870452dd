"""The round's stages: server optimizer (optax), participation, aggregation, downlink, bits
per direction, hyperparameters as program inputs, and Trace.x at the requested step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ratedist.compressors import FLOAT_BITS, make
from ratedist.sim import (
    bernoulli_stragglers,
    compressed_sgd,
    compressed_updates,
    decode,
    ef21,
    exactly_stragglers,
    gd,
    lag,
    majority,
    mean_active,
    pattern_stragglers,
    quantized_weights,
    run,
    tridiagonal_quadratic,
)
from ratedist.sim import runner as runner_mod


@pytest.fixture(scope="module")
def tri():
    return tridiagonal_quadratic(n_workers=4, dim=12, seed=2)


def _grads(prob, x):
    """Exact local gradients (n, d) in numpy, from the problem's own JAX function."""
    data = jax.tree_util.tree_map(jnp.asarray, prob.data)
    return np.asarray(jax.vmap(prob.grad_fn, in_axes=(None, 0))(jnp.asarray(x), data))


def _gd_reference(prob, gamma, steps, combine):
    """x_{t+1} = x_t - gamma * combine(t, grads(x_t), g_prev) in float64 numpy."""
    x = np.asarray(prob.x0, np.float64)
    g = combine(0, _grads(prob, x), None)
    for t in range(1, steps + 1):
        x = x - gamma * g
        g = combine(t, _grads(prob, x), g)
    return x


def test_trace_x_is_the_iterate_at_the_requested_step(tri, key):
    # 7 steps in chunks of 3 used to advance the last chunk in full (x^9)
    a = run(gd(), tri, steps=7, key=key, gamma=0.1, chunk=3)
    b = run(gd(), tri, steps=7, key=key, gamma=0.1)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.f, b.f)
    assert a.f.shape == (8,)
    ref = _gd_reference(tri, 0.1, 7, lambda t, G, g: G.mean(0))
    np.testing.assert_allclose(a.x, ref, rtol=0, atol=1e-13)


def test_default_server_is_optax_sgd(tri, key):
    alg = ef21(make("top-k:k=3"))
    a = run(alg, tri, steps=30, key=key, gamma=0.05)
    b = run(alg, tri, steps=30, key=key, gamma=0.05, server=optax.sgd(0.05))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.grad_norm_sq, b.grad_norm_sq)
    assert np.isnan(b.lyapunov).all()  # the 3PC Lyapunov function is the sgd server's


def test_adam_server_matches_centralised_adam(tri, key):
    lr = 0.05
    tr = run(gd(), tri, steps=25, key=key, gamma=1.0, server=optax.adam(lr))
    tx = optax.adam(lr)
    x = jnp.asarray(tri.x0)
    st = tx.init(x)
    for _ in range(25):
        u, st = tx.update(jnp.asarray(_grads(tri, x).mean(0)), st, x)
        x = optax.apply_updates(x, u)
    np.testing.assert_allclose(tr.x, np.asarray(x), rtol=0, atol=1e-12)
    assert tr.f[-1] < tr.f[0]


def test_no_stragglers_equal_the_default(tri, key):
    alg = ef21(make("top-k:k=3"))
    a = run(alg, tri, steps=20, key=key, gamma=0.05)
    b = run(alg, tri, steps=20, key=key, gamma=0.05, participation=bernoulli_stragglers(0.0))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)
    assert np.isnan(b.tpc_residual).all()


def test_exactly_s_stragglers_send_nothing(tri, key):
    tr = run(gd(), tri, steps=15, key=key, gamma=0.05, participation=exactly_stragglers(1))
    per_step = np.diff(tr.bits.full, axis=0)  # (steps, n)
    full = tri.dim * FLOAT_BITS
    np.testing.assert_array_equal(per_step.sum(1), (tri.n_workers - 1) * full)
    assert set(np.unique(per_step)) == {0.0, float(full)}


def test_stale_mean_and_mean_active_against_numpy(tri, key):
    n = tri.n_workers
    mask = np.ones((1, n), bool)
    mask[0, 0] = False  # worker 0 never answers after step 0
    gamma = 0.05

    def stale(t, G, g_prev):
        if t == 0:
            stale.g = G.copy()
        else:
            stale.g[1:] = G[1:]
        return stale.g.mean(0)

    tr = run(gd(), tri, steps=10, key=key, gamma=gamma, participation=pattern_stragglers(mask))
    ref = _gd_reference(tri, gamma, 10, stale)
    np.testing.assert_allclose(tr.x, ref, rtol=0, atol=1e-13)

    tr = run(
        gd(),
        tri,
        steps=10,
        key=key,
        gamma=gamma,
        participation=pattern_stragglers(mask),
        aggregation=mean_active(),
    )
    ref = _gd_reference(tri, gamma, 10, lambda t, G, g: G.mean(0) if t == 0 else G[1:].mean(0))
    np.testing.assert_allclose(tr.x, ref, rtol=0, atol=1e-13)


def test_decode_with_uniform_weights_is_the_mean(tri, key):
    n = tri.n_workers
    a = run(gd(), tri, steps=10, key=key, gamma=0.05)
    b = run(gd(), tri, steps=10, key=key, gamma=0.05, aggregation=decode(lambda m, i: 1.0 / n))
    np.testing.assert_allclose(a.x, b.x, rtol=1e-14, atol=1e-14)


def test_majority_vote(tri, key):
    tr = run(
        compressed_sgd(make("sign")), tri, steps=1, key=key, gamma=0.01, aggregation=majority()
    )
    G = _grads(tri, tri.x0)
    x1 = tri.x0 - 0.01 * np.sign(np.sign(G).sum(0))
    np.testing.assert_array_equal(tr.x, x1)


def test_downlink_bits_and_quantized_weights(tri, key):
    tr = run(gd(), tri, steps=5, key=key, gamma=0.05)
    np.testing.assert_array_equal(tr.bits_down.full, np.arange(6) * tri.dim * FLOAT_BITS)
    comp = make("scaled-sign")
    tr = run(gd(), tri, steps=5, key=key, gamma=0.05, downlink=quantized_weights(comp))
    xw0, _, info = comp.update(jnp.asarray(tri.x0), comp.init(jnp.asarray(tri.x0)), key=key)
    assert tr.f[0] == pytest.approx(float(tri.loss(np.asarray(xw0))), rel=1e-14)
    np.testing.assert_allclose(tr.bits_down.container, np.arange(1, 7) * float(info.container_bits))


def test_compressed_updates_with_server_error_feedback(tri, key):
    comp = make("top-k:k=2")
    gamma, steps = 0.05, 6
    tr = run(gd(), tri, steps=steps, key=key, gamma=gamma, downlink=compressed_updates(comp))
    x = np.asarray(tri.x0, np.float64)
    e = np.zeros_like(x)
    for _ in range(steps):
        v = -gamma * _grads(tri, x).mean(0) + e
        keep = np.argsort(-np.abs(v), kind="stable")[:2]
        u = np.zeros_like(v)
        u[keep] = v[keep]
        e = v - u
        x = x + u
    np.testing.assert_allclose(tr.x, x, rtol=0, atol=1e-13)


def test_step_size_is_an_input_and_a_sweep_is_one_program(tri, key, monkeypatch):
    builds = []
    real = runner_mod._build
    monkeypatch.setattr(runner_mod, "_build", lambda *a, **k: builds.append(1) or real(*a, **k))
    monkeypatch.setattr(runner_mod, "_JIT_CACHE", type(runner_mod._JIT_CACHE)())
    alg = lag(2.0)
    gammas = np.geomspace(0.01, 0.2, 4)
    singles = [run(alg, tri, steps=20, key=key, gamma=g) for g in gammas]
    assert len(builds) == 1  # four step sizes, one program
    sweep = run(alg, tri, steps=20, key=key, gamma=gammas)
    assert len(builds) == 2  # the vmapped program
    assert sweep.f.shape == (4, 21) and sweep.x.shape == (4, tri.dim)
    np.testing.assert_array_equal(sweep.gamma, gammas)
    for j, s in enumerate(singles):
        np.testing.assert_allclose(sweep.f[j], s.f, rtol=1e-13, atol=0)
        np.testing.assert_allclose(sweep.bits.container[j], s.bits.container)


def test_hyper_sweep_over_zeta(tri, key):
    alg = lag(1.0)
    zetas = [0.0, 1.0, 8.0]
    sweep = run(alg, tri, steps=15, key=key, gamma=0.05, hyper={"zeta": zetas})
    for j, z in enumerate(zetas):
        one = run(lag(z), tri, steps=15, key=key, gamma=0.05)
        np.testing.assert_allclose(sweep.f[j], one.f, rtol=1e-13, atol=0)
        assert sweep.B[j] == z
    np.testing.assert_array_equal(sweep.hyper["zeta"], zetas)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"hyper": {"tau": 1.0}}, "hyper has unknown names \\['tau'\\]"),
        ({"hyper": {"zeta": -1.0}}, "zeta"),
        ({"hyper": {"zeta": [1.0, 2.0]}, "gamma": [0.1, 0.2, 0.3]}, "equal lengths"),
        ({"gamma": [0.1, -0.2]}, "gamma"),
        ({"gamma": [[0.1]]}, "1-D sequence"),
        ({"participation": "bernoulli"}, "participation must be"),
        ({"server": 3}, "server must be"),
        ({"participation": exactly_stragglers(4)}, "s must be < n_workers = 4"),
        ({"participation": pattern_stragglers(np.ones((2, 3), bool))}, "mask must have"),
    ],
)
def test_bad_round_arguments(tri, key, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run(lag(1.0), tri, steps=2, key=key, **{"gamma": 0.1, **kw})


def test_stage_constructors_reject_bad_input():
    with pytest.raises(ValueError, match="p must lie in"):
        bernoulli_stragglers(1.0)
    with pytest.raises(ValueError, match="mask must be a boolean array"):
        pattern_stragglers([[1, 0]])
    with pytest.raises(ValueError, match="shared randomness"):
        quantized_weights(make("perm-k:n_workers=2"))
    with pytest.raises(TypeError, match="weights must be a function"):
        decode(3.0)
