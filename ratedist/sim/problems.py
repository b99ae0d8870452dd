"""Optimisation problems for the simulator: ``f(x) = (1/n) sum_i f_i(x)`` split over workers.

A :class:`Problem` is data plus pure JAX functions of ONE worker's data slice:

    problem = tridiagonal_quadratic(n_workers=10, dim=50, seed=0)
    problem.grad_fn(x, data_i)            # exact local gradient (JAX, jit/vmap safe)
    problem.L_minus, problem.L_plus       # smoothness constants computed here (numpy)

``data`` is a pytree whose leaves all have the worker axis first (shape ``(n_workers, ...)``),
so the engines can map or shard it. Every constant carries a label in ``problem.labels`` saying
whether it is exact, a bound, or numerical.

Smoothness conventions (arXiv 2202.00998, Assumptions 1-2): ``f`` is ``L_-``-smooth and
``(1/n) sum_i ||grad f_i(x) - grad f_i(y)||^2 <= L_+^2 ||x - y||^2``. Always
``L_- <= L_+ <= sqrt(mean_i L_i^2) = L_plus_upper``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._registry import Registry
from ratedist._validation import check_array, check_int, check_positive, check_real

#: Registry of problem constructors (used by configs and the CLI).
PROBLEMS: Registry[Callable[..., Problem]] = Registry("problem")


@dataclass(frozen=True, eq=False)
class Problem:
    """A distributed finite-sum problem.

    Attributes:
        name: short name (``"tridiagonal_quadratic"``, ``"logistic_nonconvex"``, ...).
        n_workers: number of workers ``n``.
        dim: dimension ``d`` of ``x``.
        data: pytree of numpy arrays, every leaf with leading axis ``n_workers``.
        loss_fn: ``(x, data_i) -> f_i(x)`` (JAX scalar).
        grad_fn: ``(x, data_i) -> grad f_i(x)`` exact (JAX, shape ``(d,)``).
        x0: starting point, numpy ``(d,)``.
        f_star: ``inf f`` where known (see ``labels["f_star"]``), else None.
        L_minus: smoothness constant of ``f`` (``labels["L_minus"]``), or None if unknown.
        L_plus: ``L_+`` (exact where ``labels["L_plus"]`` says so, else the upper bound).
        L_plus_upper: ``sqrt(mean_i L_i^2)`` (an upper bound on ``L_+``), or None.
        L_i: per-worker smoothness constants, numpy ``(n,)``, or None.
        labels: how each constant was obtained ("exact", "bound: ...", "numerical: ...").
        stochastic_grad_fn: ``(x, data_i, key) -> g_i`` unbiased stochastic gradient, or None
            (then the runs are deterministic).
        variance_fn: ``(x, data_i) -> E||g_i - grad f_i(x)||^2`` of the stochastic oracle
            (the known variance model), or None.
        value_and_grad_fn: optional fused ``(x, data_i) -> (f_i(x), grad f_i(x))`` (one pass
            over memory instead of two); must agree with ``loss_fn``/``grad_fn``.
        config: canonical JSON-able description (used for result hashing).
    """

    name: str
    n_workers: int
    dim: int
    data: Any
    loss_fn: Callable[[Any, Any], Any]
    grad_fn: Callable[[Any, Any], Any]
    x0: np.ndarray
    f_star: float | None
    L_minus: float | None
    L_plus: float | None
    L_plus_upper: float | None
    L_i: np.ndarray | None
    labels: Mapping[str, str] = field(default_factory=dict)
    stochastic_grad_fn: Callable[[Any, Any, Any], Any] | None = None
    variance_fn: Callable[[Any, Any], Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    value_and_grad_fn: Callable[[Any, Any], Any] | None = None

    def local_value_and_grad(self, x: Any, data_i: Any) -> tuple[Any, Any]:
        """``(f_i(x), grad f_i(x))`` (JAX), sharing work when the problem provides it."""
        if self.value_and_grad_fn is not None:
            return self.value_and_grad_fn(x, data_i)
        return self.loss_fn(x, data_i), self.grad_fn(x, data_i)

    @property
    def stochastic(self) -> bool:
        """True when the algorithms see stochastic gradients."""
        return self.stochastic_grad_fn is not None

    @functools.cached_property
    def _jitted(self):
        data = jax.tree_util.tree_map(jnp.asarray, self.data)
        losses = jax.jit(lambda x: jax.vmap(self.loss_fn, in_axes=(None, 0))(x, data))
        grads = jax.jit(lambda x: jax.vmap(self.grad_fn, in_axes=(None, 0))(x, data))
        return losses, grads

    def local_losses(self, x: Any) -> np.ndarray:
        """``[f_1(x), ..., f_n(x)]`` as numpy (evaluated with JAX in its default float)."""
        return np.asarray(self._jitted[0](jnp.asarray(x)))

    def loss(self, x: Any) -> float:
        """``f(x) = (1/n) sum_i f_i(x)``."""
        return float(np.mean(self.local_losses(x)))

    def local_grads(self, x: Any) -> np.ndarray:
        """Exact local gradients, numpy ``(n, d)``."""
        return np.asarray(self._jitted[1](jnp.asarray(x)))

    def grad(self, x: Any) -> np.ndarray:
        """Exact full gradient ``(1/n) sum_i grad f_i(x)``."""
        return self.local_grads(x).mean(axis=0)

    def with_noise(self, noise_std: float) -> Problem:
        """Same problem with stochastic gradients ``grad f_i(x) + noise_std * N(0, I_d)``.

        The variance model is exact: ``E||g_i - grad f_i(x)||^2 = noise_std^2 d``.

        Raises:
            ValueError: ``noise_std`` not > 0.
        """
        s = check_positive("noise_std", noise_std)
        grad_fn = self.grad_fn
        d = self.dim

        def sgrad(x, data_i, key):
            g = grad_fn(x, data_i)
            return g + s * jax.random.normal(key, g.shape, g.dtype)

        def var(x, data_i):
            return jnp.asarray(s * s * d, x.dtype)

        cfg = dict(self.config)
        cfg["noise_std"] = s
        return dataclasses.replace(self, stochastic_grad_fn=sgrad, variance_fn=var, config=cfg)


def _spectral_constants(mats: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """``(L_-, L_+, sqrt(mean L_i^2), L_i)`` of symmetric Hessians ``mats`` (n, d, d)."""
    mean = mats.mean(axis=0)
    L_minus = float(np.max(np.abs(np.linalg.eigvalsh(mean))))
    sq = np.einsum("nij,njk->ik", mats, mats) / mats.shape[0]  # (1/n) sum A_i^T A_i
    L_plus = float(math.sqrt(max(np.max(np.linalg.eigvalsh(sq)), 0.0)))
    L_i = np.array([np.max(np.abs(np.linalg.eigvalsh(m))) for m in mats])
    return L_minus, L_plus, float(math.sqrt(np.mean(L_i**2))), L_i


def _quadratic_fstar(A_mean: np.ndarray, b_mean: np.ndarray, c_mean: float):
    eig = np.linalg.eigvalsh(A_mean)
    if eig[0] <= 0:
        return None, "unbounded or not attained (mean Hessian not positive definite)"
    x_star = np.linalg.solve(A_mean, b_mean)
    return float(c_mean - 0.5 * b_mean @ x_star), "exact: -b^T A^-1 b / 2 (closed form)"


# --------------------------------------------------------------------------- quadratics


def _dense_quad_loss(x, data_i):
    A, b, c = data_i["A"], data_i["b"], data_i["c"]
    return 0.5 * x @ (A @ x) - b @ x + c


def _dense_quad_grad(x, data_i):
    return data_i["A"] @ x - data_i["b"]


@PROBLEMS.register("quadratic")
def quadratic(A: Any, b: Any, *, c: Any = None, x0: Any = None) -> Problem:
    """User-supplied quadratics ``f_i(x) = ½ xᵀA_i x − xᵀb_i + c_i``.

    Args:
        A: ``(n, d, d)`` symmetric matrices (one per worker).
        b: ``(n, d)`` linear terms.
        c: optional ``(n,)`` constants (default 0).
        x0: starting point (default zeros).

    Returns:
        The problem with exact ``L_-`` (spectral norm of the mean Hessian), exact ``L_+``
        (``sqrt(lambda_max((1/n) sum A_i^2))``), ``L_plus_upper`` and closed-form ``f*`` (when
        the mean Hessian is positive definite; None otherwise).

    Raises:
        ValueError: shapes inconsistent, non-finite entries or non-symmetric ``A_i``.
    """
    A = check_array("A", A, ndim=3)
    n, d, d2 = A.shape
    if d != d2:
        raise ValueError(f"A must have shape (n, d, d), got {A.shape}")
    if not np.allclose(A, np.swapaxes(A, 1, 2), rtol=1e-12, atol=1e-12):
        raise ValueError("A must hold symmetric matrices A_i = A_i^T")
    b = check_array("b", b, ndim=2)
    if b.shape != (n, d):
        raise ValueError(f"b must have shape (n_workers, d) = {(n, d)}, got {b.shape}")
    c = np.zeros(n) if c is None else check_array("c", c, ndim=1)
    if c.shape != (n,):
        raise ValueError(f"c must have shape (n_workers,) = {(n,)}, got {c.shape}")
    x0 = np.zeros(d) if x0 is None else check_array("x0", x0, ndim=1)
    if x0.shape != (d,):
        raise ValueError(f"x0 must have shape (d,) = {(d,)}, got {x0.shape}")
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


@PROBLEMS.register("tridiagonal_quadratic")
def tridiagonal_quadratic(
    n_workers: int = 10,
    dim: int = 100,
    *,
    noise_scale: float = 0.5,
    lambda_min: float = 1e-2,
    seed: int = 0,
    x0_scale: float = 1.0,
) -> Problem:
    """The 3PC/EF21 tridiagonal quadratic family (SPEC §3).

    ``f_i(x) = ½ xᵀA_i x − xᵀb_i`` with ``A_i = (nu_i/4) tridiag(−1, 2, −1) + lambda I``.

    Construction (the family of arXiv 2202.00998 §D / 2106.05203 §5; the exact random draws
    of the papers are not published, these are ours): ``nu_i = 1 + noise_scale * |xi_i|``,
    ``xi_i ~ N(0, 1)`` i.i.d. per worker; ``b_i = (nu_i/4) (−1 + noise_scale * zeta_i) e_1``
    (stored as the scalars ``data["b1"]``),
    ``zeta_i ~ N(0, 1)``; one common shift ``lambda`` chosen so that the smallest eigenvalue of
    the mean Hessian ``mean_i A_i`` equals ``lambda_min`` (negative values give an indefinite,
    nonconvex problem). All ``A_i`` share the eigenvectors of ``tridiag(−1, 2, −1)`` with
    eigenvalues ``mu_k = 2 − 2 cos(k pi/(d + 1))``, so the constants are exact closed forms:
    ``L_- = max_k |nu_bar mu_k/4 + lambda|``, ``L_+^2 = max_k mean_i (nu_i mu_k/4 + lambda)^2``,
    ``L_i = max_k |nu_i mu_k/4 + lambda|``. ``x0`` is a fixed standard Gaussian draw times
    ``x0_scale``. Gradients cost O(d) (no matrix is stored), so d = 10^6 is fine.

    Args:
        n_workers: number of workers (>= 1).
        dim: dimension (>= 2).
        noise_scale: heterogeneity of the workers (>= 0).
        lambda_min: smallest eigenvalue of the mean Hessian after the shift.
        seed: numpy seed of the draws.
        x0_scale: scale of the random starting point.

    Returns:
        The problem; ``f*`` is closed form when ``lambda_min > 0``.

    Raises:
        ValueError: bad sizes or scales.

    References:
        Richtárik, Sokolov, Fatkhullin, "EF21", arXiv 2106.05203; Richtárik et al., "3PC",
        arXiv 2202.00998.
    """
    n = check_int("n_workers", n_workers, min_value=1)
    d = check_int("dim", dim, min_value=2)
    s = check_real("noise_scale", noise_scale)
    if s < 0:
        raise ValueError(f"noise_scale must be >= 0, got {s!r}")
    lam_min = check_real("lambda_min", lambda_min)
    x0_scale = check_real("x0_scale", x0_scale)
    seed = check_int("seed", seed, min_value=0)
    rng = np.random.default_rng(seed)
    nu = 1.0 + s * np.abs(rng.standard_normal(n))
    zeta = rng.standard_normal(n)
    b1 = (nu / 4) * (-1.0 + s * zeta)  # b_i = b1_i e_1, stored as (n,) to keep data O(n)
    x0 = x0_scale * rng.standard_normal(d)
    mu = 2 - 2 * np.cos(np.arange(1, d + 1) * np.pi / (d + 1))
    shift = lam_min - nu.mean() / 4 * mu.min()
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
        config={
            "problem": "tridiagonal_quadratic",
            "n_workers": n,
            "dim": d,
            "noise_scale": s,
            "lambda_min": lam_min,
            "seed": seed,
            "x0_scale": x0_scale,
        },
    )


# --------------------------------------------------------------- sample-based problems


def _split(X: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous equal parts; the remainder (< n rows) is dropped so every worker has m rows."""
    m = X.shape[0] // n
    if m < 1:
        raise ValueError(f"n_workers must be <= number of samples {X.shape[0]}, got {n}")
    return X[: m * n].reshape(n, m, X.shape[1]), y[: m * n].reshape(n, m)


