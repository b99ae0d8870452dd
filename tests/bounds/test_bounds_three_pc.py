"""3PC constants, step sizes and rates against independent computations.

* The 3PC inequality ``||C_{h,y}(x) - x||^2 <= (1-A)||h-y||^2 + B||x-y||^2`` is checked on
  random vectors with the compressors written out in numpy here (pathwise for deterministic
  ones, exact expectation by enumeration for the random ones).
* The rate and the Lyapunov step are checked on EF21/LAG recursions run by hand in numpy on a
  two-worker quadratic, and GD on a 1-D quadratic where the bound is attained exactly.
"""

import itertools
import math

import numpy as np
import pytest

from ratedist import bounds
from ratedist.bounds import three_pc_constants


def top_k(v, k):
    out = np.zeros_like(v)
    idx = np.argsort(-np.abs(v), kind="stable")[:k]
    out[idx] = v[idx]
    return out


def ef21_c(h, y, x, k):
    return h + top_k(x - h, k)


def lag_c(h, y, x, zeta):
    return x if np.sum((x - h) ** 2) > zeta * np.sum((x - y) ** 2) else h


def clag_c(h, y, x, k, zeta):
    return ef21_c(h, y, x, k) if np.sum((x - h) ** 2) > zeta * np.sum((x - y) ** 2) else h


def v1_c(h, y, x, k):
    return y + top_k(x - y, k)


def rhs(ab, h, y, x):
    return (1 - ab.A) * np.sum((h - y) ** 2) + ab.B * np.sum((x - y) ** 2)


@pytest.mark.parametrize("d,k", [(5, 1), (8, 3), (6, 6)])
def test_deterministic_variants_satisfy_3pc_inequality_pathwise(d, k):
    rng = np.random.default_rng(0)
    alpha = k / d
    cases = {
        "ef21": (three_pc_constants("ef21", alpha=alpha), lambda h, y, x: ef21_c(h, y, x, k)),
        "lag": (three_pc_constants("lag", zeta=2.0), lambda h, y, x: lag_c(h, y, x, 2.0)),
        "clag": (
            three_pc_constants("clag", alpha=alpha, zeta=3.0),
            lambda h, y, x: clag_c(h, y, x, k, 3.0),
        ),
        "tpc_v1": (three_pc_constants("tpc_v1", alpha=alpha), lambda h, y, x: v1_c(h, y, x, k)),
    }
    for name, (ab, comp) in cases.items():
        for _ in range(300):
            h, y, x = rng.standard_normal((3, d)) * rng.exponential(1.0, size=(3, 1))
            lhs = np.sum((comp(h, y, x) - x) ** 2)
            # pathwise inequality: only float round-off (~1e-16 of the norms involved) allowed
            scale = np.sum(h**2) + np.sum(y**2) + np.sum(x**2)
            assert lhs <= rhs(ab, h, y, x) + 1e-12 * scale, name


def test_tpc_v5_exact_expectation_over_coin():
    rng = np.random.default_rng(1)
    d, k, p = 6, 2, 0.3
    ab = three_pc_constants("tpc_v5", alpha=k / d, p=p)
    for _ in range(300):
        h, y, x = rng.standard_normal((3, d))
        # coin: x w.p. p (error 0), else h + C(x - y)
        lhs = (1 - p) * np.sum((h + top_k(x - y, k) - x) ** 2)
        assert lhs <= rhs(ab, h, y, x) * (1 + 1e-12)


def test_tpc_v2_exact_expectation_over_rand1():
    rng = np.random.default_rng(2)
    d, k = 5, 2
    omega = d - 1.0  # rand-1 scaled by d: E||Q(v)-v||^2 = (d-1)||v||^2
    ab = three_pc_constants("tpc_v2", alpha=k / d, omega=omega)
    for _ in range(200):
        h, y, x = rng.standard_normal((3, d))
        errs = []
        for j in range(d):  # enumerate the d equally likely outcomes of Q(x - y)
            q = np.zeros(d)
            q[j] = d * (x - y)[j]
            b = h + q
            errs.append(np.sum((b + top_k(x - b, k) - x) ** 2))
        assert np.mean(errs) <= rhs(ab, h, y, x) * (1 + 1e-12)


