"""The fixed suite of theory-vs-simulation checks (registered in :data:`CHECKS`).

Every check builds its problem and algorithms with :mod:`ratedist.sim`, computes the
prediction with :mod:`ratedist.bounds` from the problem's constants (``L_-``, ``L_+``,
``f*``) and the compressors' declared constants, and applies one of the verdict rules of
:mod:`ratedist.validate.verdicts`. Runs shared by several checks are cached for the duration of
one :func:`~ratedist.validate.core.run_checks` call.

Conventions:

* The 3PC checks run at the theorem's step size ``gamma = 1/M1`` with ``L_+`` exact (the
  tridiagonal quadratic's closed form) and ``g_i^0 = ∇f_i(x^0)`` (so ``G^0 = 0``).
* The averaged bounds compare ``(1/T) sum_{t<T} ||∇f(x^t)||^2`` (the first T recorded states)
  with ``bound(T)``; deterministic runs must satisfy it at EVERY ``T <= steps`` (the row
  reports the last T and the detail the worst ratio over T).
* Stochastic runs use independent replicas; the measurement is the replica mean and its
  standard error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ratedist import bounds, sim
from ratedist.compressors import make, scalar
from ratedist.quantizers.truncated import optimal_truncation
from ratedist.sim import run, tridiagonal_quadratic
from ratedist.sources.classic import Laplace
from ratedist.validate.verdicts import (
    CheckResult,
    register,
    verdict_equal,
    verdict_upper,
    verdict_zero_count,
)

_CACHE: dict[tuple, Any] = {}


def clear_cache() -> None:
    """Forget the runs cached during one :func:`run_checks` call."""
    _CACHE.clear()


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


# ----------------------------------------------------------------------------- setup
class Sizes:
    """Problem sizes and run lengths for the quick (CI) and full suites."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.n = 4 if quick else 10
        self.d = 20 if quick else 100
        self.k = 2 if quick else 5
        self.steps = 300 if quick else 3000
        self.replicas = 16 if quick else 32
        self.zeta = 4.0


def quadratic(sz: Sizes, **kw: Any) -> Any:

    return _cached(
        ("quad", sz.quick, tuple(sorted(kw.items()))),
        lambda: tridiagonal_quadratic(sz.n, sz.d, **kw),
    )


def suite() -> list[str]:
    """The methods of the suite: every registered algorithm with ``suite=True``."""
    return [n for n in sim.ALGORITHMS.names() if sim.ALGORITHMS.facts(n)["suite"]]


def make_algorithm(name: str, sz: Sizes) -> Any:
    """The suite's instance of a registered method (Top-K(k) / unbiased Rand-K(k) and the
    registry's example hyperparameters; :func:`ratedist.sim.example_algorithm`)."""
    return sim.example_algorithm(name, k=sz.k, zeta=sz.zeta)


def bound_params(name: str, sz: Sizes, d: int, n: int) -> dict[str, Any]:
    """The ``ratedist.bounds.THREE_PC`` parameters of the suite's method ``name``, from what
    the suite knows of its compressors independently of their declared facts: Top-K has
    ``alpha = k/d``, unbiased Rand-K ``omega = d/k − 1``, the inner 3PC is EF21(Top-K)."""
    facts = sim.ALGORITHMS.facts(name)
    alpha, omega = sz.k / d, d / sz.k - 1.0
    inner = bounds.three_pc_constants("ef21", alpha=alpha)
    known = {
        "alpha": alpha,
        "alpha1": alpha,
        "alpha2": alpha,
        "omega": omega,
        "n_workers": n,
        "A1": inner.A,
        "B1": inner.B,
        **facts["example"],
        "zeta": sz.zeta,
    }
    return {p: known[p] for p in bounds.THREE_PC.facts(facts["bound"])["params"]}


