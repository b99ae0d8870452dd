"""Quantized-Adam bounds (ratedist.bounds.adam) against independent computations.

* sympy (ratedist.symbolic.adam, lambdified) ≡ the numpy formulas to 1e-12 relative.
* Adam's direction bound R_t: attained by the Cauchy–Schwarz sequence in optax's Adam (1e-12),
  never exceeded on random sequences (Adam and AMSGrad).
* The proof, step by step, on a numpy run of both modes (AMSGrad, EF with the l1 scaled sign,
  a small nonconvex logistic problem): the virtual-sequence identity to 1e-12, every
  intermediate bound, the one-step inequality and the final average, pathwise.
* Weight quantization: the exact quadratic excess by Monte Carlo (5 SE) and the smooth bound.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy as sp

from ratedist import bounds
from ratedist.symbolic import adam as sym
from ratedist.symbolic.lambdify import lambdified

RTOL = 1e-12  # two float64 codings of the same closed form
K_SE = 5.0


# ----------------------------------------------------------------------------- sympy ≡ numpy
def test_symbolic_identities():
    assert sym.ef_residual_in_delta() == 0
    assert sym.virtual_sequence_residual_server() == 0
    assert sym.virtual_sequence_residual_worker() == 0
    r, k = sp.symbols("r k", positive=True)
    for nn in range(1, 6):
        want = sp.summation(r ** (nn - k), (k, 1, nn))
        assert sp.simplify(sym.geometric_sum(r, nn) - want) == 0
    assert (
        sp.simplify(sym.lr_optimal_value() - 2 * sp.sqrt(sym.transient_s * sym.slope_s / sym.T))
        == 0
    )
    assert sp.simplify(sym.weight_floor_limit() - sym.kappa * sym.L**2 * sym.M_w) == 0


def _params(seed):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(1e-3, 1e-1)
    return dict(
        delta0=rng.uniform(0.1, 10),
        L=rng.uniform(0.1, 10),
        G=rng.uniform(0.1, 5),
        alpha=rng.uniform(0.01, 1),
        d=int(rng.integers(1, 500)),
        lr=rng.uniform(1e-4, 1e-1),
        eta_min=lo,
        eta_max=lo * rng.uniform(1, 100),
        b1=rng.uniform(0, 0.95),
        weight_mse=rng.uniform(0, 1),
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["server", "worker"])
def test_bound_equals_sympy(seed, mode):
    p = _params(seed)
    T = 123.0
    bd = bounds.quantized_adam_bound(mode, **p)
    k = bounds.quantized_adam_constants(
        mode, **{n: p[n] for n in ("G", "alpha", "d", "lr", "eta_min", "eta_max", "b1")}
    )
    q = math.sqrt(1 - p["alpha"])
    c = p["b1"] / (1 - p["b1"])
    common = dict(q=q, c=c, G=p["G"], eta_max=p["eta_max"], lr=p["lr"])
    if mode == "server":
        W = lambdified("adam.server_W", ["G", "c", "q"])(p["G"], c, q)
        X = lambdified("adam.server_X", ["G", "c", "q", "eta_max"])(p["G"], c, q, p["eta_max"])
    else:
        U = min(
            bounds.adam_direction_bound(p["b1"], 0.999) * math.sqrt(p["d"]),
            p["eta_max"] * p["G"] / p["lr"],
        )
        W = lambdified("adam.worker_W", ["c", "G"])(c, p["G"])
        X = lambdified("adam.worker_X", ["lr", "q", "U", "c", "eta_max", "G"])(
            p["lr"], q, U, c, p["eta_max"], p["G"]
        )
    assert k.W == pytest.approx(W, rel=RTOL) and k.X == pytest.approx(X, rel=RTOL)
    del common
    tv = p["d"] * (p["eta_max"] - p["eta_min"])
    args = ["Delta0", "T", "eta_min", "eta_max", "L", "G", "W", "X", "TV", "M_w"]
    want = lambdified("adam.bound", args)(
        p["delta0"], T, p["eta_min"], p["eta_max"], p["L"], p["G"], W, X, tv, p["weight_mse"]
    )
    assert bd(T) == pytest.approx(want, rel=RTOL)
    assert bd.step_size == p["lr"]


def test_ef_bounds_match_sympy_and_reduce_without_compression():
    f_res = lambdified("adam.ef_residual", ["q", "A"])
    f_msg = lambdified("adam.ef_message", ["q", "A"])
    for alpha in (0.01, 0.3, 0.9):
        q = math.sqrt(1 - alpha)
        assert bounds.ef_residual_bound(alpha, 2.0) == pytest.approx(f_res(q, 2.0), rel=RTOL)
        assert bounds.ef_message_bound(alpha, 2.0) == pytest.approx(f_msg(q, 2.0), rel=RTOL)
        # P = G + 2E
        assert bounds.ef_message_bound(alpha, 2.0) == pytest.approx(
            2.0 + 2 * bounds.ef_residual_bound(alpha, 2.0), rel=RTOL
        )
    assert bounds.ef_residual_bound(1.0, 3.0) == 0.0
    # alpha = 1 (identity): the excess terms vanish, W = c G in both modes
    kw = dict(G=2.0, alpha=1.0, d=10, lr=0.01, eta_min=0.01, eta_max=0.1, b1=0.5)
    for mode in ("server", "worker"):
        k = bounds.quantized_adam_constants(mode, **kw)
        assert k.residual == 0.0 and k.W == pytest.approx(2.0)  # c = 1


def test_lr_optimum_gives_the_rate():
    f = lambdified("adam.lr_optimum", ["transient", "slope", "T"])
    v = lambdified("adam.lr_optimal_value", ["transient", "slope", "T"])
    a, b = 3.0, 0.7
    for T in (10.0, 1e4):
        lr = f(a, b, T)
        grid = lr * np.linspace(0.5, 1.5, 1001)
        assert np.min(a / (grid * T) + b * grid) == pytest.approx(v(a, b, T), rel=1e-6)
    assert v(a, b, 4e4) / v(a, b, 1e4) == pytest.approx(0.5, rel=RTOL)  # O(1/sqrt(T))


# ----------------------------------------------------------------------------- Adam's ratio
def test_direction_ratio_matches_sympy_and_its_limit():
    f = lambdified("adam.direction_ratio", ["b1", "b2", "t"])
    t = np.array([1.0, 2.0, 7.0, 100.0, 5000.0])
    for b1, b2 in ((0.9, 0.999), (0.5, 0.9), (0.0, 0.99)):
        if b1 == 0.0:
            continue  # sympy's form divides 0/0 at b1 = 0 only through b1^t; numpy handles it
        np.testing.assert_allclose(bounds.adam_direction_ratio(b1, b2, t), f(b1, b2, t), rtol=RTOL)
    assert bounds.adam_direction_ratio(0.9, 0.999, 1) == pytest.approx(1.0, rel=1e-15)
    R = bounds.adam_direction_bound()
    limit = 0.1 / math.sqrt(0.001 * (1 - 0.81 / 0.999))
    assert R == pytest.approx(limit, rel=1e-15) and R == pytest.approx(7.2703, abs=1e-4)
    assert np.max(bounds.adam_direction_ratio(0.9, 0.999, np.arange(1, 200001))) <= R
    assert bounds.adam_direction_bound(0.0, 0.999) == pytest.approx(1 / math.sqrt(0.001))
    assert bounds.adam_direction_bound(steps=1) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("t", [1, 5, 40])
def test_direction_ratio_is_attained_in_optax_adam(t):
    b1, b2 = 0.9, 0.999
    tx = optax.scale_by_adam(b1=b1, b2=b2, eps=0.0)
    st = tx.init(jnp.zeros(1))
    for k in range(1, t + 1):  # g_k ∝ (b2/b1)^k: equality in Cauchy–Schwarz at step t
        u, st = tx.update(jnp.asarray([(b2 / b1) ** k]), st)
    assert float(u[0]) == pytest.approx(bounds.adam_direction_ratio(b1, b2, t), rel=1e-12)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_direction_never_exceeds_the_bound(amsgrad):
    rng = np.random.default_rng(1)
    b1, b2 = 0.9, 0.999
    make = optax.scale_by_amsgrad if amsgrad else optax.scale_by_adam
    tx = make(b1=b1, b2=b2, eps=0.0)
    g = rng.standard_normal((300, 64)) * np.exp(rng.uniform(-8, 8, (300, 64)))
    st = tx.init(jnp.zeros(64))
    worst = 0.0
    for k in range(300):
        u, st = tx.update(jnp.asarray(g[k]), st)
        worst = max(worst, float(jnp.max(jnp.abs(u)) / bounds.adam_direction_ratio(b1, b2, k + 1)))
    assert worst <= 1 + 1e-12


# ----------------------------------------------------------------------------- the proof, run
def _scaled_sign(v):
    return np.mean(np.abs(v)) * np.where(v >= 0, 1.0, -1.0)


class _Logistic:
    """``f_i(x) = mean_j log(1 + exp(−y a·x)) + lam sum x^2/(1 + x^2)`` in numpy; ``f >= 0``."""

    def __init__(self, n, m, d, lam, seed):
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((n, m, d)) + rng.standard_normal((n, 1, d))  # heterogeneous
        self.y = np.where(rng.random((n, m)) < 0.5, -1.0, 1.0)
        self.lam = lam
        M = self.A.reshape(-1, d)
        self.L = np.linalg.norm(M, 2) ** 2 / (4 * n * m) + 2 * lam
        phi_slope = 9 / (8 * math.sqrt(3))  # max |d/dt t^2/(1 + t^2)|
        self.G = float(np.max(np.mean(np.linalg.norm(self.A, axis=2), axis=1))) + lam * (
            phi_slope * math.sqrt(d)
        )

    def f(self, x):
        z = -self.y * np.einsum("imd,d->im", self.A, x)
        return float(np.mean(np.logaddexp(0.0, z)) + self.lam * np.sum(x**2 / (1 + x**2)))

    def grads(self, x):
        z = -self.y * np.einsum("imd,d->im", self.A, x)
        s = 0.5 * (1 + np.tanh(z / 2))  # sigmoid(z)
        g = np.einsum("im,imd->id", -self.y * s, self.A) / self.A.shape[1]
        return g + self.lam * 2 * x / (1 + x**2) ** 2


def _run_mode_a(prob, x0, T, lr, b1, b2, eps):
    n, d = prob.A.shape[0], x0.size
    x, m, nu, nu_max = x0.copy(), np.zeros(d), np.zeros(d), np.zeros(d)
    e = np.zeros((n, d))
    rec = {"x": [x.copy()], "m": [m.copy()], "e": [e.mean(0)], "D": [], "h": []}
    for k in range(T):
        h = prob.grads(x)
        v = h + e
        p = np.stack([_scaled_sign(vi) for vi in v])
        e = v - p
        pbar = p.mean(0)
        cnt = k + 1
        m = b1 * m + (1 - b1) * pbar
        nu = b2 * nu + (1 - b2) * pbar**2
        nu_max = np.maximum(nu_max, nu / (1 - b2**cnt))
        D = lr / ((np.sqrt(nu_max) + eps) * (1 - b1**cnt))
        x = x - D * m
        for key, val in (("x", x), ("m", m), ("e", e.mean(0)), ("D", D), ("h", h.mean(0))):
            rec[key].append(val.copy())
    return {k: np.asarray(v) for k, v in rec.items()}


def _run_mode_b(prob, x0, T, lr, b1, b2, eps):
    d = x0.size
    x, m, nu, nu_max, e = x0.copy(), np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(d)
    rec = {"x": [x.copy()], "m": [m.copy()], "e": [e.copy()], "D": [], "h": [], "u": []}
    for k in range(T):
        h = prob.grads(x)[0]
        cnt = k + 1
        m = b1 * m + (1 - b1) * h
        nu = b2 * nu + (1 - b2) * h**2
        nu_max = np.maximum(nu_max, nu / (1 - b2**cnt))
        Dp = 1 / ((np.sqrt(nu_max) + eps) * (1 - b1**cnt))
        u = Dp * m
        s = _scaled_sign(u + e)
        e = u + e - s
        x = x - lr * s
        for key, val in (("x", x), ("m", m), ("e", e), ("D", lr * Dp), ("h", h), ("u", u)):
            rec[key].append(val.copy())
    return {k: np.asarray(v) for k, v in rec.items()}


@pytest.mark.parametrize("mode", ["server", "worker"])
def test_the_proof_step_by_step_on_a_numpy_run(mode):
    """AMSGrad, EF with the l1 scaled sign (deterministic, alpha = 1/d), exact gradients."""
    n = 3 if mode == "server" else 1
    prob = _Logistic(n=n, m=20, d=6, lam=0.1, seed=3)
    b1, b2, eps, lr, T = 0.9, 0.999, 1e-8, 0.05, 400
    x0 = np.random.default_rng(0).standard_normal(6)
    run_ = _run_mode_a if mode == "server" else _run_mode_b
    r = run_(prob, x0, T, lr, b1, b2, eps)
    d = x0.size
    c = b1 / (1 - b1)
    D = r["D"]  # D[k] is the step of update k (k = 0..T-1)
    Dprev = np.concatenate([D[:1], D[:-1]])  # D_{-1} := D_0 (it multiplies zeros)
    lo, hi = float(D.min()), float(D.max())
    k_ = bounds.quantized_adam_constants(
        mode, G=prob.G, alpha=1 / d, d=d, lr=lr, eta_min=lo, eta_max=hi, b1=b1, b2=b2
    )
    # virtual sequence (docs/theory/quantized_adam.md) and the vectors w_k
    m_prev = r["m"][:-1]
    if mode == "server":
        z = r["x"][:-1] - c * Dprev * m_prev - Dprev * r["e"][:-1]
        w = c * m_prev + r["e"][:-1]
        z_T = r["x"][-1] - c * D[-1] * r["m"][-1] - D[-1] * r["e"][-1]
    else:
        z = r["x"][:-1] - lr * r["e"][:-1] - c * Dprev * m_prev
        w = c * m_prev
        z_T = r["x"][-1] - lr * r["e"][-1] - c * D[-1] * r["m"][-1]
        # the direction never exceeds R per coordinate
        assert np.max(np.abs(r["u"])) <= bounds.adam_direction_bound(b1, b2)
    z = np.vstack([z, z_T])
    h, delta = r["h"], Dprev - D
    np.testing.assert_allclose(z[1:], z[:-1] - D * h + delta * w, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(z[0], x0)
    # intermediate bounds of the proof, pathwise
    e_norm = np.linalg.norm(r["e"], axis=1)
    assert e_norm.max() <= k_.residual * (1 + 1e-12)
    assert np.max(np.abs(w)) <= k_.W and np.max(np.linalg.norm(w, axis=1)) <= k_.W
    assert np.max(np.linalg.norm(r["x"][:-1] - z[:-1], axis=1)) <= k_.X * (1 + 1e-12)
    assert np.all(np.diff(D, axis=0) <= 0)  # AMSGrad: monotone steps
    tv = np.abs(delta).sum(axis=1)
    assert tv.sum() <= k_.total_variation * (1 + 1e-12)
    # the one-step inequality, every step
    L, G, W, X = prob.L, prob.G, k_.W, k_.X
    fz = np.array([prob.f(zz) for zz in z])
    h2 = np.sum(h * h, axis=1)
    noise = hi / 2 * L**2 * X**2 + G * W * tv + L * hi**2 * G**2 + L * hi * W**2 * tv
    assert np.all(np.diff(fz) <= -lo / 2 * h2 + noise + 1e-12)
    # and the theorem
    bd = bounds.quantized_adam_bound(
        mode, delta0=prob.f(x0), L=L, G=G, alpha=1 / d, d=d, lr=lr, eta_min=lo, eta_max=hi, b1=b1
    )
    assert h2.mean() <= bd(T)
    # a measured residual gives a smaller (still valid) bound
    meas = bounds.quantized_adam_bound(
        mode,
        delta0=prob.f(x0),
        L=L,
        G=G,
        alpha=1 / d,
        d=d,
        lr=lr,
        eta_min=lo,
        eta_max=hi,
        b1=b1,
        residual=float(e_norm.max()),
    )
    assert h2.mean() <= meas(T) < bd(T)


# ----------------------------------------------------------------------------- weights
def test_quadratic_weight_excess_by_monte_carlo():
    rng = np.random.default_rng(5)
    d, delta = 6, 0.3
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = (Q * rng.uniform(0.5, 2.0, d)) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(d)
    x = rng.standard_normal(d)
    n = 200_000
    lo = np.floor(x / delta)
    up = rng.random((n, d)) < (x / delta - lo)
    Qx = delta * (lo + up)
    g = Qx @ A - b
    vals = np.sum(g * g, axis=1)
    gx = A @ x - b
    excess = bounds.quadratic_weight_excess(A, delta, x)
    mean, se = vals.mean(), vals.std(ddof=1) / math.sqrt(n)
    assert abs(mean - (gx @ gx + excess)) <= K_SE * se
    assert excess <= np.sum(A * A) * delta**2 / 4
    # the smooth-f bound, both directions, with M_w = d Delta^2/4 and L = ||A||_2
    L = np.linalg.norm(A, 2)
    assert mean <= bounds.smooth_weight_gradient_bound(gx @ gx, L=L, weight_mse=d * delta**2 / 4)
    assert gx @ gx <= bounds.smooth_weight_gradient_bound(mean, L=L, weight_mse=d * delta**2 / 4)
    # at the optimum the excess is the floor
    x_star = np.linalg.solve(A, b)
    assert bounds.quadratic_weight_excess(A, delta, x_star) == pytest.approx(
        bounds.weight_quantization_floor(A, delta, b=b).grad_norm_sq, rel=1e-15
    )


def test_weight_floor_limit_of_the_bound():
    """As lr -> 0 at a fixed step spread, the mode-a floor tends to kappa L^2 M_w."""
    kw = dict(delta0=1.0, L=2.0, G=1.0, alpha=0.5, d=10, b1=0.9, weight_mse=0.04)
    floors = []
    for lr in (1e-2, 1e-5, 1e-9):
        floors.append(
            bounds.quantized_adam_bound("server", lr=lr, eta_min=lr, eta_max=3 * lr, **kw).floor
        )
    assert floors[-1] == pytest.approx(3 * 4.0 * 0.04, rel=1e-4)
    assert floors[0] > floors[1] > floors[2]


def test_step_range_prior():
    lo, hi = bounds.adam_step_range(0.01, b1=0.9, eps=1e-8, gradient_bound=2.0)
    assert lo == pytest.approx(0.01 / (2.0 + 1e-8)) and hi == pytest.approx(1e7)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bounds.adam_direction_ratio(0.9, 0.8, 3), "b1\\^2 must be < b2"),
        (lambda: bounds.adam_direction_ratio(0.9, 0.999, 0), "t must be >= 1"),
        (lambda: bounds.adam_direction_bound(1.0, 0.999), "b1"),
        (lambda: bounds.adam_direction_bound(steps=0), "steps"),
        (lambda: bounds.ef_residual_bound(0.0, 1.0), "alpha"),
        (lambda: bounds.ef_residual_bound(0.5, -1.0), "input_bound"),
        (
            lambda: bounds.quantized_adam_constants(
                "both", G=1, alpha=1, d=1, lr=1, eta_min=1, eta_max=1
            ),
            "mode",
        ),
        (
            lambda: bounds.quantized_adam_constants(
                "server", G=1, alpha=1, d=1, lr=1, eta_min=2, eta_max=1
            ),
            "eta_min must be <=",
        ),
        (
            lambda: bounds.quantized_adam_constants(
                "server", G=1, alpha=1, d=1, lr=1, eta_min=1, eta_max=1, amsgrad=False
            ),
            "total_variation",
        ),
        (
            lambda: bounds.quantized_adam_bound(
                "server", delta0=-1, L=1, G=1, alpha=1, d=1, lr=1, eta_min=1, eta_max=1
            ),
            "delta0",
        ),
        (lambda: bounds.smooth_weight_gradient_bound(1.0, L=0.0, weight_mse=1.0), "L"),
        (lambda: bounds.adam_step_range(0.1, gradient_bound=0.0), "gradient_bound"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_amsgrad_flag_type():
    with pytest.raises(TypeError, match="amsgrad"):
        bounds.quantized_adam_constants(
            "server", G=1, alpha=1, d=1, lr=1, eta_min=1, eta_max=1, amsgrad="yes"
        )
