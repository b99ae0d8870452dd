"""evaluate() and design(): exact numbers vs quadrature and vs Monte Carlo of the JAX apply."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from ratedist.quantizers import DESIGNS, ScalarQuantizer, design, evaluate
from ratedist.quantizers.evaluate import Evaluation, as_quantizer
from ratedist.sources import Gaussian, Laplace, StudentT

GAUSS = Gaussian(1.3)
LAPLACE = Laplace(0.6)

README_EXAMPLE = """
import jax
from ratedist.quantizers import design, evaluate
from ratedist.sources import Laplace

src = Laplace(scale=1.0)                      # gradient-coordinate model
sol = design("lloyd-max", src, bits=3)        # 8 levels, Newton solve to 1e-12
q = sol.value                                 # ScalarQuantizer: q.levels, q.thresholds
print(q.levels, sol.converged, sol.residual)
ev = evaluate(q, src, rounding="deterministic")
print(f"MSE {ev.mse:.5f}, entropy {ev.entropy_bits:.3f} bit, gap {ev.gap_db:.2f} dB")
print(q(src.sample(jax.random.key(0), (4,))))  # JAX apply; q.stochastic(key, x) too
"""


def test_readme_example_runs_as_written(capsys):
    assert len(README_EXAMPLE.strip().splitlines()) <= 11
    exec(compile(README_EXAMPLE, "README_EXAMPLE", "exec"), {})
    out = capsys.readouterr().out
    assert "True" in out and "MSE" in out


def _quad(f, a, b):
    return integrate.quad(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]


def test_evaluate_deterministic_against_quadrature():
    q = design("lloyd-max", GAUSS, bits=3).value
    ev = evaluate(q, GAUSS, rounding="deterministic")
    sig = GAUSS.sigma

    def pdf(x):
        return math.exp(-0.5 * (x / sig) ** 2) / (sig * math.sqrt(2 * math.pi))

    edges = np.concatenate([[-np.inf], q.thresholds, [np.inf]])
    mse = sum(
        _quad(lambda x, l=lv: (x - l) ** 2 * pdf(x), a, b)
        for a, b, lv in zip(edges[:-1], edges[1:], q.levels, strict=True)
    )
    p = np.array([_quad(pdf, a, b) for a, b in itertools.pairwise(edges)])
    h = -np.sum(p * np.log2(p))
    assert abs(ev.mse - mse) <= 1e-10 and ev.variance == 0.0 and ev.bias == ev.mse
    assert abs(ev.entropy_bits - h) <= 1e-10
    assert ev.rate_bits == 3.0
    # Gaussian: exact D(R) = sigma^2 2^(-2R).
    assert ev.gap_db == pytest.approx(10 * math.log10(mse / (sig**2 * 2.0**-6)), abs=1e-9)
    assert ev.gap_bits == pytest.approx(3 - 0.5 * math.log2(sig**2 / mse), abs=1e-9)
    assert ev.entropy_gap_bits == pytest.approx(h - 0.5 * math.log2(sig**2 / mse), abs=1e-9)
    assert ev.entropy_gap_db == pytest.approx(
        10 * math.log10(mse / (sig**2 * 2 ** (-2 * h))), abs=1e-9
    )


def test_evaluate_stochastic_and_shannon_lower_bound():
    sol = design("variance-optimal", LAPLACE, levels=6)
    ev = evaluate(sol.value, LAPLACE, rounding="stochastic")
    b = LAPLACE.scale
    lv = sol.value.levels

    def pdf(x):
        return math.exp(-abs(x) / b) / (2 * b)

    var = sum(
        _quad(lambda x, a=a, c=c: (c - x) * (x - a) * pdf(x), a, c)
        for a, c in itertools.pairwise(lv)
    )
    bias = 2 * _quad(lambda x: (x - lv[-1]) ** 2 * pdf(x), lv[-1], np.inf)
    assert abs(ev.variance - var) <= 1e-10 and abs(ev.bias - bias) <= 1e-10
    assert ev.mse == pytest.approx(var + bias, abs=1e-15)
    # Non-Gaussian: Shannon lower bound with h = log2(2 e b).
    h = math.log2(2 * math.e * b)
    d_slb = 2 ** (2 * (h - ev.rate_bits)) / (2 * math.pi * math.e)
    assert ev.gap_db == pytest.approx(10 * math.log10(ev.mse / d_slb), abs=1e-9)
    assert ev.entropy_bits <= ev.rate_bits + 1e-12


def test_evaluate_accepts_design_records_and_rejects_bad_input():
    sol = design("tnq", LAPLACE, bits=2)
    ev = evaluate(sol.value, LAPLACE, rounding="stochastic")
    assert isinstance(ev, Evaluation)
    assert isinstance(as_quantizer(sol.value), ScalarQuantizer)
    q = sol.value.quantizer
    with pytest.raises(ValueError, match="rounding"):
        evaluate(q, LAPLACE, rounding="nearest")
    with pytest.raises(TypeError, match="quantizer"):
        evaluate(np.array([0.0, 1.0]), LAPLACE, rounding="stochastic")
    with pytest.raises(TypeError, match="source"):
        evaluate(q, "laplace", rounding="stochastic")
    with pytest.raises(ValueError, match="finite variance"):
        evaluate(q, StudentT(df=1.5), rounding="stochastic")


def test_design_budget_conventions():
    assert design("uniform", GAUSS, bits=4).value.n_levels == 16
    assert design("companded", GAUSS, levels=5).value.n_levels == 5
    # tnq/tuq: --levels N = s + 1 levels on [-alpha, alpha]; bits b -> 2^b levels.
    t = design("tuq", LAPLACE, bits=3).value
    assert t.quantizer.n_levels == 8 and t.quantizer.levels[-1] == pytest.approx(t.alpha)
    exact_t = design("tuq", LAPLACE, bits=3, exact=True).value
    assert exact_t.form == "exact" and t.form == "bound"
    assert exact_t.exact.mse <= t.exact.mse + 1e-12  # exact optimum can only be better
    # ecsq: bits = target entropy; levels alone = log2(levels) bits of entropy.
    e = design("ecsq", GAUSS, bits=3).value
    h = evaluate(e, GAUSS, rounding="deterministic").entropy_bits
    assert h == pytest.approx(3.0, abs=1e-6) and e.n_levels > 8
    e2 = design("ecsq", GAUSS, levels=8).value
    assert evaluate(e2, GAUSS, rounding="deterministic").entropy_bits == pytest.approx(3, abs=1e-6)
    e3 = design("ecsq", GAUSS, bits=2, levels=9).value  # both: levels caps the cells
    assert e3.n_levels <= 9
    for name in DESIGNS.names():
        assert DESIGNS.facts(name)["rounding"] in ("deterministic", "stochastic")
        assert isinstance(DESIGNS.facts(name)["truncated"], bool)


def test_design_bad_inputs():
    with pytest.raises(ValueError, match="unknown design method"):
        design("kmeans", GAUSS, bits=2)
    with pytest.raises(TypeError, match="method"):
        design(3, GAUSS, bits=2)
    for bad in (0, 17, -1):
        with pytest.raises(ValueError, match="bits"):
            design("lloyd-max", GAUSS, bits=bad)
    with pytest.raises(TypeError, match="bits"):
        design("lloyd-max", GAUSS, bits=2.5)
    for bad in (1, 65537):
        with pytest.raises(ValueError, match="levels"):
            design("lloyd-max", GAUSS, levels=bad)
    with pytest.raises(ValueError, match="bits or levels"):
        design("lloyd-max", GAUSS)
    with pytest.raises(ValueError, match="bits or levels"):
        design("uniform", GAUSS, bits=2, levels=4)
    with pytest.raises(ValueError, match="exact"):
        design("lloyd-max", GAUSS, bits=2, exact=True)
    with pytest.raises(ValueError, match="exact"):
        design("ecsq", GAUSS, bits=2, exact=True)
    with pytest.raises(TypeError, match="exact"):
        design("tnq", GAUSS, bits=2, exact="yes")
    with pytest.raises(ValueError, match="bits"):
        design("ecsq", GAUSS)
    with pytest.raises(TypeError, match="source"):
        design("lloyd-max", None, bits=2)


# --------------------------------------------------------------- Monte Carlo of the JAX apply
N_MC = 200_000


@pytest.mark.parametrize("method", ["lloyd-max", "uniform", "ecsq", "companded"])
def test_monte_carlo_deterministic_apply_matches_exact_mse(method, key):
    src = LAPLACE
    q = design(method, src, bits=3).value
    exact_mse = evaluate(q, src, rounding="deterministic").mse
    x = src.sample(key, (N_MC,))
    err2 = np.asarray((q(x) - x) ** 2)
    se = err2.std() / math.sqrt(N_MC)
    assert abs(err2.mean() - exact_mse) <= 5 * se


@pytest.mark.parametrize("method", ["variance-optimal", "tnq", "tuq"])
def test_monte_carlo_stochastic_apply_matches_exact_mse(method, key):
    src = GAUSS
    q = as_quantizer(design(method, src, bits=2).value)
    ev = evaluate(q, src, rounding="stochastic")
    kx, kr = jax.random.split(key)
    x = src.sample(kx, (N_MC,))
    err2 = np.asarray((q.stochastic(kr, x) - x) ** 2)
    se = err2.std() / math.sqrt(N_MC)
    assert abs(err2.mean() - ev.mse) <= 5 * se


def test_stochastic_rounding_unbiased_inside_range(key):
    q = design("variance-optimal", LAPLACE, bits=3).value
    lo, hi = q.levels[0], q.levels[-1]
    x = jnp.linspace(lo, hi, 25)
    reps = 10_000
    keys = jax.random.split(key, reps)
    out = np.asarray(jax.vmap(lambda k: q.stochastic(k, x))(keys))
    mean_err = out.mean(0) - np.asarray(x)
    se = out.std(0) / math.sqrt(reps)
    # Points on a level have zero variance and must be exact; others within 5 SE.
    assert np.all(np.abs(mean_err) <= 5 * se + 1e-12)
