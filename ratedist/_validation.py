"""Argument checks shared by every public function.

Each check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, bad
value) with a message that names the argument, the value received and what is allowed, so
that bad input never surfaces as a NaN or as a traceback from deep inside JAX.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np


def _fmt(value: Any) -> str:
    return repr(value) if not isinstance(value, np.ndarray) else f"array(shape={value.shape})"


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a finite Python float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray):
        raise TypeError(f"{name} must be a real number, got {_fmt(value)} ({type(value).__name__})")
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise TypeError(f"{name} must be a scalar, got {_fmt(value)}")
        value = value.item()
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out!r}")
    return out


def check_positive(name: str, value: Any) -> float:
    """A finite float > 0."""
    out = check_real(name, value)
    if out <= 0:
        raise ValueError(f"{name} must be > 0, got {out!r}")
    return out


def check_nonnegative(name: str, value: Any) -> float:
    """A finite float >= 0."""
    out = check_real(name, value)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {out!r}")
    return out


def check_in_interval(
    name: str, value: Any, lo: float, hi: float, *, closed: tuple[bool, bool] = (True, True)
) -> float:
    """A finite float in [lo, hi] (bounds open or closed as ``closed`` says)."""
    out = check_real(name, value)
    ok_lo = out >= lo if closed[0] else out > lo
    ok_hi = out <= hi if closed[1] else out < hi
    if not (ok_lo and ok_hi):
        left = "[" if closed[0] else "("
        right = "]" if closed[1] else ")"
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}{right}, got {out!r}")
    return out


def check_int(
    name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """A Python/numpy integer (bools refused) within optional inclusive bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(
                f"{name} must be an integer, got {_fmt(value)} ({type(value).__name__})"
            )
    out = int(value)
    if min_value is not None and out < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {out}")
    if max_value is not None and out > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {out}")
    return out


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of a fixed set of strings."""
    allowed = sorted(choices)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {_fmt(value)}")
    return value


def check_array(
    name: str, value: Any, *, ndim: int | None = None, min_size: int = 1, finite: bool = True
) -> np.ndarray:
    """A float64 numpy array with optional rank, minimum size and finiteness checks."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be array-like of real numbers, got {type(value).__name__}"
        ) from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} must have at least {min_size} element(s), got {arr.size}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_increasing(name: str, value: Any, *, strict: bool = True) -> np.ndarray:
    """A finite 1-D array sorted ascending (strictly unless ``strict=False``)."""
    arr = check_array(name, value, ndim=1)
    diffs = np.diff(arr)
    if np.any(diffs <= 0 if strict else diffs < 0):
        kind = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(f"{name} must be {kind}, got {arr!r}")
    return arr
