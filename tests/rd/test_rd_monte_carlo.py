"""Closed forms against Monte Carlo of the actual JAX compressors, and the RDPoint API.

Generic over the registry: every compressor with a registered closed form is run with
``rd_point`` (vmap over trials, fixed seed) at the first spec of its RD sweep (``rd_sweep``
fact), and the closed form must lie within 5 standard errors of the Monte Carlo mean
(:func:`check_closed_form_vs_monte_carlo`). ``slow``: the same over every default parameter
set of ``ratedist rd --all``. A compressor registered later is enrolled the same way.
"""

import math

import jax
import numpy as np
import pytest

from ratedist.compressors import COMPRESSORS, make
from ratedist.quantizers import ScalarQuantizer
from ratedist.rd import (
    CLOSED_FORMS,
    DEFAULT_PARAMS,
    closed_form,
    closed_form_point,
    default_specs,
    monte_carlo_point,
    rd_point,
)
from ratedist.rd.closed_forms import scaled_sign_distortion

D = 1000
TRIALS = 64
K_SE = 5.0  # Monte Carlo tolerance in standard errors (fixed seed)

Q4 = ScalarQuantizer.from_levels([-1.5, -0.5, 0.5, 1.5])


def closed_form_specs(which: str = "first") -> list[str]:
    """Default specs (``ratedist rd --all``) of every compressor with a closed form."""
    specs = default_specs()
    names = [n for n in CLOSED_FORMS.names() if n in specs]
    return [s for n in names for s in (specs[n][:1] if which == "first" else specs[n])]


def _check_point(p):
    assert p.distortion is not None
    # Exact closed forms: 5 SE. Large-d approximations (RMS normalization, high-rate
    # lattices) carry an O(1/d) relative bias on top.
    slack = 0.0 if p.exact else 5 * p.distortion / p.d
    assert abs(p.distortion_mc - p.distortion) <= K_SE * p.distortion_mc_se + 1e-12 + slack, p
    # Shannon and the gap are consistent with the rate and distortion.
    assert p.shannon_distortion == pytest.approx(2.0 ** (-2 * p.rate_bits), rel=1e-12)
    if p.distortion > 0:
        assert p.gap_db == pytest.approx(
            10 * math.log10(p.distortion / p.shannon_distortion), rel=1e-12
        )
        assert p.gap_db > 0 and p.gap_bits > 0  # nothing beats Shannon


def check_closed_form_vs_monte_carlo(spec, key, *, d=D, trials=TRIALS):
    """Closed form of ``spec`` against Monte Carlo of the JAX compressor (5 SE), rates too.

    What is compared follows from the closed form itself and its registry facts: no
    container rate (lattices: data-dependent label ranges) -> not compared; a random
    container size (threshold) -> 5 SE, a fixed one -> exact; the entropy rate -> 5 SE of the
    expected plug-in length, or, with an ``entropy_alphabet`` fact (the TRUE entropy of about
    n symbols), within the Miller–Madow bias of the plug-in estimate; approximate closed forms
    (``exact=False``) -> distortion only.
    """
    p = rd_point(spec, d, trials=trials, key=key)
    _check_point(p)
    se_r, se_h = p.rate_bits_mc_se, p.entropy_rate_bits_mc_se
    if closed_form(spec, d).rate_bits is None:
        assert p.rate_bits == p.rate_bits_mc  # the point falls back on the measured rate
        return p
    if se_r == 0.0:
        # Fixed-length containers: the closed-form container rate is exact.
        assert p.rate_bits_mc == pytest.approx(p.rate_bits, abs=1e-9)
    else:
        # A random container size: the exact expected rate is within 5 SE of the MC mean.
        assert abs(p.rate_bits_mc - p.rate_bits) <= K_SE * se_r
    if p.entropy_rate_bits is None or not p.exact:
        return p
    alphabet = CLOSED_FORMS.facts(p.compressor).get("entropy_alphabet")
    if alphabet is None:
        # Closed form = E[plug-in code length] (exact for signs, lgamma on both sides for
        # log2 C(d, k)): 5 SE, plus 1e-9 for the deterministic lengths where SE = 0.
        assert abs(p.entropy_rate_bits_mc - p.entropy_rate_bits) <= K_SE * se_h + 1e-9
    else:
        # The closed form is the TRUE entropy; the plug-in entropy of d symbols is biased low
        # by about (K-1)/(2 d ln 2) bits per coordinate (Miller–Madow): allow twice that.
        bias = (alphabet(p.params) - 1) / (d * math.log(2))
        assert p.entropy_rate_bits_mc <= p.entropy_rate_bits + K_SE * se_h
        assert p.entropy_rate_bits - p.entropy_rate_bits_mc <= bias + K_SE * se_h
    return p


