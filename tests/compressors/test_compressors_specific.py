"""Compressor-specific behaviour: exact outputs, exact error formulas, bad inputs."""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from ratedist.compressors import (
    CompressInfo,
    Compressor,
    Facts,
    _kernels,
    error_feedback,
    make,
    natural,
    nuqsgd,
    qsgd,
    rand_k,
    rand_k_unbiased,
    scalar,
    scaled_sign,
    sign,
    terngrad,
    threshold,
    top_k,
    top_k_sign,
)
from ratedist.quantizers import ScalarQuantizer
from ratedist.rd import closed_form

N_SE = 5.0


def _x(d=24, seed=0):
    return np.random.default_rng(seed).standard_normal(d)


def _run(comp, x, key=None):
    """One call under jit (op-by-op eager dispatch costs seconds for some compressors)."""
    x = jnp.asarray(x)
    return jax.jit(lambda x, k: comp.update(x, comp.init(x), key=k))(x, key)


def _mc(comp, x, key, n=4000):
    x = jnp.asarray(x)
    keys = jax.random.split(key, n)
    return np.asarray(jax.jit(jax.vmap(lambda k: comp.update(x, comp.init(x), key=k)[0]))(keys))


# ----------------------------------------------------------------------------- sparsifiers
@pytest.mark.parametrize("k", [1, 4, 24])
def test_top_k_keeps_exactly_the_k_largest(k):
    x = _x()
    x_hat = np.asarray(_run(top_k(k), x)[0])
    keep = np.argsort(-np.abs(x))[:k]
    expected = np.zeros_like(x)
    expected[keep] = x[keep]
    np.testing.assert_array_equal(x_hat, expected)


@pytest.mark.parametrize("factory", [rand_k, rand_k_unbiased])
def test_rand_k_support_values_and_uniform_inclusion(factory, key):
    d, k = 24, 3
    x = _x(d) + 5.0  # no zeros, so the support is the set of nonzeros
    samples = _mc(factory(k), x, key)
    support = samples != 0
    assert np.all(support.sum(1) == k)
    scale = d / k if factory is rand_k_unbiased else 1.0
    np.testing.assert_array_equal(
        samples[support], (np.broadcast_to(x, samples.shape) * scale)[support]
    )
    freq = support.mean(0)
    se = math.sqrt((k / d) * (1 - k / d) / samples.shape[0])
    assert np.all(np.abs(freq - k / d) <= N_SE * se), freq


def test_threshold_keeps_coordinates_above_t():
    kappa = 0.2
    x = _x(1000, seed=4)
    x_hat = np.asarray(_run(threshold(kappa), x)[0])
    t = np.sqrt(np.mean(x**2)) * stats.norm.ppf(1 - kappa / 2)  # independent quantile
    keep = np.abs(x) > t
    np.testing.assert_array_equal(x_hat, np.where(keep, x, 0.0))


@pytest.mark.parametrize("kappa", [0.01, 0.1, 0.5])
def test_threshold_kept_fraction_matches_kappa_for_gaussian(kappa, key):
    d, n = 100_000, 8
    comp = threshold(kappa)
    xs = jax.random.normal(key, (n, d))
    kept = jax.jit(jax.vmap(lambda x: jnp.sum(comp.update(x, ())[0] != 0)))(xs)
    frac = np.asarray(kept) / d
    # SD of the kept fraction: binomial part plus the effect of estimating sigma
    # (delta t = z * sigma / sqrt(2d), fraction moves by 2 phi(z) delta t).
    z = stats.norm.ppf(1 - kappa / 2)
    sd = math.sqrt(kappa * (1 - kappa) / d + (2 * stats.norm.pdf(z) * z) ** 2 / (2 * d))
    assert abs(frac.mean() - kappa) <= N_SE * sd / math.sqrt(n), (frac.mean(), kappa)


