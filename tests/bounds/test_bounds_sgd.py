"""Compressed-SGD bounds and the bound helpers against independent computations.

* sympy derivations (ratedist.symbolic.descent, lambdified) ≡ the hand-written numpy formulas
  of ratedist.bounds to 1e-12 relative (two codings of the same algebra).
* Monte Carlo: unbiased rand-k SGD run in numpy stays under the bound within 5 SE.
* iterations_to / bits_per_worker_to round-trip: bound(T) <= eps < bound(T - 1).
"""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from ratedist import bounds
from ratedist.compressors.base import Facts
from ratedist.symbolic import descent
from ratedist.symbolic.lambdify import lambdified

RTOL = 1e-12  # two float64 codings of the same closed form


def params(seed):
    rng = np.random.default_rng(seed)
    return dict(
        delta0=rng.uniform(0.1, 10),
        L=rng.uniform(0.1, 10),
        n_workers=int(rng.integers(1, 50)),
        sigma_sq=rng.uniform(0, 5),
        eps_q=rng.uniform(0, 1),
        d=int(rng.integers(1, 1000)),
    )


@pytest.mark.parametrize("seed", range(5))
def test_unbiased_bound_equals_sympy(seed):
    p = params(seed)
    T = 37.0
    eta = 0.7 / p["L"]
    b = bounds.sgd_unbiased_bound(**p, eta=eta)
    f = lambdified(
        "descent.sgd_unbiased_bound", ["Delta0", "eta", "T", "L", "sigma_sq", "d", "eps_q", "N"]
    )
    want = f(p["delta0"], eta, T, p["L"], p["sigma_sq"], p["d"], p["eps_q"], p["n_workers"])
    assert b(T) == pytest.approx(want, rel=RTOL)
    limit = lambdified("descent.sgd_unbiased_step_limit", ["L"])(p["L"])
    assert bounds.sgd_unbiased_bound(**p).step_size == pytest.approx(limit, rel=RTOL)


@pytest.mark.parametrize("seed", range(5))
def test_relative_bound_equals_sympy(seed):
    rng = np.random.default_rng(100 + seed)
    delta0, L, omega, s2, z2 = rng.uniform(0.1, 5, size=5)
    n = int(rng.integers(1, 30))
    b = bounds.sgd_relative_bound(
        delta0=delta0, L=L, n_workers=n, omega=omega, sigma_sq=s2, dissimilarity_sq=z2
    )
    limit = lambdified("descent.sgd_relative_step_limit", ["L", "omega", "N"])(L, omega, n)
    assert b.step_size == pytest.approx(limit, rel=RTOL)
    assert bounds.sgd_step_size(L, omega=omega, n_workers=n) == pytest.approx(limit, rel=RTOL)
    f = lambdified(
        "descent.sgd_relative_bound",
        ["Delta0", "eta", "T", "L", "omega", "sigma_sq", "zeta_sq", "N"],
    )
    assert b(11) == pytest.approx(f(delta0, b.step_size, 11, L, omega, s2, z2, n), rel=RTOL)


@pytest.mark.parametrize("seed", range(5))
def test_biased_and_tnq_bounds_equal_sympy(seed):
    p = params(200 + seed)
    rng = np.random.default_rng(seed)
    b2, t = rng.uniform(0, 2, size=2)
    eta = 0.5 / p["L"]
    f = lambdified(
        "descent.sgd_biased_bound",
        ["Delta0", "eta", "T", "L", "sigma_sq", "d", "eps_q", "N", "b2"],
    )
    args = (p["delta0"], eta, 13, p["L"], p["sigma_sq"], p["d"], p["eps_q"], p["n_workers"])
    got = bounds.sgd_biased_bound(
        delta0=p["delta0"],
        L=p["L"],
        n_workers=p["n_workers"],
        bias_sq=b2,
        sigma_sq=p["sigma_sq"],
        eps_var=p["eps_q"],
        d=p["d"],
        eta=eta,
    )
    assert got(13) == pytest.approx(f(*args, b2), rel=RTOL)
    # TNQ rigorous = biased with bias d*t; paper = unbiased with eps_q = v + t
    kw = dict(delta0=p["delta0"], L=p["L"], n_workers=p["n_workers"], d=p["d"], eta=eta)
    kw |= dict(sigma_sq=p["sigma_sq"], variance_per_coord=p["eps_q"], truncation_per_coord=t)
    rig = bounds.tnqsgd_bound(**kw, form="rigorous")
    assert rig(13) == pytest.approx(f(*args, p["d"] * t), rel=RTOL)
    pap = bounds.tnqsgd_bound(**kw, form="paper")
    f_unb = lambdified(
        "descent.sgd_unbiased_bound", ["Delta0", "eta", "T", "L", "sigma_sq", "d", "eps_q", "N"]
    )
    want = f_unb(*args[:6], p["eps_q"] + t, p["n_workers"])
    assert pap(13) == pytest.approx(want, rel=RTOL)
    assert "rigorous" in rig.theorem and "paper" in pap.theorem


