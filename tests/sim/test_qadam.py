"""Quantized distributed Adam (``ratedist.sim.qadam``): both modes against hand-written
references, the per-step diagnostics, and bad input.

References are written here from the definitions (optax for Adam; the EF14 recursion), not
from the simulator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ratedist.compressors import make
from ratedist.sim import gd, mlp, run, tridiagonal_quadratic
from ratedist.sim.algorithms import local_adam
from ratedist.sim.qadam import QADAM_MODES, quantized_adam
from ratedist.sim.stages import AdamServer, adam_server

LR = 0.01
STEPS = 40


@pytest.fixture(scope="module")
def problem():
    return mlp(n_workers=4, hidden=4, dim_in=3, n_samples=64, batch_size=None)


def _local_grads(problem, x):
    return jax.vmap(problem.local_value_and_grad, in_axes=(None, 0))(x, problem.data)[1]


def test_server_mode_with_identity_is_optax_adam_on_the_mean_gradient(problem):
    """Mode (a), identity compressor, EF on: bit for bit the simulator's uncompressed round
    with ``optax.adam`` as the server, and a hand-written jitted optax loop to rounding (the
    two compiled programs fuse differently: 1e-16 absolute after 40 steps, measured)."""
    plain = run(gd(), problem, steps=STEPS, key=jax.random.key(0), gamma=LR, server=optax.adam(LR))
    tr = run(
        quantized_adam("server", make("identity")),
        problem,
        steps=STEPS,
        key=jax.random.key(0),
        gamma=LR,
    )
    tx = optax.adam(LR)
    n = problem.n_workers

    @jax.jit
    def step(x, state):
        G = _local_grads(problem, x)
        g = jnp.ones((n,), G.dtype) @ G / n  # the simulator's fixed-order mean
        u, state = tx.update(g, state, x)
        return optax.apply_updates(x, u), state

    x = jnp.asarray(problem.x0)
    state = tx.init(x)
    for _ in range(STEPS):
        x, state = step(x, state)
    np.testing.assert_array_equal(tr.x, plain.x)
    np.testing.assert_array_equal(tr.f, plain.f)
    np.testing.assert_allclose(tr.x, np.asarray(x), rtol=1e-13, atol=1e-15)


def test_worker_mode_single_worker_is_single_machine_ef_adam():
    """Mode (b), N = 1, deterministic 1-bit compressor with EF: the hand-written recursion.

    Not bit for bit: identical for the first steps, then one ulp (max |dx| = 2.2e-16 after 40
    steps, measured; also with the reference's gradient and compressor under ``vmap``). The
    simulator's ``lax.scan`` body and this jitted step are different XLA programs, free to
    fuse (and contract multiply-adds) differently; 1e-13 leaves room for that, nothing more.
    """
    prob = mlp(n_workers=1, hidden=4, dim_in=3, n_samples=32, batch_size=None)
    comp = make("scaled-sign")
    tr = run(quantized_adam("worker", comp), prob, steps=STEPS, key=jax.random.key(0), gamma=LR)
    data0 = jax.tree_util.tree_map(lambda a: a[0], prob.data)

    @jax.jit
    def step(x, mu, nu, e, t):
        g = prob.local_value_and_grad(x, data0)[1]
        mu = (1 - 0.9) * g + 0.9 * mu
        nu = (1 - 0.999) * g**2 + 0.999 * nu
        u = (mu / (1 - 0.9**t)) / (jnp.sqrt(nu / (1 - 0.999**t)) + 1e-8)
        q, _, _ = comp.update(u + e, comp.init(x))
        return x + q * (-LR), mu, nu, u + e - q  # optax.sgd(LR): x + (-LR q)

    x = jnp.asarray(prob.x0)
    mu = nu = e = jnp.zeros_like(x)
    for t in range(1, STEPS + 1):
        x, mu, nu, e = step(x, mu, nu, e, float(t))
    np.testing.assert_allclose(tr.x, np.asarray(x), rtol=1e-13, atol=1e-15)


#: the compressors SPEC §5 names, as registered: the bits of one message at dimension d
#: (float64 simulation), from each compressor's documented formula
SPEC5_COMPRESSORS = {
    "scaled-sign": lambda d: d + 32,  # sign with the l1/d scale
    "scaled-sign:scale=linf": lambda d: d + 32,  # sign with the l_inf scale
    "qsgd:s=4": lambda d: d * (1 + 3) + 32,  # uniform levels, norm scaling
    "nuqsgd:s=3": lambda d: d * (1 + 2) + 32,  # power-of-two levels, norm scaling
    "natural": lambda d: d * (1 + 11),  # power-of-two values, float64 exponent field
    "scalar:method=tnq,bits=2": lambda d: 2 * d + 32,  # the designed TNQ quantizer, rms scale
}


def _spec5_cases():
    # each compressor runs in one mode by default (alternating, so both modes are covered),
    # the other under -m slow: a case is one ~2 s compile on 2 cores
    out = []
    for i, spec in enumerate(SPEC5_COMPRESSORS):
        for j, mode in enumerate(("server", "worker")):
            marks = () if (i + j) % 2 == 0 else pytest.mark.slow
            out.append(pytest.param(spec, mode, id=f"{spec}-{mode}", marks=marks))
    return out


@pytest.mark.parametrize(("spec", "mode"), _spec5_cases())
def test_spec5_compressors_run_in_both_modes(spec, mode):
    """Every quantizer of SPEC §5 runs in quantized_adam: finite, each message (the initial
    one included) costs the compressor's documented bits, EF residual recorded."""
    prob = tridiagonal_quadratic(2, 6, seed=0)
    steps = 3
    tr = run(
        quantized_adam(mode, make(spec)),
        prob,
        steps=steps,
        key=jax.random.key(0),
        gamma=LR,
        check_3pc=False,
    )
    assert np.all(np.isfinite(tr.grad_norm_sq)) and np.all(np.isfinite(tr.x))
    per_msg = SPEC5_COMPRESSORS[spec](prob.dim)
    want = per_msg * np.arange(1, steps + 2)[:, None] * np.ones(prob.n_workers)
    np.testing.assert_array_equal(tr.bits.container, want)
    assert np.all(np.isfinite(tr.ef_norm_sq[1:]))


def test_worker_adam_direction_matches_optax():
    """adam_direction is optax.scale_by_adam's (and scale_by_amsgrad's) update."""
    from ratedist.sim.algorithms import AdamMoments, adam_direction

    rng = np.random.default_rng(0)
    for amsgrad, tx in ((False, optax.scale_by_adam()), (True, optax.scale_by_amsgrad())):
        x = jnp.zeros(5)
        st = tx.init(x)
        z = jnp.zeros(5)
        m = AdamMoments(jnp.zeros((), jnp.int32), z, z, z)
        for _ in range(5):
            g = jnp.asarray(rng.standard_normal(5))
            want, st = tx.update(g, st)
            got, m, _ = adam_direction(m, g, 0.9, 0.999, 1e-8, amsgrad)
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_diagnostics_are_recorded(problem):
    tr = run(
        quantized_adam("worker", make("scaled-sign")),
        problem,
        steps=10,
        key=jax.random.key(0),
        gamma=LR,
    )
    assert np.all(np.isfinite(tr.ef_norm_sq)) and np.all(tr.ef_norm_sq[1:] > 0)
    assert np.all((tr.quant_rel_error > 0) & (tr.quant_rel_error < 1))
    assert np.all(tr.worker_step_min <= tr.worker_step_max)
    assert np.all(tr.worker_step_max <= LR / 1e-8)
    np.testing.assert_allclose(tr.server_step_min[1:], LR)  # optax.sgd(gamma)
    # the server runs Adam in mode (a): lr/(sqrt(nu_hat)+eps) is recorded
    tr_a = run(
        quantized_adam("server", make("scaled-sign")),
        problem,
        steps=10,
        key=jax.random.key(0),
        gamma=LR,
    )
    assert np.all(tr_a.server_step_min[1:] <= tr_a.server_step_max[1:])
    assert np.all(np.isnan(tr_a.worker_step_min))
    # no weight quantization: both gradient norms are at the same point
    np.testing.assert_array_equal(tr_a.grad_norm_sq_server, tr_a.grad_norm_sq)


def test_weight_quantization_takes_gradients_at_the_quantized_point():
    prob = tridiagonal_quadratic(2, 6, seed=0)
    rnd = quantized_adam("server", make("identity"), weights=make("scaled-sign"))
    tr = run(rnd, prob, steps=5, key=jax.random.key(0), gamma=LR)
    assert not np.allclose(tr.grad_norm_sq_server, tr.grad_norm_sq)
    assert tr.bits_down.container[-1] > 0


def test_effective_server_steps_of_adam_and_amsgrad():
    srv = adam_server(0.1, amsgrad=True)
    assert isinstance(srv, AdamServer) and srv.amsgrad
    tx = srv({"gamma": 0.5})
    x = jnp.zeros(3)
    st = tx.init(x)
    _, st = tx.update(jnp.asarray([1.0, 2.0, 4.0]), st, x)
    lo, hi = np.asarray(srv.effective_steps(st, {"gamma": 0.5}, x))
    # after one step nu_hat = g^2: steps 0.1/(|g| + eps)
    assert lo == pytest.approx(0.1 / 4, rel=1e-6) and hi == pytest.approx(0.1, rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="quantized-Adam mode"):
        quantized_adam("both", make("sign"))
    with pytest.raises(TypeError, match="compressor"):
        quantized_adam("server", "sign")
    with pytest.raises(ValueError, match="b2"):
        quantized_adam("worker", make("sign"), b2=1.0)
    with pytest.raises(TypeError, match="error_feedback"):
        local_adam(make("sign"), error_feedback="yes")
    with pytest.raises(ValueError, match="lr"):
        adam_server(0.0)
    assert set(QADAM_MODES.names()) == {"server", "worker"}


def test_diagnostics_can_be_switched_off(problem):
    """``run(..., diagnostics=False)`` records NaN instead and leaves the iterates alone."""
    rnd = quantized_adam("worker", make("scaled-sign"))
    on = run(rnd, problem, steps=5, key=jax.random.key(0), gamma=LR)
    off = run(rnd, problem, steps=5, key=jax.random.key(0), gamma=LR, diagnostics=False)
    np.testing.assert_array_equal(on.x, off.x)
    for field in ("ef_norm_sq", "quant_rel_error", "worker_step_min", "worker_step_max"):
        assert np.all(np.isfinite(getattr(on, field))) and np.all(np.isnan(getattr(off, field)))
    with pytest.raises(TypeError, match="diagnostics"):
        run(rnd, problem, steps=1, key=jax.random.key(0), gamma=LR, diagnostics="no")
