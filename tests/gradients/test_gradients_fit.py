"""Maximum-likelihood fits: known parameters recovered, the right family picked, honest errors.

Samples are drawn with scipy.stats and numpy's PCG64 (independent of the library's JAX
samplers). Standard errors are the library's own, from the observed Fisher information;
they are checked against the expected information in closed form (Gaussian, Laplace,
Student-t), and recovery is asserted within 5 of them.
"""

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from ratedist.gradients.fit import (
    FAMILIES,
    MIN_SAMPLES,
    best_fit,
    fit_family,
    hill_estimator,
    parametric_families,
    prepare_samples,
)
from ratedist.quantizers import design
from ratedist.sources import SOURCES

N = 20_000
#: Seed of the samples. Seeds 0-5 all recover every parameter within 2.5 SE; the Laplace
#: family loses to a 2-parameter family by AIC for seeds 1 and 4 (as it should about 1 time
#: in 5: see the slow test), and for seed 7 (gen-gaussian shape 3.2 SE from 1).
SEED = 2
#: Recovery tolerance: the estimate lies within this many standard errors of the truth.
K_SE = 5.0

#: id -> (family that generated the data, its parameters, sampler(rng, n)).
CASES = {
    "laplace": (
        "laplace",
        {"scale": 0.3},
        lambda rng, n: stats.laplace.rvs(scale=0.3, size=n, random_state=rng),
    ),
    "t3": (
        "student-t",
        {"df": 3.0, "scale": 1.5},
        lambda rng, n: stats.t.rvs(3.0, scale=1.5, size=n, random_state=rng),
    ),
    "t5": (
        "student-t",
        {"df": 5.0, "scale": 0.02},  # gradient-sized numbers
        lambda rng, n: stats.t.rvs(5.0, scale=0.02, size=n, random_state=rng),
    ),
    "gg0.7": (
        "gen-gaussian",
        {"shape": 0.7, "scale": 2.0},
        lambda rng, n: stats.gennorm.rvs(0.7, scale=2.0, size=n, random_state=rng),
    ),
}


@pytest.fixture(scope="module")
def samples():
    return {cid: gen(np.random.default_rng(SEED), N) for cid, (_, _, gen) in CASES.items()}


@pytest.fixture(scope="module")
def best(samples):
    return {cid: best_fit(x, name=cid) for cid, x in samples.items()}


@pytest.mark.parametrize("cid", list(CASES))
def test_recovers_the_parameters_within_5_standard_errors(cid, best):
    family, truth, _ = CASES[cid]
    fit = best[cid].fits[family]
    for param, value in truth.items():
        se = fit.stderr[param]
        assert se is not None and 0 < se < 0.1 * value, (param, se)
        assert abs(fit.params[param] - value) < K_SE * se, (param, fit.params[param], se)


@pytest.mark.parametrize("cid", list(CASES))
def test_picks_the_family_that_generated_the_data(cid, best):
    # Laplace is gen-gaussian with shape 1 and the power law's limit as the tail index grows:
    # AIC picks the larger gen-gaussian with probability P(chi2_1 > 2) = 0.157 on such data,
    # and the power law now and then. With SEED it does not; the rates over 40 seeds are
    # checked by the slow test below.
    family, _, _ = CASES[cid]
    b = best[cid]
    assert b.best.family == family, {f: round(v.aic - b.best.aic, 1) for f, v in b.fits.items()}
    assert b.delta_aic == pytest.approx(b.runner_up.aic - b.best.aic, rel=1e-12)
    assert b.delta_aic > 0
    aics = [f.aic for f in b.fits.values()]
    assert aics == sorted(aics)
    assert set(b.fits) == set(parametric_families())


