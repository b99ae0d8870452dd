"""evaluate() to ~1e-15 relative: exact MSE against per-cell references in 40-digit mpmath.

The binomial form ``M2 - 2 l M1 + l^2 M0`` of a cell's error cancels ``(l / w)^2`` of its
digits in float64 (10^5 on the outer cells of 256 Gaussian levels), which left the MSE 1e-10
off. The references compute the cell moments ``M_k = int_a^b x^k p(x) dx`` in 40-digit mpmath
(closed forms for N(0, 1): ``Phi``, ``-phi``, ``Phi - x phi``, and Laplace: incomplete gamma
functions; mpmath quadrature for Student-t), where the same combination loses nothing that matters.
"""

import itertools

import mpmath as mp
import numpy as np
import pytest

from ratedist.quantizers import design, evaluate
from ratedist.sources import Gaussian, Laplace, StudentT

#: The tolerance asked of evaluate(); it reaches ~2e-15 on every case below.
REL_TOL = 1e-12
_DPS = 40


def _mpf(x):
    return mp.mpf(float(x)) if np.isfinite(x) else mp.inf * int(np.sign(x))


def _gauss_moments(a, b):
    """``(M0, M1, M2)`` of N(0, 1) on ``(a, b)`` in closed form."""

    def prim(x):
        if mp.isinf(x):
            s = 1 if x > 0 else 0
            return (mp.mpf(s), mp.mpf(0), mp.mpf(s))
        cdf, pdf = mp.ncdf(x), mp.npdf(x)
        return (cdf, -pdf, cdf - x * pdf)

    return tuple(u - v for u, v in zip(prim(b), prim(a), strict=True))


def _quad_moments(pdf):
    def moments(a, b):
        return tuple(mp.quad(lambda x, k=k: x**k * pdf(x), [a, b]) for k in range(3))

    return moments


def _laplace_moments(a, b):
    """``(M0, M1, M2)`` of Laplace(1) on ``(a, b)``: ``int_u^v x^k e^-x / 2`` on each
    half-line is ``gamma(k + 1, u, v) / 2`` (mpmath's lower/upper incomplete gamma)."""

    def half(k, u, v):  # int_u^v x^k e^{-x} / 2 for 0 <= u <= v
        return mp.gammainc(k + 1, u, v) / 2

    out = []
    for k in range(3):
        pos = half(k, max(a, 0), max(b, 0))
        neg = half(k, max(-b, 0), max(-a, 0))
        out.append(pos + (-1) ** k * neg)
    return tuple(out)


def _student_pdf(nu):
    nu = mp.mpf(nu)
    k = mp.gamma((nu + 1) / 2) / (mp.sqrt(nu * mp.pi) * mp.gamma(nu / 2))
    return lambda x: k * (1 + x * x / nu) ** (-(nu + 1) / 2)


def reference_mse(q, moments):
    """``sum_j int (x - l_j)^2 p`` over the cells, from mpmath cell moments."""
    t = [-mp.inf, *map(_mpf, q.thresholds), mp.inf]
    total = mp.mpf(0)
    for j, lv in enumerate(q.levels):
        m0, m1, m2 = moments(t[j], t[j + 1])
        c = _mpf(lv)
        total += m2 - 2 * c * m1 + c * c * m0
    return total


def reference_stochastic_mse(q, moments):
    """``sum_j int (l_{j+1} - x)(x - l_j) p`` plus the two clipping tails, in mpmath."""
    lv = list(map(_mpf, q.levels))
    total = mp.mpf(0)
    for a, b in itertools.pairwise(lv):
        m0, m1, m2 = moments(a, b)
        total += -m2 + (a + b) * m1 - a * b * m0
    for a, b, c in ((lv[-1], mp.inf, lv[-1]), (-mp.inf, lv[0], lv[0])):
        m0, m1, m2 = moments(a, b)
        total += m2 - 2 * c * m1 + c * c * m0
    return total


CASES = {
    "gaussian": (Gaussian(), _gauss_moments, [2, 3, 8, 64, 256]),
    "laplace": (Laplace(), _laplace_moments, [3, 256]),
    "student-t3": (StudentT(3.0), _quad_moments(_student_pdf(3)), [32]),
}
PARAMS = [(name, n) for name, (_, _, ns) in CASES.items() for n in ns]


def _check_mse(name: str, n: int, rounding: str, reference) -> None:
    src, moments, _ = CASES[name]
    q = design("lloyd-max", src, levels=n).value
    with mp.workdps(_DPS):
        ref = reference(q, moments)
        got = evaluate(q, src, rounding=rounding).mse
        assert abs(got - ref) <= REL_TOL * ref, float(abs(got - ref) / ref)


@pytest.mark.parametrize(("name", "n"), PARAMS)
def test_lloyd_max_mse_matches_mpmath_to_1e12(name, n):
    _check_mse(name, n, "deterministic", reference_mse)


@pytest.mark.parametrize(("name", "n"), [("gaussian", 256), ("laplace", 256), ("student-t3", 32)])
def test_stochastic_mse_matches_mpmath_to_1e12(name, n):
    _check_mse(name, n, "stochastic", reference_stochastic_mse)


def test_centered_moment_of_narrow_far_cells():
    """E[(X - c)^k; a < X < b] for cells 1e-3 wide at 3 and 6 sigma, the centre inside or
    at an end, against mpmath; and the shape/sign conventions of partial_moment."""
    src = Gaussian()
    a = np.array([3.0, 6.0, -6.001, 3.0])
    b = np.array([3.001, 6.001, -6.0, np.inf])
    c = np.array([3.0004, 6.0, -6.0005, 3.0])
    with mp.workdps(_DPS):
        for k in (1, 2):
            got = src.centered_moment(k, a, b, c)
            for g, u, v, w in zip(got, a, b, c, strict=True):
                ref = mp.quad(
                    lambda x, w=w, k=k: (x - _mpf(w)) ** k * mp.npdf(x), [_mpf(u), _mpf(v)]
                )
                assert abs(g - ref) <= REL_TOL * abs(ref), (k, u, float(abs(g - ref) / abs(ref)))
    flipped = src.centered_moment(2, b[:3], a[:3], c[:3])
    np.testing.assert_array_equal(flipped, -src.centered_moment(2, a[:3], b[:3], c[:3]))
    assert np.shape(src.centered_moment(2, 0.0, 1.0, 0.5)) == ()
    assert src.centered_moment(2, 1.0, 1.0, 0.5) == 0.0
    with pytest.raises(ValueError, match="center"):
        src.centered_moment(2, 0.0, 1.0, np.nan)