def test_top_k_sign_output_and_alpha_is_attained_within_factor_two():
    x = _x()
    k = 5
    x_hat = np.asarray(_run(top_k_sign(k), x)[0])
    keep = np.argsort(-np.abs(x))[:k]
    scale = np.abs(x[keep]).mean()
    expected = np.zeros_like(x)
    expected[keep] = scale * np.sign(x[keep])
    np.testing.assert_allclose(x_hat, expected, rtol=1e-15)
    # x = (1, eps, ..., eps): contraction ~ 1/k; declared bound k/(k^2 + d - k) is below it.
    d = 24
    v = np.full(d, 1e-9)
    v[0] = 1.0
    err = float(((np.asarray(_run(top_k_sign(2), v)[0]) - v) ** 2).sum())
    alpha_seen = 1 - err / float(v @ v)
    alpha_decl = top_k_sign(2).facts.alpha(d)
    assert alpha_decl <= alpha_seen <= 0.5 + 1e-6


# ----------------------------------------------------------------------------- signs
def test_sign_and_scaled_sign_exact():
    x = np.array([1.5, -2.0, 0.0, -0.0, 3.0])
    np.testing.assert_array_equal(np.asarray(_run(sign(), x)[0]), [1, -1, 1, 1, 1])
    x = _x()
    x_hat = np.asarray(_run(scaled_sign(), x)[0])
    np.testing.assert_allclose(x_hat, np.abs(x).mean() * np.sign(x), rtol=1e-15)
    err = ((x_hat - x) ** 2).sum()
    # closed form ||x||^2 - ||x||_1^2 / d; 1e-12: float rounding of the sums
    assert err == pytest.approx(x @ x - np.abs(x).sum() ** 2 / x.size, rel=1e-12)


