"""Abstract gradient-coordinate source.

A source is a frozen dataclass describing the law of one gradient coordinate. The analysis
zone (pdf, cdf, ppf, partial moments, entropy) is numpy/scipy in float64; only
:meth:`AbstractSource.sample` is JAX.

Partial moments ``E[X^k; a < X < b]`` are the workhorse of every quantizer designer: the MSE
of a cell, its centroid and the within-cell variance of stochastic rounding are all linear
combinations of them. Symmetric sources implement only the half-line integral
``H_k(u) = int_0^u x^k p(x) dx`` and its tail ``int_u^inf x^k p(x) dx``; the base class turns
these into any interval without catastrophic cancellation in the tails.

The error of a quantizer cell is a *centred* moment ``E[(X - c)^k; a < X < b]`` with ``c``
inside or next to the cell. Expanding it binomially into ``sum_i C(k,i) (-c)^(k-i) M_i``
cancels ``(c/w)^2`` of the digits of a cell of width ``w`` (10^5 for the outer cells of 256
Gaussian levels), so :meth:`AbstractSource.centered_moment` integrates such cells directly.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import math
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from scipy import integrate, optimize

from ratedist._validation import check_int, check_real

#: Relative/absolute tolerance of quadrature fallbacks (documented so tests can use 10x it).
QUAD_TOL = 1e-12

#: :meth:`AbstractSource.centered_moment` integrates a cell directly when the binomial
#: expansion would cancel more than this factor (``sum |terms| > CANCEL_LIMIT |sum|``): with
#: partial moments accurate to ~1e-14 relative, the expansion then stays within ~1e-13.
CANCEL_LIMIT = 8.0
#: Gauss–Legendre order of the direct cell integrals, and the relative agreement between the
#: one-panel and the two-panel rule at which the two-panel value is accepted. For a density
#: analytic on the cell the two-panel error is then ~2^-40 times smaller still; a cell where
#: the rules disagree (a kink, or a cell wide against the density's scale) goes to adaptive
#: quadrature at :data:`CENTERED_QUAD_TOL`.
GL_ORDER = 20
GL_AGREE = 1e-13
CENTERED_QUAD_TOL = 1e-13  # scipy accepts epsrel > 50 eps
_GL_S, _GL_W = np.polynomial.legendre.leggauss(GL_ORDER)
_GL_S = 0.5 * (_GL_S + 1.0)  # nodes on [0, 1]
_GL_W = 0.5 * _GL_W
#: Exp-sinh rule for half-infinite cells, ``x = a + s exp(pi/2 sinh t)``: trapezoid in ``t``
#: on ``[-T, T]`` with step ``h`` (``h/2`` to check). ``T = 4.5`` reaches ``x - a = 3e30 s``,
#: so an integrand decaying like ``x^-1.5`` loses under 1e-15 beyond it.
_ES_T, _ES_H = 4.5, 1.0 / 16.0
_ES_FINE = np.arange(-_ES_T, _ES_T + _ES_H / 4, _ES_H / 2)


@dataclasses.dataclass(frozen=True)
class ParamRange:
    """Supported closed interval ``[lo, hi]`` of one source parameter, and why it ends there.

    Attributes:
        lo: smallest supported value.
        hi: largest supported value.
        why: the reason for the ends, appended to the error message.
    """

    lo: float
    hi: float
    why: str = ""

    def __str__(self) -> str:
        return f"[{self.lo:g}, {self.hi:g}]"

    def check(self, name: str, value: Any, *, purpose: str = "") -> float:
        """``value`` as a float, or ``TypeError``/``ValueError`` naming ``name``, the value and
        the range (``purpose`` says what needs the range, e.g. ``"for quantizer design"``)."""
        out = check_real(name, value)
        if not self.lo <= out <= self.hi:
            what = f" {purpose}" if purpose else ""
            why = f" ({self.why})" if self.why else ""
            raise ValueError(f"{name} must lie in {self}{what}, got {out!r}{why}")
        return out


#: Every scale parameter: ``scale^k`` stays a finite, normal float64 for moments up to
#: order 4 (``1e75^4 = 1e300``), so variances, partial moments and kurtoses never overflow.
SCALE_RANGE = ParamRange(1e-75, 1e75, "scale^4 must be a finite normal float64")


class AbstractSource(abc.ABC):
    """Law of one gradient coordinate (numpy in, numpy out; ``sample`` is JAX).

    Subclasses are frozen dataclasses that validate their parameters in ``__post_init__``
    (usually by :meth:`_check_params` against :attr:`PARAM_RANGES`).
    """

    #: Supported range of each constructor parameter (checked by :meth:`_check_params`).
    PARAM_RANGES: ClassVar[Mapping[str, ParamRange]] = MappingProxyType({})
    #: Narrower ranges within which the quantizer designs that start from the ``p^(1/3)``
    #: compander (uniform, lloyd-max, companded, ecsq, variance-optimal) converge, checked by
    #: :meth:`check_designable`; parameters not listed here may take their whole range.
    DESIGN_RANGES: ClassVar[Mapping[str, ParamRange]] = MappingProxyType({})

    # ----------------------------------------------------------------- required
    @abc.abstractmethod
    def pdf(self, x: Any) -> np.ndarray:
        """Probability density at ``x`` (broadcasting)."""

    @abc.abstractmethod
    def cdf(self, x: Any) -> np.ndarray:
        """Cumulative distribution function at ``x`` (broadcasting)."""

    @abc.abstractmethod
    def variance(self) -> float:
        """Variance (raises ``ValueError`` where it is infinite)."""

    @abc.abstractmethod
    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Draw i.i.d. samples with JAX (``dtype`` defaults to JAX's default float)."""

    # ----------------------------------------------------------------- defaults
    @property
    def name(self) -> str:
        """Short lower-case name used in tables and JSON."""
        return type(self).__name__.lower()

    @property
    def symmetric(self) -> bool:
        """True when the law is symmetric about zero."""
        return True

    def support(self) -> tuple[float, float]:
        """Closed hull of the support."""
        return (-np.inf, np.inf)

    def std(self) -> float:
        return float(np.sqrt(self.variance()))

    def params(self) -> dict[str, float]:
        """The dataclass fields, for JSON output."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def ppf(self, q: Any) -> np.ndarray:
        """Quantile function; default: bracketed root finding on :meth:`cdf`."""
        q = check_q(q)
        scale = self.std() if self._finite_variance() else 1.0

        def one(p: float) -> float:
            if p == 0.0:
                return self.support()[0]
            if p == 1.0:
                return self.support()[1]
            lo, hi = -scale, scale
            while self.cdf(lo) > p:
                lo *= 2.0
            while self.cdf(hi) < p:
                hi *= 2.0
            return optimize.brentq(
                lambda x: float(self.cdf(x)) - p, lo, hi, xtol=1e-14 * scale, rtol=1e-15
            )

        return np.vectorize(one, otypes=[np.float64])(q)

    def partial_moment(self, k: int, a: Any, b: Any) -> np.ndarray:
        """``E[X^k; a < X < b] = int_a^b x^k p(x) dx`` (broadcasting over ``a``, ``b``).

        ``a`` and ``b`` may be infinite. Symmetric sources get this from :meth:`_half_moment`
        and :meth:`_tail_moment`; others fall back to adaptive quadrature, as do finite cells
        of an order ``k`` whose absolute moment ``E|X|^k`` is infinite.

        Raises:
            ValueError: ``k < 0``, NaN ends, or an infinite end with ``E|X|^k`` infinite
                (the message names ``k``).
        """
        k, lo, hi, sign = check_cells(k, a, b)
        if not self._moment_exists(k):
            # E|X|^k is infinite: only cells with two finite ends have a finite moment, and the
            # half-line closed forms (which go through the infinite total) do not apply.
            if np.any(np.isinf(lo) & (lo < hi)) or np.any(np.isinf(hi) & (lo < hi)):
                raise ValueError(
                    f"k={k}: E[|X|^k] is infinite for {self!r}, so a and b must be finite "
                    "(only cells with two finite ends have a finite moment)"
                )
            return sign * np.vectorize(
                lambda u, v: self._quad_moment(k, u, v), otypes=[np.float64]
            )(lo, hi)
        if self.symmetric and self._has_half_moment():
            pos = self._half_interval(k, np.maximum(lo, 0.0), np.maximum(hi, 0.0))
            neg = self._half_interval(k, np.maximum(-hi, 0.0), np.maximum(-lo, 0.0))
            return sign * (pos + (-1.0) ** k * neg)
        return sign * np.vectorize(lambda u, v: self._quad_moment(k, u, v), otypes=[np.float64])(
            lo, hi
        )

    def centered_moment(self, k: int, a: Any, b: Any, center: Any) -> np.ndarray:
        """``E[(X - center)^k; a < X < b] = int_a^b (x - center)^k p(x) dx`` (broadcasting).

        This is the error of a quantizer cell (``k = 2``, ``center`` its level) or its
        stochastic-rounding variance, without the cancellation of
        ``M_2 - 2 c M_1 + c^2 M_0`` (which loses ``log10((c/w)^2)`` digits on a cell of width
        ``w``). Cells where that binomial expansion of :meth:`partial_moment` keeps its digits
        (``sum |terms| <= CANCEL_LIMIT |sum|``) use it; the others are integrated directly:
        finite cells by a 20-point Gauss–Legendre rule on the cell checked against the same
        rule on its two halves (:data:`GL_AGREE`), with nodes written as offsets from ``a`` so
        that ``x - center`` keeps full relative precision; cells where the rules disagree
        and cells with an infinite end by adaptive quadrature (:data:`CENTERED_QUAD_TOL`).
        Every source inherits this; it only needs :meth:`pdf` and :meth:`partial_moment`.

        Raises:
            ValueError: ``k < 0``, NaN ends or centre, or an infinite end with ``E|X|^k``
                infinite (from :meth:`partial_moment`).
        """
        k, lo, hi, sign = check_cells(k, a, b)
        c = np.asarray(center, np.float64)
        if np.any(~np.isfinite(c)):
            raise ValueError("center must be finite (found inf or NaN)")
        lo, hi, c, sign = (np.atleast_1d(v) for v in np.broadcast_arrays(lo, hi, c, sign))
        shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(center))
        terms = [
            math.comb(k, i) * (-c) ** (k - i) * self.partial_moment(i, lo, hi) for i in range(k + 1)
        ]
        out = np.sum(terms, axis=0)
        size = np.sum(np.abs(terms), axis=0)
        redo = (size > CANCEL_LIMIT * np.abs(out)) & (lo < hi)
        if np.any(redo):
            out = np.array(out, np.float64)  # writable copy
            idx = np.nonzero(redo)
            out[idx] = self._direct_centered(k, lo[idx], hi[idx], c[idx])
        return (sign * np.where(lo == hi, 0.0, out)).reshape(shape)

    def _direct_centered(self, k: int, lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``int_lo^hi (x - c)^k p(x) dx`` cell by cell: Gauss–Legendre (finite cells) or
        exp-sinh (one infinite end) where the rule agrees with its refinement, adaptive
        quadrature elsewhere."""
        out = np.full(lo.shape, np.nan)
        finite = np.isfinite(lo) & np.isfinite(hi)
        if np.any(finite):
            f_lo, width = lo[finite], hi[finite] - lo[finite]
            shift = f_lo - c[finite]
            one = self._gl_panel(k, f_lo, width, shift, 0.0, 1.0)
            left = self._gl_panel(k, f_lo, width, shift, 0.0, 0.5)
            right = self._gl_panel(k, f_lo, width, shift, 0.5, 0.5)
            two = left[0] + right[0]
            ok = np.abs(one[0] - two) <= GL_AGREE * (left[1] + right[1])
            out[finite] = np.where(ok, two, np.nan)
        up = np.isfinite(lo) & np.isposinf(hi)
        if np.any(up):
            out[up] = self._exp_sinh(k, lo[up], c[up], 1.0)
        down = np.isneginf(lo) & np.isfinite(hi)
        if np.any(down):
            out[down] = self._exp_sinh(k, hi[down], c[down], -1.0)
        for i in np.flatnonzero(np.isnan(out)):
            out[i] = self._quad_centered(k, float(lo[i]), float(hi[i]), float(c[i]))
        return out

    def _exp_sinh(self, k: int, end: np.ndarray, c: np.ndarray, direction: float) -> np.ndarray:
        """Exp-sinh ``int (x - c)^k p(x) dx`` from ``end`` to ``direction * inf``, with
        ``x = end + direction s exp(pi/2 sinh t)`` and ``s`` the larger of the source's std
        (or 1), ``|end - c|`` and ``|end| / 2`` (the length on which a tail decays is at most
        about ``|end|``): NaN where the step-``h`` and step-``h/2`` sums differ by more than
        :data:`GL_AGREE`."""
        std = self.std() if self._finite_variance() else 1.0
        scale = np.maximum(np.maximum(std, np.abs(end - c)), 0.5 * np.abs(end))[:, None]
        u = np.exp(0.5 * np.pi * np.sinh(_ES_FINE))[None, :]
        jac = scale * 0.5 * np.pi * np.cosh(_ES_FINE)[None, :] * u  # |dx/dt|
        offset = direction * scale * u
        with np.errstate(invalid="ignore", over="ignore"):
            p = np.asarray(self.pdf(end[:, None] + offset), np.float64)
            f = ((end - c)[:, None] + offset) ** k * p * jac
        f = np.where(np.isfinite(f), f, np.nan)  # x past the float range: caught below
        fine = 0.5 * _ES_H * np.sum(f, axis=1)
        coarse = _ES_H * np.sum(f[:, ::2], axis=1)
        size = 0.5 * _ES_H * np.sum(np.abs(f), axis=1)
        ok = np.abs(fine - coarse) <= GL_AGREE * size
        return np.where(ok, fine, np.nan)

    def _gl_panel(
        self,
        k: int,
        lo: np.ndarray,
        width: np.ndarray,
        shift: np.ndarray,
        start: float,
        frac: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gauss–Legendre ``int (x - c)^k p(x) dx`` and ``int |x - c|^k p(x) dx`` over
        ``lo + width [start, start + frac]``, with ``x - c = shift + width s`` (``shift =
        lo - c``), so that no digits cancel between ``x`` and ``c``."""
        offset = width[:, None] * (start + frac * _GL_S)[None, :]
        with np.errstate(invalid="ignore", over="ignore"):
            p = np.asarray(self.pdf(lo[:, None] + offset), np.float64)
            f = (shift[:, None] + offset) ** k * p
        w = frac * width
        return w * (f @ _GL_W), w * (np.abs(f) @ _GL_W)

    def _quad_centered(self, k: int, a: float, b: float, c: float) -> float:
        """Adaptive quadrature of ``(x - c)^k p(x)`` on ``(a, b)`` (ends may be infinite),
        split at ``c`` where it lies inside, clipped to :meth:`support`."""
        s_lo, s_hi = self.support()
        a, b = max(a, s_lo), min(b, s_hi)
        if not a < b:
            return 0.0
        pieces = [a, c, b] if a < c < b else [a, b]
        total = 0.0
        for u, v in itertools.pairwise(pieces):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", integrate.IntegrationWarning)
                val, _ = integrate.quad(
                    lambda x: (x - c) ** k * float(self.pdf(x)),
                    u,
                    v,
                    epsabs=0.0,
                    epsrel=CENTERED_QUAD_TOL,
                    limit=500,
                )
            total += val
        return float(total)

    def entropy_bits(self) -> float:
        """Differential entropy in bits; default: quadrature of ``-p log2 p``."""

        def integrand(x: float) -> float:
            p = float(self.pdf(x))
            return -p * np.log2(p) if p > 0 else 0.0

        lo, hi = self.support()
        val, _ = integrate.quad(integrand, lo, hi, epsabs=QUAD_TOL, epsrel=QUAD_TOL, limit=500)
        return float(val)

    def mean(self) -> float:
        """Mean ``E[X]`` (0 for symmetric laws; raises ``ValueError`` where it is undefined)."""
        if not self._moment_exists(1):
            raise ValueError(f"the mean of {self!r} is undefined (E|X| is infinite)")
        if self.symmetric:
            return 0.0
        return float(self.partial_moment(1, -np.inf, np.inf))

    def check_designable(self) -> None:
        """Raise ``ValueError`` (naming the parameter, its value and the range) when a
        parameter lies outside :attr:`DESIGN_RANGES`, where quantizer designs break down."""
        for name, rng in self.DESIGN_RANGES.items():
            rng.check(name, getattr(self, name), purpose="for quantizer design")

    # ----------------------------------------------------------------- helpers
    def _check_params(self) -> None:
        """Check (and convert to float) every field listed in :attr:`PARAM_RANGES`."""
        for name, rng in self.PARAM_RANGES.items():
            object.__setattr__(self, name, rng.check(name, getattr(self, name)))

    def _moment_exists(self, k: int) -> bool:
        """True when ``E|X|^k`` is finite; heavy-tailed sources override."""
        return True

    def _finite_variance(self) -> bool:
        try:
            return bool(np.isfinite(self.variance()))
        except ValueError:
            return False

    def _has_half_moment(self) -> bool:
        return type(self)._half_moment is not AbstractSource._half_moment

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        """``int_0^u x^k p(x) dx`` for ``u >= 0`` (may be inf). Override for closed forms."""
        raise NotImplementedError

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        """``int_u^inf x^k p(x) dx`` for ``u >= 0``; override to avoid ``1 - 1`` cancellation."""
        return self._half_moment(k, np.full_like(u, np.inf)) - self._half_moment(k, u)

    def _half_interval(self, k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``int_u^v x^k p`` for ``0 <= u <= v``, using tails when ``u`` is past the median
        of ``|X|`` so that far-tail cells keep full relative precision."""
        with np.errstate(invalid="ignore"):
            head = self._half_moment(k, v) - self._half_moment(k, u)
            tail = self._tail_moment(k, u) - self._tail_moment(k, v)
        use_tail = u > self._abs_median()
        out = np.where(use_tail, tail, head)
        return np.where(u == v, 0.0, out)

    def _abs_median(self) -> float:
        return float(self.ppf(0.75))

    def _quad_moment(self, k: int, a: float, b: float) -> float:
        if a == b:
            return 0.0
        val, _ = integrate.quad(
            lambda x: x**k * float(self.pdf(x)), a, b, epsabs=QUAD_TOL, epsrel=QUAD_TOL, limit=500
        )
        return float(val)


def jax_float(dtype: Any) -> Any:
    """Resolve ``dtype=None`` to JAX's default float (float64 only where x64 is enabled)."""
    import jax.numpy as jnp

    return jnp.result_type(float) if dtype is None else dtype


def as_shape(shape: Any) -> tuple[int, ...]:
    """A sample shape as a tuple of ints (an int ``n`` means ``(n,)``), hashable for jit."""
    if isinstance(shape, int | np.integer):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def check_cells(k: Any, a: Any, b: Any) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(k, lo, hi, sign)`` of :meth:`AbstractSource.partial_moment`'s arguments:
    ``lo``/``hi`` the broadcast ends in order, ``sign`` ``-1`` where ``b < a``.

    Raises:
        ValueError: ``k < 0`` or NaN ends.
    """
    k = check_int("k", k, min_value=0)
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    if np.any(np.isnan(a)) or np.any(np.isnan(b)):
        raise ValueError("a and b must not be NaN")
    return k, np.minimum(a, b), np.maximum(a, b), np.where(b >= a, 1.0, -1.0)


def check_q(q: Any) -> np.ndarray:
    """Probabilities as a float64 array, or ``ValueError`` naming ``q`` (NaN or outside [0, 1])."""
    q = np.asarray(q, dtype=np.float64)
    if np.any(~np.isfinite(q) | (q < 0) | (q > 1)):
        raise ValueError("q must lie in [0, 1] (found a value outside it or NaN)")
    return q
