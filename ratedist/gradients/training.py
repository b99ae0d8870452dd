"""Distributed SGD training of the :data:`~ratedist.gradients.models.MODELS` with a compressor:
the runs of the training comparison (:mod:`ratedist.gradients.compare`).

**Protocol.** ``N = 4`` workers; at every step each worker draws its own minibatch (indices uniform with
replacement, keys ``fold_in(fold_in(data_key, t), i)``; cheaper than ``jax.random.choice`` without
replacement, which permutes the training set for every draw), computes its
gradient, compresses it, and the server averages the compressed gradients and takes a plain
SGD step (``optax.sgd(lr)``, no momentum) — the setting of the papers' convergence bound
(``eta L (sigma^2 + d eps_Q) / N``), where the quantizer enters only through its error; Adam
would rescale coordinates and blur that link. The engine is
:func:`ratedist.optax.compress_then_average` (one flat vector per worker: one scale or norm
for the whole model). Seeds are vmapped and the steps run in ``lax.scan``; every seed draws
its own initial parameters, minibatches and compressor randomness, and all compressors see the
same seeds (common random numbers for initialisation and data).

**Plan and cost** (measured on the 2 shared CPU cores of the development machine, load
average ~10, so ~4x the unloaded times; the convolutional model compiles in ~11.5 s
unloaded). One compressor's grid as its own program costs, for ``cnn-digits`` (5 step sizes x
6 seeds x 100 steps), 49 s to compile and 53 s to run; for ``mlp-digits`` (200 steps) 19 s and
3.5 s: compilation dominates the small models and is half of the CNN's cost, and 18 distinct
compressors per model make 18 programs. Hence :func:`train_group`: ONE program per model for
all its compressors, in which the model's gradient is traced once for the runs of every
compressor, step size and seed, and only the compressor and the SGD step are traced per
compressor (``logistic-digits``: 18 compressors x 30 runs x 200 steps, 102 s to compile and
10 s to run at load ~10). A traced budget (one program per compressor family, the budget an
input) is not possible with these compressors: TNQ/TUQ/QSGD/NUQSGD bake their level tables
into the trace and Top-K's ``k`` is a static shape. The runs are grouped by seed inside the
program (the runs of one seed share its minibatches), so the convolutions see one batch of
images per seed and fold the runs into their output channels: flattening all 432 runs of the
CNN into one vmap instead turned them into a 432-group convolution, 18 s per step. The CNN runs
:data:`STEPS` = 100 steps (its per-step cost is ~20x the MLP's); each factor of its step grid
costs a fifth of its run time (the runs dominate the CNN's program: 41 s to compile, 668 s to
run 18 compressors x 5 step sizes x 6 seeds at load ~5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from ratedist._validation import check_int
from ratedist.compressors import Compressor
from ratedist.compressors.base import FLOAT_BITS
from ratedist.gradients.models import MODELS, GradientModel
from ratedist.optax import compress_then_average

#: Workers.
N_WORKERS = 4
#: SGD step size per model. Uncompressed training (200 steps, 3 seeds) on the grid
#: 0.1, 0.3, 1, 3 reached its lowest loss at 3 (logistic) and 1 (MLP; 3 diverged); one grid
#: step below that is used for every compressor, to leave room for compression noise.
LEARNING_RATES: dict[str, float] = {
    "logistic-digits": 1.0,
    "mlp-digits": 0.3,
    "cnn-digits": 0.3,
    "logistic-breast-cancer": 1.0,
}


class TrainCurves(NamedTuple):
    """Results of one (model, compressor) over seeds (numpy, leading axis = seed).

    Attributes:
        steps: ``(E,)`` step index of each evaluation (0 = initial parameters).
        train_loss: ``(S, E)`` loss on the whole training split.
        bits: ``(S, E)`` cumulative container bits of ONE worker (all workers / N).
        entropy_bits: ``(S, E)`` cumulative entropy-coded bits of one worker (the
            ``entropy_bits`` of the compressors' :class:`~ratedist.compressors.CompressInfo`,
            counted by :func:`~ratedist.optax.compress_then_average`; 32 bits per coordinate
            uncompressed).
        test_accuracy: ``(S,)`` test accuracy of the final parameters.
        seconds: wall time of the call (compilation included).
        compile_seconds: the part of ``seconds`` spent tracing and compiling the program.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    bits: np.ndarray
    entropy_bits: np.ndarray
    test_accuracy: np.ndarray
    seconds: float
    compile_seconds: float = math.nan