def test_bias_identity_and_step_boundary_signs():
    assert descent.bias_identity() == 0
    # just inside the boundary eta = 1/L the g2 coefficient is below -eta/2; just outside above
    eta, L = sp.symbols("eta L", positive=True)
    coef = -eta + L * eta**2 / 2
    for frac, sign in ((0.99, -1), (1.01, 1)):
        val = (coef + eta / 2).subs({L: 3.0, eta: frac / 3.0})
        assert sp.sign(val) == sign


def test_three_pc_sympy_matches_numpy():
    Lm, Lp, A, B = 1.3, 2.2, 0.4, 0.7
    ex = lambdified("descent.three_pc_step_exact", ["L_minus", "L_plus", "A", "B"])
    assert bounds.three_pc_step_size_exact(Lm, Lp, A, B) == pytest.approx(
        ex(Lm, Lp, A, B), rel=RTOL
    )
    slack = lambdified("descent.three_pc_m1_slack", ["L_minus", "L_plus", "A", "B"])
    assert slack(Lm, Lp, A, B) < 0
    rate = lambdified("descent.three_pc_bound", ["Delta0", "gamma", "T", "A", "G0"])
    b = bounds.three_pc_bound(delta0=2.0, L_minus=Lm, L_plus=Lp, A=A, B=B, G0=0.3)
    assert b(9) == pytest.approx(rate(2.0, b.step_size, 9, A, 0.3), rel=RTOL)
    # PL: the two step conditions from sympy; 1/M2 is inside the R condition
    g_r = lambdified("descent.three_pc_pl_step_r", ["L_minus", "L_plus", "A", "B"])(Lm, Lp, A, B)
    g_g = lambdified("descent.three_pc_pl_step_g", ["A", "mu"])(A, 0.05)
    assert 1 / bounds.m2(Lm, Lp, A, B) <= g_r
    pl = bounds.three_pc_pl_bound(delta0=2.0, L_minus=Lm, L_plus=Lp, A=A, B=B, mu=0.05, G0=0.3)
    assert pl.step_size == pytest.approx(min(1 / bounds.m2(Lm, Lp, A, B), g_g), rel=RTOL)
    assert pl.rate == pytest.approx(1 - pl.step_size * 0.05, rel=RTOL)
    assert pl.scale == pytest.approx(2.0 + pl.step_size * 0.3 / A, rel=RTOL)


def test_relative_bound_monte_carlo_rand_k():
    """Unbiased rand-1 SGD (omega = d - 1) on identical quadratics, exact gradients."""
    rng = np.random.default_rng(7)
    d, n, T, reps = 4, 3, 60, 400
    Lc = np.array([1.0, 0.7, 0.4, 0.2])  # diagonal Hessian
    omega = d - 1.0
    x0 = np.ones(d)
    delta0 = 0.5 * np.sum(Lc * x0**2)
    b = bounds.sgd_relative_bound(delta0=delta0, L=Lc.max(), n_workers=n, omega=omega)
    x = np.tile(x0, (reps, 1))
    acc = np.zeros(reps)
    for _ in range(T):
        g = Lc[None, :] * x
        acc += np.sum(g**2, axis=1)
        j = rng.integers(0, d, size=(reps, n))
        msg = np.zeros((reps, d))
        for w in range(n):  # rand-1 scaled by d, independent per worker
            msg[np.arange(reps), j[:, w]] += d * g[np.arange(reps), j[:, w]] / n
        x = x - b.step_size * msg
    avg = acc / T
    mean, se = avg.mean(), avg.std(ddof=1) / math.sqrt(reps)
    assert mean <= b(T) + 5 * se  # 5 SE: Monte Carlo at fixed seed
    assert mean > 0.05 * b(T)  # the bound is not vacuous here


