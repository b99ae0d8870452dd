"""``tridiagonal_quadratic(paper=True)``: the draws of the 3PC experiment code, its constants.

The reference below is written directly from numpy ``RandomState`` calls in the order of the
authors' ``quadratic loss/quad_preprocessing.py`` (github.com/IgorSokoloff/
3pc_experiments_source_code): one generator per instance, then per worker ``xi = normal`` and
``zeta = normal``, dense ``A_i`` from ``np.tri`` bands, the shift from a numerical eigenvalue.
"""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.linalg

from ratedist.sim import (
    make_problem,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
)


def _authors_instance(n, d, s, *, seed=12345, la=1e-6):
    """``(A, b, x0)`` as the authors' script builds them (dense, numerical shift)."""
    rs = np.random.RandomState(seed)
    A = np.zeros((n, d, d))
    b = np.zeros((n, d))
    for i in range(n):
        xi_s = rs.normal(loc=0, scale=1, size=1)[0]
        nu_s = 1 + s * xi_s
        xi_b = rs.normal(loc=0, scale=1, size=1)[0]
        band = np.tri(d, d, 1, dtype=int) - np.tri(d, d, -2, dtype=int)
        A[i] = (nu_s / 4) * (-band + 3 * np.eye(d))
        b[i, 0] = (nu_s / 4) * (-1 + s * xi_b)
    la_min = scipy.linalg.eigh(A.mean(axis=0), eigvals_only=True, subset_by_index=[0, 0])[0]
    A += (la - la_min) * np.eye(d)[None]
    x0 = np.zeros(d)
    x0[0] = np.sqrt(d)
    return A, b, x0


def _authors_nu(n, s, seed=12345):
    """``nu_i`` of the script: per worker ``xi_s`` is drawn, then ``xi_b`` (discarded here)."""
    rs = np.random.RandomState(seed)
    nu = np.empty(n)
    for i in range(n):
        nu[i] = 1 + s * rs.normal(loc=0, scale=1, size=1)[0]
        rs.normal(loc=0, scale=1, size=1)
    return nu


@pytest.mark.parametrize(("n", "d", "s"), [(10, 40, 0.05), (7, 25, 0.1), (5, 12, 1.6)])
def test_draws_and_data_equal_the_authors_script(n, d, s):
    prob = tridiagonal_quadratic(n, d, noise_scale=s, paper=True)
    A, b, x0 = _authors_instance(n, d, s)
    # the random draws and everything built from them without eigenvalues: bit for bit
    np.testing.assert_array_equal(prob.data["nu"], _authors_nu(n, s))
    np.testing.assert_array_equal(tridiagonal_linear_terms(prob), b)
    np.testing.assert_array_equal(prob.x0, x0)
    # the shift: closed form here, a dense eigensolver there (rounding of order 1e-16)
    np.testing.assert_allclose(tridiagonal_matrices(prob), A, rtol=0, atol=1e-14)
    # gradients as the script computes them (A_i x - b_i)
    g = prob.local_grads(x0)
    np.testing.assert_allclose(g, A @ x0 - b, rtol=0, atol=1e-12)


def test_chunked_draw_equals_one_call_per_worker():
    # the library draws (n, 2) at once; the legacy generator yields the same stream
    one_call = np.random.RandomState(12345).normal(0.0, 1.0, size=(9, 2))
    rs = np.random.RandomState(12345)
    per_call = np.array([[rs.normal(0, 1, size=1)[0] for _ in range(2)] for _ in range(9)])
    np.testing.assert_array_equal(one_call, per_call)
    np.testing.assert_array_equal(_authors_nu(9, 0.1), 1 + 0.1 * one_call[:, 0])


