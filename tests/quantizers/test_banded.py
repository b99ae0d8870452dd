"""Newton directions from tridiagonal Jacobians, singular ones included."""

import numpy as np
import pytest
from scipy import linalg

from ratedist.quantizers.banded import banded_matvec, lm_direction, newton_direction


def _dense(ab):
    return np.diag(ab[1]) + np.diag(ab[0, 1:], 1) + np.diag(ab[2, :-1], -1)


def _laplace_like(n):
    """A tridiagonal matrix with rows summing to 0: (1, ..., 1) is in its null space."""
    rng = np.random.default_rng(7)
    off_up, off_dn = -rng.uniform(0.3, 0.5, n), -rng.uniform(0.3, 0.5, n)
    ab = np.zeros((3, n))
    ab[0, 1:] = off_up[:-1]
    ab[2, :-1] = off_dn[1:]
    ab[1] = -(np.r_[ab[0, 1:], 0.0] + np.r_[0.0, ab[2, :-1]])
    return ab


def test_banded_matvec_matches_dense():
    rng = np.random.default_rng(0)
    ab = rng.normal(size=(3, 9))
    x = rng.normal(size=9)
    np.testing.assert_allclose(banded_matvec(ab, x), _dense(ab) @ x, rtol=1e-14, atol=1e-14)


def test_regular_system_is_the_plain_newton_step():
    rng = np.random.default_rng(1)
    ab = rng.normal(size=(3, 12))
    ab[1] += 5.0
    f = rng.normal(size=12)
    want = -linalg.solve_banded((1, 1), ab, f)
    np.testing.assert_array_equal(newton_direction(ab, f, max_step=1e6), want)


@pytest.mark.parametrize("n", [3, 8, 33])
def test_lm_direction_is_the_minimum_norm_step_of_a_singular_system(n):
    ab = _laplace_like(n)
    dense = _dense(ab)
    assert np.allclose(dense @ np.ones(n), 0.0, atol=1e-15)  # singular
    f = dense @ np.random.default_rng(n).normal(size=n)  # in the range of J
    step = lm_direction(ab, f)
    want = -np.linalg.pinv(dense) @ f
    # iterated Tikhonov with mu = 1e-8 relative: the pseudo-inverse step, up to a null-space
    # leak of ~eps/mu = 2e-8 and (mu/sigma_min^2)^5 on the smallest nonzero singular value
    np.testing.assert_allclose(step, want, atol=1e-6 * np.max(np.abs(want)))
    # whatever path newton_direction takes, its step solves J d = -f
    d = newton_direction(ab, f, max_step=1e6)
    np.testing.assert_allclose(banded_matvec(ab, d), -f, atol=1e-7 * np.max(np.abs(f)))


def test_exactly_singular_lu_falls_back_instead_of_raising():
    # the integer second-difference matrix with free ends: LU meets an exact zero pivot
    ab = np.array([[0.0, -1.0, -1.0], [1.0, 2.0, 1.0], [-1.0, -1.0, 0.0]])
    with pytest.raises(linalg.LinAlgError):
        linalg.solve_banded((1, 1), ab, np.ones(3))
    f = np.array([-1.0, 0.0, 1.0])  # odd, like the residual of a symmetric design
    d = newton_direction(ab, f, max_step=1e6)
    np.testing.assert_allclose(banded_matvec(ab, d), -f, atol=1e-8)
    np.testing.assert_allclose(d, -np.linalg.pinv(_dense(ab)) @ f, atol=1e-8)


def test_lm_direction_scalar_and_zero_matrix():
    assert lm_direction(np.array([[0.0], [2.0], [0.0]]), np.array([4.0]))[0] == pytest.approx(
        -2.0, rel=1e-9
    )
    np.testing.assert_array_equal(lm_direction(np.zeros((3, 4)), np.ones(4)), np.zeros(4))
