"""Shannon D(R), R(D), the Shannon lower bound and the gap helper."""

import math

import numpy as np
import pytest

from ratedist.rd import shannon
from ratedist.sources import Gaussian, Laplace


def test_gaussian_dr_rd_inverse_and_slope():
    r = np.linspace(0.0, 8.0, 17)
    d = shannon.gaussian_distortion(r, 2.0)
    np.testing.assert_allclose(shannon.gaussian_rate(d, 2.0), r, atol=1e-12)
    slope_db = np.diff(10 * np.log10(d)) / np.diff(r)
    np.testing.assert_allclose(slope_db, -20 * math.log10(2), rtol=1e-12)  # -6.0206 dB/bit


def test_slb_is_tight_for_gaussian_and_below_for_laplace():
    r = np.array([0.5, 2.0, 5.0])
    g = Gaussian(1.7)
    np.testing.assert_allclose(
        shannon.shannon_lower_bound_distortion(r, g.entropy_bits()),
        shannon.gaussian_distortion(r, g.variance()),
        rtol=1e-12,
    )
    lap = Laplace(1.0)
    # Entropy-power inequality: a non-Gaussian source has SLB below the Gaussian D(R) at equal variance.
    assert np.all(
        shannon.shannon_lower_bound_distortion(r, lap.entropy_bits())
        < shannon.gaussian_distortion(r, lap.variance())
    )


def test_gap_to_shannon_of_one_bit_lloyd_max():
    gap_db, gap_bits = shannon.gap_to_shannon(1.0, 1 - 2 / math.pi, variance=1.0)
    assert gap_db == pytest.approx(10 * math.log10(4 * (1 - 2 / math.pi)), abs=1e-12)
    assert gap_bits == pytest.approx(1 - 0.5 * math.log2(1 / (1 - 2 / math.pi)), abs=1e-12)


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan])
def test_bad_inputs(bad):
    with pytest.raises(ValueError, match="variance"):
        shannon.gaussian_distortion(1.0, bad)
    with pytest.raises(ValueError, match="distortion"):
        shannon.gaussian_rate(bad if bad == bad else -1.0, 1.0)
