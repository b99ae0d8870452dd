"""sim.equal_bits: values at a bit budget, budgets and run lengths, step-size grids, and the
per-budget choice of the step size (hand examples; one short real run)."""

import math

import jax
import numpy as np
import pytest

from ratedist import sim
from ratedist.compressors.base import FLOAT_BITS
from ratedist.sim import equal_bits as eb
from ratedist.sim.gcdl import GC_METHODS


def test_value_at_bits_hand_example():
    bits = np.array([10.0, 20.0, 20.0, 35.0, 50.0])
    vals = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    # last iterate within the budget; ties (a step that sent nothing) take the later iterate
    assert eb.value_at_bits(bits, vals, 10.0) == 5.0
    assert eb.value_at_bits(bits, vals, 19.9) == 5.0
    assert eb.value_at_bits(bits, vals, 20.0) == 3.0
    assert eb.value_at_bits(bits, vals, 34.0) == 3.0
    assert eb.value_at_bits(bits, vals, 50.0) == 1.0
    # before the first message, or past the end of the run (no extrapolation): NaN
    assert math.isnan(eb.value_at_bits(bits, vals, 9.0))
    assert math.isnan(eb.value_at_bits(bits, vals, 50.5))
    np.testing.assert_array_equal(
        eb.value_at_bits(bits, vals, [9.0, 25.0, 50.0, 60.0]), [np.nan, 3.0, 1.0, np.nan]
    )


def test_value_at_bits_batched_and_diverged():
    bits = np.array([[[0.0, 1.0, 2.0], [0.0, 2.0, 4.0]]])  # (1, 2, 3)
    vals = np.array([[[9.0, 8.0, 7.0], [9.0, 6.0, 3.0]]])
    out = eb.value_at_bits(bits, vals, np.array([1.5, 2.0]))
    assert out.shape == (1, 2, 2)
    np.testing.assert_array_equal(out[0], [[8.0, 7.0], [9.0, 6.0]])
    # a diverged run (NaN from the divergence on, as Trace records it) has no value at all,
    # even at budgets it had spent before diverging: its last iterate is not finite
    div = np.array([0.0, 1.0, np.nan])
    assert math.isnan(eb.value_at_bits(div, np.array([3.0, 2.0, np.nan]), 1.0))


def test_value_at_bits_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        eb.value_at_bits(np.zeros(3), np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="budget"):
        eb.value_at_bits(np.zeros(3), np.zeros(3), np.zeros((2, 2)))


def test_budgets_and_steps():
    # 8 workers x 640 bits initially, then 8 (1 - 0.25) = 6 answers of 640 bits per round
    assert eb.expected_uplink(640.0, 8, 0.25, 10) == 8 * 640 + 10 * 6 * 640
    assert eb.full_precision_budget(20, 8, 0.25, 10) == eb.expected_uplink(
        20 * FLOAT_BITS, 8, 0.25, 10
    )
    # no stragglers: exactly the expected number of steps, plus one
    assert eb.steps_for_budget(52.0, 8, 0.0, eb.expected_uplink(52.0, 8, 0.0, 100)) == 101
    # with stragglers: the 5-sigma margin of the binomial count of answers
    T = 100
    budget = eb.expected_uplink(52.0, 8, 0.3, T)
    want = math.ceil(T * (1 + eb.STEP_MARGIN_SD * math.sqrt(0.3 / (0.7 * 8 * T)))) + 1
    assert eb.steps_for_budget(52.0, 8, 0.3, budget) == want


def test_paired_difference_and_mean_se():
    a = np.array([3.0, 5.0, 7.0, np.nan])
    b = np.array([1.0, 2.0, 3.0, 4.0])
    mean, se, count = eb.paired_difference(a, b)  # differences 2, 3, 4 (the NaN pair dropped)
    assert (mean, count) == (3.0, 3)
    assert se == pytest.approx(1.0 / math.sqrt(3), rel=1e-12)
    assert eb.mean_se([1.0, 3.0, np.nan]) == (2.0, 1.0)
    assert all(math.isnan(v) for v in eb.paired_difference([1.0], [0.0])[:2])


def test_rule_scales_cover_the_server_rules():
    assert set(eb.RULE_SCALE) == {GC_METHODS.get(n).rule for n in GC_METHODS.names()}


def test_curvature_and_grid_on_the_logistic():
    prob = eb.EQUAL_BITS_PROBLEMS.get("logistic")(4)
    # lam = 0 and x0 = 0: the Hessian is X^T X/(4M) exactly, whose norm the problem records
    assert eb.curvature(prob) == pytest.approx(prob.L_minus, rel=1e-10)
    mult = [0.5, 1.0, 2.0]
    g = eb.gamma_grid("decode", prob, mult)
    np.testing.assert_allclose(g, np.array(mult) / prob.L_minus, rtol=1e-7)
    g0 = np.linalg.norm(prob.grad(prob.x0))
    np.testing.assert_allclose(
        eb.gamma_grid("majority", prob, mult), g * g0 / math.sqrt(prob.dim), rtol=1e-7
    )
    with pytest.raises(ValueError, match="rule"):
        eb.gamma_grid("median", prob, mult)


