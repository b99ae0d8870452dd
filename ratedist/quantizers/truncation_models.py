"""How the truncation threshold ``alpha*`` of the bound and the level magnitudes are found, per
source family: closed forms and the generic quadrature fallback (used by
:mod:`ratedist.quantizers.truncated`).

A :class:`TruncationModel` bundles, for one ``(source family, level rule)`` pair, the papers'
bound objective ``F(alpha)``, its minimiser ``alpha*`` and (non-uniform levels) the level
magnitudes as quantiles of ``lambda* ∝ p^(1/3)`` on ``[-alpha, alpha]``. :data:`MODELS` holds
the closed and semi-closed forms, built from the sympy derivations of :mod:`ratedist.symbolic`:

* Laplace(gamma): closed forms — non-uniform ``3 gamma log(1 + 2 s/(3 sqrt 6))``; uniform
  ``gamma W0(s^2)`` (Lambert W).
* Gaussian(sigma): closed-form objective and derivative, root found numerically.
* PowerLaw(a, sigma): non-uniform closed form ``sigma((1 + s/c_a)^(3/(a-2)) - 1)``; uniform:
  root of the closed-form derivative.

Any other source uses :func:`model_for`'s generic model: ``F`` and ``F'`` by adaptive
quadrature (:func:`generic_bound`, :func:`generic_bound_slope`), ``alpha*`` as the root of
``F'``, levels by :func:`cube_root_quantiles`.

References:
    arXiv:2402.01160 (TNQSGD); arXiv:2402.01798 (TUQSGD, power-law tails).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy import integrate, optimize

from ratedist._registry import Registry
from ratedist.quantizers.exact import truncation_bias
from ratedist.sources.base import QUAD_TOL, AbstractSource

#: Relative tolerance of every root search for ``alpha*`` of the bound.
ROOT_RTOL = 1e-14
#: Panels and Gauss–Legendre nodes of the generic level solver (quantiles of ``p^(1/3)``).
_N_PANELS = 128
_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


class TruncationModel(NamedTuple):
    """How one (source family, level rule) pair is designed.

    Attributes:
        bound: ``(source, s_eff, alpha) -> F(alpha)``, the bound objective.
        alpha_opt: ``(source, s_eff) -> (alpha*, n_iter, residual)``.
        magnitudes: ``(source, s_eff, alpha, t) -> l(t)`` level magnitudes for quantile
            fractions ``t`` in ``[0, 1]`` (``None``: uniform levels).
        solver: description of how ``alpha_opt`` works.
    """

    bound: Callable[[AbstractSource, int, float], float]
    alpha_opt: Callable[[AbstractSource, int], tuple[float, int, float]]
    magnitudes: Callable[[AbstractSource, int, float, np.ndarray], np.ndarray] | None
    solver: str


#: Closed-form / semi-closed-form models keyed ``"<source.name>/<level_rule>"``; any other
#: source uses the generic numeric model of its level rule.
MODELS: Registry[TruncationModel] = Registry("truncation model")


# ----------------------------------------------------------------------------- generic numerics
def _bias(source: AbstractSource, alpha: float) -> float:
    """``E[(X - alpha)^2; X > alpha] + E[(X + alpha)^2; X < -alpha]``."""
    return truncation_bias(source, -alpha, alpha)


def _bias_slope(source: AbstractSource, alpha: float) -> float:
    """``dB/dalpha = -2 E[X - alpha; X > alpha] - 2 E[-alpha - X; X < -alpha]``."""
    up = float(source.partial_moment(1, alpha, np.inf)) - alpha * float(
        source.partial_moment(0, alpha, np.inf)
    )
    dn = -float(source.partial_moment(1, -np.inf, -alpha)) - alpha * float(
        source.partial_moment(0, -np.inf, -alpha)
    )
    return -2.0 * (up + dn)


def _cbrt_pdf(source: AbstractSource, x: Any) -> np.ndarray:
    return np.cbrt(np.asarray(source.pdf(x), np.float64))


def _cbrt_mass(source: AbstractSource, lo: float, hi: float) -> float:
    """``int_lo^hi p^(1/3)`` by adaptive quadrature, split at 0 (where Laplace-type laws kink)."""
    pieces = [(lo, min(hi, 0.0)), (max(lo, 0.0), hi)]
    total = 0.0
    for a, b in pieces:
        if b > a:
            val, _ = integrate.quad(
                lambda v: float(_cbrt_pdf(source, v)), a, b, epsabs=0.0, epsrel=QUAD_TOL, limit=500
            )
            total += val
    return total


def generic_bound(source: AbstractSource, s_eff: int, alpha: float, level_rule: str) -> float:
    """Bound objective by quadrature: ``(int p^(1/3))^3/(4 s^2)`` or ``alpha^2/s^2``, + bias."""
    if level_rule == "uniform":
        return alpha**2 / s_eff**2 + _bias(source, alpha)
    return _cbrt_mass(source, -alpha, alpha) ** 3 / (4 * s_eff**2) + _bias(source, alpha)


def generic_bound_slope(source: AbstractSource, s_eff: int, alpha: float, level_rule: str) -> float:
    """``dF/dalpha`` by Leibniz's rule (quadrature for the mass of ``p^(1/3)``)."""
    if level_rule == "uniform":
        return 2 * alpha / s_eff**2 + _bias_slope(source, alpha)
    mass = _cbrt_mass(source, -alpha, alpha)
    edge = float(_cbrt_pdf(source, alpha) + _cbrt_pdf(source, -alpha))
    return 3 * mass**2 * edge / (4 * s_eff**2) + _bias_slope(source, alpha)


