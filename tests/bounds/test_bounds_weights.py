"""The exact quadratic floor of weight quantization: Monte Carlo, the x*-free bound, the floors
at Delta and Delta/2 over random x*, and the plateau-deviation bound against a simulated run."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist import bounds
from ratedist.compressors import grid, make
from ratedist.sim import gd, quadratic, quantized_weights, run
from ratedist.symbolic import grid as G
from ratedist.symbolic.lambdify import lambdified

K_SE = 5.0


def _spd(d: int, rng: np.random.Generator, lo: float = 0.5, hi: float = 3.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = (q * np.linspace(lo, hi, d)) @ q.T
    return (A + A.T) / 2


def test_floor_matches_monte_carlo_of_quantized_weights(key):
    rng = np.random.default_rng(0)
    d, delta, m = 8, 0.3, 20000
    A = _spd(d, rng)
    b = rng.standard_normal(d)
    x_star = np.linalg.solve(A, b)
    f_star = -0.5 * b @ x_star
    comp = grid(delta)
    q = np.asarray(
        jax.jit(jax.vmap(lambda k: comp.update(jnp.asarray(x_star), (), key=k)[0]))(
            jax.random.split(key, m)
        )
    )
    grad_sq = np.sum((q @ A - b) ** 2, axis=1)  # A symmetric: (A q - b) row-wise
    gap = 0.5 * np.sum((q @ A) * q, axis=1) - q @ b - f_star
    floor = bounds.weight_quantization_floor(A, delta, b=b)
    assert floor.exact and floor.delta == delta and len(floor.assumptions) == 3
    for sample, pred in ((grad_sq, floor.grad_norm_sq), (gap, floor.suboptimality)):
        se = sample.std(ddof=1) / math.sqrt(m)
        assert abs(sample.mean() - pred) <= K_SE * se, (sample.mean(), pred, se)
    # the same floor from x* directly; the per-coordinate variance is r (1 - r) Delta^2
    same = bounds.weight_quantization_floor(A, delta, x_star=x_star)
    assert same.grad_norm_sq == pytest.approx(floor.grad_norm_sq, rel=1e-12)
    v = bounds.grid_rounding_variance(x_star, delta)
    r = x_star / delta - np.floor(x_star / delta)
    np.testing.assert_allclose(v, r * (1 - r) * delta**2, rtol=1e-15)


def test_bound_is_above_the_floor_and_attained_half_way_between_grid_points():
    rng = np.random.default_rng(1)
    d, delta = 12, 0.25
    A = _spd(d, rng)
    bound = bounds.weight_quantization_floor_bound(A, delta)
    assert not bound.exact
    assert bound.grad_norm_sq == pytest.approx(np.sum(A * A) * delta**2 / 4, rel=1e-14)
    assert bound.suboptimality == pytest.approx(np.trace(A) * delta**2 / 8, rel=1e-14)
    for _ in range(20):
        f = bounds.weight_quantization_floor(A, delta, x_star=3 * rng.standard_normal(d))
        assert f.grad_norm_sq <= bound.grad_norm_sq and f.suboptimality <= bound.suboptimality
    half = delta * (rng.integers(-9, 9, d) + 0.5)
    f = bounds.weight_quantization_floor(A, delta, x_star=half)
    assert f.grad_norm_sq == pytest.approx(bound.grad_norm_sq, rel=1e-12)
    assert f.suboptimality == pytest.approx(bound.suboptimality, rel=1e-12)
    # on the grid: no rounding, no floor; the x*-free bound is exactly Delta^2-proportional
    assert bounds.weight_quantization_floor(A, delta, x_star=delta * np.arange(d)).grad_norm_sq == 0
    quarter = bounds.weight_quantization_floor_bound(A, delta / 2).grad_norm_sq
    assert quarter == pytest.approx(bound.grad_norm_sq / 4, rel=1e-14)


def test_halving_the_grid_divides_the_floor_by_four_only_on_average_over_x_star():
    """With ``r_j`` uniform (``x* = Delta (k + U)``), ``E[F(Delta/2) − F(Delta)/4] = 0``
    exactly (sympy: ``E c(r) = 0``), and the ratio ``F(Delta/2)/F(Delta)`` scatters around 1/4
    with standard deviation ``0.137 / sqrt(d_eff)`` (delta method; sympy ``E c^2 = 1/1920``)."""
    rng = np.random.default_rng(2)
    d, delta, n = 20, 0.2, 4000
    A = _spd(d, rng)
    w = np.sum(A * A, axis=0)  # (A^2)_jj
    d_eff = w.sum() ** 2 / (w**2).sum()
    diff, ratio = np.empty(n), np.empty(n)
    for i in range(n):
        x = delta * (rng.integers(-20, 20, d) + rng.random(d))
        full = bounds.weight_quantization_floor(A, delta, x_star=x).grad_norm_sq
        half = bounds.weight_quantization_floor(A, delta / 2, x_star=x).grad_norm_sq
        diff[i], ratio[i] = half - full / 4, half / full
    assert abs(diff.mean()) <= K_SE * diff.std(ddof=1) / math.sqrt(n)
    spread = float(G.halving_relative_spread()) / 4 / math.sqrt(d_eff)  # 0.137 / sqrt(d_eff)
    # 15 %: the sample SD of 4000 draws is good to ~1.1 % (1 SE) and the delta method is
    # first order in 1/sqrt(d_eff) ≈ 0.23 (measured here: 0.5 % off)
    assert ratio.std(ddof=1) == pytest.approx(spread, rel=0.15)
    assert abs(ratio.mean() - 0.25) < 0.02  # the ratio of sums is biased at O(1/d_eff)
    assert ratio.min() < 0.2 and ratio.max() > 0.3  # single x*: far from the literal 1/4
    # one coordinate (diagonal A): the ratio is exactly (1 - 2 rho) / (2 (1 - rho))
    per = lambdified(G.halving_ratio, ("rho",))
    for r in (0.05, 0.3, 0.7, 0.99):
        x = np.array([delta * (3 + r)])
        half = bounds.weight_quantization_floor(np.eye(1), delta / 2, x_star=x).grad_norm_sq
        full = bounds.weight_quantization_floor(np.eye(1), delta, x_star=x).grad_norm_sq
        assert half / full == pytest.approx(float(per(min(r, 1 - r))), rel=1e-9)


def test_plateau_deviation_bounds_a_run_that_sits_far_from_the_floor(key):
    """``x*`` within 0.02 Delta of grid points and ``gamma L = 0.05``: the plateau is tens of SE
    above the floor at x* (the iterates' spread crosses grid points), yet within the bound."""
    rng = np.random.default_rng(3)
    d, delta, reps, steps = 10, 0.2, 16, 3000
    A = _spd(d, rng, 1.0, 1.5)
    x_star = delta * (rng.integers(-10, 10, d) + rng.choice([-1, 1], d) * 0.02)
    b = A @ x_star
    prob = quadratic(np.stack([A, A]), np.stack([b + 1, b - 1]), x0=x_star)
    gamma = 0.05 / 1.5
    tr = run(
        gd(),
        prob,
        steps=steps,
        key=key,
        gamma=gamma,
        replicas=reps,
        downlink=quantized_weights(make(f"grid:delta={delta}")),
        check_3pc=False,
    )
    start = steps // 2
    per_rep = tr.grad_norm_sq[:, start:steps].mean(1)
    meas, se = per_rep.mean(), per_rep.std(ddof=1) / math.sqrt(reps)
    floor = bounds.weight_quantization_floor(A, delta, x_star=x_star).grad_norm_sq
    dev = bounds.gd_weight_plateau_deviation(
        A, delta, gamma, x_star=x_star, x0=x_star, start=start, stop=steps
    )
    assert dev.transient == 0.0  # started at x*
    assert meas - floor > K_SE * se  # a real deviation, not noise
    assert abs(meas - floor) <= dev.total + K_SE * se, (meas, floor, dev)


def test_plateau_deviation_parts():
    rng = np.random.default_rng(4)
    d, delta = 6, 0.1
    A = _spd(d, rng, 1.0, 2.0)
    x_star = rng.standard_normal(d)
    kw = {"x_star": x_star, "start": 0, "stop": 100}
    at = bounds.gd_weight_plateau_deviation(A, delta, 1e-3, x0=x_star, **kw)
    assert at.transient == 0 and at.total == pytest.approx(at.covariance + at.cell, rel=1e-15)
    # the stationary covariance term is linear in gamma to first order: S ∝ gamma/(2 − gamma λ)
    half = bounds.gd_weight_plateau_deviation(A, delta, 5e-4, x0=x_star, **kw)
    assert half.covariance == pytest.approx(at.covariance / 2, rel=1e-3)
    # a far start: the transient dominates early and has decayed by e^-16 after 8/(gamma mu)
    far = np.zeros(d)
    early = bounds.gd_weight_plateau_deviation(A, delta, 1e-3, x0=far, **kw)
    late = bounds.gd_weight_plateau_deviation(
        A, delta, 1e-3, x_star=x_star, x0=far, start=8000, stop=8100
    )
    assert early.transient > 100 * early.covariance
    assert late.transient < 1e-6 * early.transient
    gap = bounds.gd_weight_plateau_deviation(
        A, delta, 1e-3, x0=x_star, quantity="suboptimality", **kw
    )
    assert 0 < gap.total < at.total  # weights A/2 instead of A^2 (eigenvalues >= 1)


def test_bad_input():
    A = np.eye(3)
    with pytest.raises(ValueError, match=r"exactly one of b= .* or x_star="):
        bounds.weight_quantization_floor(A, 0.1)
    with pytest.raises(ValueError, match="exactly one"):
        bounds.weight_quantization_floor(A, 0.1, b=np.ones(3), x_star=np.ones(3))
    with pytest.raises(ValueError, match="symmetric"):
        bounds.weight_quantization_floor(np.triu(np.ones((3, 3))), 0.1, b=np.ones(3))
    with pytest.raises(ValueError, match="square"):
        bounds.weight_quantization_floor(np.ones((2, 3)), 0.1, b=np.ones(2))
    with pytest.raises(ValueError, match="singular"):
        bounds.weight_quantization_floor(np.zeros((3, 3)), 0.1, b=np.ones(3))
    with pytest.raises(ValueError, match="x_star must have shape"):
        bounds.weight_quantization_floor(A, 0.1, x_star=np.ones(4))
    with pytest.raises(ValueError, match="delta"):
        bounds.weight_quantization_floor(A, 0.0, b=np.ones(3))
    with pytest.raises(TypeError, match="delta"):
        bounds.weight_quantization_floor_bound(A, "0.1")
    with pytest.raises(ValueError, match="nonnegative diagonal"):
        bounds.weight_quantization_floor_bound(-A, 0.1)
    with pytest.raises(ValueError, match="eigenvalues in"):
        bounds.gd_weight_plateau_deviation(
            A, 0.1, 2.5, x_star=np.ones(3), x0=np.zeros(3), start=0, stop=10
        )
    with pytest.raises(ValueError, match="stop"):
        bounds.gd_weight_plateau_deviation(
            A, 0.1, 0.1, x_star=np.ones(3), x0=np.zeros(3), start=5, stop=5
        )
    with pytest.raises(ValueError, match="quantity"):
        bounds.gd_weight_plateau_deviation(
            A, 0.1, 0.1, x_star=np.ones(3), x0=np.zeros(3), start=0, stop=5, quantity="f"
        )
