"""Sympy moments of the stochastic 1-bit quantizer and the replication rescalings vs numpy."""

import itertools

import numpy as np
import pytest
import sympy as sp

from ratedist.symbolic import onebit as O
from ratedist.symbolic.lambdify import lambdified


def test_moments_symbolic():
    assert sp.simplify(O.mean() - O.v) == 0
    assert sp.simplify(O.mse_coordinate() - (O.R**2 - O.v**2)) == 0
    assert sp.simplify(O.omega_l2() - (O.d - 1)) == 0


@pytest.mark.parametrize(("v", "R"), [(0.3, 1.0), (-1.7, 2.0), (2.0, 2.0), (0.0, 0.5)])
def test_moments_against_the_two_point_law(v, R):
    q = (1 + v / R) / 2  # independent evaluation of the two-point law, numpy
    outcomes, probs = np.array([R, -R]), np.array([q, 1 - q])
    mean = lambdified(O.mean, ("v", "R"))
    mse = lambdified(O.mse_coordinate, ("v", "R"))
    assert float(mean(v, R)) == pytest.approx(probs @ outcomes, rel=1e-12, abs=1e-15)
    assert float(mse(v, R)) == pytest.approx(probs @ (outcomes - v) ** 2, rel=1e-12, abs=1e-15)


def test_replication_weights_are_one():
    assert O.replication_weight_probability() == 1
    assert O.replication_weight_count() == 1
    # count rescaling, exact enumeration: n = 5, partition held by workers {0, 2}, d = 2
    n, d, holders = 5, 2, (0, 2)
    for m in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), m))
        c = np.mean([sum(n / (d * m) for i in holders if i in S) for S in subsets])
        assert c == pytest.approx(1.0, rel=1e-12)
