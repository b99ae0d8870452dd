"""Sparse problems (scipy.sparse in, padded COO / DIA inside JAX) against numpy/scipy references."""

from __future__ import annotations

import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from ratedist import _native
from ratedist.compressors import make
from ratedist.sim import ef21, run
from ratedist.sim.problems import (
    load_libsvm,
    logistic_libsvm,
    logistic_nonconvex,
    quadratic,
    tridiagonal_quadratic,
)
from ratedist.sim.problems import sparse as sparse_mod
from ratedist.sim.problems.sparse import (
    DENSE_EIG_MAX_DIM,
    _coo_matvec_jax,
    data_terms,
    extreme_eigenvalue,
    largest_singular_value_sq,
    pack,
    solve_positive_definite,
)
from ratedist.sim.problems.sparse import native_available as sparse_native_available


def _sym_sparse(d, density, shift, seed):
    R = sp.random(d, d, density=density, random_state=seed, format="csr")
    return sp.csr_array((R + R.T) / 2 + shift * sp.eye(d))


def _banded(d, seed):
    rng = np.random.default_rng(seed)
    main = 2 + rng.uniform(size=d)
    off = -rng.uniform(size=d - 1)
    return sp.csr_array(sp.diags([off, main, off], [-1, 0, 1]))


@pytest.mark.parametrize("layout", ["coo", "coo_t", "dia"])
def test_pack_products_match_scipy(layout):
    rng = np.random.default_rng(0)
    d = 30
    if layout == "dia":  # banded, asymmetric offsets
        mats = [sp.csr_array(sp.random(d, d, density=0.3, random_state=i)) for i in range(3)]
        mats = [sp.csr_array(sp.triu(sp.tril(m, 2), -1)) for m in mats]
    else:  # rectangular, any pattern
        mats = [sp.csr_array(sp.random(17, d, density=0.2, random_state=i)) for i in range(3)]
    packed = pack(mats, layout)
    assert packed.layout == layout
    x = rng.standard_normal(d)
    s = rng.standard_normal(mats[0].shape[0])
    for i, M in enumerate(mats):
        data_i = {k: v[i] for k, v in packed.arrays.items()}
        np.testing.assert_allclose(packed.matvec(x, data_i), M @ x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(packed.rmatvec(s, data_i), M.T @ s, rtol=1e-12, atol=1e-12)


def test_auto_layout_and_bad_layouts():
    band = [_banded(50, i) for i in range(2)]
    scattered = [_sym_sparse(50, 0.05, 1.0, i) for i in range(2)]
    assert pack(band).layout == "dia"
    assert pack(scattered).layout == "coo"
    with pytest.raises(ValueError, match="layout must be one of"):
        pack(band, "csc")
    with pytest.raises(ValueError, match="square"):
        pack([sp.csr_array(sp.random(3, 5, density=0.5))], "dia")


@pytest.mark.parametrize("layout", ["auto", "coo"])
def test_sparse_quadratic_matches_numpy_references(layout):
    rng = np.random.default_rng(1)
    n, d = 3, 40
    mats = [_banded(d, i) if layout == "auto" else _sym_sparse(d, 0.1, 2.0, i) for i in range(n)]
    b = rng.standard_normal((n, d))
    c = rng.standard_normal(n)
    prob = quadratic(mats, b, c=c, layout=layout)
    dense = [m.toarray() for m in mats]
    x = rng.standard_normal(d)
    ref_g = np.stack([A @ x - bi for A, bi in zip(dense, b, strict=True)])
    ref_f = np.array([0.5 * x @ A @ x - bi @ x + ci for A, bi, ci in zip(dense, b, c, strict=True)])
    np.testing.assert_allclose(prob.local_grads(x), ref_g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(prob.local_losses(x), ref_f, rtol=1e-12, atol=1e-12)
    Abar = np.mean(dense, axis=0)
    ev = np.linalg.eigvalsh(Abar)
    assert prob.L_minus == pytest.approx(np.max(np.abs(ev)), rel=1e-12)
    sq = np.mean([A @ A for A in dense], axis=0)
    assert prob.L_plus == pytest.approx(np.sqrt(np.linalg.eigvalsh(sq)[-1]), rel=1e-12)
    L_i = [np.max(np.abs(np.linalg.eigvalsh(A))) for A in dense]
    np.testing.assert_allclose(prob.L_i, L_i, rtol=1e-12)
    assert ev[0] > 0
    x_star = np.linalg.solve(Abar, b.mean(0))
    assert prob.f_star == pytest.approx(c.mean() - 0.5 * b.mean(0) @ x_star, rel=1e-10)
    assert prob.config["sparse"]["layout"] == ("dia" if layout == "auto" else "coo")


def test_sparse_quadratic_indefinite_has_no_fstar():
    mats = [_sym_sparse(30, 0.1, -0.5, i) for i in range(2)]
    assert np.linalg.eigvalsh(np.mean([m.toarray() for m in mats], axis=0))[0] < 0
    prob = quadratic(mats, np.zeros((2, 30)))
    assert prob.f_star is None and "not positive definite" in prob.labels["f_star"]


def test_solve_positive_definite_against_numpy():
    b = np.arange(60.0)
    for shift in (-0.5, 0.0, 0.5, 1.0, 3.0):
        A = _sym_sparse(60, 0.05, shift, 3)
        dense = A.toarray()
        x, how = solve_positive_definite(A, b)
        if np.linalg.eigvalsh(dense)[0] > 0:
            np.testing.assert_allclose(x, np.linalg.solve(dense, b), rtol=1e-10, atol=1e-12)
        else:
            assert x is None, how


def test_lanczos_agrees_with_dense_eigvalsh():
    """Both eigenvalue paths on a problem both can do (d above the dense threshold)."""
    d = DENSE_EIG_MAX_DIM + 44
    mats = [_sym_sparse(d, 0.02, 0.3 * i, i) for i in range(3)]
    b = np.ones((3, d))
    lz = quadratic(mats, b, method="lanczos")
    dn = quadratic(mats, b, method="dense")
    assert "Lanczos" in lz.labels["L_minus"] and "dense" in dn.labels["L_minus"]
    for name in ("L_minus", "L_plus", "L_plus_upper"):
        assert getattr(lz, name) == pytest.approx(getattr(dn, name), rel=1e-7)
    np.testing.assert_allclose(lz.L_i, dn.L_i, rtol=1e-7)
    M = sp.csr_array(sp.random(80, d, density=0.05, random_state=5))
    s_dense = np.linalg.norm(M.toarray(), 2) ** 2
    assert largest_singular_value_sq(M, method="lanczos") == pytest.approx(s_dense, rel=1e-7)
    assert largest_singular_value_sq(M, method="dense") == pytest.approx(s_dense, rel=1e-12)


def test_lanczos_finds_top_of_clustered_tridiagonal_spectrum():
    """Closed-form eigenvalues of tridiag(-1, 2, -1) (top gap ~ 1e-5): the extreme one is found."""
    d = 600
    T = sp.csr_array(sp.diags([-np.ones(d - 1), 2 * np.ones(d), -np.ones(d - 1)], [-1, 0, 1]))
    mu = 4 * np.sin(np.arange(1, d + 1) * np.pi / (2 * (d + 1))) ** 2
    assert extreme_eigenvalue(T, "LA", method="lanczos") == pytest.approx(mu[-1], rel=1e-9)
    assert extreme_eigenvalue(T, "LM", method="lanczos") == pytest.approx(mu[-1], rel=1e-9)


def test_sparse_quadratic_reproduces_tridiagonal_constants():
    tri = tridiagonal_quadratic(4, 300, seed=2)
    nu, shift = tri.data["nu"], tri.data["shift"]
    T = sp.diags([-np.ones(299), 2 * np.ones(300), -np.ones(299)], [-1, 0, 1])
    mats = [sp.csr_array(nu[i] / 4 * T + shift[i] * sp.eye(300)) for i in range(4)]
    b = np.zeros((4, 300))
    b[:, 0] = tri.data["b1"]
    prob = quadratic(mats, b, x0=tri.x0)
    assert prob.config["sparse"]["layout"] == "dia"
    for name in ("L_minus", "L_plus", "L_plus_upper", "f_star"):
        assert getattr(prob, name) == pytest.approx(getattr(tri, name), rel=1e-8)
    x = np.random.default_rng(0).standard_normal(300)
    np.testing.assert_allclose(prob.local_grads(x), tri.local_grads(x), rtol=1e-12, atol=1e-13)


def _ef21_top_k_numpy(mats, b, x0, gamma, k, steps):
    """EF21 with Top-K (Richtarik et al., arXiv 2106.05203, Alg. 1) as a numpy loop: f(x^t)."""
    grads = [lambda x, A=A, bi=bi: A @ x - bi for A, bi in zip(mats, b, strict=True)]
    x = x0.copy()
    h = np.stack([g(x) for g in grads])
    fs = [np.mean([0.5 * x @ (A @ x) - bi @ x for A, bi in zip(mats, b, strict=True)])]
    for _ in range(steps):
        x = x - gamma * h.mean(0)
        for i, g in enumerate(grads):
            v = g(x) - h[i]
            idx = np.argsort(-np.abs(v), kind="stable")[:k]
            h[i, idx] += v[idx]
        fs.append(np.mean([0.5 * x @ (A @ x) - bi @ x for A, bi in zip(mats, b, strict=True)]))
    return np.array(fs)


def test_ef21_run_on_sparse_quadratic_matches_numpy_loop():
    mats = [_sym_sparse(24, 0.15, 1.0, i) for i in range(3)]
    rng = np.random.default_rng(3)
    b = rng.standard_normal((3, 24))
    x0 = rng.standard_normal(24)
    prob = quadratic(mats, b, x0=x0)
    tr = run(ef21(make("top-k:k=3")), prob, steps=30, key=jax.random.key(0), gamma=0.05)
    ref = _ef21_top_k_numpy(mats, b, x0, 0.05, 3, 30)
    np.testing.assert_allclose(tr.f, ref, rtol=1e-10, atol=1e-12)


def test_sparse_quadratic_bad_inputs():
    good = [_banded(5, 0), _banded(5, 1)]
    with pytest.raises(ValueError, match="symmetric"):
        quadratic([sp.csr_array(sp.triu(_banded(5, 0)))], np.zeros((1, 5)))
    with pytest.raises(ValueError, match="sequence"):
        quadratic(_banded(5, 0), np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"A\[1\] must have shape"):
        quadratic([_banded(5, 0), _banded(6, 1)], np.zeros((2, 5)))
    with pytest.raises(ValueError, match="b must have shape"):
        quadratic(good, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="method must be one of"):
        quadratic(good, np.zeros((2, 5)), method="power")
    with pytest.raises(TypeError, match=r"A\[1\] must be a scipy.sparse"):
        quadratic([_banded(5, 0), np.eye(5)], np.zeros((2, 5)))


def _logistic_reference(X, y, lam, x):
    """numpy loss and gradient of one worker (labels in {-1, 1})."""
    z = -y * (X @ x)
    f = np.mean(np.logaddexp(0, z)) + lam * np.sum(x * x / (1 + x * x))
    g = -(X.T @ (y / (1 + np.exp(-z)))) / X.shape[0] + lam * 2 * x / (1 + x * x) ** 2
    return f, g


def test_sparse_logistic_matches_numpy_and_dense_problem():
    rng = np.random.default_rng(4)
    M, d, n, lam = 163, 120, 4, 0.1
    X = sp.csr_array(sp.random(M, d, density=0.1, random_state=7))
    y = np.where(rng.uniform(size=M) < 0.5, 0.0, 1.0)
    prob = logistic_nonconvex(X, y, n_workers=n, lam=lam)
    dense = logistic_nonconvex(X.toarray(), y, n_workers=n, lam=lam)
    assert "X" not in prob.data and prob.config["sparse"]["layout"] == "coo_t"
    x = 0.3 * rng.standard_normal(d)
    m = M // n
    Xd, yd = X.toarray(), 2 * y - 1
    for i in range(n):
        f, g = _logistic_reference(Xd[i * m : (i + 1) * m], yd[i * m : (i + 1) * m], lam, x)
        assert prob.local_losses(x)[i] == pytest.approx(f, rel=1e-12)
        np.testing.assert_allclose(prob.local_grads(x)[i], g, rtol=1e-10, atol=1e-14)
    L_i = [np.linalg.norm(Xd[i * m : (i + 1) * m], 2) ** 2 / (4 * m) + 2 * lam for i in range(n)]
    np.testing.assert_allclose(prob.L_i, L_i, rtol=1e-12)
    assert prob.L_minus == pytest.approx(dense.L_minus, rel=1e-12)
    assert prob.f_star == pytest.approx(dense.f_star, rel=1e-9)
    with pytest.raises(ValueError, match="batch_size"):
        logistic_nonconvex(X, y, n_workers=n, batch_size=4)


def test_libsvm_is_read_sparse(tmp_path):
    sklearn = pytest.importorskip("sklearn.datasets")
    rng = np.random.default_rng(5)
    X = sp.csr_array(sp.random(60, 40, density=0.1, random_state=2))
    y = np.where(rng.uniform(size=60) < 0.5, -1.0, 1.0)
    path = tmp_path / "d.svm"
    sklearn.dump_svmlight_file(X, y, str(path), zero_based=False)
    X2, y2 = load_libsvm(path, n_features=40)
    assert sp.issparse(X2) and X2.format == "csr" and X2.shape == (60, 40)
    np.testing.assert_allclose(X2.toarray(), X.toarray(), rtol=1e-15)
    np.testing.assert_array_equal(y2, y)
    Xd, _ = load_libsvm(path, n_features=40, dense=True)
    assert isinstance(Xd, np.ndarray)
    np.testing.assert_allclose(Xd, X.toarray(), rtol=1e-15)
    prob = logistic_libsvm(path, n_workers=6, n_features=40, solve_f_star=False)
    assert "X" not in prob.data and prob.dim == 40
    ref = logistic_nonconvex(X.toarray(), y, n_workers=6, solve_f_star=False)
    x = rng.standard_normal(40)
    np.testing.assert_allclose(prob.local_grads(x), ref.local_grads(x), rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_sparse_logistic_memory_is_order_nnz():
    """50,000 x 1,000,000 at density 1e-5 (dense: 400 GB in float64) builds in O(nnz + n d)."""
    M, d, nnz, n = 50_000, 1_000_000, 500_000, 10
    rng = np.random.default_rng(0)
    X = sp.csr_array(
        (rng.standard_normal(nnz), (rng.integers(0, M, nnz), rng.integers(0, d, nnz))),
        shape=(M, d),
    )
    y = np.where(rng.uniform(size=M) < 0.5, -1.0, 1.0)
    tracemalloc.start()
    try:
        prob = logistic_nonconvex(X, y, n_workers=n, solve_f_star=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # COO arrays 16 B/nnz, Lanczos vectors O(ncv * min(m, d)), O(d) temporaries: far below
    # one dense row block (5,000 x 10^6 x 8 B = 40 GB)
    assert peak < 400e6, f"peak traced memory {peak / 1e6:.0f} MB"
    sizes = {k: np.asarray(v).nbytes for k, v in prob.data.items()}
    assert sum(sizes.values()) < 40 * X.nnz, sizes
    assert prob.L_minus > 2 * 0.1 and np.all(prob.L_i > 2 * 0.1)  # lam = 0.1 default
    g = prob.grad_fn(np.zeros(d), {k: v[0] for k, v in prob.data.items()})
    assert g.shape == (d,)


def test_sparse_least_squares_matches_numpy_references():
    from ratedist.sim.problems import least_squares

    rng = np.random.default_rng(6)
    M, d, n = 150, 40, 3
    X = sp.csr_array(sp.random(M, d, density=0.2, random_state=8))
    y = rng.standard_normal(M)
    prob = least_squares(X, y, n_workers=n)
    assert "X" not in prob.data
    Xd, m = X.toarray(), M // n
    parts = [(Xd[i * m : (i + 1) * m], y[i * m : (i + 1) * m]) for i in range(n)]
    x = rng.standard_normal(d)
    ref_g = np.stack([Xi.T @ (Xi @ x - yi) / m for Xi, yi in parts])
    np.testing.assert_allclose(prob.local_grads(x), ref_g, rtol=1e-11, atol=1e-13)
    H = [Xi.T @ Xi / m for Xi, _ in parts]
    assert prob.L_minus == pytest.approx(np.linalg.eigvalsh(np.mean(H, 0))[-1], rel=1e-12)
    sq = np.mean([h @ h for h in H], 0)
    assert prob.L_plus == pytest.approx(np.sqrt(np.linalg.eigvalsh(sq)[-1]), rel=1e-12)
    w, *_ = np.linalg.lstsq(Xd, y, rcond=None)
    assert prob.f_star == pytest.approx(0.5 * np.mean((Xd @ w - y) ** 2), rel=1e-9)


# ------------------------------------------------------------------------------ native kernel
# The CPU kernel (ratedist/_native/sparse.cc) against scipy.sparse in float64 and against the
# pure-JAX gather + segment_sum path. Tolerances: float64 relative 1e-12 (the same products,
# summed in a possibly different order); float32 1e-5 of the largest reference entry.

_TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _workers_with_padding(m, d, seed):
    """Three workers with different nnz (padding), an empty row and an empty first column."""
    mats = []
    for i in range(3):
        M = sp.random(m, d, density=0.15 + 0.1 * i, random_state=seed + i, format="lil")
        M[2, :] = 0
        M[:, 0] = 0
        mats.append(sp.csr_array(M))
    assert len({M.nnz for M in mats}) == 3
    return mats


def _close(got, ref, dtype):
    ref = np.asarray(ref, np.float64)
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=0, atol=_TOL[dtype] * scale)


def _native_or_skip(dtype):
    if not sparse_native_available(dtype):
        pytest.skip("native sparse kernel unavailable")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["coo", "coo_t"])
def test_native_products_match_scipy_and_pure_jax_under_vmap(layout, dtype):
    _native_or_skip(dtype)
    m, d = 13, 29
    mats = _workers_with_padding(m, d, 10)
    packed = pack(mats, layout)
    data = {
        k: jnp.asarray(v.astype(dtype) if v.dtype == np.float64 else v)
        for k, v in packed.arrays.items()
    }
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, d)), dtype)  # two replicas, shared by the workers
    s = jnp.asarray(rng.standard_normal((2, m)), dtype)
    one = jax.vmap(packed.matvec, in_axes=(None, 0))
    mv = jax.jit(jax.vmap(one, in_axes=(0, None)))(x, data)
    rv = jax.jit(jax.vmap(jax.vmap(packed.rmatvec, in_axes=(None, 0)), in_axes=(0, None)))(s, data)
    assert mv.shape == (2, 3, m) and rv.shape == (2, 3, d) and mv.dtype == dtype
    for r in range(2):
        for i, M in enumerate(mats):
            M = M.astype(dtype).astype(np.float64)  # the stored entries, exactly
            _close(mv[r, i], M @ np.asarray(x[r], np.float64), dtype)
            _close(rv[r, i], M.T @ np.asarray(s[r], np.float64), dtype)
    # the pure-JAX path on the same arrays
    ref_mv = jax.vmap(lambda xx, di: _coo_matvec_jax(xx, di, n_rows=m), in_axes=(None, 0))
    _close(mv[0], ref_mv(x[0], data), dtype)
    # one custom call for all workers (expand_dims batching: x is not copied per worker)
    text = jax.jit(one).lower(x[0], data).as_text()
    assert text.count(_native.SPARSE_TARGETS[np.dtype(dtype).name][0]) == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["logistic", "least_squares"])
