"""The distribution families that :mod:`ratedist.gradients.fit` fits to gradient
coordinates: one :class:`Family` per source class of :mod:`ratedist.sources`, enrolled in
:data:`FAMILIES`, with its estimator on the standardized magnitudes ``y = |x| / median|x|``
and its per-sample log-density (for the observed information).

=================  ==========================  =============================================
family             source                      maximum-likelihood estimate
=================  ==========================  =============================================
``gaussian``       ``Gaussian(sigma)``         ``sigma^2 = mean(x^2)`` (closed form)
``laplace``        ``Laplace(scale)``          ``scale = mean|x|`` (closed form)
``student-t``      ``StudentT(df, scale)``     L-BFGS-B on ``(log df, log scale)`` with the
                                               analytic score, three starts (df 1, 4, 30)
``gen-gaussian``   ``GeneralizedGaussian``     profile likelihood in the shape ``beta``:
                   ``(shape, scale)``          ``scale(beta) = (beta mean|x|^beta)^(1/beta)``
``power-law``      ``PowerLaw(tail_index,      profile likelihood in the scale ``s``:
                   scale)``                    ``a(s) = 1 / mean log(1 + |x|/s)``
``empirical``      ``Empirical(samples,        Gaussian KDE (Silverman bandwidth) on a
                   symmetrize=True)``          subset; not a maximum-likelihood fit
=================  ==========================  =============================================

Shape parameters are searched within the source's supported range (:func:`param_bounds`);
log-scales within :data:`LOG_SCALE_BOUNDS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import optimize, special

from ratedist import sources
from ratedist._registry import Registry
from ratedist.sources import AbstractSource

#: search range of the log-scale of the standardized data (median |x| = 1)
LOG_SCALE_BOUNDS = (math.log(1e-8), math.log(1e8))


@dataclasses.dataclass(frozen=True)
class Family:
    """How one source class is fitted.

    Attributes:
        name: registry name (the :data:`ratedist.sources.SOURCES` name where there is one).
        source_cls: the source class the fit returns.
        params: its constructor parameters, in the order of :attr:`estimate`'s output.
        scale_param: the parameter that carries the data's unit (rescaled by it).
        estimate: ``y -> params`` on the standardized magnitudes ``y = |x| / median|x|``.
        logpdf: ``(y, **params) -> log p(y)`` per sample (for the information matrix).
        parametric: False for the empirical source (no maximum likelihood, ``k = 0``).
    """

    name: str
    source_cls: type[AbstractSource]
    params: tuple[str, ...]
    scale_param: str | None
    estimate: Callable[[np.ndarray], dict[str, float]] | None
    logpdf: Callable[..., np.ndarray] | None
    parametric: bool = True


def param_bounds(cls: type[AbstractSource], param: str) -> tuple[float, float]:
    """The supported range of ``param`` of ``cls`` (:attr:`AbstractSource.PARAM_RANGES`)."""
    rng = cls.PARAM_RANGES[param]
    return rng.lo, rng.hi


def _maximize_1d(f: Callable[[float], float], lo: float, hi: float, n_grid: int = 33) -> float:
    """Argmax of ``f`` on ``[lo, hi]``: a grid (against several local maxima), then bounded
    Brent between the grid neighbours of the best point."""
    grid = np.linspace(lo, hi, n_grid)
    vals = np.array([f(g) for g in grid])
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    i = int(np.argmax(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    res = optimize.minimize_scalar(
        lambda t: -f(t), bounds=(a, b), method="bounded", options={"xatol": 1e-10}
    )
    return float(res.x) if -res.fun >= vals[i] else float(grid[i])


# Gaussian and Laplace: closed forms.
def _est_gaussian(y: np.ndarray) -> dict[str, float]:
    return {"sigma": float(np.sqrt(np.mean(y * y)))}


def _logpdf_gaussian(y: np.ndarray, sigma: float) -> np.ndarray:
    return -0.5 * math.log(2 * math.pi) - math.log(sigma) - 0.5 * (y / sigma) ** 2


def _est_laplace(y: np.ndarray) -> dict[str, float]:
    return {"scale": float(np.mean(y))}


def _logpdf_laplace(y: np.ndarray, scale: float) -> np.ndarray:
    return -math.log(2 * scale) - y / scale


# Student-t: two-parameter search with the analytic score.
def _logpdf_t(y: np.ndarray, df: float, scale: float) -> np.ndarray:
    c = (
        special.gammaln((df + 1) / 2)
        - special.gammaln(df / 2)
        - 0.5 * math.log(df * math.pi)
        - math.log(scale)
    )
    return c - (df + 1) / 2 * np.log1p((y / scale) ** 2 / df)


def _t_mean_nll(phi: np.ndarray, y2: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of ``StudentT(exp(phi0), exp(phi1))`` and its gradient
    in ``phi = (log df, log scale)`` (Lange, Little & Taylor 1989, eq. 3 with location 0)."""
    nu, s = math.exp(phi[0]), math.exp(phi[1])
    u = y2 / (nu * s * s)
    l1pu = np.mean(np.log1p(u))
    r = np.mean(u / (1 + u))
    ll = (
        special.gammaln((nu + 1) / 2)
        - special.gammaln(nu / 2)
        - 0.5 * math.log(nu * math.pi)
        - math.log(s)
        - (nu + 1) / 2 * l1pu
    )
    d_nu = (
        0.5 * (special.digamma((nu + 1) / 2) - special.digamma(nu / 2))
        - 0.5 / nu
        - 0.5 * l1pu
        + (nu + 1) / (2 * nu) * r
    )
    d_log_s = -1.0 + (nu + 1) * r
    return -float(ll), -np.array([nu * d_nu, d_log_s])


