"""Shared machinery of the sample-based problems: data split, minibatch oracles, regulariser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_array, check_int


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