@pytest.mark.parametrize("layout", ["coo", "coo_t"])
def test_fused_data_terms_match_numpy_native_and_fallback(layout, kind, dtype, monkeypatch):
    """The fused kernel on CSR rows ("coo") and on sliced columns ("coo_t")."""
    _native_or_skip(dtype)
    m, d = 13, 29
    mats = _workers_with_padding(m, d, 20)
    packed = pack(mats, layout)
    data = {
        k: jnp.asarray(v.astype(dtype) if v.dtype == np.float64 else v)
        for k, v in packed.arrays.items()
    }
    rng = np.random.default_rng(1)
    y = np.where(rng.uniform(size=(3, m)) < 0.5, -1.0, 1.0).astype(dtype)
    x = (0.5 * rng.standard_normal(d)).astype(dtype)
    fn = jax.jit(
        jax.vmap(lambda xx, di, yy: data_terms(packed, kind, xx, di, yy), in_axes=(None, 0, 0))
    )
    loss, g = fn(x, data, y)
    text = fn.lower(x, data, y).as_text()
    targets = _native.SPARSE_SLICED_TARGETS if layout == "coo_t" else _native.SPARSE_TARGETS
    assert text.count(targets[np.dtype(dtype).name][0]) == 1
    for i, M in enumerate(mats):
        A, yi, xd = M.astype(dtype).astype(np.float64), y[i].astype(np.float64), x.astype(float)
        a = A @ xd
        if kind == "logistic":
            z = -yi * a
            w, terms = yi / (1 + np.exp(-z)), np.logaddexp(0, z)
        else:
            w, terms = a - yi, 0.5 * (a - yi) ** 2
        _close(loss[i], terms.sum(), dtype)
        _close(g[i], A.T @ w, dtype)
    monkeypatch.setattr(sparse_mod, "native_available", lambda dt: False)
    loss_j, g_j = jax.jit(
        jax.vmap(lambda xx, di, yy: data_terms(packed, kind, xx, di, yy), in_axes=(None, 0, 0))
    )(x, data, y)
    _close(loss, loss_j, dtype)
    _close(g, g_j, dtype)
    with pytest.raises(ValueError, match="kind must be one of"):
        data_terms(packed, "hinge", x, {k: v[0] for k, v in data.items()}, y[0])


