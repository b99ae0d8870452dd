"""Rounding to the grid ``delta * Z``: moments against Monte Carlo and the sympy derivation,
nearest rounding, bits on hand-made inputs, facts and bad input.

The generic checks (shapes, jit/vmap, unbiasedness, the absolute MSE bound, non-finite inputs,
the bit formula on Gaussian inputs) run in ``test_compressors_generic.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.compressors import grid, make
from ratedist.compressors.grid import HEADER_BITS
from ratedist.symbolic import grid as G
from ratedist.symbolic.lambdify import lambdified

K_SE = 5.0
M = 20000  # Monte Carlo draws per coordinate


def _draws(comp, x, key, m=M):
    keys = jax.random.split(key, m)
    f = jax.jit(jax.vmap(lambda k: comp.update(jnp.asarray(x), (), key=k)[0]))
    return np.asarray(f(keys))


def test_mean_and_variance_per_coordinate_match_sympy_and_monte_carlo(key):
    delta = 0.3
    # fractional parts 0 (on the grid), tiny, 1/2, near 1, and negative inputs
    r = np.array([0.0, 1e-3, 0.25, 0.5, 0.8, 0.999])
    x = delta * (np.array([0, 3, -2, 1, -7, 5]) + r)
    q = _draws(grid(delta), x, key)
    var_sym = lambdified(G.mse_coordinate, ("r", "Delta"))
    mean_sym = lambdified(G.mean, ("x", "Delta"))
    var = np.asarray(var_sym(r, delta), float)
    np.testing.assert_allclose(var, r * (1 - r) * delta**2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.asarray(mean_sym(x, delta), float), x, rtol=1e-15)
    # the outputs are the two neighbouring grid points only
    k = np.floor(x / delta)
    assert np.all(np.isclose(q, delta * k[None]) | np.isclose(q, delta * (k[None] + 1)))
    # mean: 5 SE of the exact law (SE from the exact variance; 0 on the grid: exact)
    se = np.sqrt(var / M)
    assert np.all(np.abs(q.mean(0) - x) <= K_SE * se + 1e-14), (q.mean(0) - x, se)
    # variance: the squared error is delta^2 (1-r)^2 w.p. r, delta^2 r^2 w.p. 1-r
    err2 = (q - x[None]) ** 2
    fourth = delta**4 * (r * (1 - r) ** 4 + (1 - r) * r**4)
    se2 = np.sqrt(np.maximum(fourth - var**2, 0) / M)
    assert np.all(np.abs(err2.mean(0) - var) <= K_SE * se2 + 1e-14), (err2.mean(0), var)


def test_total_mse_matches_and_stays_under_the_declared_bound(key):
    delta = 0.5
    comp = grid(delta)
    x = np.random.default_rng(1).standard_normal(64)
    r = x / delta - np.floor(x / delta)
    exact = float(np.sum(r * (1 - r)) * delta**2)
    err = ((_draws(comp, x, key, 4000) - x[None]) ** 2).sum(1)
    assert abs(err.mean() - exact) <= K_SE * err.std(ddof=1) / math.sqrt(err.size)
    assert exact <= comp.facts.abs_mse(64) == 64 * delta**2 / 4


def test_nearest_rounding_is_pathwise_within_half_a_step():
    delta = 0.25
    comp = make("grid:delta=0.25,rounding=deterministic")
    x = np.array([0.1, 0.125, 0.375, -0.3, 2.6, -0.01])  # 0.125 and 0.375: ties to even
    x_hat = np.asarray(comp.update(jnp.asarray(x), ())[0])
    np.testing.assert_array_equal(x_hat, [0.0, 0.0, 0.5, -0.25, 2.5, 0.0])
    assert np.all(np.abs(x_hat - x) <= delta / 2)


def test_bits_on_hand_made_inputs(key):
    comp = grid(1.0, rounding="deterministic")
    # indices -3..4: 8 values -> 3 bits each; entropy of 8 distinct symbols = 8 * 3 bits
    x = jnp.arange(-3.0, 5.0)
    _, _, info = comp.update(x, ())
    assert [float(v) for v in info] == [24.0, 0.0, HEADER_BITS, 24.0 + HEADER_BITS]
    # indices {0, 0, 0, 5}: width ceil(log2 6) = 3, entropy 3 log2(4/3) + log2 4
    _, _, info = comp.update(jnp.array([0.1, -0.2, 0.3, 5.0]), ())
    ent = 3 * math.log2(4 / 3) + 2.0
    assert float(info.value_bits) == 12.0
    assert float(info.entropy_bits) == pytest.approx(ent + HEADER_BITS, rel=1e-12)
    # one index value: no value bits, the header only
    _, _, info = grid(0.5).update(jnp.full((7,), 1.5), (), key=key)
    assert float(info.container_bits) == HEADER_BITS == float(info.entropy_bits) == 38


def test_facts():
    s, d8 = grid(0.1), grid(0.1, rng_bits=8)
    det = grid(0.1, rounding="deterministic")
    assert s.facts.unbiased and not s.facts.deterministic
    assert det.facts.deterministic and not det.facts.unbiased
    assert not d8.facts.unbiased  # P(up) rounded to 2^-8
    for c in (s, d8, det):
        assert c.facts.omega is None and c.facts.alpha is None
    assert s.facts.abs_mse(10) == pytest.approx(10 * 0.01 / 4, rel=1e-15)
    assert det.facts.abs_mse(10) == s.facts.abs_mse(10)
    # 8 RNG bits: the sympy maximum of the per-coordinate MSE, 1/4 + eps^2 at eps = 2^-9
    mx = lambdified(G.mse_max_rng, ("Delta", "eps"))
    assert d8.facts.abs_mse(10) == pytest.approx(10 * float(mx(0.1, 2.0**-9)), rel=1e-13)
    assert make("grid:delta=0.1").facts.params == {
        "delta": 0.1,
        "rounding": "stochastic",
        "rng_bits": 32,
    }


def test_bad_input():
    with pytest.raises(ValueError, match="delta"):
        grid(0.0)
    with pytest.raises(ValueError, match="delta"):
        grid(math.inf)
    with pytest.raises(TypeError, match="delta"):
        grid("0.1")
    with pytest.raises(ValueError, match="rounding"):
        grid(0.1, rounding="nearest")
    with pytest.raises(ValueError, match="rng_bits"):
        grid(0.1, rng_bits=4)
    with pytest.raises(ValueError, match="delta"):
        make("grid")  # delta is required: no resolution fits every problem
    with pytest.raises(ValueError, match="key"):
        grid(0.1).update(jnp.ones(3), ())
