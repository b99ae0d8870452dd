"""Quantizers designed from a fitted gradient model, checked on held-out real gradients.

For one layer, :func:`design_layer` takes two samples of the layer's gradient coordinates —
one to fit on, one held out — and, for every registered design method of
:data:`ratedist.quantizers.DESIGNS` and every bit budget:

1. fits the gradient families (:func:`~ratedist.gradients.fit.best_fit`, least AIC) to the
   fitting half and designs the method's quantizer on the best model;
2. *predicts* its MSE exactly from the model (:func:`ratedist.quantizers.evaluate`);
3. *measures* its MSE on the held-out half, with a standard error;
4. designs the same method on the empirical law of the fitting half (a symmetrized KDE,
   :class:`ratedist.sources.Empirical`) and measures that quantizer on the held-out half
   too: what a design that knows the data, not a model, achieves.

The *model cost* is ``10 log10(measured / predicted)`` dB: how far the model's promise is
from what the quantizer delivers on real gradients (positive: the model is optimistic).

Decisions (docs/gradients.md, "Designing from the data"):

* **Split by minibatch.** The capture's ``m`` minibatch gradients of a layer are split
  into the first ``ceil(m/2)`` (fitting) and the rest (held out), so that the held-out
  coordinates come from minibatches the fit never saw; ``m >= 2`` is required.
* **Per-layer RMS normalisation.** Both halves are divided by one number per layer, the
  RMS of the fitting half's nonzero coordinates, known before the held-out data is seen —
  as a sender would normalise by a scale it transmits once. Every MSE is therefore in units
  of the fitting half's mean square (``1`` is the cost of sending nothing).
* **Exact zeros are left out** of the fit and of the measurement, as in
  :mod:`~ratedist.gradients.fit`: the models describe the nonzero coordinates (a sparse code
  sends the zeros for almost nothing); the fraction of zeros is reported.
* **Stochastic rounding is measured in expectation**: for the ``stochastic`` designs (TNQ,
  TUQ, variance-optimal) the measured MSE is the mean over held-out ``x`` of the exact
  conditional MSE ``(x - clip(x))^2 + (l_{j+1} - x)(x - l_j)``, so the comparison carries
  no rounding noise, only the sampling of ``x``.
* **ECSQ** is designed for an output entropy of ``bits`` bits (its ``rate`` fact), the
  others with ``2^bits`` levels (:func:`ratedist.quantizers.design`).

The standard error of a measured MSE treats the held-out coordinates as independent; they
are not quite (coordinates of one minibatch gradient share the minibatch), so read it as a
lower bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_int
from ratedist.gradients.capture import Capture
from ratedist.gradients.fit import BestFit, best_fit, prepare_samples
from ratedist.quantizers import DESIGNS
from ratedist.quantizers.core import ScalarQuantizer
from ratedist.quantizers.evaluate import MAX_BITS, as_quantizer, design, evaluate, rounding_of
from ratedist.sources import AbstractSource, Empirical

#: Bit budgets of :func:`design_layer` by default.
DEFAULT_BITS = (2, 3, 4)
#: Kernel centres of the empirical (KDE) reference design. Designing on a KDE costs
#: O(centres) per quadrature node: with 500 centres the seven methods at 2, 3, 4 bits take
#: about 10 s per layer (ECSQ half of it), with 2000 about 45 s.
EMPIRICAL_DESIGN_CENTRES = 500


class DesignRow(NamedTuple):
    """One method at one budget on one layer (MSE in units of the fitting half's mean square).

    Attributes:
        method: the :data:`~ratedist.quantizers.DESIGNS` name.
        bits: the budget (``2^bits`` levels; target entropy for ``ecsq``).
        rounding: ``deterministic`` or ``stochastic``.
        predicted: the model's exact MSE of the quantizer designed on the model.
        measured: that quantizer's MSE on the held-out samples.
        measured_se: standard error of ``measured``.
        model_cost_db: ``10 log10(measured / predicted)``.
        empirical: held-out MSE of the same method designed on the fitting half's KDE
            (``None`` where that design failed; ``empirical_error`` says why).
        empirical_se: its standard error.
        error: why the model design failed (then the numbers are NaN), else ``None``.
        empirical_error: why the empirical design failed, else ``None``.
        predicted_entropy: output entropy in bits the model predicts for the model design.
        measured_entropy: its output entropy on the held-out samples (plug-in).
    """

    method: str
    bits: int
    rounding: str
    predicted: float
    measured: float
    measured_se: float
    model_cost_db: float
    empirical: float | None
    empirical_se: float | None
    error: str | None = None
    empirical_error: str | None = None
    predicted_entropy: float = math.nan
    measured_entropy: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes ``None``)."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in self._asdict().items()
        }


@dataclasses.dataclass(frozen=True)
class LayerDesign:
    """:func:`design_layer`'s result.

    Attributes:
        name: what was designed for (``"layer 'dense1/w' at step 100"``).
        rms: the normalising scale (RMS of the fitting half's nonzero coordinates).
        n_fit, n_eval: nonzero coordinates fitted / held out.
        zeros_eval: fraction of exact zeros in the held-out half (left out).
        fit: the :class:`~ratedist.gradients.fit.BestFit` of the normalised fitting half.
        model: the model the designs use (``fit.best.source``, unit = ``rms``).
        rows: one :class:`DesignRow` per method and budget.
    """

    name: str
    rms: float
    n_fit: int
    n_eval: int
    zeros_eval: float
    fit: BestFit
    model: AbstractSource
    rows: tuple[DesignRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rms": self.rms,
            "n_fit": self.n_fit,
            "n_eval": self.n_eval,
            "zeros_eval": self.zeros_eval,
            "model": self.fit.best.family,
            "params": dict(self.fit.best.params),
            "rows": [r.to_dict() for r in self.rows],
        }


# ----------------------------------------------------------------------------- measuring
def sample_mse(quantizer: Any, x: np.ndarray, *, rounding: str) -> tuple[float, float]:
    """``(mean, standard error)`` of the squared error of ``quantizer`` on the samples ``x``.

    Deterministic rounding maps ``x`` to ``levels[#{thresholds < x}]``; stochastic rounding
    is taken in expectation given ``x`` (clip to ``[l_0, l_n]``, then the rounding variance
    ``(l_{j+1} - x)(x - l_j)``), so no random numbers are drawn. numpy, float64.
    """
    q: ScalarQuantizer = as_quantizer(quantizer)
    x = np.asarray(x, np.float64).ravel()
    lv = np.asarray(q.levels, np.float64)
    if rounding == "deterministic":
        idx = np.searchsorted(np.asarray(q.thresholds, np.float64), x, side="left")
        err2 = (lv[idx] - x) ** 2
    elif rounding == "stochastic":
        c = np.clip(x, lv[0], lv[-1])
        j = np.clip(np.searchsorted(lv, c, side="right") - 1, 0, lv.size - 2)
        err2 = (x - c) ** 2 + (lv[j + 1] - c) * (c - lv[j])
    else:
        raise ValueError(f"rounding must be 'deterministic' or 'stochastic', got {rounding!r}")
    n = err2.size
    se = float(np.std(err2, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(np.mean(err2)), se


def sample_entropy_bits(quantizer: Any, x: np.ndarray, *, rounding: str) -> float:
    """Entropy in bits of the output of ``quantizer`` on the samples ``x`` (plug-in).

    The output law is the empirical one: the frequencies of the cells (deterministic), or the
    mean over ``x`` of the stochastic-rounding probabilities onto the two neighbouring
    levels (stochastic). Biased low by about ``(levels - 1) / (2 n ln 2)`` bits.
    """
    q: ScalarQuantizer = as_quantizer(quantizer)
    x = np.asarray(x, np.float64).ravel()
    lv = np.asarray(q.levels, np.float64)
    if rounding == "deterministic":
        idx = np.searchsorted(np.asarray(q.thresholds, np.float64), x, side="left")
        w = np.bincount(idx, minlength=lv.size).astype(np.float64)
    elif rounding == "stochastic":
        c = np.clip(x, lv[0], lv[-1])
        j = np.clip(np.searchsorted(lv, c, side="right") - 1, 0, lv.size - 2)
        t = (c - lv[j]) / (lv[j + 1] - lv[j])
        w = np.bincount(j, weights=1 - t, minlength=lv.size)
        w += np.bincount(j + 1, weights=t, minlength=lv.size)
    else:
        raise ValueError(f"rounding must be 'deterministic' or 'stochastic', got {rounding!r}")
    p = w[w > 0] / w.sum()
    return float(-np.sum(p * np.log2(p)))


def applicable_methods() -> list[str]:
    """Every registered design method (each takes a source and a bit budget)."""
    return list(DESIGNS.names())


def _check_bits(bits: Iterable[int]) -> tuple[int, ...]:
    out = tuple(check_int("bits", b, min_value=1, max_value=MAX_BITS) for b in bits)
    if not out:
        raise ValueError("bits must name at least one budget, got none")
    return out


def design_layer(
    fit_samples: Any,
    eval_samples: Any,
    *,
    bits: Iterable[int] = DEFAULT_BITS,
    methods: Iterable[str] | None = None,
    name: str = "samples",
    max_samples: int | None = 200_000,
    empirical: bool = True,
    seed: int = 0,
) -> LayerDesign:
    """Design every method from the best-fit model of ``fit_samples``; measure on ``eval_samples``.

    Args:
        fit_samples: array-like, the coordinates fitted (zeros dropped).
        eval_samples: array-like, the held-out coordinates (zeros dropped).
        bits: budgets (bits per coordinate), default 2, 3, 4.
        methods: names in :data:`~ratedist.quantizers.DESIGNS`; default all.
        name: what the samples are, named in every error.
        max_samples: fit a random subset of at most this many (default 200000).
        empirical: also design each method on the fitting half's KDE (on at most
            :data:`EMPIRICAL_DESIGN_CENTRES` centres, a random subset).
        seed: of the subsets.

    Returns:
        A :class:`LayerDesign`. A design that fails (a solver error) is kept as a row with
        NaN numbers and its ``error``.

    Raises:
        ValueError: bad samples (NaN/inf, constant, too few nonzero — each message starts
            with ``name`` and says which half), an unknown method, a bad budget.
    """
    bits = _check_bits(bits)
    methods = applicable_methods() if methods is None else list(methods)
    for m in methods:
        DESIGNS.entry(m)
    xf, _ = prepare_samples(fit_samples, name=f"{name} (fitting half)")
    xe, summ_e = prepare_samples(eval_samples, name=f"{name} (held-out half)", min_samples=3)
    rms = float(np.sqrt(np.mean(xf * xf)))
    xf, xe = xf / rms, xe / rms
    bf = best_fit(xf, name=name, max_samples=max_samples, seed=seed)
    model = bf.best.source
    emp = None
    if empirical:
        rng = np.random.default_rng(seed)
        centres = (
            xf
            if xf.size <= EMPIRICAL_DESIGN_CENTRES
            else rng.choice(xf, EMPIRICAL_DESIGN_CENTRES, replace=False)
        )
        emp = Empirical(centres, symmetrize=True)
    rows = []
    for method in methods:
        rounding = rounding_of(method)
        for b in bits:
            try:
                q = design(method, model, bits=b).value
                ev = evaluate(q, model, rounding=rounding)
                pred, h_pred = ev.mse, ev.entropy_bits
                meas, se = sample_mse(q, xe, rounding=rounding)
                h_meas = sample_entropy_bits(q, xe, rounding=rounding)
                cost = 10 * math.log10(meas / pred) if pred > 0 else math.nan
                err = None
            except (ValueError, ArithmeticError, RuntimeError) as exc:
                pred = meas = se = cost = h_pred = h_meas = math.nan
                err = f"{type(exc).__name__}: {exc}"
            e_mse = e_se = e_err = None
            if emp is not None:
                try:
                    e_mse, e_se = sample_mse(
                        design(method, emp, bits=b).value, xe, rounding=rounding
                    )
                except (ValueError, ArithmeticError, RuntimeError) as exc:
                    e_err = f"{type(exc).__name__}: {exc}"
            rows.append(
                DesignRow(
                    method,
                    b,
                    rounding,
                    pred,
                    meas,
                    se,
                    cost,
                    e_mse,
                    e_se,
                    err,
                    e_err,
                    h_pred,
                    h_meas,
                )
            )
    return LayerDesign(
        name=name,
        rms=rms,
        n_fit=int(xf.size),
        n_eval=int(xe.size),
        zeros_eval=summ_e.n_zeros / summ_e.n_total,
        fit=bf,
        model=model,
        rows=tuple(rows),
    )


def split_minibatches(capture: Capture, step: int, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """``(fitting, held-out)`` coordinates of ``layer`` at ``step``: the first ``ceil(m/2)``
    minibatch gradients and the rest, each pooled and flattened (float64).

    Raises:
        ValueError: unknown step/layer; fewer than 2 minibatches (nothing to hold out).
    """
    capture.samples(step, layer, "minibatch")  # checks step and layer, with their messages
    g = np.asarray(capture.steps[step].minibatch[layer], np.float64)
    m = g.shape[0]
    if m < 2:
        raise ValueError(
            f"layer {layer!r} at step {step}: {m} minibatch gradient(s); at least 2 are needed "
            "to fit on some and measure on the others (capture with --minibatches >= 2)"
        )
    h = (m + 1) // 2
    return g[:h].ravel(), g[h:].ravel()


class LayerResult(NamedTuple):
    """:func:`design_capture`'s result for one layer: a design or why there is none."""

    step: int
    layer: str
    result: LayerDesign | None
    error: str | None


def design_capture(
    capture: Capture,
    *,
    steps: Iterable[int] | None = None,
    bits: Iterable[int] = DEFAULT_BITS,
    methods: Iterable[str] | None = None,
    empirical: bool = True,
    max_samples: int | None = 200_000,
    seed: int = 0,
) -> list[LayerResult]:
    """:func:`design_layer` on every layer of every (or the given) step of a capture.

    A layer that cannot be designed for (too few samples, constant, NaN/inf) is returned
    with the error's message, so that one degenerate layer does not hide the rest.

    Raises:
        ValueError: an unknown step or method, a bad budget (the caller's errors).
    """
    bits = _check_bits(bits)
    methods = None if methods is None else list(methods)
    for m in methods or ():
        DESIGNS.entry(m)
    chosen = list(capture.steps) if steps is None else list(steps)
    out = []
    for step in chosen:
        if step not in capture.steps:
            capture.samples(step, next(iter(capture.layers)), "minibatch")  # raises, named
        for layer in capture.layers:
            name = f"layer {layer!r} at step {step}"
            try:
                fit_x, eval_x = split_minibatches(capture, step, layer)
                res = design_layer(
                    fit_x,
                    eval_x,
                    bits=bits,
                    methods=methods,
                    name=name,
                    max_samples=max_samples,
                    empirical=empirical,
                    seed=seed,
                )
            except ValueError as exc:
                out.append(LayerResult(step, layer, None, str(exc)))
            else:
                out.append(LayerResult(step, layer, res, None))
    return out
