"""The 1-bit gradient-coding convergence bounds against simulated runs (checks
``gc_sgd_bounds`` and, full suite only, ``gc_sgd_diminishing``; theory in
``docs/theory/gradient_coding.md``, bounds in :mod:`ratedist.bounds.gradient_coding`).

Design simulated: logistic regression whose ``k`` workers are the data partitions, re-dealt
by a gradient code (:func:`ratedist.sim.coded`); every answering worker sends the unbiased
stochastic sign of its coded gradient with the sent ``l2`` norm (``stochastic-sign``,
``scale="l2"``: ``E||Q(y) − y||^2 = (d − 1)||y||^2``), the server decodes with the code's
weights and steps ``x <- x − gamma g``. Points:

* random ``d``-replication with probability rescaling under Bernoulli(``p``) stragglers,
  ``p`` in {0, 0.1, 0.3} (one compiled program per ``d``: the straggler probability is an
  input of the program, and the decoder ``a_i = 1{answers}/(d (1 − p))`` reads it — checked
  equal to ``random_replication(n, d, p).vector`` on every mask of the law);
* FRC and CRC with exactly ``s`` stragglers (exact decoding);
* a horizon sweep ``gamma_T = c/sqrt(T)`` over a geometric range of ``T`` for the log-log
  slope of the average ``||∇f||^2`` (the bounds predict ``O(1/sqrt(T))``).

Prediction (a priori, no measured quantity enters it): ``sigma^2`` from
:func:`ratedist.bounds.coded_variance` with the code's exact decoding moments
(:func:`ratedist.sim.decoding_moments`, every mask of the law) and the bounds
``||∇f_j(x)|| <= G_j`` valid for every ``x`` (:func:`partition_gradient_bounds`). The
simulator's step 0 is complete (every worker answers), so the decoded ``g^0`` has mean
``kappa ∇f(x^0)`` with ``kappa = 1/(1 − p)`` for the rescaled decoder: the bounds are applied
from ``x^1`` on, with ``E f(x^1) − f*`` and ``E||x^1 − x*||^2`` bounded exactly from ``x^0``
(:func:`ratedist.bounds.first_step_bounds`). Measured: the replica mean (and its standard
error) of the average of ``f(x^t) − f*`` over ``t = 2..T+1`` (convex) and of
``||∇f(x^t)||^2`` over ``t = 1..T`` (nonconvex); verdict :func:`verdict_upper` (5 SE). Each
row's detail also gives the "plug-in" bound with the simulator's own per-step variance
``E||g^t − ∇f(x^t)||^2`` (the trace's ``server_error``) in place of ``sigma^2``: the telescoped
sums of the proofs with measured variances, a much sharper test of the derivation than the
worst-case ``G_j``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
from scipy.special import expit

from ratedist import bounds, sim
from ratedist.compressors import make
from ratedist.sim.stages import Aggregation
from ratedist.validate.verdicts import K_SE, CheckResult, register, verdict_equal, verdict_upper

#: ``sup_t |2 t / (1 + t^2)^2| = 3 sqrt(3)/8``: the nonconvex regulariser's gradient per unit
#: ``lam`` and coordinate (at ``t^2 = 1/3``).
_REG_GRAD_SUP = 3 * math.sqrt(3) / 8
#: tolerance of the log-log slope: |slope + 1/2| <= SLOPE_TOL + K_SE SE (see the docstring of
#: :func:`check_gc_sgd_bounds`)
SLOPE_TOL = 0.1
#: gamma L at the shortest horizon of the slope sweep (gamma_T = c/sqrt(T), c = this
#: sqrt(T_min)/L): small enough that the O(gamma L) corrections to the slope stay ~0.03
SLOPE_GAMMA_L = 0.25


class _Sizes(NamedTuple):
    quick: bool
    k: int  # partitions = workers of every code
    dim: int
    samples: int
    T: int  # horizon of the bound rows
    replicas: int
    horizons: tuple[int, ...]  # slope sweep (on the convex problem, middle replication factor)
    probs: tuple[float, ...]  # straggler probabilities of the replication sweep
    designs: dict[str, tuple[tuple[str, int], ...]]  # problem -> (("rr", d) | (code, s), ...)


def _sizes(quick: bool) -> _Sizes:
    common = dict(k=8, dim=10, samples=400, probs=(0.0, 0.1, 0.3))
    if quick:
        return _Sizes(
            quick=True,
            T=200,
            replicas=16,
            horizons=(50, 100, 200),
            designs={"convex": (("rr", 2),)},
            **common,
        )
    return _Sizes(
        quick=False,
        T=800,
        replicas=32,
        horizons=(50, 100, 200, 400, 800),
        designs={
            "convex": (("rr", 1), ("rr", 2), ("rr", 3), ("frc", 1), ("crc", 1)),
            "nonconvex": (("rr", 2),),
        },
        **common,
    )


# ------------------------------------------------------------------------------ the problem
def partition_gradient_bounds(problem: Any) -> np.ndarray:
    """``G_j >= sup_x ||∇f_j(x)||`` for a logistic problem (``ratedist.sim.logistic_nonconvex``).

    ``∇f_j(x) = −(1/m) X_j^T (y ∘ s) + lam r(x)`` with ``s ∈ [0, 1]^m`` and
    ``|r(x)_i| = |2 x_i/(1 + x_i^2)^2| <= 3 sqrt(3)/8``, so
    ``||∇f_j|| <= min((1/m) sum_r ||a_r||, ||X_j||_2 / sqrt(m)) + lam sqrt(d) 3 sqrt(3)/8``.
    """
    X, lam = np.asarray(problem.data["X"]), np.asarray(problem.data["lam"])
    m, d = X.shape[1], X.shape[2]
    rows = np.linalg.norm(X, axis=2).mean(axis=1)
    spectral = np.array([np.linalg.norm(Xj, 2) for Xj in X]) / math.sqrt(m)
    return np.minimum(rows, spectral) + lam * math.sqrt(d) * _REG_GRAD_SUP


def partition_values_and_grads(problem: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """``f_j(x)`` ``(k,)`` and ``∇f_j(x)`` ``(k, d)`` of a logistic problem in numpy float64
    (the formulas of :func:`ratedist.sim.logistic_nonconvex`; nothing compiled)."""
    X, y, lam = (np.asarray(problem.data[n]) for n in ("X", "y", "lam"))
    x = np.asarray(x, dtype=np.float64)
    z = -y * (X @ x)  # (k, m)
    f = np.mean(np.logaddexp(0.0, z), axis=1) + lam * np.sum(x * x / (1 + x * x))
    g = -np.einsum("kmd,km->kd", X, y * expit(z)) / X.shape[1]
    return f, g + lam[:, None] * (2 * x / (1 + x * x) ** 2)[None, :]


def _minimiser(problem: Any) -> np.ndarray:
    """``x*`` of the convex logistic problem (``lam = 0``) by L-BFGS-B in numpy float64."""

    def fun(x):
        f, g = partition_values_and_grads(problem, x)
        return float(f.mean()), g.mean(axis=0)

    res = scipy.optimize.minimize(
        fun,
        problem.x0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 10000},
    )
    return np.asarray(res.x)


class _Base(NamedTuple):
    name: str
    problem: Any
    convex: bool
    L: float
    f_star: float
    x_star: np.ndarray | None
    G: np.ndarray  # per-partition gradient bounds
    f0: float
    parts0: np.ndarray  # (k, d) partition gradients g_j(x0) = grad f_j(x0)/k


def _base(kind: str, sz: _Sizes) -> _Base:
    convex = kind == "convex"
    prob = sim.logistic_nonconvex(
        n_workers=sz.k,
        lam=0.0 if convex else 0.1,
        n_samples=sz.samples,
        dim=sz.dim,
        seed=0,
        solve_f_star=False,
    )
    fj, gj = partition_values_and_grads(prob, prob.x0)
    f0 = float(fj.mean())
    if convex:
        x_star = _minimiser(prob)
        f_star = float(partition_values_and_grads(prob, x_star)[0].mean())
    else:  # f >= 0 everywhere: a valid lower bound (a numerical local minimum need not be)
        x_star, f_star = None, 0.0
    return _Base(
        kind,
        prob,
        convex,
        float(prob.L_minus),
        f_star,
        x_star,
        partition_gradient_bounds(prob),
        f0,
        np.asarray(gj) / sz.k,
    )


# ------------------------------------------------------------------------------- the design
class _Design(NamedTuple):
    label: str
    code: Any  # the GradientCode (at the first straggler probability for the sweep)
    coded: Any
    participation: Any
    aggregation: Any
    probs: tuple[float | None, ...]  # straggler probability per point (None: exactly s)
    moments: tuple[Any, ...]  # DecodingMoments per point
    a0: tuple[np.ndarray, ...]  # decoding weights at step 0 (everyone answers) per point


def _probability_aggregation(d: int) -> Aggregation:
    """``a_i = 1{answers} / (d (1 − p))`` with ``p`` the program's ``straggle_p``."""

    def weight(mask, i, n, hp):
        return jnp.where(mask[i], 1.0 / (d * (1.0 - hp["straggle_p"])), 0.0)

    return Aggregation(
        f"probability[d={d}]",
        weight,
        None,
        False,
        {"aggregation": "decode", "name": f"probability rescaling, d={d}"},
    )


