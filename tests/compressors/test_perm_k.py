"""PermK: workers split one shared permutation (arXiv 2110.03300, Def. 2, d >= n)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ratedist.compressors import make, perm_k


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_blocks_partition_the_coordinates_and_average_back_to_x(n, key):
    d = 8 * 3
    x = jax.random.normal(key, (d,))
    comp = perm_k(n_workers=n)
    k = jax.random.fold_in(key, 7)  # the SAME key on every worker
    outs = np.stack(
        [np.asarray(comp.update(x, comp.init(x), key=k, worker=i)[0]) for i in range(n)]
    )
    support = outs != 0
    np.testing.assert_array_equal(support.sum(0), np.ones(d))  # disjoint, covering
    assert np.all(support.sum(1) == d // n)
    # (1/n) sum_i C_i(x) = x: each x_j appears once, scaled by n; n is a power of 2 here
    np.testing.assert_array_equal(outs.mean(0), np.asarray(x))


def test_worker_index_may_be_traced(key):
    comp = perm_k(n_workers=4)
    x = jax.random.normal(key, (12,))
    f = jax.jit(lambda w: comp.update(x, comp.init(x), key=key, worker=w)[0])
    for w in range(4):
        eager = comp.update(x, comp.init(x), key=key, worker=w)[0]
        np.testing.assert_array_equal(np.asarray(f(jnp.uint32(w))), np.asarray(eager))


def test_variance_is_exactly_omega(key):
    # E||C_i(x) - x||^2 = (n - 1)||x||^2 for every worker; per draw the error is
    # (n-1)^2 ||x_B||^2 + ||x_{B^c}||^2, averaged exactly over all blocks of many permutations
    n, d = 4, 16
    x = jnp.asarray(np.random.default_rng(0).standard_normal(d))
    comp = perm_k(n_workers=n)
    keys = jax.random.split(key, 4000)
    errs = jax.vmap(
        lambda k: jax.vmap(
            lambda w: jnp.sum((comp.update(x, comp.init(x), key=k, worker=w)[0] - x) ** 2)
        )(jnp.arange(n))
    )(keys)
    errs = np.asarray(errs)
    # averaged over the n workers of one permutation, the error is deterministic:
    # (1/n) sum_i [(n-1)^2 ||x_Bi||^2 + ||x||^2 - ||x_Bi||^2] = (n - 1)||x||^2
    np.testing.assert_allclose(errs.mean(1), (n - 1) * float(x @ x), rtol=1e-12)
    # per worker, Monte Carlo within 5 SE of the exact omega
    m, se = errs[:, 0].mean(), errs[:, 0].std(ddof=1) / np.sqrt(len(errs))
    assert abs(m - (n - 1) * float(x @ x)) < 5 * se
    assert comp.facts.omega(d) == n - 1 and comp.facts.unbiased and comp.facts.shared


def test_spec_string_and_bad_input(key):
    assert make("perm-k:n_workers=4").facts.params == {"n_workers": 4, "float_bits": 32}
    comp = perm_k(n_workers=4)
    x = jnp.ones(10)
    with pytest.raises(ValueError, match="d divisible by n_workers, got d=10, n_workers=4"):
        comp.update(x, comp.init(x), key=key)
    with pytest.raises(ValueError, match=r"worker must be in \[0, 3\]"):
        comp.update(jnp.ones(8), comp.init(x), key=key, worker=4)
    with pytest.raises(TypeError, match="worker must be an integer"):
        comp.update(jnp.ones(8), comp.init(x), key=key, worker=1.0)
    with pytest.raises(ValueError, match="needs key="):
        comp.update(jnp.ones(8), comp.init(x))
    with pytest.raises(ValueError, match="n_workers"):
        perm_k(n_workers=0)


def test_server_average_variance_identity(key):
    # E||(1/n) sum_i C_i(a_i) - mean_i a_i||^2 = (1/n) sum_i ||a_i||^2 - ||mean_i a_i||^2
    # (docs/theory/bounds.md): Monte Carlo over shared permutations, within 5 SE
    n, d = 4, 8
    a = jnp.asarray(np.random.default_rng(3).standard_normal((n, d)))
    comp = perm_k(n_workers=n)

    def server_err(k):
        outs = jax.vmap(lambda w, ai: comp.update(ai, comp.init(ai), key=k, worker=w)[0])(
            jnp.arange(n), a
        )
        return jnp.sum((outs.mean(0) - a.mean(0)) ** 2)

    errs = np.asarray(jax.vmap(server_err)(jax.random.split(key, 20000)))
    a_np = np.asarray(a)
    exact = np.mean(np.sum(a_np**2, 1)) - np.sum(a_np.mean(0) ** 2)
    se = errs.std(ddof=1) / np.sqrt(len(errs))
    assert abs(errs.mean() - exact) < 5 * se
