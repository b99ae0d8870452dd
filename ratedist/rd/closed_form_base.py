"""The closed-form registry: :class:`ClosedForm`, :data:`CLOSED_FORMS` and shared helpers.

A closed form registers itself against the REGISTRY NAME of the compressor it models
(:func:`register_closed_form`), so the compressor's own registration stays the one place of
its parameters and facts and :mod:`ratedist.compressors` never imports this layer. The
families live in :mod:`ratedist.rd.closed_forms_dense`, :mod:`ratedist.rd.closed_forms_sparse`
and :mod:`ratedist.rd.lattice`; :mod:`ratedist.rd.closed_forms` gathers them.

Model and conventions: see :mod:`ratedist.rd.closed_forms`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import special, stats

from ratedist._registry import Registry
from ratedist._validation import check_int
from ratedist.compressors.base import COMPRESSORS

_TWO_OVER_PI = 2.0 / math.pi
_QUAD = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 500}


class ClosedForm(NamedTuple):
    """Closed-form operating point of a compressor on Gaussian gradients.

    Attributes:
        rate_bits: container rate, bits per coordinate (side information included), or None
            where the container size has no closed form (lattice label ranges).
        entropy_rate_bits: entropy-layer rate, bits per coordinate, or None where no closed
            form is available.
        distortion: ``E||g - g_hat||^2 / (d sigma^2)``.
        exact: True when exact at this finite d; False for large-d approximations.
    """

    rate_bits: float | None
    entropy_rate_bits: float | None
    distortion: float
    exact: bool


#: Registry: compressor name -> ``f(d, *, sigma, dtype, **compressor_params) -> ClosedForm``.
CLOSED_FORMS: Registry[Callable[..., ClosedForm]] = Registry("closed form")


def register_closed_form(name: str, **facts: Any) -> Callable[[Callable[..., ClosedForm]], Any]:
    """Decorator: enrol ``f(d, *, sigma, dtype, **params)`` as the closed form of compressor
    ``name`` in :data:`CLOSED_FORMS`.

    Args:
        name: registry name of the compressor (:data:`ratedist.compressors.COMPRESSORS`).
        **facts: facts of the closed form. ``entropy_alphabet``: ``params -> n`` where the
            entropy rate is the TRUE entropy of a law on about ``n`` symbols (a plug-in
            estimate from ``d`` symbols is lower by about ``(n - 1)/(2 d ln 2)`` bits per
            coordinate); absent where the entropy rate is the expected plug-in length itself.

    Raises:
        ValueError: ``name`` is not a registered compressor, or already has a closed form.
    """
    if name not in COMPRESSORS:
        COMPRESSORS.entry(name)  # raises "unknown compressor ...; known: ..."
    return CLOSED_FORMS.register(name, **facts)


def log2_binom(d: int, k: Any) -> Any:
    """``log2 C(d, k)`` (vectorized over ``k``) via ``lgamma``."""
    k = np.asarray(k, np.float64)
    return (
        special.gammaln(d + 1) - special.gammaln(k + 1) - special.gammaln(d - k + 1)
    ) / math.log(2)


def _binary_entropy(p: Any) -> np.ndarray:
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p <= 0) | (p >= 1), 0.0, h)


@lru_cache(maxsize=256)
def expected_empirical_binary_entropy_bits(n: int, p: float = 0.5) -> float:
    """``E[n H(C/n)]`` for ``C ~ Bin(n, p)``: the expected plug-in code length of n coins.

    This is exactly what the sign compressors report in their entropy layer.
    """
    c = np.arange(n + 1)
    return float(np.sum(stats.binom.pmf(c, n, p) * n * _binary_entropy(c / n)))


def _check_d(d: Any) -> int:
    return check_int("d", d, min_value=1)


__all__ = [
    "CLOSED_FORMS",
    "ClosedForm",
    "expected_empirical_binary_entropy_bits",
    "log2_binom",
    "register_closed_form",
]
