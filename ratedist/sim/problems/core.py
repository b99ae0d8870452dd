"""The :class:`Problem` container, the problem registry and shared smoothness-constant helpers."""

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
from ratedist._validation import check_positive

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
        hyper: scalar hyperparameters of the stochastic oracle (``noise_std`` of
            :meth:`with_noise`) and their values; the simulator passes them (or a sweep's
            values) to ``stochastic_grad_fn`` as keyword arguments, as inputs of the compiled
            program.
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
    hyper: Mapping[str, float] = field(default_factory=dict)

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
        ``noise_std`` is a hyperparameter of the problem (:attr:`hyper`): runs with another
        noise level (``run(..., hyper={"noise_std": ...})``) reuse the compiled step.

        Raises:
            ValueError: ``noise_std`` not > 0.
        """
        s = check_positive("noise_std", noise_std)
        grad_fn = self.grad_fn
        d = self.dim

        def sgrad(x, data_i, key, noise_std=s):
            g = grad_fn(x, data_i)
            scale = jnp.asarray(noise_std).astype(g.dtype)  # a weakly typed float's dtype
            return g + scale * jax.random.normal(key, g.shape, g.dtype)

        def var(x, data_i):
            return jnp.asarray(s * s * d, x.dtype)

        cfg = dict(self.config)
        cfg["noise_std"] = s
        return dataclasses.replace(
            self,
            stochastic_grad_fn=sgrad,
            variance_fn=var,
            config=cfg,
            hyper={"noise_std": s},
        )


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


def make_problem(name: str, **params: Any) -> Problem:
    """Build a registered problem by name (``PROBLEMS.names()``) with keyword parameters.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    return PROBLEMS.get(name)(**params)
