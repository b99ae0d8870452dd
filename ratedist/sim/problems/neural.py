"""A small nonconvex stochastic problem: one-hidden-layer tanh MLP regression."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_int
from ratedist.sim.problems.core import PROBLEMS, Problem
from ratedist.sim.problems.sampled import _optional_minibatch_oracle, _split


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
