"""Designed scalar quantizers as RD points: agreement with quantizers.evaluate and the classic
facts of Gaussian quantization (SPEC §2)."""

import math

import pytest

from ratedist.quantizers import DESIGNS, ScalarQuantizer
from ratedist.quantizers.evaluate import evaluate
from ratedist.rd import design_point
from ratedist.sources import Gaussian

BIG_D = 10**12  # side information float_bits/d becomes negligible (3.2e-11 bits)


def _quantizer(method, n):
    sol = DESIGNS.get(method)(Gaussian(1.0), n)
    return sol.value if isinstance(sol.value, ScalarQuantizer) else sol.value.quantizer


@pytest.mark.parametrize(
    ("method", "n"), [("lloyd-max", 8), ("uniform", 16), ("variance-optimal", 4)]
)
def test_design_point_matches_quantizers_evaluate(method, n):
    p = design_point(method, n, BIG_D)
    ev = evaluate(_quantizer(method, n), Gaussian(1.0), rounding=DESIGNS.facts(method)["rounding"])
    # Both are sums of the same exact partial moments: identical to rounding.
    assert p.distortion == pytest.approx(ev.mse, rel=1e-12)
    assert p.entropy_rate_bits == pytest.approx(ev.entropy_bits, abs=1e-9)
    assert p.rate_bits == pytest.approx(math.log2(n), abs=1e-9)
    assert p.params["method"] == method and p.params["n_levels"] == n


def test_classic_gaussian_quantization_facts():
    # 1-bit Lloyd–Max MSE = 1 - 2/pi (= the scaled-sign limit).
    assert design_point("lloyd-max", 2, BIG_D).distortion == pytest.approx(
        1 - 2 / math.pi, abs=1e-10
    )
    # Fixed-rate high-rate constant (Panter–Dite) sqrt(3) pi / 2 and -6.02 dB per bit.
    d7, d8 = (design_point("lloyd-max", 2**b, BIG_D).distortion for b in (7, 8))
    assert d8 * 2.0**16 == pytest.approx(math.sqrt(3) * math.pi / 2, rel=1e-2)  # O(2^-2b) terms
    assert 10 * math.log10(d7 / d8) == pytest.approx(20 * math.log10(2), abs=0.05)
    # ECSQ high-rate gap (1/2) log2(pi e / 6) bit = 1.53 dB at the entropy rate.
    p = design_point("ecsq", 2**10 + 1, BIG_D, entropy_bits=6.0)
    gap_db = 10 * math.log10(p.distortion / 2 ** (-2 * p.entropy_rate_bits))
    assert gap_db == pytest.approx(10 * math.log10(math.pi * math.e / 6), abs=0.01)


def test_design_point_monte_carlo(key):
    p = design_point("lloyd-max", 8, 1000, trials=64, key=key)
    # RMS normalization: O(1/d) bias on top of the Monte Carlo error (as for "scalar").
    assert abs(p.distortion_mc - p.distortion) <= 5 * p.distortion_mc_se + 5 * p.distortion / 1000
    assert p.rate_bits_mc == pytest.approx(3 + 32 / 1000, abs=1e-12)


def test_design_point_bad_inputs():
    with pytest.raises(ValueError, match="design method"):
        design_point("no-such", 4, 100)
    with pytest.raises(ValueError, match="n_levels"):
        design_point("lloyd-max", 1, 100)
    with pytest.raises(ValueError, match="d"):
        design_point("lloyd-max", 4, 0)


def test_design_point_closed_form_only_needs_no_key():
    p = design_point("uniform", 4, 100, key=None)
    assert p.distortion_mc is None and p.trials == 0 and p.distortion > 0