# --- helpers ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    transient=st.floats(1e-6, 1e8),
    floor=st.floats(0.0, 10.0),
    excess=st.floats(1e-6, 1e3),
)
def test_iterations_round_trip_sublinear(transient, floor, excess):
    b = bounds.SublinearBound(transient, floor, 0.1, "t")
    eps = floor + excess
    T = b.iterations_to(eps)
    assert b(T) <= eps
    assert T == 1 or b(T - 1) > eps


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(1e-6, 1e6), rate=st.floats(0.0, 0.999999), eps=st.floats(1e-8, 1e3))
def test_iterations_round_trip_linear(scale, rate, eps):
    b = bounds.LinearBound(scale, rate, 0.1, "t")
    T = b.iterations_to(eps)
    assert b(T) <= eps
    assert T == 0 or b(T - 1) > eps


def test_bits_per_worker():
    b = bounds.three_pc_bound(delta0=1.0, L_minus=1.0, L_plus=1.0, A=1.0, B=0.0)
    T = b.iterations_to(0.01)
    assert T == 200  # 2 Delta0 L / eps
    assert b.bits_per_worker_to(0.01, 64.0, initial_bits=320) == 320 + 200 * 64


def test_best_step_size_minimises_iterations():
    kw = dict(delta0=5.0, L=2.0, n_workers=4, sigma_sq=3.0, eps_q=0.2, d=10)
    eps = 0.5
    eta = bounds.best_step_size(
        eps, lambda e: bounds.sgd_unbiased_bound(**kw, eta=e), eta_max=bounds.sgd_step_size(2.0)
    )
    # closed form (eps - b)/(2c) with c = L (sigma^2 + d eps_q)/N, b = 0
    assert eta == pytest.approx(eps / (2 * 2.0 * (3.0 + 2.0) / 4), rel=1e-12)
    t_best = bounds.sgd_unbiased_bound(**kw, eta=eta).iterations_to(eps)
    for f in (0.8, 1.2):
        assert bounds.sgd_unbiased_bound(**kw, eta=eta * f).iterations_to(eps) >= t_best
    # with a bias floor the step shrinks accordingly; below the floor it is refused
    bi = lambda e: bounds.sgd_biased_bound(delta0=1, L=2.0, n_workers=4, bias_sq=0.3, eta=e)  # noqa: E731
    with pytest.raises(ValueError, match="eps"):
        bounds.best_step_size(0.2, bi, eta_max=0.5)
    assert bounds.best_step_size(0.4, bi, eta_max=0.5) == 0.5  # no variance: c = 0


# --- constants -------------------------------------------------------------------------
def test_declared_and_measured_constants():
    facts = Facts("rand-k", {"k": 2}, True, False, omega=lambda d: d / 2 - 1, alpha=None)
    assert bounds.declared_omega(facts, 10) == 4.0
    assert bounds.declared_alpha(facts, 10) == pytest.approx(1 / 5)
    rng = np.random.default_rng(3)
    d, k, M = 10, 2, 4000
    x = rng.standard_normal(d)
    draws = np.zeros((M, d))
    for m in range(M):
        idx = rng.choice(d, size=k, replace=False)
        draws[m, idx] = x[idx] * d / k
    est = bounds.measure_omega(x, draws)
    assert abs(est.value - (d / k - 1)) <= 5 * est.se  # 5 SE, fixed seed
    top = Facts("top-k", {"k": 2}, False, True, omega=None, alpha=lambda d: 2 / d)
    assert bounds.declared_alpha(top, 10) == 0.2
    with pytest.raises(ValueError, match="omega"):
        bounds.declared_omega(top, 10)
    with pytest.raises(TypeError, match="compressor"):
        bounds.declared_omega(object(), 10)
    with pytest.raises(ValueError, match="x_hat"):
        bounds.measure_omega(x, draws[:1])
    with pytest.raises(ValueError, match="x_hat"):
        bounds.measure_alpha(x, draws[:, :3])


