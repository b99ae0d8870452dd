"""Heavy(ier)-tailed gradient sources: Student-t, generalized Gaussian and a power-law tail.

All three are symmetric about zero, so (as for :mod:`ratedist.sources.classic`) each supplies
only the half-line moment ``H_k(u) = int_0^u x^k p(x) dx`` and its tail
``T_k(u) = int_u^inf x^k p(x) dx`` in closed form; :class:`AbstractSource` assembles any
interval from them. The substitutions used are

* Student-t(nu, s):  ``t = x^2 / (nu s^2 + x^2)`` gives
  ``H_k(u) = (s sqrt(nu))^k B((k+1)/2, (nu-k)/2) / (2 B(1/2, nu/2)) * I_t((k+1)/2, (nu-k)/2)``;
* generalized Gaussian(beta, alpha): ``y = (x/alpha)^beta`` gives
  ``H_k(u) = alpha^k Gamma((k+1)/beta) / (2 Gamma(1/beta)) * P((k+1)/beta, (u/alpha)^beta)``;
* power law(a, s):  ``t = x / (s + x)`` gives
  ``H_k(u) = a s^k B(k+1, a-k) / 2 * I_t(k+1, a-k)``;

with ``I`` the regularized incomplete beta and ``P`` the regularized lower incomplete gamma.
Tails use the complementary functions evaluated at the complementary argument
(``I_{1-t}(b, a)``, ``Q``), computed directly so far-tail cells keep full relative precision.

Where ``E|X|^k`` is infinite (Student-t with ``k >= nu``, power law with ``k >= a``) a cell with
an infinite end raises ``ValueError`` and a finite cell falls back to adaptive quadrature
(:data:`ratedist.sources.base.QUAD_TOL`): the incomplete beta with a non-positive second
parameter has no stable library implementation. Near 0, where ``t`` or ``y`` underflows, the
half moments switch to the two leading terms of the small-argument series.

References:
    Student-t and generalized-Gaussian entropies: S. Nadarajah, "A generalized normal
    distribution", J. Appl. Stat. 32 (2005); power law: see :class:`PowerLaw`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special  # scipy.stats is imported in the methods: it is slow to load

from ratedist.sources.base import (
    SCALE_RANGE,
    AbstractSource,
    ParamRange,
    as_shape,
    check_q,
    jax_float,
)

LN2 = math.log(2.0)

#: Where the designs hold up: every design method converges for up to 256 levels (tests/
#: quantizers/test_design_sweep.py); closer to a tail index of 2 the ``p^(1/3)`` compander law
#: (itself Student-t with ``(df - 2)/3`` degrees of freedom) puts levels past 1e150 and the
#: variance-optimal solve stalls, though the variance is still finite.
_DESIGN_TAIL = "every quantizer design converges there; the variance is finite only above 2"


@dataclass(frozen=True)
class StudentT(AbstractSource):
    """Zero-mean Student-t with ``df`` degrees of freedom and scale ``scale``.

    Density ``Gamma((df+1)/2) / (sqrt(df pi) scale Gamma(df/2)) (1 + x^2/(df scale^2))^(-(df+1)/2)``;
    tails ``P(|X| > x) ~ x^(-df)``, so ``E|X|^k`` is finite iff ``k < df``.

    Args:
        df: degrees of freedom, in ``[0.3, 1e6]`` (the tested range of the closed-form
            moments; the variance is finite only for ``df > 2``, and quantizer designs need
            ``df >= 3``: :attr:`DESIGN_RANGES`).
        scale: scale ``s`` (the standard deviation is ``s sqrt(df/(df-2))``), in
            ``[1e-75, 1e75]`` (:data:`~ratedist.sources.base.SCALE_RANGE`).

    Raises:
        ValueError: ``df`` or ``scale`` outside its range (TypeError: not a real number).
    """

    PARAM_RANGES: ClassVar = MappingProxyType(
        {
            "df": ParamRange(0.3, 1e6, "the tested range of the closed-form moments"),
            "scale": SCALE_RANGE,
        }
    )
    DESIGN_RANGES: ClassVar = MappingProxyType({"df": ParamRange(3.0, 1e6, _DESIGN_TAIL)})

    df: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    @property
    def name(self) -> str:
        return "student-t"

    def pdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        with np.errstate(over="ignore"):  # scipy squares x: |x| > 1e154 overflows to p = 0
            return stats.t.pdf(np.asarray(x, np.float64), self.df, scale=self.scale)

    def cdf(self, x: Any) -> np.ndarray:
        from scipy import stats

        return stats.t.cdf(np.asarray(x, np.float64), self.df, scale=self.scale)

    def ppf(self, q: Any) -> np.ndarray:
        from scipy import stats

        return stats.t.ppf(check_q(q), self.df, scale=self.scale)

    def variance(self) -> float:
        """``df scale^2 / (df - 2)``.

        Raises:
            ValueError: ``df <= 2`` (infinite variance).
        """
        if self.df <= 2:
            raise ValueError(f"df must be > 2 for a finite variance, got {self.df!r}")
        return self.df * self.scale**2 / (self.df - 2)

    def entropy_bits(self) -> float:
        """``(nu+1)/2 [psi((nu+1)/2) - psi(nu/2)] + ln(sqrt(nu) B(nu/2, 1/2) s)`` nats, in bits."""
        nu = self.df
        nats = (
            (nu + 1) / 2 * (special.digamma((nu + 1) / 2) - special.digamma(nu / 2))
            + 0.5 * math.log(nu)
            + special.betaln(nu / 2, 0.5)
            + math.log(self.scale)
        )
        return float(nats / LN2)

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Bailey's polar method without rejection: ``T = cos(2 pi V) sqrt(df (W^(-2/df) - 1))``
        with ``V, W`` independent uniforms (``W`` on (0, 1]).

        Exact, and unlike ``jax.random.t`` free of the gamma sampler's rejection loop (which
        costs seconds of compilation per shape on CPU and ~6x the run time).

        References:
            R. W. Bailey, Polar generation of random variates with the t-distribution,
            Math. Comp. 62 (1994), 779-781.
        """
        return _sample_t(key, self.df, self.scale, as_shape(shape), jax_float(dtype))

    # closed-form half moments
    def _moment_exists(self, k: int) -> bool:
        return k < self.df

    def _const(self, k: int) -> float:
        nu = self.df
        log_c = special.betaln((k + 1) / 2, (nu - k) / 2) - special.betaln(0.5, nu / 2)
        return (self.scale * math.sqrt(nu)) ** k * math.exp(log_c) / 2

    def _t_and_1mt(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", over="ignore"):  # r2 = inf for u > 1e154 s is fine
            r2 = (np.asarray(u, np.float64) / (self.scale * math.sqrt(self.df))) ** 2
            t = np.where(np.isinf(r2), 1.0, r2 / (1.0 + r2))
        return t, 1.0 / (1.0 + r2)

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        a, b = (k + 1) / 2, (self.df - k) / 2
        t, _ = self._t_and_1mt(u)
        out = special.betainc(a, b, t)
        # Near 0, t = r^2/(1+r^2) underflows (|u| < 1e-154 s): use the leading terms of
        # I_t(a, b) = t^a/(a B(a, b)) (1 - (b-1) a t/(a+1) + O((b t)^2)) with log t from log u.
        small = t * max(b, 1.0) < 1e-8
        if np.any(small):
            u = np.asarray(u, np.float64)
            r = u / (self.scale * math.sqrt(self.df))
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                log_t = 2 * np.log(r) - np.log1p(r * r)
            log_t = np.where(small, log_t, -np.inf)  # exp() only where the series is used
            series = np.exp(a * log_t - math.log(a) - special.betaln(a, b))
            out = np.where(small, series * (1 - (b - 1) * a * t / (a + 1)), out)
        return self._const(k) * out

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        _, c = self._t_and_1mt(u)
        return self._const(k) * special.betainc((self.df - k) / 2, (k + 1) / 2, c)

    def _abs_median(self) -> float:
        from scipy import stats

        return float(stats.t.ppf(0.75, self.df)) * self.scale


@dataclass(frozen=True)
class GeneralizedGaussian(AbstractSource):
    """Zero-mean generalized Gaussian (exponential power) law.

    Density ``shape / (2 scale Gamma(1/shape)) exp(-(|x|/scale)^shape)``; ``shape = 2`` is
    ``N(0, scale^2/2)``, ``shape = 1`` is ``Laplace(scale)``, ``shape < 1`` has
    stretched-exponential (heavier than Laplace) tails. Same law as ``scipy.stats.gennorm``.

    Args:
        shape: shape exponent ``beta``, in ``[0.2, 50]`` (closed-form moments and every
            quantizer design checked there; below 0.2 the variance exceeds ``1e6 scale^2``
            and ``Gamma(3/beta)`` soon overflows).
        scale: scale ``alpha``, in ``[1e-75, 1e75]`` (:data:`~ratedist.sources.base.SCALE_RANGE`).

    Raises:
        ValueError: ``shape`` or ``scale`` outside its range (TypeError: not a real number).
    """

    PARAM_RANGES: ClassVar = MappingProxyType(
        {
            "shape": ParamRange(0.2, 50.0, "the checked range of moments and designs"),
            "scale": SCALE_RANGE,
        }
    )

    shape: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    @property
    def name(self) -> str:
        return "gen-gaussian"

    def _y(self, x: Any) -> np.ndarray:
        with np.errstate(over="ignore"):  # y = inf far in the tail is exact enough: p = 0
            return (np.abs(np.asarray(x, np.float64)) / self.scale) ** self.shape

    def pdf(self, x: Any) -> np.ndarray:
        log_norm = math.log(self.shape / (2 * self.scale)) - special.gammaln(1 / self.shape)
        return np.exp(log_norm - self._y(x))

    def cdf(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        half_tail = 0.5 * special.gammaincc(1 / self.shape, self._y(x))
        return np.where(x < 0, half_tail, 1.0 - half_tail)

    def ppf(self, q: Any) -> np.ndarray:
        q = check_q(q)
        p_tail = 2 * np.minimum(q, 1.0 - q)
        mag = self.scale * special.gammainccinv(1 / self.shape, p_tail) ** (1 / self.shape)
        return np.where(q < 0.5, -mag, mag)

    def variance(self) -> float:
        """``scale^2 Gamma(3/shape) / Gamma(1/shape)``."""
        b = self.shape
        return float(self.scale**2 * math.exp(special.gammaln(3 / b) - special.gammaln(1 / b)))

    def entropy_bits(self) -> float:
        """``1/beta + ln(2 alpha Gamma(1/beta) / beta)`` nats, in bits."""
        b = self.shape
        nats = 1 / b + math.log(2 * self.scale / b) + special.gammaln(1 / b)
        return float(nats / LN2)

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """``scale * G^(1/beta) * sign`` with ``G ~ Gamma(1/beta)`` (log-space for large beta)."""
        return _sample_gg(key, self.shape, self.scale, as_shape(shape), jax_float(dtype))

    def _const(self, k: int) -> float:
        b = self.shape
        return self.scale**k * math.exp(special.gammaln((k + 1) / b) - special.gammaln(1 / b)) / 2

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        a = (k + 1) / self.shape
        y = self._y(u)
        out = special.gammainc(a, y)
        # Near 0, y = (u/scale)^shape underflows for large shape: use
        # P(a, y) = y^a / Gamma(a+1) (1 - a y/(a+1) + O(y^2)) with y^a = (u/scale)^(k+1).
        small = y < 1e-8
        if np.any(small):
            with np.errstate(divide="ignore"):
                log_ya = (k + 1) * np.log(np.abs(np.asarray(u, np.float64)) / self.scale)
            log_ya = np.where(small, log_ya, -np.inf)  # exp() only where the series is used
            series = np.exp(log_ya - special.gammaln(a + 1)) * (1 - a * y / (a + 1))
            out = np.where(small, series, out)
        return self._const(k) * out

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        return self._const(k) * special.gammaincc((k + 1) / self.shape, self._y(u))

    def _abs_median(self) -> float:
        return self.scale * float(special.gammaincinv(1 / self.shape, 0.5)) ** (1 / self.shape)


@dataclass(frozen=True)
class PowerLaw(AbstractSource):
    """Symmetric power-law-tailed law (double Lomax / double Pareto type II).

    Density ``p(x) = a / (2 s) (1 + |x|/s)^(-(a+1))``, survival
    ``P(|X| > x) = (1 + x/s)^(-a) ~ (x/s)^(-a)``: the tail index ``a`` is the property that
    matters for truncation design (the optimal clipping threshold grows polynomially in the
    number of levels, not logarithmically). ``E|X|^k`` is finite iff ``k < a``; the variance
    is ``2 s^2 / ((a-1)(a-2))`` for ``a > 2``.

    This exact density is ratedist's choice of power-law model: arXiv 2402.01798 assumes
    gradients with a power-law tail but its exact density is not reproduced here; any law
    with ``P(|X| > x) ~ C x^(-a)`` shares the tail behaviour this model is meant to capture.
    The density is bounded and smooth away from 0, so cdf, ppf, entropy and moments are all
    closed form.

    Args:
        tail_index: the tail exponent ``a``, in ``[0.3, 40]`` (the tested range of the
            closed-form moments; the variance is finite only for ``a > 2``, and quantizer
            designs need ``a >= 3``: :attr:`DESIGN_RANGES`).
        scale: scale ``s`` (the median of ``|X|`` is ``s (2^(1/a) - 1)``), in
            ``[1e-75, 1e75]`` (:data:`~ratedist.sources.base.SCALE_RANGE`).

    Raises:
        ValueError: ``tail_index`` or ``scale`` outside its range (TypeError: not a real
            number).

    References:
        arXiv 2402.01798 (power-law tailed gradients in truncated quantization).
    """

    PARAM_RANGES: ClassVar = MappingProxyType(
        {
            "tail_index": ParamRange(0.3, 40.0, "the tested range of the closed-form moments"),
            "scale": SCALE_RANGE,
        }
    )
    DESIGN_RANGES: ClassVar = MappingProxyType({"tail_index": ParamRange(3.0, 40.0, _DESIGN_TAIL)})

    tail_index: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        self._check_params()

    @property
    def name(self) -> str:
        return "power-law"

    def _log1p_r(self, x: Any) -> np.ndarray:
        return np.log1p(np.abs(np.asarray(x, np.float64)) / self.scale)

    def pdf(self, x: Any) -> np.ndarray:
        a = self.tail_index
        return a / (2 * self.scale) * np.exp(-(a + 1) * self._log1p_r(x))

    def cdf(self, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        half_tail = 0.5 * np.exp(-self.tail_index * self._log1p_r(x))
        return np.where(x < 0, half_tail, 1.0 - half_tail)

    def ppf(self, q: Any) -> np.ndarray:
        q = check_q(q)
        p_tail = 2 * np.minimum(q, 1.0 - q)
        with np.errstate(divide="ignore"):
            mag = self.scale * np.expm1(-np.log(p_tail) / self.tail_index)
        return np.where(q < 0.5, -mag, mag)

    def variance(self) -> float:
        """``2 scale^2 / ((a-1)(a-2))``.

        Raises:
            ValueError: ``tail_index <= 2`` (infinite variance).
        """
        a = self.tail_index
        if a <= 2:
            raise ValueError(f"tail_index must be > 2 for a finite variance, got {a!r}")
        return 2 * self.scale**2 / ((a - 1) * (a - 2))

    def entropy_bits(self) -> float:
        """``ln(2 s / a) + (a + 1)/a`` nats, in bits (``ln(1+|X|/s) ~ Exp(a)``)."""
        a = self.tail_index
        return float((math.log(2 * self.scale / a) + (a + 1) / a) / LN2)

    def sample(self, key: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Inverse cdf: ``|X| = s ((U)^(-1/a) - 1)`` with ``U`` uniform on (0, 1], random sign."""
        return _sample_power_law(
            key, self.tail_index, self.scale, as_shape(shape), jax_float(dtype)
        )

    def _moment_exists(self, k: int) -> bool:
        return k < self.tail_index

    def _const(self, k: int) -> float:
        a = self.tail_index
        return a * self.scale**k * math.exp(special.betaln(k + 1, a - k)) / 2

    def _half_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, np.float64)
        with np.errstate(invalid="ignore"):
            t = np.where(np.isinf(u), 1.0, u / (self.scale + u))
        return self._const(k) * special.betainc(k + 1, self.tail_index - k, t)

    def _tail_moment(self, k: int, u: np.ndarray) -> np.ndarray:
        c = self.scale / (self.scale + np.asarray(u, np.float64))
        return self._const(k) * special.betainc(self.tail_index - k, k + 1, c)

    def _abs_median(self) -> float:
        return self.scale * math.expm1(LN2 / self.tail_index)


# Samplers are jitted once per (shape, dtype); parameters are traced so that every parameter
# value shares one compiled program.
@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _sample_t(key: Any, df: Any, scale: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    k_w, k_v = jax.random.split(key)
    w = 1.0 - jax.random.uniform(k_w, shape, dtype)  # (0, 1]: no log(0)
    v = jax.random.uniform(k_v, shape, dtype)
    df = jnp.asarray(df, dtype)
    radius = jnp.sqrt(df * jnp.expm1(-2.0 / df * jnp.log(w)))
    return jnp.asarray(scale, dtype) * radius * jnp.cos(2 * jnp.pi * v)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _sample_gg(key: Any, beta: Any, scale: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    k_mag, k_sign = jax.random.split(key)
    beta = jnp.asarray(beta, dtype)
    log_g = jax.random.loggamma(k_mag, 1 / beta, shape, dtype)
    sign = jax.random.rademacher(k_sign, shape, dtype)
    return jnp.asarray(scale, dtype) * jnp.exp(log_g / beta) * sign


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _sample_power_law(key: Any, a: Any, scale: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    k_mag, k_sign = jax.random.split(key)
    u = 1.0 - jax.random.uniform(k_mag, shape, dtype)  # (0, 1]: no log(0)
    sign = jax.random.rademacher(k_sign, shape, dtype)
    a = jnp.asarray(a, dtype)
    return jnp.asarray(scale, dtype) * jnp.expm1(-jnp.log(u) / a) * sign