def test_scaled_sign_linf_scale_and_its_lack_of_contraction():
    x = _x()
    x_hat = np.asarray(_run(scaled_sign(scale="linf"), x)[0])
    np.testing.assert_array_equal(x_hat, np.abs(x).max() * np.where(x >= 0, 1.0, -1.0))
    err = ((x_hat - x) ** 2).sum()
    m = np.abs(x).max()
    # closed form d m^2 - 2 m ||x||_1 + ||x||^2; 1e-12: float rounding of the sums
    assert err == pytest.approx(x.size * m**2 - 2 * m * np.abs(x).sum() + x @ x, rel=1e-12)
    # not contractive: a 1-sparse x attains the worst case (d - 1) ||x||^2
    d = 7
    e1 = np.zeros(d)
    e1[2] = -3.0
    err1 = float(((np.asarray(_run(scaled_sign(scale="linf"), e1)[0]) - e1) ** 2).sum())
    assert err1 == pytest.approx((d - 1) * 9.0, rel=1e-15) and err1 > e1 @ e1
    # flat |x|: exact
    flat = 0.7 * np.array([1.0, -1.0, 1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(_run(scaled_sign(scale="linf"), flat)[0]), flat)
    assert scaled_sign(scale="linf").facts.alpha is None
    # the l1 closed form does not describe it: none is offered
    assert closed_form(scaled_sign(scale="linf"), 10) is None
    assert closed_form(scaled_sign(), 10) is not None


def test_scaled_sign_default_keeps_its_label_and_numbers():
    """The l1 default: params (and so stored labels) unchanged, same numbers as spelled out."""
    from ratedist.sim.method import label

    assert label(make("scaled-sign")) == "scaled-sign:float_bits=32"
    assert label(scaled_sign(scale="l1")) == "scaled-sign:float_bits=32"
    assert label(make("scaled-sign:scale=linf")) == "scaled-sign:float_bits=32,scale=linf"
    x = jnp.asarray(_x())
    got = np.asarray(_run(scaled_sign(scale="l1"), x)[0])
    want = np.asarray(
        jax.jit(lambda v: jnp.sum(jnp.abs(v)) / v.shape[0] * jnp.where(v >= 0, 1.0, -1.0))(x)
    )
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- dense stochastic
def _qsgd_var(x, s):
    norm = np.linalg.norm(x)
    r = s * np.abs(x) / norm
    return (norm / s) ** 2 * np.sum((np.ceil(r) - r) * (r - np.floor(r)))


def _terngrad_var(x):
    return np.abs(x).max() * np.abs(x).sum() - x @ x


def _natural_var(x):
    a = np.abs(x)
    lo = 2.0 ** np.floor(np.log2(a))
    return np.sum((2 * lo - a) * (a - lo))


def _nuqsgd_var(x, s):
    levels = np.concatenate([[0.0], 2.0 ** -np.arange(s - 1, -1, -1)])
    norm = np.linalg.norm(x)
    r = np.abs(x) / norm
    j = np.searchsorted(levels, r, side="right") - 1
    j = np.minimum(j, s - 1)
    lo, hi = levels[j], levels[j + 1]
    return norm**2 * np.sum((hi - r) * (r - lo))


@pytest.mark.parametrize(
    ("comp", "exact_var"),
    [
        (qsgd(1), lambda x: _qsgd_var(x, 1)),
        (qsgd(4), lambda x: _qsgd_var(x, 4)),
        (nuqsgd(3), lambda x: _nuqsgd_var(x, 3)),
        (terngrad(), _terngrad_var),
        (natural(), _natural_var),
        (rand_k_unbiased(3), lambda x: (24 / 3 - 1) * (x @ x)),
        (rand_k(3), lambda x: (1 - 3 / 24) * (x @ x)),
    ],
    ids=["qsgd1", "qsgd4", "nuqsgd3", "terngrad", "natural", "randk-unb", "randk"],
)
def test_mean_squared_error_matches_closed_form(comp, exact_var, key):
    x = _x(24, seed=7)
    err = ((_mc(comp, x, key) - x[None, :]) ** 2).sum(1)
    expected = exact_var(x)
    assert abs(err.mean() - expected) <= N_SE * err.std(ddof=1) / math.sqrt(err.size)


@pytest.mark.parametrize("comp", [qsgd(3), nuqsgd(4)], ids=["qsgd", "nuqsgd"])
def test_qsgd_family_outputs_lie_on_the_level_grid(comp, key):
    s = comp.facts.params["s"]
    levels = (
        np.arange(s + 1) / s
        if comp.facts.name == "qsgd"
        else np.concatenate([[0.0], 2.0 ** -np.arange(s - 1, -1, -1)])
    )
    x = _x()
    out = _mc(comp, x, key, n=50)
    r = np.abs(out) / np.linalg.norm(x)
    assert np.all(np.min(np.abs(r[..., None] - levels), axis=-1) < 1e-12)
    assert np.all((np.sign(out) == np.sign(x)) | (out == 0))


def test_natural_outputs_are_neighbouring_powers_of_two(key):
    x = _x()
    out = _mc(natural(), x, key, n=50)
    lo = 2.0 ** np.floor(np.log2(np.abs(x)))
    assert np.all((np.abs(out) == lo) | (np.abs(out) == 2 * lo))
    assert np.all(np.sign(out) == np.sign(x))


def test_few_random_bits_round_with_documented_probability(key):
    # P(up) = round(p 2^n) / 2^n for n = 8: 0.3 -> 77/256
    p = jnp.full((200_000,), 0.3)
    freq = float(jnp.mean(_kernels.bernoulli(key, p, 8)))
    se = math.sqrt(0.3 * 0.7 / p.size)
    assert abs(freq - 77 / 256) <= N_SE * se
    # and the 8-bit QSGD stays close to unbiased (bias <= 2^-9 of a level step)
    assert not qsgd(4, rng_bits=8).facts.unbiased and qsgd(4).facts.unbiased


@pytest.mark.parametrize(
    "name",
    [
        "identity",
        "scaled-sign",
        "qsgd",
        "nuqsgd",
        "terngrad",
        "natural",
        "top-k",
        "threshold",
        "top-k-sign",
    ],
)
def test_zero_vector_compresses_to_zero(name, key):
    x_hat = np.asarray(_run(make(name), np.zeros(16), key=key)[0])
    np.testing.assert_array_equal(x_hat, 0.0)


# ----------------------------------------------------------------------------- scalar
_Q = ScalarQuantizer.from_levels([-1.5, -0.5, 0.5, 1.5])


def test_scalar_matches_the_quantizer_it_wraps(key):
    x = jnp.asarray(_x(100, seed=2))
    out = _run(scalar(_Q, normalize="none"), x)[0]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(_Q(x)))
    out = _run(scalar(_Q, rounding="stochastic", normalize="none"), x, key)[0]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(_Q.stochastic(key, x)))
    sigma = jnp.sqrt(jnp.mean(x * x))
    out = _run(scalar(_Q), x)[0]
    np.testing.assert_allclose(np.asarray(out), np.asarray(sigma * _Q(x / sigma)), rtol=1e-15)