def run_variant(name: str, sz: Sizes, key: Any, *, problem: Any = None, **kw: Any) -> Any:
    """Cached simulator run of a suite variant on the suite's quadratic (or ``problem``)."""

    prob = quadratic(sz) if problem is None else problem
    ck = ("run", name, sz.quick, id(prob), tuple(sorted(kw.items())))

    def go():
        alg = make_algorithm(name, sz)
        reps = None if alg.deterministic else sz.replicas
        return run(alg, prob, steps=sz.steps, key=key, replicas=reps, **kw)

    return _cached(ck, go)


def running_average(grad_norm_sq: np.ndarray) -> np.ndarray:
    """``(1/T) sum_{t<T} ||∇f(x^t)||^2`` for ``T = 1..steps`` along the last axis."""
    g = grad_norm_sq[..., :-1]
    return np.cumsum(g, axis=-1) / np.arange(1, g.shape[-1] + 1)


def three_pc_bound_for(name: str, sz: Sizes, problem: Any, trace: Any) -> Any:
    """The 3PC (or MARINA) bound for a run, from the problem's constants."""
    ab = _constants(name, sz, problem)
    f_gap0 = float(np.nanmean(np.atleast_2d(trace.f_gap)[:, 0]))
    err = trace.server_error if make_algorithm(name, sz).lyapunov == "server" else trace.G
    G0 = float(np.nanmean(np.atleast_2d(err)[:, 0]))
    return ab, bounds.three_pc_bound(
        delta0=f_gap0,
        L_minus=problem.L_minus,
        L_plus=problem.L_plus,
        A=ab.A,
        B=ab.B,
        G0=G0,
        gamma=trace.gamma,
    )


# ---------------------------------------------------------------------------- checks
@register("3pc_constants", summary="sim's (A, B) of every variant == ratedist.bounds.THREE_PC")
def check_constants(quick: bool, key: Any) -> list[CheckResult]:
    sz = Sizes(quick)
    d, n = sz.d, sz.n
    out = []
    for name in suite():
        bound = sim.ALGORITHMS.facts(name)["bound"]
        ours = bounds.three_pc_constants(bound, **bound_params(name, sz, d, n))
        theirs = make_algorithm(name, sz).constants(d, n)
        diff = max(abs(ours.A - theirs[0]), abs(ours.B - theirs[1]))
        verdict, why = verdict_equal(0.0, diff, 1e-12 * (1 + abs(ours.B)))
        out.append(
            CheckResult(
                f"3pc_constants[{name}]",
                0.0,
                diff,
                0.0,
                verdict,
                f"max |Δ(A, B)|; bounds (A, B) = ({ours.A:.6g}, {ours.B:.6g}); {why}",
            )
        )
    return out


@register("lyapunov_pathwise", summary="3PC Lyapunov step holds at every step (deterministic C)")
def check_lyapunov(quick: bool, key: Any) -> list[CheckResult]:
    sz = Sizes(quick)
    prob = quadratic(sz)
    out = []
    for name in _deterministic(sz):
        tr = run_variant(name, sz, key)
        ab = _constants(name, sz, prob)
        slack = bounds.lyapunov_slack(tr.f_gap, tr.G, tr.grad_norm_sq, gamma=tr.gamma, A=ab.A)
        phi = bounds.lyapunov(tr.f_gap, tr.G, gamma=tr.gamma, A=ab.A)
        # float round-off of Phi: f is a sum of d products, f* is subtracted (|f| ~ |f*|)
        scale = np.abs(tr.f[:-1]) + np.abs(tr.f[1:]) + np.abs(phi[:-1]) + 1e-300
        tol = 1e-10 * scale
        count = float(np.sum(slack < -tol))
        verdict, why = verdict_zero_count(count)
        worst = float(np.min(slack / scale))
        out.append(
            CheckResult(
                f"lyapunov_pathwise[{name}]",
                0.0,
                count,
                0.0,
                verdict,
                f"violations of Phi^(t+1) <= Phi^t - (gamma/2)||∇f||^2 over {sz.steps} steps "
                f"(gamma = 1/M1 = {tr.gamma:.4g}); min relative slack {worst:.2e}; "
                f"sim counted {int(tr.violations)}; {why}",
            )
        )
    return out


