"""Lattice quantizers: exact closest points vs brute force, membership, labels, G by Monte Carlo."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.quantizers.lattice import (
    LATTICES,
    Lattice,
    _lll_reduce,
    brute_force_closest_point,
    get_lattice,
    lattice_coefficients,
    lattice_from_labels,
    lattice_labels,
    normalized_second_moment,
    uniform_in_cell,
)

# (registry name, dim) of every lattice tested; "zn"/"dn" at small dims for the brute force.
CASES = [("z1", None), ("zn", 3), ("a2", None), ("dn", 3), ("d4", None), ("dn", 5), ("e8", None)]
IDS = [f"{n}{d or ''}" for n, d in CASES]

# Conway & Sloane, SPLAG Table 2.3 (decimal values as printed there; D3 from the same table).
G_TABLE = {"z1": 0.0833333, "a2": 0.0801875, "d3": 0.0787451, "d4": 0.0766032, "e8": 0.0716821}


def _lat(name, dim):
    return get_lattice(name, dim)


def _is_member(lat: Lattice, y: np.ndarray) -> np.ndarray:
    """Membership from the definition of each lattice (independent of the generator)."""
    y = np.asarray(y, np.float64)
    integral = np.all(np.abs(y - np.round(y)) < 1e-9, axis=-1)
    even = np.abs(np.mod(np.round(np.sum(y, axis=-1)), 2)) < 1e-9
    if lat.name.startswith("z"):
        return integral
    if lat.name.startswith("d"):
        return integral & even
    if lat.name == "e8":
        h = y - 0.5
        half_integral = np.all(np.abs(h - np.round(h)) < 1e-9, axis=-1)
        return (integral | half_integral) & even
    if lat.name == "a2":
        # (a + b/2, b sqrt(3)/2) with integers a, b.
        b = y[..., 1] * 2 / math.sqrt(3)
        a = y[..., 0] - b / 2
        return (np.abs(b - np.round(b)) < 1e-9) & (np.abs(a - np.round(a)) < 1e-9)
    raise AssertionError(lat.name)


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_closest_point_matches_brute_force(name, dim):
    lat = _lat(name, dim)
    rng = np.random.default_rng(7)
    n_points = 800 if lat.dim == 8 else 2000
    x = rng.normal(scale=3.0, size=(n_points, lat.dim))
    q = np.asarray(lat(x))
    _, d_brute = brute_force_closest_point(lat, x)
    d_fast = np.sum((x - q) ** 2, axis=1)
    # The brute force is optimal by construction: the fast point may not be farther (1e-12:
    # float64 rounding of squared distances ~10); equal distances count as ties.
    assert np.max(d_fast - d_brute) < 1e-12
    assert np.all(_is_member(lat, q))


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_half_integer_grid_points_match_brute_force(name, dim):
    # Points on a grid of spacing 1/4 hit many ties and boundaries; distances must still be
    # optimal and outputs lattice points.
    lat = _lat(name, dim)
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 9, size=(400 if lat.dim == 8 else 1000, lat.dim)) / 4.0
    q = np.asarray(lat(x))
    _, d_brute = brute_force_closest_point(lat, x)
    assert np.max(np.sum((x - q) ** 2, axis=1) - d_brute) < 1e-12
    assert np.all(_is_member(lat, q))


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_idempotent_translation_covariant_and_jit_safe(name, dim):
    lat = _lat(name, dim)
    rng = np.random.default_rng(11)
    x = rng.normal(scale=5.0, size=(500, lat.dim))
    q = np.asarray(lat(x))
    # Exact for the rational lattices; A2 points carry sqrt(3) so allow float64 rounding.
    np.testing.assert_allclose(np.asarray(lat(q)), q, rtol=0, atol=1e-12)
    # Translation by a lattice vector v (exact in float64): Q(x + v) = Q(x) + v.
    v = np.array([3, -2, 1, 0, 5, -1, 2, 4][: lat.dim], np.float64) @ lat.generator
    np.testing.assert_allclose(np.asarray(lat(x + v[None, :])), q + v[None, :], atol=1e-12)
    # lat(x) runs jitted; the bare function under vmap and batch axes of any rank agree.
    # (A2 outputs may differ in the last ulp between fused and unfused programs.)
    close = {"rtol": 0, "atol": 1e-12}
    np.testing.assert_allclose(np.asarray(jax.vmap(lat.closest_point)(x)), q, **close)
    batched = np.asarray(lat(x.reshape(5, 100, lat.dim))).reshape(q.shape)
    np.testing.assert_allclose(batched, q, **close)


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_float32_dtype_preserved_and_exact(name, dim):
    lat = _lat(name, dim)
    rng = np.random.default_rng(5)
    x32 = rng.normal(scale=3.0, size=(1000, lat.dim)).astype(np.float32)
    q32 = lat(jnp.asarray(x32))
    assert q32.dtype == jnp.float32
    # float32 output is within float32 rounding of the float64 closest point of the same input.
    q64 = np.asarray(lat(x32.astype(np.float64)))
    d32 = np.sum((x32.astype(np.float64) - np.asarray(q32, np.float64)) ** 2, axis=1)
    d64 = np.sum((x32.astype(np.float64) - q64) ** 2, axis=1)
    assert np.max(d32 - d64) < 1e-5  # float32 resolution of squared distances ~ 10


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_labels_are_a_bijection_and_coefficients_integral(name, dim):
    lat = _lat(name, dim)
    rng = np.random.default_rng(2)
    q = np.asarray(lat(rng.normal(scale=4.0, size=(2000, lat.dim))))
    k = np.asarray(lattice_coefficients(lat, q))
    np.testing.assert_allclose(k @ lat.generator, q, atol=1e-12)
    s = np.asarray(lattice_labels(lat, q))
    back = np.asarray(lattice_from_labels(lat, s))
    np.testing.assert_allclose(back, q, atol=1e-12)
    # Labels are floor(p_j / generator[j, j]) (exact by construction; checked in float here).
    expected = np.floor(q / np.diag(lat.generator)[None, :] + 1e-9)
    np.testing.assert_array_equal(s, expected)
    # Distinct points, distinct labels.
    assert len({tuple(r) for r in q.round(9)}) == len({tuple(r) for r in s})


@pytest.mark.parametrize(
    ("name", "dim", "volume", "kissing", "min_norm_sq"),
    [
        ("a2", None, math.sqrt(3) / 2, 6, 1.0),
        ("d4", None, 2.0, 24, 2.0),
        ("dn", 3, 2.0, 12, 2.0),
        ("e8", None, 1.0, 240, 2.0),
        ("zn", 3, 1.0, 6, 1.0),
    ],
)
def test_generator_volume_and_kissing_number(name, dim, volume, kissing, min_norm_sq):
    # Kissing numbers and volumes from SPLAG Table 1.2 identify the lattice independently of
    # the closest-point code.
    lat = _lat(name, dim)
    assert lat.volume == pytest.approx(volume, rel=1e-14)
    assert abs(np.linalg.det(lat.generator)) == pytest.approx(volume, rel=1e-12)
    b = _lll_reduce(lat.generator)
    # |k_j| <= |p| ||B^-1[:, j]|| for p = k B: this box holds every vector of norm^2 <= min_norm_sq.
    half = np.floor(math.sqrt(min_norm_sq) * np.linalg.norm(np.linalg.inv(b), axis=0) + 1e-9)
    ranges = [range(-int(h), int(h) + 1) for h in half]
    coeffs = np.array(list(itertools.product(*ranges)), np.float64)
    pts = coeffs @ b
    norms = np.sum(pts**2, axis=1)
    assert np.min(norms[norms > 1e-9]) == pytest.approx(min_norm_sq, rel=1e-12)
    assert np.sum(np.abs(norms - min_norm_sq) < 1e-9) == kissing


@pytest.mark.parametrize(
    ("name", "dim", "deep_hole"),
    [
        ("z1", None, [0.5]),
        ("a2", None, [0.5, 0.5 / math.sqrt(3)]),
        ("d4", None, [1.0, 0.0, 0.0, 0.0]),
        ("dn", 3, [1.0, 0.0, 0.0]),
        ("e8", None, [1.0, 0, 0, 0, 0, 0, 0, 0]),
    ],
)
def test_covering_radius_and_deep_holes(name, dim, deep_hole):
    lat = _lat(name, dim)
    hole = np.array([deep_hole])
    _, d2 = brute_force_closest_point(lat, hole)
    assert math.sqrt(d2[0]) == pytest.approx(lat.covering_radius, rel=1e-12)
    q = np.asarray(lat(hole))
    assert np.sum((hole - q) ** 2) == pytest.approx(d2[0], rel=1e-12)
    e = np.asarray(uniform_in_cell(lat, jax.random.key(0), (20000,)))
    assert np.max(np.linalg.norm(e, axis=1)) <= lat.covering_radius + 1e-12


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_uniform_in_cell_is_the_quantization_error(name, dim):
    lat = _lat(name, dim)
    e = np.asarray(uniform_in_cell(lat, jax.random.key(1), (4000,)))
    # Points of the Voronoi cell quantize to 0 (ties have probability 0).
    np.testing.assert_array_equal(np.asarray(lat(e)), np.zeros_like(e))
    # Zero mean within 5 SE per coordinate (the cells are centrally symmetric).
    se = e.std(axis=0, ddof=1) / math.sqrt(e.shape[0])
    assert np.all(np.abs(e.mean(axis=0)) < 5 * se)


@pytest.mark.parametrize("name", ["z1", "a2", "d3", "d4", "e8"])
def test_nsm_monte_carlo_two_digits(name):
    lat = get_lattice("dn", 3) if name == "d3" else get_lattice(name)
    g, se = normalized_second_moment(lat, 2**18, jax.random.key(42))
    ref = G_TABLE[name]
    # 5 SE at fixed seed, and 2 significant digits (|error| < half a unit of the 2nd digit).
    assert abs(g - ref) < 5 * se
    assert abs(g - ref) < 5e-4
    assert lat.nsm_reference == pytest.approx(ref, abs=5e-8)  # table printed to 7 digits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dim", "n_samples"),
    [("zn", 8, 2**23), ("a2", None, 2**24), ("d4", None, 2**23), ("e8", None, 2**22)],
)
def test_nsm_monte_carlo_three_digits(name, dim, n_samples):
    # Z is estimated in dimension 8 (G of Z^n does not depend on n; 8x less variance).
    lat = get_lattice(name, dim)
    ref = G_TABLE["z1" if name == "zn" else name]
    g, se = normalized_second_moment(lat, n_samples, jax.random.key(2024))
    assert se < 1.2e-5  # sizes chosen so that 3 digits are resolvable
    assert abs(g - ref) < 5 * se
    assert abs(g - ref) < 5e-5  # 3 significant digits: half a unit of the 3rd digit


def test_nsm_se_scales_like_one_over_sqrt_n():
    lat = get_lattice("z1")
    _, se1 = normalized_second_moment(lat, 4096, jax.random.key(0))
    _, se4 = normalized_second_moment(lat, 4 * 4096, jax.random.key(1), chunk=1000)
    assert se1 / se4 == pytest.approx(2.0, rel=0.1)  # sample std estimates agree to ~5 %


def test_registry_contents():
    assert set(LATTICES.names()) == {"z1", "zn", "a2", "dn", "d4", "e8"}
    assert LATTICES.facts("e8")["dim"] == 8
    assert LATTICES.facts("zn")["dim"] is None
    assert get_lattice("zn", 4).dim == 4
    assert get_lattice("e8") == get_lattice("e8", 8)


def test_bad_inputs():
    with pytest.raises(ValueError, match="lattice 'q8'"):
        get_lattice("q8")
    with pytest.raises(TypeError, match="name"):
        get_lattice(8)
    with pytest.raises(ValueError, match="dim"):
        get_lattice("zn")
    with pytest.raises(ValueError, match="dim"):
        get_lattice("e8", 4)
    with pytest.raises(ValueError, match="dim"):
        get_lattice("zn", 0)
    with pytest.raises(ValueError, match="x must have shape"):
        get_lattice("e8")(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="x must have shape"):
        get_lattice("a2")(np.float64(1.0))
    with pytest.raises(ValueError, match="n_samples"):
        normalized_second_moment(get_lattice("a2"), 1, jax.random.key(0))
    with pytest.raises(TypeError, match="n_samples"):
        normalized_second_moment(get_lattice("a2"), 10.5, jax.random.key(0))
    with pytest.raises(TypeError, match="lattice"):
        normalized_second_moment("e8", 100, jax.random.key(0))
    with pytest.raises(ValueError, match="x must have shape"):
        brute_force_closest_point(get_lattice("d4"), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="max_candidates"):
        brute_force_closest_point(get_lattice("e8"), np.full((2, 8), 0.37), max_candidates=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 4, 5, 8])
def test_native_dn_decoder_equals_the_jax_one_bit_for_bit(n, dtype):
    """On CPU closest_point_dn is a native pass (chunks of rows for n = 4 and 8, row by row
    otherwise): the same bits as its jax.numpy form on ties (halves, equal errors), exact
    integers and -0.0, NaN, +-inf and huge entries; under vmap; zero derivative."""
    from ratedist import _native
    from ratedist.quantizers import lattice as L

    if not _native.status().available:
        pytest.skip("native kernels not built here")
    rng = np.random.default_rng(n)
    x = rng.standard_normal((1003, n)) * 3  # 1003 rows: full chunks of 16 and a tail
    x[::7] = np.round(x[::7] * 2) / 2
    x[1::11, 0] = -0.0
    x[2::13] = np.round(x[2::13])
    x[3::17, -1] = np.nan
    x[4::19, 0] = np.inf
    x[5::23, -1] = -np.inf
    x[6::29, 0] = 1e30
    x = jnp.asarray(x.astype(dtype))
    assert "ratedist_closest_dn" in jax.jit(L.closest_point_dn).lower(x).as_text()
    native = np.asarray(jax.jit(L.closest_point_dn)(x))
    pure = np.asarray(jax.jit(L._closest_point_dn_jax)(x))
    assert native.dtype == pure.dtype == dtype
    assert native.tobytes() == pure.tobytes()
    batched = jax.vmap(L.closest_point_dn)(x.reshape(17, 59, n))
    assert np.asarray(batched).tobytes() == native.tobytes()
    finite = x[np.all(np.isfinite(np.asarray(x)), axis=1)]
    grad = jax.grad(lambda v: jnp.sum(L.closest_point_dn(v) * v))(finite)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(L._closest_point_dn_jax(finite)))