# --- bad inputs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(delta0=-1.0), ValueError, "delta0"),
        (dict(L=0.0), ValueError, "L"),
        (dict(n_workers=0), ValueError, "n_workers"),
        (dict(n_workers=1.5), TypeError, "n_workers"),
        (dict(sigma_sq=-1.0), ValueError, "sigma_sq"),
        (dict(eps_q=float("nan")), ValueError, "eps_q"),
        (dict(d=0), ValueError, "d"),
        (dict(eta=1.0), ValueError, "eta"),
        (dict(eta="a"), TypeError, "eta"),
    ],
)
def test_unbiased_bad_inputs(kw, exc, match):
    base = dict(delta0=1.0, L=2.0, n_workers=2)
    with pytest.raises(exc, match=match):
        bounds.sgd_unbiased_bound(**{**base, **kw})


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="omega"):
        bounds.sgd_relative_bound(delta0=1, L=1, n_workers=1, omega=-0.1)
    with pytest.raises(ValueError, match="dissimilarity_sq"):
        bounds.sgd_relative_bound(delta0=1, L=1, n_workers=1, omega=1, dissimilarity_sq=-1)
    with pytest.raises(ValueError, match="bias_sq"):
        bounds.sgd_biased_bound(delta0=1, L=1, n_workers=1, bias_sq=-1)
    kw = dict(delta0=1, L=1, n_workers=1, d=3, variance_per_coord=0.1, truncation_per_coord=0.1)
    with pytest.raises(ValueError, match="form"):
        bounds.tnqsgd_bound(**kw, form="nope")
    with pytest.raises(ValueError, match="truncation_per_coord"):
        bounds.tnqsgd_bound(**{**kw, "truncation_per_coord": -1})
    b = bounds.sgd_biased_bound(delta0=1, L=1, n_workers=1, bias_sq=0.5)
    with pytest.raises(ValueError, match="eps"):
        b.iterations_to(0.4)
    with pytest.raises(ValueError, match="eps"):
        b.iterations_to(-1)
    with pytest.raises(ValueError, match="T"):
        b(0)
    with pytest.raises(TypeError, match="T"):
        b("x")
    with pytest.raises(ValueError, match="bits_per_iteration"):
        b.bits_per_worker_to(1.0, -3)
    lin = bounds.LinearBound(1.0, 0.5, 0.1, "t")
    with pytest.raises(ValueError, match="T"):
        lin(-1)
    np.testing.assert_allclose(lin(np.array([0, 1, 2])), [1.0, 0.5, 0.25], rtol=1e-15)


# --- TNQSGD with a designed quantizer --------------------------------------------------
def test_tnqsgd_with_optimal_laplace_design():
    from ratedist.quantizers.truncated import optimal_truncation
    from ratedist.sources.classic import Laplace

    g, s, d, n, L = 0.3, 7, 50, 8, 2.0
    design = optimal_truncation(Laplace(g), s)
    kw = dict(delta0=1.0, L=L, n_workers=n, d=d, sigma_sq=0.5)
    paper = bounds.tnqsgd_bound_for_design(design, **kw, form="paper", error="bound")
    # SPEC §1 closed form of the optimal per-coordinate error (independent of the design code)
    eps_q = 27 * g**2 / (s + 3 * math.sqrt(6) / 2) ** 2
    assert paper.floor == pytest.approx((1 / L) * L * (0.5 + d * eps_q) / n, rel=1e-10)
    rig = bounds.tnqsgd_bound_for_design(design, **kw, form="rigorous", error="exact")
    t = design.exact.bias
    want = (0.5 + d * design.exact.variance) / n + d * t
    assert rig.floor == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="error"):
        bounds.tnqsgd_bound_for_design(design, **kw, error="nope")
    with pytest.raises(TypeError, match="design"):
        bounds.tnqsgd_bound_for_design(object(), **kw)
