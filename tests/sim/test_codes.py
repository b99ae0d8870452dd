"""Gradient codes: exact recovery (FRC, CRC), unbiased rescaling (random replication), the
coded problem and oracle, and a coded simulator run against uncoded GD.

Reference values are numpy: the full gradient is ``(1/k) sum_j grad f_j`` of the partition
gradients ``A_j x − b_j`` of a tridiagonal quadratic, computed from its dense matrices.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.sim import (
    coded,
    crc,
    exactly_stragglers,
    frc,
    gd,
    majority,
    make_code,
    mean_active,
    random_replication,
    run,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
    uncoded,
)
from ratedist.sim.codes import (
    CODES,
    decoding_conditioning,
    decoding_vectors,
    straggler_masks,
)

D = 12
N_SE = 5.0  # Monte Carlo tolerance in standard errors (house rule)
FRC_TOL = 1e-14  # 0/1 weights: only the summation order of float64 differs
CRC_TOL = 1e-8  # real weights: rounding amplified by the decoding systems' conditioning


def partition_grads(k: int, seed: int = 0) -> np.ndarray:
    """``grad f_j(x)`` (k, D) at a random x, numpy float64."""
    prob = tridiagonal_quadratic(k, D, seed=seed)
    x = np.random.default_rng(seed).standard_normal(D)
    return tridiagonal_matrices(prob) @ x - tridiagonal_linear_terms(prob)


def all_masks(n: int, s: int) -> np.ndarray:
    """Every mask with at most s stragglers, enumerated here independently of the library."""
    rows = [
        [i not in strag for i in range(n)]
        for r in range(s + 1)
        for strag in itertools.combinations(range(n), r)
    ]
    return np.array(rows, bool)


def recovery_error(code, masks) -> float:
    k = code.n_partitions
    G = partition_grads(k)
    full = G.sum(axis=0) / k
    y = code.B @ G / k
    a = decoding_vectors(code, masks)
    assert np.all(a[~np.asarray(masks)] == 0), "a straggler got a weight"
    return float(np.max(np.linalg.norm(a @ y - full, axis=1)) / np.linalg.norm(full))


# ------------------------------------------------------------------------- constructions
@pytest.mark.parametrize(("n", "s"), [(4, 1), (6, 2), (8, 3), (6, 5)])
def test_frc_matrix_is_block_repetition(n, s):
    B = frc(n, s).B
    g = s + 1
    for i, j in itertools.product(range(n), range(n)):
        assert B[i, j] == (1.0 if i // g == j // g else 0.0)
    # Tandon et al. Thm 1: every partition on >= s + 1 workers
    assert np.all((B != 0).sum(axis=0) == s + 1)


@pytest.mark.parametrize(("n", "s"), [(5, 1), (6, 2), (8, 3), (7, 6)])
def test_crc_support_is_cyclic_and_any_n_minus_s_rows_span_ones(n, s):
    B = crc(n, s).B
    for i in range(n):
        support = set(np.flatnonzero(B[i]))
        assert support == {(i + r) % n for r in range(s + 1)}
        assert B[i, i] == 1.0
    for strag in itertools.combinations(range(n), s):
        rows = np.delete(B, list(strag), axis=0)
        a, *_ = np.linalg.lstsq(rows.T, np.ones(n), rcond=None)
        assert np.max(np.abs(a @ rows - 1)) < 1e-9


def test_straggler_masks_enumerate_every_pattern():
    m = straggler_masks(6, 2)
    assert m.shape == (1 + 6 + 15, 6)
    np.testing.assert_array_equal(m, all_masks(6, 2))
    assert len({r.tobytes() for r in m}) == len(m)


# ------------------------------------------------------------------------- exact recovery
@pytest.mark.parametrize(("n", "s"), [(2, 1), (4, 1), (6, 1), (6, 2), (8, 1), (8, 3), (8, 7)])
def test_frc_recovers_the_full_gradient_for_every_pattern(n, s):
    assert recovery_error(frc(n, s), all_masks(n, s)) <= FRC_TOL


@pytest.mark.parametrize("decoder", ["table", "lstsq"])
@pytest.mark.parametrize(("n", "s"), [(3, 1), (5, 2), (6, 1), (7, 3), (8, 2), (8, 4)])
def test_crc_recovers_the_full_gradient_for_every_pattern(n, s, decoder):
    assert recovery_error(crc(n, s, decoder=decoder), all_masks(n, s)) <= CRC_TOL


@pytest.mark.parametrize("make", [lambda: frc(20, 4), lambda: crc(16, 3), lambda: crc(20, 2)])
def test_random_patterns_at_larger_n(make):
    code = make()
    n, s = code.n_workers, code.s
    rng = np.random.default_rng(1)
    masks = rng.random((300, n)).argsort(axis=1) >= rng.integers(0, s + 1, (300, 1))
    tol = FRC_TOL if code.config["code"] == "frc" else CRC_TOL
    assert recovery_error(code, masks) <= tol


def test_crc_table_and_lstsq_give_the_unique_weights_at_exactly_s():
    n, s = 7, 3
    masks = np.array([m for m in all_masks(n, s) if (~m).sum() == s])
    a_tab = decoding_vectors(crc(n, s, decoder="table"), masks)
    a_lsq = decoding_vectors(crc(n, s, decoder="lstsq"), masks)
    # n − s answering rows of rank n − s: a is unique; both are float64 solves of it
    scale = np.max(np.abs(a_tab))
    np.testing.assert_allclose(a_lsq, a_tab, rtol=0, atol=1e-9 * scale)


def test_crc_auto_decoder_falls_back_to_lstsq_when_the_table_is_large(monkeypatch):
    import ratedist.sim.codes as codes_mod

    monkeypatch.setattr(codes_mod, "TABLE_MAX_ENTRIES", 10)
    code = crc(6, 2)  # C(6, 2) * 6 = 90 > 10 entries
    assert recovery_error(code, all_masks(6, 2)) <= CRC_TOL


def test_frc_weights_are_zero_one_and_one_per_group():
    code = frc(6, 2)
    a = decoding_vectors(code, all_masks(6, 2))
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert np.all(a.reshape(-1, 2, 3).sum(axis=2) == 1)


def test_uncoded_matches_mean_active():
    code = uncoded(5)
    masks = all_masks(5, 4)
    a = decoding_vectors(code, masks)
    ref = mean_active().weight
    for mask, row in zip(masks, a, strict=True):
        want = [float(ref(jnp.asarray(mask), i, 5, {})) * 5 for i in range(5)]
        np.testing.assert_allclose(row, want, rtol=1e-15)


# ------------------------------------------------------------------------- unbiasedness
def _exact_expectation(code, p: float) -> np.ndarray:
    """``E[a(mask)^T B]`` under i.i.d. Bernoulli(p) stragglers by enumerating all 2^n masks."""
    n = code.n_workers
    masks = np.array(list(itertools.product([False, True], repeat=n)))
    prob = np.prod(np.where(masks, 1 - p, p), axis=1)
    return prob @ (decoding_vectors(code, masks) @ code.B)


def test_probability_rescaling_is_exactly_unbiased_under_bernoulli():
    code = random_replication(7, 3, p=0.3, k=9, seed=2)
    np.testing.assert_allclose(_exact_expectation(code, 0.3), np.ones(9), rtol=1e-12)


def test_count_rescaling_is_unbiased_given_an_answer():
    p, n = 0.4, 6
    code = random_replication(n, 2, rescale="count", k=8, seed=1)
    # E c_j = (1 − p^n): nobody answers with probability p^n, then g = 0
    np.testing.assert_allclose(_exact_expectation(code, p), np.full(8, 1 - p**n), rtol=1e-12)
    for s in range(n):  # exactly s stragglers: average over all C(n, s) patterns
        masks = np.array([m for m in all_masks(n, s) if (~m).sum() == s])
        c = (decoding_vectors(code, masks) @ code.B).mean(axis=0)
        np.testing.assert_allclose(c, np.ones(8), rtol=1e-12)


def test_random_replication_decoded_gradient_unbiased_monte_carlo():
    n, d, p, m = 8, 2, 0.25, 40000
    code = random_replication(n, d, p=p, seed=3)
    G = partition_grads(n, seed=3)
    full, y = G.sum(axis=0) / n, code.B @ G / n
    masks = np.random.default_rng(4).random((m, n)) >= p
    g = decoding_vectors(code, masks) @ y
    se = g.std(axis=0, ddof=1) / math.sqrt(m)
    assert np.all(np.abs(g.mean(axis=0) - full) <= N_SE * se), (g.mean(axis=0) - full) / se


def test_random_replication_assignment():
    code = random_replication(9, 4, k=13, seed=5)
    assert code.B.shape == (9, 13)
    assert set(np.unique(code.B)) == {0.0, 1.0}
    assert np.all(code.B.sum(axis=0) == 4)
    assert not np.array_equal(code.B, random_replication(9, 4, k=13, seed=6).B)


# ------------------------------------------------------------------------- conditioning
def test_decoding_conditioning_against_numpy():
    code = crc(6, 2)
    c = decoding_conditioning(code)
    conds = []
    for strag in itertools.combinations(range(6), 2):
        conds.append(np.linalg.cond(np.delete(code.B, list(strag), axis=0)))
    assert c.patterns == 15
    assert c.cond_max == pytest.approx(max(conds), rel=1e-10)
    assert c.cond_median == pytest.approx(float(np.median(conds)), rel=1e-10)
    assert c.residual_max < 1e-10 and c.weight_norm_max >= math.sqrt(6 - 2) / 2
    sampled = decoding_conditioning(crc(14, 4), max_patterns=50)
    assert sampled.patterns == 50 and sampled.residual_max < 1e-8


# ------------------------------------------------------------------------- coded problem
def test_coded_oracle_and_shares_against_numpy():
    k = 6
    base = tridiagonal_quadratic(k, D, seed=0)
    for code in (frc(k, 1), crc(k, 2), random_replication(4, 2, k=k, seed=1), uncoded(k)):
        c = coded(base, code)
        assert c.problem.n_workers == code.n_workers and c.problem.dim == D
        x = np.random.default_rng(7).standard_normal(D)
        G = tridiagonal_matrices(base) @ x - tridiagonal_linear_terms(base)
        oracle = jax.jit(jax.vmap(c.oracle(c.problem), in_axes=(None, 0, None, None)))
        data = jax.tree_util.tree_map(jnp.asarray, c.problem.data)
        f_i, ex_i, y = (np.asarray(a) for a in oracle(jnp.asarray(x), data, jax.random.key(0), {}))
        np.testing.assert_allclose(y, code.B @ G / k, rtol=1e-13, atol=1e-13)
        # the shares average to the base problem's f and grad f
        assert f_i.mean() == pytest.approx(base.loss(x), rel=1e-13)
        np.testing.assert_allclose(ex_i.mean(axis=0), G.mean(axis=0), rtol=1e-12, atol=1e-13)
        assert c.problem.loss(x) == pytest.approx(base.loss(x), rel=1e-13)


def test_coded_oracle_uses_the_base_stochastic_gradient_per_partition():
    base = tridiagonal_quadratic(4, D, seed=0).with_noise(0.5)
    c = coded(base, frc(4, 1))
    oracle = jax.jit(c.oracle(c.problem))
    data0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a[0]), c.problem.data)
    x = jnp.ones(D)
    ys = jax.vmap(lambda kk: oracle(x, data0, kk, {"noise_std": 0.5})[2])(
        jax.random.split(jax.random.key(0), 4000)
    )
    G = base.local_grads(np.ones(D))
    # worker 0 holds partitions 0, 1: mean (g_0 + g_1)/4, variance 2 * 0.5^2 / 16 per coordinate
    np.testing.assert_allclose(
        np.asarray(ys).mean(axis=0), (G[0] + G[1]) / 4, atol=N_SE * math.sqrt(2 / 64 / 4000)
    )
    assert np.asarray(ys).var(axis=0).mean() == pytest.approx(2 * 0.25 / 16, rel=0.05)


@pytest.mark.parametrize("code", [frc(6, 2), crc(6, 2)], ids=["frc", "crc"])
def test_coded_run_with_stragglers_is_uncoded_gd(code):
    base = tridiagonal_quadratic(6, D, seed=1)
    kw = {"steps": 30, "gamma": 0.5 / base.L_minus}
    ref = run(gd(), base, key=jax.random.key(0), **kw)
    c = coded(base, code)
    tr = run(
        gd(),
        c.problem,
        key=jax.random.key(1),
        oracle=c.oracle,
        aggregation=c.aggregation,
        participation=exactly_stragglers(code.s),
        **kw,
    )
    # exact decoding: the same trajectory up to float64 rounding (CRC: times its conditioning)
    np.testing.assert_allclose(tr.x, ref.x, rtol=0, atol=1e-10 * np.max(np.abs(ref.x)))
    np.testing.assert_allclose(tr.f, ref.f, rtol=1e-10)
    np.testing.assert_allclose(tr.grad_norm_sq, ref.grad_norm_sq, rtol=1e-10, atol=1e-25)
    assert np.max(tr.server_error) <= 1e-20 * ref.grad_norm_sq[0]


def test_majority_of_the_decoded_sum_is_the_sign_of_the_full_gradient():
    base = tridiagonal_quadratic(6, D, seed=1)
    kw = {"steps": 20, "gamma": 0.05}
    # sign(sum_i g_i) = sign(grad f): majority over all uncoded workers is signGD
    ref = run(gd(), base, key=jax.random.key(0), aggregation=majority(), **kw)
    code = frc(6, 1)
    agg = code.aggregation(rule="majority")
    assert agg.name == "majority[frc[n=6,s=1]]" and agg.config["rule"] == "majority"
    assert code.aggregation().finish is None and code.aggregation().name == code.name
    c = coded(base, code)
    tr = run(
        gd(),
        c.problem,
        key=jax.random.key(1),
        oracle=c.oracle,
        aggregation=agg,
        participation=exactly_stragglers(1),
        **kw,
    )
    np.testing.assert_allclose(tr.x, ref.x, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="rule must be one of"):
        code.aggregation(rule="median")


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: frc(6, 3), "n must be divisible by s \\+ 1"),
        (lambda: frc(4, 4), "s \\(stragglers\\) must be in \\[0, n - 1\\]"),
        (lambda: crc(4, 4), "s \\(stragglers\\) must be in \\[0, n - 1\\]"),
        (lambda: crc(4, -1), "s must be >= 0"),
        (lambda: crc(5, 2, decoder="qr"), "decoder must be one of"),
        (lambda: random_replication(4, 5), "d \\(replication\\) must be in \\[1, n\\]"),
        (lambda: random_replication(4, 0), "d must be >= 1"),
        (lambda: random_replication(4, 2, p=1.0), "p must lie in \\[0.0, 1.0\\)"),
        (lambda: random_replication(4, 2, p=-0.1), "p must lie in \\[0.0, 1.0\\)"),
        (lambda: random_replication(4, 2, rescale="x"), "rescale must be one of"),
        (lambda: uncoded(0), "n must be >= 1"),
        (lambda: make_code("lt"), "unknown gradient code"),
        (lambda: coded(tridiagonal_quadratic(5, 4), frc(6, 1)), "n_workers = 6"),
        (lambda: decoding_conditioning(crc(4, 1), max_patterns=0), "max_patterns"),
    ],
)
def test_bad_configurations_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_coded_refuses_wrong_types():
    with pytest.raises(TypeError, match="code must be a GradientCode"):
        coded(tridiagonal_quadratic(4, 4), "frc")
    with pytest.raises(TypeError, match="problem must be"):
        coded("problem", frc(4, 1))


def test_registry_builds_every_code():
    assert CODES.names() == ["crc", "frc", "random_replication", "uncoded"]
    assert make_code("frc", n=4, s=1).B.shape == (4, 4)
    assert make_code("random_replication", n=5, d=2).config["rescale"] == "probability"
