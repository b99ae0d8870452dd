"""pdf, cdf, ppf and entropy of every source against independent numerics and scipy.stats."""

import math

import numpy as np
import pytest
from scipy import stats
from sources_testlib import (
    SOURCES,
    breakpoints,
    entropy_integrand,
    ref_integral,
    ref_pdf,
    scale_of,
)

from ratedist.sources import (
    AbstractSource,
    Empirical,
    Gaussian,
    GeneralizedGaussian,
    Laplace,
    PowerLaw,
    StudentT,
)

INF = math.inf
LN2 = math.log(2)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_pdf_matches_reference_formula(name):
    src = SOURCES[name]
    f = ref_pdf(src)
    x = np.array([-30.0, -3.0, -0.7, 0.0, 0.2, 1.1, 4.0, 25.0]) * scale_of(src)
    want = np.array([f(v) for v in x])
    np.testing.assert_allclose(src.pdf(x), want, rtol=1e-13, atol=1e-300)  # same formula


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_pdf_integrates_to_one_and_cdf_is_its_integral(name):
    src = SOURCES[name]
    f = ref_pdf(src)
    pts = breakpoints(src)
    assert ref_integral(f, -INF, INF, pts) == pytest.approx(1.0, abs=1e-10)  # quad: 1e-10
    c = scale_of(src)
    for x in (-8 * c, -1.3 * c, 0.0, 0.4 * c, 2.5 * c):
        want = ref_integral(f, -INF, x, pts)
        assert float(src.cdf(x)) == pytest.approx(want, rel=1e-10)