_THEOREM = ("3PC theorem, arXiv 2202.00998 Thm 5.5", "arXiv 2102.07845 Thm 2.1")


def _deterministic(sz: Sizes) -> list[str]:
    """The suite's methods whose Lyapunov step holds on every path."""
    return [n for n in suite() if make_algorithm(n, sz).deterministic]


def _constants(name: str, sz: Sizes, prob: Any) -> Any:
    bound = sim.ALGORITHMS.facts(name)["bound"]
    return bounds.three_pc_constants(bound, **bound_params(name, sz, prob.dim, prob.n_workers))


def _rate_row(name: str, sz: Sizes, prob: Any, tr: Any) -> CheckResult:
    ab, b = three_pc_bound_for(name, sz, prob, tr)
    avg = running_average(np.atleast_2d(tr.grad_norm_sq))  # (R, steps)
    T = np.arange(1, avg.shape[-1] + 1)
    pred = b(T)
    bound = sim.ALGORITHMS.facts(name)["bound"]
    label = f"{bounds.THREE_PC.facts(bound)['label']} bound ({_THEOREM[bound == 'marina']})"
    if avg.shape[0] == 1:
        worst = float(np.max(avg[0] / pred))
        verdict = "holds" if worst <= 1 + 1e-9 else "violated"
        if not np.all(np.isfinite(avg)):
            verdict = "inconclusive"
        return CheckResult(
            f"rate_3pc[{name}]",
            float(pred[-1]),
            float(avg[0, -1]),
            0.0,
            verdict,
            f"{label}: avg ||∇f||^2 over T = {T[-1]} vs 2Δ0/(γT) + G0/(AT); A = {ab.A:.4g}, "
            f"B = {ab.B:.4g}; worst ratio over all T: {worst:.3g}",
        )
    R = avg.shape[0]
    m = float(np.mean(avg[:, -1]))
    se = float(np.std(avg[:, -1], ddof=1) / math.sqrt(R))
    verdict, why = verdict_upper(float(pred[-1]), m, se)
    mean_curve = np.mean(avg, axis=0)
    worst = float(np.max(mean_curve / pred))
    return CheckResult(
        f"rate_3pc[{name}]",
        float(pred[-1]),
        m,
        se,
        verdict,
        f"{label}, {R} replicas: E avg ||∇f||^2 over T = {T[-1]}; A = {ab.A:.4g}, "
        f"B = {ab.B:.4g}; worst ratio of the mean curve over T: {worst:.3g}; {why}",
    )


@register("rate_3pc", summary="3PC / MARINA rate 2Δ0/(γT) + G0/(AT) vs simulated average")
def check_rate_3pc(quick: bool, key: Any) -> list[CheckResult]:
    sz = Sizes(quick)
    prob = quadratic(sz)
    return [_rate_row(name, sz, prob, run_variant(name, sz, key)) for name in suite()]


