"""Abstract gradient-coordinate source.

A source is a frozen dataclass describing the law of one gradient coordinate. The analysis
zone (pdf, cdf, ppf, partial moments, entropy) is numpy/scipy in float64; only
:meth:`AbstractSource.sample` is JAX.

Partial moments ``E[X^k; a < X < b]`` are the workhorse of every quantizer designer: the MSE
of a cell, its centroid and the within-cell variance of stochastic rounding are all linear
combinations of them. Symmetric sources implement only the half-line integral
``H_k(u) = int_0^u x^k p(x) dx`` and its tail ``int_u^inf x^k p(x) dx``; the base class turns
these into any interval without catastrophic cancellation in the tails.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from scipy import integrate, optimize

from ratedist._validation import check_int, check_real

#: Relative/absolute tolerance of quadrature fallbacks (documented so tests can use 10x it).
QUAD_TOL = 1e-12


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
