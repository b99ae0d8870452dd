"""Distributed training of the :data:`~ratedist.gradients.models.MODELS` with compressed
gradients at equal bits per coordinate: the training comparison of SPEC §1 (TNQSGD,
arXiv 2402.01160 / 2402.01798: truncated non-uniform quantization against the baselines).

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

**Equal bits** (:func:`budget_table`). A budget of ``b`` bits per coordinate counts the
``container`` layer (bit-packed wire format) of one worker's message INCLUDING its side
information (norms, scales, indices), amortised over ``d`` coordinates:

=====================  ===============================  =====================================
compressor             parameter at ``b`` bits          container bits / coordinate
=====================  ===============================  =====================================
TNQ                    ``scalar:method=tnq,bits=b``     ``b + 32/d``   (``2^b`` levels)
TUQ                    ``scalar:method=tuq,bits=b``     ``b + 32/d``
QSGD                   ``s = 2^(b-1) - 1``              ``1 + ceil(log2(s+1)) + 32/d = b + 32/d``
NUQSGD                 ``s = 2^(b-1) - 1``              ``b + 32/d``
TernGrad               (none)                           ``2 + 32/d``: matched at ``b = 2``, under above
natural compression    (none)                           ``1 + 8 = 9`` (float32): matches none
scaled sign + EF       (none)                           ``1 + 32/d``: below every budget
Top-K + EF             ``k = floor(d b / (32 + ceil(log2 d)))``   ``<= b``, within ``(32 + ceil(log2 d))/d``
=====================  ===============================  =====================================

TNQ and TUQ are the registered designs for a unit Gaussian applied to ``x / rms(x)`` (the
scale is the side information), with clipping + unbiased stochastic rounding, full-range code
(``2^b`` levels, SPEC §1 convention). A compressor is ``"matched"`` when its container bits
per coordinate lie within :func:`tolerance_bits` of ``b``; ``"under"`` when it sends fewer
(scaled sign: it takes part in the ranking, with fewer bits); ``"off"`` when it cannot reach
the budget (natural compression: 9 bits per float32 coordinate): it is trained and drawn as a
reference but excluded from the rankings.

**Prediction** (:func:`predicted_mse`). The rate–distortion view predicts that at equal bits
the compressor with the smaller normalised error ``E||C(g) - g||^2 / E||g||^2`` trains better.
It is computed two ways: on captured gradients, the workers' minibatch gradients at every
seed's initial parameters (no error feedback: the error of the compressor itself), and on the
FITTED MODEL (:func:`fitted_model`, :func:`predicted_mse_fitted`): the best-AIC family of
:func:`ratedist.gradients.fit.best_fit` fitted to the pooled coordinates of the captured
gradients (each row divided by its rms), and the error measured on i.i.d. draws from it. The
measured ranking orders the mean final full-train-set loss; :func:`spearman` compares them.

**Entropy layer.** Besides the container bits, every run counts the entropy-coded bits of the
compressors' :class:`~ratedist.compressors.CompressInfo` (``entropy_bits``), accumulated by
:func:`~ratedist.optax.compress_then_average`; the comparison reports them per coordinate and
step. Budgets are matched on the container layer only.

**Step sizes.** Each compressor runs at the common step size of the model
(:data:`LEARNING_RATES`) and at a step size tuned for it: the grid :data:`LR_FACTORS` x the
common step is trained on the evaluation seeds and on the separate :data:`TUNING_SEEDS`; the
factor of least mean final loss on the tuning seeds is chosen, and its results on the
evaluation seeds are reported.

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
from ratedist.compressors import Compressor, make
from ratedist.gradients.fit import BestFit, best_fit
from ratedist.gradients.models import MODELS, GradientModel
from ratedist.optax import compress_then_average

#: Bit budgets of the comparison (container bits per coordinate, side information included).
BUDGETS: tuple[int, ...] = (2, 3, 4)
#: Workers.
N_WORKERS = 4
#: Width of a sent float (norms, scales, Top-K values).
FLOAT_BITS = 32
#: SGD step size per model. Uncompressed training (200 steps, 3 seeds) on the grid
#: 0.1, 0.3, 1, 3 reached its lowest loss at 3 (logistic) and 1 (MLP; 3 diverged); one grid
#: step below that is used for every compressor, to leave room for compression noise.
LEARNING_RATES: dict[str, float] = {
    "logistic-digits": 1.0,
    "mlp-digits": 0.3,
    "cnn-digits": 0.3,
    "logistic-breast-cancer": 1.0,
}
#: Step-size grid of the per-compressor tuning per model, as factors of
#: :data:`LEARNING_RATES` (1 = the common step must be in it). With the grid 0.3, 1, 3, 10 most
#: tuned steps of the logistic model and many of the MLP sat on the top edge (10); 30 is added
#: everywhere and 100 for the logistic model, whose 0.3 was never chosen and is dropped. The
#: CNN has the MLP's grid: without 0.3 (it trained TNQ worst in a pilot) 14 of its 27 tuned
#: steps were the common step, on the lower edge of the grid.
LR_FACTORS: dict[str, tuple[float, ...]] = {
    "logistic-digits": (1.0, 3.0, 10.0, 30.0, 100.0),
    "mlp-digits": (0.3, 1.0, 3.0, 10.0, 30.0),
    "cnn-digits": (0.3, 1.0, 3.0, 10.0, 30.0),
    "logistic-breast-cancer": (0.3, 1.0, 3.0, 10.0, 30.0),
}
#: SGD steps per model in :func:`run_comparison` (default 200). The CNN runs 100: its step
#: costs ~20x the MLP's on 2 CPU cores (convolutions of 8x8 images vmapped over runs).
STEPS: dict[str, int] = {"cnn-digits": 100}
#: Seeds on which the step size is tuned (disjoint from the evaluation seeds 0, 1, 2).
TUNING_SEEDS: tuple[int, ...] = (100, 101, 102)
#: Compressor labels in display order.
LABELS: tuple[str, ...] = (
    "TNQ",
    "TUQ",
    "QSGD",
    "NUQSGD",
    "TernGrad",
    "natural",
    "scaled sign + EF",
    "Top-K + EF",
)


class Matched(NamedTuple):
    """One row of the bit-matching table.

    Attributes:
        label: display name (an entry of :data:`LABELS`).
        spec: the ``ratedist.compressors.make`` spec string.
        error_feedback: run with an EF14 residual per worker.
        bits_per_coord: container bits of one message / ``d`` (measured from the compressor's
            own :class:`~ratedist.compressors.CompressInfo`).
        status: ``"matched"``, ``"under"`` (below the budget) or ``"off"`` (cannot hit it).
    """

    label: str
    spec: str
    error_feedback: bool
    bits_per_coord: float
    status: str


def tolerance_bits(d: int) -> float:
    """Tolerance of a matched budget: one Top-K entry, ``(32 + ceil(log2 d)) / d`` bits per
    coordinate (it also covers one 32-bit scale, ``32/d``)."""
    return (FLOAT_BITS + math.ceil(math.log2(d))) / d


def _specs(bits: int, d: int) -> list[tuple[str, str, bool]]:
    s = 2 ** (bits - 1) - 1
    k = max(1, (d * bits) // (FLOAT_BITS + math.ceil(math.log2(d))))
    return [
        ("TNQ", f"scalar:method=tnq,bits={bits}", False),
        ("TUQ", f"scalar:method=tuq,bits={bits}", False),
        ("QSGD", f"qsgd:s={s}", False),
        ("NUQSGD", f"nuqsgd:s={s}", False),
        ("TernGrad", "terngrad", False),
        ("natural", "natural", False),
        ("scaled sign + EF", "scaled-sign", True),
        ("Top-K + EF", f"top-k:k={k}", True),
    ]


def container_bits_per_coord(compressor: Compressor, d: int) -> float:
    """Container bits of one message on a float32 vector of size ``d``, divided by ``d``."""
    x = jax.random.normal(jax.random.key(0), (d,), jnp.float32)

    def bits(x: Any, key: Any) -> Any:
        return compressor.update(x, compressor.init(x), key=key)[2].container_bits

    return float(jax.jit(bits)(x, jax.random.key(1))) / d


def budget_table(bits: int, d: int) -> list[Matched]:
    """The compressors of the comparison at ``bits`` bits per coordinate for dimension ``d``.

    Raises:
        ValueError: ``bits`` not in 1..16 or ``d`` < 2.
    """
    bits = check_int("bits", bits, min_value=1, max_value=16)
    d = check_int("d", d, min_value=2)
    tol = tolerance_bits(d)
    rows = []
    for label, spec, ef in _specs(bits, d):
        bpc = container_bits_per_coord(make(spec), d)
        status = "matched" if abs(bpc - bits) <= tol else ("under" if bpc < bits else "off")
        rows.append(Matched(label, spec, ef, bpc, status))
    return rows


# ------------------------------------------------------------------------------ training


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


def captured_gradients(
    model: GradientModel | str,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    n_batches: int = 8,
    batch_size: int = 32,
) -> np.ndarray:
    """Minibatch gradients (flat, float32) at every seed's initial parameters:
    ``(len(seeds) * n_batches, d)``; the minibatch keys are independent of :func:`train`'s."""
    if isinstance(model, str):
        model = MODELS.get(model)
    split = model.data()
    x_tr, y_tr = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    out = []
    for s in seeds:
        k_init, k_data, _ = jax.random.split(jax.random.key(int(s)), 3)
        params = model.init(k_init)
        for j in range(n_batches):
            idx = jax.random.randint(
                jax.random.fold_in(k_data, 2**30 + j), (batch_size,), 0, x_tr.shape[0]
            )
            g = jax.grad(model.loss)(params, x_tr[idx], y_tr[idx])
            out.append(np.asarray(ravel_pytree(g)[0]))
    return np.stack(out)


