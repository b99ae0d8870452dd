"""Algorithms: (A, B) against SPEC §3 formulas, pathwise Lyapunov/3PC checks of deterministic
methods, shared versus per-worker randomness, bit accounting, replicas, divergence, bad input."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist import bounds
from ratedist.compressors import error_feedback, make
from ratedist.sim import (
    ALGORITHMS,
    clag,
    compressed_sgd,
    ef14,
    ef21,
    example_algorithm,
    gd,
    lag,
    marina,
    mlp,
    quadratic,
    run,
    theory_gamma,
    tpc_v1,
    tpc_v2,
    tpc_v3,
    tpc_v4,
    tpc_v5,
    tridiagonal_quadratic,
)
from ratedist.sim.configs import make_algorithm

D, N = 20, 4


@pytest.fixture(scope="module")
def tri():
    return tridiagonal_quadratic(n_workers=N, dim=D, seed=1, noise_scale=0.8)


def test_constants_match_spec_table():
    top2 = make("top-k:k=2")  # alpha = 2/20
    a = 0.1
    r = math.sqrt(1 - a)
    assert ef21(top2).constants(D, N) == pytest.approx((1 - r, (1 - a) / (1 - r)), rel=1e-15)
    assert lag(3.0).constants(D, N) == (1.0, 3.0)
    assert clag(top2, 50.0).constants(D, N) == pytest.approx((1 - r, 50.0))
    assert clag(top2, 0.1).constants(D, N) == pytest.approx((1 - r, (1 - a) / (1 - r)))
    assert tpc_v1(top2).constants(D, N) == pytest.approx((1.0, 1 - a))
    q = make("rand-k-unbiased:k=5")  # omega = d/k - 1 = 3
    w = q.facts.omega(D)
    assert w == pytest.approx(3.0)
    assert tpc_v2(top2, q).constants(D, N) == pytest.approx((a, (1 - a) * w))
    A1, B1 = ef21(make("top-k:k=4")).constants(D, N)
    assert tpc_v3(top2, ef21(make("top-k:k=4"))).constants(D, N) == pytest.approx(
        (1 - (1 - a) * (1 - A1), (1 - a) * B1)
    )
    abar = 1 - (1 - 0.1) * (1 - 0.2)
    rb = math.sqrt(1 - abar)
    assert tpc_v4(top2, make("top-k:k=4")).constants(D, N) == pytest.approx(
        (1 - rb, (1 - abar) / (1 - rb))
    )
    p = 0.3
    rp = math.sqrt(1 - p)
    assert tpc_v5(top2, p).constants(D, N) == pytest.approx((1 - rp, (1 - p) * (1 - a) / (1 - rp)))
    assert marina(q, p).constants(D, N) == pytest.approx((p, (1 - p) * w / N))
    assert gd().constants(D, N) == (1.0, 0.0)
    assert compressed_sgd(top2).A is None and ef14(top2).B is None
    assert compressed_sgd(top2).constants(D, N) == (None, None)


def test_theory_gamma_formula(tri):
    alg = ef21(make("top-k:k=2"))
    A, B = alg.constants(D, N)
    assert theory_gamma(alg, tri) == pytest.approx(
        1 / (tri.L_minus + tri.L_plus * math.sqrt(B / A)), rel=1e-15
    )
    assert theory_gamma(gd(), tri) == pytest.approx(1 / tri.L_minus)
    # B = 0: L_+ does not enter, so a problem without it (coded workers) still has one
    no_lplus = dataclasses.replace(tri, L_plus=None, L_plus_upper=None)
    assert theory_gamma(gd(), no_lplus) == pytest.approx(1 / tri.L_minus)
    with pytest.raises(ValueError, match="L_plus unknown"):
        theory_gamma(alg, no_lplus)


DETERMINISTIC = {
    "gd": lambda: gd(),
    "ef21": lambda: ef21(make("top-k:k=2")),
    "lag": lambda: lag(4.0),
    "clag": lambda: clag(make("top-k:k=2"), 4.0),
    "tpc_v1": lambda: tpc_v1(make("top-k:k=3")),
    "tpc_v4": lambda: tpc_v4(make("top-k:k=2"), make("top-k:k=3")),
    "tpc_v3": lambda: tpc_v3(make("top-k:k=2"), ef21(make("top-k:k=3"))),
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_3pc_lyapunov_holds_on_every_step(tri, key, name):
    tr = run(DETERMINISTIC[name](), tri, steps=300, key=key)
    assert tr.diverged_at == -1
    assert tr.violations == 0
    # the 3PC inequality holds pathwise for deterministic compressors (float rounding slack)
    scale = 1e-9 * np.nanmax(np.abs(tr.G) + tr.grad_norm_sq)
    assert np.nanmax(tr.tpc_residual_max) <= scale
    assert tr.f_gap[-1] < tr.f_gap[0]
    # descent: the averaged squared gradient norm obeys the theorem's bound
    T = 300
    bound = 2 * tr.f_gap[0] / (tr.gamma * T) + tr.G[0] / (tr.A * T)
    assert np.mean(tr.grad_norm_sq[:T]) <= bound * (1 + 1e-9)


@pytest.mark.parametrize("spec", ["top-k:k=3", "rand-k:k=4", "top-k-sign:k=2"])
def test_ef21_sparse_update_equals_dense_update(tri, key, spec):
    # EF21 updates h at the K sent entries when the compressor has a sparse form; the
    # dense h + C(x - h) (the same compressor with the sparse form removed) is the reference
    comp = make(spec)
    assert comp.sparse is not None
    sparse = run(ef21(comp), tri, steps=80, key=key, gamma=0.05)
    dense = run(ef21(comp._replace(sparse=None)), tri, steps=80, key=key, gamma=0.05)
    for name in ("x", "f", "G", "grad_norm_sq", "tpc_residual"):
        np.testing.assert_array_equal(getattr(sparse, name), getattr(dense, name), err_msg=name)
    np.testing.assert_array_equal(sparse.bits.container, dense.bits.container)


def test_lag_triggers_and_flag_bits(tri, key):
    tr = run(lag(4.0), tri, steps=100, key=key)
    rate = tr.trigger_rate[1:]
    assert np.all((rate >= 0) & (rate <= 1)) and 0 < rate.mean() < 1
    # one flag bit per worker per step (not at t = 0), full vectors only on triggers
    np.testing.assert_array_equal(tr.bits.flag[-1], np.full(N, 100.0))
    sends = np.diff(tr.bits.full, axis=0) / (32 * D)
    np.testing.assert_allclose(sends.mean(axis=1), rate, rtol=0, atol=1e-15)


def test_clag_bits_are_compressor_bits_on_triggers(tri, key):
    tr = run(clag(make("top-k:k=2"), 4.0), tri, steps=60, key=key)
    per_send = 2 * 32 + 2 * math.ceil(math.log2(D))  # values + naive indices of top-2
    fired = np.diff(tr.bits.value, axis=0) / (2 * 32)
    np.testing.assert_allclose(
        np.diff(tr.bits.container - tr.bits.flag, axis=0), fired * per_send, rtol=1e-15
    )
    assert tr.bits.full[0, 0] == 32 * D  # g_i^0 = grad f_i(x^0) sent in full


def test_identity_compressor_reproduces_gd(tri, key):
    ref = run(gd(), tri, steps=100, key=key)
    for alg in (compressed_sgd(make("identity")), ef14(make("identity"))):
        tr = run(alg, tri, steps=100, key=key, gamma=ref.gamma)
        # EF14 rescales by gamma: (gamma g)/gamma rounds at 1 ulp per step
        np.testing.assert_allclose(tr.x, ref.x, rtol=0, atol=1e-12)


def test_shared_coin_is_common_to_all_workers(tri, key):
    tr = run(marina(make("rand-k-unbiased:k=4"), 0.3), tri, steps=200, key=key)
    full_steps = np.diff(tr.bits.full, axis=0) > 0  # (T, N)
    assert np.all(full_steps == full_steps[:, :1])  # same coin on every worker
    frac = full_steps[:, 0].mean()
    assert abs(frac - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 200)


def test_perm_k_shared_permutation_makes_marina_exact_on_identical_workers(key):
    # identical workers: with PermK the n blocks of ONE shared permutation partition the
    # coordinates, so (1/n) sum_i Q_i(delta) = delta and g^t stays the exact gradient;
    # independent Rand-K (same omega = n - 1) leaves a server error of the order of delta
    n, d = 4, 16
    rng = np.random.default_rng(1)
    M = rng.standard_normal((d, d))
    A = np.broadcast_to(M @ M.T / d + np.eye(d), (n, d, d))
    b = np.broadcast_to(rng.standard_normal(d), (n, d))
    prob = quadratic(A, b)
    shared = run(marina(make("perm-k:n_workers=4"), 0.1), prob, steps=60, key=key, gamma=0.05)
    indep = run(marina(make("rand-k-unbiased:k=4"), 0.1), prob, steps=60, key=key, gamma=0.05)
    scale = np.max(shared.grad_norm_sq)
    assert np.max(shared.server_error) <= 1e-24 * max(scale, 1.0)
    assert np.max(indep.server_error[1:]) > 1e-6 * scale
    # PermK sends d/n values per worker and no indices
    np.testing.assert_array_equal(np.diff(shared.bits.index, axis=0), 0)
    with pytest.raises(ValueError, match="shares randomness across workers"):
        run(marina(make("perm-k:n_workers=4"), 0.1), prob, steps=2, key=key)
    with pytest.raises(ValueError, match="configured for n_workers=2, but the problem has 4"):
        run(marina(make("perm-k:n_workers=2"), 0.1), prob, steps=2, key=key, gamma=0.05)


def test_error_feedback_keeps_perm_k_shared(key):
    # EF around PermK: the workers still split ONE permutation each step (the wrapper forwards
    # the shared key and the worker index), so on identical workers the first compressed
    # average is the exact gradient, unlike independent per-worker draws
    n, d = 4, 16
    rng = np.random.default_rng(2)
    M = rng.standard_normal((d, d))
    prob = quadratic(
        np.broadcast_to(M @ M.T / d + np.eye(d), (n, d, d)),
        np.broadcast_to(rng.standard_normal(d), (n, d)),
    )
    comp = error_feedback(make("perm-k:n_workers=4"))
    assert comp.facts.shared
    tr = run(compressed_sgd(comp), prob, steps=3, key=key, gamma=0.05)
    assert tr.server_error[0] <= 1e-24 * tr.grad_norm_sq[0]


def test_per_worker_randomness_differs_across_workers_and_is_reproducible(tri, key):
    alg = compressed_sgd(make("rand-k:k=3"))
    a = run(alg, tri, steps=20, key=key, gamma=0.1)
    b = run(alg, tri, steps=20, key=key, gamma=0.1)
    np.testing.assert_array_equal(a.x, b.x)
    # the per-worker errors differ: workers draw different coordinates
    assert np.unique(np.round(a.worker_error[5], 12)).size > 1


@pytest.mark.slow
def test_replicas_equal_single_runs_with_folded_keys(tri, key):
    alg = marina(make("rand-k-unbiased:k=4"), 0.5)
    rep = run(alg, tri, steps=30, key=key, replicas=3)
    one = run(alg, tri, steps=30, key=jax.random.fold_in(key, 2))
    assert rep.f.shape == (3, 31) and rep.bits.full.shape == (3, 31, N)
    np.testing.assert_allclose(rep.f[2], one.f, rtol=1e-13)
    assert rep.violations.shape == (3,)


def test_chunking_does_not_change_results(tri, key):
    alg = ef21(make("top-k:k=2"))
    a = run(alg, tri, steps=50, key=key)
    b = run(alg, tri, steps=50, key=key, chunk=7, progress=True)
    np.testing.assert_array_equal(a.f, b.f)
    np.testing.assert_array_equal(a.bits.container, b.bits.container)


@pytest.mark.slow
def test_stochastic_mlp_runs_and_measures_exact_gradients(key):
    prob = mlp(2, hidden=4, dim_in=3, n_samples=64, batch_size=8)
    tr = run(ef21(make("top-k:k=5")), prob, steps=40, key=key, gamma=0.05)
    assert tr.f.shape == (41,) and np.all(np.isfinite(tr.f))
    assert tr.G[0] > 0  # stochastic g_i^0 differs from the exact local gradient
    with pytest.raises(ValueError, match="gamma"):
        run(ef21(make("top-k:k=5")), prob, steps=5, key=key)  # no L: no theory step


def test_divergence_stops_with_truncated_trace(tri, key):
    with pytest.warns(RuntimeWarning, match="diverged"):
        tr = run(gd(), tri, steps=4000, key=key, gamma=1e3, chunk=500)
    k = int(tr.diverged_at)
    assert 0 < k < 4000
    assert tr.f.shape == (k,) and np.all(np.isfinite(tr.f))
    assert tr.bits.container.shape == (k, N)


def test_divergence_with_replicas_masks_per_replica(tri, key):
    with pytest.warns(RuntimeWarning, match="diverged"):
        tr = run(gd(), tri, steps=600, key=key, gamma=1e3, replicas=2)
    assert tr.diverged_at.shape == (2,) and np.all(tr.diverged_at > 0)
    assert np.isnan(tr.f[0, -1])


@pytest.mark.parametrize(
    "method",
    [
        lambda: compressed_sgd(make("sign")),  # sign(NaN) used to be -1
        lambda: ef14(make("threshold:kappa=0.1")),  # one NaN used to zero the whole vector
        lambda: ef21(make("rand-k:k=1")),  # the sparse form: an unsent NaN used to vanish
    ],
    ids=["csgd-sign", "ef14-threshold", "ef21-rand-k"],
)
def test_nonfinite_gradient_through_a_compressor_is_flagged_diverged(tri, key, method):
    """Worker gradients hold a NaN from step 1 on (x != x0; the initial g^0 is clean, so the
    NaN goes through the compressor of a step, not through an uncompressed g^0): the run
    diverges at step 2, when the compressed messages have reached the iterate."""
    grad_fn, x0 = tri.grad_fn, jnp.asarray(tri.x0)

    def nan_grad(x, data_i, k):
        g = grad_fn(x, data_i)
        return jnp.where(jnp.all(x == x0), g, g.at[0].set(jnp.nan))

    prob = dataclasses.replace(tri, stochastic_grad_fn=nan_grad)
    with pytest.warns(RuntimeWarning, match="diverged"):
        tr = run(method(), prob, steps=6, key=key, gamma=0.01)
    assert int(tr.diverged_at) == 2
    assert tr.f.shape == (2,) and np.all(np.isfinite(tr.f))


def test_run_bad_inputs(tri, key):
    alg = gd()
    with pytest.raises(ValueError, match="steps"):
        run(alg, tri, steps=0, key=key)
    with pytest.raises(TypeError, match="steps"):
        run(alg, tri, steps=1.5, key=key)
    with pytest.raises(ValueError, match="gamma"):
        run(alg, tri, steps=5, key=key, gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        run(alg, tri, steps=5, key=key, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        run(alg, tri, steps=5, key=key, gamma="fast")
    with pytest.raises(ValueError, match="engine"):
        run(alg, tri, steps=5, key=key, engine="pmap")
    with pytest.raises(ValueError, match="aggregate"):
        run(alg, tri, steps=5, key=key, aggregate="sum")
    with pytest.raises(ValueError, match="replicas"):
        run(alg, tri, steps=5, key=key, replicas=0)
    with pytest.raises(TypeError, match="algorithm"):
        run("gd", tri, steps=5, key=key)
    with pytest.raises(TypeError, match="problem"):
        run(alg, "tri", steps=5, key=key)


def test_algorithm_bad_inputs():
    with pytest.raises(ValueError, match="zeta"):
        lag(-1.0)
    with pytest.raises(ValueError, match="p"):
        marina(make("rand-k-unbiased:k=2"), 0.0)
    with pytest.raises(ValueError, match="p"):
        tpc_v5(make("top-k:k=2"), 1.5)
    with pytest.raises(TypeError, match="compressor"):
        ef21("top-k:k=2")
    with pytest.raises(ValueError, match="inner"):
        tpc_v3(make("top-k:k=2"), marina(make("rand-k-unbiased:k=2"), 0.5))
    with pytest.raises(ValueError, match="unknown algorithm 'sgd9'"):
        make_algorithm({"name": "sgd9"})
    with pytest.raises(ValueError, match="zeta"):
        make_algorithm({"name": "lag"})
    with pytest.raises(ValueError, match="no parameter 'k'"):
        make_algorithm({"name": "ef21", "compressor": "top-k:k=1", "k": 3})
    assert {"gd", "ef21", "lag", "clag", "marina", "ef14", "tpc_v5"} <= set(ALGORITHMS.names())


def test_compressed_sgd_with_scalar_quantizer_design(tri, key):
    # the scalar(...) wrapper around a TNQ design (stochastic rounding) inside the simulator
    comp = make("scalar:method=tnq,bits=2")
    tr = run(compressed_sgd(comp), tri, steps=20, key=key, gamma=0.05)
    assert np.all(np.isfinite(tr.f)) and tr.f[-1] < tr.f[0]
    # per step and worker: the compressor's own count, charged every step
    per_step = np.diff(tr.bits.container, axis=0)
    assert np.all(per_step == per_step[0, 0]) and per_step[0, 0] > 0


# ------------------------------------------------------------ generic, over the registry
def _registered():
    return ALGORITHMS.names()


def check_example_runs(name, tri, key):
    """The registry's example instance runs, sends bits, and its (A, B) are the bound's."""
    from ratedist.validate.checks import Sizes, bound_params

    sz = Sizes(quick=True)
    alg = example_algorithm(name, k=2)
    tr = run(alg, tri, steps=20, key=key, gamma=0.01, replicas=None if alg.deterministic else 2)
    assert np.all(np.isfinite(tr.f))
    bits = tr.bits.container  # (steps + 1, n), with a leading replica axis if any
    assert np.all(np.diff(bits, axis=-2) >= 0) and bits[..., -1, :].min() > 0
    assert alg.bits_per_step(D, N, alg.hyper) > 0
    bound = ALGORITHMS.facts(name)["bound"]
    if bound is not None:
        sz.k = 2
        want = bounds.three_pc_constants(bound, **bound_params(name, sz, D, N))
        got = alg.constants(D, N)
        assert got == pytest.approx((want.A, want.B), rel=1e-12)
    # the config round-trips through the sweep's constructor
    cfg = {
        "name": alg.config["algorithm"],
        **{k: v for k, v in alg.config.items() if k != "algorithm"},
    }
    assert make_algorithm(cfg).name == alg.name


@pytest.mark.parametrize("name", _registered())
def test_every_registered_algorithm_example_runs(name, tri, key):
    check_example_runs(name, tri, key)


def check_pathwise(name, tri, key):
    """Deterministic 3PC members of the registry: the 3PC inequality on every path."""
    alg = example_algorithm(name, k=2)
    tr = run(alg, tri, steps=100, key=key)
    assert tr.violations == 0
    scale = 1e-9 * np.nanmax(np.abs(tr.G) + tr.grad_norm_sq)
    assert np.nanmax(tr.tpc_residual_max) <= scale


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in _registered()
        if ALGORITHMS.facts(n)["bound"] not in (None, "marina")
        and example_algorithm(n, k=2).deterministic
    ],
)
def test_deterministic_registered_3pc_hold_pathwise(name, tri, key):
    check_pathwise(name, tri, key)
