"""Runner: GD reference runs, sanity identities of the 3PC family, traces and bit counts."""

import jax
import numpy as np
import pytest

from ratedist.compressors import make
from ratedist.sim import (
    ef21,
    gd,
    lag,
    quadratic,
    run,
    tridiagonal_quadratic,
)


@pytest.fixture(scope="module")
def tri():
    return tridiagonal_quadratic(n_workers=6, dim=20, seed=3)


def test_gd_converges_to_closed_form_optimum(key):
    rng = np.random.default_rng(0)
    n, d = 4, 6
    M = rng.standard_normal((n, d, d))
    A = np.einsum("nij,nkj->nik", M, M) / d + np.eye(d)[None, :, :]
    b = rng.standard_normal((n, d))
    prob = quadratic(A, b)
    x_star = np.linalg.solve(A.mean(0), b.mean(0))  # independent closed form
    tr = run(gd(), prob, steps=3000, key=key)
    # linear convergence with rate (1 - mu/L) per step; 3000 steps reach float64 rounding
    np.testing.assert_allclose(tr.x, x_star, rtol=0, atol=1e-10)
    assert abs(tr.f_gap[-1]) < 1e-12
    assert tr.violations == 0
    assert tr.gamma == pytest.approx(1 / prob.L_minus)


def test_gd_bits_full_vectors(tri, key):
    tr = run(gd(), tri, steps=10, key=key)
    # one full d-vector of 32-bit floats per worker per step, including g^0
    expected = 32 * tri.dim * np.arange(1, 12)
    np.testing.assert_array_equal(tr.bits.container, np.repeat(expected[:, None], 6, axis=1))
    assert tr.f.shape == (11,) and tr.worker_error.shape == (11, 6)
    assert np.all(tr.G == 0)


def test_lag_zeta0_is_gd_bitwise(tri, key):
    a = run(gd(), tri, steps=200, key=key)
    b = run(lag(0.0), tri, steps=200, key=key)
    np.testing.assert_array_equal(a.f, b.f)
    np.testing.assert_array_equal(a.x, b.x)


def test_ef21_k_equals_d_is_gd(tri, key):
    a = run(gd(), tri, steps=200, key=key)
    b = run(ef21(make(f"top-k:k={tri.dim}")), tri, steps=200, key=key, gamma=a.gamma)
    # h + (x - h) differs from x by at most one rounding per step: 1e-12 absolute
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.f, a.f, rtol=0, atol=1e-12)


def test_tpc_residual_matches_numpy_reimplementation(key):
    # Independent numpy EF21-Top-K on a user quadratic: the 3PC residual
    # ||g_i^{t+1} - y_i^{t+1}||^2 - (1 - A)||g_i^t - y_i^t||^2 - B||y_i^{t+1} - y_i^t||^2
    # recomputed from the vectors (the runner carries ||g_i^t - y_i^t||^2 as a scalar).
    rng = np.random.default_rng(4)
    n, d, k, steps = 3, 12, 2, 25
    M = rng.standard_normal((n, d, d))
    A_mat = np.einsum("nij,nkj->nik", M, M) / d + np.eye(d)[None]
    b = rng.standard_normal((n, d))
    prob = quadratic(A_mat, b)
    alg = ef21(make(f"top-k:k={k}"))
    tr = run(alg, prob, steps=steps, key=key)
    A, B, gamma = tr.A, tr.B, tr.gamma

    def topk(v):  # k largest |v_i|, ties to the lower index
        idx = np.argsort(-np.abs(v), kind="stable")[:k]
        out = np.zeros_like(v)
        out[idx] = v[idx]
        return out

    x = np.asarray(prob.x0, float)
    y = np.einsum("nij,j->ni", A_mat, x) - b
    g = y.copy()
    res = [np.nan]
    for _ in range(steps):
        x = x - gamma * g.mean(0)
        y_new = np.einsum("nij,j->ni", A_mat, x) - b
        g_new = np.stack([g[i] + topk(y_new[i] - g[i]) for i in range(n)])
        r = (
            np.sum((g_new - y_new) ** 2, 1)
            - (1 - A) * np.sum((g - y) ** 2, 1)
            - B * np.sum((y_new - y) ** 2, 1)
        )
        res.append(r.mean())
        g, y = g_new, y_new
    res = np.asarray(res)
    scale = np.abs(tr.G).max()
    np.testing.assert_allclose(tr.tpc_residual[1:], res[1:], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(tr.x, x, rtol=0, atol=1e-12)


def test_repeated_runs_reuse_the_compiled_step(tri, key, monkeypatch):
    from ratedist.sim import runner

    builds = []
    real = runner._build
    monkeypatch.setattr(runner, "_build", lambda *a, **k: builds.append(1) or real(*a, **k))
    monkeypatch.setattr(runner, "_JIT_CACHE", type(runner._JIT_CACHE)())
    alg = ef21(make("top-k:k=2"))
    a = run(alg, tri, steps=30, key=key)
    b = run(alg, tri, steps=45, key=key, chunk=7)  # other steps and chunking: same program
    c = run(alg, tri, steps=30, key=jax.random.fold_in(key, 1))
    assert len(builds) == 1
    np.testing.assert_array_equal(a.f, b.f[:31])
    np.testing.assert_array_equal(a.x, c.x)  # deterministic method: the key does not matter
    run(alg, tri, steps=5, key=key, gamma=0.01)  # another step size: an input, same program
    assert len(builds) == 1
    run(ef21(make("top-k:k=2")), tri, steps=5, key=key)  # an equal but new algorithm object
    assert len(builds) == 2