def _minibatch_oracle(sample_grad: Callable, batch_size: int):
    """Minibatch of ``batch_size`` samples drawn uniformly WITH replacement.

    Variance model (exact): ``E||g - grad f_i||^2 = (1/b) mean_j ||grad l_j - grad f_i||^2``.
    """

    def per_sample(x, data_i):
        return jax.vmap(sample_grad, in_axes=(None, 0, 0))(x, data_i["X"], data_i["y"])

    def sgrad(x, data_i, key):
        m = data_i["y"].shape[0]
        idx = jax.random.randint(key, (batch_size,), 0, m)
        g = jax.vmap(sample_grad, in_axes=(None, 0, 0))(x, data_i["X"][idx], data_i["y"][idx])
        return jnp.mean(g, axis=0) + _reg_grad(x, data_i)

    def var(x, data_i):
        G = per_sample(x, data_i)
        return jnp.mean(jnp.sum((G - G.mean(0)[None, :]) ** 2, axis=1)) / batch_size

    return sgrad, var


def _optional_minibatch_oracle(
    sample_grad: Callable, batch_size: Any
) -> tuple[Callable | None, Callable | None, dict[str, int]]:
    """``(sgrad, var, config entries)`` of :func:`_minibatch_oracle`; all empty for None."""
    if batch_size is None:
        return None, None, {}
    b = check_int("batch_size", batch_size, min_value=1)
    sgrad, var = _minibatch_oracle(sample_grad, b)
    return sgrad, var, {"batch_size": b}


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """User-supplied data: ``X`` of shape ``(M, d)`` and ``y`` of shape ``(M,)``."""
    X = check_array("X", X, ndim=2)
    if y is None:
        raise ValueError("y must be given with X")
    y = check_array("y", y, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have {X.shape[0]} entries (rows of X), got {y.shape[0]}")
    return X, y


def _reg_grad(x, data_i):
    lam = data_i["lam"]
    return lam * 2 * x / (1 + x * x) ** 2


def _reg_loss(x, data_i):
    return data_i["lam"] * jnp.sum(x * x / (1 + x * x))


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
        X: ``(M, d)`` design matrix, or None for synthetic Gaussian data
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
        X, y = _check_xy(X, y)
        labels = set(np.unique(y).tolist())
        if labels <= {0.0, 1.0}:
            y = 2 * y - 1
        elif not labels <= {-1.0, 1.0}:
            raise ValueError(
                f"y must hold labels in {{-1, 1}} or {{0, 1}}, got {sorted(labels)[:5]}"
            )
        src = {"data": source or "user-supplied", "n_samples": X.shape[0], "dim": X.shape[1]}
    Xs, ys = _split(X, y, n)
    m, d = Xs.shape[1], Xs.shape[2]
    Xall = Xs.reshape(n * m, d)
    L_i = np.array([np.linalg.norm(Xi, 2) ** 2 / (4 * m) for Xi in Xs]) + 2 * lam
    L_minus = float(np.linalg.norm(Xall, 2) ** 2 / (4 * n * m) + 2 * lam)
    L_up = float(np.sqrt(np.mean(L_i**2)))
    data = {"X": Xs, "y": ys, "lam": np.full(n, lam)}
    prob = Problem(
        name="logistic_nonconvex",
        n_workers=n,
        dim=d,
        data=data,
        loss_fn=_logistic_loss,
        grad_fn=_logistic_grad,
        x0=np.zeros(d),
        f_star=0.0,
        L_minus=L_minus,
        L_plus=L_up,
        L_plus_upper=L_up,
        L_i=L_i,
        labels={
            "f_star": "lower bound: 0 (loss and regulariser are nonnegative)",
            "L_minus": "bound: ||X||_2^2/(4M) + 2 lam",
            "L_plus": "bound: sqrt(mean_i L_i^2) (no exact value computed)",
            "L_plus_upper": "bound: sqrt(mean_i L_i^2), L_i <= ||X_i||_2^2/(4m) + 2 lam",
        },
        config={"problem": "logistic_nonconvex", "n_workers": n, "lam": lam, **src},
    )
    if solve_f_star:
        prob = _with_numeric_fstar(prob)
    sgrad, var, batch_cfg = _optional_minibatch_oracle(_logistic_sample_grad, batch_size)
    if batch_cfg:
        prob = dataclasses.replace(
            prob, stochastic_grad_fn=sgrad, variance_fn=var, config={**prob.config, **batch_cfg}
        )
    return prob


def _with_numeric_fstar(prob: Problem) -> Problem:
    """``f*`` of the logistic problem by L-BFGS-B in numpy float64 (independent of JAX's dtype)."""
    import scipy.optimize
    from scipy.special import expit

    n, m, d = prob.data["X"].shape
    X = prob.data["X"].reshape(n * m, d)
    y = prob.data["y"].reshape(n * m)
    lam = float(prob.data["lam"][0])

    def fun(x):
        z = -y * (X @ x)
        f = np.mean(np.logaddexp(0.0, z)) + lam * np.sum(x * x / (1 + x * x))
        g = -(X.T @ (y * expit(z))) / (n * m) + lam * 2 * x / (1 + x * x) ** 2
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


# ------------------------------------------------------------------------- real data


def load_libsvm(path: Any, *, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a LIBSVM/SVMlight text file into dense numpy arrays.

    Format: one sample per line, ``label index:value index:value ...`` with 1-based,
    increasing indices; ``#`` starts a comment; blank lines are skipped; a ``qid:`` token is
    ignored.

    Args:
        path: file path.
        n_features: number of columns (default: the largest index seen).

    Returns:
        ``(X, y)``: ``X`` float64 ``(M, n_features)``, ``y`` float64 ``(M,)``.

    Raises:
        ValueError: malformed line (its number is named), index < 1 or > ``n_features``,
            or no samples.
    """
    rows: list[tuple[float, list[int], list[float]]] = []
    max_idx = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            try:
                label = float(tokens[0])
                idx, val = [], []
                for tok in tokens[1:]:
                    k, v = tok.split(":", 1)
                    if k == "qid":
                        continue
                    idx.append(int(k))
                    val.append(float(v))
            except ValueError as exc:
                raise ValueError(
                    f"path {str(path)!r}: malformed line {lineno}: {raw.strip()!r}"
                ) from exc
            if idx and min(idx) < 1:
                raise ValueError(f"path {str(path)!r}: line {lineno}: indices must be >= 1")
            max_idx = max([max_idx, *idx])
            rows.append((label, idx, val))
    if not rows:
        raise ValueError(f"path {str(path)!r} holds no samples")
    p = max_idx if n_features is None else check_int("n_features", n_features, min_value=1)
    if max_idx > p:
        raise ValueError(f"n_features must be >= the largest index {max_idx}, got {p}")
    X = np.zeros((len(rows), p))
    y = np.empty(len(rows))
    for r, (label, idx, val) in enumerate(rows):
        y[r] = label
        X[r, np.asarray(idx, dtype=np.int64) - 1] = val
    return X, y


def _standardize(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


@PROBLEMS.register("logistic_libsvm")
def logistic_libsvm(
    path: Any,
    *,
    n_workers: int = 20,
    lam: float = 0.1,
    n_features: int | None = None,
    standardize: bool = False,
    batch_size: int | None = None,
    solve_f_star: bool = True,
) -> Problem:
    """:func:`logistic_nonconvex` on a LIBSVM file (labels ``{−1, 1}`` or ``{0, 1}``).

    Args:
        path: the file (read with :func:`load_libsvm`).
        n_workers, lam, batch_size, solve_f_star: as in :func:`logistic_nonconvex`.
        n_features: number of columns (default: largest index in the file).
        standardize: centre and scale every column to unit variance first.

    Raises:
        ValueError: unreadable file, labels not binary, bad sizes.
    """
    X, y = load_libsvm(path, n_features=n_features)
    if standardize:
        X = _standardize(X)
    return logistic_nonconvex(
        X,
        y,
        n_workers=n_workers,
        lam=lam,
        batch_size=batch_size,
        solve_f_star=solve_f_star,
        source=f"libsvm:{path}" + (":standardized" if standardize else ""),
    )


@PROBLEMS.register("logistic_breast_cancer")
def logistic_breast_cancer(
    *,
    n_workers: int = 20,
    lam: float = 0.1,
    batch_size: int | None = None,
    solve_f_star: bool = True,
) -> Problem:
    """:func:`logistic_nonconvex` on scikit-learn's Wisconsin breast-cancer data (569 x 30).

    Features are standardized (centred, unit variance) so that ``L`` is O(1); labels
    malignant/benign are mapped to ``{−1, +1}``. Needs the optional extra ``data``
    (scikit-learn); the data ship inside the package (no download).

    Raises:
        ImportError: scikit-learn is not installed (``pip install ratedist[data]``).
    """
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "logistic_breast_cancer needs scikit-learn: pip install 'ratedist[data]'"
        ) from exc
    X, y = load_breast_cancer(return_X_y=True)
    return logistic_nonconvex(
        _standardize(np.asarray(X, np.float64)),
        np.asarray(y, np.float64),
        n_workers=n_workers,
        lam=lam,
        batch_size=batch_size,
        solve_f_star=solve_f_star,
        source="sklearn:breast_cancer:standardized",
    )


# --------------------------------------------------------------------------------- MLP


def _mlp_layout(dim_in: int, hidden: int) -> list[tuple[str, tuple[int, ...]]]:
    return [("W1", (hidden, dim_in)), ("b1", (hidden,)), ("w2", (hidden,)), ("b2", ())]


def _mlp_unravel(x, dim_in: int, hidden: int):
    out, i = {}, 0
    for name, shape in _mlp_layout(dim_in, hidden):
        size = int(np.prod(shape)) if shape else 1
        out[name] = x[i : i + size].reshape(shape)
        i += size
    return out


@PROBLEMS.register("mlp")
def mlp(
    n_workers: int = 4,
    *,
    hidden: int = 16,
    dim_in: int = 8,
    n_samples: int = 512,
    seed: int = 0,
    batch_size: int | None = 16,
) -> Problem:
    """A one-hidden-layer tanh MLP regression (nonconvex, stochastic).

    Data: ``a ~ N(0, I)``, targets from a random teacher MLP of the same shape plus
    ``0.1 N(0, 1)`` noise, split in contiguous equal parts. Loss of a sample
    ``½ (w2ᵀ tanh(W1 a + b1) + b2 − y)^2``; parameters flattened into ``x``
    (``W1, b1, w2, b2``, row-major), ``x0`` a Glorot-scaled draw. Gradients by ``jax.grad``.
    ``f* = 0`` is a lower bound; no smoothness constants (``gamma`` must be given).

    Args:
        n_workers: number of workers.
        hidden, dim_in: layer sizes.
        n_samples: total samples.
        seed: numpy seed.
        batch_size: minibatch size (with replacement) or None for full local gradients.

    Raises:
        ValueError: bad sizes.
    """
    n = check_int("n_workers", n_workers, min_value=1)
    h = check_int("hidden", hidden, min_value=1)
    p = check_int("dim_in", dim_in, min_value=1)
    M = check_int("n_samples", n_samples, min_value=n)
    seed = check_int("seed", seed, min_value=0)
    rng = np.random.default_rng(seed)
    d = h * p + 2 * h + 1

    def draw():
        W1 = rng.standard_normal((h, p)) * math.sqrt(2.0 / (h + p))
        w2 = rng.standard_normal(h) * math.sqrt(2.0 / (h + 1))
        return np.concatenate([W1.ravel(), np.zeros(h), w2, [0.0]])

    teacher, x0 = draw(), draw()
    X = rng.standard_normal((M, p))
    tw = _mlp_unravel(teacher, p, h)
    y = np.tanh(X @ tw["W1"].T + tw["b1"]) @ tw["w2"] + tw["b2"] + 0.1 * rng.standard_normal(M)

    def sample_loss(x, a, t):
        w = _mlp_unravel(x, p, h)
        return 0.5 * (w["w2"] @ jnp.tanh(w["W1"] @ a + w["b1"]) + w["b2"] - t) ** 2

    def loss_fn(x, data_i):
        losses = jax.vmap(sample_loss, in_axes=(None, 0, 0))(x, data_i["X"], data_i["y"])
        return jnp.mean(losses)

    grad_fn = jax.grad(loss_fn)
    Xs, ys = _split(X, y, n)
    cfg = {"problem": "mlp", "n_workers": n, "hidden": h, "dim_in": p, "n_samples": M, "seed": seed}
    sgrad, var, batch_cfg = _optional_minibatch_oracle(jax.grad(sample_loss), batch_size)
    cfg.update(batch_cfg)
    return Problem(
        name="mlp",
        n_workers=n,
        dim=d,
        data={"X": Xs, "y": ys, "lam": np.zeros(n)},
        loss_fn=loss_fn,
        grad_fn=grad_fn,
        x0=x0,
        f_star=0.0,
        L_minus=None,
        L_plus=None,
        L_plus_upper=None,
        L_i=None,
        labels={
            "f_star": "lower bound: 0 (squared loss)",
            "L_minus": "unknown",
            "L_plus": "unknown",
            "L_plus_upper": "unknown",
        },
        stochastic_grad_fn=sgrad,
        variance_fn=var,
        config=cfg,
    )


def make_problem(name: str, **params: Any) -> Problem:
    """Build a registered problem by name (``PROBLEMS.names()``) with keyword parameters.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    return PROBLEMS.get(name)(**params)