def test_native_products_have_reverse_mode_derivatives():
    """jax.grad through the kernel (custom VJP) against the closed form, in x and in vals."""
    _native_or_skip(np.float64)
    mats = _workers_with_padding(11, 17, 30)
    packed = pack(mats, "coo")
    data0 = {k: jnp.asarray(v[1]) for k, v in packed.arrays.items()}
    M = mats[1]
    x = np.random.default_rng(2).standard_normal(17)
    s = np.random.default_rng(3).standard_normal(11)
    g = jax.grad(lambda v: jnp.sum(jnp.sin(packed.matvec(v, data0))))(x)
    np.testing.assert_allclose(g, M.T @ np.cos(M @ x), rtol=1e-12, atol=1e-12)
    g = jax.grad(lambda v: jnp.sum(jnp.sin(packed.rmatvec(v, data0))))(s)
    np.testing.assert_allclose(g, M @ np.cos(M.T @ s), rtol=1e-12, atol=1e-12)
    # d/dvals_k of sum(M x) = x[col_k] on the stored entries (padding entries: x[0])
    gv = jax.grad(lambda vals: jnp.sum(packed.matvec(x, {**data0, "sp_vals": vals})))(
        data0["sp_vals"]
    )
    np.testing.assert_allclose(gv[: M.nnz], x[M.indices], rtol=1e-15)
    # equal_bits differentiates a sparse logistic loss: the native path serves jax.grad too
    X = sp.vstack(mats).tocsr()
    yv = np.where(np.random.default_rng(4).uniform(size=33) < 0.5, -1.0, 1.0)
    prob = logistic_nonconvex(X, yv, n_workers=3, lam=0.1, solve_f_star=False)
    d_i = {k: jnp.asarray(v[0]) for k, v in prob.data.items()}
    np.testing.assert_allclose(
        jax.grad(prob.loss_fn)(x, d_i), prob.grad_fn(x, d_i), rtol=1e-12, atol=1e-14
    )