def predicted_mse(compressor: Compressor, grads: Any, *, n_draws: int = 4, seed: int = 0) -> float:
    """Normalised error ``sum ||C(g) - g||^2 / sum ||g||^2`` over the rows of ``grads`` and
    ``n_draws`` independent compressor keys per row (no error feedback)."""
    g = jnp.asarray(grads)
    state = compressor.init(g[0])

    def err(key: Any, x: Any) -> Any:
        x_hat, _, _ = compressor.update(x, state, key=key)
        return jnp.sum((x_hat - x) ** 2)

    keys = jax.random.split(jax.random.key(seed), (n_draws, g.shape[0]))
    e = jax.jit(jax.vmap(jax.vmap(err)))(keys, jnp.broadcast_to(g, (n_draws, *g.shape)))
    return float(jnp.sum(e, dtype=jnp.float32) / (n_draws * jnp.sum(g * g)))


def fitted_model(grads: Any, *, max_samples: int = 20000, seed: int = 0) -> BestFit:
    """Best-AIC fit (:func:`ratedist.gradients.fit.best_fit`, every parametric family) to the
    POOLED coordinates of the captured gradients, each row first divided by its rms.

    Pooled, not per layer: every compressor of the comparison sees one flat vector per worker
    with one scale or norm for the whole model, so the law it meets is that of a coordinate
    drawn from the whole vector. Each row is normalised first because all the compressors are
    scale-invariant (up to natural compression's power-of-two rounding), so the spread of
    gradient norms across seeds and minibatches is not part of what they see.
    """
    g = np.asarray(grads, np.float64)
    g = g / np.sqrt(np.mean(g * g, axis=1, keepdims=True))
    return best_fit(g, name="captured gradients (rows / rms)", max_samples=max_samples, seed=seed)