def test_tpc_v3_and_v4_compose():
    # v3 with the inner GD (A1 = 1, B1 = 0) is GD; v4 with two identity compressors is GD
    assert three_pc_constants("tpc_v3", alpha=0.2, A1=1.0, B1=0.0) == (1.0, 0.0)
    assert three_pc_constants("tpc_v4", alpha1=1.0, alpha2=1.0) == (1.0, 0.0)
    # v4 == EF21 with alpha_bar = 1 - (1 - a1)(1 - a2)
    a1, a2 = 0.1, 0.3
    v4 = three_pc_constants("tpc_v4", alpha1=a1, alpha2=a2)
    ef = three_pc_constants("ef21", alpha=1 - 0.9 * 0.7)
    np.testing.assert_allclose(v4, ef, rtol=1e-15)


def test_special_cases_reduce_to_gd():
    assert three_pc_constants("ef21", alpha=1.0) == (1.0, 0.0)
    assert three_pc_constants("lag", zeta=0.0) == (1.0, 0.0)
    assert three_pc_constants("clag", alpha=1.0, zeta=0.0) == (1.0, 0.0)
    assert three_pc_constants("tpc_v5", alpha=0.3, p=1.0) == (1.0, 0.0)
    assert three_pc_constants("gd") == (1.0, 0.0)
    clag = three_pc_constants("clag", alpha=0.25, zeta=0.0)
    np.testing.assert_allclose(clag, three_pc_constants("ef21", alpha=0.25), rtol=1e-15)


def test_table_values_by_hand():
    # values computed by hand from the SPEC table
    a = 0.36  # sqrt(1 - a) = 0.8
    np.testing.assert_allclose(three_pc_constants("ef21", alpha=a), (0.2, 0.64 / 0.2), rtol=1e-14)
    np.testing.assert_allclose(
        three_pc_constants("tpc_v5", alpha=0.5, p=0.36), (0.2, 0.64 * 0.5 / 0.2), rtol=1e-14
    )
    np.testing.assert_allclose(
        three_pc_constants("marina", p=0.25, omega=3.0, n_workers=5), (0.25, 0.75 * 3 / 5)
    )
    np.testing.assert_allclose(three_pc_constants("tpc_v2", alpha=0.25, omega=2.0), (0.25, 1.5))


def test_registry_lists_every_variant():
    want = {"gd", "ef21", "lag", "clag", "tpc_v1", "tpc_v2", "tpc_v3", "tpc_v4", "tpc_v5"}
    assert want | {"marina"} == set(bounds.THREE_PC.names())
    for name in bounds.THREE_PC:
        assert isinstance(bounds.THREE_PC.facts(name)["label"], str)


def test_step_sizes():
    Lm, Lp, A, B = 2.0, 3.0, 0.5, 0.125
    assert bounds.m1(Lm, Lp, A, B) == pytest.approx(2.0 + 3.0 * 0.5, rel=1e-15)
    assert bounds.m2(Lm, Lp, A, B) == pytest.approx(2.0 + 3.0 * math.sqrt(0.5), rel=1e-15)
    assert bounds.three_pc_step_size(Lm, Lp, A, B) == pytest.approx(1 / 3.5, rel=1e-15)
    exact = bounds.three_pc_step_size_exact(Lm, Lp, A, B)
    # the exact root solves 1/g - L_- - g B L_+^2/A = 0 and exceeds 1/M1
    assert 1 / exact - Lm - exact * B * Lp**2 / A == pytest.approx(0.0, abs=1e-12)
    assert exact > 1 / 3.5
    assert bounds.three_pc_step_size_exact(Lm, Lp, 1.0, 0.0) == pytest.approx(1 / Lm, rel=1e-15)


