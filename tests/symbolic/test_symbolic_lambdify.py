"""The cached lambdify helper: caching, numpy/JAX agreement, bad input."""

import jax
import numpy as np
import pytest
import sympy as sp
from scipy import special

import ratedist.symbolic  # noqa: F401  (registers the builders)
from ratedist.symbolic.lambdify import EXPRESSIONS, cache_info, lambdified


def test_same_function_object_is_returned_from_cache():
    f1 = lambdified("tnq_laplace.alpha_opt", ("s", "gamma"))
    before = cache_info().hits
    f2 = lambdified("tnq_laplace.alpha_opt", ["s", "gamma"])  # list normalised to a tuple
    assert f1 is f2
    assert cache_info().hits == before + 1


def test_builder_and_name_give_the_same_values():
    from ratedist.symbolic import tnq_laplace

    by_name = lambdified("tnq_laplace.mse_opt", ("s", "gamma"))
    by_builder = lambdified(tnq_laplace.mse_opt, ("s", "gamma"))
    s = np.array([1.0, 3.0, 255.0])
    np.testing.assert_array_equal(by_name(s, 2.0), by_builder(s, 2.0))


@pytest.mark.parametrize(
    ("name", "args", "values"),
    [
        ("tnq_laplace.alpha_opt", ("s", "gamma"), (7.0, 0.3)),
        ("tnq_laplace.level", ("t", "alpha", "gamma"), (np.linspace(0, 1, 9), 2.0, 0.7)),
        ("tuq_laplace.alpha_opt", ("s", "gamma"), (np.array([1.0, 3.0, 15.0, 255.0]), 1.5)),
        ("tnq_gaussian.level", ("t", "alpha", "sigma"), (np.linspace(0, 1, 9), 2.0, 0.7)),
        ("tnq_gaussian.objective", ("alpha", "sigma", "s"), (np.linspace(0.1, 5, 7), 1.0, 7.0)),
        ("powerlaw.alpha_opt", ("s", "sigma", "b"), (np.array([1.0, 15.0, 255.0]), 1.0, 2.0)),
    ],
)
def test_numpy_and_jax_backends_agree(name, args, values):
    f_np = lambdified(name, args, backend="numpy")
    f_jax = jax.jit(lambdified(name, args, backend="jax"))
    # both float64; 1e-12 covers libm vs XLA differences in exp/log/erfinv
    np.testing.assert_allclose(np.asarray(f_jax(*values)), f_np(*values), rtol=1e-12, atol=1e-15)


def test_jax_lambertw_matches_scipy():
    w = lambdified(lambda: sp.LambertW(sp.Symbol("z")), ("z",), backend="jax")
    z = np.array([0.0, 1e-6, 0.5, 1.0, 9.0, 65025.0, 1e10])
    np.testing.assert_allclose(np.asarray(w(z)), special.lambertw(z).real, rtol=1e-14, atol=1e-300)


def test_registry_lists_the_derivations():
    for name in ("tnq_laplace.alpha_opt", "tuq_laplace.alpha_opt", "powerlaw.alpha_opt"):
        assert name in EXPRESSIONS


def test_bad_inputs():
    with pytest.raises(ValueError, match="backend"):
        lambdified("tnq_laplace.alpha_opt", ("s", "gamma"), backend="torch")
    with pytest.raises(ValueError, match="args"):
        lambdified("tnq_laplace.alpha_opt", ("s",))
    with pytest.raises(TypeError, match="args"):
        lambdified("tnq_laplace.alpha_opt", "s")
    with pytest.raises(TypeError, match="expr_builder_or_name"):
        lambdified(3.0, ("s",))
    with pytest.raises(ValueError, match="unknown symbolic expression"):
        lambdified("no.such.thing", ("s",))