@register(
    "rate_3pc_pl", summary="3PC PL-case linear rate on the strongly convex quadratic", quick=False
)
def check_rate_pl(quick: bool, key: Any) -> list[CheckResult]:

    sz = Sizes(quick)
    prob = quadratic(sz, lambda_min=0.1)
    mu = 0.1  # smallest eigenvalue of the mean Hessian: strongly convex => PL with mu
    out = []
    for name in _deterministic(sz):
        ab = _constants(name, sz, prob)
        pl0 = bounds.three_pc_pl_bound(
            delta0=1.0, L_minus=prob.L_minus, L_plus=prob.L_plus, A=ab.A, B=ab.B, mu=mu
        )
        tr = run(make_algorithm(name, sz), prob, steps=sz.steps, key=key, gamma=pl0.step_size)
        b = bounds.three_pc_pl_bound(
            delta0=float(tr.f_gap[0]),
            L_minus=prob.L_minus,
            L_plus=prob.L_plus,
            A=ab.A,
            B=ab.B,
            mu=mu,
            G0=float(tr.G[0]),
            gamma=tr.gamma,
        )
        T = np.arange(tr.f_gap.size)
        ratio = tr.f_gap / b(T)
        worst = float(np.max(ratio))
        verdict = "holds" if worst <= 1 + 1e-9 else "violated"
        out.append(
            CheckResult(
                f"rate_3pc_pl[{name}]",
                float(b(T[-1])),
                float(tr.f_gap[-1]),
                0.0,
                verdict,
                f"f(x^T) - f* vs (1 - γμ)^T (Δ0 + γG0/A), μ = {mu}, γ = {tr.gamma:.4g}, "
                f"rate {b.rate:.6f}; worst ratio over T: {worst:.3g}",
            )
        )
    return out


@register("gd_identities", summary="LAG with zeta = 0 and EF21 with K = d reproduce GD")
def check_gd_identities(quick: bool, key: Any) -> list[CheckResult]:

    sz = Sizes(quick)
    prob = quadratic(sz)
    gamma = 1.0 / prob.L_minus  # GD's 1/M1 (A = 1, B = 0); all three runs share it
    steps = sz.steps
    ref = run(sim.gd(), prob, steps=steps, key=key, gamma=gamma)
    out = []
    cases = (
        ("lag_zeta0", lambda: sim.lag(0.0), 0.0, "identical arithmetic: g_i = x exactly"),
        (
            "ef21_k_eq_d",
            lambda: sim.ef21(make(f"top-k:k={prob.dim}")),
            1e-9,
            "h + (x - h) rounds differently from x: float64 round-off only",
        ),
    )
    for tag, mk, rtol, why_tol in cases:
        tr = run(mk(), prob, steps=steps, key=key, gamma=gamma)
        diff = max(
            float(np.max(np.abs(tr.grad_norm_sq - ref.grad_norm_sq) / (ref.grad_norm_sq[0]))),
            float(np.max(np.abs(tr.f - ref.f)) / max(1.0, abs(ref.f[0]))),
            float(np.max(np.abs(tr.x - ref.x)) / max(1.0, float(np.max(np.abs(prob.x0))))),
        )
        verdict, why = verdict_equal(0.0, diff, rtol)
        out.append(
            CheckResult(
                f"gd_identities[{tag}]",
                0.0,
                diff,
                0.0,
                verdict,
                f"max relative difference to GD of ||∇f||^2, f and x_T over {steps} steps "
                f"({why_tol}); {why}",
            )
        )
    return out


@register("rate_sgd_unbiased", summary="unbiased compressed SGD bound (relative variance)")
def check_sgd(quick: bool, key: Any) -> CheckResult:

    sz = Sizes(quick)
    noise_std = 0.05
    # identical workers (noise_scale = 0): gradient dissimilarity zeta^2 = 0 exactly
    prob = quadratic(sz, noise_scale=0.0).with_noise(noise_std)
    comp = make(f"rand-k-unbiased:k={sz.k}")
    omega = bounds.declared_omega(comp, prob.dim)
    sigma_sq = noise_std**2 * prob.dim
    eta = bounds.sgd_step_size(prob.L_minus, omega=omega, n_workers=prob.n_workers)
    tr = run(
        sim.compressed_sgd(comp), prob, steps=sz.steps, key=key, gamma=eta, replicas=sz.replicas
    )
    b = bounds.sgd_relative_bound(
        delta0=float(np.mean(tr.f_gap[:, 0])),
        L=prob.L_minus,
        n_workers=prob.n_workers,
        omega=omega,
        sigma_sq=sigma_sq,
        dissimilarity_sq=0.0,
        eta=eta,
    )
    avg = running_average(tr.grad_norm_sq)[:, -1]
    m, se = float(np.mean(avg)), float(np.std(avg, ddof=1) / math.sqrt(avg.size))
    T = sz.steps
    verdict, why = verdict_upper(b(T), m, se)
    return CheckResult(
        "rate_sgd_unbiased[rand-k]",
        float(b(T)),
        m,
        se,
        verdict,
        f"{sz.replicas} replicas, T = {T}, omega = {omega:g}, sigma^2 = {sigma_sq:g}, "
        f"eta = 1/(L(1+omega/N)); floor {b.floor:.3g}; {why}",
    )