def test_observed_information_matches_the_closed_forms(samples):
    # Gaussian and Laplace: observed = expected information at the MLE, exactly, so the
    # finite-difference Hessian (step 1e-4 in log-parameters) is checked to 1e-6.
    x = samples["laplace"]
    lap = fit_family(x, "laplace")
    assert lap.stderr["scale"] == pytest.approx(lap.params["scale"] / math.sqrt(N), rel=1e-6)
    gau = fit_family(x, "gaussian")
    assert gau.stderr["sigma"] == pytest.approx(gau.params["sigma"] / math.sqrt(2 * N), rel=1e-6)
    # Student-t: expected information (Lange, Little & Taylor 1989, location known) at the
    # estimate; observed and expected differ by sampling noise, O(1/sqrt(n)): 5 %.
    t = fit_family(samples["t3"], "student-t")
    nu, s = t.params["df"], t.params["scale"]
    i_ss = 2 * nu / ((nu + 3) * s * s)
    i_ns = -2 / (s * (nu + 1) * (nu + 3))
    i_nn = 0.25 * (special.polygamma(1, nu / 2) - special.polygamma(1, (nu + 1) / 2)) - (nu + 5) / (
        2 * nu * (nu + 1) * (nu + 3)
    )
    se = np.sqrt(np.diag(np.linalg.inv(N * np.array([[i_nn, i_ns], [i_ns, i_ss]]))))
    assert t.stderr["df"] == pytest.approx(se[0], rel=0.05)
    assert t.stderr["scale"] == pytest.approx(se[1], rel=0.05)


@pytest.mark.parametrize(
    ("cid", "family", "scipy_fit"),
    [
        (
            "t3",
            "student-t",
            lambda x: dict(zip(("df", "scale"), stats.t.fit(x, floc=0)[::2], strict=True)),
        ),
        (
            "gg0.7",
            "gen-gaussian",
            lambda x: dict(zip(("shape", "scale"), stats.gennorm.fit(x, floc=0)[::2], strict=True)),
        ),
        (
            "pl3.5",
            "power-law",
            lambda x: dict(
                zip(("tail_index", "scale"), stats.lomax.fit(np.abs(x), floc=0)[::2], strict=True)
            ),
        ),
    ],
)
def test_agrees_with_scipy_fit_with_location_fixed_at_0(cid, family, scipy_fit, samples):
    # scipy's generic fit (Nelder-Mead) stops on a looser tolerance: our likelihood is at
    # least as high, and the two estimates agree to a tenth of a standard error. (Not on
    # data whose Lomax MLE is the exponential limit, tail index -> inf, which scipy follows
    # and the bounded fit stops at 40: the Student-t samples with df 5 are such data.)
    x = samples[cid] if cid in samples else _power_law_sample(np.random.default_rng(3))
    ours = fit_family(x, family)
    ref = scipy_fit(x)
    spec = FAMILIES.get(family)
    ref_ll = float(np.sum(spec.logpdf(np.abs(x), **ref)))
    assert ours.loglik >= ref_ll - 1e-6 * abs(ref_ll)
    for p, v in ref.items():
        assert abs(ours.params[p] - v) < 0.1 * ours.stderr[p], (p, ours.params[p], v)


def _power_law_sample(rng, a=3.5, s=0.01):
    """Double Lomax (the PowerLaw source) by inversion."""
    return s * (rng.uniform(size=N) ** (-1 / a) - 1) * rng.choice([-1.0, 1.0], N)


def test_power_law_fit_recovers_its_tail_and_hill_agrees():
    a, s = 3.5, 0.01
    x = _power_law_sample(np.random.default_rng(3), a, s)
    fit = fit_family(x, "power-law")
    for p, v in {"tail_index": a, "scale": s}.items():
        assert abs(fit.params[p] - v) < K_SE * fit.stderr[p]
    # Pure Pareto: Hill is the exact MLE of the tail of |x| above any threshold far from s.
    hill = hill_estimator(s + np.abs(x))
    assert hill.k == math.isqrt(N)
    assert abs(hill.tail_index - a) < K_SE * hill.stderr


def test_fits_are_sources_the_quantizer_designs_consume(best):
    for fit in best["t5"].fits.values():
        assert type(fit.source) is FAMILIES.get(fit.family).source_cls
        assert fit.source.name in SOURCES
        assert fit.source.params() == dict(fit.params)
    sol = design("lloyd-max", best["t5"].best.source, bits=3)
    assert sol.converged


def test_qq_data_lies_on_the_diagonal_for_the_true_model(best):
    qq = best["gg0.7"].best.qq
    assert qq.probabilities[0] == pytest.approx(0.5 / N) and np.all(np.diff(qq.probabilities) > 0)
    body = (qq.probabilities > 0.01) & (qq.probabilities < 0.99)
    # central quantiles of 2e4 samples: a few percent of the spread
    spread = qq.theoretical[-1] - qq.theoretical[0]
    assert np.max(np.abs(qq.theoretical[body] - qq.empirical[body])) < 0.01 * spread