@pytest.mark.parametrize("spec", closed_form_specs())
def test_closed_form_agrees_with_jax_monte_carlo(spec, key):
    check_closed_form_vs_monte_carlo(spec, key)


def test_dithered_lattice_distortion_is_exact_at_every_step(key):
    # D = G step^2 holds exactly with subtractive dither; its rates are high-rate
    # approximations (entropy) or data dependent (container): tested in test_rd_lattice.
    p = rd_point("lattice:lattice=e8,dither=true", D, trials=TRIALS, key=key)
    assert p.exact is False and p.rate_bits == p.rate_bits_mc
    assert abs(p.distortion_mc - p.distortion) <= K_SE * p.distortion_mc_se


def test_true_entropy_closed_forms_at_higher_resolution(key):
    # The entropy_alphabet path at more levels than the first sweep entries use.
    for spec in ("qsgd:s=4", "nuqsgd:s=4"):
        check_closed_form_vs_monte_carlo(spec, key)


def test_scalar_quantizer_closed_form_exact_without_normalization(key):
    for rounding in ("deterministic", "stochastic"):
        comp = make("scalar", quantizer=Q4, rounding=rounding, normalize="none")
        p = rd_point(comp, D, trials=TRIALS, key=key, sigma=1.3)
        assert p.exact is True
        _check_point(p)
        assert p.rate_bits == pytest.approx(2.0, abs=1e-15)


def test_scalar_quantizer_with_rms_normalization_is_large_d_accurate(key):
    comp = make("scalar", quantizer=Q4)
    p = rd_point(comp, D, trials=TRIALS, key=key)
    assert p.exact is False
    # sigma_hat = sigma (1 + O(d^-1/2)) adds an O(1/d) bias: allow 5 SE + 5/d relative.
    assert abs(p.distortion_mc - p.distortion) <= K_SE * p.distortion_mc_se + 5 * p.distortion / D


def test_every_registered_compressor_reaches_monte_carlo(key):
    # The registry enrols new compressors in the MC harness: each has a default spec that runs.
    specs = default_specs()
    assert set(specs) == set(COMPRESSORS.names())
    for name in COMPRESSORS.names():
        if name not in CLOSED_FORMS:
            p = monte_carlo_point(specs[name][0], 64, trials=4, key=key)
            assert p.distortion is None and p.distortion_mc > 0 and p.rate_bits > 0


def test_monte_carlo_point_has_no_closed_form_and_scales_with_sigma(key):
    p1 = monte_carlo_point("scaled-sign", D, trials=TRIALS, key=key)
    p2 = monte_carlo_point("scaled-sign", D, trials=TRIALS, key=key, sigma=7.0)
    assert p1.distortion is None
    # Same key: the same standard normals scaled by sigma; D is normalized by sigma^2.
    assert p2.distortion_mc == pytest.approx(p1.distortion_mc, rel=1e-10)
    assert abs(p1.distortion_mc - scaled_sign_distortion(D)) <= K_SE * p1.distortion_mc_se


def test_rd_point_json_and_types(key):
    p = rd_point("top-k:k=10", D, trials=8, key=key)
    js = p.to_json()
    for field in (
        "compressor",
        "params",
        "rate_bits",
        "entropy_rate_bits",
        "distortion",
        "distortion_mc",
        "distortion_mc_se",
        "shannon_distortion",
        "gap_db",
        "gap_bits",
    ):
        assert field in js
    assert js["params"] == {"k": 10, "float_bits": 32}
    assert isinstance(js["rate_bits"], float)
    ident = closed_form_point("identity", 10).to_json()
    assert ident["distortion"] == 0.0 and ident["gap_db"] is None  # no -inf in JSON