def _scale_of(source: AbstractSource) -> float:
    try:
        scale = source.std()
    except ValueError:
        scale = float("nan")
    if not math.isfinite(scale) or scale <= 0:
        scale = float(source.ppf(0.75)) - float(source.ppf(0.25))
    return scale


def _root_of_slope(slope: Callable[[float], float], scale: float) -> tuple[float, int, float]:
    """Root of an increasing-through-zero ``F'`` (negative near 0, positive far out)."""
    lo, hi = 0.0, scale
    n = 0
    while slope(hi) <= 0.0:
        lo, hi = hi, 2.0 * hi
        n += 1
        if n > 200:
            raise RuntimeError("no sign change of dF/dalpha found while bracketing alpha*")
    root, info = optimize.brentq(
        slope, lo, hi, xtol=1e-300, rtol=ROOT_RTOL, maxiter=500, full_output=True
    )
    return float(root), int(info.iterations) + n, abs(float(slope(root)))


def _generic_alpha_opt(
    level_rule: str,
) -> Callable[[AbstractSource, int], tuple[float, int, float]]:
    def alpha_opt(source: AbstractSource, s_eff: int) -> tuple[float, int, float]:
        return _root_of_slope(
            lambda a: generic_bound_slope(source, s_eff, a, level_rule), _scale_of(source)
        )

    return alpha_opt


