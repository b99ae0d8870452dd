"""Distributed training of the :data:`~ratedist.gradients.models.MODELS` with compressed
gradients at equal bits per coordinate: the training comparison of SPEC §1 (TNQSGD,
arXiv 2402.01160 / 2402.01798: truncated non-uniform quantization against the baselines).

The runs themselves (the protocol, :func:`~ratedist.gradients.training.train_group` and its
cost) are in :mod:`ratedist.gradients.training`.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ratedist._validation import check_int
from ratedist.compressors import Compressor, make
from ratedist.gradients.fit import BestFit, best_fit
from ratedist.gradients.models import MODELS, GradientModel
from ratedist.gradients.training import (
    LEARNING_RATES,
    TrainCurves,
    train_group,
)

#: Bit budgets of the comparison (container bits per coordinate, side information included).
BUDGETS: tuple[int, ...] = (2, 3, 4)
#: Width of a sent float (norms, scales, Top-K values).
FLOAT_BITS = 32
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
