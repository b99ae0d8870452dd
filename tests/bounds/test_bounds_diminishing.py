"""DiminishingStepBound and step_sums (ratedist.bounds.core) against direct computation.

* the step-size sums (table below 1000 terms, Euler–Maclaurin above) ≡ direct float64 sums
  to 1e-12 relative;
* iterations_to returns the FIRST T with bound(T) <= eps (hypothesis), also past 2^63 steps;
* the closed-form envelope is >= the exact bound.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratedist import bounds

RTOL = 1e-12  # float64 sums of up to 2e4 terms vs the same sums in closed form


@pytest.mark.parametrize("offset", [1, 2, 5])
def test_step_sums_exact(offset):
    T = np.array([1, 7, 998, 999, 1000, 1001, 4321, 20000])
    S, H = bounds.step_sums(T, offset)
    for t, s, h in zip(T, S, H, strict=True):
        u = np.arange(offset, offset + t, dtype=float)
        assert s == pytest.approx(np.sum(u**-0.5), rel=RTOL)
        assert h == pytest.approx(np.sum(1 / u), rel=RTOL)


@settings(max_examples=150, deadline=None)
@given(
    a=st.floats(1e-4, 1e4),
    b=st.floats(0.0, 1e3),
    gamma0=st.floats(1e-3, 10.0),
    offset=st.integers(1, 50),
    eps=st.floats(1e-3, 1e2),
)
def test_diminishing_round_trip(a, b, gamma0, offset, eps):
    bd = bounds.DiminishingStepBound(a, b, gamma0, offset, "t")
    T = bd.iterations_to(eps)
    assert bd(T) <= eps
    if T <= 10**5:  # the FIRST such T (the bound may rise over the first steps)
        assert T == 1 or np.all(np.asarray(bd(np.arange(1, T))) > eps)
    else:  # far inside the decreasing range
        assert bd(T - 1) > eps
    assert bd.envelope(T) >= bd(T) * (1 - 1e-12)


def test_bad_steps():
    b = bounds.DiminishingStepBound(1.0, 1.0, 0.5, 1, "t")
    with pytest.raises(ValueError, match="T"):
        b(0)
    with pytest.raises(TypeError, match="T"):
        b(True)
    with pytest.raises(ValueError, match="eps"):
        b.iterations_to(0.0)
    assert b(2**70) < b(2**60)  # a Python int past int64 is still a number of steps
