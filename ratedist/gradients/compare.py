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
It is measured on captured gradients: the workers' minibatch gradients at every seed's
initial parameters (no error feedback: the error of the compressor itself). The measured
ranking orders the mean final full-train-set loss; :func:`spearman` compares the two.
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
        test_accuracy: ``(S,)`` test accuracy of the final parameters.
        seconds: wall time of the call (compilation included).
    """

    steps: np.ndarray
    train_loss: np.ndarray
    bits: np.ndarray
    test_accuracy: np.ndarray
    seconds: float


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
    eval_every = check_int("eval_every", eval_every, min_value=1)
    steps = check_int("steps", steps, min_value=eval_every)
    if steps % eval_every:
        raise ValueError(f"steps must be a multiple of eval_every={eval_every}, got {steps}")
    n_workers = check_int("n_workers", n_workers, min_value=1)
    lr = LEARNING_RATES[model.name] if lr is None else float(lr)
    split = model.data()
    check_int("batch_size", batch_size, min_value=1, max_value=split.x_train.shape[0])
    x_tr, y_tr = jnp.asarray(split.x_train), jnp.asarray(split.y_train)
    x_te, y_te = jnp.asarray(split.x_test), jnp.asarray(split.y_test)
    n_train = x_tr.shape[0]
    grad = jax.grad(model.loss)

    def one_seed(seed_key: Any, x_tr: Any, y_tr: Any, x_te: Any, y_te: Any) -> tuple[Any, Any, Any]:
        k_init, k_data, k_comp = jax.random.split(seed_key, 3)
        params = model.init(k_init)
        d = ravel_pytree(params)[0].size
        if compressor is None:
            tx = optax.sgd(lr)
        else:
            tx = optax.chain(
                compress_then_average(
                    compressor, n_workers=n_workers, key=k_comp, error_feedback=error_feedback
                ),
                optax.sgd(lr),
            )
        opt_state = tx.init(params)

        def bits_of(state: Any, t: Any) -> Any:
            if compressor is None:
                return jnp.asarray(t * FLOAT_BITS * d, jnp.float32)
            return state[0].container_bits.astype(jnp.float32) / n_workers

        def step(carry: Any, t: Any) -> tuple[Any, None]:
            params, state = carry
            k_t = jax.random.fold_in(k_data, t)

            def worker_grad(i: Any) -> Any:
                idx = jax.random.randint(jax.random.fold_in(k_t, i), (batch_size,), 0, n_train)
                return grad(params, x_tr[idx], y_tr[idx])

            grads = jax.vmap(worker_grad)(jnp.arange(n_workers))
            if compressor is None:
                grads = jax.tree_util.tree_map(  # the fixed-order mean of optax.py
                    lambda g: (
                        (jnp.ones((n_workers,), g.dtype) @ g.reshape(n_workers, -1)).reshape(
                            g.shape[1:]
                        )
                        / n_workers
                    ),
                    grads,
                )
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        def block(carry: Any, b: Any) -> tuple[Any, tuple[Any, Any]]:
            ts = b * eval_every + jnp.arange(eval_every)
            carry, _ = lax.scan(step, carry, ts)
            params, state = carry
            return carry, (model.loss(params, x_tr, y_tr), bits_of(state, (b + 1) * eval_every))

        loss0 = model.loss(params, x_tr, y_tr)
        (params, _), (losses, bits) = lax.scan(
            block, (params, opt_state), jnp.arange(steps // eval_every)
        )
        losses = jnp.concatenate([loss0[None], losses])
        bits = jnp.concatenate([jnp.zeros((1,), bits.dtype), bits])
        return losses, bits, model.accuracy(params, x_te, y_te)

    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    # the data are arguments, not closed-over constants: XLA folds large constants slowly
    run = jax.jit(
        jax.vmap(
            lambda kd, *data: one_seed(jax.random.wrap_key_data(kd), *data),
            in_axes=(0, None, None, None, None),
        )
    )
    t0 = time.perf_counter()
    losses, bits, acc = jax.block_until_ready(run(keys, x_tr, y_tr, x_te, y_te))
    return TrainCurves(
        np.arange(0, steps + 1, eval_every),
        np.asarray(losses, np.float64),
        np.asarray(bits, np.float64),
        np.asarray(acc, np.float64),
        time.perf_counter() - t0,
    )


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
    """One (model, budget, compressor) of :func:`run_comparison`."""

    model: str
    bits: int
    matched: Matched
    predicted_mse: float
    final_loss: tuple[float, float]
    test_accuracy: tuple[float, float]
    curves: TrainCurves
    predicted_rank: float
    measured_rank: float


def run_comparison(
    models: Sequence[str] = ("logistic-digits", "mlp-digits"),
    budgets: Sequence[int] = BUDGETS,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 200,
    batch_size: int = 32,
    eval_every: int = 20,
    log: Any = None,
) -> list[Row]:
    """Train every model with every compressor of :func:`budget_table` at every budget.

    Ranks are within one (model, budget) over the compressors whose status is ``"matched"``
    or ``"under"`` (NaN for ``"off"``): predicted by :func:`predicted_mse`, measured by the
    mean final training loss. A compressor whose spec does not depend on the budget
    (TernGrad, natural compression, scaled sign) is trained once per model and its results
    reused at every budget.
    """
    rows: list[Row] = []
    for name in models:
        model = MODELS.get(name)
        grads = captured_gradients(model, seeds=seeds, batch_size=batch_size)
        d = grads.shape[1]
        done: dict[tuple[str, bool], tuple[float, TrainCurves]] = {}
        for b in budgets:
            block = []
            for m in budget_table(b, d):
                if (m.spec, m.error_feedback) not in done:  # TernGrad, natural, sign: once
                    comp = make(m.spec)
                    done[m.spec, m.error_feedback] = (
                        predicted_mse(comp, grads),
                        train(
                            model,
                            comp,
                            error_feedback=m.error_feedback,
                            seeds=seeds,
                            steps=steps,
                            batch_size=batch_size,
                            eval_every=eval_every,
                        ),
                    )
                mse, cur = done[m.spec, m.error_feedback]
                block.append((m, mse, cur))
                if log is not None:
                    log(
                        f"{name} b={b} {m.label:17s} mse={mse:.4f} "
                        f"loss={cur.train_loss[:, -1].mean():.4f} ({cur.seconds:.1f} s)"
                    )
            ranked = [i for i, (m, _, _) in enumerate(block) if m.status != "off"]
            pr = rank([block[i][1] for i in ranked])
            mr = rank([block[i][2].train_loss[:, -1].mean() for i in ranked])
            ranks = {i: (p, q) for i, p, q in zip(ranked, pr, mr, strict=True)}
            for i, (m, mse, cur) in enumerate(block):
                p, q = ranks.get(i, (math.nan, math.nan))
                rows.append(
                    Row(
                        name,
                        b,
                        m,
                        mse,
                        mean_se(cur.train_loss[:, -1]),
                        mean_se(cur.test_accuracy),
                        cur,
                        float(p),
                        float(q),
                    )
                )
    return rows


def rank_correlations(rows: Sequence[Row]) -> dict[tuple[str, int], float]:
    """Spearman correlation of predicted and measured ranks per (model, budget)."""
    out = {}
    for key in dict.fromkeys((r.model, r.bits) for r in rows):
        sel = [r for r in rows if (r.model, r.bits) == key and r.matched.status != "off"]
        out[key] = spearman([r.predicted_rank for r in sel], [r.measured_rank for r in sel])
    return out
