"""Partial moments E[X^k; a < X < b] of every source against independent quadrature."""

import math

import numpy as np
import pytest
from scipy import integrate
from sources_testlib import (
    SOURCES,
    breakpoints,
    moment_exists,
    ref_integral,
    ref_pdf,
    scale_of,
)

from ratedist.sources import Empirical

INF = math.inf


def _intervals(src):
    """Cells in units of the source's typical magnitude: whole line, half lines, bulk cells,
    a cell straddling 0, a tiny cell, and far-tail cells on both sides."""
    c = scale_of(src)
    if isinstance(src, Empirical):
        lo, hi = float(src.samples[0]), float(src.samples[-1])
        far = [(-INF, lo - 6 * c), (hi + 2 * c, hi + 5 * c)]
    else:
        far = [(-INF, -40 * c), (50 * c, 80 * c)]
    return [
        (-INF, INF),
        (0.0, INF),
        (-INF, 0.0),
        (0.3 * c, 2.0 * c),
        (-5.0 * c, -1.0 * c),
        (-0.5 * c, 1.5 * c),
        (3.0 * c, INF),
        (-0.01 * c, 0.02 * c),
        *far,
    ]


@pytest.mark.parametrize("k", range(5))
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_partial_moment_matches_quadrature(name, k):
    src = SOURCES[name]
    f = ref_pdf(src)
    pts = breakpoints(src)
    c = scale_of(src)
    for a, b in _intervals(src):
        infinite_end = math.isinf(a) or math.isinf(b)
        if not moment_exists(src, k) and infinite_end:
            with pytest.raises(ValueError, match=f"k={k}"):
                src.partial_moment(k, a, b)
            continue
        got = float(src.partial_moment(k, a, b))
        want = ref_integral(lambda x, k=k: x**k * f(x), a, b, pts)
        # 1e-10 relative: both sides are accurate to ~1e-13 (quad epsrel, special functions).
        # The absolute floor 1e-12 c^k covers values that are themselves ~1e-12 c^k or
        # smaller (tiny cells, far tails of light-tailed laws), where the closed forms'
        # rounding (e.g. the kernel expansion of Empirical) dominates.
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12 * c**k), (a, b)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_total_mass_and_second_moment(name):
    src = SOURCES[name]
    # exact identities of the closed forms: 1e-12
    assert float(src.partial_moment(0, -INF, INF)) == pytest.approx(1.0, abs=1e-12)
    if src._finite_variance():
        m1 = float(src.partial_moment(1, -INF, INF))
        m2 = float(src.partial_moment(2, -INF, INF))
        assert m1 == pytest.approx(src.mean(), abs=1e-12 * scale_of(src))
        assert m2 - m1**2 == pytest.approx(src.variance(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_variance_matches_quadrature(name):
    src = SOURCES[name]
    if not src._finite_variance():
        pytest.skip("infinite variance")
    f = ref_pdf(src)
    pts = breakpoints(src)
    mean = ref_integral(lambda x: x * f(x), -INF, INF, pts)
    var = ref_integral(lambda x: (x - mean) ** 2 * f(x), -INF, INF, pts)
    assert src.variance() == pytest.approx(var, rel=1e-10)  # vs quadrature: 1e-10


def test_student_t_fourth_moment_textbook():
    # E X^4 = 3 nu^2 s^4 / ((nu - 2)(nu - 4)) for nu > 4 (independent textbook closed form)
    src = SOURCES["t5.5"]
    nu, s = src.df, src.scale
    want = 3 * nu**2 * s**4 / ((nu - 2) * (nu - 4))
    assert float(src.partial_moment(4, -INF, INF)) == pytest.approx(want, rel=1e-12)


def test_power_law_moments_textbook():
    # Lomax: E|X|^k = s^k k! / prod_{i=1..k} (a - i) for k < a
    src = SOURCES["pl4.5"]
    a, s = src.tail_index, src.scale
    for k in range(5):
        want = s**k * math.factorial(k) / math.prod(a - i for i in range(1, k + 1))
        got = float(src.partial_moment(k, 0, INF) + (-1) ** k * src.partial_moment(k, -INF, 0))
        if k % 2 == 0:
            assert got == pytest.approx(want, rel=1e-12)
        assert float(src.partial_moment(k, 0, INF)) == pytest.approx(want / 2, rel=1e-12)


@pytest.mark.parametrize("name", ["gauss", "t5.5", "gg0.6", "pl1.5", "emp"])
def test_broadcasting_and_orientation(name):
    src = SOURCES[name]
    c = scale_of(src)
    a = np.array([[-2.0], [0.1], [1.0]]) * c
    b = np.array([-1.0, 0.5, 3.0, INF]) * c
    got = src.partial_moment(1, a, b)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            one = float(src.partial_moment(1, a[i, 0], b[j]))
            assert got[i, j] == pytest.approx(one, rel=1e-14, abs=1e-300)
    # reversed ends give minus the moment (exact)
    np.testing.assert_array_equal(src.partial_moment(1, b, a), -src.partial_moment(1, a, b))
    assert float(src.partial_moment(3, 0.7 * c, 0.7 * c)) == 0.0


@pytest.mark.parametrize("name", ["t1.5", "t2.5", "pl1.5", "pl3"])
def test_infinite_moment_finite_cells_still_work(name):
    src = SOURCES[name]
    k = 3
    assert not moment_exists(src, k)
    got = src.partial_moment(k, np.array([-7.0, 1.0]), np.array([-2.0, 9.0]))
    f = ref_pdf(src)
    pts = breakpoints(src)
    want = [ref_integral(lambda x: x**3 * f(x), u, v, pts) for u, v in [(-7, -2), (1, 9)]]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_empirical_chunking_matches_single_block(monkeypatch):
    from ratedist.sources import empirical as emp_mod

    src = SOURCES["emp"]
    edges = np.linspace(-4, 4, 41)
    full = src.partial_moment(2, edges[:-1], edges[1:])
    pdf_full = src.pdf(edges)
    cdf_full = src.cdf(edges)
    monkeypatch.setattr(emp_mod, "_BLOCK", 450)  # forces 2 rows per block and a remainder
    np.testing.assert_allclose(src.partial_moment(2, edges[:-1], edges[1:]), full, rtol=1e-14)
    np.testing.assert_allclose(src.pdf(edges), pdf_full, rtol=1e-14)
    np.testing.assert_allclose(src.cdf(edges), cdf_full, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_centered_moment_matches_quadrature(name):
    """E[(X - c)^2; a < X < b] on a wide cell, a narrow far cell (where the binomial form
    cancels ~6 digits and the direct integral is used) and a tail, against quadrature of the
    independent reference density."""
    src = SOURCES[name]
    pdf = ref_pdf(src)
    s = src.std() if src._finite_variance() else 1.0
    m = src.mean() if src._moment_exists(1) else 0.0
    cells = [(m - s, m + 2 * s, m + 0.3 * s), (m + 2 * s, m + 2.002 * s, m + 2.001 * s)]
    if src._moment_exists(2):
        cells.append((m + 1.5 * s, np.inf, m + 1.5 * s))
    for a, b, c in cells:
        got = float(src.centered_moment(2, a, b, c))
        ref = integrate.quad(
            lambda x, c=c: (x - c) ** 2 * pdf(x), a, b, epsabs=0, epsrel=1e-13, limit=200
        )[0]
        assert got == pytest.approx(ref, rel=1e-10), (a, b, c)