def test_curvature_lanczos_path_agrees(monkeypatch):
    prob = eb.EQUAL_BITS_PROBLEMS.get("mlp")(4)  # nonconvex: largest |eigenvalue|
    x = prob.x0 + 0.1
    dense = eb.curvature(prob, x)
    monkeypatch.setattr(eb, "DENSE_HESSIAN_MAX_DIM", 0)
    assert eb.curvature(prob, x) == pytest.approx(dense, rel=1e-8)


def _fake_run(tune_f, eval_f, ps=(0.1,), gammas=(1.0, 2.0, 3.0)):
    """An EqualBitsRun whose iterate t has sent (t + 1) * 1000 bits."""
    f = np.concatenate([tune_f, eval_f], axis=2)  # (P, G, R, T + 1)
    bits = np.broadcast_to(1000.0 * (1 + np.arange(f.shape[-1])), f.shape).copy()
    return eb.EqualBitsRun(
        "x", np.array(ps), np.array(gammas), 1, 1, 100.0, tune_f.shape[2], bits, f, 2 * f, 5, 0.0
    )


def test_run_chooses_gamma_per_budget_on_tuning_replicas():
    # n = 1, d = 1: the budget of R rounds is 32 (1 + R (1 - p)) bits
    run = _fake_run(np.zeros((1, 3, 2, 4)), np.zeros((1, 3, 2, 4)))
    np.testing.assert_allclose(run.budget(), [32 * (1 + 100 * 0.9)])
    tune = np.ones((1, 3, 2, 4))
    tune[0, 1, :, 0] = 0.5  # gamma 2 is best early (iterate 0) ...
    tune[0, 2, :, 0:] = 0.9
    tune[0, 2, :, 1:] = 0.1  # ... gamma 3 from iterate 1 on
    tune[0, 0, 1, :] = np.nan  # gamma 1 diverged on one tuning replica: never chosen
    ev = np.arange(3 * 2 * 4, dtype=float).reshape(1, 3, 2, 4)
    run = _fake_run(tune, ev)
    r1 = (1500 / 32 - 1) / 0.9  # 1500 bits: iterate 0 (1000 bits) is the last within it
    r2 = (2500 / 32 - 1) / 0.9  # 2500 bits: iterate 1
    np.testing.assert_array_equal(run.chosen(r1), [1])
    np.testing.assert_array_equal(run.chosen(r2), [2])
    np.testing.assert_array_equal(run.gamma(r2), [3.0])
    np.testing.assert_array_equal(run.at_edge(r1), [False])
    np.testing.assert_array_equal(run.at_edge(r2), [True])
    np.testing.assert_array_equal(run.at_budget(r2), ev[0, 2, :, 1][None])
    np.testing.assert_array_equal(run.at_budget(r2, "grad_norm_sq"), 2 * ev[0, 2, :, 1][None])
    _, vals = run.curves(r1)
    np.testing.assert_array_equal(vals, ev[:, 1])
    with pytest.raises(ValueError, match="rounds"):
        run.budget(101.0)
    with pytest.raises(ValueError, match="metric"):
        run.at_budget(metric="f")


def test_no_working_gamma_gives_nan():
    run = _fake_run(np.full((1, 3, 1, 3), np.nan), np.zeros((1, 3, 2, 3)))
    np.testing.assert_array_equal(run.chosen(), [-1])
    assert np.isnan(run.gamma()).all() and np.isnan(run.at_budget()).all()


def test_full_gc_run_spends_the_budget():
    """A short real run: every evaluation replica spends the budget, the first message of
    the 8 workers is 8 x 32 d bits, and the values at the budget are finite."""
    prob = eb.EQUAL_BITS_PROBLEMS.get("logistic")(4)
    code = sim.make_code("frc", n=4, s=1)
    run = eb.run_equal_bits(
        "full_gc",
        prob,
        code,
        ps=[0.0, 0.5],
        rounds=6,
        multipliers=[0.5, 1.0],
        r_tune=1,
        r_eval=2,
        key=jax.random.key(3),
    )
    assert run.bits.shape[:3] == (2, 2, 3)
    np.testing.assert_array_equal(run.bits[..., 0], 4 * 32 * prob.dim)
    budget = run.budget()
    assert (run.bits[..., -1] >= budget[:, None, None]).all()
    # without stragglers the budget is reached after exactly 6 rounds
    np.testing.assert_array_equal(run.at_budget()[0], run.curves()[1][0, :, 6])
    assert np.isfinite(run.at_budget()).all()
    with pytest.raises(ValueError, match="partitions"):
        eb.run_equal_bits(
            "full_gc",
            prob,
            sim.make_code("frc", n=6, s=1),
            ps=[0.1],
            rounds=1,
            multipliers=[1.0],
            r_tune=1,
            r_eval=2,
            key=jax.random.key(0),
        )
