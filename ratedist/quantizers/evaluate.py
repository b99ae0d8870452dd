"""Exact evaluation of a scalar quantizer on a source, and the ``design`` convenience.

:func:`evaluate` returns MSE, its split into rounding variance and (conditional) bias, the
output entropy, the fixed rate ``log2 n`` and the gap to the Shannon bound at both rates:

* Gaussian sources: exact ``D(R) = sigma^2 2^(-2R)``;
* other sources: the Shannon lower bound ``2^(2(h - R)) / (2 pi e)`` with the source's
  differential entropy ``h`` (so the reported gap is an upper bound on the true gap).

Everything is exact up to the accuracy of the source's partial moments (no sampling).

References:
    T. M. Cover, J. A. Thomas, *Elements of Information Theory*, 2nd ed., Thm. 10.3.2 and
    Sec. 10.3.3 (Shannon lower bound).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ratedist._validation import check_choice, check_int
from ratedist.infotheory.shannon import gap_to_shannon
from ratedist.quantizers import exact as _exact
from ratedist.quantizers.companded import MAX_LEVELS, check_source
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.ecsq import auto_cells
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.base import AbstractSource
from ratedist.sources.classic import Gaussian

ROUNDINGS = ("deterministic", "stochastic")

#: Bits per coordinate accepted by :func:`design` (``levels = 2^bits``).
MAX_BITS = 16


class Evaluation(NamedTuple):
    """Exact per-coordinate performance of a quantizer on a source.

    Attributes:
        mse: ``E[(Q(X) - X)^2]`` under the given rounding.
        variance: ``E[Var(Q(X) | X)]`` (0 for deterministic rounding).
        bias: ``E[(E[Q(X) | X] - X)^2]`` (the whole MSE for deterministic rounding; the
            truncation error for stochastic rounding).
        entropy_bits: output entropy ``H(Q(X))`` in bits.
        rate_bits: fixed-rate code length ``log2(n_levels)``.
        gap_db: ``10 log10(mse / D_sh(rate_bits))``.
        gap_bits: ``rate_bits - R_sh(mse)``.
        entropy_gap_db: ``10 log10(mse / D_sh(entropy_bits))``.
        entropy_gap_bits: ``entropy_bits - R_sh(mse)``.
    """

    mse: float
    variance: float
    bias: float
    entropy_bits: float
    rate_bits: float
    gap_db: float
    gap_bits: float
    entropy_gap_db: float
    entropy_gap_bits: float


def shannon_gap(source: AbstractSource, rate_bits: float, mse: float) -> tuple[float, float]:
    """``(gap_db, gap_bits)`` of ``(rate_bits, mse)``: exact for Gaussian, SLB otherwise."""
    h = None if isinstance(source, Gaussian) else source.entropy_bits()
    gap_db, gap_bits = gap_to_shannon(rate_bits, mse, variance=source.variance(), entropy_bits=h)
    return float(gap_db), float(gap_bits)


def evaluate(quantizer: Any, source: AbstractSource, *, rounding: str) -> Evaluation:
    """Exact MSE, entropy and Shannon gaps of ``quantizer`` applied to ``source``.

    Args:
        quantizer: a :class:`ScalarQuantizer` or a design record with a ``quantizer``
            attribute (e.g. ``TruncationDesign``).
        source: coordinate law with finite variance.
        rounding: ``"deterministic"`` (nearest cell, ``q(x)``) or ``"stochastic"`` (clip to
            ``[l_0, l_s]`` then unbiased rounding, ``q.stochastic``).

    Returns:
        An :class:`Evaluation`.

    Raises:
        TypeError: ``quantizer`` is not a quantizer; ValueError: unknown ``rounding``.
    """
    quantizer = as_quantizer(quantizer)
    source = check_source(source)
    rounding = check_choice("rounding", rounding, ROUNDINGS)
    if rounding == "deterministic":
        mse = _exact.deterministic_mse(quantizer, source)
        variance, bias = 0.0, mse
        probs = _exact.deterministic_probabilities(quantizer, source)
    else:
        err = _exact.stochastic_error(quantizer, source)
        mse, variance, bias = err.mse, err.variance, err.bias
        probs = _exact.stochastic_probabilities(quantizer, source)
    h = _exact.entropy_bits(probs)
    rate = quantizer.rate_bits
    gap_db, gap_bits = shannon_gap(source, rate, mse)
    egap_db, egap_bits = shannon_gap(source, h, mse)
    return Evaluation(mse, variance, bias, h, rate, gap_db, gap_bits, egap_db, egap_bits)


def as_quantizer(value: Any) -> ScalarQuantizer:
    """The :class:`ScalarQuantizer` inside a designer's ``Solution.value``."""
    if isinstance(value, ScalarQuantizer):
        return value
    inner = getattr(value, "quantizer", None)
    if isinstance(inner, ScalarQuantizer):
        return inner
    raise TypeError(
        f"quantizer must be a ScalarQuantizer or have a .quantizer, got {type(value).__name__}"
    )