def _rows_of_lengths(lengths, d, seed):
    """CSR matrix whose row r holds lengths[r] entries in random distinct columns."""
    rng = np.random.default_rng(seed)
    cols = [np.sort(rng.choice(d, size=k, replace=False)) for k in lengths]
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    return sp.csr_array(
        (rng.standard_normal(int(ptr[-1])), np.concatenate(cols).astype(np.int32), ptr),
        shape=(len(lengths), d),
    )


def test_native_kernel_rows_of_every_length_match_scipy():
    """Rows of 0..13 and 200-203 entries (every remainder of the four partial sums) against
    scipy, for both products and the fused logistic terms; float64, relative 1e-12."""
    _native_or_skip(np.float64)
    d = 300
    lengths = [*range(14), 200, 201, 202, 203]
    mats = [_rows_of_lengths(lengths, d, 40), _rows_of_lengths(lengths[::-1], d, 41)]
    packed = pack(mats, "coo")
    data = {k: jnp.asarray(v) for k, v in packed.arrays.items()}
    rng = np.random.default_rng(5)
    x = rng.standard_normal(d)
    s = rng.standard_normal(len(lengths))
    y = np.where(rng.uniform(size=(2, len(lengths))) < 0.5, -1.0, 1.0)
    mv = jax.jit(jax.vmap(packed.matvec, in_axes=(None, 0)))(x, data)
    rv = jax.jit(jax.vmap(packed.rmatvec, in_axes=(None, 0)))(s, data)
    loss, g = jax.jit(
        jax.vmap(lambda di, yy: data_terms(packed, "logistic", x, di, yy), in_axes=(0, 0))
    )(data, y)
    for i, M in enumerate(mats):
        _close(mv[i], M @ x, np.float64)
        _close(rv[i], M.T @ s, np.float64)
        z = -y[i] * (M @ x)
        _close(loss[i], np.logaddexp(0, z).sum(), np.float64)
        _close(g[i], M.T @ (y[i] / (1 + np.exp(-z))), np.float64)


