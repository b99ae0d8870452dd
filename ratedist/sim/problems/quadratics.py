"""Quadratic problems: user-supplied dense or sparse quadratics and the 3PC/EF21 tridiagonal family."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg as spla

from ratedist._validation import check_array, check_choice, check_int, check_real
from ratedist.sim.problems.core import PROBLEMS, Problem, _quadratic_fstar, _spectral_constants
from ratedist.sim.problems.sparse import (
    DENSE_EIG_MAX_DIM,
    LANCZOS_TOL,
    as_csr_list,
    extreme_eigenvalue,
    is_sparse,
    pack,
    solve_positive_definite,
)


def _dense_quad_loss(x, data_i):
    A, b, c = data_i["A"], data_i["b"], data_i["c"]
    return 0.5 * x @ (A @ x) - b @ x + c


def _dense_quad_grad(x, data_i):
    return data_i["A"] @ x - data_i["b"]


@PROBLEMS.register("quadratic")
def quadratic(
    A: Any, b: Any, *, c: Any = None, x0: Any = None, layout: str = "auto", method: str = "auto"
) -> Problem:
    """User-supplied quadratics ``f_i(x) = ½ xᵀA_i x − xᵀb_i + c_i``.

    ``A`` is either a dense ``(n, d, d)`` array or a sequence of ``n`` ``scipy.sparse``
    ``(d, d)`` matrices. Sparse ``A_i`` stay sparse end to end (see
    :mod:`ratedist.sim.problems.sparse`): stored in the ``layout`` ``"dia"`` (banded) or
    ``"coo"`` (any pattern), gradients cost O(nnz), and no ``(d, d)`` dense array is formed
    above ``DENSE_EIG_MAX_DIM``.

    Args:
        A: ``(n, d, d)`` symmetric matrices, or a sequence of ``n`` symmetric
            ``scipy.sparse`` matrices (one per worker).
        b: ``(n, d)`` linear terms (dense).
        c: optional ``(n,)`` constants (default 0).
        x0: starting point (default zeros).
        layout: sparse ``A`` only: ``"auto"``, ``"dia"`` or ``"coo"``.
        method: sparse ``A`` only: eigenvalues by ``"dense"`` ``eigvalsh`` (exact),
            ``"lanczos"`` (``eigsh``, relative tolerance ``LANCZOS_TOL``) or ``"auto"`` (dense
            for ``d <= DENSE_EIG_MAX_DIM``).

    Returns:
        The problem with ``L_-`` (spectral norm of the mean Hessian), ``L_+``
        (``sqrt(lambda_max((1/n) sum A_i^2))``), ``L_plus_upper`` and ``f*`` (when the mean
        Hessian is positive definite; None otherwise): exact for dense ``A`` (closed form
        ``f* = c̄ − ½ b̄ᵀĀ⁻¹b̄``), and for sparse ``A`` from the eigenvalue ``method`` and a sparse
        LU solve (``scipy.sparse.linalg.spsolve``) of ``Ā x = b̄``; ``labels`` say which.

    Raises:
        ValueError: shapes inconsistent, non-finite entries, non-symmetric ``A_i``, unknown
            ``layout``/``method``.
        TypeError: a sparse sequence holding a non-sparse element.
    """
    if is_sparse(A) or (isinstance(A, list | tuple) and any(is_sparse(a) for a in A)):
        return _sparse_quadratic(A, b, c=c, x0=x0, layout=layout, method=method)
    A = check_array("A", A, ndim=3)
    n, d, d2 = A.shape
    if d != d2:
        raise ValueError(f"A must have shape (n, d, d), got {A.shape}")
    if not np.allclose(A, np.swapaxes(A, 1, 2), rtol=1e-12, atol=1e-12):
        raise ValueError("A must hold symmetric matrices A_i = A_i^T")
    b, c, x0 = _check_bcx(b, c, x0, n, d)
    L_minus, L_plus, L_up, L_i = _spectral_constants(A)
    f_star, f_label = _quadratic_fstar(A.mean(0), b.mean(0), float(c.mean()))
    return Problem(
        name="quadratic",
        n_workers=n,
        dim=d,
        data={"A": A, "b": b, "c": c},
        loss_fn=_dense_quad_loss,
        grad_fn=_dense_quad_grad,
        x0=x0,
        f_star=f_star,
        L_minus=L_minus,
        L_plus=L_plus,
        L_plus_upper=L_up,
        L_i=L_i,
        labels={
            "f_star": f_label,
            "L_minus": "exact: ||mean_i A_i||_2",
            "L_plus": "exact: sqrt(lambda_max(mean_i A_i^2))",
            "L_plus_upper": "bound: sqrt(mean_i ||A_i||_2^2)",
        },
        config={"problem": "quadratic", "n_workers": n, "dim": d, "data": "user-supplied"},
    )


def _check_bcx(b: Any, c: Any, x0: Any, n: int, d: int):
    b = check_array("b", b, ndim=2)
    if b.shape != (n, d):
        raise ValueError(f"b must have shape (n_workers, d) = {(n, d)}, got {b.shape}")
    c = np.zeros(n) if c is None else check_array("c", c, ndim=1)
    if c.shape != (n,):
        raise ValueError(f"c must have shape (n_workers,) = {(n,)}, got {c.shape}")
    x0 = np.zeros(d) if x0 is None else check_array("x0", x0, ndim=1)
    if x0.shape != (d,):
        raise ValueError(f"x0 must have shape (d,) = {(d,)}, got {x0.shape}")
    return b, c, x0


#: symmetry tolerance of sparse A_i: max |A - Aᵀ| <= SYM_TOL * max(1, max |A|)
SYM_TOL = 1e-12


def _sparse_quad_fns(matvec):
    def grad(x, data_i):
        return matvec(x, data_i) - data_i["b"]

    def value_and_grad(x, data_i):
        Ax = matvec(x, data_i)
        return 0.5 * x @ Ax - data_i["b"] @ x + data_i["c"], Ax - data_i["b"]

    def loss(x, data_i):
        return value_and_grad(x, data_i)[0]

    return loss, grad, value_and_grad


def sparse_quadratic_constants(mats: list, *, method: str = "auto"):
    """``(L_-, L_+, sqrt(mean L_i^2), L_i, labels)`` of symmetric sparse Hessians ``mats``.

    ``L_i = max |eig(A_i)|``, ``L_- = max |eig(Ā)|``, ``L_+ = sqrt(lambda_max((1/n) sum A_i^2))``
    with ``(1/n) sum A_i^2`` applied as an operator (never formed); eigenvalues by ``method``
    (see :func:`ratedist.sim.problems.sparse.extreme_eigenvalue`).
    """
    n = len(mats)
    d = mats[0].shape[0]
    mean = functools.reduce(lambda s, m: s + m, mats) / n
    L_i = np.array([abs(extreme_eigenvalue(m, "LM", method=method)) for m in mats])
    L_minus = abs(extreme_eigenvalue(mean, "LM", method=method))
    sq = spla.LinearOperator(
        (d, d), matvec=lambda v: sum(m @ (m @ v) for m in mats) / n, dtype=np.float64
    )
    L_plus = float(np.sqrt(max(extreme_eigenvalue(sq, "LA", method=method), 0.0)))
    how = _how(d, method)
    labels = {
        "L_minus": f"{how}: ||mean_i A_i||_2",
        "L_plus": f"{how}: sqrt(lambda_max(mean_i A_i^2))",
        "L_plus_upper": f"bound: sqrt(mean_i ||A_i||_2^2) ({how})",
    }
    return L_minus, L_plus, float(np.sqrt(np.mean(L_i**2))), L_i, labels


def _how(d: int, method: str) -> str:
    if method == "dense" or (method == "auto" and d <= DENSE_EIG_MAX_DIM):
        return "exact: dense eigvalsh"
    return f"numerical: Lanczos eigsh (rel. tol {LANCZOS_TOL:g})"


def _sparse_quadratic_fstar(mean, b_mean, c_mean, method):
    x_star, how = solve_positive_definite(mean, b_mean, method=method)
    if x_star is None:
        return None, f"unbounded or not attained (mean Hessian not positive definite: {how})"
    return float(c_mean - 0.5 * b_mean @ x_star), f"exact: -b^T A^-1 b / 2 ({how})"


def _sparse_quadratic(A, b, *, c, x0, layout, method) -> Problem:
    if is_sparse(A):
        raise ValueError(
            "A must be a sequence of scipy.sparse matrices (one per worker), got a single "
            f"scipy.sparse matrix of shape {A.shape}"
        )
    mats = as_csr_list("A", list(A))
    n, (d, d2) = len(mats), mats[0].shape
    if d != d2:
        raise ValueError(f"A[i] must be square (d, d), got {(d, d2)}")
    for i, m in enumerate(mats):
        asym = abs(m - m.T)
        scale = max(1.0, float(abs(m).max()) if m.nnz else 0.0)
        if asym.nnz and float(asym.max()) > SYM_TOL * scale:
            raise ValueError(f"A must hold symmetric matrices A_i = A_i^T (A[{i}] is not)")
    check_choice("method", method, ["auto", "dense", "lanczos"])
    b, c, x0 = _check_bcx(b, c, x0, n, d)
    packed = pack(mats, layout)
    L_minus, L_plus, L_up, L_i, labels = sparse_quadratic_constants(mats, method=method)
    mean = functools.reduce(lambda s, m: s + m, mats) / n
    f_star, labels["f_star"] = _sparse_quadratic_fstar(mean, b.mean(0), float(c.mean()), method)
    loss, grad, vg = _sparse_quad_fns(packed.matvec)
    nnz = int(sum(m.nnz for m in mats))
    return Problem(
        name="quadratic",
        n_workers=n,
        dim=d,
        data={**packed.arrays, "b": b, "c": c},
        loss_fn=loss,
        grad_fn=grad,
        value_and_grad_fn=vg,
        x0=x0,
        f_star=f_star,
        L_minus=L_minus,
        L_plus=L_plus,
        L_plus_upper=L_up,
        L_i=L_i,
        labels=labels,
        config={
            "problem": "quadratic",
            "n_workers": n,
            "dim": d,
            "data": "user-supplied",
            "sparse": {"layout": packed.layout, "nnz": nnz},
        },
    )


def _tridiag_matvec(x):
    """``tridiag(-1, 2, -1) @ x`` in O(d) (Dirichlet ends)."""
    z = jnp.zeros((1,), x.dtype)
    left = jnp.concatenate([z, x[:-1]])
    right = jnp.concatenate([x[1:], z])
    return 2 * x - left - right


def _tri_Ax(x, data_i):
    """``A_i x`` in O(d)."""
    return (data_i["nu"] / 4) * _tridiag_matvec(x) + data_i["shift"] * x


def _tri_grad(x, data_i):
    return _tri_Ax(x, data_i).at[0].add(-data_i["b1"])  # b_i = b1_i e_1


def _tri_value_and_grad(x, data_i):
    Ax = _tri_Ax(x, data_i)
    return 0.5 * x @ Ax - data_i["b1"] * x[0], Ax.at[0].add(-data_i["b1"])


def _tri_loss(x, data_i):
    return 0.5 * x @ _tri_Ax(x, data_i) - data_i["b1"] * x[0]


def tridiagonal_matrices(problem: Problem) -> np.ndarray:
    """Dense ``A_i`` of a :func:`tridiagonal_quadratic` problem, numpy ``(n, d, d)``.

    The linear terms are ``b_i = data["b1"][i] e_1`` (see :func:`tridiagonal_linear_terms`).
    """
    d = problem.dim
    T = 2 * np.eye(d) - np.eye(d, k=1) - np.eye(d, k=-1)
    nu, shift = problem.data["nu"], problem.data["shift"]
    return (nu[:, None, None] / 4) * T[None, :, :] + shift[:, None, None] * np.eye(d)[None, :, :]


def tridiagonal_linear_terms(problem: Problem) -> np.ndarray:
    """Dense ``b_i`` of a :func:`tridiagonal_quadratic` problem, numpy ``(n, d)``."""
    b = np.zeros((problem.n_workers, problem.dim))
    b[:, 0] = problem.data["b1"]
    return b


#: Defaults of :func:`tridiagonal_quadratic`: ours, and those of the 3PC experiment code.
_TRIDIAGONAL_DEFAULTS = {
    False: {"dim": 100, "lambda_min": 1e-2, "seed": 0},
    True: {"dim": 1000, "lambda_min": 1e-6, "seed": 12345},
}


@PROBLEMS.register("tridiagonal_quadratic")
def tridiagonal_quadratic(
    n_workers: int = 10,
    dim: int | None = None,
    *,
    noise_scale: float = 0.5,
    lambda_min: float | None = None,
    seed: int | None = None,
    x0_scale: float = 1.0,
    paper: bool = False,
) -> Problem:
    """The 3PC/EF21 tridiagonal quadratic family (SPEC §3).

    ``f_i(x) = ½ xᵀA_i x − xᵀb_i`` with ``A_i = (nu_i/4) tridiag(−1, 2, −1) + lambda I`` and
    ``b_i = (nu_i/4) (−1 + noise_scale * zeta_i) e_1`` (stored as the scalars ``data["b1"]``);
    one common shift ``lambda`` makes the smallest eigenvalue of the mean Hessian
    ``mean_i A_i`` equal ``lambda_min`` (negative values give an indefinite, nonconvex
    problem). All ``A_i`` share the eigenvectors of ``tridiag(−1, 2, −1)`` with eigenvalues
    ``mu_k = 2 − 2 cos(k pi/(d + 1)) = 4 sin^2(k pi/(2(d + 1)))``, so the constants are exact
    closed forms: ``L_- = max_k |nu_bar mu_k/4 + lambda|``,
    ``L_+^2 = max_k mean_i (nu_i mu_k/4 + lambda)^2``, ``L_i = max_k |nu_i mu_k/4 + lambda|``.
    Gradients cost O(d) (no matrix is stored), so d = 10^6 is fine.

    Two instances of the random draws (``xi_i, zeta_i ~ N(0, 1)`` i.i.d.):

    * ``paper=False`` (default, ours): ``numpy.random.default_rng(seed)`` draws all ``xi``, then
      all ``zeta``, then ``x0``; ``nu_i = 1 + noise_scale * |xi_i|`` (so every ``A_i`` is
      positive semidefinite before the shift); ``x0`` is a standard Gaussian vector times
      ``x0_scale``. Defaults ``dim = 100``, ``lambda_min = 1e-2``, ``seed = 0``.
    * ``paper=True``: the draws of the authors' public experiment code for arXiv 2202.00998
      (github.com/IgorSokoloff/3pc_experiments_source_code, file
      ``quadratic loss/quad_preprocessing.py``, commit 2790da0): ``RandomState(seed)`` and, for
      each worker in turn, ``xi_i = normal(0, 1)`` then ``zeta_i = normal(0, 1)``;
      ``nu_i = 1 + noise_scale * xi_i`` without an absolute value (``nu_i < 0``, an indefinite
      ``A_i``, when ``xi_i < −1/noise_scale``); the same ``b_i`` as above;
      ``x0 = x0_scale * sqrt(d) e_1``. Defaults become the script's: ``dim = 1000``,
      ``lambda_min = 1e-6``, ``seed = 12345`` (the script re-seeds for every
      ``(n_workers, noise_scale)``; it runs ``n_workers`` in {10, 100, 1000} and
      ``noise_scale`` in {0.05, 0.1}). The script finds the shift from a dense numerical
      eigenvalue of ``mean_i A_i``; here it is the closed form, which agrees to about 1e-16
      absolute, and ``mu_k`` is evaluated as ``4 sin^2`` because ``2 − 2 cos`` loses about
      1e-10 relative accuracy at ``lambda_min = 1e-6``, d = 1000. ``f*`` is the exact minimum
      of ``f``; the script's own function values are ``½ xᵀ(Āx − b̄)``, not ``f``, and the
      paper's quadratic plots use ``||grad f||^2`` only.

    Args:
        n_workers: number of workers (>= 1).
        dim: dimension (>= 2); default 100, or 1000 with ``paper=True``.
        noise_scale: heterogeneity of the workers (>= 0).
        lambda_min: smallest eigenvalue of the mean Hessian after the shift; default 1e-2,
            or 1e-6 with ``paper=True``.
        seed: numpy seed of the draws (>= 0); default 0, or 12345 with ``paper=True``.
        x0_scale: scale of the starting point.
        paper: use the random draws and starting point of the 3PC experiment code.

    Returns:
        The problem; ``f*`` is closed form when ``lambda_min > 0``. ``config`` holds the
        resolved ``dim``, ``lambda_min`` and ``seed``, and ``"paper": True`` only for the
        paper instance (so the default's configuration, and its result hash, is unchanged).

    Raises:
        ValueError: bad sizes or scales.
        TypeError: ``paper`` not a bool.

    References:
        Richtárik, Sokolov, Fatkhullin, "EF21", arXiv 2106.05203; Richtárik, Sokolov,
        Gasanov, Fatkhullin, Li, Gorbunov, "3PC: Three Point Compressors", arXiv 2202.00998,
        §5 and App. D; their code: github.com/IgorSokoloff/3pc_experiments_source_code.
    """
    if not isinstance(paper, bool | np.bool_):
        raise TypeError(f"paper must be a bool, got {paper!r} ({type(paper).__name__})")
    paper = bool(paper)
    defaults = _TRIDIAGONAL_DEFAULTS[paper]
    n = check_int("n_workers", n_workers, min_value=1)
    d = check_int("dim", defaults["dim"] if dim is None else dim, min_value=2)
    s = check_real("noise_scale", noise_scale)
    if s < 0:
        raise ValueError(f"noise_scale must be >= 0, got {s!r}")
    lam_min = check_real("lambda_min", defaults["lambda_min"] if lambda_min is None else lambda_min)
    x0_scale = check_real("x0_scale", x0_scale)
    seed = check_int(
        "seed",
        defaults["seed"] if seed is None else seed,
        min_value=0,
        max_value=2**32 - 1 if paper else None,  # the range RandomState accepts
    )
    if paper:
        # One (n, 2) call draws the same stream as the script's per-worker
        # normal(size=1) calls for xi_i then zeta_i (the legacy generator caches its second
        # Gaussian in the state, so chunking does not change the sequence).
        xi, zeta = np.random.RandomState(seed).normal(0.0, 1.0, size=(n, 2)).T
        nu = 1 + s * xi
        x0 = np.zeros(d)
        x0[0] = x0_scale * math.sqrt(d)
        mu = 4 * np.sin(np.arange(1, d + 1) * np.pi / (2 * (d + 1))) ** 2
    else:
        rng = np.random.default_rng(seed)
        nu = 1.0 + s * np.abs(rng.standard_normal(n))
        zeta = rng.standard_normal(n)
        x0 = x0_scale * rng.standard_normal(d)
        mu = 2 - 2 * np.cos(np.arange(1, d + 1) * np.pi / (d + 1))
    b1 = (nu / 4) * (-1.0 + s * zeta)  # b_i = b1_i e_1, stored as (n,) to keep data O(n)
    # min over k, not mu.min(): with paper=True the mean nu can be negative (then the smallest
    # eigenvalue sits at the largest mu_k); for nu_bar > 0 both give the same float.
    shift = lam_min - np.min(nu.mean() / 4 * mu)
    eig_i = (nu[:, None] / 4) * mu[None, :] + shift  # (n, d) eigenvalues of each A_i
    L_minus = float(np.max(np.abs(eig_i.mean(0))))
    L_plus = float(np.sqrt(np.max(np.mean(eig_i**2, axis=0))))
    L_i = np.max(np.abs(eig_i), axis=1)
    if lam_min > 0:
        # f* = -½ b̄ᵀ Ā⁻¹ b̄ with Ā diagonal in the sine basis V_jk = sqrt(2/(d+1)) sin(jk pi/(d+1));
        # b̄ = mean(b1) e_1, so (Vᵀ b̄)_k = sqrt(2/(d+1)) sin(k pi/(d+1)) mean(b1).
        k = np.arange(1, d + 1)
        bb = np.sqrt(2 / (d + 1)) * np.sin(k * np.pi / (d + 1)) * b1.mean()
        f_star = float(-0.5 * np.sum(bb**2 / eig_i.mean(0)))
        f_label = "exact: -b^T A^-1 b / 2 in the sine eigenbasis"
    else:
        f_star, f_label = None, "unbounded below (lambda_min <= 0)"
    config = {
        "problem": "tridiagonal_quadratic",
        "n_workers": n,
        "dim": d,
        "noise_scale": s,
        "lambda_min": lam_min,
        "seed": seed,
        "x0_scale": x0_scale,
    }
    if paper:
        config["paper"] = True
    return Problem(
        name="tridiagonal_quadratic",
        n_workers=n,
        dim=d,
        data={"nu": nu, "shift": np.full(n, shift), "b1": b1},
        loss_fn=_tri_loss,
        grad_fn=_tri_grad,
        value_and_grad_fn=_tri_value_and_grad,
        x0=x0,
        f_star=f_star,
        L_minus=L_minus,
        L_plus=L_plus,
        L_plus_upper=float(np.sqrt(np.mean(L_i**2))),
        L_i=L_i,
        labels={
            "f_star": f_label,
            "L_minus": "exact: max_k |mean_i eig_k(A_i)| (shared eigenbasis)",
            "L_plus": "exact: sqrt(max_k mean_i eig_k(A_i)^2) (shared eigenbasis)",
            "L_plus_upper": "bound: sqrt(mean_i L_i^2)",
        },
        config=config,
    )