def design(
    method: str,
    source: AbstractSource,
    *,
    bits: int | None = None,
    levels: int | None = None,
    exact: bool = False,
    **options: Any,
) -> Solution:
    """Design a quantizer with a registered method and a budget in bits or levels.

    Budget conventions:

    * fixed-rate methods (``uniform``, ``lloyd-max``, ``companded``, ``variance-optimal``,
      and the truncated ``tnq``/``tuq``): exactly one of ``bits`` and ``levels``;
      ``levels = 2^bits`` (for ``tnq``/``tuq`` that is ``s + 1 = 2^b`` levels on
      ``[-alpha, alpha]``, the full-range code of arXiv 2402.01160);
    * ``ecsq``: ``bits`` is the target output *entropy*; ``levels`` caps the number of cells
      (default :func:`ratedist.quantizers.ecsq.auto_cells`). With ``levels`` alone the
      target entropy is ``log2(levels)`` bits (the same nominal rate as an
      ``levels``-level fixed-rate code) and the cap is automatic.

    Args:
        method: a name in :data:`DESIGNS`.
        source: coordinate law.
        bits: bits per coordinate, integer in ``[1, 16]``.
        levels: number of levels, integer in ``[2, 65536]``.
        exact: truncated methods only: optimize the exact error instead of the papers' bound.
        **options: passed to the designer.

    Returns:
        The designer's :class:`Solution`.

    Raises:
        ValueError/TypeError: unknown method, bad or missing budget, ``exact=True`` with a
            non-truncated method.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {method!r}")
    entry = DESIGNS.entry(method)
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool, got {exact!r}")
    if bits is not None:
        bits = check_int("bits", bits, min_value=1, max_value=MAX_BITS)
    if levels is not None:
        levels = check_int("levels", levels, min_value=2, max_value=MAX_LEVELS)
    if entry.facts.get("rate") == "entropy":
        if bits is None and levels is None:
            raise ValueError(f"method {method!r} needs bits (target entropy) and/or levels")
        if exact:
            raise ValueError(f"exact applies only to truncated methods, not {method!r}")
        target = float(bits) if bits is not None else math.log2(levels)
        cap = levels if bits is not None and levels is not None else auto_cells(target)
        return entry.obj(source, cap, entropy_bits=target, **options)
    if (bits is None) == (levels is None):
        raise ValueError(
            f"give exactly one of bits or levels for method {method!r}, got bits={bits!r}, "
            f"levels={levels!r}"
        )
    n = 2**bits if bits is not None else levels
    if entry.facts.get("truncated"):
        return entry.obj(source, n, exact=exact, **options)
    if exact:
        raise ValueError(
            f"exact applies only to truncated methods (tnq, tuq), not {method!r}: "
            "its design already minimizes the exact error"
        )
    return entry.obj(source, n, **options)


def rounding_of(method: str) -> str:
    """How the designs of ``method`` are applied (``"deterministic"``/``"stochastic"``)."""
    return str(DESIGNS.facts(method)["rounding"])