def predicted_mse_fitted(
    compressor: Compressor, fitted: BestFit, shape: tuple[int, int], *, seed: int = 0
) -> float:
    """:func:`predicted_mse` on ``shape = (rows, d)`` i.i.d. draws from the fitted model
    (``fitted.best.source``): the theory's prediction, from the model rather than the data."""
    x = fitted.best.source.sample(jax.random.key(seed), shape, jnp.float32)
    return predicted_mse(compressor, x, seed=seed + 1)


def rank(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values`` (smallest = 1), ties sharing their mean rank."""
    v = np.asarray(values, np.float64)
    order = np.argsort(v, kind="stable")
    r = np.empty(v.size)
    r[order] = np.arange(1, v.size + 1)
    for u in np.unique(v):
        tie = v == u
        r[tie] = r[tie].mean()
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of the tie-averaged ranks).

    Raises:
        ValueError: different lengths or fewer than 2 values; NaN if a side is constant.
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"spearman needs two sequences of equal length >= 2, got {len(a)}, {len(b)}"
        )
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / den if den > 0 else float("nan")


def mean_se(a: Any) -> tuple[float, float]:
    """Mean and standard error (``std(ddof=1)/sqrt(n)``) over the first axis."""
    a = np.asarray(a, np.float64)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else math.nan


# ---------------------------------------------------------------------------- comparison


class Row(NamedTuple):
    """One (model, budget, compressor) of :func:`run_comparison`.

    ``predicted_mse`` is on the captured gradients, ``predicted_mse_fit`` on draws from the
    fitted model; ``final_loss``, ``test_accuracy``, ``curves`` and ``measured_rank`` are at the
    common step size, the ``*_tuned`` fields at the step size ``tuned_lr`` chosen on
    :data:`TUNING_SEEDS`. ``entropy_bits_per_coord`` is one worker's entropy-coded bits per step
    and coordinate (mean over seeds and steps, common step size).
    """

    model: str
    bits: int
    matched: Matched
    predicted_mse: float
    final_loss: tuple[float, float]
    test_accuracy: tuple[float, float]
    curves: TrainCurves
    predicted_rank: float
    measured_rank: float
    predicted_mse_fit: float = math.nan
    predicted_rank_fit: float = math.nan
    entropy_bits_per_coord: float = math.nan
    tuned_lr: float = math.nan
    final_loss_tuned: tuple[float, float] = (math.nan, math.nan)
    curves_tuned: TrainCurves | None = None
    measured_rank_tuned: float = math.nan


def _at(c: TrainCurves, i: int, sel: slice) -> TrainCurves:
    """Step size ``i`` and seeds ``sel`` of a :func:`train_grid` result."""
    return c._replace(
        train_loss=c.train_loss[i, sel],
        bits=c.bits[i, sel],
        entropy_bits=c.entropy_bits[i, sel],
        test_accuracy=c.test_accuracy[i, sel],
    )


def _tuned_index(c: TrainCurves, tune: slice) -> int:
    """Step size of least mean final loss on the tuning seeds (a diverged run counts as inf)."""
    final = c.train_loss[:, tune, -1]
    score = np.where(np.all(np.isfinite(final), axis=1), final.mean(axis=1), np.inf)
    return int(np.argmin(score))


class _Trained(NamedTuple):
    mse: float
    mse_fit: float
    common: TrainCurves
    tuned: TrainCurves
    tuned_lr: float
    seconds: float


def run_comparison(
    models: Sequence[str] = ("logistic-digits", "mlp-digits", "cnn-digits"),
    budgets: Sequence[int] = BUDGETS,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    lr_factors: Sequence[float] | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    eval_every: int = 20,
    log: Any = None,
) -> list[Row]:
    """Train every model with every compressor of :func:`budget_table` at every budget.

    Per model, ONE :func:`train_group` program trains every distinct compressor of every
    budget over the step sizes ``lr_factors x LEARNING_RATES[model]`` and the seeds ``seeds +
    tuning_seeds`` (the model is compiled once, not once per compressor). The common step size
    (factor 1, which must be in ``lr_factors``) on ``seeds`` gives the common-step results; the
    factor of least mean final loss on ``tuning_seeds`` is the tuned step size, and its results
    on ``seeds`` (not those it was chosen on) are the tuned-step results.

    Ranks are within one (model, budget) over the compressors whose status is ``"matched"``
    or ``"under"`` (NaN for ``"off"``): predicted by :func:`predicted_mse` on the captured
    gradients and by :func:`predicted_mse_fitted` on the :func:`fitted_model`; measured by the
    mean final training loss at the common and at the tuned step size. A compressor whose spec
    does not depend on the budget (TernGrad, natural compression, scaled sign) is trained once
    per model and its results reused at every budget.

    Args:
        lr_factors: step-size grid for every model; None: :data:`LR_FACTORS` of each model.
        steps: SGD steps for every model; None: :data:`STEPS` of each model (default 200).

    Raises:
        ValueError: 1 not in the step-size grid; empty ``tuning_seeds``.
    """
    if not tuning_seeds:
        raise ValueError("tuning_seeds must name at least one seed")
    ev, tune = slice(0, len(seeds)), slice(len(seeds), len(seeds) + len(tuning_seeds))
    rows: list[Row] = []
    for name in models:
        model = MODELS.get(name)
        factors = [float(f) for f in (LR_FACTORS[name] if lr_factors is None else lr_factors)]
        if 1.0 not in factors:
            raise ValueError(f"lr_factors must contain 1 (the common step size), got {factors}")
        i_common = factors.index(1.0)
        n_steps = STEPS.get(name, 200) if steps is None else steps
        grads = captured_gradients(model, seeds=seeds, batch_size=batch_size)
        fitted = fitted_model(grads)
        if log is not None:
            log(f"{name}: fitted model {fitted.best.family} {dict(fitted.best.params)}")
        d = grads.shape[1]
        lrs = [LEARNING_RATES[name] * f for f in factors]
        tables = {b: budget_table(b, d) for b in budgets}
        # every distinct compressor once (TernGrad, natural, sign serve every budget)
        members = list(
            dict.fromkeys((m.spec, m.error_feedback) for t in tables.values() for m in t)
        )
        comps = {spec: make(spec) for spec, _ in members}
        curves = train_group(
            model,
            [(comps[spec], ef) for spec, ef in members],
            lrs,
            seeds=tuple(seeds) + tuple(tuning_seeds),
            steps=n_steps,
            batch_size=batch_size,
            eval_every=eval_every,
        )
        if log is not None:
            log(
                f"{name}: {len(members)} compressors x {len(lrs)} step sizes x "
                f"{len(seeds) + len(tuning_seeds)} seeds x {n_steps} steps in one program: "
                f"compile {curves[0].compile_seconds:.1f} s, total {curves[0].seconds:.1f} s"
            )
        done: dict[tuple[str, bool], _Trained] = {}
        for (spec, ef), c in zip(members, curves, strict=True):
            it = _tuned_index(c, tune)
            done[spec, ef] = _Trained(
                predicted_mse(comps[spec], grads),
                predicted_mse_fitted(comps[spec], fitted, grads.shape),
                _at(c, i_common, ev),
                _at(c, it, ev),
                lrs[it],
                c.seconds,
            )
        for b in budgets:
            block = [(m, done[m.spec, m.error_feedback]) for m in tables[b]]
            if log is not None:
                for m, t in block:
                    log(
                        f"{name} b={b} {m.label:17s} mse={t.mse:.4f} fit={t.mse_fit:.4f} "
                        f"loss={t.common.train_loss[:, -1].mean():.4f} "
                        f"tuned(lr={t.tuned_lr:g})={t.tuned.train_loss[:, -1].mean():.4f}"
                    )
            ranked = [i for i, (m, _) in enumerate(block) if m.status != "off"]
            cols = [
                rank([block[i][1].mse for i in ranked]),
                rank([block[i][1].mse_fit for i in ranked]),
                rank([block[i][1].common.train_loss[:, -1].mean() for i in ranked]),
                rank([block[i][1].tuned.train_loss[:, -1].mean() for i in ranked]),
            ]
            ranks = {i: tuple(float(c[j]) for c in cols) for j, i in enumerate(ranked)}
            for i, (m, t) in enumerate(block):
                p, pf, q, qt = ranks.get(i, (math.nan,) * 4)
                eb = t.common.entropy_bits[:, -1].mean() / (n_steps * d)
                rows.append(
                    Row(
                        name,
                        b,
                        m,
                        t.mse,
                        mean_se(t.common.train_loss[:, -1]),
                        mean_se(t.common.test_accuracy),
                        t.common,
                        p,
                        q,
                        t.mse_fit,
                        pf,
                        float(eb),
                        t.tuned_lr,
                        mean_se(t.tuned.train_loss[:, -1]),
                        t.tuned,
                        qt,
                    )
                )
    return rows


def rank_correlations(
    rows: Sequence[Row], predicted: str = "predicted_rank", measured: str = "measured_rank"
) -> dict[tuple[str, int], float]:
    """Spearman correlation of predicted and measured ranks per (model, budget).

    ``predicted``: ``"predicted_rank"`` (captured gradients) or ``"predicted_rank_fit"``
    (fitted model); ``measured``: ``"measured_rank"`` (common step size) or
    ``"measured_rank_tuned"`` (tuned step size).
    """
    out = {}
    for key in dict.fromkeys((r.model, r.bits) for r in rows):
        sel = [r for r in rows if (r.model, r.bits) == key and r.matched.status != "off"]
        out[key] = spearman(
            [getattr(r, predicted) for r in sel], [getattr(r, measured) for r in sel]
        )
    return out
