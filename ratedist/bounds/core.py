"""The two shapes every convergence bound in :mod:`ratedist.bounds` takes.

* :class:`SublinearBound`: ``bound(T) = transient / T + floor`` — every smooth nonconvex
  result here (compressed SGD, biased/truncated SGD, 3PC, MARINA) bounds the average
  ``(1/T) sum_{t<T} E||∇f(x^t)||^2`` in this form.
* :class:`LinearBound`: ``bound(T) = scale * rate**T`` — the PL-case results.

Both carry the step size they assume and the theorem they come from, evaluate vectorised over
``T`` (numpy float64), and invert themselves: :meth:`iterations_to` returns the smallest
integer ``T >= 1`` with ``bound(T) <= eps`` (so ``bound(T) <= eps < bound(T - 1)``), and
:meth:`bits_per_worker_to` converts that into bits sent by one worker.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ratedist._validation import check_in_interval, check_nonnegative, check_positive


def _check_steps(T: Any, lo: int = 1) -> np.ndarray:
    """``T`` as float64 steps, each finite and ``>= lo`` (``lo`` is 0 or 1)."""
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


class SublinearBound(NamedTuple):
    """``bound(T) = transient / T + floor`` for the average of ``E||∇f(x^t)||^2``, ``t < T``.

    Attributes:
        transient: coefficient of ``1/T`` (e.g. ``2 Delta0 / gamma + E[G^0] / A``).
        floor: the part that does not vanish as ``T`` grows (variance and bias floors).
        step_size: the step size the bound assumes.
        theorem: where the bound comes from (paper, arXiv id, theorem).
        assumptions: the assumptions it rests on, as short sentences.
    """

    transient: float
    floor: float
    step_size: float
    theorem: str
    assumptions: tuple[str, ...] = ()

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