def train(
    model: GradientModel | str,
    compressor: Compressor | None,
    *,
    error_feedback: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 200,
    batch_size: int = 32,
    lr: float | None = None,
    eval_every: int = 10,
    n_workers: int = N_WORKERS,
) -> TrainCurves:
    """Compressed distributed SGD on a registered model, one vmapped program over seeds.

    Args:
        model: a :class:`GradientModel` or its name in :data:`MODELS`.
        compressor: a compressor, or None for uncompressed averaging (32 bits per coordinate).
        error_feedback: keep an EF14 residual per worker.
        seeds: one run per seed (initial parameters, minibatches, compressor randomness).
        steps: SGD steps (a multiple of ``eval_every``).
        batch_size: minibatch size of each worker.
        lr: SGD step size; None: :data:`LEARNING_RATES` of the model.
        eval_every: steps between evaluations of the full training loss.
        n_workers: number of workers.

    Returns:
        :class:`TrainCurves`.

    Raises:
        ValueError: unknown model, ``steps`` not a positive multiple of ``eval_every``, bad
            sizes.
    """
    if isinstance(model, str):
        model = MODELS.get(model)
    lr = LEARNING_RATES[model.name] if lr is None else float(lr)
    c = train_grid(
        model,
        compressor,
        (lr,),
        error_feedback=error_feedback,
        seeds=seeds,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        n_workers=n_workers,
    )
    return c._replace(
        train_loss=c.train_loss[0],
        bits=c.bits[0],
        entropy_bits=c.entropy_bits[0],
        test_accuracy=c.test_accuracy[0],
    )


def train_grid(
    model: GradientModel | str,
    compressor: Compressor | None,
    lrs: Sequence[float],
    *,
    error_feedback: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 200,
    batch_size: int = 32,
    eval_every: int = 10,
    n_workers: int = N_WORKERS,
) -> TrainCurves:
    """:func:`train` at every step size of ``lrs`` and every seed, in ONE vmapped program
    (compilation dominates a run on these models: a grid of step sizes costs about as much as
    one). Seed ``s`` draws the same initial parameters, minibatches and compressor randomness
    at every step size. The arrays of the result carry a leading step-size axis:
    ``train_loss``, ``bits``, ``entropy_bits`` are ``(L, S, E)``, ``test_accuracy`` ``(L, S)``.

    Raises:
        ValueError: as :func:`train`; an empty ``lrs`` or a step size that is not positive.
    """
    return train_group(
        model,
        [(compressor, error_feedback)],
        lrs,
        seeds=seeds,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        n_workers=n_workers,
    )[0]


