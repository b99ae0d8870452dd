"""The lattice compressor: reconstruction and bits vs an independent numpy reference, MSE vs G."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ratedist.compressors.lattice  # noqa: F401  (registers "lattice")
from ratedist.compressors import COMPRESSORS, error_feedback, make
from ratedist.compressors.lattice import lattice
from ratedist.quantizers.lattice import brute_force_closest_point, get_lattice

NAMES = ["zn", "a2", "d4", "e8"]
# SPLAG Table 2.3, typed independently of the library's constants.
G_TABLE = {"zn": 1 / 12, "a2": 0.0801875, "d4": 0.0766032, "e8": 0.0716821}
# Covering radius^2 / V^(2/n): Z 1/4, A2 (1/3)/(sqrt3/2), D4 1/sqrt2, E8 1 (SPLAG ch. 4).
RHO2 = {"zn": 0.25, "a2": 2 / (3 * math.sqrt(3)), "d4": 1 / math.sqrt(2), "e8": 1.0}


def _apply(comp, x, key=None):
    """One jitted call (compiling one program is much cheaper than eager op-by-op dispatch)."""
    return jax.jit(lambda v: comp.update(v, comp.init(v), key=key))(jnp.asarray(x))


def _block_lattice(name):
    return get_lattice("z1" if name == "zn" else name)


def _reference(x, name, step, float_bits=32):
    """numpy reference: brute-force closest points, labels, bit counts (no dither)."""
    lat = _block_lattice(name)
    n, d = lat.dim, x.size
    m = -(-d // n)
    sigma = math.sqrt(float(x @ x) / d)
    scale = sigma * step / lat.volume ** (1 / n)
    y = np.zeros(m * n)
    if scale > 0:
        y[:d] = x / scale
    p, _ = brute_force_closest_point(lat, y.reshape(m, n))
    x_hat = (p.reshape(-1)[:d] * scale) if scale > 0 else np.zeros(d)
    labels = np.floor(p / np.diag(lat.generator)[None, :] + 1e-9).astype(np.int64)
    widths = [int(labels[:, j].max() - labels[:, j].min()).bit_length() for j in range(n)]
    value_bits = m * sum(widths)
    side_bits = float_bits + n * (float_bits + math.ceil(math.log2(float_bits + 1)))
    entropy = float_bits
    for j in range(n):
        _, c = np.unique(labels[:, j], return_counts=True)
        entropy += float(np.sum(c * np.log2(m / c)))
    return x_hat, labels, (value_bits, 0, side_bits, entropy)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [7, 1000])
def test_output_and_bits_match_numpy_reference(name, d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal(d)
    step = 0.4
    comp = lattice(name, step=step)
    x_hat, _, info = _apply(comp, x)
    ref_hat, _, ref_bits = _reference(x, name, step)
    # 1e-12: the same lattice point times the same scale, up to float64 rounding of the norm.
    np.testing.assert_allclose(np.asarray(x_hat), ref_hat, rtol=0, atol=1e-12)
    got = tuple(float(v) for v in info)
    assert got[:3] == tuple(float(v) for v in ref_bits[:3])  # integer counts: exact
    assert got[3] == pytest.approx(ref_bits[3], rel=1e-12)  # sums of c log2(m/c)
    assert float(info.container_bits) == sum(ref_bits[:3])


def test_float_bits_enter_side_information():
    x = np.random.default_rng(0).standard_normal(64)
    _, _, i32 = _apply(lattice("e8", float_bits=32), x)
    _, _, i16 = _apply(lattice("e8", float_bits=16), x)
    # sigma_hat + 8 x (lo_j, w_j): 32 + 8 (32 + 6) vs 16 + 8 (16 + 5).
    assert float(i32.side_bits) == 32 + 8 * 38
    assert float(i16.side_bits) == 16 + 8 * 21
    assert float(i32.value_bits) == float(i16.value_bits)


def test_entropy_layer_upper_bounds_joint_empirical_entropy():
    x = np.random.default_rng(1).standard_normal(4096)
    comp = lattice("e8", step=1.0)
    _, _, info = _apply(comp, x)
    _, labels, _ = _reference(x, "e8", 1.0)
    _, c = np.unique(labels, axis=0, return_counts=True)
    joint = float(np.sum(c * np.log2(labels.shape[0] / c)))
    assert float(info.entropy_bits) - 32 >= joint - 1e-9  # subadditivity of entropy
    assert float(info.entropy_bits) <= float(info.container_bits)


@pytest.mark.parametrize("name", NAMES)
def test_zero_vector_is_free_and_exact(name):
    comp = lattice(name)
    x_hat, _, info = _apply(comp, np.zeros(13))
    np.testing.assert_array_equal(np.asarray(x_hat), np.zeros(13))
    assert float(info.value_bits) == 0.0
    assert float(info.entropy_bits) == 32.0


@pytest.mark.parametrize("name", NAMES)
def test_dithered_mse_is_g_step_squared_for_any_step(name, key):
    # Subtractive dither: error = scale * (uniform on the cell), independent of x, for ANY
    # step (here a coarse one): E||x_hat - x||^2 = G step^2 ||x||^2 exactly.
    step = 1.7
    x = jnp.asarray(np.random.default_rng(2).standard_t(3.0, 42))  # 42: E8/D4 blocks padded
    comp = lattice(name, step=step, dither=True)
    keys = jax.random.split(key, 3000)
    xh = jax.jit(jax.vmap(lambda k: comp.update(x, (), key=k)[0]))(keys)
    err = np.sum((np.asarray(xh) - np.asarray(x)[None, :]) ** 2, axis=1) / float(x @ x)
    se = err.std(ddof=1) / math.sqrt(err.size)
    assert abs(err.mean() - G_TABLE[name] * step**2) < 5 * se
    assert comp.facts.omega(42) == pytest.approx(G_TABLE[name] * step**2, rel=1e-6)
    assert comp.facts.unbiased and not comp.facts.deterministic and comp.facts.alpha is None
    # unbiased: mean output within 5 SE per coordinate
    dev = np.asarray(xh).mean(0) - np.asarray(x)
    sd = np.asarray(xh).std(0, ddof=1) / math.sqrt(xh.shape[0])
    assert np.all(np.abs(dev) < 5 * sd)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_mse_on_gaussian_matches_g_step_squared(name, key):
    # At step 0.3 the error of a Gaussian input is uniform on the cell up to terms of order
    # exp(-2 pi^2 / step^2) ~ 1e-95, so E||e||^2/(d sigma^2) = G step^2 (E sigma_hat^2 = 1).
    step, d, trials = 0.3, 512, 200
    comp = lattice(name, step=step)
    xs = jax.random.normal(key, (trials, d))
    xh = jax.jit(jax.vmap(lambda x: comp.update(x, ())[0]))(xs)
    err = np.sum((np.asarray(xh) - np.asarray(xs)) ** 2, axis=1) / d
    se = err.std(ddof=1) / math.sqrt(trials)
    assert abs(err.mean() - G_TABLE[name] * step**2) < 5 * se


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("step", [0.5, 1.2])
def test_deterministic_facts_and_pathwise_bound(name, step):
    comp = lattice(name, step=step)
    assert comp.facts.deterministic and not comp.facts.unbiased and comp.facts.omega is None
    n = _block_lattice(name).dim
    if RHO2[name] * step**2 >= 1:
        assert comp.facts.alpha is None
        return
    for d in (5, 100):
        expected = 1 - (math.ceil(d / n) / d) * RHO2[name] * step**2
        assert comp.facts.alpha(d) == pytest.approx(expected, rel=1e-12)
        x = np.random.default_rng(d).standard_normal(d) ** 3  # heavy-tailed entries
        x_hat = np.asarray(_apply(comp, x)[0])
        assert np.sum((x_hat - x) ** 2) <= (1 - comp.facts.alpha(d)) * (x @ x) * (1 + 1e-12)


def test_registry_entry_and_spec_string():
    facts = COMPRESSORS.facts("lattice")
    assert set(facts["params"]) == {"lattice", "step", "dither", "float_bits"}
    comp = make("lattice:lattice=d4,step=0.3,dither=true")
    assert comp.facts.params == {"lattice": "d4", "step": 0.3, "dither": True, "float_bits": 32}
    assert make("lattice").facts.params["lattice"] == "e8"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_error_feedback_wrapper_and_dtype(dtype, key):
    comp = error_feedback(lattice("a2", step=0.7))
    x = jnp.asarray(np.random.default_rng(3).standard_normal(31), dtype)
    state = comp.init(x)
    x_hat, state, _ = jax.jit(lambda x, s: comp.update(x, s, key=key))(x, state)
    assert x_hat.dtype == dtype and state.error.dtype == dtype
    np.testing.assert_array_equal(np.asarray(state.error), np.asarray(x) - np.asarray(x_hat))


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="lattice"):
        lattice("q8")
    with pytest.raises(ValueError, match="lattice"):
        lattice("z1")  # the scalar lattice is spelled "zn"
    with pytest.raises(ValueError, match="step"):
        lattice("e8", step=0.0)
    with pytest.raises(ValueError, match="step"):
        lattice("e8", step=-1.0)
    with pytest.raises(ValueError, match="step"):
        lattice("e8", step=float("nan"))
    with pytest.raises(TypeError, match="step"):
        lattice("e8", step="big")
    with pytest.raises(TypeError, match="dither"):
        lattice("e8", dither=1)
    with pytest.raises(ValueError, match="float_bits"):
        lattice("e8", float_bits=0)
    comp = lattice("e8")
    with pytest.raises(ValueError, match="x must be"):
        comp.update(jnp.zeros((3, 8)), ())
    with pytest.raises(ValueError, match="x must be"):
        comp.update(jnp.zeros((0,)), ())
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        comp.update(jnp.arange(8), ())
    with pytest.raises(ValueError, match="key"):
        lattice("e8", dither=True).update(jnp.ones(8), ())
    with pytest.raises(ValueError, match="lattice"):
        make("lattice:lattice=hex")
