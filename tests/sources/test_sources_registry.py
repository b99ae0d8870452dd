"""The sources registry is the one place a source is enrolled: a class registered here (and
nowhere else) is usable by ``ratedist levels`` and by the generic source-test helpers."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import jax
import numpy as np
import pytest
from scipy import special
from sources_testlib import (
    SOURCES as CASES,
)
from sources_testlib import (
    breakpoints,
    moment_exists,
    ref_integral,
    ref_pdf,
    registry_sources,
    scale_of,
)

from ratedist import cli
from ratedist.sources import SOURCES, AbstractSource, make_source
from ratedist.sources.base import SCALE_RANGE, jax_float
from ratedist.sources.registry import register_source

INF = math.inf


@dataclass(frozen=True)
class Logistic(AbstractSource):
    """Logistic law with density ``e^(-|x|/s) / (s (1 + e^(-|x|/s))^2)`` (variance ``pi^2 s^2/3``).

    Args:
        scale: ``s``, in ``[1e-75, 1e75]``.
    """

    PARAM_RANGES: ClassVar = MappingProxyType({"scale": SCALE_RANGE})

    scale: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    def pdf(self, x: Any) -> np.ndarray:
        e = np.exp(-np.abs(np.asarray(x, np.float64)) / self.scale)
        return e / (self.scale * (1.0 + e) ** 2)

    def cdf(self, x: Any) -> np.ndarray:
        return special.expit(np.asarray(x, np.float64) / self.scale)

    def variance(self) -> float:
        return (math.pi * self.scale) ** 2 / 3.0

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self.scale * jax.random.logistic(key, shape, jax_float(dtype))


@pytest.fixture
def logistic():
    """Register ``logistic`` for one test and remove it afterwards."""
    spec = register_source("logistic", Logistic, examples={"logistic0.7": {"scale": 0.7}})
    try:
        yield spec
    finally:
        SOURCES.remove("logistic")


def test_spec_is_read_from_the_signature(logistic):
    assert logistic.params == ("scale",) and logistic.defaults == {"scale": 1.0}
    assert logistic.required == () and dict(logistic.options) == {"scale": "scale"}
    assert "logistic" in SOURCES.names()
    assert make_source("logistic", scale=2.0) == Logistic(2.0)
    with pytest.raises(ValueError, match="does not take df"):
        make_source("logistic", df=3.0)


def test_registered_source_is_usable_by_the_levels_command(logistic, capsys):
    argv = ["levels", "--source", "logistic", "--scale", "0.5", "--levels", "2"]
    assert cli.main([*argv, "--method", "lloyd-max", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["source"] == "logistic" and res["source_params"] == {"scale": 0.5}
    # Two Lloyd–Max levels of a symmetric law sit at ±E|X| = ±2 ln2 s, MSE = Var - (E|X|)^2;
    # the solver stops at 1e-12 std: 10x that
    m = 2 * math.log(2) * 0.5
    assert res["converged"] and res["levels"] == pytest.approx([-m, m], abs=1e-11)
    assert res["mse"] == pytest.approx((math.pi * 0.5) ** 2 / 3 - m * m, abs=1e-11)
    # the scale flag is range-checked like any other source's
    assert cli.main([*argv, "--scale", "1e-300", "--method", "uniform"]) == 2
    assert "--scale" in capsys.readouterr().err


def test_registered_source_is_picked_up_by_the_generic_helpers(logistic):
    cases = registry_sources()
    assert "logistic0.7" in cases and isinstance(cases["logistic0.7"], Logistic)
    src = cases["logistic0.7"]
    f, pts = ref_pdf(src), breakpoints(src)
    assert moment_exists(src, 4) and scale_of(src) == pytest.approx(0.7 * math.log(3))
    # the generic checks of tests/sources run on it: total mass, cdf, moments, entropy
    assert ref_integral(f, -INF, INF, pts) == pytest.approx(1.0, abs=1e-10)
    for x in (-3.0, 0.2, 1.5):
        assert float(src.cdf(x)) == pytest.approx(ref_integral(f, -INF, x, pts), rel=1e-10)
    assert float(src.partial_moment(2, -INF, INF)) == pytest.approx(src.variance(), rel=1e-10)
    assert float(src.partial_moment(1, 0.3, 2.0)) == pytest.approx(
        ref_integral(lambda x: x * f(x), 0.3, 2.0, pts), rel=1e-10
    )
    assert src.entropy_bits() == pytest.approx((math.log(0.7) + 2) / math.log(2), rel=1e-9)


def test_registry_is_clean_after_the_fixture():
    assert "logistic" not in SOURCES.names() and "logistic0.7" not in registry_sources()


def test_examples_build_and_are_the_generic_cases():
    for name in SOURCES.names():
        spec = SOURCES.get(name)
        assert spec.params == tuple(inspect.signature(spec.cls).parameters)
        for ex_id, params in spec.examples.items():
            assert CASES[ex_id] == spec.build(**params)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"cls": int}, TypeError, "cls"),
        ({"options": {"s": "sigma"}}, ValueError, "not a parameter"),
        ({"examples": {}}, ValueError, "at least one example"),
        ({"examples": {"gauss": {"scale": 1.0}}}, ValueError, "already used"),
        ({"examples": {"x": {"loc": 1.0}}}, ValueError, "unknown parameters"),
    ],
)
def test_register_source_rejects_bad_specs(kwargs, exc, match):
    args = {"cls": Logistic, "examples": {"logistic-bad": {"scale": 1.0}}, **kwargs}
    with pytest.raises(exc, match=match):
        register_source("logistic-bad", **args)
    assert "logistic-bad" not in SOURCES.names()


def test_duplicate_name_and_unknown_removal():
    with pytest.raises(ValueError, match="already registered"):
        register_source("gaussian", Logistic, examples={"lg": {"scale": 1.0}})
    with pytest.raises(ValueError, match="known: gaussian"):
        SOURCES.remove("cauchy")
