"""Shared cases and independent reference numerics for tests/sources (not a test module).

The reference densities below are written out from the textbook formulas with ``math`` so that
quadrature against them checks the library's own pdf, cdf and closed-form moments
independently (they are also faster than scalar ``scipy.stats`` calls inside ``quad``).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import integrate

from ratedist.sources import (
    SOURCES as REGISTRY,
)
from ratedist.sources import (
    AbstractSource,
    Empirical,
    Gaussian,
    GeneralizedGaussian,
    Laplace,
    PdfSource,
    PowerLaw,
    StudentT,
)

_rng = np.random.default_rng(20240201)
#: Asymmetric, heavy-ish data for the empirical source (kept small: every pdf call is O(n)).
EMPIRICAL_DATA = _rng.standard_t(4.0, size=200) * 0.8 + 0.3


def registry_sources() -> dict[str, AbstractSource]:
    """Every example parameter set of every registered source, keyed by its example id.

    Read at call time, so a source registered by a test module is included from then on.
    """
    out: dict[str, AbstractSource] = {}
    for name in REGISTRY.names():
        spec = REGISTRY.get(name)
        for ex_id, params in spec.examples.items():
            out[ex_id] = spec.build(**params)
    return out


#: The cases of the generic source tests: the registry's examples (collected at import) plus
#: the empirical source, which needs data and is not registered.
SOURCES = {
    **registry_sources(),
    "emp": Empirical(EMPIRICAL_DATA),
    "emp-sym": Empirical(EMPIRICAL_DATA, symmetrize=True),
    # a density given as a function (normalised; ref_pdf uses the function itself). Bounded
    # supports break the generic checks' ppf(0) = -inf: tests/sources/test_pdf_source.py
    "pdf-logistic": PdfSource.from_pdf(lambda x: np.exp(-abs(x)) / (1 + np.exp(-abs(x))) ** 2),
}


def ref_pdf(src):
    """Scalar reference density written independently of the library.

    A class this module has no formula for (e.g. one registered by a test) falls back to its
    own ``pdf``: the generic checks then test its cdf, moments and entropy for consistency
    with that pdf, not the pdf itself.
    """
    if isinstance(src, Gaussian):
        s = src.sigma
        return lambda x: math.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))
    if isinstance(src, Laplace):
        s = src.scale
        return lambda x: math.exp(-abs(x) / s) / (2 * s)
    if isinstance(src, StudentT):
        nu, s = src.df, src.scale
        c = math.exp(math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / (
            s * math.sqrt(nu * math.pi)
        )
        return lambda x: c * (1 + (x / s) ** 2 / nu) ** (-(nu + 1) / 2)
    if isinstance(src, GeneralizedGaussian):
        b, s = src.shape, src.scale
        c = b / (2 * s * math.gamma(1 / b))

        def gg(x: float) -> float:
            if x == 0:
                return c
            log_y = b * math.log(abs(x) / s)
            return 0.0 if log_y > 700 else c * math.exp(-math.exp(log_y))

        return gg
    if isinstance(src, PowerLaw):
        a, s = src.tail_index, src.scale
        return lambda x: a / (2 * s) * (1 + abs(x) / s) ** (-(a + 1))
    if isinstance(src, PdfSource):
        lo, hi = src.support()
        return lambda x: float(src.pdf_fn(x)) if lo <= x <= hi else 0.0
    if isinstance(src, Empirical):
        m, h = np.asarray(src.samples), src.bandwidth
        c = 1 / (m.size * h * math.sqrt(2 * math.pi))
        return lambda x: c * float(np.exp(-0.5 * ((x - m) / h) ** 2).sum())
    return lambda x: float(src.pdf(x))


def scale_of(src) -> float:
    """A typical magnitude (median of |X - centre|) used to place test intervals."""
    if isinstance(src, Empirical):
        return float(np.std(src.samples))
    return float(src.ppf(0.75))


def breakpoints(src) -> list[float]:
    """Points where quadrature should split so that it sees every feature of the integrand."""
    c = scale_of(src)
    pts = [0.0]
    for f in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e4):
        pts += [f * c, -f * c]
    if isinstance(src, Empirical):
        m, h = np.asarray(src.samples), src.bandwidth
        pts += list(np.arange(m[0] - 15 * h, m[-1] + 15 * h, 2 * h))
    return sorted(set(pts))


def ref_integral(f, a: float, b: float, points) -> float:
    """``int_a^b f`` by adaptive quadrature split at ``points`` (ends may be infinite)."""
    inner = sorted(p for p in points if a < p < b)
    edges = [a, *inner, b]
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for u, v in itertools.pairwise(edges):
            val, _ = integrate.quad(f, u, v, epsabs=0.0, epsrel=1e-13, limit=400)
            total += val
    return total


def moment_exists(src, k: int) -> bool:
    if isinstance(src, StudentT):
        return k < src.df
    if isinstance(src, PowerLaw):
        return k < src.tail_index
    if isinstance(src, Gaussian | Laplace | GeneralizedGaussian | Empirical):
        return True
    return src._moment_exists(k)  # a class without a known formula: its own claim


def entropy_integrand(src):
    f = ref_pdf(src)

    def g(x: float) -> float:
        p = f(x)
        return -p * math.log2(p) if p > 0 else 0.0

    return g


__all__ = [
    "EMPIRICAL_DATA",
    "SOURCES",
    "breakpoints",
    "entropy_integrand",
    "moment_exists",
    "ref_integral",
    "ref_integral_sinh",
    "ref_pdf",
    "registry_sources",
    "scale_of",
]


def ref_integral_sinh(f, a: float, b: float, c: float) -> float:
    """``int_a^b f`` after the substitution ``x = c sinh(y)``, for very heavy tails.

    Power tails ``x^-(1+r)`` become exponential ``e^(-r y)`` and stretched exponentials become
    fast-decaying, so quad resolves mass out to ``x ~ 1e65 c`` (needs decay rate r >~ 0.5).
    """

    def g(y: float) -> float:
        if abs(y) > 150.0:  # |x| > 1e65 c: x^4 p would overflow; e^(-r y) < 1e-32 there
            return 0.0
        return f(c * math.sinh(y)) * c * math.cosh(y)

    ya = math.asinh(a / c) if math.isfinite(a) else a
    yb = math.asinh(b / c) if math.isfinite(b) else b
    pts = [0.0, 1.0, -1.0, 3.0, -3.0, 10.0, -10.0, 30.0, -30.0, 100.0, -100.0]
    return ref_integral(g, ya, yb, pts)