def _replication_design(base: _Base, d: int, sz: _Sizes) -> _Design:
    n = sz.k
    codes = [sim.random_replication(n, d, p=p, seed=d) for p in sz.probs]
    moments, a0 = [], []
    for code, p in zip(codes, sz.probs, strict=True):
        law = sim.straggler_masks_of(sim.bernoulli_stragglers(p), n)
        a = sim.codes.decoding_vectors(code, law.masks)
        # the program's decoder (reads p) is the code's decoder at this p, on every mask
        if not np.allclose(a, law.masks / (d * (1 - p)), rtol=1e-15, atol=0):
            raise RuntimeError(f"probability decoder differs from {code.name} at p={p}")
        moments.append(
            bounds.decoding_moments_from_weights(
                a, code.B, law.probs, law=f"{code.name}: {law.label}", exact=law.exact
            )
        )
        a0.append(np.full(n, 1.0 / (d * (1 - p))))
    c = sim.coded(base.problem, codes[0])
    return _Design(
        f"rr:d={d}",
        codes[0],
        c,
        sim.bernoulli_stragglers(sz.probs[0]),
        _probability_aggregation(d),
        tuple(sz.probs),
        tuple(moments),
        tuple(a0),
    )


def _exact_design(base: _Base, name: str, s: int, sz: _Sizes) -> _Design:
    code = sim.make_code(name, n=sz.k, s=s)
    part = sim.exactly_stragglers(s)
    mom = sim.decoding_moments(code, part)
    a0 = np.asarray(sim.codes.decoding_vectors(code, np.ones((1, sz.k), bool))[0])
    c = sim.coded(base.problem, code)
    return _Design(f"{name}:s={s}", code, c, part, c.aggregation, (None,), (mom,), (a0,))


