"""Generic tests run over every registered compressor and each of its ``examples``.

A new registry entry is enrolled automatically; a property that a compressor does not declare
(``unbiased``, ``omega``, ``alpha``) is skipped with an explicit reason, never silently.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.compressors import COMPRESSORS, error_feedback, make

D = 24  # divisible by 2, 4 and 8 so that blockwise (lattice) compressors fit too
N_MC = 4000  # Monte Carlo draws: 5 SE at this size is a few percent of the mean error
N_SE = 5.0  # Monte Carlo tolerance in standard errors (house rule)


def _cases() -> list:
    out = []
    for name in COMPRESSORS.names():
        for i, params in enumerate(COMPRESSORS.facts(name).get("examples", [{}])):
            out.append(pytest.param(name, params, id=f"{name}-{i}"))
    return out


CASES = _cases()
# Structural checks (dtype, jit/vmap, retrace, EF identity) compile one program per case and do
# not depend much on the parameters: the first example of each compressor runs by default,
# the others under ``-m slow``. Properties (unbiasedness, omega, alpha, bits) run on all.
STRUCT_CASES = [
    pytest.param(*c.values, id=c.id, marks=() if c.id.endswith("-0") else pytest.mark.slow)
    for c in CASES
]
_COMPS: dict = {}


def _comp(name: str, params: dict):
    """One compressor object per case, so that jitted helpers below are compiled once."""
    cid = (name, repr(params))
    if cid not in _COMPS:
        _COMPS[cid] = make(name, **params)
    return _COMPS[cid]


def _where(holds) -> list:
    """The cases a property applies to (``holds(compressor)``), so that a skip means something."""
    return [c for c in CASES if holds(_comp(*c.values))]


def _inputs(d: int = D, seed: int = 0) -> dict[str, np.ndarray]:
    """Gaussian, heavy-tailed, spiky, flat and geometric test vectors (float64)."""
    rng = np.random.default_rng(seed)
    spike = 0.01 * rng.standard_normal(d)
    spike[rng.integers(d)] = 10.0
    return {
        "gauss": rng.standard_normal(d),
        "student2": rng.standard_t(2.0, d),
        "spike": spike,
        "flat": rng.choice([-1.0, 1.0], d) * 0.7,
        "geometric": 0.5 ** np.arange(d) * rng.choice([-1.0, 1.0], d),
    }


_JIT_FNS: dict = {}
_MC_FNS: dict = {}


def _jit(comp):
    """``jit(update)`` per compressor plus the list its Python trace appends to."""
    if id(comp) not in _JIT_FNS:
        traces: list = []

        def step(x, state, k):
            traces.append(1)  # Python side effect: runs once per trace, never when cached
            return comp.update(x, state, key=k)

        _JIT_FNS[id(comp)] = (jax.jit(step), traces)
    return _JIT_FNS[id(comp)]


_MC_CACHE: dict = {}


def _mc(comp, v: np.ndarray, seed: int, n: int = N_MC) -> np.ndarray:
    """``n`` independent outputs ``C(x)`` (rows), cached per (compressor, input, seed)."""
    ck = (id(comp), v.tobytes(), seed, n)
    if ck not in _MC_CACHE:
        if id(comp) not in _MC_FNS:
            _MC_FNS[id(comp)] = jax.jit(
                jax.vmap(lambda x, k: comp.update(x, comp.init(x), key=k)[0], in_axes=(None, 0))
            )
        keys = jax.random.split(jax.random.key(seed), n)
        _MC_CACHE[ck] = np.asarray(_MC_FNS[id(comp)](jnp.asarray(v), keys))
    return _MC_CACHE[ck]


def test_registry_entries_declare_their_facts():
    for name in COMPRESSORS.names():
        facts = COMPRESSORS.facts(name)
        for fact in ("unbiased", "deterministic", "params", "examples"):
            assert fact in facts, f"{name} lacks fact {fact!r}"
        assert len(facts["examples"]) >= 1, name
        for ex in facts["examples"]:
            assert set(ex) <= set(facts["params"]), (name, ex)


@pytest.mark.parametrize(("name", "params"), CASES)
def test_facts_of_instance(name, params):
    comp = make(name, **params)
    assert comp.facts.name == name
    if comp.facts.unbiased:
        # omega, or an absolute bound for a fixed-resolution quantizer (no omega exists there)
        assert comp.facts.omega is not None or comp.facts.abs_mse is not None, (
            "an unbiased compressor must declare omega or abs_mse"
        )
    for const in (comp.facts.omega, comp.facts.alpha, comp.facts.abs_mse):
        if const is not None:
            assert math.isfinite(const(D)) and const(D) >= 0
    if comp.facts.alpha is not None:
        assert 0 <= comp.facts.alpha(D) <= 1


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
@pytest.mark.parametrize(("d", "dtype"), [(D, jnp.float64), (1000, jnp.float32)])
def test_dtype_shape_and_info(name, params, d, dtype, key):
    comp = _comp(name, params)
    f, _ = _jit(comp)
    x = jnp.asarray(_inputs(d)["gauss"], dtype)
    state = comp.init(x)
    x_hat, state2, info = f(x, state, key)
    assert x_hat.dtype == dtype and x_hat.shape == x.shape
    assert jax.tree_util.tree_structure(state2) == jax.tree_util.tree_structure(state)
    for a, b in zip(
        jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(state2), strict=True
    ):
        assert a.dtype == b.dtype and a.shape == b.shape
    for field in (*info, info.container_bits):
        arr = jnp.asarray(field)
        assert arr.shape == () and jnp.issubdtype(arr.dtype, jnp.floating)
        assert np.isfinite(float(arr)) and float(arr) >= 0
    assert np.all(np.isfinite(np.asarray(x_hat)))


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
def test_zero_vector_gives_finite_output(name, params, key):
    comp = _comp(name, params)
    f, _ = _jit(comp)
    x = jnp.zeros((D,), jnp.float64)
    x_hat, _, info = f(x, comp.init(x), key)
    assert np.all(np.isfinite(np.asarray(x_hat)))
    assert all(np.isfinite(float(v)) for v in info)


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
def test_jit_and_vmap_agree(name, params, key):
    comp = _comp(name, params)
    f, _ = _jit(comp)
    xs = jnp.asarray(np.stack(list(_inputs(seed=3).values())[:3]))
    keys = jax.random.split(key, 3)
    batched = jax.jit(jax.vmap(lambda x, k: comp.update(x, comp.init(x), key=k)))(xs, keys)
    # 1e-10: jit/vmap may fuse or reorder float ops (e.g. the norm), far below 1e-10.
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for i in range(3):
        xj, _, infoj = f(xs[i], comp.init(xs[i]), keys[i])
        np.testing.assert_allclose(np.asarray(batched[0][i]), np.asarray(xj), **tol)
        for fj, fb in zip(infoj, batched[2], strict=True):
            np.testing.assert_allclose(float(fb[i]), float(fj), rtol=1e-10)


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.sparse is not None))
def test_sparse_form_densifies_to_update(name, params, key):
    comp = _comp(name, params)
    if comp.sparse is None:
        pytest.skip(f"{name} offers no sparse form")
    for v in _inputs(seed=5).values():
        x = jnp.asarray(v)
        x_hat, _, info = comp.update(x, comp.init(x), key=key)
        vals, idx, _, sinfo = comp.sparse(x, comp.init(x), key=key)
        idx = np.asarray(idx)
        assert idx.dtype == np.int32 and np.all(np.diff(idx) > 0)  # distinct, increasing
        dense = np.zeros(D)
        dense[idx] = np.asarray(vals)
        np.testing.assert_array_equal(np.asarray(x_hat), dense)
        assert [float(a) for a in info] == [float(b) for b in sinfo]


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
def test_second_call_does_not_retrace(name, params, key):
    comp = _comp(name, params)
    f, traces = _jit(comp)
    inputs = _inputs()
    x = jnp.asarray(inputs["gauss"])
    jax.block_until_ready(f(x, comp.init(x), key))
    n0 = len(traces)
    for v in (inputs["spike"], inputs["flat"]):
        x = jnp.asarray(v)
        jax.block_until_ready(f(x, comp.init(x), jax.random.fold_in(key, 1)))
    assert len(traces) == n0


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.facts.unbiased))
def test_unbiased(name, params):
    comp = _comp(name, params)
    if not comp.facts.unbiased:
        pytest.skip(f"{name} {params} is not declared unbiased")
    for label, v in _inputs(seed=11).items():
        samples = _mc(comp, v, seed=11)
        m = samples.shape[0]
        dev = (samples - v[None, :]).mean(0)
        err = ((samples - v[None, :]) ** 2).sum(1).mean()  # estimate of E||C(x) - x||^2
        # (a) Aggregate: E||mean - x||^2 = E||C(x) - x||^2 / M under H0, and the ratio is a
        # weighted sum of chi2_1 variables with weights summing to 1, so 25 = (5 SE)^2 is the
        # 5-SE threshold even in the worst case of one dominant coordinate.
        assert m * float(dev @ dev) <= N_SE**2 * err + 1e-24, (label, m * float(dev @ dev), err)
        # (b) Per coordinate at 5 SE, with the SE floored at sqrt(err / (d M)): a coordinate
        # whose rounding is a rare event (p ~ 1e-5) shows zero sample variance in M draws.
        se = np.maximum(samples.std(0, ddof=1), math.sqrt(err / v.size)) / math.sqrt(m)
        bad = np.abs(dev) > N_SE * se + 1e-12 * np.linalg.norm(v)
        assert not bad.any(), (label, np.flatnonzero(bad), dev[bad], se[bad])


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.facts.omega is not None))
@pytest.mark.parametrize("seed", [0, 1])
def test_variance_bound_omega(name, params, seed):
    comp = _comp(name, params)
    if comp.facts.omega is None:
        pytest.skip(f"{name} {params} declares no omega")
    omega = comp.facts.omega(D)
    for label, v in _inputs(seed=seed).items():
        err = ((_mc(comp, v, seed) - v[None, :]) ** 2).sum(1)
        mean, se = err.mean(), err.std(ddof=1) / math.sqrt(err.size)
        bound = omega * float(v @ v)
        assert mean <= bound + N_SE * se + 1e-12 * bound, (label, mean, bound, se)


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.facts.alpha is not None))
@pytest.mark.parametrize("seed", [0, 1])
def test_contraction_alpha(name, params, seed, key):
    comp = _comp(name, params)
    if comp.facts.alpha is None:
        pytest.skip(f"{name} {params} declares no alpha")
    alpha = comp.facts.alpha(D)
    for label, v in _inputs(seed=seed).items():
        bound = (1 - alpha) * float(v @ v)
        if comp.facts.deterministic:
            x_hat, _, _ = _jit(comp)[0](jnp.asarray(v), comp.init(jnp.asarray(v)), key)
            err = float(((np.asarray(x_hat) - v) ** 2).sum())
            # pathwise; 1e-12 relative covers float rounding of the sums
            assert err <= bound + 1e-12 * float(v @ v), (label, err, bound)
        else:
            err = ((_mc(comp, v, seed) - v[None, :]) ** 2).sum(1)
            mean, se = err.mean(), err.std(ddof=1) / math.sqrt(err.size)
            assert mean <= bound + N_SE * se + 1e-12 * float(v @ v), (label, mean, bound, se)


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.facts.abs_mse is not None))
def test_absolute_mse_bound(name, params, key):
    """``E||C(x) - x||^2 <= abs_mse(d)`` for every input (pathwise when deterministic), also
    at inputs far larger than the bound (``x * 1e3``) and far smaller (``x * 1e-3``)."""
    comp = _comp(name, params)
    if comp.facts.abs_mse is None:
        pytest.skip(f"{name} {params} declares no abs_mse")
    bound = comp.facts.abs_mse(D)
    for label, v in _inputs(seed=4).items():
        for scale in (1e-3, 1.0, 1e3):
            x = v * scale
            if comp.facts.deterministic:
                x_hat, _, _ = _jit(comp)[0](jnp.asarray(x), comp.init(jnp.asarray(x)), key)
                err = float(((np.asarray(x_hat) - x) ** 2).sum())
                # pathwise; 1e-12 relative covers the rounding of x / delta at |x| ~ 1e3
                assert err <= bound * (1 + 1e-9) + 1e-12 * float(x @ x), (label, scale, err)
            elif scale == 1.0:  # one Monte Carlo input scale per vector keeps the cost small
                err = ((_mc(comp, x, 4) - x[None, :]) ** 2).sum(1)
                mean, se = err.mean(), err.std(ddof=1) / math.sqrt(err.size)
                assert mean <= bound + N_SE * se + 1e-12 * bound, (label, mean, bound, se)


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
def test_error_feedback_identity(name, params, key):
    dtype = np.float32  # where FMA contraction and rounding bite; float64 in the test below
    comp = error_feedback(make(name, **params))
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((4, D)).astype(dtype)
    step = jax.jit(lambda x, s, k: comp.update(x, s, key=k))
    state = comp.init(jnp.asarray(xs[0]))
    eps = np.finfo(dtype).eps
    for t in range(3):
        e_old = np.asarray(state.error)
        x_hat, state, _ = step(jnp.asarray(xs[t]), state, jax.random.fold_in(key, t))
        x_hat, e_new = np.asarray(x_hat), np.asarray(state.error)
        assert e_new.dtype == dtype
        v = xs[t] + e_old  # IEEE addition, as in the compressor
        ref = v - x_hat
        # e_new is the definition (x + e) - x_hat: bitwise, except that XLA may contract an
        # inner product x_hat = a*b into the subtraction (FMA), which skips the rounding of
        # x_hat: then |e_new - ref| <= ulp(x_hat)/2 + ulp(ref)/2.
        exact = e_new == ref
        tol = eps * (np.abs(x_hat) + np.abs(ref))
        assert np.all(np.abs(e_new - ref) <= tol), np.flatnonzero(~exact)
        back = x_hat + e_new
        # Bitwise where the subtraction is exact: x_hat_i in {0, v_i} or within a factor 2
        # of v_i (Sterbenz); elsewhere within two roundings of |e_new| + |v|.
        sterbenz = (
            (x_hat == 0)
            | ((v / 2 <= x_hat) & (x_hat <= 2 * v))
            | ((2 * v <= x_hat) & (x_hat <= v / 2))
        )
        np.testing.assert_array_equal(back[sterbenz & exact], v[sterbenz & exact])
        assert np.all(np.abs(back - v) <= 2 * eps * (np.abs(e_new) + np.abs(v) + np.abs(x_hat)))


@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_feedback_identity_bitwise_where_entries_are_kept_or_dropped(
    name, params, dtype, key
):
    """Where ``x_hat_i`` is 0 or ``v_i``, ``x_hat + e_new == x + e_old`` holds bitwise on that
    coordinate; a compressor declared a pure selection (``selects`` fact: identity, Top-K,
    Rand-K, threshold) is 0 or ``v_i`` on every coordinate."""
    selects = COMPRESSORS.facts(name).get("selects", False)
    comp = error_feedback(make(name, **params))
    xs = np.random.default_rng(9).standard_normal((5, D)).astype(dtype)
    step = jax.jit(lambda x, s, k: comp.update(x, s, key=k))
    state = comp.init(jnp.asarray(xs[0]))
    for t in range(xs.shape[0]):
        e_old = np.asarray(state.error)
        x_hat, state, _ = step(jnp.asarray(xs[t]), state, jax.random.fold_in(key, t))
        x_hat, v = np.asarray(x_hat), xs[t] + e_old
        kept_or_dropped = (x_hat == 0) | (x_hat == v)
        assert kept_or_dropped.all() or not selects, np.flatnonzero(~kept_or_dropped)
        back = x_hat + np.asarray(state.error)
        np.testing.assert_array_equal(back[kept_or_dropped], v[kept_or_dropped])


# ----------------------------------------------------------------------------- non-finite
def _nonfinite_inputs() -> np.ndarray:
    """Rows of a Gaussian vector with NaN, +inf, -inf at one coordinate each (first, middle,
    last), NaN and -inf at two, and a row with no finite coordinate at all (float64)."""
    base = _inputs()["gauss"]
    rows = []
    for bad in ({0: np.nan}, {D // 2: np.inf}, {D - 1: -np.inf}, {5: np.nan, 6: -np.inf}):
        row = base.copy()
        row[list(bad)] = list(bad.values())
        rows.append(row)
    rows.append(np.resize([np.nan, np.inf, -np.inf], D))
    return np.stack(rows)


def _check_nonfinite_propagate(name: str, params: dict, dtype, key) -> None:
    """Where ``x_i`` is NaN or ``±inf``, ``C(x)_i`` is ``x_i`` (the policy of the Compressor
    record), jitted and vmapped over the rows of :func:`_nonfinite_inputs`."""
    comp = _comp(name, params)
    xs = jnp.asarray(_nonfinite_inputs(), dtype)
    keys = jax.random.split(key, xs.shape[0])
    batched = jax.jit(jax.vmap(lambda x, k: comp.update(x, comp.init(x), key=k)[0]))(xs, keys)
    ref = np.asarray(xs.astype(jnp.float64))
    bad = ~np.isfinite(ref)
    got = np.asarray(batched.astype(jnp.float64))
    assert batched.dtype == dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got[bad], ref[bad])  # NaN where NaN, the same infinities


@pytest.mark.parametrize(("name", "params"), CASES)
def test_nonfinite_input_coordinates_stay_nonfinite(name, params, key):
    _check_nonfinite_propagate(name, params, jnp.float64, key)


# Every other floating dtype x accepts; the policy is dtype-blind, so the first example of each
# compressor runs by default and the others under ``-m slow`` (one compile per case).
@pytest.mark.parametrize(("name", "params"), STRUCT_CASES)
@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.float16, jnp.bfloat16], ids=["float32", "float16", "bfloat16"]
)
def test_nonfinite_input_coordinates_stay_nonfinite_other_dtypes(name, params, dtype, key):
    _check_nonfinite_propagate(name, params, dtype, key)


@pytest.mark.parametrize(("name", "params"), _where(lambda c: c.sparse is not None))
def test_nonfinite_inputs_in_the_sparse_form(name, params, key):
    """A sent value of a non-finite input is that input; a non-finite input left unsent makes
    every sent value NaN: the receiver's ``h + C(x - h)`` is never all finite."""
    comp = _comp(name, params)
    if comp.sparse is None:
        pytest.skip(f"{name} offers no sparse form")
    unsent_seen = False
    for i, row in enumerate(_nonfinite_inputs()):
        x = jnp.asarray(row)
        vals, idx, _, _ = comp.sparse(x, comp.init(x), key=jax.random.fold_in(key, i))
        vals, idx = np.asarray(vals), np.asarray(idx)
        bad = ~np.isfinite(row)
        assert not np.all(np.isfinite(vals))
        if bad[np.setdiff1d(np.arange(D), idx)].any():
            unsent_seen = True
            assert np.all(np.isnan(vals)), (i, vals)
        else:
            np.testing.assert_array_equal(vals[bad[idx]], row[idx][bad[idx]])
    assert unsent_seen  # the all-non-finite row leaves some coordinate unsent (K < d)


