"""Dense compressors: identity, sign, scaled sign, QSGD, NUQSGD, TernGrad, natural compression.

Every coordinate is sent. Bit accounting (see :class:`~ratedist.compressors.base.CompressInfo`):

=============  ==============================  ============  ==========================================
compressor     value_bits (container)          side_bits     entropy_bits
=============  ==============================  ============  ==========================================
identity       ``d * float_bits``              0             ``d * float_bits`` (floats sent raw)
sign           ``d``                           0             ``d * H(signs)``
scaled-sign    ``d``                           float_bits    ``d * H(signs) + float_bits``
qsgd(s)        ``d * (1 + ceil(log2(s+1)))``   float_bits    ``d * H(signed levels) + float_bits``
nuqsgd(s)      ``d * (1 + ceil(log2(s+1)))``   float_bits    ``d * H(signed levels) + float_bits``
terngrad       ``2 d``                         float_bits    ``d * H(ternary symbols) + float_bits``
natural        ``d * (1 + exponent bits)``     0             ``d * H(signed exponents)``
=============  ==============================  ============  ==========================================

``H`` is the empirical entropy of the symbols actually produced (ideal code length, the code
table not charged). A "signed level" is ``sign * level`` in ``{-s, ..., s}``: the container
sends a sign bit for exact zeros too, the entropy layer does not (level 0 has no sign).
A 1-bit sign cannot code 0: ``sign`` and ``scaled-sign`` send ``+1`` for ``x_i = 0`` (and
``-0.0``). ``scaled-sign`` scales by ``||x||_1/d`` (default, contractive) or ``||x||_inf``
(``scale="linf"``, not contractive); the bits are the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_choice, check_int
from ratedist.compressors import _kernels
from ratedist.compressors._common import (
    check_float_bits,
    check_key,
    check_rng_bits,
    check_vector,
    counts_entropy_bits,
    make_info,
)
from ratedist.compressors.base import COMPRESSORS, FLOAT_BITS, Compressor, Facts, register


class EmptyState(NamedTuple):
    """State of a stateless compressor (an empty pytree)."""


def _init(x: Any) -> EmptyState:
    return EmptyState()


def _facts(name: str, params: dict[str, Any], **overrides: Any) -> Facts:
    """Instance facts: the registry's facts of ``name``, ``overrides`` winning.

    ``params`` are bound into the registry's ``omega(d, **params)``, ``alpha(d, **params)``
    and ``abs_mse(d, **params)``.
    """
    f = {**COMPRESSORS.facts(name), **overrides}
    omega, alpha, abs_mse = f.get("omega"), f.get("alpha"), f.get("abs_mse")
    return Facts(
        name=name,
        params=dict(params),
        unbiased=f["unbiased"],
        deterministic=f["deterministic"],
        omega=None if omega is None else partial(omega, **params),
        alpha=None if alpha is None else partial(alpha, **params),
        shared=f.get("shared", False),
        abs_mse=None if abs_mse is None else partial(abs_mse, **params),
    )


def _stateless(
    name: str, params: dict[str, Any], update: Any, sparse: Any = None, **overrides: Any
) -> Compressor:
    """A stateless :class:`Compressor` of ``update`` with the facts :func:`_facts` gives."""
    return Compressor(_init, update, _facts(name, params, **overrides), sparse)


def _rng_compressor(
    name: str,
    params: dict[str, Any],
    rng_bits: int,
    core: Callable[[Any, Any], tuple[Any, Any]],
) -> Compressor:
    """Stateless stochastic-rounding compressor from ``core(x, key) -> (x_hat, info)``.

    ``update`` checks ``x`` and refuses a missing ``key`` before calling ``core``. Unbiased
    (with the registry's omega) only at 32 RNG bits.
    """

    @_kernels.propagates_nonfinite
    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        x_hat, info = core(x, check_key(key, name))
        return x_hat, state, info

    inexact = {} if rng_bits == 32 else {"unbiased": False, "omega": None}
    return _stateless(name, params, update, **inexact)


# ----------------------------------------------------------------------------- identity
def _identity_omega(d: int, **_: Any) -> float:
    return 0.0


def _identity_alpha(d: int, **_: Any) -> float:
    return 1.0


@register(
    "identity",
    selects=True,
    unbiased=True,
    deterministic=True,
    rd_sweep=[{}],
    examples=[{}, {"float_bits": 16}],
    omega=_identity_omega,
    alpha=_identity_alpha,
)
def identity(float_bits: int = FLOAT_BITS) -> Compressor:
    """No compression: ``C(x) = x``; ``float_bits`` bits per coordinate.

    Args:
        float_bits: width of one sent float.

    Returns:
        A :class:`Compressor` with omega = 0 and alpha = 1.
    """
    float_bits = check_float_bits(float_bits)

    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        d = x.shape[0]
        bits = d * float_bits
        return x, state, make_info(bits, 0, 0, bits)

    return _stateless("identity", {"float_bits": float_bits}, update)


# ----------------------------------------------------------------------------- signs
@register(
    "sign",
    unbiased=False,
    deterministic=True,
    rd_sweep=[{}],
    examples=[{}],
)
def sign() -> Compressor:
    """Unscaled sign ``C(x)_i = sign(x_i)`` in ``{-1, +1}`` (signSGD / majority vote).

    Biased and not contractive (``||sign(x) - x||^2`` can exceed ``||x||^2``), so no omega or
    alpha is declared. 1 bit per coordinate; ``x_i = 0`` is sent as ``+1``.

    References:
        Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems",
        arXiv 1802.04434.
    """

    @_kernels.propagates_nonfinite
    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        d = x.shape[0]
        s, counts = _kernels.sign(x)
        return s, state, make_info(d, 0, 0, counts_entropy_bits(counts, d))

    return _stateless("sign", {}, update)


#: scales of ``scaled-sign``: the norm that multiplies ``sign(x)``
SIGN_SCALES = ("l1", "linf")


def _scaled_sign_alpha(d: int, **_: Any) -> float:
    # ||x - (|x|_1/d) sign x||^2 = ||x||^2 - ||x||_1^2 / d and ||x||_1^2 >= ||x||_2^2.
    return 1.0 / d


@register(
    "scaled-sign",
    unbiased=False,
    deterministic=True,
    rd_sweep=[{}],
    examples=[{}, {"scale": "linf"}],
    alpha=_scaled_sign_alpha,
)
def scaled_sign(float_bits: int = FLOAT_BITS, scale: str = "l1") -> Compressor:
    """Scaled sign ``C(x) = s(x) sign(x)`` with ``s = ||x||_1 / d`` or ``s = ||x||_inf``;
    ``d + float_bits`` bits either way (the scale is sent as one float).

    ``scale="l1"`` (default): deterministic and contractive,
    ``||C(x) - x||^2 = ||x||^2 - ||x||_1^2/d``, so ``alpha(x) = ||x||_1^2 / (d ||x||_2^2) >=
    1/d`` (declared alpha = 1/d, attained by a 1-sparse x). ``||x||_1/d`` is the best scale
    for the sign pattern: it minimizes ``||s sign(x) - x||^2`` over ``s``.

    ``scale="linf"``: ``||C(x) - x||^2 = sum_i (m - |x_i|)^2`` with ``m = ||x||_inf``
    ``= d m^2 - 2 m ||x||_1 + ||x||^2``. It is NOT contractive in general, so no alpha is
    declared: the error is below ``||x||^2`` iff ``d ||x||_inf < 2 ||x||_1``, and the worst
    case is ``||C(x) - x||^2 = (d - 1) ||x||^2`` (each of the other ``d - 1`` coordinates
    contributes at most ``m^2 <= ||x||^2``; attained by a 1-sparse x). On flat inputs
    (``|x_i|`` all equal) it is exact. Error feedback with this scale has no contraction
    guarantee (the residual can grow); the l1 scale is the one the EF theory covers.

    Args:
        float_bits: width of the sent scale.
        scale: ``"l1"`` (``||x||_1/d``) or ``"linf"`` (``||x||_inf``). The default is left
            out of the instance's ``params`` (its label stays ``scaled-sign:float_bits=32``).

    Raises:
        ValueError: an unknown ``scale``, bad ``float_bits``.

    References:
        Karimireddy et al., "Error Feedback Fixes SignSGD", arXiv 1901.09847 (Lemma 8 style
        contraction); Gandikota et al. arXiv 2108.09899 (rate ``1 + 32/d``); Chen et al.,
        "Quantized Adam with Error Feedback", arXiv 2004.14180 (sign with l1/d or l_inf scale).
    """
    float_bits = check_float_bits(float_bits)
    scale = check_choice("scale", scale, SIGN_SCALES)

    @_kernels.propagates_nonfinite
    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        d = x.shape[0]
        if scale == "l1":
            s = jnp.sum(jnp.abs(x)) / d
        else:
            s = jnp.max(jnp.abs(x))
        x_hat, counts = _kernels.sign(x, s)
        ent = counts_entropy_bits(counts, d) + float_bits
        return x_hat, state, make_info(d, 0, float_bits, ent)

    if scale == "l1":  # the default keeps the labels of stored results and golden traces
        return _stateless("scaled-sign", {"float_bits": float_bits}, update)
    params = {"float_bits": float_bits, "scale": scale}
    return _stateless("scaled-sign", params, update, alpha=None)


# ----------------------------------------------------------------------------- QSGD-family
#: stochastic rounding onto a level table (kept here for the modules that import it)
_stochastic_levels = _kernels.stochastic_levels


def _qsgd_omega(d: int, s: int, **_: Any) -> float:
    return min(d / s**2, math.sqrt(d) / s)


@register(
    "qsgd",
    unbiased=True,
    deterministic=False,
    rd_sweep=[{"s": 1}, {"s": 4}, {"s": 16}, {"s": 64}],
    rd_curve=[{"s": s} for s in (1, 2, 4, 8, 16, 32, 64, 128)],
    examples=[{"s": 1}, {"s": 4}, {"s": 15, "float_bits": 16}, {"s": 4, "rng_bits": 8}],
    omega=_qsgd_omega,
)
def qsgd(s: int = 1, float_bits: int = FLOAT_BITS, rng_bits: int = 32) -> Compressor:
    """QSGD with ``s`` uniform levels on ``[0, 1]`` of ``|x_i| / ||x||_2``.

    ``C(x)_i = ||x||_2 sign(x_i) xi_i / s`` with ``xi_i`` the unbiased stochastic rounding of
    ``s |x_i| / ||x||_2`` to ``{0, ..., s}``. Sent: the norm (``float_bits``) and, per
    coordinate, a sign bit and a level index of ``ceil(log2(s+1))`` bits (the sign of exact
    zeros is sent too in the container; the entropy layer codes signed levels
    ``{-s, ..., s}``).

    Args:
        s: number of quantization intervals (``s + 1`` levels), >= 1.
        float_bits: width of the sent norm.
        rng_bits: random bits per coordinate for the rounding (32 = exact; see
            :func:`ratedist.compressors._kernels.bernoulli`).

    Returns:
        An unbiased compressor with ``omega = min(d/s^2, sqrt(d)/s)``.

    References:
        Alistarh et al., "QSGD", arXiv 1610.02132, Lemma 3.1 (unbiasedness and the variance
        bound; assumptions: none on x beyond finiteness).
    """
    return _norm_level_compressor("qsgd", s, float_bits, rng_bits, _qsgd_levels)


def _nuqsgd_omega(d: int, s: int, **_: Any) -> float:
    lam = 2.0 ** (1 - s)
    return 0.125 + min(d * lam**2 / 4, lam * math.sqrt(d))


@register(
    "nuqsgd",
    unbiased=True,
    deterministic=False,
    rd_sweep=[{"s": 3}, {"s": 6}, {"s": 8}],
    rd_curve=[{"s": s} for s in (2, 3, 4, 6, 8)],
    examples=[{"s": 1}, {"s": 3}, {"s": 8}],
    omega=_nuqsgd_omega,
)
def nuqsgd(s: int = 3, float_bits: int = FLOAT_BITS, rng_bits: int = 32) -> Compressor:
    """NUQSGD: QSGD with exponentially spaced levels ``{0, 2^-(s-1), ..., 1/2, 1}``.

    ``s + 1`` levels on ``r_i = |x_i| / ||x||_2``; unbiased stochastic rounding between
    neighbouring levels; bits as for QSGD (sign + ``ceil(log2(s+1))`` per coordinate + norm).

    Variance bound (derived here, tested in ``tests/compressors``): with ``lam = 2^(1-s)``,
    on a cell ``[l, 2l]`` the rounding variance ``(2l - r)(r - l) <= r^2/8`` (maximum at
    ``r = 4l/3``); on ``[0, lam]`` it is ``(lam - r) r <= min(lam^2/4, lam r)``. Summing with
    ``sum r_i^2 = 1`` and ``sum r_i <= sqrt(d)``:
    ``E||C(x) - x||^2 <= (1/8 + min(d lam^2/4, lam sqrt(d))) ||x||^2``.
    This is the same structure as the bound of Ramezani-Kebrya et al. (arXiv 1908.06077,
    Theorem 2); we declare our derived constant.

    Args:
        s: number of nonzero levels, >= 1 (s = 1 is ternary {0, 1}).
        float_bits: width of the sent norm.
        rng_bits: random bits per coordinate for the rounding.

    References:
        Ramezani-Kebrya et al., "NUQSGD: Provably Communication-efficient Data-parallel SGD
        via Nonuniform Quantization", arXiv 1908.06077.
    """
    return _norm_level_compressor("nuqsgd", s, float_bits, rng_bits, _nuqsgd_levels)


def _qsgd_levels(s: int) -> np.ndarray:
    return np.arange(s + 1, dtype=np.float64) / s


def _nuqsgd_levels(s: int) -> np.ndarray:
    return np.concatenate([[0.0], 2.0 ** -np.arange(s - 1, -1, -1, dtype=np.float64)])


def _norm_level_compressor(
    name: str,
    s: Any,
    float_bits: Any,
    rng_bits: Any,
    levels_of: Callable[[int], np.ndarray],
) -> Compressor:
    """``||x||_2 sign(x) L[xi]`` with ``xi`` the stochastic rounding of ``|x|/||x||_2`` on L.

    ``s``, ``float_bits`` and ``rng_bits`` are checked here; ``L = levels_of(s)``
    (``s + 1`` increasing levels from 0 to 1).
    """
    s = check_int("s", s, min_value=1)
    float_bits = check_float_bits(float_bits)
    rng_bits = check_rng_bits(rng_bits)
    levels = levels_of(s)
    params = {"s": s, "float_bits": float_bits, "rng_bits": rng_bits}
    value_bits_per_coord = 1 + (s).bit_length()  # 1 + ceil(log2(s + 1))

    def core(x: Any, key: Any) -> tuple[Any, Any]:
        d = x.shape[0]
        norm = jnp.sqrt(jnp.sum(x * x))
        # counts of the signed levels s -+ idx in [0, 2s] (both zeros are s)
        x_hat, counts = _kernels.magnitude(x, key, norm, levels, rng_bits)
        ent = counts_entropy_bits(counts, d) + float_bits
        return x_hat, make_info(d * value_bits_per_coord, 0, float_bits, ent)

    return _rng_compressor(name, params, rng_bits, core)


# ----------------------------------------------------------------------------- TernGrad
_TERNARY = np.array([0.0, 1.0])


def _terngrad_omega(d: int, **_: Any) -> float:
    return math.sqrt(d) - 1.0


@register(
    "terngrad",
    unbiased=True,
    deterministic=False,
    rd_sweep=[{}],
    examples=[{}, {"rng_bits": 16}],
    omega=_terngrad_omega,
)
def terngrad(float_bits: int = FLOAT_BITS, rng_bits: int = 32) -> Compressor:
    """TernGrad: ``C(x)_i = s_t sign(x_i) b_i``, ``s_t = max|x|``, ``b_i ~ Bernoulli(|x_i|/s_t)``.

    Unbiased; ``E||C(x) - x||^2 = s_t ||x||_1 - ||x||^2 <= (sqrt(d) - 1) ||x||^2`` because
    ``||x||_inf ||x||_1 <= sqrt(d) ||x||_2^2``; declared ``omega = sqrt(d) - 1``. Sent: the
    scale (``float_bits``) and 2 bits per ternary symbol in the container (no base-3
    packing); the entropy layer codes the ternary symbols at their empirical entropy. This is
    the basic per-vector scheme (no layer-wise scaling, no gradient clipping).

    Args:
        float_bits: width of the sent scale.
        rng_bits: random bits per coordinate for the Bernoulli draws.

    References:
        Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in Distributed Deep
        Learning", arXiv 1705.07878, Eq. (4)-(5).
    """
    float_bits = check_float_bits(float_bits)
    rng_bits = check_rng_bits(rng_bits)

    def core(x: Any, key: Any) -> tuple[Any, Any]:
        d = x.shape[0]
        st = jnp.max(jnp.abs(x))
        # levels {0, 1}: b_i ~ Bernoulli(|x_i| / st); the ternary symbols counted
        x_hat, counts = _kernels.magnitude(x, key, st, _TERNARY, rng_bits, zero_plus=True)
        ent = counts_entropy_bits(counts, d) + float_bits
        return x_hat, make_info(2 * d, 0, float_bits, ent)

    params = {"float_bits": float_bits, "rng_bits": rng_bits}
    return _rng_compressor("terngrad", params, rng_bits, core)


# ----------------------------------------------------------------------------- natural
def _natural_omega(d: int, **_: Any) -> float:
    return 0.125


@register(
    "natural",
    unbiased=True,
    deterministic=False,
    rd_sweep=[{}],
    examples=[{}],
    omega=_natural_omega,
)
def natural(rng_bits: int = 32) -> Compressor:
    """Natural compression: unbiased stochastic rounding of ``|x_i|`` to a power of two.

    For ``2^e <= |x_i| < 2^(e+1)`` the output is ``sign(x_i) 2^(e+1)`` with probability
    ``(|x_i| - 2^e) / 2^e`` and ``sign(x_i) 2^e`` otherwise; zeros stay zero. Per-coordinate
    variance ``(2^(e+1) - |x|)(|x| - 2^e) <= |x|^2 / 8``, so ``omega = 1/8``.

    Bits: a sign bit plus the exponent field of ``x.dtype`` per coordinate (8 bits for
    float32, i.e. 9 bits as in the paper; 11 for float64, 5 for float16; zero is a reserved
    exponent code). No side information. The entropy layer codes the signed exponents
    actually produced. Values within a factor 2 of the dtype's largest finite number can round
    up to ``inf`` (not guarded).

    Args:
        rng_bits: random bits per coordinate for the rounding.

    References:
        Horvath et al., "Natural Compression for Distributed Deep Learning",
        arXiv 1905.10988, Theorem 1 (omega = 1/8).
    """
    rng_bits = check_rng_bits(rng_bits)

    def core(x: Any, key: Any) -> tuple[Any, Any]:
        d = x.shape[0]
        x_hat, counts = _kernels.natural(x, key, rng_bits)
        ent = counts_entropy_bits(counts, d)
        exp_bits = int(np.finfo(np.dtype(x.dtype)).nexp)
        return x_hat, make_info(d * (1 + exp_bits), 0, 0, ent)

    return _rng_compressor("natural", {"rng_bits": rng_bits}, rng_bits, core)
