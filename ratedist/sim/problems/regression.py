"""Least squares and nonconvex logistic regression on synthetic or user-supplied data."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.special import expit

from ratedist._validation import check_array, check_int, check_real
from ratedist.sim.problems.core import PROBLEMS, Problem, _spectral_constants
from ratedist.sim.problems.sampled import (
    _check_xy,
    _optional_minibatch_oracle,
    _reg_grad,
    _reg_loss,
    _split,
)
from ratedist.sim.problems.sparse import (
    DENSE_EIG_MAX_DIM,
    data_terms,
    extreme_eigenvalue,
    is_sparse,
    largest_singular_value_sq,
    pack,
)


def _ls_sample_loss(x, a, y):
    return 0.5 * (a @ x - y) ** 2


def _ls_sample_grad(x, a, y):
    return (a @ x - y) * a


def _ls_loss(x, data_i):
    r = data_i["X"] @ x - data_i["y"]
    return 0.5 * jnp.mean(r * r) + _reg_loss(x, data_i)


def _ls_grad(x, data_i):
    X = data_i["X"]
    return X.T @ (X @ x - data_i["y"]) / X.shape[0] + _reg_grad(x, data_i)


@PROBLEMS.register("least_squares")
def least_squares(
    X: Any = None,
    y: Any = None,
    *,
    n_workers: int = 10,
    n_samples: int = 400,
    dim: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
) -> Problem:
    """Least squares ``f_i(x) = (1/(2m)) ||X_i x − y_i||^2`` on contiguous equal data parts.

    Args:
        X: ``(M, d)`` design matrix (dense, or ``scipy.sparse``: then kept sparse, see
            :func:`_sparse_least_squares`), or None for synthetic Gaussian data
            (``n_samples`` x ``dim``, ``y = X w + 0.1 noise``).
        y: ``(M,)`` targets (required with ``X``).
        n_workers: number of workers; each gets ``floor(M/n)`` contiguous rows.
        n_samples, dim, seed: synthetic data sizes and seed (ignored when ``X`` is given).
        batch_size: minibatch size of stochastic gradients (with replacement), or None.

    Returns:
        The problem with exact ``L_-``, ``L_+`` (Hessians ``X_iᵀX_i/m``), ``L_plus_upper`` and
        ``f*`` by least squares (``numpy.linalg.lstsq``).

    Raises:
        ValueError: bad shapes or sizes.
    """
    n = check_int("n_workers", n_workers, min_value=1)
    if X is None:
        rng = np.random.default_rng(check_int("seed", seed, min_value=0))
        M, d = check_int("n_samples", n_samples, min_value=1), check_int("dim", dim, min_value=1)
        X = rng.standard_normal((M, d))
        y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(M)
        source = {"data": "synthetic", "n_samples": M, "dim": d, "seed": int(seed)}
    elif is_sparse(X):
        return _sparse_least_squares(X, y, n, batch_size)
    else:
        X, y = _check_xy(X, y)
        source = {"data": "user-supplied", "n_samples": X.shape[0], "dim": X.shape[1]}
    Xs, ys = _split(X, y, n)
    m, d = Xs.shape[1], Xs.shape[2]
    H = np.einsum("nmi,nmj->nij", Xs, Xs) / m
    L_minus, L_plus, L_up, L_i = _spectral_constants(H)
    Xall, yall = Xs.reshape(n * m, d), ys.reshape(n * m)
    w, *_ = np.linalg.lstsq(Xall, yall, rcond=None)
    f_star = float(0.5 * np.mean((Xall @ w - yall) ** 2))
    data = {"X": Xs, "y": ys, "lam": np.zeros(n)}
    sgrad, var, batch_cfg = _optional_minibatch_oracle(_ls_sample_grad, batch_size)
    cfg = {"problem": "least_squares", "n_workers": n, **source, **batch_cfg}
    return Problem(
        name="least_squares",
        n_workers=n,
        dim=d,
        data=data,
        loss_fn=_ls_loss,
        grad_fn=_ls_grad,
        x0=np.zeros(d),
        f_star=f_star,
        L_minus=L_minus,
        L_plus=L_plus,
        L_plus_upper=L_up,
        L_i=L_i,
        labels={
            "f_star": "exact: least-squares solution (numpy.linalg.lstsq)",
            "L_minus": "exact: ||X^T X / M||_2",
            "L_plus": "exact: sqrt(lambda_max(mean_i (X_i^T X_i/m)^2))",
            "L_plus_upper": "bound: sqrt(mean_i L_i^2)",
        },
        stochastic_grad_fn=sgrad,
        variance_fn=var,
        config=cfg,
    )


def _sparse_least_squares(X: Any, y: Any, n: int, batch_size: Any) -> Problem:
    """:func:`least_squares` on ``scipy.sparse`` ``X`` (padded COO per worker, O(nnz) memory).

    Constants without forming ``X_iᵀX_i`` densely above ``DENSE_EIG_MAX_DIM``:
    ``L_i = ||X_i||_2^2/m`` and ``L_- = ||X||_2^2/M`` (Lanczos on the smaller Gram matrix),
    ``L_+ = sqrt(lambda_max(mean_i (X_iᵀX_i/m)^2))`` (Lanczos on the operator
    ``v -> mean_i X_iᵀX_i X_iᵀX_i v / m^2``); ``f*`` by LSQR (Paige, Saunders, ACM TOMS 8, 1982;
    ``scipy.sparse.linalg.lsqr``, ``atol = btol = 1e-14``).
    """
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None with scipy.sparse X (minibatch oracles need dense X), "
            f"got {batch_size!r}"
        )
    Xall, mats, ys = _sparse_split(X, y, n)
    m, d = mats[0].shape
    packed = pack(mats, "coo_t")
    L_i = np.array([largest_singular_value_sq(Xi) / m for Xi in mats])
    L_minus = float(largest_singular_value_sq(Xall) / (n * m))
    sq = spla.LinearOperator(
        (d, d),
        matvec=lambda v: sum(Xi.T @ (Xi @ (Xi.T @ (Xi @ v))) for Xi in mats) / (n * m * m),
        dtype=np.float64,
    )
    L_plus = float(np.sqrt(max(extreme_eigenvalue(sq, "LA"), 0.0)))
    yall = ys.reshape(n * m)
    sol = spla.lsqr(Xall, yall, atol=1e-14, btol=1e-14, iter_lim=max(10 * d, 1000))
    f_star = float(0.5 * np.mean((Xall @ sol[0] - yall) ** 2))
    how = "Lanczos eigsh" if min(m, d) > DENSE_EIG_MAX_DIM else "dense eigvalsh"
    how_plus = "Lanczos eigsh" if d > DENSE_EIG_MAX_DIM else "dense eigvalsh"

    def value_and_grad(x, data_i):
        # one pass over each worker's matrix on CPU (native kernel), M x then Mᵀ r elsewhere
        half_sq, g = data_terms(packed, "least_squares", x, data_i, data_i["y"])
        return half_sq / m + _reg_loss(x, data_i), g / m + _reg_grad(x, data_i)

    def grad(x, data_i):
        return value_and_grad(x, data_i)[1]

    def loss(x, data_i):
        r = packed.matvec(x, data_i) - data_i["y"]
        return 0.5 * jnp.mean(r * r) + _reg_loss(x, data_i)

    return Problem(
        name="least_squares",
        n_workers=n,
        dim=d,
        data={**packed.arrays, "y": ys, "lam": np.zeros(n)},
        loss_fn=loss,
        grad_fn=grad,
        value_and_grad_fn=value_and_grad,
        x0=np.zeros(d),
        f_star=f_star,
        L_minus=L_minus,
        L_plus=L_plus,
        L_plus_upper=float(np.sqrt(np.mean(L_i**2))),
        L_i=L_i,
        labels={
            "f_star": f"numerical: LSQR (atol = btol = 1e-14, {sol[2]} iterations)",
            "L_minus": f"{how}: ||X^T X / M||_2",
            "L_plus": f"{how_plus}: sqrt(lambda_max(mean_i (X_i^T X_i/m)^2))",
            "L_plus_upper": f"bound: sqrt(mean_i L_i^2) ({how})",
        },
        config={
            "problem": "least_squares",
            "n_workers": n,
            "data": "user-supplied",
            "n_samples": X.shape[0],
            "dim": d,
            "sparse": {"layout": packed.layout, "nnz": int(Xall.nnz)},
        },
    )


def _logistic_sample_grad(x, a, y):
    # d/dx log(1 + exp(-y aᵀx)) = -y a sigmoid(-y aᵀx)
    return -y * jax.nn.sigmoid(-y * (a @ x)) * a


def _logistic_loss(x, data_i):
    z = -data_i["y"] * (data_i["X"] @ x)
    return jnp.mean(jnp.logaddexp(0.0, z)) + _reg_loss(x, data_i)


def _logistic_grad(x, data_i):
    X, y = data_i["X"], data_i["y"]
    s = jax.nn.sigmoid(-y * (X @ x))
    return -(X.T @ (y * s)) / X.shape[0] + _reg_grad(x, data_i)


def _synthetic_classification(n_samples: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, dim))
    w = rng.standard_normal(dim)
    p = 1 / (1 + np.exp(-(X @ w)))
    y = np.where(rng.uniform(size=n_samples) < p, 1.0, -1.0)
    return X, y


@PROBLEMS.register("logistic_nonconvex")
def logistic_nonconvex(
    X: Any = None,
    y: Any = None,
    *,
    n_workers: int = 20,
    lam: float = 0.1,
    n_samples: int = 1000,
    dim: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
    solve_f_star: bool = True,
    source: str | None = None,
) -> Problem:
    """Logistic regression with the nonconvex regulariser of arXiv 2202.00998 §5.

    ``f_i(x) = (1/m) sum_j log(1 + exp(−y_j a_jᵀx)) + lam sum_k x_k^2/(1 + x_k^2)``, labels
    ``y_j ∈ {−1, +1}``, data split in contiguous equal parts across ``n_workers``.

    Smoothness (bounds, labelled so): the logistic part has Hessian
    ``(1/m) Xᵀ diag(s(1 − s)) X ⪯ XᵀX/(4m)`` since ``s(1 − s) <= 1/4``; the regulariser
    ``phi(t) = t^2/(1 + t^2)`` has ``phi''(t) = (2 − 6t^2)/(1 + t^2)^3`` whose supremum of
    ``|phi''|`` is 2 (at ``t = 0``; for ``t^2 >= 1/3`` it is negative with
    ``|phi''| <= 2(3t^2 − 1)/(1+t^2)^3 <= 1/4``). Hence
    ``L_i <= ||X_i||_2^2/(4m) + 2 lam``, ``L_- <= ||X||_2^2/(4M) + 2 lam`` and
    ``L_+ <= sqrt(mean_i L_i^2)`` (no exact ``L_+`` is computed: ``L_plus = L_plus_upper``).

    Args:
        X: ``(M, d)`` features, or None for synthetic data (Gaussian features, labels from a
            logistic model with a random weight vector).
        y: ``(M,)`` labels in ``{−1, +1}`` (``{0, 1}`` are mapped to ``{−1, +1}``).
        n_workers: number of workers (default 20 as in the paper).
        lam: regularisation weight (default 0.1).
        n_samples, dim, seed: synthetic data sizes and seed.
        batch_size: minibatch size of stochastic gradients (with replacement), or None.
        solve_f_star: estimate ``f*`` by L-BFGS-B from ``x0 = 0`` (a local minimum of a
            nonconvex function: ``f − f*`` can go slightly negative); else ``f* = 0``, a valid
            lower bound (both terms are nonnegative).
        source: label of the data origin stored in ``config``.

    Returns:
        The problem.

    Raises:
        ValueError: bad shapes, labels or sizes.

    References:
        Richtárik et al., "3PC: Three Point Compressors", arXiv 2202.00998, §5 and App. D.
    """
    n = check_int("n_workers", n_workers, min_value=1)
    lam = check_real("lam", lam)
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    if X is None:
        M = check_int("n_samples", n_samples, min_value=1)
        d = check_int("dim", dim, min_value=1)
        seed = check_int("seed", seed, min_value=0)
        X, y = _synthetic_classification(M, d, seed)
        src = {"data": "synthetic", "n_samples": M, "dim": d, "seed": seed}
    else:
        if is_sparse(X):
            return _sparse_logistic(X, y, n, lam, batch_size, solve_f_star, source)
        X, y = _check_xy(X, y)
        y = _pm1_labels(y)
        src = {"data": source or "user-supplied", "n_samples": X.shape[0], "dim": X.shape[1]}
    Xs, ys = _split(X, y, n)
    m, d = Xs.shape[1], Xs.shape[2]
    Xall = Xs.reshape(n * m, d)
    L_i = np.array([np.linalg.norm(Xi, 2) ** 2 / (4 * m) for Xi in Xs]) + 2 * lam
    L_minus = float(np.linalg.norm(Xall, 2) ** 2 / (4 * n * m) + 2 * lam)
    prob = _logistic_problem(
        {"X": Xs, "y": ys, "lam": np.full(n, lam)},
        d,
        (_logistic_loss, _logistic_grad, None),
        L_i,
        L_minus,
        None,
        {"problem": "logistic_nonconvex", "n_workers": n, "lam": lam, **src},
    )
    if solve_f_star:
        prob = _with_numeric_fstar(prob, Xall, ys.reshape(n * m))
    sgrad, var, batch_cfg = _optional_minibatch_oracle(_logistic_sample_grad, batch_size)
    if batch_cfg:
        prob = dataclasses.replace(
            prob, stochastic_grad_fn=sgrad, variance_fn=var, config={**prob.config, **batch_cfg}
        )
    return prob


def _pm1_labels(y: np.ndarray) -> np.ndarray:
    labels = set(np.unique(y).tolist())
    if labels <= {0.0, 1.0}:
        return 2 * y - 1
    if not labels <= {-1.0, 1.0}:
        raise ValueError(f"y must hold labels in {{-1, 1}} or {{0, 1}}, got {sorted(labels)[:5]}")
    return y


def _with_numeric_fstar(prob: Problem, X: Any, y: np.ndarray) -> Problem:
    """``f*`` of the logistic problem by L-BFGS-B in numpy float64 (independent of JAX's dtype).

    ``X`` is the ``(n m, d)`` design matrix the workers hold (dense or ``scipy.sparse``).
    """
    M = X.shape[0]
    lam = float(prob.data["lam"][0])

    def fun(x):
        z = -y * (X @ x)
        f = np.mean(np.logaddexp(0.0, z)) + lam * np.sum(x * x / (1 + x * x))
        g = -(X.T @ (y * expit(z))) / M + lam * 2 * x / (1 + x * x) ** 2
        return f, g

    res = scipy.optimize.minimize(
        fun,
        prob.x0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000},
    )
    labels = dict(prob.labels)
    labels["f_star"] = (
        f"numerical: L-BFGS-B from x0 (local minimum, |grad| = {np.linalg.norm(res.jac):.1e})"
    )
    return dataclasses.replace(prob, f_star=float(res.fun), labels=labels)


def _sparse_logistic_fns(packed, m):
    def value_and_grad(x, data_i):
        # sum_j log(1 + exp(z_j)) and X_iᵀ (y sigmoid(z)), z = -y X_i x: one pass over X_i on
        # CPU (native kernel), X_i x then X_iᵀ s elsewhere
        lam = data_i["lam"]
        loss_sum, xs = data_terms(packed, "logistic", x, data_i, data_i["y"])
        r = 1 / (1 + x * x)  # the regulariser's value and gradient share it
        return loss_sum / m + lam * jnp.sum(x * x * r), -xs / m + lam * 2 * x * r * r

    def loss(x, data_i):
        z = -data_i["y"] * packed.matvec(x, data_i)
        return jnp.mean(jnp.logaddexp(0.0, z)) + _reg_loss(x, data_i)

    def grad(x, data_i):
        return value_and_grad(x, data_i)[1]

    return loss, grad, value_and_grad


def _logistic_problem(data, d: int, fns, L_i, L_minus, how: str | None, config) -> Problem:
    """The :func:`logistic_nonconvex` problem from its worker data, ``(loss, grad,
    value_and_grad or None)``, the bounds ``L_i`` and ``L_-``, and how the spectral norms were
    computed (``how``, named in the labels; None for the exact dense norms)."""
    n = len(L_i)
    by, by_i = ("", "") if how is None else (f" (||X||_2 by {how})", f" (||X_i||_2 by {how})")
    L_up = float(np.sqrt(np.mean(L_i**2)))
    loss, grad, vg = fns
    return Problem(
        name="logistic_nonconvex",
        n_workers=n,
        dim=d,
        data=data,
        loss_fn=loss,
        grad_fn=grad,
        value_and_grad_fn=vg,
        x0=np.zeros(d),
        f_star=0.0,
        L_minus=L_minus,
        L_plus=L_up,
        L_plus_upper=L_up,
        L_i=L_i,
        labels={
            "f_star": "lower bound: 0 (loss and regulariser are nonnegative)",
            "L_minus": f"bound: ||X||_2^2/(4M) + 2 lam{by}",
            "L_plus": "bound: sqrt(mean_i L_i^2) (no exact value computed)",
            "L_plus_upper": f"bound: sqrt(mean_i L_i^2), L_i <= ||X_i||_2^2/(4m) + 2 lam{by_i}",
        },
        config=config,
    )


def _sparse_split(X: Any, y: Any, n: int):
    """Contiguous equal row blocks of a sparse ``X`` (remainder dropped, as :func:`_split`)."""
    X = sp.csr_array(X, dtype=np.float64)
    X.sum_duplicates()
    if not np.all(np.isfinite(X.data)):
        raise ValueError("X must contain only finite values (found NaN or inf)")
    if y is None:
        raise ValueError("y must be given with X")
    y = check_array("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have {X.shape[0]} entries (rows of X), got {y.shape[0]}")
    m = X.shape[0] // n
    if m < 1:
        raise ValueError(f"n_workers must be <= number of samples {X.shape[0]}, got {n}")
    Xall = X[: m * n]
    return Xall, [Xall[i * m : (i + 1) * m] for i in range(n)], y[: m * n].reshape(n, m)


def _sparse_logistic(X, y, n, lam, batch_size, solve_f_star, source) -> Problem:
    """:func:`logistic_nonconvex` on ``scipy.sparse`` ``X`` (padded COO per worker, O(nnz))."""
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None with scipy.sparse X (minibatch oracles need dense X), "
            f"got {batch_size!r}"
        )
    Xall, mats, ys = _sparse_split(X, y, n)
    ys = _pm1_labels(ys)
    m, d = mats[0].shape
    packed = pack(mats, "coo_t")
    L_i = np.array([largest_singular_value_sq(Xi) / (4 * m) for Xi in mats]) + 2 * lam
    L_minus = float(largest_singular_value_sq(Xall) / (4 * n * m) + 2 * lam)
    how = "Lanczos eigsh" if min(m, d) > DENSE_EIG_MAX_DIM else "dense eigvalsh"
    loss, grad, vg = _sparse_logistic_fns(packed, m)
    src = {
        "data": source or "user-supplied",
        "n_samples": X.shape[0],
        "dim": d,
        "sparse": {"layout": packed.layout, "nnz": int(Xall.nnz)},
    }
    prob = _logistic_problem(
        {**packed.arrays, "y": ys, "lam": np.full(n, lam)},
        d,
        (loss, grad, vg),
        L_i,
        L_minus,
        how,
        {"problem": "logistic_nonconvex", "n_workers": n, "lam": lam, **src},
    )
    return _with_numeric_fstar(prob, Xall, ys.reshape(n * m)) if solve_f_star else prob
