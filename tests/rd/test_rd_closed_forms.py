"""Closed-form distortions of the compressors against independent numerics.

Each exact formula in ratedist.rd.closed_forms is compared with a DIFFERENT route to the same
number: another integral (different variable or order of integration) at 1e-10, or a numpy
Monte Carlo of the compressor's defining formula (not the JAX code) within 5 standard errors
at a fixed seed. Large-d formulas are checked as limits of the exact ones.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from ratedist.rd import closed_forms as cf

RNG_SEED = 20240901


def _half_normal(rng, shape):
    return np.abs(rng.standard_normal(shape))


def _mc_check(samples, expected, k=5.0):
    """Mean of per-trial values within k standard errors of ``expected``."""
    mean = samples.mean()
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(mean - expected) <= k * se, (mean, expected, se)


# ----------------------------------------------------------------------------- scaled sign
@pytest.mark.parametrize("d", [1, 2, 7, 1000])
def test_scaled_sign_exact_matches_quadrature_moments(d):
    e_abs, _ = integrate.quad(lambda x: abs(x) * stats.norm.pdf(x), -np.inf, np.inf, epsabs=1e-14)
    e_sq, _ = integrate.quad(lambda x: x * x * stats.norm.pdf(x), -np.inf, np.inf, epsabs=1e-14)
    # E||g||^2 - E||g||_1^2 / d with E||g||_1^2 = d E g^2 + d(d-1) (E|g|)^2.
    expected = (d * e_sq - (e_sq + (d - 1) * e_abs**2)) / d
    assert cf.scaled_sign_distortion(d) == pytest.approx(expected, abs=1e-10)
    assert cf.scaled_sign_distortion(10**9) == pytest.approx(1 - 2 / math.pi, abs=1e-9)


def test_scaled_sign_exact_matches_numpy_monte_carlo():
    rng = np.random.default_rng(RNG_SEED)
    d = 4
    g = rng.standard_normal((200_000, d))
    g_hat = np.abs(g).mean(axis=1, keepdims=True) * np.where(g >= 0, 1.0, -1.0)
    _mc_check(np.sum((g - g_hat) ** 2, axis=1) / d, cf.scaled_sign_distortion(d))


# ----------------------------------------------------------------------------- Top-K
@pytest.mark.parametrize(
    ("d", "k"), [(2, 1), (10, 3), (100, 10), (1000, 10), (1000, 500), (5000, 4999)]
)
def test_top_k_order_statistics_matches_binomial_integral(d, k):
    # Two different exact integrals (over the order-statistic quantile vs over |g| with the
    # binomial count of larger coordinates): equal to quadrature accuracy.
    assert cf.top_k_distortion(d, k) == pytest.approx(cf.top_k_distortion_binomial(d, k), abs=1e-10)


def test_top_k_exact_matches_numpy_monte_carlo():
    rng = np.random.default_rng(RNG_SEED + 1)
    d, k = 6, 2
    a2 = np.sort(rng.standard_normal((200_000, d)) ** 2, axis=1)
    _mc_check(a2[:, : d - k].sum(axis=1) / d, cf.top_k_distortion(d, k))


def test_top_k_large_d_formula_matches_quadrature_and_is_the_limit():
    kappa = 0.05
    t = float(stats.norm.isf(kappa / 2))
    kept, _ = integrate.quad(lambda x: 2 * x * x * stats.norm.pdf(x), t, np.inf, epsabs=1e-14)
    limit = float(cf.top_k_distortion_large_d(kappa))
    assert limit == pytest.approx(1 - kept, abs=1e-10)
    errs = [abs(cf.top_k_distortion(d, int(kappa * d)) - limit) for d in (200, 2000, 20000)]
    # The finite-d correction is O(1/d): it shrinks about 10x per decade.
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 2e-4
    assert cf.top_k_distortion(7, 7) == 0.0


# ----------------------------------------------------------------------------- Top-K + sign
def test_top_k_sign_exact_matches_numpy_monte_carlo():
    rng = np.random.default_rng(RNG_SEED + 2)
    d, k = 6, 3
    g = rng.standard_normal((200_000, d))
    a = np.sort(np.abs(g), axis=1)
    kept = a[:, d - k :]
    err = np.sum(a[:, : d - k] ** 2, axis=1) + np.sum(kept**2, axis=1) - kept.sum(axis=1) ** 2 / k
    _mc_check(err / d, cf.top_k_sign_distortion(d, k))


def test_top_k_sign_special_cases_and_limit():
    # k = 1: the scale is the kept magnitude itself, so it equals plain Top-1.
    assert cf.top_k_sign_distortion(50, 1) == pytest.approx(cf.top_k_distortion(50, 1), abs=1e-12)
    kappa = 0.05
    limit = float(cf.top_k_sign_distortion_large_d(kappa))
    errs = [abs(cf.top_k_sign_distortion(d, int(kappa * d)) - limit) for d in (200, 2000, 20000)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 2e-4


# ----------------------------------------------------------------------------- threshold
@pytest.mark.parametrize(("d", "kappa"), [(10, 0.3), (1000, 0.01), (1000, 0.2)])
def test_threshold_incomplete_beta_matches_chi_square_integral(d, kappa):
    # Condition on W = sum of the other d-1 squares (chi^2_{d-1}): coordinate 1 is dropped iff
    # g^2 <= c^2 W / (d - c^2).
    c2 = float(cf.top_k_threshold(kappa)) ** 2

    def src_m2(u):
        return special.gammainc(1.5, u / 2)  # E[g^2; g^2 < u] for N(0, 1)

    def src_m0(u):
        return special.gammainc(0.5, u / 2)  # P(g^2 < u)

    w_pdf = stats.chi2(d - 1).pdf
    kw = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 200}
    mid = float(d - 1)
    dist = sum(
        integrate.quad(lambda w: src_m2(c2 * w / (d - c2)) * w_pdf(w), a, b, **kw)[0]
        for a, b in ((0, mid), (mid, np.inf))
    )
    drop = sum(
        integrate.quad(lambda w: src_m0(c2 * w / (d - c2)) * w_pdf(w), a, b, **kw)[0]
        for a, b in ((0, mid), (mid, np.inf))
    )
    assert cf.threshold_distortion(d, kappa) == pytest.approx(dist, abs=1e-10)
    assert cf.threshold_kept_fraction(d, kappa) == pytest.approx(1 - drop, abs=1e-10)


def test_threshold_numpy_monte_carlo_and_large_d_limit():
    rng = np.random.default_rng(RNG_SEED + 3)
    d, kappa = 20, 0.2
    g = rng.standard_normal((100_000, d))
    t = np.sqrt(np.mean(g * g, axis=1, keepdims=True)) * float(cf.top_k_threshold(kappa))
    keep = np.abs(g) > t
    _mc_check(np.sum(np.where(keep, 0.0, g * g), axis=1) / d, cf.threshold_distortion(d, kappa))
    _mc_check(keep.mean(axis=1), cf.threshold_kept_fraction(d, kappa))
    # sigma_hat -> sigma: the threshold sparsifier tends to large-d Top-K (O(1/d) gap).
    assert cf.threshold_distortion(10**7, 0.05) == pytest.approx(
        float(cf.top_k_distortion_large_d(0.05)), abs=1e-5
    )
    assert cf.threshold_kept_fraction(10**7, 0.05) == pytest.approx(0.05, abs=1e-5)


# ----------------------------------------------------------------------------- QSGD family
@pytest.mark.parametrize(("d", "s"), [(10, 1), (10, 3), (1000, 4), (1000, 16)])
def test_qsgd_exact_matches_beta_weighted_quadrature(d, s):
    # Different variable: B = r^2 ~ Beta(1/2, (d-1)/2), integrated with QUADPACK's algebraic
    # weight b^(-1/2) (1-b)^((d-3)/2) over [0, 1].
    def v(b):
        u = s * math.sqrt(b)
        f = u - math.floor(u)
        return f * (1 - f)

    val, _ = integrate.quad(
        v, 0, 1, weight="alg", wvar=(-0.5, (d - 3) / 2), epsabs=1e-14, epsrel=1e-12, limit=500
    )
    expected = d / s**2 * val / special.beta(0.5, (d - 1) / 2)
    got = cf.qsgd_rd(d, s=s).distortion
    # QAWS has to resolve the kinks of v at b = (j/s)^2 without breakpoints: 1e-8 relative.
    assert got == pytest.approx(expected, rel=1e-8)


def test_qsgd_numpy_monte_carlo_and_probabilities_sum_to_one():
    rng = np.random.default_rng(RNG_SEED + 4)
    d, s = 8, 2
    g = rng.standard_normal((200_000, d))
    u = s * np.abs(g) / np.linalg.norm(g, axis=1, keepdims=True)
    f = u - np.floor(u)
    var = np.sum(f * (1 - f), axis=1) * np.sum(g * g, axis=1) / s**2
    _mc_check(var / d, cf.qsgd_rd(d, s=s).distortion)
    _, p = cf.norm_levels_moments(1000, np.linspace(0, 1, 5))
    assert p.sum() == pytest.approx(1.0, abs=1e-10)


# ----------------------------------------------------------------------------- TernGrad
@pytest.mark.parametrize("d", [2, 10])
def test_terngrad_swapped_integral_matches_nested_quadrature(d):
    # E[max|g| |g_1|] = int f(a) a (a + int_a^inf (1 - F(x)^(d-1)) dx) da (nested, unswapped).
    def F(x):
        return math.erf(x / math.sqrt(2))

    kw = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 200}

    def inner(a):
        return integrate.quad(lambda x: 1 - F(x) ** (d - 1), a, np.inf, **kw)[0]

    outer = integrate.quad(lambda a: 2 * stats.norm.pdf(a) * a * (a + inner(a)), 0, np.inf, **kw)[0]
    assert cf.terngrad_distortion(d) == pytest.approx(outer - 1.0, abs=1e-10)


def test_terngrad_numpy_monte_carlo():
    rng = np.random.default_rng(RNG_SEED + 5)
    d = 5
    g = rng.standard_normal((200_000, d))
    var = np.max(np.abs(g), axis=1) * np.sum(np.abs(g), axis=1) - np.sum(g * g, axis=1)
    _mc_check(var / d, cf.terngrad_distortion(d))


# ----------------------------------------------------------------------------- natural, rand-k
@pytest.mark.parametrize("sigma", [1.0, 0.37])
def test_natural_matches_quadrature_over_binades(sigma):
    def v(a):
        lo = 2.0 ** math.floor(math.log2(a))
        return (2 * lo - a) * (a - lo)

    pts = [2.0**e for e in range(-60, 8)]
    kw = {"epsabs": 1e-15, "epsrel": 1e-12}
    val = sum(
        integrate.quad(lambda a: 2 * v(a) * stats.norm.pdf(a, scale=sigma), a, b, **kw)[0]
        for a, b in itertools.pairwise(pts)
    )
    assert cf.natural_rd(10, sigma=sigma).distortion == pytest.approx(val / sigma**2, abs=1e-10)


def test_rand_k_and_rates():
    d, k = 1000, 50
    assert cf.rand_k_rd(d, k=k).distortion == pytest.approx(0.95, abs=1e-15)
    assert cf.rand_k_unbiased_rd(d, k=k).distortion == pytest.approx(19.0, abs=1e-12)
    r = cf.top_k_rd(d, k=k, float_bits=32)
    assert r.rate_bits == pytest.approx(k * (10 + 32) / d, abs=1e-15)  # ceil(log2 1000) = 10
    assert r.entropy_rate_bits == pytest.approx(
        (math.log2(math.comb(d, k)) + 32 * k) / d, abs=1e-10
    )
    assert cf.scaled_sign_rd(d).rate_bits == pytest.approx(1 + 32 / d, abs=1e-15)


def test_expected_binary_entropy_exact_small_case():
    # n = 2 fair coins: counts 0, 1, 2 w.p. 1/4, 1/2, 1/4; code lengths 0, 2, 0 bits.
    assert cf.expected_empirical_binary_entropy_bits(2) == pytest.approx(1.0, abs=1e-15)


def test_closed_form_bad_inputs():
    with pytest.raises(ValueError, match="k"):
        cf.top_k_distortion(10, 11)
    with pytest.raises(ValueError, match="k"):
        cf.top_k_sign_distortion(10, 0)
    with pytest.raises(ValueError, match="d"):
        cf.top_k_distortion(0, 1)
    with pytest.raises(TypeError, match="d"):
        cf.scaled_sign_distortion(2.5)
    with pytest.raises(ValueError, match="kappa"):
        cf.threshold_distortion(100, 0.0)
    with pytest.raises(ValueError, match="kappa"):
        cf.top_k_distortion_large_d(1.5)
    with pytest.raises(ValueError, match="sigma"):
        cf.sign_rd(10, sigma=-1.0)
    with pytest.raises(ValueError, match="s"):
        cf.qsgd_rd(100, s=0)


# ----------------------------------------------------------------------------- sympy
def test_sympy_derivations_match_numeric_closed_forms():
    import sympy as sp

    from ratedist.rd import derivations as dv

    dd = dv.d
    assert sp.simplify(dv.scaled_sign_distortion_expr() - (dd - 1) / dd * (1 - 2 / sp.pi)) == 0
    for n in (1, 3, 1000):
        assert float(dv.scaled_sign_distortion_expr().subs(dd, n)) == pytest.approx(
            cf.scaled_sign_distortion(n), abs=1e-12
        )
    kept = sp.lambdify(dv.t, dv.top_k_kept_energy_expr(), "scipy")
    sign_ld = sp.lambdify(dv.t, dv.top_k_sign_distortion_large_d_expr(), "scipy")
    for kappa in (0.001, 0.05, 0.5, 0.9):
        t = float(cf.top_k_threshold(kappa))
        assert 1 - kept(t) == pytest.approx(float(cf.top_k_distortion_large_d(kappa)), abs=1e-12)
        assert sign_ld(t) == pytest.approx(
            float(cf.top_k_sign_distortion_large_d(kappa)), abs=1e-12
        )


def test_curve_specs_come_from_the_registry():
    """Figures' closed-form curves: every compressor with a closed form, its ``rd_curve``
    fact where declared (else its ``rd_sweep``), each a spec ``make`` accepts."""
    from ratedist.compressors import COMPRESSORS, make
    from ratedist.rd import CLOSED_FORMS, curve_specs, default_specs

    cs = curve_specs()
    assert set(cs) == {n for n in COMPRESSORS.names() if n in CLOSED_FORMS}
    for name, specs in cs.items():
        assert specs, name
        curve = COMPRESSORS.facts(name).get("rd_curve")
        if curve is None:
            assert specs == default_specs()[name]
        else:
            assert len(specs) == len(curve)
            for spec, params in zip(specs, curve, strict=True):
                got = make(spec).facts.params
                assert all(got[k] == v for k, v in params.items()), (spec, params)
