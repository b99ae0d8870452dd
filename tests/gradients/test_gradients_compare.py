"""The training comparison: budgets matched, a short run trains, ranks and Spearman's rho."""

import math

import numpy as np
import pytest

from ratedist.compressors import make
from ratedist.gradients import compare, training


@pytest.mark.parametrize("d", [650, 4810])
@pytest.mark.parametrize("bits", compare.BUDGETS)
def test_budget_table_hits_the_budget(bits, d):
    tol = compare.tolerance_bits(d)
    rows = {r.label: r for r in compare.budget_table(bits, d)}
    assert tuple(rows) == compare.LABELS
    for r in rows.values():
        if r.status == "matched":
            assert abs(r.bits_per_coord - bits) <= tol
        elif r.status == "under":
            assert r.bits_per_coord < bits - tol
        else:
            assert r.bits_per_coord > bits + tol
    for label in ("TNQ", "TUQ", "QSGD", "NUQSGD", "Top-K + EF"):
        assert rows[label].status == "matched", label
    # side information is charged: a 32-bit scale or norm per message
    assert rows["QSGD"].bits_per_coord == pytest.approx(bits + 32 / d, abs=1e-12)
    assert rows["Top-K + EF"].bits_per_coord <= bits
    assert rows["TernGrad"].status == ("matched" if bits == 2 else "under")
    assert rows["scaled sign + EF"].status == "under"
    assert rows["natural"].status == "off"
    assert rows["natural"].bits_per_coord == 9.0  # sign + float32 exponent


def test_budget_table_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        compare.budget_table(0, 100)


@pytest.mark.slow
def test_train_is_the_one_step_size_slice_of_train_grid():
    comp = make("scalar:method=tnq,bits=2")
    g = training.train_grid("logistic-digits", comp, (0.5, 1.0), seeds=(0, 1), steps=20)
    c = training.train("logistic-digits", comp, seeds=(0, 1), steps=20, lr=1.0)
    np.testing.assert_allclose(c.train_loss, g.train_loss[1], rtol=1e-6)
    np.testing.assert_allclose(c.entropy_bits, g.entropy_bits[1], rtol=1e-6)


def test_tiny_training_run_is_finite_and_decreases():
    c = training.train(
        "logistic-digits", make("scalar:method=tnq,bits=2"), seeds=(0, 1), steps=20, eval_every=10
    )
    assert c.train_loss.shape == (2, 3) and c.bits.shape == (2, 3)
    assert np.all(np.isfinite(c.train_loss))
    assert np.all(c.train_loss[:, -1] < c.train_loss[:, 0])
    # one worker sends (2 * 650 + 32) container bits per step
    np.testing.assert_allclose(c.bits[:, -1], 20 * (2 * 650 + 32))
    # entropy-coded bits are counted too, below the container bits for a 2-bit TNQ code
    assert c.entropy_bits.shape == (2, 3)
    assert np.all((c.entropy_bits[:, -1] > 0) & (c.entropy_bits[:, -1] < c.bits[:, -1]))
    assert np.all((c.test_accuracy >= 0) & (c.test_accuracy <= 1))


