"""Argument checks: every failure names the argument and the allowed values."""

import math

import numpy as np
import pytest

from ratedist import _validation as v
from ratedist._registry import Registry


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_real_rejects_nonfinite(bad):
    with pytest.raises(ValueError, match="scale must be finite"):
        v.check_real("scale", bad)


@pytest.mark.parametrize("bad", ["1.0", None, True, [1.0], np.ones(2)])
def test_check_real_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="scale"):
        v.check_real("scale", bad)


def test_check_positive_and_nonnegative():
    assert v.check_positive("s", np.float32(2.5)) == 2.5
    with pytest.raises(ValueError, match=r"s must be > 0, got -1\.0"):
        v.check_positive("s", -1)
    with pytest.raises(ValueError, match="s must be > 0"):
        v.check_positive("s", 0.0)
    assert v.check_nonnegative("s", 0) == 0.0
    with pytest.raises(ValueError, match="s must be >= 0"):
        v.check_nonnegative("s", -1e-300)


def test_check_int_bounds_and_types():
    assert v.check_int("bits", np.int64(3), min_value=1, max_value=16) == 3
    assert v.check_int("bits", 4.0) == 4
    with pytest.raises(ValueError, match="bits must be >= 1, got 0"):
        v.check_int("bits", 0, min_value=1)
    with pytest.raises(ValueError, match="bits must be <= 16, got 17"):
        v.check_int("bits", 17, max_value=16)
    with pytest.raises(TypeError, match="bits must be an integer"):
        v.check_int("bits", 2.5)
    with pytest.raises(TypeError, match="bits must be an integer"):
        v.check_int("bits", True)


def test_check_interval_open_closed():
    assert v.check_in_interval("p", 1.0, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"p must lie in \(0.0, 1.0\]"):
        v.check_in_interval("p", 0.0, 0.0, 1.0, closed=(False, True))


def test_check_choice_lists_allowed():
    with pytest.raises(ValueError, match=r"method must be one of \['a', 'b'\], got 'c'"):
        v.check_choice("method", "c", ["b", "a"])


def test_check_array_and_increasing():
    np.testing.assert_array_equal(v.check_array("x", [1, 2]), [1.0, 2.0])
    with pytest.raises(ValueError, match="x must contain only finite"):
        v.check_array("x", [1.0, math.nan])
    with pytest.raises(ValueError, match="x must have 1 dimension"):
        v.check_array("x", [[1.0]], ndim=1)
    with pytest.raises(ValueError, match="x must have at least 1"):
        v.check_array("x", [])
    with pytest.raises(ValueError, match="x must be strictly increasing"):
        v.check_increasing("x", [0.0, 0.0, 1.0])
    v.check_increasing("x", [0.0, 0.0, 1.0], strict=False)


def test_registry_lookup_facts_and_errors():
    reg = Registry("widget")

    @reg.register("b", cost=2)
    def make_b():
        return "b"

    reg.add("a", lambda: "a")
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    assert reg.get("b")() == "b" and reg.facts("b")["cost"] == 2
    with pytest.raises(ValueError, match=r"unknown widget 'c'; known: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", None)
    with pytest.raises(TypeError):
        reg.facts("b")["cost"] = 3  # facts are read-only