# --- the theorem on hand-run recursions -----------------------------------------------------
def two_worker_quadratic():
    rng = np.random.default_rng(5)
    d = 6
    mats = []
    for _ in range(2):
        q = rng.standard_normal((d, d))
        mats.append(q @ q.T / d + 0.1 * np.eye(d))
    bs = [rng.standard_normal(d) for _ in range(2)]
    Abar = (mats[0] + mats[1]) / 2
    bbar = (bs[0] + bs[1]) / 2
    xstar = np.linalg.solve(Abar, bbar)

    def f(x):
        return 0.5 * x @ Abar @ x - bbar @ x

    L_minus = np.linalg.eigvalsh(Abar).max()
    L_plus = math.sqrt(np.linalg.eigvalsh((mats[0] @ mats[0] + mats[1] @ mats[1]) / 2).max())
    mu = np.linalg.eigvalsh(Abar).min()
    return mats, bs, f, f(xstar), L_minus, L_plus, mu, d


def run_3pc(comp, gamma, T, x0, g_init):
    mats, bs, f, fstar, *_ = two_worker_quadratic()
    grads = lambda x: [M @ x - b for M, b in zip(mats, bs, strict=True)]  # noqa: E731
    x = x0.copy()
    g = [gi.copy() for gi in g_init]
    fg, gn, G = [], [], []
    for _ in range(T):
        loc = grads(x)
        fg.append(f(x) - fstar)
        gn.append(np.sum(np.mean(loc, axis=0) ** 2))
        G.append(np.mean([np.sum((gi - li) ** 2) for gi, li in zip(g, loc, strict=True)]))
        x_new = x - gamma * np.mean(g, axis=0)
        loc_new = grads(x_new)
        g = [comp(gi, li, ln) for gi, li, ln in zip(g, loc, loc_new, strict=True)]
        x = x_new
    return np.array(fg), np.array(gn), np.array(G)


@pytest.mark.parametrize("variant", ["ef21", "lag", "clag"])
def test_lyapunov_and_rate_on_hand_run_recursion(variant):
    *_, Lm, Lp, mu, d = two_worker_quadratic()
    k = 2
    comps = {
        "ef21": (dict(alpha=k / d), lambda h, y, x: ef21_c(h, y, x, k)),
        "lag": (dict(zeta=1.5), lambda h, y, x: lag_c(h, y, x, 1.5)),
        "clag": (dict(alpha=k / d, zeta=1.5), lambda h, y, x: clag_c(h, y, x, k, 1.5)),
    }
    params, comp = comps[variant]
    ab = three_pc_constants(variant, **params)
    gamma = bounds.three_pc_step_size(Lm, Lp, *ab)
    x0 = np.ones(d) * 3.0
    g0 = [np.zeros(d), np.zeros(d)]  # G^0 > 0: exercises the E[G^0]/(A T) term
    fg, gn, G = run_3pc(comp, gamma, 200, x0, g0)
    slack = bounds.lyapunov_slack(fg, G, gn, gamma=gamma, A=ab.A)
    # pathwise: only float round-off of Phi (~1e-15 relative) may go below zero
    assert slack.min() >= -1e-12 * max(1.0, fg[0] + G[0])
    bound = bounds.three_pc_bound(delta0=fg[0], L_minus=Lm, L_plus=Lp, A=ab.A, B=ab.B, G0=G[0])
    T = np.arange(1, fg.size + 1)
    assert np.all(np.cumsum(gn) / T <= bound(T) * (1 + 1e-12))
    pl = bounds.three_pc_pl_bound(
        delta0=fg[0], L_minus=Lm, L_plus=Lp, A=ab.A, B=ab.B, mu=mu, G0=G[0]
    )
    fg_pl, _, _ = run_3pc(comp, pl.step_size, 200, x0, g0)
    assert np.all(fg_pl <= pl(np.arange(fg_pl.size)) * (1 + 1e-12))


