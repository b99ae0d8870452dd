"""The two shapes every convergence bound in :mod:`ratedist.bounds` takes.

* :class:`SublinearBound`: ``bound(T) = transient / T + floor`` — every smooth nonconvex
  result here (compressed SGD, biased/truncated SGD, 3PC, MARINA) bounds the average
  ``(1/T) sum_{t<T} E||∇f(x^t)||^2`` in this form.
* :class:`LinearBound`: ``bound(T) = scale * rate**T`` — the PL-case results.
* :class:`DiminishingStepBound`: ``bound(T) = (a + b sum_{t<T} gamma_t^2) / sum_{t<T} gamma_t``
  with ``gamma_t = gamma0 / sqrt(t + offset)`` — the ``gamma_t``-weighted averages of the
  diminishing-step SGD results (``O(log T / sqrt(T))``).

A bound says what it bounds in ``quantity`` (the convex results bound an average of
``E f(x^t) − f*``, the nonconvex ones an average of ``E||∇f(x^t)||^2``). All carry the step size they assume and the theorem they come from, evaluate vectorised over
``T`` (numpy float64), and invert themselves: :meth:`iterations_to` returns the smallest
integer ``T >= 1`` with ``bound(T) <= eps`` (so ``bound(T) <= eps < bound(T - 1)``), and
:meth:`bits_per_worker_to` converts that into bits sent by one worker.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import special

from ratedist._validation import check_in_interval, check_int, check_nonnegative, check_positive


def _check_steps(T: Any, lo: int = 1) -> np.ndarray:
    """``T`` as float64 steps, each finite and ``>= lo`` (``lo`` is 0 or 1)."""
    if isinstance(T, int) and not isinstance(T, bool):
        T = float(T)  # a Python int past 2^63 (iterations_to of a tiny eps) is still a count
    arr = np.asarray(T)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        what = "a positive number of steps" if lo >= 1 else "a number of steps"
        raise TypeError(f"T must be {what}, got {T!r}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < lo):
        raise ValueError(f"T must be >= {lo} (number of steps), got {T!r}")
    return arr


def _scalar_or_array(out: np.ndarray) -> Any:
    return float(out) if out.ndim == 0 else out


def _smallest(pred: Any, guess: int, lo: int) -> int:
    """Smallest integer ``T >= lo`` with monotone ``pred(T)`` true, searching from ``guess``.

    The closed-form guess can be off by more than one when ``eps - floor`` loses digits, so
    gallop to a bracket and bisect instead of stepping one by one.
    """
    guess = max(lo, guess)
    if pred(guess):
        bad, good, step = lo - 1, guess, 1
        while good - step > lo - 1 and pred(good - step):
            good -= step
            step *= 2
        bad = max(lo - 1, good - step)
    else:
        bad, step = guess, 1
        while not pred(bad + step):
            bad += step
            step *= 2
        good = bad + step
    while good - bad > 1:  # invariant: pred(good), not pred(bad) (or bad == lo - 1)
        mid = (good + bad) // 2
        if pred(mid):
            good = mid
        else:
            bad = mid
    return good


def _bits(T: int, bits_per_iteration: Any, initial_bits: Any) -> float:
    b = check_nonnegative("bits_per_iteration", bits_per_iteration)
    b0 = check_nonnegative("initial_bits", initial_bits)
    return b0 + T * b


#: What a :class:`SublinearBound` bounds unless it says otherwise.
AVERAGE_GRAD_NORM_SQ = "(1/T) sum_{t<T} E||∇f(x^t)||^2"


class SublinearBound(NamedTuple):
    """``bound(T) = transient / T + floor`` for an average over ``T`` steps (by default of
    ``E||∇f(x^t)||^2``, ``t < T``; see ``quantity``).

    Attributes:
        transient: coefficient of ``1/T`` (e.g. ``2 Delta0 / gamma + E[G^0] / A``).
        floor: the part that does not vanish as ``T`` grows (variance and bias floors).
        step_size: the step size the bound assumes.
        theorem: where the bound comes from (paper, arXiv id, theorem).
        assumptions: the assumptions it rests on, as short sentences.
        quantity: what is bounded.
    """

    transient: float
    floor: float
    step_size: float
    theorem: str
    assumptions: tuple[str, ...] = ()
    quantity: str = AVERAGE_GRAD_NORM_SQ

    def __call__(self, T: Any) -> Any:
        """The bound after ``T`` steps (float, or array for array ``T``)."""
        steps = _check_steps(T)
        return _scalar_or_array(self.transient / steps + self.floor)

    def iterations_to(self, eps: Any) -> int:
        """Smallest ``T >= 1`` with ``bound(T) <= eps``.

        Raises:
            ValueError: if ``eps <= floor`` (the target is below the error floor).
        """
        e = check_positive("eps", eps)
        if e <= self.floor:
            raise ValueError(
                f"eps must exceed the error floor {self.floor!r} of this bound, got {e!r}"
            )
        if self.transient <= 0:
            return 1
        guess = math.ceil(self.transient / (e - self.floor))
        return _smallest(lambda t: self.transient / t + self.floor <= e, guess, 1)

    def bits_per_worker_to(
        self, eps: Any, bits_per_iteration: Any, *, initial_bits: Any = 0.0
    ) -> float:
        """Bits one worker sends to reach ``bound(T) <= eps``: ``initial_bits + T * bits``.

        Args:
            eps: target for the average squared gradient norm.
            bits_per_iteration: (expected) bits one worker sends per step.
            initial_bits: one-off bits, e.g. ``32 d`` for sending ``g_i^0 = ∇f_i(x^0)``.
        """
        return _bits(self.iterations_to(eps), bits_per_iteration, initial_bits)


class LinearBound(NamedTuple):
    """``bound(T) = scale * rate**T`` (PL-case linear convergence).

    Attributes:
        scale: the bound at ``T = 0`` (e.g. ``Delta0 + gamma G^0 / A``).
        rate: contraction factor per step, in ``[0, 1)``.
        step_size: the step size the bound assumes.
        theorem: where the bound comes from.
        assumptions: the assumptions it rests on.
        quantity: what is bounded (e.g. ``"E[f(x^T) - f*]"``).
    """

    scale: float
    rate: float
    step_size: float
    theorem: str
    assumptions: tuple[str, ...] = ()
    quantity: str = "E[f(x^T) - f*]"

    def __call__(self, T: Any) -> Any:
        """The bound after ``T`` steps (``T = 0`` allowed: the Lyapunov value at start)."""
        arr = _check_steps(T, lo=0)
        return _scalar_or_array(self.scale * self.rate**arr)

    def iterations_to(self, eps: Any) -> int:
        """Smallest ``T >= 0`` with ``bound(T) <= eps``."""
        e = check_positive("eps", eps)
        if self.scale <= e:
            return 0
        if self.rate <= 0:
            return 1
        guess = math.ceil(math.log(e / self.scale) / math.log(self.rate))
        return _smallest(lambda t: self.scale * self.rate**t <= e, guess, 0)

    def bits_per_worker_to(
        self, eps: Any, bits_per_iteration: Any, *, initial_bits: Any = 0.0
    ) -> float:
        """Bits one worker sends to reach ``bound(T) <= eps``."""
        return _bits(self.iterations_to(eps), bits_per_iteration, initial_bits)


# ------------------------------------------------------------------ diminishing step sizes
#: Below this many terms the step-size sums are added up directly (a table); above it the
#: Euler–Maclaurin expansion of ``sum_{u<=N} u^{-1/2}`` is exact to ~1e-20 absolute at N = 1000.
_DIRECT_TERMS = 1000
_INV_SQRT_PREFIX = np.concatenate(([0.0], np.cumsum(np.arange(1, _DIRECT_TERMS) ** -0.5)))
_ZETA_HALF = -1.4603545088095868  # zeta(1/2)


def _inv_sqrt_prefix(N: np.ndarray) -> np.ndarray:
    """``Z(N) = sum_{u=1}^{N} u^{-1/2}`` (``Z(0) = 0``), float64, elementwise."""
    N = np.asarray(N, dtype=np.float64)
    small = N < _DIRECT_TERMS
    direct = _INV_SQRT_PREFIX[np.where(small, N, 0).astype(np.int64)]
    big = np.maximum(N, _DIRECT_TERMS)
    r = np.sqrt(big)
    em = 2 * r + _ZETA_HALF + 0.5 / r - 1 / (24 * big * r) + 1 / (384 * big**3 * r)
    return np.where(small, direct, em)


def _harmonic_prefix(N: np.ndarray) -> np.ndarray:
    """``H(N) = sum_{u=1}^{N} 1/u`` (``H(0) = 0``) via the digamma function."""
    N = np.asarray(N, dtype=np.float64)
    return special.digamma(N + 1) + np.euler_gamma


def step_sums(T: Any, offset: int = 1) -> tuple[Any, Any]:
    """``(S, H)`` with ``S = sum_{t<T} (t + offset)^{-1/2}`` and ``H = sum_{t<T} 1/(t + offset)``:
    ``sum_t gamma_t = gamma0 S`` and ``sum_t gamma_t^2 = gamma0^2 H`` for the schedule
    ``gamma_t = gamma0 / sqrt(t + offset)``. Vectorised over ``T`` (``T >= 1``).

    Raises:
        ValueError: ``T`` < 1 or ``offset`` < 1.
    """
    steps = _check_steps(T)
    offset = check_int("offset", offset, min_value=1, max_value=_MAX_OFFSET)
    last, before = steps + offset - 1, float(offset - 1)
    S = _inv_sqrt_prefix(last) - _inv_sqrt_prefix(before)
    H = _harmonic_prefix(last) - _harmonic_prefix(before)
    return _scalar_or_array(S), _scalar_or_array(H)


_MAX_OFFSET = 10**6


class DiminishingStepBound(NamedTuple):
    """``bound(T) = (a + b sum_{t<T} gamma_t^2) / sum_{t<T} gamma_t`` with
    ``gamma_t = step_size / sqrt(t + offset)``: a bound on the ``gamma_t``-weighted average
    of a per-step quantity (see ``quantity``), ``O(log T / sqrt(T))``.

    The sums are evaluated exactly (:func:`step_sums`); :meth:`envelope` is the closed-form
    upper bound ``(a + b gamma0^2 (1/offset + ln((T + offset − 1)/offset))) /
    (2 gamma0 (sqrt(T + offset) − sqrt(offset)))`` from the integral comparisons
    ``sum_t 1/(t + offset) <= 1/offset + ln((T + offset − 1)/offset)`` and
    ``sum_t (t + offset)^{-1/2} >= 2 (sqrt(T + offset) − sqrt(offset))``.

    Attributes:
        a: the initial-condition term (e.g. ``||x^0 − x*||^2 / 2`` or ``2 Delta0``).
        b: coefficient of ``sum_t gamma_t^2`` (e.g. ``sigma^2`` or ``L sigma^2``).
        step_size: ``gamma0``, the numerator of the schedule (the first step when
            ``offset = 1``).
        offset: ``gamma_t = gamma0 / sqrt(t + offset)``, ``offset >= 1``.
        theorem: where the bound comes from.
        assumptions: the assumptions it rests on.
        quantity: what is bounded.
    """

    a: float
    b: float
    step_size: float
    offset: int
    theorem: str
    assumptions: tuple[str, ...] = ()
    quantity: str = "sum_{t<T} gamma_t E||∇f(x^t)||^2 / sum_{t<T} gamma_t"

    def schedule(self, t: Any) -> Any:
        """The step size ``gamma_t`` of step ``t >= 0``."""
        steps = _check_steps(t, lo=0)
        return _scalar_or_array(self.step_size / np.sqrt(steps + self.offset))

    def __call__(self, T: Any) -> Any:
        """The bound after ``T`` steps (float, or array for array ``T``)."""
        S, H = step_sums(T, self.offset)
        g0 = self.step_size
        return _scalar_or_array(np.asarray((self.a + self.b * g0 * g0 * H) / (g0 * S)))

    def envelope(self, T: Any) -> Any:
        """The closed-form ``O(log T / sqrt(T))`` upper bound of :meth:`__call__`."""
        steps = _check_steps(T)
        o, g0 = float(self.offset), self.step_size
        harm = 1 / o + np.log((steps + o - 1) / o)
        out = (self.a + self.b * g0 * g0 * harm) / (2 * g0 * (np.sqrt(steps + o) - np.sqrt(o)))
        return _scalar_or_array(out)

    def iterations_to(self, eps: Any) -> int:
        """Smallest ``T >= 1`` with ``bound(T) <= eps`` (the bound tends to 0).

        The bound may rise over the first steps; it decreases once
        ``sum_{t<T} 1/(t + offset) >= 2`` (adding step ``T`` with ``w = gamma_T/gamma0``
        lowers it iff ``b gamma0^2 w S <= a + b gamma0^2 H``, and ``w S < 2``), i.e. from
        ``T >= offset (e^2 − 1)`` on: the steps before are checked one by one, the rest by
        bisection.
        """
        e = check_positive("eps", eps)
        t_mono = math.ceil(self.offset * (math.e**2 - 1)) + 1
        head = np.asarray(self(np.arange(1, t_mono + 1)))
        hit = np.flatnonzero(head <= e)
        if hit.size:
            return int(hit[0]) + 1
        return _smallest(lambda t: self(t) <= e, 2 * t_mono, t_mono)

    def bits_per_worker_to(
        self, eps: Any, bits_per_iteration: Any, *, initial_bits: Any = 0.0
    ) -> float:
        """Bits one worker sends to reach ``bound(T) <= eps``."""
        return _bits(self.iterations_to(eps), bits_per_iteration, initial_bits)


def check_step_size(name: str, value: Any, limit: float) -> float:
    """A step size in ``(0, limit]`` (a hair of relative slack for float round-off)."""
    out = check_positive(name, value)
    if out > limit * (1 + 1e-12):
        raise ValueError(f"{name} must be <= {limit!r} (the theorem's largest step), got {out!r}")
    return out


def step_size_or_limit(name: str, value: Any, limit: float) -> float:
    """``limit`` when ``value`` is None, else ``value`` checked by :func:`check_step_size`."""
    return limit if value is None else check_step_size(name, value, limit)


def check_fraction(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A float in ``(0, 1]`` (or ``[0, 1]``)."""
    return check_in_interval(name, value, 0, 1, closed=(allow_zero, True))
