"""PdfSource.from_pdf: any density as a function designs like the closed-form sources.

References are independent of the numerics under test: the closed-form sources (Gaussian),
exact laws (uniform: levels (2j + 1)/2n; triangular 2x on [0, 1]: cdf x^2 and a Lloyd
iteration with its closed-form centroids 2 (b^3 - a^3) / (3 (b^2 - a^2))), and KS tests of
the samples against exact cdfs.
"""

import math
import warnings

import jax
import numpy as np
import pytest
from scipy import stats

import ratedist
from ratedist.quantizers import design, evaluate
from ratedist.sources import Gaussian, PdfSource


def _phi(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _triangle(x):
    return 2.0 * x


def test_gaussian_pdf_reproduces_the_gaussian_design():
    src = PdfSource.from_pdf(_phi)
    got = design("lloyd-max", src, bits=3)
    ref = design("lloyd-max", Gaussian(), bits=3)
    assert got.converged
    np.testing.assert_allclose(got.value.levels, ref.value.levels, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.value.thresholds, ref.value.thresholds, rtol=0, atol=1e-9)
    mse = evaluate(got.value, src, rounding="deterministic").mse
    assert mse == pytest.approx(
        evaluate(ref.value, Gaussian(), rounding="deterministic").mse, rel=1e-9
    )
    assert src.variance() == pytest.approx(1.0, abs=1e-12) and abs(src.mean()) < 1e-12
    assert src.entropy_bits() == pytest.approx(Gaussian().entropy_bits(), abs=1e-10)
    x = np.array([-7.0, -1.3, 0.0, 0.4, 2.5])
    np.testing.assert_allclose(src.cdf(x), stats.norm.cdf(x), rtol=1e-12, atol=1e-15)
    q = np.array([1e-9, 0.01, 0.5, 0.8, 0.999])
    np.testing.assert_allclose(src.ppf(q), stats.norm.ppf(q), rtol=1e-11, atol=1e-13)


def test_uniform_levels_are_exact():
    src = PdfSource.from_pdf(lambda x: np.ones_like(x), support=(0.0, 1.0))
    q = design("lloyd-max", src, bits=3).value
    np.testing.assert_allclose(q.levels, (2 * np.arange(8) + 1) / 16, rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.thresholds, np.arange(1, 8) / 8, rtol=0, atol=1e-12)
    assert src.support() == (0.0, 1.0) and src.variance() == pytest.approx(1 / 12, rel=1e-12)


def _triangle_lloyd(n, sweeps=20_000):
    """Plain Lloyd for p(x) = 2x on [0, 1] with closed-form centroids (the reference)."""
    lv = (np.arange(n) + 0.5) / n
    for _ in range(sweeps):
        e = np.concatenate([[0.0], 0.5 * (lv[:-1] + lv[1:]), [1.0]])
        new = 2 * (e[1:] ** 3 - e[:-1] ** 3) / (3 * (e[1:] ** 2 - e[:-1] ** 2))
        if np.max(np.abs(new - lv)) < 1e-16:
            break
        lv = new
    return new


def test_triangular_law_on_a_bounded_support():
    src = PdfSource.from_pdf(_triangle, support=(0, 1))
    x = np.array([-1.0, 0.0, 0.1, 0.5, 0.9, 1.0, 2.0])
    np.testing.assert_allclose(src.cdf(x), np.clip(x, 0, 1) ** 2, rtol=1e-13, atol=1e-15)
    q = np.array([0.0, 1e-6, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(src.ppf(q), np.sqrt(q), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(src.pdf(x), np.where((x >= 0) & (x <= 1), 2 * x, 0.0))
    sol = design("lloyd-max", src, bits=2)
    assert sol.converged
    np.testing.assert_allclose(sol.value.levels, _triangle_lloyd(4), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("pdf", "support", "cdf"),
    [
        (_triangle, (0, 1), lambda x: np.clip(x, 0, 1) ** 2),
        (_phi, (-np.inf, np.inf), stats.norm.cdf),
    ],
    ids=["triangle", "gaussian"],
)
def test_samples_follow_the_cdf(pdf, support, cdf):
    src = PdfSource.from_pdf(pdf, support=support)
    x = np.asarray(src.sample(jax.random.key(20240517), (4000,)))
    assert x.shape == (4000,) and np.all(np.isfinite(x))
    assert stats.kstest(x, cdf).pvalue > 0.01


def test_one_line_design_from_the_package_root():
    sol = ratedist.design(
        "lloyd-max", ratedist.PdfSource.from_pdf(_triangle, support=(0, 1)), bits=3
    )
    assert sol.converged and sol.value.levels.size == 8


def test_scalar_only_pdf_and_user_cdf():
    laplace = PdfSource.from_pdf(lambda x: math.exp(-abs(x)) / 2)  # math.exp: scalars only
    assert laplace.variance() == pytest.approx(2.0, rel=1e-12)
    with_cdf = PdfSource.from_pdf(_phi, cdf=stats.norm.cdf)
    assert with_cdf.cdf(1.0) == stats.norm.cdf(1.0)


def test_unnormalised_pdf_warns_and_is_normalised():
    with pytest.warns(UserWarning, match=r"integrates to 2\.50662827"):
        src = PdfSource.from_pdf(lambda x: np.exp(-0.5 * x * x))
    assert src.pdf(0.0) == pytest.approx(_phi(0.0), rel=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PdfSource.from_pdf(_phi)  # normalised: no warning


def test_location_far_from_zero_on_an_infinite_support():
    src = PdfSource.from_pdf(lambda x: _phi(x - 100.0))
    assert src.mean() == pytest.approx(100.0, rel=1e-12)
    assert src.variance() == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((3.0,), {}, TypeError, "pdf must be callable"),
        ((_phi,), {"support": (1.0, 0.0)}, ValueError, "lo < hi"),
        ((_phi,), {"support": (0.0, 0.0)}, ValueError, "lo < hi"),
        ((_phi,), {"support": (math.inf, math.inf)}, ValueError, "lo < hi"),
        ((_phi,), {"support": (math.nan, 1.0)}, ValueError, r"support\[0\] must not be NaN"),
        ((_phi,), {"support": (0.0,)}, TypeError, r"support must be a pair \(lo, hi\)"),
        ((_phi,), {"support": ("a", 1.0)}, TypeError, r"support\[0\] must be a real number"),
        (
            (lambda x: x,),
            {"support": (-1.0, 1.0)},
            ValueError,
            "pdf must be finite and non-negative",
        ),
        ((lambda x: x * np.nan,), {"support": (0.0, 1.0)}, ValueError, "pdf must be finite"),
        ((lambda x: 0 * x,), {"support": (0.0, 1.0)}, ValueError, "positive finite"),
        ((_phi,), {"cdf": 1.0}, TypeError, "cdf must be callable"),
        ((_phi,), {"cdf": lambda x: 0.5}, ValueError, "cdf does not match the integral of pdf"),
    ],
)
def test_bad_arguments_name_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        PdfSource.from_pdf(*args, **kwargs)


def test_designs_reject_infinite_variance_and_bare_functions():
    cauchy = PdfSource.from_pdf(lambda x: 1 / (math.pi * (1 + x * x)))
    with pytest.raises(ValueError, match="finite variance"):
        design("lloyd-max", cauchy, bits=2)
    with pytest.raises(TypeError, match=r"PdfSource\.from_pdf"):
        design("lloyd-max", _phi, bits=2)


def test_half_line_support_asymmetric_law():
    """Gamma(2) on [0, inf): moments, quantiles, far cells and a design (asymmetric)."""
    src = PdfSource.from_pdf(lambda x: x * np.exp(-x), support=(0.0, math.inf))
    assert src.mean() == pytest.approx(2.0, rel=1e-12)
    assert src.variance() == pytest.approx(2.0, rel=1e-12)
    q = np.array([1e-9, 0.1, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(src.ppf(q), stats.gamma.ppf(q, 2.0), rtol=1e-11)
    assert src.ppf(0.0) == 0.0 and src.ppf(1.0) == math.inf
    assert float(src.partial_moment(2, 1e200, 1e300)) == 0.0  # no overflow in x^2
    assert float(src.partial_moment(0, 0.0, 1.0)) == pytest.approx(
        stats.gamma.cdf(1.0, 2.0), rel=1e-12
    )
    sol = design("lloyd-max", src, bits=2)
    assert sol.converged and sol.value.levels[0] > 0