def train_group(
    model: GradientModel | str,
    members: Sequence[tuple[Compressor | None, bool]],
    lrs: Sequence[float],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 200,
    batch_size: int = 32,
    eval_every: int = 10,
    n_workers: int = N_WORKERS,
) -> list[TrainCurves]:
    """:func:`train_grid` for several compressors ``members = [(compressor, error_feedback),
    ...]`` in ONE compiled program: one :class:`TrainCurves` per member, each exactly what
    :func:`train_grid` returns for it alone (same seeds, minibatches and compressor keys) up to
    float rounding.

    The model's minibatch gradients of all members' runs are ONE vmapped computation (the
    model enters the program once, however many compressors); only the compression and the
    SGD step are traced per member. Compiling the model's gradient dominates the compile time
    of the convolutional model (~11.5 s of a ~12 s program on 2 cores), so a group of ``M``
    compressors compiles in about the time of one. The full-training-set evaluation maps over
    the members (``lax.map``: one member's runs at a time, to bound memory).
    ``seconds`` and ``compile_seconds`` of every member are those of the whole program.

    Raises:
        ValueError: as :func:`train_grid`; no members.
    """
    if isinstance(model, str):
        model = MODELS.get(model)
    eval_every = check_int("eval_every", eval_every, min_value=1)
    steps = check_int("steps", steps, min_value=eval_every)
    if steps % eval_every:
        raise ValueError(f"steps must be a multiple of eval_every={eval_every}, got {steps}")
    n_workers = check_int("n_workers", n_workers, min_value=1)
    lrs = [float(v) for v in lrs]
    if not lrs or not all(v > 0 and math.isfinite(v) for v in lrs):
        raise ValueError(f"lrs must be one or more positive finite step sizes, got {lrs}")
    members = list(members)
    if not members:
        raise ValueError("members must name at least one (compressor, error_feedback) pair")
    split = model.data()
    check_int("batch_size", batch_size, min_value=1, max_value=split.x_train.shape[0])
    x_tr, y_tr = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_te, y_te = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    n_train = x_tr.shape[0]
    grad = jax.grad(model.loss)
    n_lr, n_seed, n_m = len(lrs), len(seeds), len(members)
    n_run = n_lr * n_seed

    def make_tx(m: int, lr: Any, k_comp: Any) -> Any:
        compressor, ef = members[m]
        if compressor is None:
            return optax.sgd(lr)
        return optax.chain(
            compress_then_average(compressor, n_workers=n_workers, key=k_comp, error_feedback=ef),
            optax.sgd(lr),
        )

    def keys_of(seed_key: Any) -> tuple[Any, Any, Any]:
        return tuple(jax.random.split(seed_key, 3))

    def init_run(m: int, seed_key: Any, lr: Any) -> tuple[Any, Any]:
        k_init, _, k_comp = keys_of(seed_key)
        params = model.init(k_init)
        return params, make_tx(m, lr, k_comp).init(params)

    def seed_grads(params: Any, seed_key: Any, t: Any, x_tr: Any, y_tr: Any) -> Any:
        """Every worker's gradient for all ``P`` runs of one seed (they share its minibatches):
        ``(P, N, ...)``. The runs are vmapped over the parameters only, so a convolution folds
        them into its output channels instead of becoming a grouped convolution."""
        k_t = jax.random.fold_in(keys_of(seed_key)[1], t)

        def one(i: Any) -> Any:
            idx = jax.random.randint(jax.random.fold_in(k_t, i), (batch_size,), 0, n_train)
            return jax.vmap(grad, in_axes=(0, None, None))(params, x_tr[idx], y_tr[idx])

        g = jax.vmap(one)(jnp.arange(n_workers))  # (N, P, ...)
        return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), g)

    def apply_run(m: int, params: Any, state: Any, grads: Any, seed_key: Any, lr: Any) -> Any:
        if members[m][0] is None:
            grads = jax.tree_util.tree_map(  # the fixed-order mean of optax.py
                lambda g: (
                    (jnp.ones((n_workers,), g.dtype) @ g.reshape(n_workers, -1)).reshape(
                        g.shape[1:]
                    )
                    / n_workers
                ),
                grads,
            )
        updates, state = make_tx(m, lr, keys_of(seed_key)[2]).update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def bits_of(m: int, state: Any, t: Any, d: int) -> tuple[Any, Any]:
        if members[m][0] is None:
            full = jnp.full((n_run,), t * FLOAT_BITS * d, jnp.float32)
            return full, full
        return (
            state[0].container_bits.astype(jnp.float32) / n_workers,
            state[0].entropy_bits.astype(jnp.float32) / n_workers,
        )

    def stack(trees: Sequence[Any]) -> Any:
        return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)

    def program(run_keys: Any, run_lrs: Any, x_tr: Any, y_tr: Any, x_te: Any, y_te: Any) -> Any:
        seed_keys = jax.vmap(jax.random.wrap_key_data)(run_keys)
        carry = tuple(
            jax.vmap(lambda k, lr, m=m: init_run(m, k, lr))(seed_keys, run_lrs) for m in range(n_m)
        )
        d = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], carry[0][0]))[0].size
        by_seed = jax.vmap(seed_grads, in_axes=(0, 0, None, None, None))

        def losses_of(carry: Any, x: Any, y: Any, fn: Any) -> Any:  # (M, R)
            params = stack([p for p, _ in carry])
            return lax.map(lambda p: jax.vmap(fn, in_axes=(0, None, None))(p, x, y), params)

        def step(carry: Any, t: Any) -> tuple[Any, None]:
            # the model's gradients of every member's runs at once, grouped by seed: run
            # r = l * S + s of member m is row (m * L + l, s) of (M * L, S)
            params = jax.tree_util.tree_map(
                lambda *a: jnp.swapaxes(
                    jnp.concatenate(a).reshape(n_m * n_lr, n_seed, *a[0].shape[1:]), 0, 1
                ),
                *[p for p, _ in carry],
            )  # (S, M * L, ...)
            grads = jax.tree_util.tree_map(
                lambda a: jnp.swapaxes(a, 0, 1).reshape(n_m * n_run, *a.shape[2:]),
                by_seed(params, seed_keys[:n_seed], t, x_tr, y_tr),
            )  # (M * R, N, ...)
            out = []
            for m, (p, s) in enumerate(carry):
                g = jax.tree_util.tree_map(lambda a, m=m: a[m * n_run : (m + 1) * n_run], grads)
                out.append(jax.vmap(lambda *a, m=m: apply_run(m, *a))(p, s, g, seed_keys, run_lrs))
            return tuple(out), None

        def block(carry: Any, b: Any) -> tuple[Any, tuple[Any, Any, Any]]:
            carry, _ = lax.scan(step, carry, b * eval_every + jnp.arange(eval_every))
            t = (b + 1) * eval_every
            bits = [bits_of(m, s, t, d) for m, (_, s) in enumerate(carry)]
            return carry, (
                losses_of(carry, x_tr, y_tr, model.loss),
                jnp.stack([cb for cb, _ in bits]),
                jnp.stack([eb for _, eb in bits]),
            )

        loss0 = losses_of(carry, x_tr, y_tr, model.loss)
        carry, (losses, bits, ebits) = lax.scan(block, carry, jnp.arange(steps // eval_every))
        zero = jnp.zeros((1, n_m, n_run), jnp.float32)
        return (
            jnp.concatenate([loss0[None], losses]),  # (E, M, R)
            jnp.concatenate([zero, bits]),
            jnp.concatenate([zero, ebits]),
            losses_of(carry, x_te, y_te, model.accuracy),  # (M, R)
        )

    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    # one flat batch of (step size, seed) runs per member; the data are arguments, not
    # closed-over constants: XLA folds large constants slowly
    args = (
        jnp.tile(keys, (n_lr, 1)),
        jnp.repeat(jnp.asarray(lrs, jnp.float32), n_seed),
        x_tr,
        y_tr,
        x_te,
        y_te,
    )
    t0 = time.perf_counter()
    compiled = jax.jit(program).lower(*args).compile()
    t_compile = time.perf_counter() - t0
    losses, bits, ebits, acc = (
        np.asarray(a, np.float64) for a in jax.block_until_ready(compiled(*args))
    )
    seconds = time.perf_counter() - t0

    def curves(a: np.ndarray) -> np.ndarray:  # (E, R) -> (L, S, E)
        return a.T.reshape(n_lr, n_seed, a.shape[0])

    return [
        TrainCurves(
            np.arange(0, steps + 1, eval_every),
            curves(losses[:, m]),
            curves(bits[:, m]),
            curves(ebits[:, m]),
            acc[m].reshape(n_lr, n_seed),
            seconds,
            t_compile,
        )
        for m in range(n_m)
    ]


# ---------------------------------------------------------------------------- prediction


__all__ = ["LEARNING_RATES", "N_WORKERS", "TrainCurves", "train", "train_grid", "train_group"]