@pytest.mark.parametrize(("n", "s"), [(10, 0.05), (100, 0.1)])
def test_paper_instance_defaults_and_constants(n, s):
    prob = tridiagonal_quadratic(n, noise_scale=s, paper=True)
    d = 1000
    assert prob.dim == d and prob.n_workers == n
    assert prob.config == {
        "problem": "tridiagonal_quadratic",
        "n_workers": n,
        "dim": d,
        "noise_scale": s,
        "lambda_min": 1e-6,
        "seed": 12345,
        "x0_scale": 1.0,
        "paper": True,
    }
    expected_x0 = np.zeros(d)
    expected_x0[0] = np.sqrt(d)
    np.testing.assert_array_equal(prob.x0, expected_x0)

    nu, shift = prob.data["nu"], float(prob.data["shift"][0])
    np.testing.assert_array_equal(nu, _authors_nu(n, s))
    a = nu / 4
    T = 2 * np.eye(d) - np.eye(d, k=1) - np.eye(d, k=-1)
    mean = a.mean() * T + shift * np.eye(d)
    # (1/n) sum_i (a_i T + c I)^2 = mean(a^2) T^2 + 2 c mean(a) T + c^2 I
    mean_sq = np.mean(a**2) * (T @ T) + 2 * shift * a.mean() * T + shift**2 * np.eye(d)
    eig_mean = np.linalg.eigvalsh(mean)
    np.testing.assert_allclose(prob.L_minus, np.max(np.abs(eig_mean)), rtol=1e-12)
    np.testing.assert_allclose(prob.L_plus, np.sqrt(np.linalg.eigvalsh(mean_sq)[-1]), rtol=1e-12)
    eig_T = np.linalg.eigvalsh(T)
    L_i = np.max(np.abs(a[:, None] * eig_T[None, :] + shift), axis=1)
    np.testing.assert_allclose(prob.L_i, L_i, rtol=1e-12)
    assert prob.L_minus <= prob.L_plus <= prob.L_plus_upper

    # lambda_min of the mean matrix: a dense eigensolver resolves it to ~eps ||A|| absolute,
    # the eigenvalues in 40-digit arithmetic to far below the asked 1e-12 relative
    np.testing.assert_allclose(eig_mean[0], 1e-6, rtol=0, atol=1e-14)
    with mpmath.workdps(40):
        abar = mpmath.fsum(mpmath.mpf(float(x)) for x in a) / n
        lam = min(
            abar * 4 * mpmath.sin(k * mpmath.pi / (2 * (d + 1))) ** 2 + mpmath.mpf(shift)
            for k in range(1, d + 1)
        )
        assert abs(lam / mpmath.mpf("1e-6") - 1) < 1e-12
    # the authors' numerically computed shift agrees with the closed form
    la_min_dense = scipy.linalg.eigh(a.mean() * T, eigvals_only=True, subset_by_index=[0, 0])[0]
    np.testing.assert_allclose(shift, 1e-6 - la_min_dense, rtol=0, atol=1e-15)

    # f* closed form: the minimum of f over a dense solve
    b = tridiagonal_linear_terms(prob).mean(axis=0)
    x_star = np.linalg.solve(mean, b)
    np.testing.assert_allclose(prob.f_star, -0.5 * b @ x_star, rtol=1e-8)


def test_negative_nu_is_kept_and_shift_uses_the_smallest_eigenvalue():
    # one worker, noise 50: the first draw (-0.2047...) makes nu = 1 + 50 xi < 0
    prob = tridiagonal_quadratic(1, 30, noise_scale=50.0, lambda_min=0.3, paper=True)
    nu = prob.data["nu"]
    assert nu[0] < 0
    np.testing.assert_array_equal(nu, _authors_nu(1, 50.0))
    eig = np.linalg.eigvalsh(tridiagonal_matrices(prob)[0])
    np.testing.assert_allclose(eig[0], 0.3, rtol=1e-12)
    np.testing.assert_allclose(prob.L_minus, np.max(np.abs(eig)), rtol=1e-12)


def test_overrides_registry_and_default_unchanged():
    prob = tridiagonal_quadratic(4, 20, noise_scale=0.2, seed=7, lambda_min=0.01, paper=True)
    A, b, x0 = _authors_instance(4, 20, 0.2, seed=7, la=0.01)
    np.testing.assert_array_equal(prob.x0, x0)
    np.testing.assert_allclose(tridiagonal_matrices(prob), A, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(tridiagonal_linear_terms(prob), b)
    assert prob.config["seed"] == 7 and prob.config["paper"] is True
    scaled = tridiagonal_quadratic(3, 16, paper=True, x0_scale=0.5)
    assert scaled.x0[0] == 0.5 * np.sqrt(16) and not scaled.x0[1:].any()
    via_registry = make_problem("tridiagonal_quadratic", n_workers=10, paper=True)
    np.testing.assert_array_equal(via_registry.data["nu"], _authors_nu(10, 0.5))
    ours = tridiagonal_quadratic()
    assert "paper" not in ours.config
    assert (ours.dim, ours.config["lambda_min"], ours.config["seed"]) == (100, 1e-2, 0)
    with pytest.raises(TypeError, match="paper"):
        tridiagonal_quadratic(2, 5, paper=1)
    with pytest.raises(ValueError, match="seed"):
        tridiagonal_quadratic(2, 5, seed=2**32, paper=True)


def test_exact_gradient_matches_autodiff():
    prob = tridiagonal_quadratic(3, 10, noise_scale=0.1, paper=True)
    x = np.random.default_rng(0).standard_normal(10)
    data_0 = jax.tree_util.tree_map(lambda v: jnp.asarray(v[0]), prob.data)
    auto = jax.grad(prob.loss_fn)(jnp.asarray(x), data_0)
    np.testing.assert_allclose(prob.local_grads(x)[0], np.asarray(auto), rtol=1e-12, atol=1e-14)