# ----------------------------------------------------------------------------- bits
def _h(values: np.ndarray) -> float:
    """Empirical entropy code length of a symbol sequence, in bits (numpy, independent)."""
    _, counts = np.unique(values, return_counts=True)
    return float(np.sum(counts * np.log2(values.size / counts)))


def _lb(n: int, k: int) -> float:
    return math.log2(math.comb(n, k))


def _clog(n: int) -> int:
    return math.ceil(math.log2(n))


def _sparse(x, xh, p, d):
    k, fb = p["k"], p["float_bits"]
    return k * fb, k * _clog(d), 0, _lb(d, k) + k * fb


def _dense_levels(x, xh, p, d):
    s, fb = p["s"], p["float_bits"]
    return d * (1 + _clog(s + 1)), 0, fb, _h(xh) + fb


def _threshold(x, xh, p, d):
    fb, m = p["float_bits"], int(np.count_nonzero(xh))
    return m * fb, m * _clog(d), fb, _lb(d, m) + m * fb + fb


def _top_k_sign(x, xh, p, d):
    k, fb = p["k"], p["float_bits"]
    return k, k * _clog(d), fb, _lb(d, k) + _h(np.sign(xh[xh != 0])) + fb


def _scalar(x, xh, p, d):
    side = p["float_bits"] if p["normalize"] == "rms" else 0
    return d * _clog(len(p["levels"])), 0, side, _h(xh) + side