def test_ranks_and_spearman_on_a_hand_example():
    np.testing.assert_array_equal(compare.rank([0.3, 0.1, 0.2]), [3, 1, 2])
    np.testing.assert_array_equal(compare.rank([1.0, 2.0, 2.0, 0.5]), [2, 3.5, 3.5, 1])
    assert compare.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0, abs=1e-12)
    assert compare.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0, abs=1e-12)
    # d_i = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert compare.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8, abs=1e-12)
    assert math.isnan(compare.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal length"):
        compare.spearman([1, 2], [1, 2, 3])


def test_mean_se():
    m, se = compare.mean_se([1.0, 2.0, 3.0])
    assert m == 2.0 and se == pytest.approx(1 / math.sqrt(3), abs=1e-12)


@pytest.mark.slow
def test_train_grid_runs_every_step_size_and_counts_entropy_bits():
    comp = make("scalar:method=tnq,bits=2")
    g = training.train_grid("logistic-digits", comp, (0.5, 1.0), seeds=(0, 1), steps=20)
    assert g.train_loss.shape == (2, 2, 3) and g.entropy_bits.shape == (2, 2, 3)
    assert g.test_accuracy.shape == (2, 2)
    # the same seed draws the same initial parameters at every step size
    np.testing.assert_array_equal(g.train_loss[0, :, 0], g.train_loss[1, :, 0])
    assert not np.allclose(g.train_loss[0, :, -1], g.train_loss[1, :, -1])
    # entropy-coded bits are counted, below the container bits for a 2-bit TNQ code
    assert np.all(g.entropy_bits[:, :, -1] > 0)
    assert np.all(g.entropy_bits[:, :, -1] <= g.bits[:, :, -1])
    with pytest.raises(ValueError, match="lrs"):
        training.train_grid("logistic-digits", comp, (), steps=20)


def test_tuned_index_skips_diverged_step_sizes():
    c = training.TrainCurves(
        np.arange(2),
        np.array([[[1, 0.5], [1, 0.5]], [[1, np.nan], [1, 0.1]], [[1, 0.3], [1, 0.2]]]),
        np.zeros((3, 2, 2)),
        np.zeros((3, 2, 2)),
        np.zeros((3, 2)),
        0.0,
    )
    assert compare._tuned_index(c, slice(0, 2)) == 2


def test_fitted_model_prediction_tracks_the_captured_one():
    rng = np.random.default_rng(0)
    grads = rng.laplace(size=(4, 1000)) * np.array([[1.0], [3.0], [0.1], [10.0]])
    fitted = compare.fitted_model(grads)
    assert fitted.best.family in ("laplace", "gen-gaussian", "student-t")
    comp = make("qsgd:s=3")
    a = compare.predicted_mse(comp, grads)
    b = compare.predicted_mse_fitted(comp, fitted, grads.shape)
    assert b == pytest.approx(a, rel=0.1)


def _numpy_sgd_losses(seed, lr, steps, eval_every, n_workers=4, batch_size=32):
    """Reference: plain minibatch SGD of softmax regression on the digits in float64 numpy,
    with the protocol's minibatch indices (``randint(fold_in(fold_in(k_data, t), i))``)."""
    import jax

    model = compare.MODELS.get("logistic-digits")
    split = model.data()
    x, y = np.asarray(split.x_train, np.float64), np.asarray(split.y_train)
    k_init, k_data, _ = jax.random.split(jax.random.key(seed), 3)
    p = model.init(k_init)["dense"]
    w, b = np.asarray(p["w"], np.float64), np.asarray(p["b"], np.float64)

    def probs(w, b, xb):
        z = xb @ w + b
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss(w, b):
        return -np.mean(np.log(probs(w, b, x)[np.arange(len(y)), y]))

    def draw(t, i):
        k = jax.random.fold_in(jax.random.fold_in(k_data, t), i)
        return jax.random.randint(k, (batch_size,), 0, len(y))

    t_i = np.stack(np.meshgrid(np.arange(steps), np.arange(n_workers), indexing="ij"), -1)
    all_idx = np.asarray(jax.jit(jax.vmap(jax.vmap(draw)))(t_i[..., 0], t_i[..., 1]))
    out = [loss(w, b)]
    for t in range(steps):
        gw, gb = np.zeros_like(w), np.zeros_like(b)
        for i in range(n_workers):
            idx = all_idx[t, i]
            r = probs(w, b, x[idx])
            r[np.arange(batch_size), y[idx]] -= 1.0
            gw += x[idx].T @ r / batch_size / n_workers
            gb += r.mean(axis=0) / n_workers
        w, b = w - lr * gw, b - lr * gb
        if (t + 1) % eval_every == 0:
            out.append(loss(w, b))
    return np.array(out)


@pytest.mark.slow
def test_train_group_members_train_as_if_alone():
    # one program, a compressed member and an uncompressed one: the uncompressed runs (every
    # step size and seed, re-ordered by seed inside the program) match a numpy SGD loop, and
    # the compressed member is not the uncompressed one
    lrs, seeds = (0.5, 2.0), (0, 3)
    g = training.train_group(
        "logistic-digits",
        [(make("scalar:method=tnq,bits=2"), False), (None, False)],
        lrs,
        seeds=seeds,
        steps=6,
        eval_every=3,
    )
    assert len(g) == 2 and g[1].train_loss.shape == (2, 2, 3)
    for i, lr in enumerate(lrs):
        for j, s in enumerate(seeds):
            ref = _numpy_sgd_losses(s, lr, steps=6, eval_every=3)
            np.testing.assert_allclose(g[1].train_loss[i, j], ref, rtol=2e-5)
    np.testing.assert_array_equal(g[1].bits[:, :, -1], 6 * 32 * 650)
    np.testing.assert_array_equal(g[0].bits[:, :, -1], 6 * (2 * 650 + 32))
    assert np.all(g[0].train_loss[:, :, 0] == g[1].train_loss[:, :, 0])
    assert not np.allclose(g[0].train_loss[:, :, -1], g[1].train_loss[:, :, -1], rtol=1e-3)
    assert g[0].compile_seconds <= g[0].seconds
    with pytest.raises(ValueError, match="members"):
        training.train_group("logistic-digits", [], lrs, steps=6, eval_every=3)


def test_lr_grids_contain_the_common_step():
    for name, grid in compare.LR_FACTORS.items():
        assert 1.0 in grid and list(grid) == sorted(grid), name
        assert name in training.LEARNING_RATES
