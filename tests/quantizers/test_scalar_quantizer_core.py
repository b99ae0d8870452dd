"""ScalarQuantizer data checks, JAX apply, and the exact evaluation kernel."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from ratedist.quantizers import exact
from ratedist.quantizers.core import ScalarQuantizer
from ratedist.sources import Gaussian, Laplace


def _quad(f, a, b):
    # Independent of partial_moment: adaptive quadrature of the integrand itself.
    return integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


def test_validation_of_fields():
    with pytest.raises(ValueError, match="levels must be strictly increasing"):
        ScalarQuantizer(np.array([0.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="levels must have at least 2"):
        ScalarQuantizer(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="thresholds must have len"):
        ScalarQuantizer(np.array([0.0, 0.5]), np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="interleave"):
        ScalarQuantizer(np.array([2.0]), np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="levels must contain only finite"):
        ScalarQuantizer.from_levels([-1.0, math.inf])


def test_deterministic_apply_matches_numpy_nearest_cell(key):
    q = ScalarQuantizer(np.array([-0.5, 0.1, 0.9]), np.array([-1.0, -0.2, 0.4, 1.5]))
    x = jax.random.normal(key, (5000,)) * 2
    idx_ref = np.searchsorted(q.thresholds, np.asarray(x), side="left")
    np.testing.assert_array_equal(np.asarray(q.index(x)), idx_ref)
    np.testing.assert_array_equal(np.asarray(q(x)), q.levels[idx_ref])
    assert q(x.astype(jnp.float32)).dtype == jnp.float32


def test_stochastic_rounding_unbiased_and_variance(key):
    q = ScalarQuantizer.from_levels(np.array([-1.0, -0.3, 0.2, 1.0]))
    x = jnp.array([-0.9, -0.3, 0.05, 0.7])
    n = 200_000
    keys = jax.random.split(key, n)
    out = jax.vmap(lambda k: q.stochastic(k, x))(keys)
    mean, se = out.mean(0), out.std(0) / math.sqrt(n)
    assert np.all(np.abs(np.asarray(mean - x)) <= 5 * np.maximum(np.asarray(se), 1e-12))
    lo = np.array([-1.0, -0.3, -0.3, 0.2])
    hi = np.array([-0.3, 0.2, 0.2, 1.0])
    var_theory = (hi - np.asarray(x)) * (np.asarray(x) - lo)
    var_mc = np.asarray(out.var(0))
    # Sample variance of a two-point law: SE ≈ sqrt((mu4 - var^2)/n) <= var-scale/sqrt(n).
    assert np.all(np.abs(var_mc - var_theory) <= 5 * 0.5 / math.sqrt(n))
    # Outside the range values are clipped (truncation), hence land on the end levels.
    np.testing.assert_array_equal(
        np.asarray(q.stochastic(key, jnp.array([-5.0, 7.0]))), [-1.0, 1.0]
    )


def test_pytree_roundtrip_under_jit():
    q = ScalarQuantizer.from_levels([-1.0, 0.0, 1.0])
    f = jax.jit(lambda qq, x: qq(x))
    np.testing.assert_array_equal(np.asarray(f(q, jnp.array([0.7, -0.2]))), [1.0, 0.0])


@pytest.mark.parametrize("source", [Gaussian(1.3), Laplace(0.8)])
def test_exact_kernel_matches_quadrature(source):
    lv = np.array([-1.7, -0.6, 0.1, 0.9, 2.2])
    q = ScalarQuantizer.from_levels(lv)
    t = np.concatenate([[-np.inf], q.thresholds, [np.inf]])
    mse_quad = sum(
        _quad(lambda x, l=l: (x - l) ** 2 * source.pdf(x), a, b)
        for a, b, l in zip(t[:-1], t[1:], lv, strict=True)
    )
    assert exact.deterministic_mse(q, source) == pytest.approx(mse_quad, rel=1e-10)
    var_quad = sum(
        _quad(lambda x, a=a, b=b: (b - x) * (x - a) * source.pdf(x), a, b)
        for a, b in itertools.pairwise(lv)
    )
    bias_quad = _quad(lambda x: (x - lv[-1]) ** 2 * source.pdf(x), lv[-1], np.inf) + _quad(
        lambda x: (x - lv[0]) ** 2 * source.pdf(x), -np.inf, lv[0]
    )
    err = exact.stochastic_error(q, source)
    assert err.variance == pytest.approx(var_quad, rel=1e-10)
    assert err.bias == pytest.approx(bias_quad, rel=1e-10)
    assert err.mse == pytest.approx(var_quad + bias_quad, rel=1e-10)
    for probs in (
        exact.deterministic_probabilities(q, source),
        exact.stochastic_probabilities(q, source),
    ):
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


def test_classic_one_bit_gaussian_values():
    c = math.sqrt(2 / math.pi)
    q = ScalarQuantizer(np.array([0.0]), np.array([-c, c]))
    assert exact.deterministic_mse(q, Gaussian()) == pytest.approx(1 - 2 / math.pi, abs=1e-14)
    assert exact.entropy_bits(exact.deterministic_probabilities(q, Gaussian())) == pytest.approx(
        1.0, abs=1e-14
    )


def test_stochastic_probabilities_match_monte_carlo(key):
    src = Laplace(1.0)
    q = ScalarQuantizer.from_levels(np.array([-2.0, -0.5, 0.5, 2.0]))
    n = 400_000
    k1, k2 = jax.random.split(key)
    idx = np.asarray(q.stochastic_index(k2, src.sample(k1, (n,))))
    freq = np.bincount(idx, minlength=4) / n
    p = exact.stochastic_probabilities(q, src)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nonfinite_inputs_are_returned_as_they_are(dtype, key):
    q = ScalarQuantizer(np.array([-0.5, 0.1, 0.9]), np.array([-1.0, -0.2, 0.4, 1.5]))
    x = np.array([0.3, np.nan, 7.0, np.inf, -np.inf, -0.7], dtype)
    finite = np.isfinite(x)
    maps = {
        "deterministic": lambda v: q(v),
        "stochastic": lambda v: q.stochastic(key, v),
    }
    for label, fn in maps.items():
        for arg in (x, jnp.asarray(x)):  # numpy and JAX input, eager and jitted
            for y in (fn(arg), jax.jit(fn)(arg)):
                y = np.asarray(y)
                assert y.dtype == dtype, label
                np.testing.assert_array_equal(y[~finite], x[~finite])
                # finite inputs: exactly the levels the index maps choose (x64 levels cast)
                idx = q.index(x) if label == "deterministic" else q.stochastic_index(key, x)
                np.testing.assert_array_equal(y[finite], q.levels.astype(dtype)[idx][finite])