# ----------------------------------------------------------------------------- predictions
class _Prediction(NamedTuple):
    sigma: Any  # VarianceTerms
    delta1: float
    dist1_sq: float | None
    kappa: float


def _predict(base: _Base, design: _Design, j: int, gamma: float) -> _Prediction:
    """A priori sigma^2 and the state after the complete step 0 at step size gamma."""
    B = design.code.B
    mom = design.moments[j]
    if mom.bias > 1e-8 or not mom.exact:
        raise RuntimeError(f"decoder not unbiased under its law: {mom.law}, bias {mom.bias:.2e}")
    sigma = bounds.coded_variance(
        mom, B, dim=base.problem.dim, scale="l2", partition_grad_bound=base.G
    )
    a0 = design.a0[j]
    c0 = a0 @ B
    kappa = float(np.mean(c0))
    if np.max(np.abs(c0 - kappa)) > 1e-9:
        raise RuntimeError(f"step-0 decoding of {design.label} is not a multiple of ∇f")
    y0 = B @ base.parts0  # (n, d) coded gradients at x0
    mse0 = bounds.onebit_message_mse(base.problem.dim, "l2", norm_sq=np.sum(y0 * y0, axis=1))
    sigma0 = bounds.quantization_variance(a0 * a0, mse0)
    grad0 = base.parts0.sum(axis=0)
    kw = {}
    if base.convex:
        diff = base.problem.x0 - base.x_star
        kw = {"dist0_sq": float(diff @ diff), "inner0": float(grad0 @ diff)}
    first = bounds.first_step_bounds(
        delta0=base.f0 - base.f_star,
        grad0_sq=float(grad0 @ grad0),
        L=base.L,
        gamma=gamma,
        kappa=kappa,
        sigma0_sq=sigma0,
        **kw,
    )
    return _Prediction(sigma, first.delta1, first.dist1_sq, kappa)


