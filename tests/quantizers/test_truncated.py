"""Truncated designs (TNQ/TUQ): exact error vs quadrature, exact vs bound optimum, Monte Carlo
of the JAX stochastic quantizer, codes, registry and bad input."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from ratedist.quantizers import DESIGNS, ScalarQuantizer, Solution
from ratedist.quantizers.truncated import (
    TruncationDesign,
    cube_root_quantiles,
    optimal_truncation,
    powerlaw_design,
    powerlaw_growth_exponent,
    tnq,
    truncation_design,
    truncation_levels,
    tuq,
)
from ratedist.sources.classic import Gaussian, Laplace
from ratedist.sources.heavy import GeneralizedGaussian, PowerLaw

C = 3 * math.sqrt(6) / 2
QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}


def quad_error(levels, pdf):
    """Independent exact error: quad of the within-cell variance and of the tail bias."""
    var = sum(
        integrate.quad(lambda x, a=a, b=b: (b - x) * (x - a) * pdf(x), a, b, **QUAD)[0]
        for a, b in itertools.pairwise(levels)
    )
    lo, hi = levels[0], levels[-1]
    bias = integrate.quad(lambda x: (x - hi) ** 2 * pdf(x), hi, np.inf, **QUAD)[0]
    bias += integrate.quad(lambda x: (x - lo) ** 2 * pdf(x), -np.inf, lo, **QUAD)[0]
    return var, bias


def laplace_pdf(g):
    return lambda x: math.exp(-abs(x) / g) / (2 * g)


def gauss_pdf(sig):
    return lambda x: math.exp(-(x**2) / (2 * sig**2)) / (math.sqrt(2 * math.pi) * sig)


# ----------------------------------------------------------------------------- exact error
@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
@pytest.mark.parametrize(
    ("source", "pdf"), [(Laplace(0.7), laplace_pdf(0.7)), (Gaussian(1.3), gauss_pdf(1.3))]
)
@pytest.mark.parametrize("s", [1, 3, 8])
def test_exact_error_matches_quadrature(source, pdf, rule, s):
    d = optimal_truncation(source, s, levels=rule)
    var, bias = quad_error(d.quantizer.levels, pdf)
    # 1e-10: partial moments are closed form, quad runs at 1e-13
    assert d.exact.variance == pytest.approx(var, rel=1e-10)
    assert d.exact.bias == pytest.approx(bias, rel=1e-10)
    assert d.exact.mse == pytest.approx(var + bias, rel=1e-10)


# ----------------------------------------------------------------------------- design facts
@pytest.mark.parametrize("s", [1, 2, 3, 7, 15, 255])
def test_laplace_design_is_the_closed_form(s):
    g = 1.7
    d = optimal_truncation(Laplace(g), s)
    assert isinstance(d, TruncationDesign)
    assert d.alpha == pytest.approx(3 * g * math.log(1 + s / C), rel=1e-14)
    assert d.bound_mse == pytest.approx(27 * g**2 / (s + C) ** 2, rel=1e-12)
    lv = d.quantizer.levels
    assert lv.size == s + 1 and lv[0] == -d.alpha and lv[-1] == d.alpha
    np.testing.assert_allclose(lv, -lv[::-1], atol=1e-14 * d.alpha)  # symmetric
    np.testing.assert_allclose(d.quantizer.thresholds, 0.5 * (lv[1:] + lv[:-1]), rtol=0, atol=0)
    # spacing widens away from 0 (density ∝ exp(-|g|/(3 gamma)))
    gaps = np.diff(lv[lv >= 0])
    assert np.all(np.diff(gaps) > 0) if gaps.size > 1 else True
    assert d.rate_bits == pytest.approx(math.log2(s + 1))
    assert (d.form, d.level_rule, d.code) == ("bound", "nonuniform", "full_range")


@pytest.mark.parametrize("s", [1, 3, 15, 255])
def test_laplace_uniform_design_is_lambert_w(s):
    from scipy.special import lambertw

    g = 0.4
    d = optimal_truncation(Laplace(g), s, levels="uniform")
    w = lambertw(s**2).real
    assert d.alpha == pytest.approx(g * w, rel=1e-13)
    assert d.bound_mse == pytest.approx(g**2 * (w**2 + 2 * w) / s**2, rel=1e-12)
    np.testing.assert_allclose(np.diff(d.quantizer.levels), 2 * d.alpha / s, rtol=1e-12)


@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
def test_generic_numeric_path_reproduces_closed_forms(rule):
    # GeneralizedGaussian(1, g) is Laplace(g) and (2, sqrt(2) sigma) is N(0, sigma^2), but it
    # goes through the quadrature model: same alpha*, levels and bound to root-finder accuracy
    for gen, ref in [
        (GeneralizedGaussian(1.0, 0.8), Laplace(0.8)),
        (GeneralizedGaussian(2.0, math.sqrt(2) * 1.1), Gaussian(1.1)),
    ]:
        for s in (1, 7):
            a = optimal_truncation(gen, s, levels=rule)
            b = optimal_truncation(ref, s, levels=rule)
            assert a.solver != b.solver
            assert a.alpha == pytest.approx(b.alpha, rel=1e-9)
            assert a.bound_mse == pytest.approx(b.bound_mse, rel=1e-10)
            np.testing.assert_allclose(a.quantizer.levels, b.quantizer.levels, atol=1e-9)


def test_cube_root_quantiles_match_laplace_closed_form():
    src, alpha, s = GeneralizedGaussian(1.0, 1.0), 3.0, 16
    got = cube_root_quantiles(src, alpha, np.arange(s + 1) / s)
    ref = truncation_levels(Laplace(1.0), s, alpha)
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("s", [1, 3, 7])
def test_sign_magnitude_equals_full_range_with_twice_the_intervals(s):
    g = 1.0
    sm = optimal_truncation(Laplace(g), s, code="sign_magnitude")
    fr = optimal_truncation(Laplace(g), 2 * s)
    np.testing.assert_array_equal(sm.quantizer.levels, fr.quantizer.levels)
    assert sm.bound_mse == pytest.approx(27 * g**2 / (2 * s + C) ** 2, rel=1e-12)
    assert sm.rate_bits == pytest.approx(1 + math.log2(s + 1))
    assert sm.quantizer.n_levels == 2 * s + 1 and sm.s == s


# ----------------------------------------------------------------------------- exact optimum
@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
@pytest.mark.parametrize("source", [Laplace(1.0), Gaussian(1.0)])
@pytest.mark.parametrize("s", [1, 3, 15])
def test_exact_optimum_beats_bound_optimum(source, rule, s):
    b = optimal_truncation(source, s, levels=rule)
    e = optimal_truncation(source, s, levels=rule, objective="exact")
    assert e.form == "exact"
    # minimiser of the exact error: never worse than the bound's alpha (1e-14 relative slack
    # for the flat minimum's rounding)
    assert e.exact.mse <= b.exact.mse * (1 + 1e-14)
    # and a local minimum of the exact error along alpha
    for f in (1 - 1e-3, 1 + 1e-3):
        other = truncation_design(source, s, e.alpha * f, levels=rule)
        assert other.exact.mse >= e.exact.mse * (1 - 1e-14)
    # the bound bounds the exact error at the bound-optimal design for these sources
    assert b.exact.mse <= b.bound_mse


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.parametrize("rule", ["nonuniform", "uniform"])
def test_monte_carlo_of_jax_quantizer_matches_exact_error(rule, key):
    g, s, n = 1.0, 7, 200_000
    d = optimal_truncation(Laplace(g), s, levels=rule)
    k1, k2 = jax.random.split(key)
    x = Laplace(g).sample(k1, (n,))
    q = jax.jit(d.quantizer.stochastic)(k2, jnp.clip(x, -d.alpha, d.alpha))
    x, q = np.asarray(x), np.asarray(q)
    assert set(np.unique(q)) <= set(d.quantizer.levels.tolist())
    err = (q - x) ** 2
    se = err.std(ddof=1) / math.sqrt(n)
    assert abs(err.mean() - d.exact.mse) < 5 * se
    inside = np.abs(x) < d.alpha
    dev = (q - x)[inside]
    assert abs(dev.mean()) < 5 * dev.std(ddof=1) / math.sqrt(dev.size)  # unbiased in range
    var_in = ((q - x) ** 2 * inside).mean()
    se_in = ((q - x) ** 2 * inside).std(ddof=1) / math.sqrt(n)
    assert abs(var_in - d.exact.variance) < 5 * se_in


# ----------------------------------------------------------------------------- registry / API
def test_registered_designers():
    for name, rule in (("tnq", "nonuniform"), ("tuq", "uniform")):
        facts = DESIGNS.facts(name)
        assert facts["rounding"] == "stochastic" and facts["truncated"] is True
        sol = DESIGNS.get(name)(Laplace(1.0), 8)
        assert isinstance(sol, Solution) and sol.converged
        d = sol.value
        assert isinstance(d.quantizer, ScalarQuantizer) and d.quantizer.n_levels == 8
        assert d.level_rule == rule and d.s == 7 and math.isfinite(d.exact.mse)
        assert d.alpha == d.quantizer.alpha
        ex = DESIGNS.get(name)(Laplace(1.0), 8, exact=True).value
        assert ex.form == "exact" and ex.exact.mse <= d.exact.mse * (1 + 1e-14)


def test_designers_are_the_module_functions():
    assert DESIGNS.get("tnq") is tnq and DESIGNS.get("tuq") is tuq


def test_powerlaw_design_and_growth():
    a = 5.0
    d = powerlaw_design(a, 15, scale=2.0)
    assert isinstance(d.source, PowerLaw) and d.source.tail_index == a
    c = 3 / (a - 2) * math.sqrt(3 * a * (a - 1) / 2)
    assert d.alpha == pytest.approx(2.0 * ((1 + 15 / c) ** (3 / (a - 2)) - 1), rel=1e-13)
    # measured growth exponent of the designed alpha* between s = 2^12 and 2^16
    al = [powerlaw_design(a, s).alpha for s in (2**12, 2**16)]
    slope = math.log(al[1] / al[0]) / math.log(16)
    assert slope == pytest.approx(powerlaw_growth_exponent(a), rel=2e-3)
    assert powerlaw_growth_exponent(a) == pytest.approx(1.0)
    assert powerlaw_growth_exponent(a, levels="uniform") == pytest.approx(0.4)


def test_powerlaw_exact_error_matches_quadrature():
    a, sig = 4.0, 1.0
    d = powerlaw_design(a, 3, scale=sig)
    pdf = lambda x: a / (2 * sig) * (1 + abs(x) / sig) ** (-(a + 1))  # noqa: E731
    var, bias = quad_error(d.quantizer.levels, pdf)
    assert d.exact.variance == pytest.approx(var, rel=1e-9)
    assert d.exact.bias == pytest.approx(bias, rel=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs():
    src = Laplace(1.0)
    with pytest.raises(ValueError, match="s must be >= 1"):
        optimal_truncation(src, 0)
    with pytest.raises(TypeError, match="s must be an integer"):
        optimal_truncation(src, 2.5)
    with pytest.raises(ValueError, match="levels"):
        optimal_truncation(src, 3, levels="lloyd")
    with pytest.raises(ValueError, match="objective"):
        optimal_truncation(src, 3, objective="tight")
    with pytest.raises(ValueError, match="code"):
        optimal_truncation(src, 3, code="gray")
    with pytest.raises(ValueError, match="rounding"):
        optimal_truncation(src, 3, rounding="nearest")
    with pytest.raises(TypeError, match="source"):
        optimal_truncation("laplace", 3)
    with pytest.raises(ValueError, match="alpha"):
        truncation_design(src, 3, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        truncation_levels(src, 3, -1.0)
    with pytest.raises(ValueError, match="level_rule"):
        truncation_levels(src, 3, 1.0, level_rule="log")
    with pytest.raises(ValueError, match="n_levels"):
        tnq(src, 1)
    with pytest.raises(TypeError, match="n_levels"):
        tuq(src, 3.5)
    with pytest.raises(ValueError, match="rounding"):
        tnq(src, 4, rounding="deterministic")
    with pytest.raises(TypeError, match="exact"):
        tnq(src, 4, exact="yes")
    with pytest.raises(ValueError, match="tail_index"):
        powerlaw_design(2.0, 3)
    with pytest.raises(ValueError, match="tail_index"):
        optimal_truncation(PowerLaw(1.5), 3)
    with pytest.raises(ValueError, match="tail_index"):
        powerlaw_growth_exponent(1.0)
    with pytest.raises(ValueError, match="scale"):
        powerlaw_design(4.0, 3, scale=0.0)


def test_empirical_asymmetric_source_uses_generic_path():
    from ratedist.sources.empirical import Empirical

    rng = np.random.default_rng(0)
    src = Empirical(rng.laplace(size=300) + 0.3)  # not symmetric
    d = optimal_truncation(src, 4)
    lv = d.quantizer.levels
    assert d.solver == "root of F' (quadrature)"
    assert lv[0] == -d.alpha and lv[-1] == d.alpha and lv[2] != 0.0  # no forced zero level
    # the non-uniform levels sit at the j/s quantiles of p^(1/3) on [-alpha, alpha]
    cb = lambda x: np.cbrt(float(src.pdf(x)))  # noqa: E731
    total = integrate.quad(cb, -d.alpha, d.alpha, points=[0.0], **QUAD)[0]
    for j in range(1, 4):
        part = integrate.quad(cb, -d.alpha, lv[j], **QUAD)[0]
        assert part / total == pytest.approx(j / 4, abs=1e-9)
    with pytest.raises(ValueError, match="symmetric"):
        optimal_truncation(src, 4, code="sign_magnitude")


def test_quantizer_is_a_jit_argument(key):
    d = optimal_truncation(Laplace(1.0), 15)

    @jax.jit
    def apply(q, k, x):
        return q.stochastic(k, x)

    x = jnp.linspace(-2 * d.alpha, 2 * d.alpha, 101)
    y = apply(d.quantizer, key, x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(d.quantizer.stochastic(key, x)))
    assert float(jnp.max(jnp.abs(y))) <= d.alpha


@settings(max_examples=25, deadline=None)
@given(
    s=st.integers(1, 300),
    scale=st.floats(1e-3, 1e3),
    family=st.sampled_from(["laplace", "gaussian", "power-law"]),
    rule=st.sampled_from(["nonuniform", "uniform"]),
)
def test_closed_form_designs_are_valid(s, scale, family, rule):
    src = {
        "laplace": Laplace(scale),
        "gaussian": Gaussian(scale),
        "power-law": PowerLaw(4.5, scale),
    }[family]
    d = optimal_truncation(src, s, levels=rule)
    lv = d.quantizer.levels
    assert lv.size == s + 1 and np.all(np.diff(lv) > 0)
    assert lv[0] == -d.alpha and lv[-1] == d.alpha
    np.testing.assert_allclose(lv, -lv[::-1], rtol=0, atol=1e-12 * d.alpha)
    assert 0 < d.exact.mse <= d.bound_mse  # the bound is above the exact error here
    # scale equivariance: alpha and levels scale with the source, errors with its square
    ref = optimal_truncation(
        type(src)(**{**src.params(), "scale" if family != "gaussian" else "sigma": 1.0}),
        s,
        levels=rule,
    )
    assert d.alpha == pytest.approx(scale * ref.alpha, rel=1e-9)
    assert d.exact.mse == pytest.approx(scale**2 * ref.exact.mse, rel=1e-8)


@pytest.mark.parametrize("design", [tnq, tuq])
def test_designed_quantizer_returns_nonfinite_inputs_as_they_are(design, key):
    q = design(Laplace(1.0), 8).value.quantizer
    x = np.array([0.3, np.nan, np.inf, -np.inf, -40.0])
    for fn in (q, lambda v: q.stochastic(key, v), jax.jit(lambda v: q.stochastic(key, v))):
        y = np.asarray(fn(jnp.asarray(x)))
        np.testing.assert_array_equal(y[1:4], x[1:4])
        assert np.all(np.isin(y[[0, 4]], q.levels))  # finite inputs still land on levels
