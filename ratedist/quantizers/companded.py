"""Companded (Panter–Dite / Bennett) quantizer with point density ``lambda ∝ p^(1/3)``.

A compander quantizer maps ``x`` through ``G(x) = int_{-inf}^x p^(1/3) / Z`` (with
``Z = int p^(1/3)``), quantizes uniformly on ``[0, 1]`` with ``n`` cells and maps back: the
reconstruction levels are ``G^{-1}((j + 1/2)/n)`` and the decision thresholds are
``G^{-1}(j/n)`` (Bennett's compander thresholds, the default) or the midpoints of the levels
(``thresholds="midpoint"``, a nearest-neighbour quantizer). Either way the high-resolution MSE
is the Panter–Dite value ``D ≈ Z^3 / (12 n^2)``, the optimum over point densities for
fixed-rate quantization; for ``N(0, sigma^2)``: ``Z^3/12 = sqrt(3) pi sigma^2 / 2``.

The law with density ``∝ p^(1/3)`` is in closed form for the classic families (Gaussian →
Gaussian with ``sigma sqrt 3``, Laplace → Laplace with ``3 scale``, Student-t(df) →
Student-t((df - 2)/3), generalized Gaussian → same shape with scale ``3^(1/shape)`` times
larger); any other source falls back to adaptive quadrature of ``p^(1/3)`` and bracketed root finding.

References:
    P. F. Panter, W. Dite, "Quantization distortion in pulse-count modulation with nonuniform
    spacing of levels", Proc. IRE 39 (1951). W. R. Bennett, "Spectra of quantized signals",
    BSTJ 27 (1948). A. Gersho, R. M. Gray, *Vector Quantization and Signal Compression*
    (1992), Sec. 6.3 and eq. (6.3.13).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import integrate, optimize

from ratedist._validation import check_choice, check_int
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import QUAD_TOL, AbstractSource
from ratedist.sources.classic import Gaussian, Laplace
from ratedist.sources.heavy import GeneralizedGaussian, StudentT

#: Largest number of levels any designer in this package accepts.
MAX_LEVELS = 65536

# Closed-form "p^(1/3)" laws, keyed by source type: a function returning a source whose law has
# density proportional to the cube root of the given one (a registry, not if/elif).
_CUBE_ROOT_LAWS: dict[type, Callable[[Any], AbstractSource]] = {
    Gaussian: lambda s: Gaussian(s.sigma * math.sqrt(3.0)),
    Laplace: lambda s: Laplace(3.0 * s.scale),
    # (1 + x^2/(df s^2))^(-(df+1)/6) is a Student-t with df' = (df - 2)/3, df' s'^2 = df s^2.
    StudentT: lambda s: StudentT(
        df=(s.df - 2.0) / 3.0, scale=s.scale * math.sqrt(3.0 * s.df / (s.df - 2.0))
    ),
    GeneralizedGaussian: lambda s: GeneralizedGaussian(
        shape=s.shape, scale=s.scale * 3.0 ** (1.0 / s.shape)
    ),
}


def check_n_levels(n_levels: Any) -> int:
    """Validate a number of quantizer levels (integer in ``[2, 65536]``)."""
    return check_int("n_levels", n_levels, min_value=2, max_value=MAX_LEVELS)


def check_source(source: Any) -> AbstractSource:
    """Validate that ``source`` is an :class:`AbstractSource` with finite variance whose
    parameters lie in its :attr:`~AbstractSource.DESIGN_RANGES` (``ValueError`` naming the
    parameter otherwise: e.g. Student-t with ``df = 2.0001`` has a finite variance, but its
    ``p^(1/3)`` compander law puts levels past 1e150)."""
    if not isinstance(source, AbstractSource):
        hint = (
            " (a density function: wrap it as PdfSource.from_pdf(pdf, support=(lo, hi)))"
            if callable(source) and not isinstance(source, type)
            else ""
        )
        raise TypeError(f"source must be an AbstractSource, got {type(source).__name__}{hint}")
    if not source._finite_variance():
        raise ValueError(f"source must have a finite variance, got {source!r}")
    source.check_designable()
    return source


def register_cube_root_law(source_type: type, law: Callable[[Any], AbstractSource]) -> None:
    """Enrol a closed-form ``p^(1/3)`` law for ``source_type`` (used by other source modules)."""
    _CUBE_ROOT_LAWS[source_type] = law


def _cube_root_integral(source: AbstractSource) -> float:
    """``Z = int p^(1/3) dx`` by adaptive quadrature (symmetric sources: twice the half line)."""

    def f(x: float) -> float:
        return float(source.pdf(x)) ** (1.0 / 3.0)

    opts = {"epsabs": QUAD_TOL, "epsrel": QUAD_TOL, "limit": 500}
    if source.symmetric:
        return 2.0 * integrate.quad(f, 0.0, np.inf, **opts)[0]
    lo, hi = source.support()
    return integrate.quad(f, lo, hi, **opts)[0]


def panter_dite_constant(source: AbstractSource) -> float:
    """High-resolution constant ``lim n^2 D_n = (1/12) (int p^(1/3))^3`` of fixed-rate MSE.

    Valid for the optimal fixed-rate (Lloyd–Max) quantizer and for the compander quantizer
    with point density ``∝ p^(1/3)``. For ``N(0, sigma^2)`` it equals
    ``sqrt(3) pi sigma^2 / 2 ≈ 2.7207 sigma^2``.

    Args:
        source: a source with finite variance.

    Returns:
        The constant (units of ``x^2``).

    References:
        Panter & Dite (1951); Gersho & Gray (1992), eq. (6.3.13). Assumes a continuous density
        with ``int p^(1/3) < inf`` (true for every source with finite variance here).
    """
    source = check_source(source)
    return _cube_root_integral(source) ** 3 / 12.0


def _numeric_cube_root_ppf(source: AbstractSource, q: np.ndarray) -> np.ndarray:
    """Quantiles of the law ``∝ p^(1/3)`` by quadrature + bracketing (sorted ``q``)."""
    z = _cube_root_integral(source)
    scale = source.std()

    def f(x: float) -> float:
        return float(source.pdf(x)) ** (1.0 / 3.0)

    def mass(a: float, b: float) -> float:
        return integrate.quad(f, a, b, epsabs=QUAD_TOL * 1e-2, epsrel=QUAD_TOL, limit=200)[0] / z

    # Walk through the sorted targets from the median outwards (symmetric) or from -inf.
    out = np.empty_like(q)
    order = np.argsort(q)
    x_prev, q_prev = 0.0, 0.5 if source.symmetric else float("nan")
    if not source.symmetric:
        x_prev = float(source.ppf(0.5))
        q_prev = integrate.quad(f, source.support()[0], x_prev, epsabs=QUAD_TOL)[0] / z
    # Upper half (targets >= q_prev) ascending, lower half descending.
    up = [i for i in order if q[i] >= q_prev]
    down = [i for i in order[::-1] if q[i] < q_prev]
    for idx_list, direction in ((up, 1.0), (down, -1.0)):
        x0, q0 = x_prev, q_prev
        for i in idx_list:
            target = abs(q[i] - q0)
            if target == 0.0:
                out[i] = x0
                continue
            step = scale
            x1 = x0 + direction * step
            while mass(min(x0, x1), max(x0, x1)) < target:
                step *= 2.0
                x1 = x0 + direction * step
            root = optimize.brentq(
                lambda x, x0=x0, target=target: mass(min(x0, x), max(x0, x)) - target,
                min(x0, x1),
                max(x0, x1),
                xtol=1e-15 * scale,
                rtol=1e-15,
            )
            out[i], x0, q0 = root, root, q[i]
    return out


def cube_root_ppf(source: AbstractSource, q: Any) -> np.ndarray:
    """Quantile function of the law with density ``∝ p^(1/3)`` (the compander inverse).

    Args:
        source: any source with a density.
        q: probabilities in ``(0, 1)``.

    Returns:
        ``G^{-1}(q)`` with ``G`` the normalized cumulative integral of ``p^(1/3)``.
    """
    q = np.asarray(q, np.float64)
    law = _CUBE_ROOT_LAWS.get(type(source))
    if law is not None:
        return np.asarray(law(source).ppf(q), np.float64)
    flat = q.reshape(-1)
    return _numeric_cube_root_ppf(source, flat).reshape(q.shape)


def companded_levels(source: AbstractSource, n_levels: int) -> np.ndarray:
    """Levels ``G^{-1}((j + 1/2)/n)``, ``j = 0..n-1`` (symmetrized for symmetric sources)."""
    q = (np.arange(n_levels) + 0.5) / n_levels
    lv = cube_root_ppf(source, q)
    if source.symmetric:
        lv = 0.5 * (lv - lv[::-1])
    return lv


_THRESHOLD_RULES = ("compander", "midpoint")


@DESIGNS.register("companded", rounding="deterministic", truncated=False, rate="fixed")
def companded(source: AbstractSource, n_levels: int, *, thresholds: str = "compander") -> Solution:
    """Compander quantizer with point density ``∝ p^(1/3)`` (closed form, no iteration).

    Args:
        source: the coordinate law (finite variance).
        n_levels: number of levels, integer in ``[2, 65536]``.
        thresholds: ``"compander"`` (default): ``G^{-1}(j/n)``, the uniform grid mapped back
            through the compander; ``"midpoint"``: midpoints of the levels (nearest neighbour).

    Returns:
        ``Solution(ScalarQuantizer, converged=True, n_iter=0, residual=0.0)``.

    Raises:
        ValueError/TypeError: bad ``source``, ``n_levels`` or ``thresholds``.

    References:
        Bennett (1948); Panter & Dite (1951); Gersho & Gray (1992), Sec. 6.3.
    """
    source = check_source(source)
    n_levels = check_n_levels(n_levels)
    rule = check_choice("thresholds", thresholds, _THRESHOLD_RULES)
    levels = companded_levels(source, n_levels)
    if rule == "midpoint":
        quantizer = ScalarQuantizer.from_levels(levels)
    else:
        t = cube_root_ppf(source, np.arange(1, n_levels) / n_levels)
        if source.symmetric:
            t = 0.5 * (t - t[::-1])
        quantizer = ScalarQuantizer(t, levels)
    return Solution(quantizer, True, 0, 0.0)
