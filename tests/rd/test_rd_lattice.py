"""(R, D) of entropy-coded lattice quantizers: high-rate closed forms and Monte Carlo."""

import math

import jax
import numpy as np
import pytest
from scipy.stats import norm

from ratedist.quantizers.lattice import get_lattice
from ratedist.rd.lattice import (
    GAUSSIAN_ENTROPY_BITS,
    lattice_gap_bits,
    lattice_gap_db,
    lattice_high_rate_point,
    lattice_rd_monte_carlo,
    step_for_rate,
)
from ratedist.rd.shannon import gap_to_shannon, gaussian_distortion

# SPLAG Table 2.3 (printed decimals), typed independently of the library.
G_TABLE = {"zn": 1 / 12, "a2": 0.0801875, "d4": 0.0766032, "e8": 0.0716821}
# Granular gains over Z in dB (Forney & Wei 1989; SPLAG ch. 2): A2 0.17, D4 0.37, E8 0.65.
GAIN_DB = {"a2": 0.17, "d4": 0.37, "e8": 0.65}


def test_gap_of_z_is_the_ecsq_constant():
    # SPEC classic fact: ECSQ high-rate gap = (1/2) log2(pi e / 6) bit = 1.53 dB.
    assert lattice_gap_bits(1 / 12) == pytest.approx(0.5 * math.log2(math.pi * math.e / 6), 1e-14)
    assert lattice_gap_db(1 / 12) == pytest.approx(1.5329, abs=5e-5)
    # A sphere (G = 1/(2 pi e)) would close the gap.
    assert lattice_gap_db(1 / (2 * math.pi * math.e)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["a2", "d4", "e8"])
def test_granular_gains_over_z(name):
    gain = lattice_gap_db(1 / 12) - lattice_gap_db(G_TABLE[name])
    assert gain == pytest.approx(GAIN_DB[name], abs=0.006)  # gains are printed to 2 decimals


def test_e8_gap_value():
    # 10 log10(2 pi e * 0.0716821) = 0.8789 dB (E8 is 0.65 dB better than Z's 1.53 dB).
    assert lattice_gap_db(G_TABLE["e8"]) == pytest.approx(0.8789, abs=5e-4)
    assert lattice_gap_db(G_TABLE["e8"]) < lattice_gap_db(G_TABLE["zn"])


@pytest.mark.parametrize("name", ["zn", "a2", "d4", "e8"])
@pytest.mark.parametrize("step", [0.05, 0.3])
def test_high_rate_point_gap_and_slope(name, step):
    r, mse = lattice_high_rate_point(name, step, sigma=2.0)
    assert mse == pytest.approx(G_TABLE[name] * step**2 * 4.0, rel=1e-6)  # table: 7 digits
    assert r == pytest.approx(0.5 * math.log2(2 * math.pi * math.e) - math.log2(step), 1e-14)
    # Gap to the Gaussian D(R) is the rate-independent 10 log10(2 pi e G) (identity, 1e-12).
    gap_db, gap_bits = gap_to_shannon(r, mse / 4.0, variance=1.0)
    g = get_lattice("z1" if name == "zn" else name).nsm_reference
    assert float(gap_db) == pytest.approx(lattice_gap_db(g), abs=1e-12)
    assert float(gap_bits) == pytest.approx(lattice_gap_bits(g), abs=1e-12)
    # -6.02 dB per bit: halving the step adds one bit and divides D by 4.
    r2, mse2 = lattice_high_rate_point(name, step / 2, sigma=2.0)
    assert r2 - r == pytest.approx(1.0, abs=1e-14)
    assert 10 * math.log10(mse2 / mse) == pytest.approx(-6.0206, abs=1e-4)
    assert step_for_rate(r) == pytest.approx(step, rel=1e-13)


def test_high_rate_point_with_lattice_object_and_nsm_override():
    r, mse = lattice_high_rate_point(get_lattice("d4"), 0.5, nsm=0.08)
    assert mse == pytest.approx(0.08 * 0.25, rel=1e-15)
    assert r == pytest.approx(GAUSSIAN_ENTROPY_BITS + 1.0, rel=1e-15)
    with pytest.raises(ValueError, match="nsm"):
        lattice_high_rate_point(get_lattice("dn", 6), 0.5)


