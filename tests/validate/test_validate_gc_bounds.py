"""The gc_sgd_bounds check (quick variant) and its logistic helpers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist import sim
from ratedist.validate import CHECKS, run_checks
from ratedist.validate.coding_bounds import (
    SLOPE_TOL,
    partition_gradient_bounds,
    partition_values_and_grads,
)


@pytest.fixture(scope="module")
def rows():
    return run_checks(["gc_sgd_bounds"], quick=True)


def test_quick_check_rows_hold(rows):
    assert CHECKS.facts("gc_sgd_bounds")["quick"]
    names = [r.check for r in rows]
    assert len(names) == len(set(names)) == 10  # 3 straggler probabilities x 3 rows + slope
    for p in ("0", "0.1", "0.3"):
        for kind in ("variance", "convex", "nonconvex"):
            assert f"gc_sgd_bounds[convex:rr:d=2:p={p}:{kind}]" in names
    bad = [r for r in rows if r.verdict != "holds"]
    assert not bad, bad
    for r in rows:
        if not r.check.endswith(":slope]"):
            assert 0 < r.measured <= r.predicted  # a priori bounds: far above, never below
            assert r.error > 0 and "[" in r.detail and r.detail.rstrip().endswith("s]")


def test_quick_slope_is_minus_one_half(rows):
    (slope,) = [r for r in rows if r.check.endswith(":slope]")]
    assert slope.predicted == -0.5
    assert abs(slope.measured + 0.5) <= SLOPE_TOL + 5 * slope.error
    assert 0 < slope.error < 0.05


def test_straggler_terms_grow_with_p(rows):
    by = {r.check: r for r in rows}
    s = [by[f"gc_sgd_bounds[convex:rr:d=2:p={p}:variance]"].predicted for p in ("0", "0.1", "0.3")]
    assert s[0] < s[1] < s[2]


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_numpy_partition_gradients_match_the_problem(lam):
    prob = sim.logistic_nonconvex(n_workers=4, lam=lam, n_samples=80, dim=5, solve_f_star=False)
    x = np.random.default_rng(0).standard_normal(5)
    f, g = partition_values_and_grads(prob, x)
    fj, gj = jax.vmap(prob.local_value_and_grad, in_axes=(None, 0))(jnp.asarray(x), prob.data)
    np.testing.assert_allclose(f, np.asarray(fj), rtol=1e-12)
    np.testing.assert_allclose(g, np.asarray(gj), rtol=1e-12, atol=1e-15)


def test_partition_gradient_bounds_hold_everywhere():
    prob = sim.logistic_nonconvex(n_workers=6, lam=0.1, n_samples=120, dim=6, solve_f_star=False)
    G = partition_gradient_bounds(prob)
    rng = np.random.default_rng(1)
    worst = 0.0
    for scale in (0.1, 1.0, 10.0, 1e3):
        for _ in range(50):
            _, g = partition_values_and_grads(prob, scale * rng.standard_normal(prob.dim))
            worst = max(worst, float(np.max(np.linalg.norm(g, axis=1) / G)))
    assert worst <= 1.0
    # the regulariser's gradient bound 3 sqrt(3)/8 per unit lam is attained at t^2 = 1/3
    t = 1 / math.sqrt(3)
    assert 2 * t / (1 + t * t) ** 2 == pytest.approx(3 * math.sqrt(3) / 8, rel=1e-15)


@pytest.mark.slow
def test_diminishing_check_holds():
    assert not CHECKS.facts("gc_sgd_diminishing")["quick"]  # full suite only
    rows = run_checks(["gc_sgd_diminishing"], quick=True)  # its small variant, T = 200
    assert [r.check.split(":")[-1] for r in rows] == ["convex]", "nonconvex]"]
    assert all(r.verdict == "holds" and 0 < r.measured <= r.predicted for r in rows), rows
