"""Bad inputs raise ValueError/TypeError naming the argument; the SOURCES registry."""

import math
import re

import numpy as np
import pytest
from sources_testlib import SOURCES, moment_exists

from ratedist.quantizers import design
from ratedist.sources import (
    SOURCES as REGISTRY,
)
from ratedist.sources import (
    Empirical,
    Gaussian,
    GeneralizedGaussian,
    Laplace,
    PowerLaw,
    StudentT,
    make_source,
)

BAD_POSITIVE = [0.0, -1.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD_POSITIVE)
def test_bad_parameters_raise_naming_them(bad):
    with pytest.raises(ValueError, match="df"):
        StudentT(bad)
    with pytest.raises(ValueError, match="scale"):
        StudentT(3.0, bad)
    with pytest.raises(ValueError, match="shape"):
        GeneralizedGaussian(bad)
    with pytest.raises(ValueError, match="scale"):
        GeneralizedGaussian(1.5, bad)
    with pytest.raises(ValueError, match="tail_index"):
        PowerLaw(bad)
    with pytest.raises(ValueError, match="scale"):
        PowerLaw(3.0, bad)
    with pytest.raises(ValueError, match="bandwidth"):
        Empirical(np.array([0.0, 1.0, 2.0]), bandwidth=bad)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="df"):
        StudentT("3")
    with pytest.raises(TypeError, match="shape"):
        GeneralizedGaussian(None)
    with pytest.raises(TypeError, match="tail_index"):
        PowerLaw(True)
    with pytest.raises(TypeError, match="samples"):
        Empirical(["a", "b"])
    with pytest.raises(TypeError, match="symmetrize"):
        Empirical(np.array([0.0, 1.0]), symmetrize="yes")


@pytest.mark.parametrize(
    ("make", "param", "value", "allowed"),
    [
        # once OverflowError from sigma**2
        (lambda v: Gaussian(sigma=v), "sigma", 1e300, "[1e-75, 1e+75]"),
        (lambda v: Gaussian(sigma=v), "sigma", 1e-300, "[1e-75, 1e+75]"),
        (lambda v: Laplace(scale=v), "scale", 1e76, "[1e-75, 1e+75]"),
        (lambda v: StudentT(2.0, scale=v), "scale", 1e-80, "[1e-75, 1e+75]"),
        (lambda v: StudentT(v), "df", 0.1, "[0.3, 1e+06]"),
        (lambda v: StudentT(v), "df", 1e7, "[0.3, 1e+06]"),
        (lambda v: GeneralizedGaussian(v), "shape", 0.1, "[0.2, 50]"),
        (lambda v: GeneralizedGaussian(v), "shape", 60.0, "[0.2, 50]"),
        (lambda v: PowerLaw(v), "tail_index", 0.2, "[0.3, 40]"),
        (lambda v: PowerLaw(v), "tail_index", 41.0, "[0.3, 40]"),
    ],
)
def test_parameters_outside_their_range_raise_naming_value_and_range(make, param, value, allowed):
    with pytest.raises(ValueError) as exc:
        make(value)
    msg = str(exc.value)
    assert msg.startswith(f"{param} must lie in {allowed}, got {value!r}")


def test_range_ends_are_accepted_and_documented():
    def norm(text):  # 1e+06 and 1e6 are the same number in a docstring
        return re.sub(r"e\+?0*(\d)", r"e\1", text)

    for cls in (Gaussian, Laplace, StudentT, GeneralizedGaussian, PowerLaw):
        for param, rng in cls.PARAM_RANGES.items():
            assert norm(f"``[{rng.lo:g}, {rng.hi:g}]``") in norm(cls.__doc__), (cls, param)
            for end in (rng.lo, rng.hi):
                other = {p: r.lo for p, r in cls.PARAM_RANGES.items() if p != param}
                src = cls(**{param: end, **other})
                assert math.isfinite(src.entropy_bits()) and math.isfinite(float(src.cdf(1.0)))


@pytest.mark.parametrize(
    ("src", "param", "allowed"),
    [(StudentT(2.0001), "df", "[3, 1e+06]"), (PowerLaw(2.5), "tail_index", "[3, 40]")],
)
def test_design_ranges_reject_tails_too_heavy_for_the_designs(src, param, allowed):
    # Student-t(2.0001) once ended in "levels must be strictly increasing, got
    # array([-9.48e+153 ..." (its p^(1/3) compander law has (df - 2)/3 degrees of freedom)
    for method in ("lloyd-max", "companded", "uniform", "variance-optimal", "ecsq"):
        with pytest.raises(
            ValueError, match=re.escape(f"{param} must lie in {allowed} for quantizer")
        ):
            design(method, src, levels=4)
    StudentT(3.0).check_designable()  # the end of the range is fine


