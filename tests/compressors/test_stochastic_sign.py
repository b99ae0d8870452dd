"""The stochastic 1-bit quantizer ``stochastic-sign``: moments against ``d R^2 − ||v||^2``,
exact bit accounting, the clipped regime of a known bound, facts and bad inputs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.compressors import FLOAT_BITS, make, stochastic_sign

N_SE = 5.0  # Monte Carlo tolerance in standard errors (house rule)
D = 40
M = 20000


def _draws(comp, v: np.ndarray, seed: int) -> np.ndarray:
    keys = jax.random.split(jax.random.key(seed), M)
    fn = jax.jit(jax.vmap(lambda k: comp.update(jnp.asarray(v), comp.init(v), key=k)[0]))
    return np.asarray(fn(keys))


def _R(scale: str, v: np.ndarray, bound: float | None) -> float:
    return {"l2": np.linalg.norm(v), "linf": np.max(np.abs(v)), "bound": bound}[scale]


@pytest.mark.parametrize(("scale", "bound"), [("l2", None), ("linf", None), ("bound", 3.5)])
def test_mean_and_mse_match_the_formula(scale, bound):
    v = np.random.default_rng(0).standard_normal(D)
    v = np.clip(v, -3.0, 3.0)  # inside the box of the known bound
    q = _draws(stochastic_sign(scale, bound), v, seed=1)
    R = _R(scale, v, bound)
    np.testing.assert_allclose(np.abs(q), R, rtol=1e-15)  # every output is ±R
    err = ((q - v) ** 2).sum(axis=1)
    # mean: per coordinate, SE floored at sqrt(mse / (d M)) (|v_j| = R is never flipped)
    se = np.maximum(q.std(axis=0, ddof=1), math.sqrt(err.mean() / D)) / math.sqrt(M)
    assert np.all(np.abs(q.mean(axis=0) - v) <= N_SE * se)
    mse_formula = D * R * R - float(v @ v)  # independent numpy evaluation of d R^2 − ||v||^2
    assert abs(err.mean() - mse_formula) <= N_SE * err.std(ddof=1) / math.sqrt(M)
    # per coordinate: E (Q_j − v_j)^2 = R^2 − v_j^2
    per = ((q - v) ** 2).mean(axis=0)
    se_per = ((q - v) ** 2).std(axis=0, ddof=1) / math.sqrt(M) + 1e-12 * R * R
    assert np.all(np.abs(per - (R * R - v * v)) <= N_SE * se_per)


def test_up_probability_by_coordinate():
    v = np.array([-1.0, -0.5, 0.0, 0.25, 1.0])
    q = _draws(stochastic_sign("bound", 1.0), v, seed=2)
    frac_up = (q > 0).mean(axis=0)
    p = (1 + v) / 2
    se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / M)
    assert np.all(np.abs(frac_up - p) <= N_SE * se)
    assert frac_up[0] == 0.0 and frac_up[-1] == 1.0


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(("scale", "bound", "rng_bits"), [("l2", None, 32), ("bound", 0.8, 16)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_draws_are_the_streams_uniforms_below_the_up_probability(
    native, scale, bound, rng_bits, dtype, monkeypatch
):
    """Bit for bit: ``x_hat_j = +R`` iff ``u_j < clip((1 + v_j/R)/2, 0, 1)``, ``u`` the
    quantizer stream's uniforms (written out here from the pure-JAX stream), on the native
    kernel and on the pure-JAX path; the entropy counts the +R draws."""
    from ratedist.compressors import _kernels

    if not native:
        monkeypatch.setattr(_kernels, "native_available", lambda dtype: False)
    with jax.enable_x64(dtype == jnp.float64):
        v = jnp.asarray(np.random.default_rng(3).standard_normal(1003), dtype)
        v = v.at[:3].set(jnp.asarray([0.0, -0.0, 2.0], dtype))  # zeros and a clipped entry
        key = jax.random.key(5)
        comp = stochastic_sign(scale, bound, rng_bits=rng_bits)
        q, _, info = jax.jit(lambda x: comp.update(x, comp.init(x), key=key))(v)
        R = jnp.sqrt(jnp.sum(v * v)) if scale == "l2" else jnp.asarray(bound, dtype)
        p = jnp.clip((1 + v / R) / 2, 0, 1)
        kd = _kernels.key_words(key)
        if rng_bits == 32:
            u = _kernels.stream_uniform(kd, v.shape[0], dtype)
        else:
            u = (_kernels.stream_fields(kd, v.shape[0], rng_bits).astype(dtype) + 0.5) / 2**16
        want = jnp.where(u < p, R, -R)
        np.testing.assert_array_equal(np.asarray(q), np.asarray(want))
        assert q.dtype == dtype
        n_up = int(np.sum(np.asarray(want) > 0))
        h = -(n_up * math.log2(n_up / 1003) + (1003 - n_up) * math.log2(1 - n_up / 1003))
        side = 0 if scale == "bound" else FLOAT_BITS
        assert float(info.entropy_bits) == pytest.approx(h + side, rel=1e-5)


def test_known_bound_clips_beyond_the_box_and_is_declared_biased():
    comp = stochastic_sign("bound", 1.0)
    v = jnp.array([3.0, -2.0, 0.5])
    for i in range(5):
        q, _, _ = comp.update(v, comp.init(v), key=jax.random.key(i))
        assert float(q[0]) == 1.0 and float(q[1]) == -1.0
    assert comp.facts.unbiased is False and comp.facts.omega is None


@pytest.mark.parametrize(("scale", "bound", "side"), [("l2", None, 32), ("bound", 2.0, 0)])
@pytest.mark.parametrize(("d", "dtype"), [(D, np.float64), (1000, np.float32)])
def test_bits_are_one_per_coordinate_plus_the_sent_norm(scale, bound, side, d, dtype):
    comp = stochastic_sign(scale, bound)
    x = np.random.default_rng(d).uniform(-1, 1, d).astype(dtype)
    q, _, info = comp.update(jnp.asarray(x), comp.init(x), key=jax.random.key(0))
    q = np.asarray(q)
    assert q.dtype == dtype
    n_up = int((q > 0).sum())
    counts = np.array([n_up, d - n_up])
    counts = counts[counts > 0]
    h = float(np.sum(counts * np.log2(d / counts)))  # empirical entropy of the signs, numpy
    assert (float(info.value_bits), float(info.index_bits), float(info.side_bits)) == (d, 0, side)
    assert float(info.entropy_bits) == pytest.approx(h + side, rel=1e-9, abs=1e-9)
    assert float(info.container_bits) == d + side


def test_facts_declare_omega_d_minus_one_for_the_sent_norms():
    for scale in ("l2", "linf"):
        comp = stochastic_sign(scale)
        assert comp.facts.unbiased and not comp.facts.deterministic
        assert comp.facts.omega(D) == D - 1
    # omega = d − 1 is attained with R = ||v||_2 for every v
    v = np.random.default_rng(3).standard_normal(D)
    assert D * float(v @ v) - float(v @ v) == pytest.approx((D - 1) * float(v @ v), rel=1e-15)
    coarse = stochastic_sign("l2", rng_bits=16)
    assert coarse.facts.unbiased is False and coarse.facts.omega is None


def test_zero_and_non_finite_inputs():
    for scale, bound in (("l2", None), ("linf", None), ("bound", 1.0)):
        comp = stochastic_sign(scale, bound)
        z = jnp.zeros(5)
        q, _, _ = comp.update(z, comp.init(z), key=jax.random.key(0))
        if scale != "bound":
            np.testing.assert_array_equal(np.asarray(q), 0.0)
        for bad in (np.inf, np.nan):
            x = jnp.array([0.5, bad, -0.2])
            q, _, _ = comp.update(x, comp.init(x), key=jax.random.key(0))
            assert not np.isfinite(np.asarray(q)[1])


def test_spec_strings():
    comp = make("stochastic-sign:scale=bound,bound=2")
    assert comp.facts.params["bound"] == 2.0 and comp.facts.params["scale"] == "bound"
    assert make("stochastic-sign").facts.params["scale"] == "l2"
    assert make("stochastic-sign:scale=linf,float_bits=16").facts.params["float_bits"] == 16


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"scale": "bound", "bound": 0.0}, ValueError, "bound must be > 0"),
        ({"scale": "bound", "bound": -1.0}, ValueError, "bound must be > 0"),
        ({"scale": "bound"}, ValueError, "bound must be given"),
        ({"scale": "l2", "bound": 1.0}, ValueError, "bound must be None with scale='l2'"),
        ({"scale": "l1"}, ValueError, "scale must be one of"),
        ({"rng_bits": 12}, ValueError, "rng_bits must be one of"),
        ({"float_bits": 0}, ValueError, "float_bits must be >= 1"),
        ({"scale": "bound", "bound": "2"}, TypeError, "bound must be a real number"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        stochastic_sign(**kwargs)


def test_missing_key_is_refused():
    comp = stochastic_sign()
    with pytest.raises(ValueError, match="needs key="):
        comp.update(jnp.ones(3), comp.init(None))


def test_float_bits_default():
    assert stochastic_sign().facts.params["float_bits"] == FLOAT_BITS