def _laplace_noise_problem(prob: Any, scale: float) -> Any:
    """``prob`` with stochastic gradients ``∇f_i(x) + Laplace(scale)`` noise per coordinate."""
    grad_fn = prob.grad_fn
    d = prob.dim

    def sgrad(x: Any, data_i: Any, key: Any) -> Any:
        g = grad_fn(x, data_i)
        return g + scale * jax.random.laplace(key, g.shape, g.dtype)

    def var(x: Any, data_i: Any) -> Any:
        return 2.0 * scale * scale * d + 0.0 * x[0]

    cfg = {**prob.config, "laplace_noise": scale}
    return dataclasses.replace(prob, stochastic_grad_fn=sgrad, variance_fn=var, config=cfg)


@register("tnqsgd_bound", summary="TNQSGD bound (paper and rigorous forms) vs simulated floor")
def check_tnqsgd(quick: bool, key: Any) -> list[CheckResult]:

    sz = Sizes(quick)
    scale = 0.05  # Laplace noise scale: gradient coordinates near x* follow Laplace(scale)
    s = 3  # 2 bits per coordinate (full-range code, s + 1 = 4 levels)
    design = optimal_truncation(Laplace(scale), s)
    prob = _laplace_noise_problem(quadratic(sz, noise_scale=0.0, x0_scale=0.0), scale)
    comp = scalar(quantizer=design.quantizer, rounding="stochastic", normalize="none")
    eta = 1.0 / prob.L_minus
    tr = run(
        sim.compressed_sgd(comp), prob, steps=sz.steps, key=key, gamma=eta, replicas=sz.replicas
    )
    sigma_sq = 2.0 * scale**2 * prob.dim
    common = dict(
        delta0=float(np.mean(tr.f_gap[:, 0])),
        L=prob.L_minus,
        n_workers=prob.n_workers,
        d=prob.dim,
        sigma_sq=sigma_sq,
        eta=eta,
        error="bound",  # the papers' Delta^2/4-bounded objective at the optimal design
    )
    avg = running_average(tr.grad_norm_sq)[:, -1]
    m, se = float(np.mean(avg)), float(np.std(avg, ddof=1) / math.sqrt(avg.size))
    half = tr.grad_norm_sq[:, sz.steps // 2 : sz.steps]
    tail = np.mean(half, axis=1)
    tail_m = float(np.mean(tail))
    T = sz.steps
    out = []
    for form in ("paper", "rigorous"):
        b = bounds.tnqsgd_bound_for_design(design, **common, form=form)
        verdict, why = verdict_upper(b(T), m, se)
        out.append(
            CheckResult(
                f"tnqsgd_bound[{form}]",
                float(b(T)),
                m,
                se,
                verdict,
                f"alpha* = {design.alpha:.4g}, s = {s}, eps_Q (bound) = {design.bound_mse:.3g} "
                f"(trunc {design.exact.bias:.2e}); floor {b.floor:.3g}; tail-half mean "
                f"||∇f||^2 = {tail_m:.3g} = {tail_m / b.floor:.3g} x floor; {why}",
            )
        )
    return out


_SHARD_SCRIPT = """
import json, sys
import jax
import numpy as np
from ratedist import sim
from ratedist.compressors import make
with jax.enable_x64(True):
    quick = sys.argv[1] == "1"
    prob = sim.tridiagonal_quadratic(8, 16 if quick else 64)
    steps = 100 if quick else 1000
    alg = sim.ef21(make("top-k:k=2"))
    key = jax.random.key(int(sys.argv[2]))
    out = {"devices": len(jax.devices())}
    ref = sim.run(alg, prob, steps=steps, key=key, engine="vmap", aggregate="gather")
    aggs = ("gather",) if quick else ("gather", "psum")
    for agg in aggs:
        tr = sim.run(alg, prob, steps=steps, key=key, engine="shard_map", aggregate=agg)
        out[agg] = {
            "x": float(np.max(np.abs(tr.x - ref.x))),
            "x_scale": float(np.max(np.abs(ref.x))),
            "f": float(np.max(np.abs(tr.f - ref.f))),
            "f_scale": float(np.max(np.abs(ref.f))),
            "grad_norm_sq": float(np.max(np.abs(tr.grad_norm_sq - ref.grad_norm_sq))),
            "g_scale": float(np.max(ref.grad_norm_sq)),
        }
    print("RESULT " + json.dumps(out))
"""

_PENDING: dict[bool, Any] = {}


def _launch_engines(quick: bool, key: Any) -> Any:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["XLA_FLAGS"] = flags.strip()
    env["JAX_PLATFORMS"] = "cpu"
    seed = int(jax.random.randint(key, (), 0, 2**30))
    return subprocess.Popen(
        [sys.executable, "-c", _SHARD_SCRIPT, "1" if quick else "0", str(seed)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def prestart(names: Any, quick: bool, key: Any) -> None:
    """Start the engine-comparison subprocess early so it overlaps the in-process checks."""
    if "vmap_vs_shard_map" in names and quick not in _PENDING:
        _PENDING[quick] = _launch_engines(quick, key)


def stop_pending() -> None:
    """Kill a prestarted subprocess that was never collected (its check did not run)."""
    for proc in _PENDING.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _PENDING.clear()


@register("vmap_vs_shard_map", summary="vmap ≡ shard_map on 8 emulated CPU devices")
def check_engines(quick: bool, key: Any) -> list[CheckResult]:
    proc = _PENDING.pop(quick, None) or _launch_engines(quick, key)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return [
            CheckResult(
                "vmap_vs_shard_map",
                0.0,
                math.nan,
                math.nan,
                "inconclusive",
                f"subprocess failed (rc {proc.returncode}): {tail}",
            )
        ]
    res = json.loads(line[len("RESULT ") :])
    out = []
    # iterates: bit for bit with gather (same arithmetic on the state); the scalar metrics f and
    # ||∇f||^2 are reductions XLA may fuse differently per engine, so they get float round-off
    for agg, tol_x, note in (
        ("gather", 0.0, "gather: iterate identical bit for bit"),
        ("psum", 1e-9, "psum: reduction order differs, float64 round-off"),
    ):
        if agg not in res:
            continue
        r = res[agg]
        rel_metrics = max(r["f"] / max(r["f_scale"], 1e-300), r["grad_norm_sq"] / r["g_scale"])
        verdict, why = verdict_equal(0.0, r["x"], tol_x * max(1.0, r["x_scale"]))
        if verdict == "holds" and rel_metrics > 1e-12:
            verdict, why = "violated", f"metrics differ by {rel_metrics:.2e} relative"
        out.append(
            CheckResult(
                f"vmap_vs_shard_map[{agg}]",
                0.0,
                r["x"],
                0.0,
                verdict,
                f"max |Δx_T|, EF21 top-2, N = 8 on {res['devices']} devices ({note}); metrics "
                f"f, ||∇f||^2 differ by <= {rel_metrics:.1e} relative (tol 1e-12); {why}",
            )
        )
    return out
