"""Weight-quantization check of the suite: the plateau of GD on quantized weights against the
exact quadratic floor, and how it shrinks when the grid is halved.

Registered in :data:`~ratedist.validate.verdicts.CHECKS` on import (by
:mod:`ratedist.validate.core`); theory in ``docs/theory/weight_quantization.md``, formulas in
:mod:`ratedist.bounds.weights`.

Setup: ``f = (1/2) sum_i (½ xᵀA x − b_iᵀx)`` on ``N = 2`` workers (common Hessian ``A`` with
eigenvalues evenly spread on ``[1, 1.5]``, ``mean_i b_i = A x*``, ``x* ~ N(0, I)`` so that
``x*`` spans many cells of every grid tried), started at ``x0 = 0``. The server runs
``optax.sgd(gamma)`` with ``gamma L = 0.002`` and broadcasts ``Q(x_t)``,
``quantized_weights(grid(delta))``; the workers send exact gradients at ``Q(x_t)`` (``gd()``),
and the trace's ``grad_norm_sq`` and ``f_gap`` are ``||∇f(Q(x_t))||^2`` and ``f(Q(x_t)) − f*``.
The plateau is the mean over the last 40 % of the steps (after ``>= 8/(gamma mu)`` steps the
transient has decayed by ``e^-8``), one value per replica; SE = replica spread ``/ sqrt(R)``.

Verdicts (:func:`~ratedist.validate.verdicts.verdict_equal`): ``|plateau − floor| <= K_SE SE +
bias``, ``bias`` the rigorous bound of :func:`ratedist.bounds.gd_weight_plateau_deviation` on
what ``x_t ≠ x*`` can add (transient, the stationary spread of ``x_t`` around ``x*``, and the
change of ``r_j (1 − r_j)`` over that spread: under 1 % of the floor at ``gamma L = 0.002``).
The ratio rows compare the plateau ratio between consecutive grids with the ratio of the two
exact floors (NOT the literal 4: the ``r_j`` change when the grid is halved), within
``K_SE`` delta-method SE plus the worst case of the two bias intervals.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import numpy as np

from ratedist import bounds
from ratedist.compressors import grid
from ratedist.sim import gd, quantized_weights, run
from ratedist.sim import quadratic as quadratic_problem
from ratedist.validate.verdicts import K_SE, CheckResult, register, verdict_equal

#: step size in units of 1/L: small enough that the plateau sits at the floor within ~1 %
GAMMA_L = 2e-3
#: spectrum of the Hessian (mu, L)
SPECTRUM = (1.0, 1.5)
#: fraction of the run averaged as the plateau (the last part)
WINDOW = 0.4


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"d": 20, "replicas": 16, "steps": 10000, "deltas": (0.2, 0.1)}
    return {"d": 50, "replicas": 32, "steps": 20000, "deltas": (0.2, 0.1, 0.05)}


def weight_problem(d: int, rng: np.random.Generator) -> tuple[Any, np.ndarray, np.ndarray]:
    """``(problem, A, x*)``: the two-worker quadratic of the module docstring."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = (q * np.linspace(*SPECTRUM, d)) @ q.T
    A = (A + A.T) / 2
    x_star = rng.standard_normal(d)
    shift = rng.standard_normal(d)  # heterogeneous workers, same mean gradient
    b = A @ x_star
    return quadratic_problem(np.stack([A, A]), np.stack([b + shift, b - shift])), A, x_star


def _numpy_rng(key: Any) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def _plateau(values: np.ndarray, start: int, stop: int) -> tuple[float, float]:
    """Mean over replicas of the per-replica window mean, and its SE."""
    per_rep = np.asarray(values)[:, start:stop].mean(axis=1)
    return float(per_rep.mean()), float(per_rep.std(ddof=1) / math.sqrt(per_rep.size))


def _ratio_row(name: str, a: dict, b: dict) -> CheckResult:
    """Plateau ratio between grids ``a`` and ``b`` (``delta_b = delta_a / 2``) vs the floors'."""
    pred = a["floor"] / b["floor"]
    meas = a["meas"] / b["meas"]
    se = meas * math.hypot(a["se"] / a["meas"], b["se"] / b["meas"])
    lo = (a["floor"] - a["bias"]) / (b["floor"] + b["bias"])
    hi = (a["floor"] + a["bias"]) / max(b["floor"] - b["bias"], 1e-300)
    bias = max(pred - lo, hi - pred)
    tol = K_SE * se + bias
    verdict, why = verdict_equal(pred, meas, tol)
    four = "inside" if abs(4.0 - meas) <= tol else "outside"
    return CheckResult(
        f"weight_quantization[ratio:{name}:{a['delta']:g}/{b['delta']:g}]",
        pred,
        meas,
        se,
        verdict,
        f"plateau(delta)/plateau(delta/2) vs the ratio of the two exact floors (not 4: the "
        f"r_j change; the literal 4 is {four} the tolerance); tol = 5 SE + bias {bias:.3g}; "
        f"{why}",
    )


@register(
    "weight_quantization",
    summary="GD on grid-rounded weights: plateau = exact floor sum (A^2)_jj r(1-r) Delta^2",
)
def check_weight_quantization(quick: bool, key: Any) -> list[CheckResult]:
    sz = _sizes(quick)
    prob, A, x_star = weight_problem(sz["d"], _numpy_rng(key))
    L = SPECTRUM[1]
    gamma = GAMMA_L / L
    steps = sz["steps"]
    start = round((1 - WINDOW) * steps)  # start * gamma * mu >= 8 at both sizes
    x0 = np.asarray(prob.x0)
    rows, found = [], {"grad": [], "gap": []}
    for delta in sz["deltas"]:
        tr = run(
            gd(),
            prob,
            steps=steps,
            key=jax.random.fold_in(key, round(delta * 1e6)),
            gamma=gamma,
            replicas=sz["replicas"],
            downlink=quantized_weights(grid(delta)),
            check_3pc=False,
        )
        floor = bounds.weight_quantization_floor(A, delta, x_star=x_star)
        for kind, values, pred, quantity, what in (
            ("grad", tr.grad_norm_sq, floor.grad_norm_sq, "grad_norm_sq", "E||∇f(Q(x_t))||^2"),
            ("gap", tr.f_gap, floor.suboptimality, "suboptimality", "E f(Q(x_t)) - f*"),
        ):
            meas, se = _plateau(values, start, steps)
            bias = bounds.gd_weight_plateau_deviation(
                A, delta, gamma, x_star=x_star, x0=x0, start=start, stop=steps, quantity=quantity
            ).total
            verdict, why = verdict_equal(pred, meas, K_SE * se + bias)
            found[kind].append(
                {"delta": delta, "meas": meas, "se": se, "floor": pred, "bias": bias}
            )
            rows.append(
                CheckResult(
                    f"weight_quantization[{kind}:delta={delta:g}]",
                    pred,
                    meas,
                    se,
                    verdict,
                    f"{what}, steps {start}..{steps - 1} x {sz['replicas']} replicas, vs the "
                    f"exact floor at x* (d = {sz['d']}, gamma L = {GAMMA_L:g}, x0 = 0); "
                    f"(meas - pred)/pred = {(meas - pred) / pred:+.2e}; tol = 5 SE + bias "
                    f"{bias:.3g} ({bias / pred:.1%}); {why}",
                )
            )
    for kind, found_rows in found.items():
        for a, b in itertools.pairwise(found_rows):
            rows.append(_ratio_row(kind, a, b))
    return rows