def _gl_integral(source: AbstractSource, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``int_a^b p^(1/3)`` for short intervals, vectorised 20-node Gauss–Legendre."""
    half = 0.5 * (b - a)
    mid = 0.5 * (b + a)
    nodes = mid[:, None] + half[:, None] * _GL_X[None, :]
    return half * np.sum(_GL_W[None, :] * _cbrt_pdf(source, nodes), axis=1)


def cube_root_quantiles(source: AbstractSource, alpha: float, fractions: Any) -> np.ndarray:
    """Points ``l`` in ``[-alpha, alpha]`` with ``Lambda(l) = fraction``, ``Lambda`` the cdf of
    ``lambda* ∝ p^(1/3)`` on ``[-alpha, alpha]`` (generic sources).

    The cumulative mass is tabulated on :data:`_N_PANELS` panels per half-line (20-node
    Gauss–Legendre per panel; 0 is a panel edge), then each quantile is refined by Newton steps
    whose function values are panel-start mass + Gauss–Legendre on the remainder.
    """
    fr = np.asarray(fractions, np.float64)
    edges = np.concatenate(
        [np.linspace(-alpha, 0.0, _N_PANELS + 1), np.linspace(0.0, alpha, _N_PANELS + 1)[1:]]
    )
    panel = _gl_integral(source, edges[:-1], edges[1:])
    cum = np.concatenate([[0.0], np.cumsum(panel)])
    target = fr * cum[-1]
    k = np.clip(np.searchsorted(cum, target, side="right") - 1, 0, edges.size - 2)
    x = edges[k] + (target - cum[k]) / np.maximum(panel[k], 1e-300) * (edges[k + 1] - edges[k])
    for _ in range(8):
        val = cum[k] + _gl_integral(source, edges[k], x)
        dens = np.maximum(_cbrt_pdf(source, x), 1e-300)
        x = np.clip(x - (val - target) / dens, edges[k], edges[k + 1])
    return x


# ----------------------------------------------------------------------------- models
def _lam(name: str, args: tuple[str, ...]) -> Callable[..., Any]:
    # Deferred for import time only (no cycle: ratedist.symbolic does not import quantizers):
    # it loads sympy (about 1 s), which `import ratedist` and the other designs do not need.
    import ratedist.symbolic  # noqa: F401  (registers the expression builders)
    from ratedist.symbolic.lambdify import lambdified

    return lambdified(name, args)


def _closed(value: float) -> tuple[float, int, float]:
    return float(value), 0, 0.0


def _laplace_models() -> None:
    def nonuniform_alpha(src: Any, s: int) -> tuple[float, int, float]:
        return _closed(_lam("tnq_laplace.alpha_opt", ("s", "gamma"))(s, src.scale))

    def nonuniform_bound(src: Any, s: int, alpha: float) -> float:
        return float(_lam("tnq_laplace.objective", ("alpha", "gamma", "s"))(alpha, src.scale, s))

    def nonuniform_mag(src: Any, s: int, alpha: float, t: np.ndarray) -> np.ndarray:
        return _lam("tnq_laplace.level", ("t", "alpha", "gamma"))(t, alpha, src.scale)

    def uniform_alpha(src: Any, s: int) -> tuple[float, int, float]:
        return _closed(_lam("tuq_laplace.alpha_opt", ("s", "gamma"))(s, src.scale))

    def uniform_bound(src: Any, s: int, alpha: float) -> float:
        return float(_lam("tuq_laplace.objective", ("alpha", "gamma", "s"))(alpha, src.scale, s))

    MODELS.add(
        "laplace/nonuniform",
        TruncationModel(nonuniform_bound, nonuniform_alpha, nonuniform_mag, "closed form"),
    )
    MODELS.add(
        "laplace/uniform",
        TruncationModel(uniform_bound, uniform_alpha, None, "closed form (Lambert W)"),
    )


def _gaussian_models() -> None:
    def alpha_opt(rule: str) -> Callable[[Any, int], tuple[float, int, float]]:
        def f(src: Any, s: int) -> tuple[float, int, float]:
            name = {"nonuniform": "tnq_gaussian", "uniform": "tuq_gaussian"}[rule]
            slope = _lam(f"{name}.objective_derivative", ("alpha", "sigma", "s"))
            return _root_of_slope(lambda a: float(slope(a, src.sigma, s)), src.sigma)

        return f

    def bound(rule: str) -> Callable[[Any, int, float], float]:
        def f(src: Any, s: int, alpha: float) -> float:
            name = {"nonuniform": "tnq_gaussian", "uniform": "tuq_gaussian"}[rule]
            return float(_lam(f"{name}.objective", ("alpha", "sigma", "s"))(alpha, src.sigma, s))

        return f

    def mag(src: Any, s: int, alpha: float, t: np.ndarray) -> np.ndarray:
        return _lam("tnq_gaussian.level", ("t", "alpha", "sigma"))(t, alpha, src.sigma)

    solver = "root of closed-form F'"
    MODELS.add(
        "gaussian/nonuniform",
        TruncationModel(bound("nonuniform"), alpha_opt("nonuniform"), mag, solver),
    )
    MODELS.add(
        "gaussian/uniform", TruncationModel(bound("uniform"), alpha_opt("uniform"), None, solver)
    )


def _check_powerlaw(src: Any) -> None:
    if src.tail_index <= 2:
        raise ValueError(
            f"source.tail_index must be > 2 for a finite truncation bias, got {src.tail_index!r}"
        )


def _powerlaw_models() -> None:
    def nonuniform_alpha(src: Any, s: int) -> tuple[float, int, float]:
        _check_powerlaw(src)
        fn = _lam("powerlaw.alpha_opt", ("s", "sigma", "b"))
        return _closed(fn(s, src.scale, src.tail_index - 2.0))

    def nonuniform_bound(src: Any, s: int, alpha: float) -> float:
        _check_powerlaw(src)
        fn = _lam("powerlaw.objective", ("alpha", "sigma", "b", "s"))
        return float(fn(alpha, src.scale, src.tail_index - 2.0, s))

    def nonuniform_mag(src: Any, s: int, alpha: float, t: np.ndarray) -> np.ndarray:
        fn = _lam("powerlaw.level", ("t", "alpha", "sigma", "b"))
        return fn(t, alpha, src.scale, src.tail_index - 2.0)

    def uniform_alpha(src: Any, s: int) -> tuple[float, int, float]:
        _check_powerlaw(src)
        slope = _lam("powerlaw.uniform_objective_derivative", ("alpha", "sigma", "b", "s"))
        b = src.tail_index - 2.0
        return _root_of_slope(lambda a: float(slope(a, src.scale, b, s)), src.scale)

    def uniform_bound(src: Any, s: int, alpha: float) -> float:
        _check_powerlaw(src)
        fn = _lam("powerlaw.uniform_objective", ("alpha", "sigma", "b", "s"))
        return float(fn(alpha, src.scale, src.tail_index - 2.0, s))

    MODELS.add(
        "power-law/nonuniform",
        TruncationModel(nonuniform_bound, nonuniform_alpha, nonuniform_mag, "closed form"),
    )
    MODELS.add(
        "power-law/uniform",
        TruncationModel(uniform_bound, uniform_alpha, None, "root of closed-form F'"),
    )


_laplace_models()
_gaussian_models()
_powerlaw_models()


def _generic_model(level_rule: str) -> TruncationModel:
    return TruncationModel(
        lambda src, s, a: generic_bound(src, s, a, level_rule),
        _generic_alpha_opt(level_rule),
        None,
        "root of F' (quadrature)",
    )


def model_for(source: AbstractSource, level_rule: str) -> TruncationModel:
    """The registered model ``"<source.name>/<level_rule>"``, else the generic numeric one."""
    key = f"{source.name}/{level_rule}"
    return MODELS.get(key) if key in MODELS else _generic_model(level_rule)
