"""Two-stage truncated quantizers: clip to ``[-alpha, alpha]``, then unbiased stochastic rounding.

The compressor of arXiv 2402.01160 (TNQSGD) and arXiv 2402.01798 (TUQSGD/TNQSGD for
power-law tails): ``Q(T_alpha(g))`` with ``T_alpha(g) = clip(g, -alpha, alpha)`` and ``Q``
unbiased stochastic rounding onto levels ``-alpha = l_0 < ... < l_s = alpha``. Its
per-coordinate error is::

    E(Q(T(g)) - g)^2 = E[(l_{j+1} - X)(X - l_j); cell j] + E[(|X| - alpha)^2; |X| > alpha]
                     = rounding variance                  + truncation bias

Designs are chosen by minimising either

* ``objective="bound"``: the papers' objective, in which each cell's rounding variance is
  bounded by ``Delta^2/4`` — non-uniform levels with density ``lambda`` give
  ``(1/(4 s^2)) int p/lambda^2``, minimised by ``lambda* ∝ p^(1/3)`` to
  ``(int_{-alpha}^{alpha} p^(1/3))^3 / (4 s^2)``; uniform levels give ``alpha^2/s^2`` (every
  coordinate bounded by ``Delta^2/4``, which is what yields the Lambert-W optimum) — plus the
  exact bias; or
* ``objective="exact"``: the exact error :func:`ratedist.quantizers.exact.stochastic_error`
  of the design whose levels are placed by the same rule for the given ``alpha`` (1-D numeric
  minimisation over ``alpha``).

How ``alpha*`` of the bound is found (see :mod:`ratedist.quantizers.truncation_models`, whose
:data:`MODELS` registry holds the closed forms per source family):

* Laplace(gamma): closed forms — non-uniform ``3 gamma log(1 + 2 s/(3 sqrt 6))`` with optimal
  bound ``27 gamma^2/(s + 3 sqrt(6)/2)^2``; uniform ``gamma W0(s^2)`` (Lambert W).
* Gaussian(sigma): closed-form objective and derivative, root found numerically (no closed
  form exists), both rules.
* PowerLaw(a, sigma): non-uniform closed form ``sigma((1 + s/c_a)^(3/(a-2)) - 1)``; uniform:
  root of the closed-form derivative.
* any other source (Student-t, generalized Gaussian, empirical, ...): root of ``F'`` with
  quadrature, levels as quantiles of ``p^(1/3)`` (asymmetric sources allowed for the
  full-range code).

The derivations, and a table comparing the bound optimum with the exact optimum, are in
``docs/theory/truncation.md``.

Codes (bits per coordinate):

* ``code="full_range"`` (default, the papers' convention): ``s`` intervals on
  ``[-alpha, alpha]``, ``s + 1`` levels, ``b = log2(s + 1)`` bits (``s = 2^b - 1``).
* ``code="sign_magnitude"`` (QSGD-style): one sign bit plus ``s + 1`` magnitude levels
  ``0 = m_0 < ... < m_s = alpha``; ``b = 1 + log2(s + 1)`` bits. Rounding ``|g|`` between
  magnitudes and restoring the sign is the same as rounding ``g`` onto the ``2 s + 1`` signed
  levels, and for a symmetric source both the bound and the optimal density coincide with the
  full-range design with ``2 s`` intervals (``int_0^alpha (2p)^(1/3)`` cubed is
  ``(int_{-alpha}^{alpha} p^(1/3))^3 / 4``). So the design is computed with ``s_eff = 2 s`` and
  the quantizer has ``2 s + 1`` levels; only the bit count differs. For Laplace the optimal
  bound is ``27 gamma^2 / (2 s + 3 sqrt(6)/2)^2``.

References:
    G. Yan, T. Li, Y. Xiao, C. Li, L. Song, "Truncated Non-Uniform Quantization for Distributed
    SGD", arXiv:2402.01160 (2024).
    G. Yan, T. Li, Y. Xiao, H. Hou, L. Song, "Improved Quantization Strategies for Managing
    Heavy-tailed Gradients in Distributed Learning", arXiv:2402.01798 (2024).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from ratedist._validation import check_choice, check_int, check_positive
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.exact import StochasticError, stochastic_error
from ratedist.quantizers.registry import DESIGNS
from ratedist.quantizers.truncation_models import (
    MODELS,
    ROOT_RTOL,
    TruncationModel,
    cube_root_quantiles,
    generic_bound,
    generic_bound_slope,
    model_for,
)
from ratedist.sources.base import AbstractSource
from ratedist.sources.heavy import PowerLaw

LEVEL_RULES = ("nonuniform", "uniform")
OBJECTIVES = ("bound", "exact")
CODES = ("full_range", "sign_magnitude")
ROUNDINGS = ("stochastic",)

#: Absolute tolerance (relative to the bound-optimal alpha) of the exact-error minimisation.
EXACT_XATOL = 1e-10

#: Re-exported from :mod:`ratedist.quantizers.truncation_models` (they used to live here).
__all__ = [
    "CODES",
    "EXACT_XATOL",
    "LEVEL_RULES",
    "MODELS",
    "OBJECTIVES",
    "ROOT_RTOL",
    "ROUNDINGS",
    "TruncationDesign",
    "TruncationModel",
    "cube_root_quantiles",
    "generic_bound",
    "generic_bound_slope",
    "optimal_truncation",
    "powerlaw_design",
    "powerlaw_growth_exponent",
    "tnq",
    "truncation_design",
    "truncation_levels",
    "tuq",
]


@dataclass(frozen=True)
class TruncationDesign:
    """A designed truncated quantizer and how good it is.

    Attributes:
        quantizer: levels ``l_0 = -alpha < ... < l_last = alpha`` (``s + 1`` of them for the
            full-range code, ``2 s + 1`` for sign+magnitude) with midpoint thresholds (used only
            by the deterministic apply; the design is meant for ``quantizer.stochastic``).
        alpha: truncation threshold.
        s: number of intervals of the code (magnitude intervals for sign+magnitude).
        bound_mse: the papers' bound objective (variance bound + exact bias) at this design.
        exact: exact variance, bias and mse of clipping + unbiased stochastic rounding.
        form: ``"bound"`` (alpha minimises the bound), ``"exact"`` (alpha minimises the exact
            error for levels placed by ``level_rule``) or ``"given"`` (alpha supplied).
        level_rule: ``"nonuniform"`` (``lambda ∝ p^(1/3)``) or ``"uniform"``.
        source: the source the design was made for.
        code: ``"full_range"`` or ``"sign_magnitude"``.
        rate_bits: fixed-rate bits per coordinate of the code.
        solver: how ``alpha`` was obtained (``"closed form"``, ``"root of F'"``,
            ``"minimize exact"``, ``"given"``).
    """

    quantizer: ScalarQuantizer
    alpha: float
    s: int
    bound_mse: float
    exact: StochasticError
    form: str
    level_rule: str
    source: AbstractSource
    code: str
    rate_bits: float
    solver: str


# ----------------------------------------------------------------------------- level placement
def _fractions(s_eff: int) -> np.ndarray:
    return np.arange(s_eff + 1) / s_eff


def truncation_levels(
    source: AbstractSource, s: int, alpha: float, *, level_rule: str = "nonuniform"
) -> np.ndarray:
    """Levels of the full-range code with ``s`` intervals on ``[-alpha, alpha]``.

    Non-uniform: the ``j/s`` quantiles of ``lambda* ∝ p^(1/3)`` restricted to
    ``[-alpha, alpha]`` (closed form for Laplace, Gaussian and power law; quadrature otherwise).
    Uniform: ``-alpha + 2 alpha j / s``. The end levels are exactly ``-alpha`` and ``alpha``.

    Args:
        source: a source with a pdf.
        s: number of intervals, integer >= 1.
        alpha: truncation threshold, > 0.
        level_rule: ``"nonuniform"`` or ``"uniform"``.

    Returns:
        ``s + 1`` strictly increasing levels.

    Raises:
        ValueError / TypeError: bad ``s``, ``alpha`` or ``level_rule``.
    """
    s = check_int("s", s, min_value=1)
    alpha = check_positive("alpha", alpha)
    level_rule = check_choice("level_rule", level_rule, LEVEL_RULES)
    return _levels(source, s, alpha, level_rule)


def _levels(source: AbstractSource, s_eff: int, alpha: float, level_rule: str) -> np.ndarray:
    fr = _fractions(s_eff)
    if level_rule == "uniform":
        lv = -alpha + 2.0 * alpha * fr
    else:
        model = model_for(source, level_rule)
        if model.magnitudes is None:
            lv = cube_root_quantiles(source, alpha, fr)
        else:
            t = np.abs(2.0 * fr - 1.0)
            lv = np.sign(2.0 * fr - 1.0) * model.magnitudes(source, s_eff, alpha, t)
    lv[0], lv[-1] = -alpha, alpha
    if s_eff % 2 == 0 and (level_rule == "uniform" or source.symmetric):
        lv[s_eff // 2] = 0.0  # exact zero level (a quadrature quantile would be ~1e-17 off)
    return lv


# ----------------------------------------------------------------------------- public API
def _check_source(source: Any, code: str) -> AbstractSource:
    if not isinstance(source, AbstractSource):
        raise TypeError(f"source must be an AbstractSource, got {type(source).__name__}")
    if code == "sign_magnitude" and not source.symmetric:
        raise ValueError(
            f"code='sign_magnitude' needs a symmetric source, got {source!r}; use code='full_range'"
        )
    return source


def _s_eff(s: int, code: str) -> int:
    return 2 * s if code == "sign_magnitude" else s


def _rate_bits(s: int, code: str) -> float:
    return math.log2(s + 1) + (1.0 if code == "sign_magnitude" else 0.0)


def _build(
    source: AbstractSource,
    s: int,
    alpha: float,
    *,
    level_rule: str,
    code: str,
    form: str,
    solver: str,
) -> TruncationDesign:
    s_eff = _s_eff(s, code)
    levels = _levels(source, s_eff, alpha, level_rule)
    quantizer = ScalarQuantizer.from_levels(levels)
    bound = model_for(source, level_rule).bound(source, s_eff, alpha)
    return TruncationDesign(
        quantizer=quantizer,
        alpha=float(alpha),
        s=s,
        bound_mse=float(bound),
        exact=stochastic_error(quantizer, source),
        form=form,
        level_rule=level_rule,
        source=source,
        code=code,
        rate_bits=_rate_bits(s, code),
        solver=solver,
    )


def truncation_design(
    source: AbstractSource,
    s: int,
    alpha: float,
    *,
    levels: str = "nonuniform",
    code: str = "full_range",
) -> TruncationDesign:
    """The truncated design at a given ``alpha`` (levels placed by the ``levels`` rule).

    Args:
        source: the gradient-coordinate law.
        s: intervals of the code (integer >= 1; magnitude intervals for sign+magnitude).
        alpha: truncation threshold, > 0.
        levels: ``"nonuniform"`` (``lambda ∝ p^(1/3)``) or ``"uniform"``.
        code: ``"full_range"`` (``log2(s+1)`` bits) or ``"sign_magnitude"`` (``1 + log2(s+1)``).

    Returns:
        A :class:`TruncationDesign` with ``form="given"``.

    Raises:
        ValueError / TypeError: bad arguments (each message names the argument).
    """
    s = check_int("s", s, min_value=1)
    alpha = check_positive("alpha", alpha)
    levels = check_choice("levels", levels, LEVEL_RULES)
    code = check_choice("code", code, CODES)
    source = _check_source(source, code)
    return _build(source, s, alpha, level_rule=levels, code=code, form="given", solver="given")


def _optimal(
    source: AbstractSource, s: int, levels: str, objective: str, code: str
) -> tuple[TruncationDesign, int, float]:
    s_eff = _s_eff(s, code)
    model = model_for(source, levels)
    alpha_b, n_iter, residual = model.alpha_opt(source, s_eff)
    if objective == "bound":
        design = _build(
            source, s, alpha_b, level_rule=levels, code=code, form="bound", solver=model.solver
        )
        return design, n_iter, residual

    def exact_mse(alpha: float) -> float:
        lv = _levels(source, s_eff, alpha, levels)
        return stochastic_error(ScalarQuantizer.from_levels(lv), source).mse

    lo, hi = 0.25 * alpha_b, 4.0 * alpha_b
    for _ in range(20):
        res = optimize.minimize_scalar(
            exact_mse,
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": EXACT_XATOL * alpha_b, "maxiter": 500},
        )
        x = float(res.x)
        if x < lo + 1e-3 * (hi - lo):
            lo, hi = 0.25 * lo, lo * 1.01
        elif x > hi - 1e-3 * (hi - lo):
            lo, hi = hi * 0.99, 4.0 * hi
        else:
            break
    else:  # pragma: no cover - the exact error always has an interior minimum
        raise RuntimeError("exact-error minimum over alpha not bracketed")
    design = _build(
        source, s, x, level_rule=levels, code=code, form="exact", solver="minimize exact"
    )
    return design, int(res.nfev), EXACT_XATOL * alpha_b


def optimal_truncation(
    source: AbstractSource,
    s: int,
    *,
    levels: str = "nonuniform",
    objective: str = "bound",
    code: str = "full_range",
    rounding: str = "stochastic",
) -> TruncationDesign:
    """Optimal truncation threshold and levels for clipping + unbiased stochastic rounding.

    ``objective="bound"`` minimises the papers' objective (closed form for Laplace — see the
    module docstring); ``objective="exact"`` minimises the exact error
    (:func:`ratedist.quantizers.exact.stochastic_error`) over ``alpha`` with the levels placed
    by the same rule for each ``alpha`` (bounded Brent search around the bound optimum).

    Args:
        source: gradient-coordinate law (symmetric for ``code="sign_magnitude"``).
        s: intervals of the code, integer >= 1 (full range: ``s + 1`` levels, ``log2(s+1)``
            bits; sign+magnitude: ``s + 1`` magnitudes, ``1 + log2(s+1)`` bits).
        levels: ``"nonuniform"`` (TNQ, ``lambda ∝ p^(1/3)``) or ``"uniform"`` (TUQ).
        objective: ``"bound"`` or ``"exact"``.
        code: ``"full_range"`` or ``"sign_magnitude"``.
        rounding: only ``"stochastic"`` (the objective assumes unbiased stochastic rounding).

    Returns:
        The :class:`TruncationDesign`.

    Raises:
        ValueError / TypeError: bad arguments (each message names the argument); a power-law
            source with ``tail_index <= 2`` (infinite bias).

    References:
        arXiv:2402.01160, Sec. IV (Laplace, non-uniform: Theorem 2); arXiv:2402.01798, Sec. IV-V
        (uniform and power-law tails).

    Assumptions:
        Coordinates i.i.d. with the given law; the bound replaces each cell's rounding variance
        by ``Delta^2/4`` and uses the level-density (many-levels) approximation for the
        non-uniform variance; the exact objective has neither approximation.
    """
    s = check_int("s", s, min_value=1)
    levels = check_choice("levels", levels, LEVEL_RULES)
    objective = check_choice("objective", objective, OBJECTIVES)
    code = check_choice("code", code, CODES)
    check_choice("rounding", rounding, ROUNDINGS)
    source = _check_source(source, code)
    return _optimal(source, s, levels, objective, code)[0]


def _designer(levels: str) -> Callable[..., Solution]:
    def designer(
        source: AbstractSource,
        n_levels: int,
        *,
        exact: bool = False,
        rounding: str = "stochastic",
        code: str = "full_range",
    ) -> Solution:
        n_levels = check_int("n_levels", n_levels, min_value=2)
        rounding = check_choice("rounding", rounding, ROUNDINGS)
        if not isinstance(exact, bool | np.bool_):
            raise TypeError(f"exact must be a bool, got {exact!r}")
        code = check_choice("code", code, CODES)
        source = _check_source(source, code)
        objective = "exact" if exact else "bound"
        design, n_iter, residual = _optimal(source, n_levels - 1, levels, objective, code)
        return Solution(design, True, n_iter, float(residual))

    return designer


_DOC = """{title} design for clipping + unbiased stochastic rounding (registered as ``"{name}"``).

    Args:
        source: gradient-coordinate law.
        n_levels: levels of the full-range code (``s = n_levels - 1`` intervals,
            ``log2(n_levels)`` bits); with ``code="sign_magnitude"`` the number of magnitude
            levels ``0 = m_0 < ... < m_s = alpha`` (``1 + log2(n_levels)`` bits).
        exact: minimise the exact error over ``alpha`` instead of the papers' bound.
        rounding: only ``"stochastic"`` (the design is for unbiased stochastic rounding).
        code: ``"full_range"`` or ``"sign_magnitude"``.

    Returns:
        ``Solution(value=TruncationDesign, converged=True, n_iter, residual)``: ``n_iter`` and
        ``residual`` are 0 for closed forms, the root finder's iterations and ``|F'(alpha)|``
        for numeric roots, the function evaluations and the alpha tolerance for ``exact=True``.

    Raises:
        ValueError / TypeError: bad arguments (each message names the argument).

    References:
        arXiv:2402.01160; arXiv:2402.01798.
    """

tnq = _designer("nonuniform")
tnq.__name__ = tnq.__qualname__ = "tnq"
tnq.__doc__ = _DOC.format(title="TNQ (truncated non-uniform, lambda ∝ p^(1/3))", name="tnq")
tuq = _designer("uniform")
tuq.__name__ = tuq.__qualname__ = "tuq"
tuq.__doc__ = _DOC.format(title="TUQ (truncated uniform)", name="tuq")

DESIGNS.add("tnq", tnq, rounding="stochastic", truncated=True, level_rule="nonuniform")
DESIGNS.add("tuq", tuq, rounding="stochastic", truncated=True, level_rule="uniform")


# ----------------------------------------------------------------------------- power law
def _check_tail_index(tail_index: Any) -> float:
    a = check_positive("tail_index", tail_index)
    if a <= 2:
        raise ValueError(f"tail_index must be > 2 for a finite truncation bias, got {a!r}")
    return a


def powerlaw_growth_exponent(tail_index: float, *, levels: str = "nonuniform") -> float:
    """Exponent ``e`` of ``alpha* ~ C s^e`` for a power-law tail ``P(|X| > x) ~ x^-a``.

    Non-uniform: ``3/(a - 2)`` (exact for the model of :mod:`ratedist.symbolic.powerlaw`:
    ``alpha* = sigma((1 + s/c_a)^(3/(a-2)) - 1)``); uniform: ``2/a`` (from
    ``alpha (1 + alpha/sigma)^(a-1) = sigma s^2/(a-1)``).

    Raises:
        ValueError: ``tail_index <= 2`` or unknown ``levels``.
    """
    a = _check_tail_index(tail_index)
    levels = check_choice("levels", levels, LEVEL_RULES)
    return 3.0 / (a - 2.0) if levels == "nonuniform" else 2.0 / a


def powerlaw_design(
    tail_index: float,
    s: int,
    *,
    scale: float = 1.0,
    levels: str = "nonuniform",
    objective: str = "bound",
    code: str = "full_range",
) -> TruncationDesign:
    """Truncated design for power-law-tailed gradients (``PowerLaw(tail_index, scale)``).

    Non-uniform bound optimum in closed form: ``alpha* = scale((1 + s/c_a)^(3/(a-2)) - 1)``,
    ``c_a = (3/(a-2)) sqrt(3 a (a-1)/2)``, optimal bound ``27 a scale^2/((a-2)^3 (s + c_a)^2)``;
    ``alpha*`` grows polynomially in ``s`` (exponent ``3/(a-2)``), not logarithmically as for
    Laplace or Gaussian gradients.

    Args:
        tail_index: ``a > 2`` (``P(|X| > x) ~ x^-a``; the bias is infinite for ``a <= 2``).
        s: intervals of the code, integer >= 1.
        scale: scale of the law, > 0.
        levels: ``"nonuniform"`` or ``"uniform"``.
        objective: ``"bound"`` or ``"exact"``.
        code: ``"full_range"`` or ``"sign_magnitude"``.

    Returns:
        The :class:`TruncationDesign` (its ``source`` is the ``PowerLaw``).

    Raises:
        ValueError / TypeError: bad arguments (each message names the argument).

    References:
        arXiv:2402.01798 Sec. IV-V (truncation for power-law tails).
    """
    a = _check_tail_index(tail_index)
    source = PowerLaw(a, check_positive("scale", scale))
    return optimal_truncation(source, s, levels=levels, objective=objective, code=code)
