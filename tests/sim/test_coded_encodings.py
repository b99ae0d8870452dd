"""Coded workers beyond the decoder: per-partition encoding (``coded(..., encode=...)``,
``partitionwise``), the per-step straggler log and uplink accounting of a trace, and the
adversarial straggler pattern.

References are independent: numpy least squares for the decoding weights, an explicit
enumeration of patterns, the compressor's documented bit counts.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from ratedist.compressors import make
from ratedist.sim import (
    bernoulli_stragglers,
    coded,
    compressed_sgd,
    ef14,
    exactly_stragglers,
    gd,
    load_trace,
    logistic_nonconvex,
    make_code,
    pattern_stragglers,
    run,
    save_trace,
)
from ratedist.sim.code_moments import adversarial_mask, adversarial_stragglers
from ratedist.sim.coded import partitionwise
from ratedist.sim.stages import PARTICIPATION

K = 6
FLOAT_BITS = 32
EXACT_TOL = 1e-12  # identity encoder: the two encodings differ only in summation order


@pytest.fixture(scope="module")
def base():
    return logistic_nonconvex(n_workers=K, n_samples=240, dim=10)


def _codes():
    return [
        make_code("frc", n=K, s=1),
        make_code("crc", n=K, s=1),
        make_code("random_replication", n=K, d=2, p=0.2),
    ]


@pytest.mark.parametrize("code", _codes(), ids=lambda c: c.name)
def test_partition_encoding_with_identity_is_the_combination(base, code):
    runs = []
    for enc in ("combination", "partitions"):
        c = coded(base, code, encode=enc)
        rnd = c.round(compressed_sgd(make("identity")), exactly_stragglers(1))
        runs.append(run(rnd, c.problem, steps=15, key=jax.random.key(3), gamma=0.5))
    a, b = runs
    np.testing.assert_array_equal(a.answered, b.answered)
    scale = np.abs(a.f).max()
    assert np.max(np.abs(a.f - b.f)) <= EXACT_TOL * scale
    assert np.max(np.abs(a.x - b.x)) <= EXACT_TOL * max(1.0, np.abs(a.x).max())


def test_partition_bits_count_every_held_partition(base):
    code = make_code("frc", n=K, s=1)  # every worker holds s + 1 = 2 partitions
    c = coded(base, code, encode="partitions")
    d = c.problem.dim
    tr = run(
        c.round(compressed_sgd(make("stochastic-sign:scale=l2")), exactly_stragglers(2)),
        c.problem,
        steps=6,
        key=jax.random.key(0),
        gamma=0.1,
    )
    # per partition: d sign bits + one FLOAT_BITS norm (side)
    per_worker = 2 * (d + FLOAT_BITS)
    np.testing.assert_allclose(tr.uplink_per_answering_worker(), per_worker)
    np.testing.assert_allclose(tr.uplink_per_round()[1:], (K - 2) * per_worker)
    np.testing.assert_allclose(tr.uplink_total()[-1], per_worker * tr.answered.sum())


def test_stragglers_are_logged_and_send_nothing(base):
    code = make_code("frc", n=K, s=1)
    c = coded(base, code)
    mask = np.ones((3, K), bool)
    mask[0, 1] = mask[1, 4] = mask[2, 0] = False
    tr = run(
        c.round(ef14(make("scaled-sign")), pattern_stragglers(mask)),
        c.problem,
        steps=7,
        key=jax.random.key(1),
        gamma=0.1,
    )
    assert tr.answered.shape == (8, K) and tr.answered[0].all()
    expected = mask[(np.arange(1, 8) - 1) % 3]
    np.testing.assert_array_equal(tr.answered[1:], expected)
    step_bits = np.diff(tr.bits.container, axis=0)
    assert np.all(step_bits[~expected] == 0) and np.all(step_bits[expected] > 0)


def test_bernoulli_log_matches_the_straggler_rate(base):
    c = coded(base, make_code("uncoded", n=K))
    p = 0.3
    tr = run(
        c.round(gd(), bernoulli_stragglers(p)),
        c.problem,
        steps=400,
        key=jax.random.key(2),
        gamma=0.1,
    )
    strag = ~tr.answered[1:]
    n = strag.size
    se = np.sqrt(p * (1 - p) / n)
    assert abs(strag.mean() - p) <= 5 * se


def test_answered_survives_the_store_and_old_files_load(tmp_path, base):
    c = coded(base, make_code("frc", n=K, s=1))
    tr = run(
        c.round(gd(), exactly_stragglers(1)), c.problem, steps=3, key=jax.random.key(0), gamma=0.1
    )
    path = save_trace(tmp_path / "a.npz", tr, {"x": 1})
    back, _, _ = load_trace(path)
    np.testing.assert_array_equal(back.answered, tr.answered)
    old = save_trace(tmp_path / "old.npz", tr._replace(answered=None), {"x": 1})
    assert load_trace(old)[0].answered is None
    with pytest.raises(ValueError, match="answered"):
        load_trace(old)[0].uplink_per_answering_worker()


def test_oracle_and_algorithm_must_agree(base):
    code = make_code("frc", n=K, s=1)
    rows = coded(base, code, encode="partitions")
    with pytest.raises(TypeError, match=r"Coded\.round"):
        run(gd(), rows.problem, steps=2, key=jax.random.key(0), gamma=0.1, oracle=rows.oracle)
    comb = coded(base, code)
    with pytest.raises(TypeError, match="encode='partitions'"):
        run(
            partitionwise(gd()),
            comb.problem,
            steps=2,
            key=jax.random.key(0),
            gamma=0.1,
            oracle=comb.oracle,
        )
    with pytest.raises(ValueError, match="encode"):
        coded(base, code, encode="rows")


# ------------------------------------------------------------------------ adversary


def _reference_a(code, mask):
    """numpy min-norm least squares (the unique solution for CRC at exactly s)."""
    a = np.zeros(code.n_workers)
    a[mask] = np.linalg.lstsq(code.B[mask].T, np.ones(code.n_partitions), rcond=None)[0]
    return a


@pytest.mark.parametrize("n,s", [(6, 1), (6, 2), (7, 3)])
def test_adversary_of_crc_maximizes_the_weight_norm(n, s):
    with jax.enable_x64(True):
        code = make_code("crc", n=n, s=s)
        adv = adversarial_mask(code)
    norms = {}
    for strag in itertools.combinations(range(n), s):
        mask = np.ones(n, bool)
        mask[list(strag)] = False
        norms[strag] = np.sum(_reference_a(code, mask) ** 2)
    worst = max(norms.values())
    assert adv.patterns == len(norms)
    assert (~adv.mask).sum() == s
    np.testing.assert_allclose(adv.weight_norm_sq, worst, rtol=1e-8)


def test_adversary_beyond_s_maximizes_the_residual():
    code = make_code("frc", n=6, s=1)  # groups {0,1}, {2,3}, {4,5}
    adv = adversarial_mask(code, stragglers=2)
    # a whole group missing loses its 2 partitions: residual 2 (one group can be lost)
    assert adv.residual == pytest.approx(2.0)
    lost = set(np.flatnonzero(~adv.mask))
    assert lost in ({0, 1}, {2, 3}, {4, 5})


def test_adversarial_participation_is_registered_and_replays_the_pattern(base):
    assert "adversarial" in PARTICIPATION
    code = make_code("frc", n=K, s=1)
    part = adversarial_stragglers(code, stragglers=2)
    c = coded(base, code)
    tr = run(c.round(gd(), part), c.problem, steps=4, key=jax.random.key(0), gamma=0.1)
    adv = adversarial_mask(code, 2)
    assert np.all(tr.answered[1:] == adv.mask)
    assert part.config["stragglers"] == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [({"stragglers": 6}, "stragglers must be in"), ({"stragglers": -1}, "stragglers")],
)
def test_adversary_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adversarial_mask(make_code("frc", n=6, s=1), **kwargs)
    with pytest.raises(TypeError, match="GradientCode"):
        adversarial_mask("frc")
