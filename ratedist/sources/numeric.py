"""A source from any density given as a Python function: ``PdfSource.from_pdf(pdf, support=...)``.

Everything the quantizer designs need is computed numerically from the density alone:

* **normalisation** and an **inversion table**: the support is mapped onto a finite interval
  of a variable ``t`` (linear for a bounded support; ``x = lo + t/(1-t)``, ``x = hi - (1-t)/t``
  or ``x = t/(1-t^2)`` for infinite ends) and split into panels, each integrated with a
  16-point Gauss–Legendre rule and bisected until the one- and two-panel rules agree to
  ``1e-14`` of the total. The cumulative sums give ``Z = int p`` and the cdf at the panel
  edges; :meth:`PdfSource.cdf` adds a Gauss–Legendre integral from the nearest edge and
  :meth:`PdfSource.ppf` inverts it (safeguarded Newton in ``t``), so sampling is by inversion;
* **partial moments** ``E[X^k; a < X < b]`` by adaptive quadrature of each cell
  (``scipy.integrate.quad``, relative tolerance 1e-13, cells clipped to the support), and
  centred cell moments by the generic :meth:`AbstractSource.centered_moment`;
* mean, variance and entropy by the same quadrature (computed once and cached), with the
  intervals cut at quantiles from the table so that ``quad`` sees where the mass is; a
  variance that ``quad`` reports as divergent is infinite (designs then refuse the source).

Accuracy: cdf and quantiles to ~1e-14 for smooth densities (an integrable singularity at an
end of the support, e.g. the arcsine law, to ~1e-9); partial moments to 1e-13 relative.

The density is divided by its numerical integral ``Z``. When ``Z`` differs from 1 by more
than :data:`NORMALISATION_WARN` a :class:`UserWarning` says so (an unnormalised shape is fine
on purpose; a wrong constant or a support that cuts off mass usually is not). Panels that do
not converge within 65 536 (a non-integrable density) are an error. The first 64 panels see
the density at 2 048 points; a feature narrower than their spacing where it lies (a spike far
out on an infinite support) can be missed: give a support that brackets it.

Assumptions: ``pdf`` is finite and non-negative on the support, piecewise smooth, and (for
designs) has a finite variance. It may be vectorised (called with an array, returning an
array of the same shape) or scalar-only (then it is called point by point).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import integrate

from ratedist.sources.base import AbstractSource, as_shape, check_q, jax_float

#: A normalising constant farther than this from 1 triggers a UserWarning (then divided out).
NORMALISATION_WARN = 1e-6
#: Relative tolerance of the per-cell quadrature of partial moments (scipy needs > 50 eps).
MOMENT_QUAD_TOL = 1e-13
#: A user-supplied cdf must match the integral of the pdf to this (absolute) at the panel edges.
CDF_AGREE = 1e-6

_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_GL_X = 0.5 * (_GL_X + 1.0)  # nodes on [0, 1]
_GL_W = 0.5 * _GL_W
_INITIAL_PANELS = 64
_MAX_PANELS = 1 << 16
_PANEL_TOL = 1e-14


def _check_support(support: Any) -> tuple[float, float]:
    try:
        lo, hi = support
    except (TypeError, ValueError):
        raise TypeError(
            f"support must be a pair (lo, hi) of numbers (either may be infinite), got {support!r}"
        ) from None
    ends = []
    for name, v in (("support[0]", lo), ("support[1]", hi)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise TypeError(f"{name} must be a real number, got {v!r} ({type(v).__name__})")
        v = float(v)
        if math.isnan(v):
            raise ValueError(f"{name} must not be NaN")
        ends.append(v)
    lo, hi = ends
    if not lo < hi or lo == math.inf or hi == -math.inf:
        raise ValueError(f"support must be (lo, hi) with lo < hi, got {support!r}")
    return lo, hi


@dataclasses.dataclass(frozen=True)
class _Map:
    """``x(t)`` from the computational variable ``t`` in ``[t0, t1]`` onto the support."""

    kind: str
    lo: float
    hi: float

    @property
    def t_range(self) -> tuple[float, float]:
        return (-1.0, 1.0) if self.kind == "both" else (0.0, 1.0)

    def x(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "bounded":
                return self.lo + (self.hi - self.lo) * t
            if self.kind == "upper":  # [lo, inf)
                return self.lo + t / (1.0 - t)
            if self.kind == "lower":  # (-inf, hi]
                return self.hi - (1.0 - t) / t
            return t / (1.0 - t * t)

    def dx(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "bounded":
                return np.full_like(t, self.hi - self.lo)
            if self.kind == "upper":
                return 1.0 / (1.0 - t) ** 2
            if self.kind == "lower":
                return 1.0 / (t * t)
            return (1.0 + t * t) / (1.0 - t * t) ** 2

    def t(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.kind == "bounded":
                return (x - self.lo) / (self.hi - self.lo)
            if self.kind == "upper":
                d = x - self.lo
                return d / (1.0 + d)
            if self.kind == "lower":
                return 1.0 / (1.0 + (self.hi - x))
            return np.where(
                np.abs(x) > 1e150, np.sign(x), 2.0 * x / (1.0 + np.sqrt(1.0 + 4.0 * x * x))
            )


def _make_map(lo: float, hi: float) -> _Map:
    if math.isfinite(lo) and math.isfinite(hi):
        return _Map("bounded", lo, hi)
    if math.isfinite(lo):
        return _Map("upper", lo, hi)
    if math.isfinite(hi):
        return _Map("lower", lo, hi)
    return _Map("both", lo, hi)


@dataclasses.dataclass(frozen=True)
class _CdfTable:
    """Panel edges in ``t`` and the (unnormalised) cumulative mass at each edge."""

    edges: np.ndarray
    cum: np.ndarray

    @property
    def total(self) -> float:
        return float(self.cum[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class PdfSource(AbstractSource):
    """A source given by a density function and its support (numerical cdf, moments, sampling).

    Build it with :meth:`from_pdf` (or the constructor, same arguments). Not registered for
    the command line (it needs a Python function), like :class:`~ratedist.sources.Empirical`.

    Args:
        pdf: the density ``p(x)``, a callable on floats (vectorised or not); it need not be
            normalised (see the module docstring for the warning) and is only called on the
            support.
        support: ``(lo, hi)`` with ``lo < hi``, either end may be infinite.
        cdf: optional cumulative distribution function of the *normalised* law, returned
            by :meth:`cdf` (exact tails); checked against the integral of ``pdf`` at the
            panel edges. Quantiles and samples always invert the panel table.

    Raises:
        TypeError: ``pdf`` or ``cdf`` not callable, ``support`` not a pair of numbers.
        ValueError: ``lo >= hi`` or NaN ends; ``pdf`` negative, NaN or infinite at a
            quadrature node; ``int pdf`` zero, infinite or not resolvable; ``cdf`` that does
            not match the integral of ``pdf``.
    """

    pdf_fn: Callable[..., Any]
    support_: tuple[float, float]
    cdf_fn: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if not callable(self.pdf_fn):
            raise TypeError(f"pdf must be callable, got {self.pdf_fn!r}")
        if self.cdf_fn is not None and not callable(self.cdf_fn):
            raise TypeError(f"cdf must be callable or None, got {self.cdf_fn!r}")
        object.__setattr__(self, "support_", _check_support(self.support_))
        table = self._table  # builds and validates (normalisation, non-negativity)
        if self.cdf_fn is not None:
            self._check_user_cdf(table)

    @classmethod
    def from_pdf(
        cls,
        pdf: Callable[..., Any],
        *,
        support: tuple[float, float] = (-math.inf, math.inf),
        cdf: Callable[..., Any] | None = None,
    ) -> PdfSource:
        """The source with density ``pdf`` on ``support`` (see the class docstring).

        Example: ``PdfSource.from_pdf(lambda x: 2 * x, support=(0, 1))`` (triangular law).
        """
        return cls(pdf, support, cdf)

    # ------------------------------------------------------------------ density
    @functools.cached_property
    def _vectorised(self) -> bool:
        probe = np.array([0.25, 0.5, 0.75])
        lo, hi = self.support_
        x = self._map.x(self._map.t_range[0] + probe * np.diff(self._map.t_range)[0])
        x = np.clip(x, lo, hi)
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(self.pdf_fn(x), dtype=np.float64)
        except Exception:
            return False
        return out.shape == x.shape

    def _raw_pdf(self, x: np.ndarray) -> np.ndarray:
        """The user's density on points inside the support (no normalisation)."""
        if self._vectorised:
            with np.errstate(all="ignore"):
                return np.asarray(self.pdf_fn(x), dtype=np.float64).reshape(x.shape)
        flat = [float(self.pdf_fn(float(v))) for v in x.ravel()]
        return np.asarray(flat, dtype=np.float64).reshape(x.shape)

    def pdf(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        lo, hi = self.support_
        inside = (x >= lo) & (x <= hi) & np.isfinite(x)
        out = np.zeros(x.shape)
        if np.any(inside):
            out[inside] = self._raw_pdf(x[inside]) / self._table.total
        return out

    # ------------------------------------------------------------------ table
    @functools.cached_property
    def _map(self) -> _Map:
        return _make_map(*self.support_)

    def _g(self, t: np.ndarray) -> np.ndarray:
        """Integrand in ``t``: ``p(x(t)) x'(t)`` (checked), 0 where ``x(t)`` is infinite."""
        x = self._map.x(t)
        ok = np.isfinite(x)
        out = np.zeros(t.shape)
        if np.any(ok):
            lo, hi = self.support_
            xs = np.clip(x[ok], lo, hi)  # rounding of x(t) can step a hair outside
            # A node within rounding of an end lands on it, where an integrable singularity
            # (arcsine law, Beta(a < 1, .)) makes p infinite: such points carry no mass.
            at_end = (xs == lo) | (xs == hi)
            p = self._raw_pdf(xs)
            p = np.where(at_end & np.isinf(p), 0.0, p)
            bad = ~np.isfinite(p) | (p < 0)
            if np.any(bad):
                i = np.flatnonzero(bad.ravel())[0]
                raise ValueError(
                    "pdf must be finite and non-negative on the support, got "
                    f"pdf({float(xs.ravel()[i])!r}) = {float(p.ravel()[i])!r}"
                )
            out[ok] = p * self._map.dx(t[ok])
        return out

    def _panel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = a[:, None] + (b - a)[:, None] * _GL_X[None, :]
        return (b - a) * (self._g(t) @ _GL_W)

    @functools.cached_property
    def _table(self) -> _CdfTable:
        t0, t1 = self._map.t_range
        edges = np.linspace(t0, t1, _INITIAL_PANELS + 1)
        while True:
            a, b = edges[:-1], edges[1:]
            m = 0.5 * (a + b)
            one = self._panel(a, b)
            two = self._panel(a, m) + self._panel(m, b)
            total = float(np.sum(two))
            if not (math.isfinite(total) and total > 0):
                raise ValueError(
                    f"pdf must integrate to a positive finite number over the support "
                    f"{self.support_}, got {total!r}"
                )
            bad = np.abs(one - two) > _PANEL_TOL * total
            if not np.any(bad):
                break
            if edges.size + np.count_nonzero(bad) > _MAX_PANELS:
                raise ValueError(
                    f"pdf could not be integrated to {_PANEL_TOL:g} over the support "
                    f"{self.support_} with {_MAX_PANELS} panels (is it integrable? a "
                    "tighter support helps)"
                )
            edges = np.sort(np.concatenate([edges, m[bad]]))
        cum = np.concatenate([[0.0], np.cumsum(two)])
        table = _CdfTable(edges, cum)
        if abs(table.total - 1.0) > NORMALISATION_WARN:
            warnings.warn(
                f"pdf integrates to {table.total:.12g} over the support {self.support_}, "
                "not 1; it is divided by that constant",
                UserWarning,
                stacklevel=4,
            )
        return table

    def _check_user_cdf(self, table: _CdfTable) -> None:
        inner = table.edges[1:-1]
        x = self._map.x(inner)
        mine = table.cum[1:-1] / table.total
        theirs = np.asarray([float(self.cdf_fn(float(v))) for v in x])
        err = np.abs(theirs - mine)
        if not np.all(np.isfinite(theirs)) or np.max(err, initial=0.0) > CDF_AGREE:
            i = int(np.nanargmax(np.where(np.isfinite(err), err, np.inf)))
            raise ValueError(
                f"cdf does not match the integral of pdf: cdf({x[i]!r}) = {theirs[i]!r}, "
                f"integral {mine[i]!r} (tolerance {CDF_AGREE:g})"
            )

    def _table_cdf(self, x: np.ndarray) -> np.ndarray:
        tab = self._table
        t = np.clip(self._map.t(x), tab.edges[0], tab.edges[-1])
        i = np.clip(np.searchsorted(tab.edges, t, side="right") - 1, 0, tab.edges.size - 2)
        a = tab.edges[i]
        m = 0.5 * (a + t)
        part = self._panel(a, m) + self._panel(m, t)
        return np.clip((tab.cum[i] + part) / tab.total, 0.0, 1.0)

    # ------------------------------------------------------------------ interface
    def cdf(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        lo, hi = self.support_
        out = np.where(x >= hi, 1.0, 0.0)
        inside = (x > lo) & (x < hi)
        if np.any(inside):
            if self.cdf_fn is not None:
                vals = [float(self.cdf_fn(float(v))) for v in x[inside]]
                out[inside] = np.asarray(vals)
            else:
                out[inside] = self._table_cdf(x[inside])
        return out

    def ppf(self, q: Any) -> np.ndarray:
        """Quantiles by inverting the table: locate the panel, then Newton in ``t`` on
        ``C(t) = q Z`` safeguarded by bisection, each quantile until its step is below
        ``4 eps |t|`` or ``C(t)`` matches to ``4 eps`` of the target (the rounding floor)."""
        q = check_q(q)
        tab = self._table
        flat = q.ravel()
        target = flat * tab.total
        i = np.clip(np.searchsorted(tab.cum, target, side="right") - 1, 0, tab.edges.size - 2)
        a = tab.edges[i]
        lo_t, hi_t = a.copy(), tab.edges[i + 1].copy()
        t = 0.5 * (lo_t + hi_t)
        eps4 = 4 * np.finfo(np.float64).eps
        active = np.flatnonzero((flat > 0.0) & (flat < 1.0))
        for _ in range(100):
            if active.size == 0:
                break
            ta, aa, goal = t[active], a[active], target[active]
            m = 0.5 * (aa + ta)
            f = tab.cum[i[active]] + self._panel(aa, m) + self._panel(m, ta) - goal
            lo_a = np.where(f < 0, ta, lo_t[active])
            hi_a = np.where(f < 0, hi_t[active], ta)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = ta - f / self._g(ta)
            ok = np.isfinite(newton) & (newton >= lo_a) & (newton <= hi_a)
            hit = np.abs(f) <= eps4 * goal  # C(t) matches: keep t
            t_new = np.where(hit, ta, np.where(ok, newton, 0.5 * (lo_a + hi_a)))
            done = (
                hit | (np.abs(t_new - ta) <= eps4 * np.abs(ta)) | (hi_a - lo_a <= eps4 * np.abs(ta))
            )
            t[active], lo_t[active], hi_t[active] = t_new, lo_a, hi_a
            active = active[~done]
        x = self._map.x(t)
        lo, hi = self.support_
        x = np.where(flat <= 0.0, lo, np.where(flat >= 1.0, hi, np.clip(x, lo, hi)))
        return x.reshape(q.shape)

    def support(self) -> tuple[float, float]:
        return self.support_

    @property
    def name(self) -> str:
        return "pdf"

    @property
    def symmetric(self) -> bool:
        """False: a density given as a function is not assumed symmetric (designs then
        converge to the symmetric solution of a symmetric law without being told)."""
        return False

    def params(self) -> dict[str, Any]:
        """The support (the function itself is not data)."""
        return {"support": list(self.support_)}

    @functools.cached_property
    def _landmarks(self) -> np.ndarray:
        """Quantiles from ``1e-12`` to ``1 - 1e-12``: :meth:`_split_quad` cuts intervals
        there, so that adaptive quadrature sees where the mass is (``quad`` alone on
        ``(-inf, inf)`` misses N(100, 1))."""
        q = np.array([1e-12, 1e-9, 1e-6, 1e-3, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98])
        x = self.ppf(np.concatenate([q, 1.0 - q[:4][::-1]]))
        return np.unique(x[np.isfinite(x)])

    def _split_quad(self, f: Callable[[float], float], a: float, b: float) -> float:
        """``int_a^b f`` (clipped to the support) by ``quad`` on the pieces cut at
        :attr:`_landmarks`; raises ``IntegrationWarning`` only if the caller asks to."""
        lo, hi = self.support_
        a, b = max(a, lo), min(b, hi)
        if not a < b:
            return 0.0
        marks = self._landmarks
        pieces = [a, *marks[(marks > a) & (marks < b)], b]
        return math.fsum(
            integrate.quad(f, u, v, epsabs=0.0, epsrel=MOMENT_QUAD_TOL, limit=500)[0]
            for u, v in itertools.pairwise(pieces)
        )

    def _moment_integrand(self, k: int, c: float) -> Callable[[float], float]:
        """``(x - c)^k p(x)``, 0 where ``p`` is (so ``x = 1e300`` does not overflow)."""

        def f(x: float) -> float:
            p = float(self.pdf(x))
            return 0.0 if p == 0.0 else (x - c) ** k * p

        return f

    def _quad_moment(self, k: int, a: float, b: float) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return self._split_quad(self._moment_integrand(k, 0.0), a, b)

    def _quad_centered(self, k: int, a: float, b: float, c: float) -> float:
        f = self._moment_integrand(k, c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            if a < c < b:
                return self._split_quad(f, a, c) + self._split_quad(f, c, b)
            return self._split_quad(f, a, b)

    @functools.cached_property
    def _abs_moments(self) -> tuple[float, float, float]:
        """``E|X|^k`` for ``k = 0, 1, 2`` by adaptive quadrature; ``inf`` where ``quad``
        reports the integral as probably divergent (an ``IntegrationWarning``)."""
        lo, hi = self.support_
        out = []
        for k in range(3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", integrate.IntegrationWarning)
                f = self._moment_integrand(k, 0.0)
                val = self._split_quad(lambda x, f=f: abs(f(x)), lo, hi)
            diverges = any("divergent" in str(w.message) for w in caught)
            out.append(math.inf if diverges or not math.isfinite(val) else val)
        return tuple(out)

    def _moment_exists(self, k: int) -> bool:
        """Checked numerically for ``k <= 2`` (see :attr:`_abs_moments`); assumed above."""
        return k > 2 or math.isfinite(self._abs_moments[k])

    @functools.cached_property
    def _mean_var(self) -> tuple[float, float]:
        lo, hi = self.support_
        if not self._moment_exists(1):
            return math.nan, math.inf
        m1 = self._quad_moment(1, lo, hi)
        if not self._moment_exists(2):
            return m1, math.inf
        # directly about the mean (centered_moment's tail rule needs std(): no recursion)
        return m1, self._quad_centered(2, lo, hi, m1)

    def mean(self) -> float:
        if not self._moment_exists(1):
            raise ValueError(f"the mean of {self!r} is undefined (E|X| is infinite)")
        return self._mean_var[0]

    def variance(self) -> float:
        var = self._mean_var[1]
        if not math.isfinite(var):
            raise ValueError(f"the variance of {self!r} is infinite (E[X^2] diverges)")
        return var

    @functools.cached_property
    def _entropy(self) -> float:
        def integrand(x: float) -> float:
            p = float(self.pdf(x))
            return -p * math.log2(p) if p > 0 else 0.0

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return self._split_quad(integrand, *self.support_)

    def entropy_bits(self) -> float:
        return self._entropy

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Inverse-cdf samples: JAX uniforms mapped through :meth:`ppf` in numpy (so this
        is not traceable under ``jax.jit``)."""
        import jax  # deferred: the rest of this module is numpy/scipy only
        import jax.numpy as jnp

        dtype = jax_float(dtype)
        u = np.asarray(jax.random.uniform(key, as_shape(shape), jax_float(None)), np.float64)
        # uniform() can return exactly 0, whose quantile is the (maybe infinite) lower end
        u = np.clip(u, np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)
        return jnp.asarray(self.ppf(u), dtype)

    def __repr__(self) -> str:
        name = getattr(self.pdf_fn, "__name__", type(self.pdf_fn).__name__)
        return f"PdfSource(pdf={name}, support={self.support_})"
