"""Check results, verdict rules and the check registry (the bottom of ``ratedist.validate``).

Verdict rules (explicit, in one place):

* :func:`verdict_upper` — a bound ``measured <= predicted``:
  ``inconclusive`` if the measurement is not finite (the run diverged) or if ``k * SE`` exceeds
  ``INCONCLUSIVE_FRACTION`` of the bound (the Monte Carlo error is too large to tell the bound
  from a value that much larger); else ``holds`` if ``measured <= predicted + k * SE +
  rtol * |predicted|`` and ``violated`` otherwise. ``k = 5`` and ``rtol`` covers float
  round-off only (1e-9).
* :func:`verdict_equal` — an identity: ``holds`` if ``|measured - predicted| <= tol``.
* :func:`verdict_lower` — a deterministic lower bound ``measured >= predicted`` (a plateau
  that theory says cannot vanish): ``inconclusive`` if either value is NaN, ``holds`` if
  ``measured >= predicted`` (``+inf`` counts: a diverged run is above any floor), else
  ``violated``.
* :func:`verdict_zero_count` — a count that must be 0 (pathwise Lyapunov violations).
* :func:`verdict_less` — an ordering ``a < b`` of two noisy measurements, with the standard
  error of their difference: ``holds`` if ``b − a > k * SE``, ``violated`` if
  ``a − b > k * SE``, ``inconclusive`` in between (the data cannot order them) or when a value
  is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ratedist._registry import Registry

VERDICTS = ("holds", "violated", "inconclusive")
#: number of standard errors a Monte Carlo measurement may exceed a bound by
K_SE = 5.0
#: relative float slack for deterministic comparisons against a bound
RTOL = 1e-9
#: a bound check whose k*SE exceeds this fraction of the bound cannot tell
INCONCLUSIVE_FRACTION = 0.5


class CheckResult(NamedTuple):
    """One row of the validation table.

    Attributes:
        check: name of the check (``family[variant]``).
        predicted: the theoretical value (bound, or the exact value of an identity).
        measured: the simulated value.
        error: its standard error (0 for deterministic runs).
        verdict: ``"holds"``, ``"violated"`` or ``"inconclusive"``.
        detail: what was compared, constants used, and anything notable.
    """

    check: str
    predicted: float
    measured: float
    error: float
    verdict: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict with the six keys (non-finite floats become None)."""
        out = self._asdict()
        for k in ("predicted", "measured", "error"):
            v = out[k]
            out[k] = None if v is None or not math.isfinite(float(v)) else float(v)
        return out


def verdict_upper(
    predicted: float, measured: float, se: float = 0.0, *, k: float = K_SE
) -> tuple[str, str]:
    """Verdict for ``measured <= predicted`` (see module docstring); returns (verdict, why)."""
    if not (math.isfinite(measured) and math.isfinite(se) and math.isfinite(predicted)):
        return "inconclusive", "non-finite value (diverged run?)"
    margin = k * se
    if margin > INCONCLUSIVE_FRACTION * abs(predicted):
        return "inconclusive", f"{k:g} SE = {margin:.3g} exceeds half the bound"
    if measured <= predicted + margin + RTOL * abs(predicted):
        return "holds", f"measured/predicted = {measured / predicted:.3g}" if predicted else ""
    return "violated", (
        f"measured exceeds bound by {(measured - predicted) / max(se, 1e-300):.3g} SE"
        if se > 0
        else f"measured/predicted = {measured / predicted:.6g}"
    )


def verdict_equal(predicted: float, measured: float, tol: float) -> tuple[str, str]:
    """Verdict for an identity ``measured == predicted`` up to ``tol``."""
    if not (math.isfinite(measured) and math.isfinite(predicted)):
        return "inconclusive", "non-finite value"
    if abs(measured - predicted) <= tol:
        return "holds", f"|difference| <= tol = {tol:.1e}"
    return "violated", f"|difference| = {abs(measured - predicted):.3g} > tol = {tol:.1e}"


def verdict_lower(predicted: float, measured: float) -> tuple[str, str]:
    """Verdict for a deterministic lower bound ``measured >= predicted`` (module docstring)."""
    if math.isnan(measured) or math.isnan(predicted):
        return "inconclusive", "NaN value"
    if measured >= predicted:
        return "holds", f"measured/predicted = {measured / predicted:.3g}" if predicted else ""
    return "violated", f"measured/predicted = {measured / predicted:.6g} < 1"


def verdict_zero_count(count: float) -> tuple[str, str]:
    """Verdict for a count that theory says is zero."""
    if not math.isfinite(count):
        return "inconclusive", "non-finite count"
    return ("holds", "no violations") if count == 0 else ("violated", f"{int(count)} violations")


def verdict_less(a: float, b: float, se: float, *, k: float = K_SE) -> tuple[str, str]:
    """Verdict for the ordering ``a < b`` given the standard error ``se`` of ``b − a``."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(se)):
        return "inconclusive", "non-finite value (diverged run?)"
    diff, margin = b - a, k * se
    if diff > margin:
        return "holds", f"lower by {diff:.3g} > {k:g} SE = {margin:.3g}"
    if -diff > margin:
        return "violated", f"higher by {-diff:.3g} > {k:g} SE = {margin:.3g}"
    return "inconclusive", f"difference {diff:.3g} within {k:g} SE = {margin:.3g}"


CheckFn = Callable[[bool, Any], "CheckResult | list[CheckResult]"]

#: name -> check function; facts: ``summary`` (one line), ``quick`` (runs in --quick).
CHECKS: Registry[CheckFn] = Registry("validation check")


def register(name: str, *, summary: str, quick: bool = True) -> Callable[[CheckFn], CheckFn]:
    """Enrol a check under ``name``."""
    return CHECKS.register(name, summary=summary, quick=quick)