def test_native_kernel_skips_out_of_range_columns_and_rejects_bad_row_pointers():
    """Malformed arrays (never built by pack): an out-of-range column index drops its entry;
    decreasing or out-of-bounds row pointers raise."""
    _native_or_skip(np.float64)
    M = _rows_of_lengths([3, 6, 0, 9], 20, 50)
    packed = pack([M], "coo")
    data0 = {k: jnp.asarray(v[0]) for k, v in packed.arrays.items()}
    x = np.random.default_rng(6).standard_normal(20)
    bad_cols = np.asarray(data0["sp_cols"]).copy()
    bad_cols[[4, 10]] = [20, -3]  # row 1 and row 3 each get one index outside [0, 20)
    keep = sp.csr_array(M.copy())
    keep.data[[4, 10]] = 0.0  # the reference: those entries dropped
    got = packed.matvec(x, {**data0, "sp_cols": jnp.asarray(bad_cols)})
    _close(got, keep @ x, np.float64)
    s = np.random.default_rng(7).standard_normal(4)
    got = packed.rmatvec(s, {**data0, "sp_cols": jnp.asarray(bad_cols)})
    _close(got, keep.T @ s, np.float64)
    for ptr in ([0, 3, 2, 9, 18], [0, 3, 9, 9, 19], [-1, 3, 9, 9, 18]):
        # INVALID_ARGUMENT from the kernel: ValueError eagerly, JaxRuntimeError under jit
        with pytest.raises((ValueError, jax.errors.JaxRuntimeError), match="row pointers"):
            jax.block_until_ready(
                packed.matvec(x, {**data0, "sp_indptr": jnp.asarray(ptr, jnp.int32)})
            )


