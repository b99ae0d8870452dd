"""The pooled entropy estimator and the honesty of every operational point against Shannon.

Expected values come from closed forms of discrete laws (numpy sums of known probabilities,
Gaussian cell probabilities with scipy) and from an independent large-sample reference of the
E8 label law (the lattice quantizer of ``ratedist.quantizers.lattice`` applied to 2^17
standard Gaussian 8-vectors at the known scale, not through the compressor).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from ratedist.infotheory.entropy_estimate import pooled_entropy_bits
from ratedist.quantizers.lattice import get_lattice, lattice_labels
from ratedist.rd import curve_specs, default_specs, rd_point
from ratedist.rd.lattice import lattice_rd_monte_carlo

K_SE = 4.0  # tolerance in (combined) standard errors, fixed seeds


def _gaussian_cell_law(step: float) -> np.ndarray:
    k = np.arange(-200, 201)
    p = norm.cdf((k + 0.5) * step) - norm.cdf((k - 0.5) * step)
    return p[p > 0]


def _entropy(p: np.ndarray) -> float:
    return float(-np.sum(p * np.log2(p)))


def test_pooled_estimate_of_a_known_law_is_within_its_bias_bound_and_se():
    p = _gaussian_cell_law(0.25)  # about 4.05 bits, ~50 symbols seen
    rng = np.random.default_rng(0)
    sym = rng.choice(len(p), size=(32, 125, 2), p=p)  # 32 trials x 125 rows x 2 columns
    est = pooled_entropy_bits(sym)
    exact = 2 * _entropy(p)
    assert abs(est.bits - exact) <= est.bias_bound + K_SE * est.se
    # The stated bias bound is (K - 1) / (2 N ln 2) per column.
    n = 32 * 125
    assert est.samples == n and est.trials == 32
    assert est.bias_bound == pytest.approx(
        sum((k - 1) / (2 * n * math.log(2)) for k in est.support)
    )
    # Miller-Madow adds exactly that first-order term to the plug-in.
    assert est.bits - est.plugin_bits == pytest.approx(est.bias_bound, rel=1e-12)
    # The per-call plug-in (125 symbols) is far below the truth: this is what pooling fixes.
    per_call = np.mean(
        [
            sum(_entropy(np.unique(sym[t, :, j], return_counts=True)[1] / 125) for j in range(2))
            for t in range(32)
        ]
    )
    assert exact - per_call > 2 * (est.bias_bound + K_SE * est.se)


def test_jackknife_se_matches_the_spread_over_replications():
    p = _gaussian_cell_law(0.5)
    rng = np.random.default_rng(1)
    ests = [pooled_entropy_bits(rng.choice(len(p), size=(16, 64), p=p)) for _ in range(200)]
    spread = np.std([e.bits for e in ests], ddof=1)
    mean_se = np.mean([e.se for e in ests])
    # Jackknife SE of a smooth statistic: consistent; 200 replications -> ~5% noise on spread.
    assert 0.75 < mean_se / spread < 1.33
    # And the estimator is unbiased to within its stated bound (mean over replications).
    bias = np.mean([e.bits for e in ests]) - _entropy(p)
    assert abs(bias) <= ests[0].bias_bound + 4 * spread / math.sqrt(200)


def test_pooled_entropy_bad_inputs():
    with pytest.raises(TypeError, match="integer"):
        pooled_entropy_bits(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="trials"):
        pooled_entropy_bits(np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="shape"):
        pooled_entropy_bits(np.zeros((2, 3, 4, 5), int))


def _e8_reference_rate(step: float, d: int, n: int = 2**17) -> tuple[float, float]:
    """Entropy rate of the E8 label law at a KNOWN scale (sigma = 1), large-sample plug-in +
    Miller-Madow, plus float_bits/d; and its own bias bound + 4 SE-ish error (N = 2^17)."""
    lat = get_lattice("e8")
    y = np.random.default_rng(2).standard_normal((n, 8)) / (step / lat.volume ** (1 / 8))
    lab = np.asarray(lattice_labels(lat, lat.closest_point(jnp.asarray(y))))
    h = err = 0.0
    for j in range(8):
        c = np.unique(lab[:, j], return_counts=True)[1]
        h += _entropy(c / n) + (len(c) - 1) / (2 * n * math.log(2))
        err += (len(c) - 1) / (2 * n * math.log(2)) + 4 * np.std(np.log2(c / n)) / math.sqrt(n)
    return h / 8 + 32 / d, err / 8


@pytest.mark.parametrize("step, d", [(0.5, 1000), (0.25, 256)])
def test_e8_entropy_rate_matches_an_independent_large_sample_reference(step, d, key):
    ref, ref_err = _e8_reference_rate(step, d)
    p = rd_point(f"lattice:lattice=e8,step={step}", d, trials=32, key=key)
    assert p.entropy_estimator == "pooled miller-madow"
    # The compressor normalizes by the measured sigma_hat (relative spread 1/sqrt(2d)): its
    # label law is a scale mixture, entropy higher by O(1/d); allow 1/d bit on top.
    tol = p.entropy_rate_bits_mc_bias + K_SE * p.entropy_rate_bits_mc_se + ref_err + 1 / d
    assert abs(p.entropy_rate_bits_mc - ref) <= tol, (p.entropy_rate_bits_mc, ref, tol)
    # The same estimator in the lattice RD helper.
    q = lattice_rd_monte_carlo("e8", step, key=key, d=d, n_trials=32)
    assert abs(q.rate_bits - ref) <= q.rate_bias_bound + K_SE * q.rate_se + ref_err + 1 / d
    assert q.rate_per_call_bits < q.rate_bits  # the per-call plug-in is biased low


def _shannon(r: float) -> float:
    return 2.0 ** (-2.0 * r)


def assert_does_not_cross_shannon(p, k: float = K_SE) -> list[str]:
    """``D >= D_sh(R + b) - k SE`` in both layers, for the Monte Carlo and closed-form point.

    ``SE`` combines the distortion SE and the rate SE through the slope of ``D_sh``
    (``|dD_sh/dR| = 2 ln 2 D_sh``); ``b`` is the rate estimator's stated bias bound (0 where
    none). Returns the failures as text (empty: the point is honest)."""
    bad = []
    if p.distortion_mc == 0 or p.distortion == 0:
        # Lossless (identity): the float representation sent exactly is a DISCRETE source of
        # at most float_bits bits per coordinate; the continuous-source bound does not apply.
        return bad
    layers = {
        "fixed": (p.rate_bits_mc, p.rate_bits_mc_se, 0.0, p.rate_bits),
        "entropy": (
            p.entropy_rate_bits_mc,
            p.entropy_rate_bits_mc_se,
            getattr(p, "entropy_rate_bits_mc_bias", None) or 0.0,
            p.entropy_rate_bits,
        ),
    }
    for layer, (r, se_r, bias, r_point) in layers.items():
        if r is not None and p.distortion_mc is not None:
            d_sh = _shannon(r + bias)
            se = math.hypot(p.distortion_mc_se, 2 * math.log(2) * d_sh * (se_r or 0.0))
            if p.distortion_mc < d_sh - k * se:
                bad.append(
                    f"{p.compressor} {p.params} MC {layer}: D={p.distortion_mc:.5g} "
                    f"< D_sh({r:.4f})={d_sh:.5g} - {k}*{se:.2g}"
                )
        if r_point is not None and p.distortion is not None:
            if p.distortion < _shannon(r_point) * (1 - 1e-12):
                bad.append(
                    f"{p.compressor} {p.params} closed form {layer}: D={p.distortion:.5g}"
                    f" < D_sh({r_point:.4f})"
                )
    return bad


def _sweep_specs(names=None) -> list[str]:
    specs = {**default_specs()}
    for name, curve in curve_specs().items():
        specs[name] = list(dict.fromkeys([*specs.get(name, []), *curve]))
    return [s for n, group in specs.items() if names is None or n in names for s in group]


@pytest.mark.parametrize("spec", ["lattice:lattice=e8,step=0.25", "lattice:lattice=zn,step=0.25"])
def test_lattice_points_do_not_cross_shannon_at_small_d(spec, key):
    # d = 256 (32 E8 blocks per call): the mean per-call plug-in entropy put E8 at step 0.25
    # 1.3 dB BELOW Shannon; the pooled estimate does not cross.
    p = rd_point(spec, 256, trials=32, key=key)
    assert assert_does_not_cross_shannon(p) == []


@pytest.mark.slow
@pytest.mark.parametrize("d, curves", [(512, False), (1000, True)])
def test_no_operational_point_crosses_shannon(d, curves, key):
    # Every registered compressor's rd_sweep (and at d = 1000 its rd_curve; some curve
    # entries keep more than 512 coordinates). Shared-randomness ones included: one worker's
    # view is still a valid single-vector code.
    specs = _sweep_specs() if curves else [s for g in default_specs().values() for s in g]
    bad = []
    for i, spec in enumerate(specs):
        p = rd_point(spec, d, trials=32, key=jax.random.fold_in(key, i))
        bad += assert_does_not_cross_shannon(p)
    assert bad == []