# ---------------------------------------------------------------------------------- runs
def _run(
    design: _Design,
    gammas: list[float],
    probs: list[float] | None,
    steps: int,
    replicas: int,
    key: Any,
    server: Any = None,
) -> Any:
    hyper = None if probs is None else {"straggle_p": probs}
    return sim.run(
        sim.compressed_sgd(make("stochastic-sign", scale="l2")),
        design.coded.problem,
        steps=steps,
        key=key,
        gamma=gammas,
        hyper=hyper,
        replicas=replicas,
        participation=design.participation,
        aggregation=design.aggregation,
        oracle=design.coded.oracle,
        check_3pc=False,
        server=server,
    )


def _mean_se(per_replica: np.ndarray) -> tuple[float, float]:
    return float(np.mean(per_replica)), float(
        np.std(per_replica, ddof=1) / math.sqrt(per_replica.size)
    )


def _bound_rows(
    base: _Base, design: _Design, j: int, point: int, tr: Any, T: int, gamma: float, label: str
) -> list[CheckResult]:
    """Variance, convex (if convex) and nonconvex rows of one sweep point of ``tr``."""
    pred = _predict(base, design, j, gamma)
    s2 = pred.sigma.total
    L = base.L
    err = tr.server_error[point][:, 1 : T + 1]  # steps t = 1..T from x^1 (replicas, T)
    var_t = err.mean(axis=0)
    worst = int(np.argmax(var_t))
    var_se = float(err[:, worst].std(ddof=1) / math.sqrt(err.shape[0]))
    name = f"gc_sgd_bounds[{base.name}:{design.label}{label}"
    terms = (
        f"sigma^2 = {s2:.4g} (quantization {pred.sigma.quantization:.3g}, stragglers "
        f"{pred.sigma.straggler:.3g}; E||a||^2 = {design.moments[j].weight_sq_norm:.4g})"
    )
    v, why = verdict_upper(s2, float(var_t[worst]), var_se)
    rows = [
        CheckResult(
            f"{name}:variance]",
            s2,
            float(var_t[worst]),
            var_se,
            v,
            f"max_t E||g^t - ∇f||^2 over t = 1..{T} vs the a priori {terms}; {why}",
        )
    ]
    plug = float(var_t.mean())  # mean over t of the per-step variances: what the sums see
    if base.convex:
        gap = tr.f_gap[point][:, 2 : T + 2] - (base.f_star - float(base.problem.f_star or 0.0))
        m, se = _mean_se(gap.mean(axis=1))
        b = bounds.coded_convex_bound(dist0_sq=pred.dist1_sq, L=L, sigma_sq=s2, gamma=gamma)
        pb = bounds.coded_convex_bound(dist0_sq=pred.dist1_sq, L=L, sigma_sq=plug, gamma=gamma)
        v, why = verdict_upper(b(T), m, se)
        rows.append(
            CheckResult(
                f"{name}:convex]",
                float(b(T)),
                m,
                se,
                v,
                f"(1/T) sum_{{t=2}}^{{T+1}} E f(x^t) - f*, T = {T}, gamma = {gamma:.3g} "
                f"(L = {L:.3g}), {tr.f_gap.shape[1]} replicas, from x^1 (step 0 complete, kappa = "
                f"{pred.kappa:.3g}); plug-in sigma^2 = {plug:.3g}: bound {pb(T):.3g} (measured/"
                f"plug-in = {m / pb(T):.3g}); {why}",
            )
        )
    g = tr.grad_norm_sq[point][:, 1 : T + 1]
    m, se = _mean_se(g.mean(axis=1))
    b = bounds.coded_nonconvex_bound(delta0=max(pred.delta1, 0.0), L=L, sigma_sq=s2, gamma=gamma)
    pb = bounds.coded_nonconvex_bound(delta0=max(pred.delta1, 0.0), L=L, sigma_sq=plug, gamma=gamma)
    v, why = verdict_upper(b(T), m, se)
    rows.append(
        CheckResult(
            f"{name}:nonconvex]",
            float(b(T)),
            m,
            se,
            v,
            f"(1/T) sum_{{t=1}}^{{T}} E||∇f(x^t)||^2, T = {T}, gamma = {gamma:.3g}, from x^1 "
            f"(Delta1 <= {pred.delta1:.3g}); plug-in sigma^2 = {plug:.3g}: bound {pb(T):.3g} "
            f"(measured/plug-in = {m / pb(T):.3g}); {why}",
        )
    )
    return rows


