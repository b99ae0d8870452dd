"""Rounding to the fixed grid ``delta * Z`` (weight quantization of arXiv 2004.14180).

Every coordinate is rounded to a multiple of the resolution ``delta`` (a parameter: nothing is
scaled by a norm of ``x``). With ``k_j = floor(x_j / delta)`` and ``r_j = x_j / delta - k_j`` in
``[0, 1)``:

* ``rounding="stochastic"`` (default): ``Q(x)_j = delta (k_j + b_j)``, ``b_j ~ Bernoulli(r_j)``
  independent. Then (sympy in :mod:`ratedist.symbolic.grid`)

      E Q(x)_j = x_j,      E (Q(x)_j − x_j)^2 = r_j (1 − r_j) delta^2 <= delta^2 / 4,

  so ``E||Q(x) − x||^2 = delta^2 sum_j r_j (1 − r_j) <= d delta^2 / 4`` for every x.
* ``rounding="deterministic"``: the nearest grid point, ``Q(x)_j = delta round(x_j / delta)``
  (ties to even), ``|Q(x)_j − x_j| <= delta / 2`` pathwise.

The quotient ``x_j / delta`` is computed as ``x_j`` times ``1/delta`` rounded to the dtype
(what XLA's compiler makes of a division by a constant: a product with the rounded reciprocal),
so the result does not depend on whether ``delta`` is a constant or traced; the relative error
of the reciprocal (<= 2^-24 in float32) is below the resolution of ``x``.

Neither has an omega or an alpha (the error does not shrink with ``||x||``: at ``x`` with
``||x|| << delta`` it exceeds ``||x||^2``); both declare the absolute bound ``abs_mse(d) = d
delta^2 / 4`` (stochastic rounding with ``rng_bits`` < 32: ``d delta^2 (1/4 + 4^-(rng_bits+1))``,
see below).

Bits. The symbols are the integer indices ``i_j = Q(x)_j / delta`` (``delta`` is a parameter
known to both ends and not sent). The container sends the offset ``lo = min_j i_j`` as a
32-bit integer (``OFFSET_BITS``), the index width ``w = ceil(log2(max_j i_j − lo + 1))`` in
``WIDTH_BITS = ceil(log2 33) = 6`` bits, and each ``i_j − lo`` in ``w`` bits:

* ``value_bits = d w``, ``index_bits = 0``, ``side_bits = OFFSET_BITS + WIDTH_BITS = 38``;
* ``entropy_bits = d H(i) + 38``, ``H`` the empirical entropy of the indices actually sent
  (the code table is not charged, as in every entropy layer here).

All indices equal (``w = 0``, e.g. ``x = 0``): only the 38 header bits.

Limits: the indices are int32 and ``w`` is counted for ranges below ``2^31``; keep
``|x_j| / delta < 2^30``. Non-finite inputs follow the record's policy
(:class:`~ratedist.compressors.base.Compressor`: ``Q(x)_j = x_j`` there; bits unspecified).

Random bits: ``rng_bits = 32`` draws ``b_j`` exactly to the float resolution; 8 or 16 bits round
``P(b_j = 1)`` to a multiple of ``2^-rng_bits`` (error ``eps <= 2^-(rng_bits+1)``,
:func:`~ratedist.compressors._kernels.bernoulli`): the instance is then declared biased, and its
per-coordinate MSE ``delta^2 (r(1 − r) + eps (1 − 2r)) <= delta^2 (1/4 + eps^2)``.

References:
    Chen, Shen, Huang, Liu, "Quantized Adam with Error Feedback", arXiv 2004.14180 (the
    server broadcasts weights rounded to a grid; convergence to a neighbourhood whose size
    depends on the resolution).
    Gupta, Agrawal, Gopalakrishnan, Narayanan, "Deep Learning with Limited Numerical
    Precision", arXiv 1502.02551 (stochastic rounding to a fixed-point grid).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ratedist._validation import check_positive
from ratedist.compressors import _kernels, _symbols
from ratedist.compressors._common import (
    bit_width,
    check_key,
    check_rng_bits,
    check_rounding,
    check_vector,
    make_info,
)
from ratedist.compressors.base import Compressor, register
from ratedist.compressors.dense import _stateless

#: Width of the sent offset ``min_j i_j`` (an int32).
OFFSET_BITS = 32
#: Width of the sent index width ``w`` in ``0..32``: ``ceil(log2 33)``.
WIDTH_BITS = (OFFSET_BITS).bit_length()
#: Header of every call: offset and width.
HEADER_BITS = OFFSET_BITS + WIDTH_BITS


def _rng_eps(rounding: str, rng_bits: int) -> float:
    """Largest error of ``P(round up)`` (0 for deterministic or 32-bit rounding)."""
    if rounding == "deterministic" or rng_bits == 32:
        return 0.0
    return 2.0 ** -(rng_bits + 1)


def _grid_abs_mse(
    d: int, *, delta: float, rounding: str = "stochastic", rng_bits: int = 32, **_: Any
) -> float:
    """``d delta^2 (1/4 + eps^2)``: the maximum over ``r`` of the per-coordinate MSE.

    Stochastic: ``max_r [r(1 − r) + eps (1 − 2r)] = 1/4 + eps^2`` at ``r = 1/2 − eps``
    (``eps = 0`` at 32 RNG bits). Deterministic: ``(delta/2)^2`` pathwise.
    """
    return d * delta**2 * (0.25 + _rng_eps(rounding, rng_bits) ** 2)


def _round_stochastic(x: Any, u: Any, delta: Any) -> tuple[Any, Any]:
    """``(x_hat, i)``: ``i = k + (u < y - k)``, ``k = floor(y)``, ``y = x (1/delta)`` (``u``
    uniform on [0, 1): ``P(i = k + 1) = y - k``), ``x_hat = delta i``."""
    y = x * (1 / delta)
    k = jnp.floor(y)
    i = k + (u < y - k).astype(x.dtype)
    return delta * i, i


def _round_nearest(x: Any, u: Any, delta: Any) -> tuple[Any, Any]:
    """``(x_hat, i)``: ``i = round(x (1/delta))`` (ties to even), ``x_hat = delta i``."""
    i = jnp.round(x * (1 / delta))
    return delta * i, i


@register(
    "grid",
    unbiased=True,
    deterministic=None,  # depends on ``rounding``; see the instance facts
    abs_mse=_grid_abs_mse,
    rd_sweep=[{"delta": 1.0}, {"delta": 0.5}, {"delta": 0.25}],
    examples=[{"delta": 0.5}, {"delta": 0.25, "rounding": "deterministic"}],
)
def grid(delta: float, rounding: str = "stochastic", rng_bits: int = 32) -> Compressor:
    """Round every coordinate to the grid ``delta * Z`` (see the module docstring).

    Args:
        delta: the grid resolution ``Delta > 0`` (absolute: in the units of ``x``).
        rounding: ``"stochastic"`` (unbiased, ``Var = r (1 − r) delta^2`` per coordinate) or
            ``"deterministic"`` (nearest grid point, ties to even).
        rng_bits: random bits per coordinate for stochastic rounding (32 = exact; 8 or 16:
            declared biased, see the module docstring).

    Returns:
        A :class:`Compressor`. Facts: ``unbiased`` for stochastic rounding at 32 RNG bits,
        ``deterministic`` for nearest rounding, no omega or alpha, ``abs_mse(d) = d delta^2
        (1/4 + eps^2)``.

    Raises:
        ValueError: ``delta`` not a finite number > 0, ``rounding`` not one of
            ``"stochastic"``/``"deterministic"``, ``rng_bits`` not 8, 16 or 32.

    References:
        arXiv 2004.14180 (weight quantization with stochastic rounding to a grid).
    """
    delta = check_positive("delta", delta)
    rounding = check_rounding(rounding)
    rng_bits = check_rng_bits(rng_bits)
    stochastic = rounding == "stochastic"

    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        d = x.shape[0]
        if stochastic:
            key = check_key(key, "grid")
        x_hat, ent, lo, hi = _symbols.integer_round(
            x,
            key,
            delta,
            _round_stochastic if stochastic else _round_nearest,
            mode=_symbols.GRID_STOCHASTIC if stochastic else _symbols.GRID_NEAREST,
            rng_bits=rng_bits,
        )
        width = bit_width(hi - lo)
        return x_hat, state, make_info(d * width, 0, HEADER_BITS, ent + HEADER_BITS)

    params = {"delta": delta, "rounding": rounding, "rng_bits": rng_bits}
    return _stateless(
        "grid",
        params,
        _kernels.propagates_nonfinite(update),
        unbiased=stochastic and rng_bits == 32,
        deterministic=not stochastic,
    )