@pytest.mark.parametrize("df", [0.5, 1.0, 2.0])
def test_variance_needs_df_above_2(df):
    with pytest.raises(ValueError, match="df must be > 2 for a finite variance"):
        StudentT(df).variance()


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_power_law_variance_needs_tail_index_above_2(a):
    with pytest.raises(ValueError, match="tail_index must be > 2"):
        PowerLaw(a).variance()


@pytest.mark.parametrize("src", [StudentT(1.0), PowerLaw(0.8)])
def test_undefined_mean_raises(src):
    with pytest.raises(ValueError, match="mean"):
        src.mean()


@pytest.mark.parametrize(
    "samples, match",
    [
        (np.array([1.0, np.nan, 2.0]), "samples"),
        (np.array([1.0, np.inf]), "samples"),
        (np.array([1.0]), "samples"),
        (np.array([]), "samples"),
        (np.full(10, 0.3), "samples must contain at least 2 distinct"),
    ],
)
def test_empirical_bad_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        Empirical(samples)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_method_arguments_validated(name):
    src = SOURCES[name]
    with pytest.raises(ValueError, match="k"):
        src.partial_moment(-1, 0.0, 1.0)
    with pytest.raises(TypeError, match="k"):
        src.partial_moment(1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="a and b"):
        src.partial_moment(1, math.nan, 1.0)
    for q in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="q"):
            src.ppf(q)


@pytest.mark.parametrize(
    "src, k", [(StudentT(3.0), 3), (StudentT(1.0), 1), (PowerLaw(2.0), 2), (PowerLaw(1.2), 4)]
)
def test_infinite_moment_with_infinite_end_raises(src, k):
    for a, b in [(0.0, math.inf), (-math.inf, 0.0), (-math.inf, math.inf), (math.inf, 1.0)]:
        with pytest.raises(ValueError, match=f"k={k}"):
            src.partial_moment(k, a, b)
    # an empty interval at infinity is fine (its moment is 0)
    assert float(src.partial_moment(k, math.inf, math.inf)) == 0.0


def test_registry_names_and_constructors():
    assert REGISTRY.names() == ["gaussian", "gen-gaussian", "laplace", "power-law", "student-t"]
    assert make_source("gaussian") == Gaussian(1.0)
    assert make_source("gaussian", scale=2.0) == Gaussian(2.0)  # scale means sigma
    assert make_source("laplace", scale=0.5) == Laplace(0.5)
    assert make_source("student-t", df=4.0) == StudentT(4.0, 1.0)
    assert make_source("student-t", df=4.0, scale=3.0) == StudentT(4.0, 3.0)
    assert make_source("gen-gaussian", shape=0.7, scale=2.0) == GeneralizedGaussian(0.7, 2.0)
    assert make_source("power-law", shape=3.5) == PowerLaw(3.5, 1.0)  # shape = tail index


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="known: gaussian, gen-gaussian, laplace"):
        make_source("cauchy")
    with pytest.raises(ValueError, match="df"):
        make_source("student-t")
    with pytest.raises(ValueError, match="shape"):
        make_source("gen-gaussian")
    with pytest.raises(ValueError, match="shape"):
        make_source("power-law", df=3.0)
    with pytest.raises(ValueError, match="df"):
        make_source("gaussian", df=3.0)
    with pytest.raises(ValueError, match="scale"):
        make_source("laplace", scale=-1.0)
    with pytest.raises(ValueError, match="df"):
        make_source("student-t", df=0.0)
    with pytest.raises(TypeError, match="name"):
        make_source(3)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_extreme_arguments_give_finite_results_without_warnings(name):
    # pyproject turns RuntimeWarnings from ratedist into errors, so overflow in z^2 or
    # (x/scale)^shape would fail here
    src = SOURCES[name]
    x = np.array([-1e300, -1e200, -1.0, 0.0, 1e-300, 1.0, 1e200, 1e300])
    assert np.all(np.isfinite(src.pdf(x))) and np.all(src.pdf(x) >= 0)
    cdf = src.cdf(np.concatenate([[-np.inf], x, [np.inf]]))
    assert np.all(np.diff(cdf) >= 0) and cdf[0] == 0.0 and cdf[-1] == 1.0
    k = 2 if moment_exists(src, 2) else 1
    m = src.partial_moment(k, x[:-1], x[1:])
    assert np.all(np.isfinite(m))
    if k == 2:
        assert np.all(m >= 0)