def test_scalar_from_a_design_method(key):
    comp = make("scalar:method=lloyd-max,bits=2")
    x = jnp.asarray(_x(1000))
    _, _, info = _run(comp, x, key)
    assert float(info.value_bits) == 2 * 1000
    assert comp.facts.params["rounding"] == "deterministic"
    assert len(comp.facts.params["levels"]) == 4


# ----------------------------------------------------------------------------- bad input
def test_update_rejects_bad_x_and_missing_key():
    with pytest.raises(ValueError, match="x must"):
        _run(top_k(2), np.zeros((3, 4)))
    with pytest.raises(TypeError, match="x must"):
        top_k(2).update(jnp.arange(5), (), key=None)
    with pytest.raises(ValueError, match="k must"):
        _run(top_k(10), np.ones(5))
    with pytest.raises(ValueError, match="key"):
        _run(qsgd(2), np.ones(5))
    with pytest.raises(ValueError, match="key"):
        _run(rand_k(2), np.ones(5))


@pytest.mark.parametrize(
    ("factory", "kwargs", "exc", "arg"),
    [
        (top_k, {"k": 0}, ValueError, "k"),
        (top_k, {"k": 1.5}, TypeError, "k"),
        (rand_k, {"k": -1}, ValueError, "k"),
        (top_k_sign, {"k": True}, TypeError, "k"),
        (qsgd, {"s": 0}, ValueError, "s"),
        (nuqsgd, {"s": "3"}, TypeError, "s"),
        (qsgd, {"rng_bits": 12}, ValueError, "rng_bits"),
        (threshold, {"kappa": 0.0}, ValueError, "kappa"),
        (threshold, {"kappa": 1.5}, ValueError, "kappa"),
        (threshold, {"kappa": float("nan")}, ValueError, "kappa"),
        (scaled_sign, {"float_bits": 0}, ValueError, "float_bits"),
        (scaled_sign, {"scale": "l2"}, ValueError, "scale"),
        (terngrad, {"float_bits": 65}, ValueError, "float_bits"),
        (scalar, {}, ValueError, "quantizer"),
        (scalar, {"quantizer": [0, 1]}, TypeError, "quantizer"),
        (scalar, {"quantizer": _Q, "rounding": "up"}, ValueError, "rounding"),
        (scalar, {"quantizer": _Q, "normalize": "l1"}, ValueError, "normalize"),
        (scalar, {"quantizer": _Q, "method": "uniform"}, ValueError, "method"),
        (scalar, {"method": "no-such-design", "bits": 2}, ValueError, "method"),
        (scalar, {"method": "uniform"}, ValueError, "bits"),
        (error_feedback, {"inner": "top-k"}, TypeError, "inner"),
    ],
)
def test_factories_reject_bad_parameters(factory, kwargs, exc, arg):
    with pytest.raises(exc, match=arg):
        factory(**kwargs)


