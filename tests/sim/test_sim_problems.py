"""Problems: exact gradients vs jax.grad and finite differences, constants vs independent
eigenvalues, the minibatch variance model by Monte Carlo, the LIBSVM parser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.sim import (
    least_squares,
    load_libsvm,
    logistic_breast_cancer,
    logistic_libsvm,
    logistic_nonconvex,
    make_problem,
    mlp,
    quadratic,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
)


def _problems():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((3, 5, 5))
    A = (M + np.swapaxes(M, 1, 2)) / 2
    return {
        "quadratic": quadratic(A, rng.standard_normal((3, 5))),
        "tridiagonal": tridiagonal_quadratic(4, 12, seed=2, lambda_min=-0.05),
        "least_squares": least_squares(n_workers=3, n_samples=60, dim=7, seed=1),
        "logistic": logistic_nonconvex(
            n_workers=4, n_samples=80, dim=6, seed=1, solve_f_star=False
        ),
        "mlp": mlp(2, hidden=3, dim_in=2, n_samples=20, batch_size=None),
    }


PROBLEMS = _problems()


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_grad_matches_jax_grad_and_finite_differences(name):
    prob = PROBLEMS[name]
    rng = np.random.default_rng(7)
    x = 0.7 * rng.standard_normal(prob.dim)
    g = prob.local_grads(x)
    for i in range(prob.n_workers):
        data_i = jax.tree_util.tree_map(lambda a, i=i: jnp.asarray(a[i]), prob.data)
        auto = np.asarray(jax.grad(prob.loss_fn)(jnp.asarray(x), data_i))
        # closed-form gradient vs autodiff of the loss: same function, float64 rounding
        np.testing.assert_allclose(g[i], auto, rtol=1e-10, atol=1e-12)
    # central differences of the full loss, step 1e-5: truncation O(h^2 f''') ~ 1e-9
    h = 1e-5
    fd = np.array(
        [(prob.loss(x + h * e) - prob.loss(x - h * e)) / (2 * h) for e in np.eye(prob.dim)]
    )
    np.testing.assert_allclose(prob.grad(x), fd, rtol=1e-6, atol=1e-7)


def test_tridiagonal_constants_vs_dense_eigenvalues():
    prob = tridiagonal_quadratic(5, 30, seed=4, lambda_min=0.05)
    A = tridiagonal_matrices(prob)
    # independent: dense symmetric eigensolver on the explicit matrices
    lam_mean = np.linalg.eigvalsh(A.mean(0))
    assert lam_mean[0] == pytest.approx(0.05, abs=1e-12)
    assert prob.L_minus == pytest.approx(np.abs(lam_mean).max(), rel=1e-12)
    L_plus_sq = np.linalg.eigvalsh(np.mean([a @ a for a in A], axis=0)).max()
    assert prob.L_plus == pytest.approx(np.sqrt(L_plus_sq), rel=1e-12)
    Li = np.array([np.abs(np.linalg.eigvalsh(a)).max() for a in A])
    np.testing.assert_allclose(prob.L_i, Li, rtol=1e-12)
    assert prob.L_plus_upper == pytest.approx(np.sqrt(np.mean(Li**2)), rel=1e-12)
    # f* closed form vs solving the normal equations
    x_star = np.linalg.solve(A.mean(0), tridiagonal_linear_terms(prob).mean(0))
    assert prob.f_star == pytest.approx(prob.loss(x_star), rel=1e-10, abs=1e-14)
    # gradients of the structured O(d) matvec vs the dense matrices
    x = np.random.default_rng(0).standard_normal(30)
    np.testing.assert_allclose(
        prob.local_grads(x), A @ x - tridiagonal_linear_terms(prob), rtol=1e-12, atol=1e-12
    )
    # the fused value-and-gradient used by the runner agrees with the separate functions
    data0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), prob.data)
    f0, g0 = prob.local_value_and_grad(jnp.asarray(x), data0)
    assert float(f0) == pytest.approx(prob.local_losses(x)[0], rel=1e-13)
    np.testing.assert_allclose(np.asarray(g0), prob.local_grads(x)[0], rtol=1e-13, atol=1e-14)


def test_tridiagonal_nonconvex_has_no_fstar():
    prob = tridiagonal_quadratic(3, 10, lambda_min=-0.1)
    assert prob.f_star is None
    assert np.linalg.eigvalsh(tridiagonal_matrices(prob).mean(0))[0] == pytest.approx(-0.1)


def test_L_plus_definition_by_sampling():
    # (1/n) sum ||grad f_i(x) - grad f_i(y)||^2 <= L_+^2 ||x - y||^2, attained for quadratics
    prob = PROBLEMS["quadratic"]
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(200):
        x, y = rng.standard_normal((2, prob.dim))
        num = np.mean(np.sum((prob.local_grads(x) - prob.local_grads(y)) ** 2, axis=1))
        ratios.append(num / np.sum((x - y) ** 2))
    assert max(ratios) <= prob.L_plus**2 * (1 + 1e-12)
    assert prob.L_minus <= prob.L_plus <= prob.L_plus_upper * (1 + 1e-12)


def test_logistic_smoothness_bound_dominates_hessian():
    prob = logistic_nonconvex(n_workers=4, n_samples=80, dim=6, seed=2, solve_f_star=False)
    rng = np.random.default_rng(0)
    data = jax.tree_util.tree_map(jnp.asarray, prob.data)

    def f(x):
        return jnp.mean(jax.vmap(prob.loss_fn, in_axes=(None, 0))(x, data))

    hess = jax.jit(jax.hessian(f))
    for scale in (0.0, 0.3, 3.0):
        x = jnp.asarray(scale * rng.standard_normal(prob.dim))
        H = np.asarray(hess(x))
        top = np.abs(np.linalg.eigvalsh(H)).max()
        assert top <= prob.L_minus * (1 + 1e-12)  # rounding of the eigensolver
        if scale == 0.0:
            # at x = 0 both sup's are attained: s(1 - s) = 1/4 and phi''(0) = 2
            assert top == pytest.approx(prob.L_minus, rel=1e-12)
    assert prob.labels["L_minus"].startswith("bound")
    assert prob.L_plus == prob.L_plus_upper


def test_logistic_fstar_is_stationary():
    prob = logistic_nonconvex(n_workers=20, n_samples=200, dim=5, seed=3)
    assert prob.labels["f_star"].startswith("numerical")
    assert prob.f_star <= prob.loss(prob.x0)
    assert prob.f_star >= 0


def test_least_squares_fstar_and_constants():
    prob = PROBLEMS["least_squares"]
    X = prob.data["X"].reshape(-1, prob.dim)
    y = prob.data["y"].reshape(-1)
    # independent: normal equations instead of lstsq
    w = np.linalg.solve(X.T @ X, X.T @ y)
    assert prob.f_star == pytest.approx(0.5 * np.mean((X @ w - y) ** 2), rel=1e-10)
    assert prob.L_minus == pytest.approx(np.linalg.eigvalsh(X.T @ X / X.shape[0]).max(), rel=1e-12)


@pytest.mark.slow
def test_minibatch_oracle_unbiased_with_known_variance():
    prob = least_squares(n_workers=2, n_samples=40, dim=3, seed=5, batch_size=4)
    x = jnp.asarray(np.array([0.3, -0.2, 0.5]))
    data0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), prob.data)
    keys = jax.random.split(jax.random.key(0), 4000)
    draw = jax.jit(jax.vmap(prob.stochastic_grad_fn, in_axes=(None, None, 0)))
    G = np.asarray(draw(x, data0, keys))
    g = np.asarray(prob.grad_fn(x, data0))
    err = np.sum((G - g[None, :]) ** 2, axis=1)
    var = float(prob.variance_fn(x, data0))
    se_mean = G.std(axis=0) / np.sqrt(len(G))
    assert np.all(np.abs(G.mean(0) - g) < 5 * se_mean)  # unbiased within 5 SE
    assert abs(err.mean() - var) < 5 * err.std() / np.sqrt(len(err))  # variance model


def test_additive_noise_variance_model(key):
    prob = tridiagonal_quadratic(2, 8).with_noise(0.3)
    assert prob.stochastic
    data0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), prob.data)
    x = jnp.zeros(8)
    assert float(prob.variance_fn(x, data0)) == pytest.approx(0.09 * 8)


def test_libsvm_roundtrip(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = np.round(rng.standard_normal((50, 6)), 6)
    X[X < -0.5] = 0.0  # sparse entries are omitted from the file
    y = np.where(rng.uniform(size=50) < 0.5, -1.0, 1.0)
    lines = ["# generated for the test"]
    for xi, yi in zip(X, y, strict=True):
        toks = [f"{j + 1}:{v:.6f}" for j, v in enumerate(xi) if v != 0]
        lines.append(f"{int(yi):+d} " + " ".join(toks))
    path = tmp_path / "data.svm"
    path.write_text("\n".join(lines) + "\n\n")
    X2, y2 = load_libsvm(path)
    n_cols = int(np.max(np.nonzero(X.any(axis=0))[0])) + 1
    np.testing.assert_array_equal(X2.toarray(), X[:, :n_cols])
    np.testing.assert_array_equal(y2, y)
    X3, _ = load_libsvm(path, n_features=10)
    assert X3.shape == (50, 10)
    prob = logistic_libsvm(path, n_workers=5, solve_f_star=False)
    assert prob.n_workers == 5 and prob.dim == n_cols
    assert prob.data["sp_vals"].shape[0] == 5 and prob.data["y"].shape == (5, 10)


def test_libsvm_bad_inputs(tmp_path):
    pytest.importorskip("sklearn")
    bad = tmp_path / "bad.svm"
    bad.write_text("1 1:0.5 2:x\n")
    with pytest.raises(ValueError, match="line 1"):
        load_libsvm(bad)
    zero = tmp_path / "zero.svm"
    zero.write_text("1 0:0.5\n")
    with pytest.raises(ValueError, match="indices"):
        load_libsvm(zero)
    ok = tmp_path / "ok.svm"
    ok.write_text("1 3:0.5\n")
    with pytest.raises(ValueError, match="n_features"):
        load_libsvm(ok, n_features=2)
    empty = tmp_path / "empty.svm"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no samples"):
        load_libsvm(empty)


def test_breast_cancer_problem():
    pytest.importorskip("sklearn")
    prob = logistic_breast_cancer(n_workers=20, solve_f_star=False)
    assert (prob.n_workers, prob.dim) == (20, 30)
    assert prob.data["X"].shape == (20, 569 // 20, 30)
    assert set(np.unique(prob.data["y"])) == {-1.0, 1.0}


def test_problem_bad_inputs():
    with pytest.raises(ValueError, match="b must have shape"):
        quadratic(np.stack([np.eye(3)] * 2), np.zeros((3, 3)))  # n_workers mismatch
    with pytest.raises(ValueError, match="symmetric"):
        quadratic(np.triu(np.ones((1, 3, 3))), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="A must have 3"):
        quadratic(np.eye(3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="n_workers"):
        tridiagonal_quadratic(0, 10)
    with pytest.raises(ValueError, match="dim"):
        tridiagonal_quadratic(2, 1)
    with pytest.raises(ValueError, match="noise_scale"):
        tridiagonal_quadratic(2, 5, noise_scale=-1)
    with pytest.raises(ValueError, match="n_workers"):
        logistic_nonconvex(n_workers=200, n_samples=100)
    with pytest.raises(ValueError, match="y must hold labels"):
        logistic_nonconvex(np.ones((4, 2)), np.array([0.0, 1.0, 2.0, 1.0]), n_workers=2)
    with pytest.raises(ValueError, match="lam"):
        logistic_nonconvex(lam=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        least_squares(batch_size=0)
    with pytest.raises(ValueError, match="noise_std"):
        tridiagonal_quadratic(2, 5).with_noise(0.0)
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        make_problem("nope")