def _grid(x, xh, p, d):
    idx = np.round(xh / p["delta"]).astype(np.int64)  # x_hat = delta * index, exactly
    width = _clog(int(idx.max() - idx.min()) + 1) if idx.max() > idx.min() else 0
    return d * width, 0, 38, _h(idx) + 38  # header: int32 offset + 6-bit width


_EXPONENT_BITS = {np.dtype(np.float32): 8, np.dtype(np.float64): 11}

EXPECTED_BITS = {
    "identity": lambda x, xh, p, d: (d * p["float_bits"], 0, 0, d * p["float_bits"]),
    "sign": lambda x, xh, p, d: (d, 0, 0, _h(xh)),
    "scaled-sign": lambda x, xh, p, d: (d, 0, p["float_bits"], _h(xh) + p["float_bits"]),
    "top-k": _sparse,
    "rand-k": _sparse,
    "rand-k-unbiased": _sparse,
    # PermK: d/n values, no index bits (the permutation comes from the shared key)
    "perm-k": lambda x, xh, p, d: (
        d // p["n_workers"] * p["float_bits"],
        0,
        0,
        d // p["n_workers"] * p["float_bits"],
    ),
    "threshold": _threshold,
    "top-k-sign": _top_k_sign,
    "qsgd": _dense_levels,
    "nuqsgd": _dense_levels,
    "terngrad": lambda x, xh, p, d: (2 * d, 0, p["float_bits"], _h(xh) + p["float_bits"]),
    "natural": lambda x, xh, p, d: (d * (1 + _EXPONENT_BITS[xh.dtype]), 0, 0, _h(xh)),
    "scalar": _scalar,
    "grid": _grid,
}


@pytest.mark.parametrize(("name", "params"), [c for c in CASES if c.values[0] in EXPECTED_BITS])
@pytest.mark.parametrize(("d", "dtype"), [(D, np.float64), (1000, np.float32)])
def test_bits_equal_documented_formula(name, params, d, dtype, key):
    if name not in EXPECTED_BITS:
        pytest.skip(f"no independent bit formula for {name!r} here; its own test file checks it")
    comp = _comp(name, params)
    x = np.random.default_rng(d).standard_normal(d).astype(dtype)
    x_hat, _, info = _jit(comp)[0](jnp.asarray(x), comp.init(jnp.asarray(x)), key)
    xh = np.asarray(x_hat)
    expected = EXPECTED_BITS[name](x, xh, comp.facts.params, d)
    got = tuple(float(v) for v in info)
    # Container counts are integers: exact. Entropy: 1e-9 relative (lgamma vs comb, log sums).
    assert got[:3] == tuple(float(v) for v in expected[:3]), (got, expected)
    assert got[3] == pytest.approx(expected[3], rel=1e-9, abs=1e-9)
    assert float(info.container_bits) == sum(expected[:3])