@pytest.mark.parametrize(("name", "seed"), [("zn", 1), ("a2", 2), ("d4", 3), ("e8", 4)])
def test_monte_carlo_distortion_dithered_any_step(name, seed):
    # Subtractive dither: D = G step^2 exactly, here at a coarse step (low rate).
    step = 1.5
    p = lattice_rd_monte_carlo(
        name, step, key=jax.random.key(seed), d=512, n_trials=64, dither=True
    )
    assert abs(p.distortion - G_TABLE[name] * step**2) < 5 * p.distortion_se


@pytest.mark.parametrize(("name", "seed"), [("zn", 5), ("a2", 6), ("d4", 7), ("e8", 8)])
def test_monte_carlo_distortion_small_step(name, seed):
    # No dither at small step: D = G step^2 up to O(exp(-2 pi^2 / step^2)) terms.
    step = 0.25
    p = lattice_rd_monte_carlo(name, step, key=jax.random.key(seed), d=512, n_trials=64)
    assert abs(p.distortion - G_TABLE[name] * step**2) < 5 * p.distortion_se
    assert p.container_rate_bits > p.rate_bits > 0


def test_monte_carlo_rate_of_z_matches_exact_entropy():
    # Entropy of a uniformly quantized N(0,1) (independent numerics: sum over cells with scipy)
    # plus float_bits/d of side information. Tolerance 0.01 bit: the per-call plug-in entropy
    # is biased low by about (alphabet - 1) / (2 d ln 2) ~ 0.003 bit at d = 8192, step 0.5.
    step, d = 0.5, 8192
    k = np.arange(-80, 81)
    probs = norm.cdf((k + 0.5) * step) - norm.cdf((k - 0.5) * step)
    probs = probs[probs > 0]
    exact = float(-np.sum(probs * np.log2(probs))) + 32 / d
    p = lattice_rd_monte_carlo("zn", step, key=jax.random.key(9), d=d, n_trials=16)
    assert abs(p.rate_bits - exact) < 0.01
    # High-rate value is below the exact entropy at this step (correction ~ 0.015 bit).
    assert p.rate_bits > lattice_high_rate_point("zn", step)[0]


def test_monte_carlo_gap_is_consistent_with_shannon():
    p = lattice_rd_monte_carlo("e8", 0.5, key=jax.random.key(10), d=2048, n_trials=16)
    d_sh = float(gaussian_distortion(p.rate_bits))
    assert p.gap_db == pytest.approx(10 * math.log10(p.distortion / d_sh), abs=1e-12)
    assert p.gap_db > 0  # no quantizer beats Shannon


def test_bad_inputs():
    with pytest.raises(ValueError, match="nsm"):
        lattice_gap_db(0.0)
    with pytest.raises(ValueError, match="nsm"):
        lattice_gap_bits(-1.0)
    with pytest.raises(TypeError, match="nsm"):
        lattice_gap_db("e8")
    with pytest.raises(ValueError, match="step"):
        lattice_high_rate_point("e8", 0.0)
    with pytest.raises(ValueError, match="sigma"):
        lattice_high_rate_point("e8", 0.5, sigma=-1.0)
    with pytest.raises(ValueError, match="lattice"):
        lattice_high_rate_point("e7", 0.5)
    with pytest.raises(ValueError, match="rate_bits"):
        step_for_rate(0.0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="lattice"):
        lattice_rd_monte_carlo("hex", 0.5, key=key)
    with pytest.raises(ValueError, match="step"):
        lattice_rd_monte_carlo("e8", -0.5, key=key)
    with pytest.raises(ValueError, match="d must be"):
        lattice_rd_monte_carlo("e8", 0.5, key=key, d=0)
    with pytest.raises(ValueError, match="n_trials"):
        lattice_rd_monte_carlo("e8", 0.5, key=key, n_trials=1)
    with pytest.raises(ValueError, match="sigma"):
        lattice_rd_monte_carlo("e8", 0.5, key=key, sigma=0.0)