QS = np.array([1e-12, 1e-6, 0.01, 0.3, 0.5, 0.77, 0.99, 1 - 1e-9])


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_ppf_inverts_cdf(name):
    src = SOURCES[name]
    x = src.ppf(QS)
    assert np.all(np.diff(x) > 0)
    got = src.cdf(x)
    lower = QS < 0.5
    # lower tail: relative 1e-10 (cdf and ppf both resolve small probabilities relatively);
    # upper tail: absolute 1e-14, the rounding of 1 - tail in the cdf.
    np.testing.assert_allclose(got[lower], QS[lower], rtol=1e-10)
    np.testing.assert_allclose(got[~lower], QS[~lower], rtol=0, atol=1e-14)
    assert src.ppf(0.0) == -INF and src.ppf(1.0) == INF
    assert src.ppf(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_default_root_finding_ppf_and_abs_median_work(name):
    # the base-class fallbacks must work for every source, not only the overrides
    src = SOURCES[name]
    q = np.array([1e-6, 0.2, 0.5, 0.75, 0.999])
    np.testing.assert_allclose(
        AbstractSource.ppf(src, q), src.ppf(q), rtol=1e-11, atol=1e-11 * scale_of(src)
    )
    if src.symmetric:
        med = src._abs_median()
        assert med == pytest.approx(AbstractSource._abs_median(src), rel=1e-11)
        assert float(src.cdf(med)) == pytest.approx(0.75, abs=1e-14)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_entropy_matches_quadrature(name):
    src = SOURCES[name]
    want = ref_integral(entropy_integrand(src), -INF, INF, breakpoints(src))
    assert src.entropy_bits() == pytest.approx(want, rel=1e-8, abs=1e-10)  # quad vs formula


SCIPY = {
    "gauss": lambda s: stats.norm(scale=s.sigma),
    "laplace": lambda s: stats.laplace(scale=s.scale),
    "t5.5": lambda s: stats.t(s.df, scale=s.scale),
    "t4": lambda s: stats.t(s.df, scale=s.scale),
    "t2.5": lambda s: stats.t(s.df, scale=s.scale),
    "t1.5": lambda s: stats.t(s.df, scale=s.scale),
    "t40": lambda s: stats.t(s.df, scale=s.scale),
    "gg0.6": lambda s: stats.gennorm(s.shape, scale=s.scale),
    "gg3": lambda s: stats.gennorm(s.shape, scale=s.scale),
}


@pytest.mark.parametrize("name", sorted(SCIPY))
def test_agrees_with_scipy_stats(name):
    src = SOURCES[name]
    ref = SCIPY[name](src)
    c = scale_of(src)
    x = np.array([-20.0, -2.0, -0.3, 0.0, 0.9, 3.0, 15.0]) * c
    np.testing.assert_allclose(src.pdf(x), ref.pdf(x), rtol=1e-12)
    np.testing.assert_allclose(src.cdf(x), ref.cdf(x), rtol=1e-12)
    np.testing.assert_allclose(src.ppf(QS), ref.ppf(QS), rtol=1e-9)
    assert src.entropy_bits() == pytest.approx(ref.entropy() / LN2, rel=1e-12)
    if src._finite_variance():
        assert src.variance() == pytest.approx(ref.var(), rel=1e-12)


@pytest.mark.parametrize("name", ["pl4.5", "pl3", "pl1.5"])
def test_power_law_is_a_mirrored_lomax(name):
    # |X| ~ Lomax(a, scale=s); the symmetric law splits each Lomax value in two halves
    src = SOURCES[name]
    lomax = stats.lomax(src.tail_index, scale=src.scale)
    x = np.array([0.0, 0.1, 1.0, 7.0, 300.0])
    np.testing.assert_allclose(src.pdf(x), lomax.pdf(x) / 2, rtol=1e-13)
    np.testing.assert_allclose(src.pdf(-x), lomax.pdf(x) / 2, rtol=1e-13)
    np.testing.assert_allclose(src.cdf(-x), lomax.sf(x) / 2, rtol=1e-13)
    # mirrored halves with disjoint supports: h = h(Lomax) + 1 bit
    assert src.entropy_bits() == pytest.approx(lomax.entropy() / LN2 + 1.0, rel=1e-12)
    # P(|X| > x) ~ (x/s)^-a: the defining tail property
    big = 1e8 * src.scale
    tail = 2 * float(src.cdf(-big))
    assert tail == pytest.approx((big / src.scale) ** -src.tail_index, rel=1e-6)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_generalized_gaussian_special_cases(scale):
    pairs = [
        (GeneralizedGaussian(2.0, scale), Gaussian(scale / math.sqrt(2))),
        (GeneralizedGaussian(1.0, scale), Laplace(scale)),
    ]
    x = np.array([-5.0, -1.0, -0.1, 0.0, 0.3, 2.0, 6.0]) * scale
    for gg, ref in pairs:
        np.testing.assert_allclose(gg.pdf(x), ref.pdf(x), rtol=1e-13)
        np.testing.assert_allclose(gg.cdf(x), ref.cdf(x), rtol=1e-13)
        np.testing.assert_allclose(gg.ppf(QS), ref.ppf(QS), rtol=1e-11)
        assert gg.variance() == pytest.approx(ref.variance(), rel=1e-14)
        assert gg.entropy_bits() == pytest.approx(ref.entropy_bits(), rel=1e-13)
        for k in range(5):
            a = np.array([-np.inf, -1.0, 0.2, 3.0]) * scale
            b = np.array([np.inf, 0.5, 0.9, np.inf]) * scale
            np.testing.assert_allclose(
                gg.partial_moment(k, a, b), ref.partial_moment(k, a, b), rtol=1e-13
            )


def test_student_t_tends_to_gaussian():
    # not a closed form, a limit: at df = 1e6 the laws agree to O(1/df)
    t, g = StudentT(1e6, 1.3), Gaussian(1.3)
    assert t.entropy_bits() == pytest.approx(g.entropy_bits(), abs=1e-5)
    assert t.variance() == pytest.approx(g.variance(), rel=1e-5)


def test_empirical_matches_scipy_gaussian_kde_and_silverman():
    data = SOURCES["emp"]
    src = Empirical(np.asarray(data.samples))
    m = np.asarray(src.samples)
    sd = np.std(m, ddof=1)
    iqr = np.percentile(m, 75) - np.percentile(m, 25)
    assert src.bandwidth == pytest.approx(0.9 * min(sd, iqr / 1.34) * m.size**-0.2, rel=1e-14)
    kde = stats.gaussian_kde(m, bw_method=src.bandwidth / sd)  # kernel sd = factor * sd
    x = np.linspace(m[0] - 1, m[-1] + 1, 23)
    np.testing.assert_allclose(src.pdf(x), kde(x), rtol=1e-12)
    np.testing.assert_allclose(
        src.cdf(x), [kde.integrate_box_1d(-np.inf, v) for v in x], rtol=1e-10, atol=1e-15
    )
    assert src.mean() == pytest.approx(float(np.mean(m)), rel=1e-14)
    assert src.variance() == pytest.approx(np.var(m) + src.bandwidth**2, rel=1e-14)


def test_empirical_symmetrize_and_from_array():
    import jax.numpy as jnp

    data = SOURCES["emp"].samples
    sym = Empirical.from_array(jnp.asarray(data), symmetrize=True)
    assert sym.symmetric and not SOURCES["emp"].symmetric
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(sym.pdf(x), sym.pdf(-x), rtol=1e-13)
    assert sym.mean() == 0.0
    assert float(sym.partial_moment(1, -INF, INF)) == pytest.approx(0.0, abs=1e-13)
    assert sym.samples.size == 2 * data.size
    e2 = Empirical.from_array(np.asarray(data).reshape(20, 10), bandwidth=0.25)
    assert e2.bandwidth == 0.25 and e2.samples.shape == (200,)
    assert not e2.samples.flags.writeable
    assert e2.params() == {"n_samples": 200, "bandwidth": 0.25, "symmetrize": False}


def test_names_and_params():
    assert StudentT(3.0).name == "student-t"
    assert GeneralizedGaussian(1.5).name == "gen-gaussian"
    assert PowerLaw(2.0).name == "power-law"
    assert Empirical(np.array([0.0, 1.0])).name == "empirical"
    assert PowerLaw(3.0, 0.5).params() == {"tail_index": 3.0, "scale": 0.5}