def test_operational_bad_inputs(key):
    with pytest.raises(ValueError, match="unknown compressor"):
        rd_point("no-such", D)
    with pytest.raises(ValueError, match="trials"):
        rd_point("sign", D, trials=1, key=key)
    with pytest.raises(ValueError, match="trials"):
        monte_carlo_point("sign", D, trials=0, key=key)
    with pytest.raises(ValueError, match="d"):
        rd_point("sign", 0)
    with pytest.raises(ValueError, match="sigma"):
        rd_point("sign", D, sigma=0.0)
    with pytest.raises(ValueError, match="key"):
        monte_carlo_point("sign", D, trials=4, key=None)
    with pytest.raises(TypeError, match="compressor"):
        rd_point(3.0, D)
    with pytest.raises(ValueError, match="k"):
        rd_point("top-k:k=2000", D)


@pytest.mark.slow
def test_every_default_spec_closed_form_vs_monte_carlo():
    key = jax.random.key(7)
    for i, spec in enumerate(closed_form_specs("all")):
        p = check_closed_form_vs_monte_carlo(spec, jax.random.fold_in(key, i), trials=200)
        assert np.isfinite(p.rate_bits)


def test_unmodelled_option_means_no_closed_form(key):
    comp = make("top-k:k=3")
    odd = comp._replace(facts=comp.facts._replace(params={**comp.facts.params, "new_option": 1}))
    assert closed_form(comp, 100) is not None
    assert closed_form(odd, 100) is None
    with pytest.raises(ValueError, match="no closed form"):
        rd_point(odd, 100)
    assert rd_point(odd, 100, trials=4, key=key).distortion is None
    # Quantized random rounding is modelled only approximately.
    assert closed_form(make("qsgd:s=4,rng_bits=8"), 100).exact is False
    assert closed_form(make("qsgd:s=4"), 100).exact is True


def test_every_closed_form_is_checked_against_monte_carlo():
    # Every closed form belongs to a registered compressor that has a default spec, so the
    # registry-driven test above covers it; DEFAULT_PARAMS is the same live view.
    assert set(CLOSED_FORMS.names()) <= set(COMPRESSORS.names())
    assert {s.partition(":")[0] for s in closed_form_specs()} == set(CLOSED_FORMS.names())
    assert dict(DEFAULT_PARAMS) == default_specs()


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_monte_carlo_sigma_range_is_meaningful_at_its_ends_and_enforced_outside(x64):
    from ratedist.rd.operational import mc_sigma_range

    key = jax.random.key(0)
    with jax.enable_x64(x64):
        lo, hi = mc_sigma_range()
        if not x64:  # the precision of the command
            unit = rd_point("scaled-sign", 64, trials=4, key=key).distortion_mc
            for sigma in (lo, hi):
                # Scale-equivariant: the normalized distortion does not move with sigma.
                p = rd_point("scaled-sign", 64, trials=4, key=key, sigma=sigma)
                assert p.distortion_mc == pytest.approx(unit, rel=1e-3), sigma
        for sigma in (lo / 2, hi * 2, 1e-200 if x64 else 1e-30, 1e300 if x64 else 1e200):
            with pytest.raises(ValueError, match=r"sigma must lie in \[.*got") as exc:
                rd_point("top-k:k=10", 64, trials=4, key=key, sigma=sigma)
            assert repr(sigma) in str(exc.value)
        # Closed forms alone simulate nothing: any sigma > 0.
        assert rd_point("scaled-sign", 64, sigma=1e300).distortion is not None


def test_a_fixed_container_rate_is_exact_with_zero_standard_error():
    """Every trial of a fixed-length container has the same rate; the Monte Carlo summary is
    that rate and SE 0, exactly (np.mean of 200 copies of 4.032 is 4.031999999999999)."""
    from ratedist.rd.operational import monte_carlo_stats

    d, trials = 1000, 200
    out = monte_carlo_stats("nuqsgd:s=6", d, trials=trials, key=jax.random.key(3))
    assert out["rate_bits_mc_se"] == 0.0
    assert out["rate_bits_mc"] == closed_form("nuqsgd:s=6", d).rate_bits
    assert np.full(trials, out["rate_bits_mc"]).mean() != out["rate_bits_mc"]  # the trap
    assert out["distortion_mc_se"] > 0.0  # a varying sample keeps its SE
