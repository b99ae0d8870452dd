"""1-bit GC-DL setups and baselines (``ratedist.sim.gcdl``): every registered method runs, the
server rules are the documented ones, and the bit accounting is the wire format's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.compressors import make
from ratedist.sim import (
    GC_METHODS,
    bernoulli_stragglers,
    everyone,
    exactly_stragglers,
    gc_methods,
    gc_setup,
    gd,
    logistic_nonconvex,
    make_code,
    run,
)

K = 6
FLOAT_BITS = 32


@pytest.fixture(scope="module")
def base():
    return logistic_nonconvex(n_workers=K, n_samples=240, dim=10)


@pytest.fixture(scope="module")
def code():
    return make_code("frc", n=K, s=1)


@pytest.mark.parametrize("name", GC_METHODS.names())
def test_every_method_runs_and_charges_its_wire_format(base, code, name):
    st = gc_setup(name, base, code, exactly_stragglers(1))
    tr = run(st.round, st.problem, steps=5, key=jax.random.key(0), gamma=0.05)
    assert np.all(np.isfinite(tr.f)) and tr.answered[1:].sum(axis=1).tolist() == [K - 1] * 5
    d = base.dim
    per = tr.uplink_per_answering_worker()[1:]
    alg = st.round.algorithm.name
    # 1-bit messages: d bits (+ one float for a scaled sign); floats: 32 d
    expected = {
        "gd": FLOAT_BITS * d,
        "compressed_sgd[sign]": d,
        "compressed_sgd[stochastic-sign:scale=l2,bound=None,float_bits=32,rng_bits=32]": (
            d + FLOAT_BITS
        ),
        "compressed_sgd[scaled-sign:float_bits=32]": d + FLOAT_BITS,
        "ef14[scaled-sign:float_bits=32]": d + FLOAT_BITS,
    }[alg]
    np.testing.assert_allclose(per, expected)
    assert (st.code is not None) == GC_METHODS.get(name).coded


def test_uncoded_full_with_everyone_is_gd(base):
    st = gc_setup("uncoded_full", base)
    a = run(st.round, st.problem, steps=10, key=jax.random.key(0), gamma=0.3)
    b = run(gd(), base, steps=10, key=jax.random.key(0), gamma=0.3)
    np.testing.assert_allclose(a.f, b.f, rtol=1e-12)
    assert st.round.participation.sample is None


def test_full_gc_decodes_the_gradient_exactly_with_s_stragglers(base, code):
    st = gc_setup("full_gc", base, code, exactly_stragglers(1))
    tr = run(st.round, st.problem, steps=10, key=jax.random.key(0), gamma=0.3)
    ref = run(gd(), base, steps=10, key=jax.random.key(0), gamma=0.3)
    np.testing.assert_allclose(tr.f, ref.f, rtol=1e-12)
    assert np.max(tr.server_error) <= 1e-20 * np.max(tr.grad_norm_sq) + 1e-30


def test_coded_majority_is_the_sign_of_the_decoded_signs(base, code):
    st = gc_setup("onebit_gc_mv", base, code, everyone())
    agg = st.round.aggregation
    rng = np.random.default_rng(0)
    signs = jnp.asarray(np.sign(rng.standard_normal((K, 4))))
    mask = jnp.asarray([True, False, True, True, True, True])
    w = jnp.stack([agg.weight(mask, i, K, {}) for i in range(K)])
    a = np.asarray(code.vector(mask))
    np.testing.assert_allclose(np.asarray(w), a)
    np.testing.assert_array_equal(np.asarray(agg.finish(w @ signs)), np.sign(a @ np.asarray(signs)))


def test_partition_encoding_doubles_the_frc_message(base, code):
    st = gc_setup("onebit_gc", base, code, bernoulli_stragglers(0.0), encode="partitions")
    tr = run(st.round, st.problem, steps=3, key=jax.random.key(0), gamma=0.05)
    np.testing.assert_allclose(tr.uplink_per_answering_worker(), 2 * (base.dim + FLOAT_BITS))


def test_registry_lists_every_method_with_a_description():
    names = [n for n, _ in gc_methods()]
    assert names == GC_METHODS.names()
    assert {"onebit_gc", "full_gc", "signsgd", "ef_signsgd", "uncoded_full"} <= set(names)
    assert all(text for _, text in gc_methods())


def test_bad_input(base, code):
    with pytest.raises(ValueError, match="gradient-coding method"):
        gc_setup("onebit", base, code)
    with pytest.raises(ValueError, match="give a code"):
        gc_setup("onebit_gc", base)
    with pytest.raises(ValueError, match="encode"):
        gc_setup("onebit_gc", base, code, encode="rows")
    with pytest.raises(ValueError, match="n_workers"):
        gc_setup("onebit_gc", base, make_code("frc", n=8, s=1))
    assert make("sign")  # the encoders used by the registry build