def test_error_feedback_under_vmap_and_scan_matches_a_python_loop(key):
    """Workers under vmap, steps under lax.scan: same trajectory as an explicit loop."""
    comp = error_feedback(qsgd(2))
    n, steps, d = 3, 4, 16
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((steps, n, d)))
    keys = jax.random.split(key, steps * n).reshape(steps, n)
    step = jax.vmap(lambda x, s, k: comp.update(x, s, key=k))

    def body(state, inp):
        x_hat, state, info = step(inp[0], state, inp[1])
        return state, (x_hat, info.container_bits)

    state0 = jax.vmap(comp.init)(xs[0])
    _, (x_hats, bits) = jax.jit(lambda s: jax.lax.scan(body, s, (xs, keys)))(state0)
    single = jax.jit(lambda x, s, k: comp.update(x, s, key=k))
    jstep = jax.jit(step)
    state = state0
    for t in range(steps):
        for w in range(n):
            s_w = jax.tree_util.tree_map(lambda a, w=w: a[w], state)
            x_hat, _, info = single(xs[t, w], s_w, keys[t, w])
            # 1e-12: scan/vmap may reorder the norm's float sums
            np.testing.assert_allclose(
                np.asarray(x_hats[t, w]), np.asarray(x_hat), rtol=1e-12, atol=1e-12
            )
            assert float(bits[t, w]) == float(info.container_bits)
        state = jstep(xs[t], state, keys[t])[1]


# ----------------------------------------------------------------------------- non-finite
def _zeros_compressor() -> Compressor:
    """A hand-built, unregistered compressor that always sends zeros."""

    def update(x, state, *, key=None):
        return jnp.zeros_like(x), state, CompressInfo(*([jnp.zeros(())] * 4))

    return Compressor(lambda x: (), update, Facts("zeros", {}, False, True))


def test_every_compressor_record_propagates_nonfinite_inputs():
    comp = _zeros_compressor()
    x = jnp.asarray([1.0, np.nan, np.inf, -np.inf, -2.0])
    x_hat = np.asarray(comp.update(x, (), key=None)[0])
    np.testing.assert_array_equal(x_hat, [0.0, np.nan, np.inf, -np.inf, 0.0])
    np.testing.assert_array_equal(np.asarray(comp.update(x=x, state=())[0]), x_hat)
    # rebuilding the record (``_replace``, ``_make``) keeps the one wrapper
    again = comp._replace(facts=comp.facts._replace(name="zeros2"))
    assert again.update is comp.update and isinstance(again, Compressor)
    assert Compressor(*comp).update is comp.update
    assert list(inspect.signature(comp.update).parameters) == ["x", "state", "key"]


@pytest.mark.parametrize(
    "spec",
    ["sign", "qsgd:s=4", "top-k:k=3", "rand-k:k=3", "lattice:lattice=e8", "threshold:kappa=0.5"],
)
def test_finite_outputs_are_the_unwrapped_outputs_bit_for_bit(spec, key):
    comp = make(spec)
    raw = comp.update.__wrapped__
    x = np.random.default_rng(3).standard_normal(24)
    x[[2, 7]] = [-0.0, 0.0]
    x[5] = 5e-324  # a subnormal
    for dtype in (jnp.float64, jnp.float32):
        xj = jnp.asarray(x, dtype)
        got = jax.jit(lambda v, k: comp.update(v, (), key=k)[0])(xj, key)
        ref = jax.jit(lambda v, k: raw(v, (), key=k)[0])(xj, key)
        np.testing.assert_array_equal(
            np.asarray(got).view(np.uint8), np.asarray(ref).view(np.uint8)
        )


def test_error_feedback_propagates_nonfinite_inputs():
    comp = error_feedback(sign())
    x = jnp.asarray([0.5, np.nan, -np.inf, -2.0])
    x_hat, state, _ = comp.update(x, comp.init(x))
    np.testing.assert_array_equal(np.asarray(x_hat), [1.0, np.nan, -np.inf, -1.0])
    assert np.isnan(np.asarray(state.error)[1:3]).all()  # inf - inf: the residual is NaN too
