"""Gaussian and Laplace sources with closed-form partial moments.

Half-line moments follow from the substitution ``t = x^2/(2 sigma^2)`` (Gaussian) and
``t = x/s`` (Laplace), which turn ``int_0^u x^k p(x) dx`` into regularized incomplete gamma
functions:

* Gaussian(sigma): ``sigma^k 2^(k/2) Gamma((k+1)/2) / (2 sqrt(pi)) * P((k+1)/2, u^2/(2 sigma^2))``
* Laplace(s):      ``s^k Gamma(k+1) / 2 * P(k+1, u/s)``

with ``P`` replaced by ``Q = 1 - P`` (``gammaincc``) for tail integrals. Both are checked
against quadrature in ``tests/sources``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import jax
import numpy as np
from scipy import special  # scipy.stats is imported in the methods: it is slow to load

from ratedist.sources.base import SCALE_RANGE, AbstractSource, check_q, jax_float


@dataclass(frozen=True)
class Gaussian(AbstractSource):
    """Zero-mean Gaussian ``N(0, sigma^2)``.

    Args:
        sigma: standard deviation, in ``[1e-75, 1e75]`` (:data:`SCALE_RANGE`).

    Raises:
        ValueError: ``sigma`` outside its range (TypeError: not a real number).
    """

    PARAM_RANGES: ClassVar = MappingProxyType({"sigma": SCALE_RANGE})

    sigma: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    def pdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        with np.errstate(over="ignore"):  # scipy squares x: |x| > 1e154 overflows to p = 0
            return stats.norm.pdf(np.asarray(x, np.float64), scale=self.sigma)

    def cdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        return stats.norm.cdf(np.asarray(x, np.float64), scale=self.sigma)

    def ppf(self, q: Any) -> np.ndarray:
        from scipy import stats

        return stats.norm.ppf(check_q(q), scale=self.sigma)

    def variance(self) -> float:
        return self.sigma**2

    def entropy_bits(self) -> float:
        return 0.5 * math.log2(2 * math.pi * math.e * self.sigma**2)

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        dtype = jax_float(dtype)
        return self.sigma * jax.random.normal(key, shape, dtype)

    def _const(self, k: int) -> float:
        return self.sigma**k * 2 ** (k / 2) * special.gamma((k + 1) / 2) / (2 * math.sqrt(math.pi))

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # u^2 = inf past 1e154 sigma: P(., inf) = 1 is exact
            return self._const(k) * special.gammainc((k + 1) / 2, u**2 / (2 * self.sigma**2))

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return self._const(k) * special.gammaincc((k + 1) / 2, u**2 / (2 * self.sigma**2))

    def _abs_median(self) -> float:
        return 0.6744897501960817 * self.sigma


@dataclass(frozen=True)
class Laplace(AbstractSource):
    """Zero-mean Laplace with density ``exp(-|x|/scale) / (2 scale)`` (variance ``2 scale^2``).

    Args:
        scale: the scale ``gamma`` of arXiv 2402.01160, in ``[1e-75, 1e75]``
            (:data:`SCALE_RANGE`).

    Raises:
        ValueError: ``scale`` outside its range (TypeError: not a real number).
    """

    PARAM_RANGES: ClassVar = MappingProxyType({"scale": SCALE_RANGE})

    scale: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    def pdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        return stats.laplace.pdf(np.asarray(x, np.float64), scale=self.scale)

    def cdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        return stats.laplace.cdf(np.asarray(x, np.float64), scale=self.scale)

    def ppf(self, q: Any) -> np.ndarray:
        from scipy import stats

        return stats.laplace.ppf(check_q(q), scale=self.scale)

    def variance(self) -> float:
        return 2 * self.scale**2

    def entropy_bits(self) -> float:
        return math.log2(2 * math.e * self.scale)

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        dtype = jax_float(dtype)
        return self.scale * jax.random.laplace(key, shape, dtype)

    def _const(self, k: int) -> float:
        return self.scale**k * special.gamma(k + 1) / 2

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        return self._const(k) * special.gammainc(k + 1, u / self.scale)

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        return self._const(k) * special.gammaincc(k + 1, u / self.scale)

    def _abs_median(self) -> float:
        return math.log(2) * self.scale