def _est_t(y: np.ndarray) -> dict[str, float]:
    y2 = y * y
    lo, hi = param_bounds(sources.StudentT, "df")
    bounds = [(math.log(lo), math.log(hi)), LOG_SCALE_BOUNDS]
    best = None
    for df0 in (1.0, 4.0, 30.0):  # the likelihood in df is flat far out: several starts
        res = optimize.minimize(
            _t_mean_nll,
            np.array([math.log(df0), 0.0]),
            args=(y2,),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 500},
        )
        if best is None or res.fun < best.fun:
            best = res
    df, scale = np.exp(np.clip(best.x, [b[0] for b in bounds], [b[1] for b in bounds]))
    return {"df": float(df), "scale": float(scale)}


# Generalized Gaussian: profile likelihood in the shape.
def _gg_profile(log_beta: float, log_y: np.ndarray) -> tuple[float, float]:
    """(mean log-likelihood, log scale) at ``beta = exp(log_beta)``, scale profiled out."""
    beta = math.exp(log_beta)
    log_mean = special.logsumexp(beta * log_y) - math.log(log_y.size)  # log mean y^beta
    log_alpha = (math.log(beta) + log_mean) / beta
    ll = math.log(beta / 2) - log_alpha - special.gammaln(1 / beta) - 1 / beta
    return ll, log_alpha


def _est_gg(y: np.ndarray) -> dict[str, float]:
    log_y = np.log(y)
    lo, hi = param_bounds(sources.GeneralizedGaussian, "shape")
    log_beta = _maximize_1d(lambda t: _gg_profile(t, log_y)[0], math.log(lo), math.log(hi))
    return {"shape": math.exp(log_beta), "scale": math.exp(_gg_profile(log_beta, log_y)[1])}


def _logpdf_gg(y: np.ndarray, shape: float, scale: float) -> np.ndarray:
    c = math.log(shape / (2 * scale)) - special.gammaln(1 / shape)
    return c - (y / scale) ** shape


# Power law (double Lomax): profile likelihood in the scale.
def _pl_tail(log_s: float, y: np.ndarray) -> tuple[float, float]:
    """(tail index maximizing the likelihood at this scale, within its range; mean log1p)."""
    lo, hi = param_bounds(sources.PowerLaw, "tail_index")
    mean_log1p = float(np.mean(np.log1p(y / math.exp(log_s))))
    return min(hi, max(lo, 1.0 / mean_log1p)), mean_log1p


def _pl_profile(log_s: float, y: np.ndarray) -> float:
    a, mean_log1p = _pl_tail(log_s, y)
    return math.log(a / 2) - log_s - (a + 1) * mean_log1p


def _est_pl(y: np.ndarray) -> dict[str, float]:
    log_s = _maximize_1d(lambda t: _pl_profile(t, y), *LOG_SCALE_BOUNDS, n_grid=49)
    return {"tail_index": _pl_tail(log_s, y)[0], "scale": math.exp(log_s)}


def _logpdf_pl(y: np.ndarray, tail_index: float, scale: float) -> np.ndarray:
    return math.log(tail_index / (2 * scale)) - (tail_index + 1) * np.log1p(y / scale)


#: family name -> :class:`Family`.
FAMILIES: Registry[Family] = Registry("distribution family")
for _family in (
    Family("gaussian", sources.Gaussian, ("sigma",), "sigma", _est_gaussian, _logpdf_gaussian),
    Family("laplace", sources.Laplace, ("scale",), "scale", _est_laplace, _logpdf_laplace),
    Family("student-t", sources.StudentT, ("df", "scale"), "scale", _est_t, _logpdf_t),
    Family(
        "gen-gaussian",
        sources.GeneralizedGaussian,
        ("shape", "scale"),
        "scale",
        _est_gg,
        _logpdf_gg,
    ),
    Family("power-law", sources.PowerLaw, ("tail_index", "scale"), "scale", _est_pl, _logpdf_pl),
    Family("empirical", sources.Empirical, (), None, None, None, parametric=False),
):
    FAMILIES.add(_family.name, _family)


def parametric_families() -> list[str]:
    """The names :func:`best_fit` ranks by default (every family but ``empirical``)."""
    return [n for n in FAMILIES.names() if FAMILIES.get(n).parametric]
