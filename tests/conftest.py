"""Test configuration: float64 JAX, strict rank promotion, and a key fixture."""

import itertools

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

_counter = itertools.count()


@pytest.fixture
def key():
    """A fresh, deterministic PRNG key per test (seeded by a global counter)."""
    return jax.random.key(1000 + next(_counter))