def test_a_shape_on_its_bound_has_no_standard_error_and_says_so():
    x = np.random.default_rng(0).normal(size=5000)
    fit = fit_family(x, "power-law")  # Gaussian tails: the tail index runs to its bound
    assert fit.at_bound == ("tail_index",) and fit.params["tail_index"] == 40.0
    assert fit.stderr["tail_index"] is None and fit.stderr["scale"] > 0
    assert fit.n_params == 2 and "bound" in fit.note


def test_empirical_fit_is_scored_out_of_sample(samples):
    # On Gaussian data a KDE cannot beat the true model out of sample; in-sample it would.
    x = np.random.default_rng(1).normal(size=4000)
    b = best_fit(x, families=["gaussian", "empirical"])
    assert b.best.family == "gaussian" and b.fits["empirical"].n_params == 0
    assert np.isfinite(b.fits["empirical"].aic) and 0 < b.fits["empirical"].ks < 0.05


def test_to_dict_is_strict_json(best):
    text = json.dumps(best["t3"].to_dict(qq=True), allow_nan=False)
    assert json.loads(text)["best"] == "student-t"


# ----------------------------------------------------------------------------- bad input
def test_non_finite_samples_are_counted_and_the_layer_named():
    x = np.ones(100)
    x[:3] = np.nan
    x[3] = np.inf
    with pytest.raises(
        ValueError, match=r"layer 'd/w': 4 of 100 samples are not finite \(3 NaN, 1 inf\)"
    ):
        best_fit(x, name="layer 'd/w'")


def test_constant_samples_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 'b': all 64 samples equal 0.0 \(zero variance\)"):
        best_fit(np.zeros(64), name="layer 'b'")


def test_too_few_samples_after_dropping_zeros():
    x = np.r_[np.zeros(100), np.arange(1.0, 11.0)]
    with pytest.raises(
        ValueError,
        match=rf"^L: 10 nonzero samples \(100 exact zeros dropped\), at least {MIN_SAMPLES}",
    ):
        fit_family(x, "laplace", name="L")


def test_zeros_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    x = np.r_[np.zeros(500), rng.laplace(size=1000)]
    _, summary = prepare_samples(x)
    assert (summary.n_total, summary.n_used, summary.n_zeros) == (1500, 1000, 500)
    assert fit_family(x, "laplace").n == 1000


def test_bad_arguments_name_themselves():
    x = np.random.default_rng(0).normal(size=200)
    with pytest.raises(ValueError, match="unknown distribution family 'cauchy'; known: empirical"):
        best_fit(x, families=["cauchy"])
    with pytest.raises(ValueError, match="must not repeat"):
        best_fit(x, families=["gaussian", "gaussian"])
    with pytest.raises(ValueError, match="at least one family"):
        best_fit(x, families=[])
    with pytest.raises(TypeError, match="samples must be array-like"):
        best_fit("abc")
    with pytest.raises(ValueError, match="k must be <= 199, got 200"):
        hill_estimator(x, k=200)


@pytest.mark.slow
def test_selection_rates_and_standard_error_calibration_over_40_seeds():
    # The z-scores (estimate - truth)/SE over 40 independent samples have mean ~0 and sd ~1
    # when the observed-information SE is right (a parametric-bootstrap check of it); the
    # right family wins at the rates AIC predicts (Laplace nested in gen-gaussian: 0.84).
    for cid, (family, truth, gen) in CASES.items():
        wins, zs = 0, []
        for seed in range(40):
            b = best_fit(gen(np.random.default_rng(100 + seed), N))
            wins += b.best.family == family
            f = b.fits[family]
            zs.append([(f.params[p] - v) / f.stderr[p] for p, v in truth.items()])
        z = np.array(zs)
        # Laplace: expected ~0.8 x 40 = 32 (binomial sd 2.5); measured 31 with seeds 0-39.
        assert wins >= (24 if cid == "laplace" else 38), (cid, wins)
        # sd of 40 N(0,1) values: 1 +- 0.11; mean: 0 +- 0.16 (3.5 sigma bands)
        assert np.all(np.abs(z.mean(axis=0)) < 0.55), (cid, z.mean(axis=0))
        assert np.all(np.abs(z.std(axis=0, ddof=1) - 1) < 0.4), (cid, z.std(axis=0, ddof=1))
