"""The numpy loops of benchmarks/bench_sim.py compute what the simulator computes.

A speed-up over a baseline means something only if the baseline does the same work: for the
deterministic methods (EF21 with Top-K, error feedback with the scaled sign) a few steps of
the numpy loop must give the simulator's iterates and per-step metrics to float32 rounding.
The stochastic ones (QSGD, TNQ) draw from another generator; their messages must lie on the
quantizer's grid and be unbiased up to the clipping of TNQ.
"""

import runpy
from pathlib import Path

import jax
import numpy as np
import pytest

from ratedist.sim.runner import make_stepper, theory_gamma

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sim.py"
N, D, K, STEPS = 3, 64, 6, 6


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(BENCH), run_name="bench_sim")


@pytest.mark.parametrize("name", ["ef21", "ef_sign"])
def test_numpy_loop_matches_the_simulator(bench, name):
    meth = bench["METHODS"][name]
    prob = bench["problem"](N, D)
    alg = meth.build(K)
    gamma = theory_gamma(alg, prob)
    st = make_stepper(
        alg, prob, gamma=gamma, key=jax.random.key(0), dtype=np.float32, diagnostics=False
    )
    state, out0 = st.init()
    state, out = st.advance(state, 1, STEPS)
    ref = meth.baseline(prob, gamma, K)
    hist = np.asarray([ref.metrics0, *ref.advance(STEPS)])
    sim = np.stack(
        [
            np.concatenate([np.atleast_1d(o[0][m]) for o in (out0, out)])
            for m in ("f", "grad_norm_sq", "G")
        ],
        axis=1,
    )
    assert np.all(np.isfinite(sim)) and sim.shape == hist.shape == (STEPS + 1, 3)
    np.testing.assert_allclose(hist, sim, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(ref.x, np.asarray(state.x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.g, np.asarray(state.g), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["qsgd", "tnq"])
def test_stochastic_numpy_messages_are_on_the_grid_and_unbiased(bench, name):
    prob = bench["problem"](1, 4)
    ref = bench["METHODS"][name].baseline(prob, 0.1, 1)
    g = np.array([0.3, -1.2, 0.05, 2.0], np.float32)
    draws = np.stack([ref.step(0, g).copy() for _ in range(4_000)])
    if name == "qsgd":  # levels norm * j / 15, j = 0..15, with the sign of g
        unit = np.sqrt(np.sum(g.astype(np.float64) ** 2)) / 15
        expect_mean, grid = g, np.abs(draws) / unit
    else:  # levels sigma * L_j with sigma the rms; the mean is sigma * clip(g / sigma)
        lv = ref.levels.astype(np.float64)
        sigma = np.sqrt(np.mean(g.astype(np.float64) ** 2))
        expect_mean = sigma * np.clip(g / sigma, lv[0], lv[-1])
        grid = np.min(np.abs(draws[..., None] / sigma - lv), axis=-1)
    if name == "qsgd":
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)
        assert np.all(
            np.sign(draws[draws != 0]) == np.sign(np.broadcast_to(g, draws.shape))[draws != 0]
        )
    else:
        assert np.max(grid) < 1e-5
    se = draws.std(axis=0) / np.sqrt(len(draws)) + 1e-6
    assert np.all(np.abs(draws.mean(axis=0) - expect_mean) < 5 * se)