_OFF_SCRIPT = """
import json, numpy as np, scipy.sparse as sp, jax
jax.config.update("jax_enable_x64", True)
from ratedist.sim.problems import logistic_nonconvex, least_squares
from ratedist.sim.problems.sparse import native_available
X = sp.csr_array(sp.random(40, 25, density=0.2, random_state=1))
y = np.where(np.random.default_rng(0).uniform(size=40) < 0.5, -1.0, 1.0)
x = np.random.default_rng(1).standard_normal(25)
out = {"native": native_available(np.float64)}
for name, make in (("logistic", logistic_nonconvex), ("ls", least_squares)):
    kw = {"solve_f_star": False} if name == "logistic" else {}
    p = make(X, y, n_workers=4, **kw)
    out[name] = [p.local_losses(x).tolist(), p.local_grads(x).tolist()]
print(json.dumps(out))
"""


def test_sparse_problems_with_native_off_match_numpy():
    """RATEDIST_NATIVE=0 (subprocess): the pure-JAX path, against numpy references."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "RATEDIST_NATIVE": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _OFF_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["native"] is False
    X = sp.csr_array(sp.random(40, 25, density=0.2, random_state=1)).toarray()
    y = np.where(np.random.default_rng(0).uniform(size=40) < 0.5, -1.0, 1.0)
    x = np.random.default_rng(1).standard_normal(25)
    for i in range(4):
        Xi, yi = X[i * 10 : (i + 1) * 10], y[i * 10 : (i + 1) * 10]
        f, g = _logistic_reference(Xi, yi, 0.1, x)
        assert out["logistic"][0][i] == pytest.approx(f, rel=1e-12)
        np.testing.assert_allclose(out["logistic"][1][i], g, rtol=1e-10, atol=1e-14)
        r = Xi @ x - yi
        assert out["ls"][0][i] == pytest.approx(0.5 * np.mean(r * r), rel=1e-12)
        np.testing.assert_allclose(out["ls"][1][i], Xi.T @ r / 10, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------ sliced columns


def _sliced_reference(M):
    """The sliced-column copy of ``M`` by plain loops over its dense columns (sparse.cc)."""
    A = M.toarray()
    m, d = A.shape
    counts = [int(np.count_nonzero(A[:, c])) for c in range(d)]
    cols = sorted((c for c in range(d) if counts[c]), key=lambda c: (-counts[c], c))
    cols += [d] * (-len(cols) % 8)
    sptr, rows, vals = [0], [], []
    for k in range(len(cols) // 8):
        lanes = cols[8 * k : 8 * k + 8]
        entries = [[(r, A[r, c]) for r in range(m) if A[r, c] != 0] if c < d else [] for c in lanes]
        for j in range(max(len(e) for e in entries)):
            for e in entries:
                r, v = e[j] if j < len(e) else (m, 0.0)
                rows.append(r)
                vals.append(v)
        sptr.append(len(rows))
    return np.array(sptr), np.array(cols), np.array(rows), np.array(vals)


def test_sliced_columns_match_a_loop_construction():
    M = _rows_of_lengths([*range(14), 40, 41], 50, 60).T.tocsr()  # columns of 0..13, 40, 41
    M = sp.csr_array(sp.vstack([M, sp.random(5, 16, density=0.3, random_state=1)]).tocsr())
    got = sparse_mod._sliced_columns(M)
    ref = _sliced_reference(M)
    for g, r, name in zip(got, ref, ("sptr", "lanes", "rows", "vals"), strict=True):
        np.testing.assert_array_equal(g, r, err_msg=name)
    # packed over workers of different sizes: empty slices and padding past the last one
    top = sp.csr_array(sp.diags((np.arange(M.shape[0]) < 20).astype(float)) @ M)
    top.eliminate_zeros()
    mats = [M, sp.csr_array(M.shape), top]
    packed = pack(mats, "coo_t")
    for i, Mi in enumerate(mats):
        sptr, lanes, rows, vals = _sliced_reference(Mi)
        ns = lanes.size // 8
        np.testing.assert_array_equal(packed.arrays["spc_ptr"][i, : ns + 1], sptr)
        assert np.all(packed.arrays["spc_ptr"][i, ns + 1 :] == sptr[-1])
        np.testing.assert_array_equal(packed.arrays["spc_lanes"][i, : lanes.size], lanes)
        assert np.all(packed.arrays["spc_lanes"][i, lanes.size :] == M.shape[1])
        np.testing.assert_array_equal(packed.arrays["spc_rows"][i, : rows.size], rows)
        np.testing.assert_array_equal(packed.arrays["spc_vals"][i, : vals.size], vals)
        assert np.all(packed.arrays["spc_vals"][i, vals.size :] == 0)


@pytest.mark.parametrize("native", [True, False])
def test_coo_t_transpose_product_matches_scipy(native, monkeypatch):
    """``Mᵀ s`` of ``coo_t``: the native CSR scatter, or the pure-JAX sum over the sliced
    columns (a worker without entries, empty slices, padding), float64, relative 1e-12."""
    if native:
        _native_or_skip(np.float64)
    else:
        monkeypatch.setattr(sparse_mod, "native_available", lambda dt: False)
    m, d = 13, 29
    mats = [*_workers_with_padding(m, d, 70), sp.csr_array((m, d))]
    packed = pack(mats, "coo_t")
    data = {k: jnp.asarray(v) for k, v in packed.arrays.items()}
    s = np.random.default_rng(8).standard_normal(m)
    rv = jax.jit(jax.vmap(packed.rmatvec, in_axes=(None, 0)))(s, data)
    for i, M in enumerate(mats):
        _close(rv[i], M.T @ s, np.float64)


def test_sliced_kernel_columns_of_every_length_match_scipy():
    """Columns of 0..13 and 200-203 entries (slices of mixed lengths) through the sliced
    kernel: the fused logistic and least-squares terms against scipy, float64."""
    _native_or_skip(np.float64)
    lengths = [*range(14), 200, 201, 202, 203]
    mats = [
        sp.csr_array(_rows_of_lengths(ls, 300, 80 + i).T)
        for i, ls in enumerate((lengths, lengths[::-1]))
    ]
    packed = pack(mats, "coo_t")
    data = {k: jnp.asarray(v) for k, v in packed.arrays.items()}
    rng = np.random.default_rng(9)
    x = rng.standard_normal(len(lengths))
    y = np.where(rng.uniform(size=(2, 300)) < 0.5, -1.0, 1.0)
    for kind in ("logistic", "least_squares"):
        loss, g = jax.jit(
            jax.vmap(lambda di, yy, k=kind: data_terms(packed, k, x, di, yy), in_axes=(0, 0))
        )(data, y)
        for i, M in enumerate(mats):
            a = M @ x
            if kind == "logistic":
                z = -y[i] * a
                w, terms = y[i] / (1 + np.exp(-z)), np.logaddexp(0, z)
            else:
                w, terms = a - y[i], 0.5 * (a - y[i]) ** 2
            _close(loss[i], terms.sum(), np.float64)
            _close(g[i], M.T @ w, np.float64)


def test_sliced_kernel_skips_out_of_range_rows_and_rejects_bad_slices():
    """Malformed sliced arrays: a row index outside [0, m] drops its entry; slice pointers
    that decrease, leave [0, nnz] or cut a group of eight raise."""
    _native_or_skip(np.float64)
    M = sp.csr_array(sp.random(9, 12, density=0.4, random_state=3))
    packed = pack([M], "coo_t")
    data0 = {k: jnp.asarray(v[0]) for k, v in packed.arrays.items()}
    x = np.random.default_rng(10).standard_normal(12)
    y = np.ones(9)
    rows = np.asarray(data0["spc_rows"]).copy()
    real = np.flatnonzero(rows < 9)[[0, 5]]
    rows[real] = [9 + 7, -2]
    keep = sp.csr_array(M.toarray())
    lanes = np.asarray(data0["spc_lanes"])
    sptr = np.asarray(data0["spc_ptr"])
    for e in real:  # the dropped entries: column of the lane, row of the original
        k = np.searchsorted(sptr, e, side="right") - 1
        keep[int(data0["spc_rows"][e]), int(lanes[8 * k + e % 8])] = 0.0
    keep.eliminate_zeros()
    _, g = data_terms(packed, "least_squares", x, {**data0, "spc_rows": jnp.asarray(rows)}, y)
    # the row dots lose the entries too: a = keep @ x
    _close(g, keep.T @ (keep @ x - y), np.float64)
    n_ptr = sptr.size
    for bad in (
        np.r_[sptr[:-2], sptr[-1], sptr[-3]],  # decreasing
        np.r_[sptr[:-1], rows.size + 8],  # past nnz
        np.r_[sptr[:-1], sptr[-1] - 3],  # not whole groups of eight
    ):
        assert bad.size == n_ptr
        with pytest.raises((ValueError, jax.errors.JaxRuntimeError), match="slice pointers"):
            jax.block_until_ready(
                data_terms(
                    packed, "logistic", x, {**data0, "spc_ptr": jnp.asarray(bad, jnp.int32)}, y
                )
            )


def test_sliced_kernel_logistic_terms_do_not_overflow():
    """Margins |y a| past 700 (exp overflows past 709): the fused terms of the sliced kernel
    (its weights y sigmoid(z), the loss terms from its a) against numpy's logaddexp and
    scipy's expit, float64, relative 1e-12."""
    _native_or_skip(np.float64)
    from scipy.special import expit

    M = sp.csr_array(sp.random(40, 7, density=0.5, random_state=11))
    packed = pack([M], "coo_t")
    data0 = {k: jnp.asarray(v[0]) for k, v in packed.arrays.items()}
    y = np.where(np.arange(40) % 2 == 0, 1.0, -1.0)
    for scale in (1.0, 100.0, 2000.0):
        x = scale * np.random.default_rng(12).standard_normal(7)
        loss, g = data_terms(packed, "logistic", x, data0, y)
        z = -y * (M @ x)
        assert np.max(np.abs(z)) > 700 or scale < 2000
        _close(loss, np.logaddexp(0, z).sum(), np.float64)
        _close(g, M.T @ (y * expit(z)), np.float64)