def test_gd_bound_is_attained_on_1d_quadratic():
    # f = (L/2) x^2, gamma = 1/L: x^1 = 0, so sum_t ||∇f(x^t)||^2 = L^2 x0^2 = 2 Delta0 / gamma
    Lc, x0 = 2.5, 1.7
    b = bounds.three_pc_bound(delta0=Lc / 2 * x0**2, L_minus=Lc, L_plus=Lc, A=1.0, B=0.0)
    for T in (1, 2, 10):
        assert b(T) == pytest.approx(Lc**2 * x0**2 / T, rel=1e-14)


def test_marina_bound_matches_three_pc_with_its_constants():
    kw = dict(delta0=2.0, L_minus=1.5, L_plus=2.0)
    m = bounds.marina_bound(**kw, p=0.2, omega=4.0, n_workers=10)
    t = bounds.three_pc_bound(**kw, A=0.2, B=0.8 * 4.0 / 10)
    assert m.transient == pytest.approx(t.transient, rel=1e-15)
    assert m.step_size == pytest.approx(1 / (1.5 + 2.0 * math.sqrt(0.8 * 4 / 10 / 0.2)))
    assert "MARINA" in m.theorem


# --- bad inputs -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,params,match",
    [
        ("ef21", dict(alpha=0.0), "alpha"),
        ("ef21", dict(alpha=1.5), "alpha"),
        ("lag", dict(zeta=-1.0), "zeta"),
        ("tpc_v5", dict(alpha=0.5, p=0.0), "p"),
        ("tpc_v2", dict(alpha=0.5, omega=-1), "omega"),
        ("marina", dict(p=0.5, omega=1.0, n_workers=0), "n_workers"),
        ("ef21", dict(zeta=1.0), "params"),
        ("nope", dict(), "nope"),
    ],
)
def test_three_pc_constants_bad_inputs(name, params, match):
    with pytest.raises(ValueError, match=match):
        three_pc_constants(name, **params)


def test_three_pc_bound_bad_inputs():
    kw = dict(delta0=1.0, L_minus=1.0, L_plus=1.0, A=0.5, B=0.5)
    with pytest.raises(ValueError, match="gamma"):
        bounds.three_pc_bound(**kw, gamma=10.0)
    with pytest.raises(ValueError, match="delta0"):
        bounds.three_pc_bound(**{**kw, "delta0": -1.0})
    with pytest.raises(ValueError, match="A"):
        bounds.three_pc_bound(**{**kw, "A": 0.0})
    with pytest.raises(ValueError, match="L_minus"):
        bounds.three_pc_step_size(0.0, 1.0, 0.5, 0.5)
    with pytest.raises(TypeError, match="G0"):
        bounds.three_pc_bound(**kw, G0="x")
    with pytest.raises(ValueError, match="mu"):
        bounds.three_pc_pl_bound(**kw, mu=0.0)
    with pytest.raises(ValueError, match="G"):
        bounds.lyapunov_slack([1.0, 0.5], [0.1], [1.0, 1.0], gamma=0.1, A=1.0)
    with pytest.raises(TypeError, match="name"):
        three_pc_constants(3)


def test_enumeration_helper_is_exhaustive():
    # guard for test_tpc_v2: rand-1 scaled by d is unbiased with omega = d - 1
    d = 4
    v = np.arange(1.0, d + 1)
    outs = []
    for j in itertools.product(range(d)):
        q = np.zeros(d)
        q[j[0]] = d * v[j[0]]
        outs.append(q)
    outs = np.array(outs)
    np.testing.assert_allclose(outs.mean(0), v, rtol=1e-15)
    np.testing.assert_allclose(np.mean(np.sum((outs - v) ** 2, 1)), (d - 1) * v @ v, rtol=1e-14)