def _slope_row(
    base: _Base, design: _Design, j: int, tr: Any, first: int, sz: _Sizes, gammas: list[float]
) -> CheckResult:
    """Log-log slope of the average ||∇f||^2 over T at gamma_T = c/sqrt(T)."""
    Ts = np.asarray(sz.horizons, dtype=np.float64)
    avg = np.stack(
        [
            tr.grad_norm_sq[first + i][:, 1 : int(T) + 1].mean(axis=1)
            for i, T in enumerate(sz.horizons)
        ],
        axis=1,
    )  # (replicas, horizons)
    X = np.log(Ts) - np.log(Ts).mean()
    slopes = (np.log(avg) - np.log(avg).mean(axis=1, keepdims=True)) @ X / (X @ X)
    m, se = _mean_se(slopes)
    ratios = []
    for i, T in enumerate(sz.horizons):
        pred = _predict(base, design, j, gammas[i])
        b = bounds.coded_nonconvex_bound(
            delta0=max(pred.delta1, 0.0), L=base.L, sigma_sq=pred.sigma.total, gamma=gammas[i]
        )
        ratios.append(float(avg[:, i].mean()) / b(T))
    tol = SLOPE_TOL + K_SE * se
    v, why = verdict_equal(-0.5, m, tol)
    return CheckResult(
        f"gc_sgd_bounds[{base.name}:{design.label}:p={design.probs[j]:g}:slope]",
        -0.5,
        m,
        se,
        v,
        f"log-log slope of (1/T) sum_{{t=1}}^T E||∇f(x^t)||^2 vs T in {list(sz.horizons)} at "
        f"gamma_T = c/sqrt(T), c = {SLOPE_GAMMA_L:g} sqrt(T_min)/L (per-replica fits, mean ± SE); "
        f"tol = {SLOPE_TOL:g} + 5 SE; measured/bound at each T: "
        f"{', '.join(f'{r:.2g}' for r in ratios)}; {why}",
    )


def _replication_rows(base: _Base, d: int, sz: _Sizes, key: Any) -> list[CheckResult]:
    """One program: the straggler sweep at gamma = 1/L (+ the slope sweep where due)."""
    design = _replication_design(base, d, sz)
    gamma = 1.0 / base.L
    gammas, probs, steps = [gamma] * len(sz.probs), list(sz.probs), sz.T + 1
    slope = base.convex and d == 2
    if slope:
        c = SLOPE_GAMMA_L * math.sqrt(sz.horizons[0]) / base.L
        gammas += [c / math.sqrt(T) for T in sz.horizons]
        probs += [sz.probs[-1]] * len(sz.horizons)
        steps = max(steps, max(sz.horizons) + 1)
    tr = _run(design, gammas, probs, steps, sz.replicas, key)
    out = []
    for j, p in enumerate(sz.probs):
        out += _bound_rows(base, design, j, j, tr, sz.T, gamma, f":p={p:g}")
    if slope:
        j = len(sz.probs) - 1
        out.append(_slope_row(base, design, j, tr, len(sz.probs), sz, gammas[len(sz.probs) :]))
    return out


def _diminishing_server(hp: Any) -> Any:
    """``x <- x − gamma_t g`` with ``gamma_t = gamma/sqrt(t + 1)`` (``gamma`` read as
    ``gamma0``; optax's count is 0 at the first update)."""
    return optax.sgd(lambda count: hp["gamma"] / jnp.sqrt(count + 1.0))


def _diminishing_rows(base: _Base, sz: _Sizes, key: Any) -> list[CheckResult]:
    """Random 2-replication at the largest p with ``gamma_t = (1/L)/sqrt(t + 1)``: the
    ``gamma_t``-weighted averages against the diminishing-step bounds, applied from ``x^1``
    (steps ``gamma0/sqrt(u + 2)``, ``u >= 0``: offset 2)."""
    design = _replication_design(base, 2, sz)
    j = len(sz.probs) - 1
    gamma0 = 1.0 / base.L
    tr = _run(design, [gamma0], [sz.probs[j]], sz.T + 1, sz.replicas, key, _diminishing_server)
    pred = _predict(base, design, j, gamma0)
    s2, T = pred.sigma.total, sz.T
    w = gamma0 / np.sqrt(np.arange(T) + 2.0)
    name = f"gc_sgd_diminishing[{base.name}:{design.label}:p={sz.probs[j]:g}"
    gap = tr.f_gap[0][:, 2 : T + 2] - (base.f_star - float(base.problem.f_star or 0.0))
    m, se = _mean_se(gap @ w / w.sum())
    b = bounds.coded_convex_diminishing_bound(
        dist0_sq=pred.dist1_sq, L=base.L, sigma_sq=s2, gamma0=gamma0, offset=2
    )
    v, why = verdict_upper(b(T), m, se)
    rows = [
        CheckResult(
            f"{name}:convex]",
            float(b(T)),
            m,
            se,
            v,
            f"{b.quantity} from x^1, gamma_u = (1/L)/sqrt(u + 2), T = {T}; O(log T/sqrt T) "
            f"envelope {b.envelope(T):.3g}; {why}",
        )
    ]
    g = tr.grad_norm_sq[0][:, 1 : T + 1]
    m, se = _mean_se(g @ w / w.sum())
    b = bounds.coded_nonconvex_diminishing_bound(
        delta0=max(pred.delta1, 0.0), L=base.L, sigma_sq=s2, gamma0=gamma0, offset=2
    )
    v, why = verdict_upper(b(T), m, se)
    rows.append(
        CheckResult(
            f"{name}:nonconvex]",
            float(b(T)),
            m,
            se,
            v,
            f"{b.quantity} from x^1, gamma_u = (1/L)/sqrt(u + 2), T = {T}; {why}",
        )
    )
    return rows


@register(
    "gc_sgd_bounds",
    summary="1-bit gradient coding (unbiased): convex/nonconvex SGD bounds, variance, slope -1/2",
)
def check_gc_sgd_bounds(quick: bool, key: Any) -> list[CheckResult]:
    """Rows per (problem, code, straggler probability): the a priori variance bound, the convex
    bound (convex problem) and the nonconvex bound at ``gamma = 1/L``; one slope row.

    Quick: the convex problem, random 2-replication, ``p`` in {0, 0.1, 0.3}, ``T = 200``, the
    slope over ``T`` in {50, 100, 200} (one compiled program). Full: also ``d`` in {1, 3},
    FRC/CRC with exactly 1 straggler, random 2-replication on the nonconvex problem,
    ``T = 800``, 32 replicas, the slope over ``T`` in {50, ..., 800} (six programs). The
    diminishing-step bounds are the separate check ``gc_sgd_diminishing``.

    Slope tolerance ``0.1 + 5 SE``: with ``gamma_T L <= 1/4`` the descent identity
    ``sum_t gamma ||∇f||^2 ≈ Delta`` behind both terms of the ``1/sqrt(T)`` law holds to
    ``O(gamma L)`` (a change of slope of ``<= ~0.04`` over the range), ``f(x^T) − f*`` is
    ``O(gamma)`` of ``Delta``, and ``gamma T >= c sqrt(T_min) = T_min/(4 L)`` puts the
    transient well inside every horizon; 0.1 covers these with margin.
    """
    sz = _sizes(quick)
    out: list[CheckResult] = []
    for kind, designs in sz.designs.items():
        base = _base(kind, sz)
        for which, arg in designs:
            sub = jax.random.fold_in(key, zlib.crc32(f"{kind}:{which}:{arg}".encode()))
            if which == "rr":
                out += _replication_rows(base, arg, sz, sub)
                continue
            design = _exact_design(base, which, arg, sz)
            tr = _run(design, [1.0 / base.L], None, sz.T + 1, sz.replicas, sub)
            out += _bound_rows(base, design, 0, 0, tr, sz.T, 1.0 / base.L, "")
    return out


@register(
    "gc_sgd_diminishing",
    summary="1-bit gradient coding (unbiased): diminishing-step SGD bounds, O(log T/sqrt T)",
    quick=False,
)
def check_gc_sgd_diminishing(quick: bool, key: Any) -> list[CheckResult]:
    """Random 2-replication, Bernoulli(0.3) stragglers, convex logistic problem, steps
    ``gamma_t = (1/L)/sqrt(t + 1)``: the ``gamma_t``-weighted averages of ``f − f*`` and
    ``||∇f||^2`` against :func:`ratedist.bounds.coded_convex_diminishing_bound` and
    :func:`ratedist.bounds.coded_nonconvex_diminishing_bound` (one compiled program; full
    suite only, the quick variant runs ``T = 200``)."""
    sz = _sizes(quick)
    return _diminishing_rows(_base("convex", sz), sz, key)
