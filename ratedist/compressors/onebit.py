"""Stochastic unbiased 1-bit quantization to ``±R`` (stochastic sign).

``Q(v)_j = +R`` with probability ``(1 + v_j/R)/2`` and ``−R`` otherwise, for ``|v_j| <= R``:

    E Q(v)_j = R (1 + v_j/R)/2 − R (1 − v_j/R)/2 = v_j,
    E (Q(v)_j − v_j)^2 = E Q(v)_j^2 − v_j^2 = R^2 − v_j^2,
    E ||Q(v) − v||^2 = d R^2 − ||v||^2                                   (|v_j| <= R for all j)

(derived in sympy in :mod:`ratedist.symbolic.onebit`). The deterministic 1-bit encoders are
``sign`` and ``scaled-sign`` (:mod:`ratedist.compressors.dense`).

Choices of ``R`` (``scale``):

=========  ====================  ==========  ===================================================
scale      R                     side_bits   variance
=========  ====================  ==========  ===================================================
bound      a known bound (param)  0          ``d R^2 − ||v||^2`` if ``||v||_inf <= R`` (biased
                                             beyond: the probabilities are clipped to [0, 1])
l2         ``||v||_2`` (sent)     float_bits  ``(d − 1) ||v||^2``: omega = d − 1, attained
linf       ``||v||_inf`` (sent)   float_bits  ``d ||v||_inf^2 − ||v||^2 <= (d − 1)||v||^2``:
                                             omega = d − 1, attained by 1-sparse or flat ``|v|``
=========  ====================  ==========  ===================================================

Bits: ``value_bits = d`` (one bit per coordinate, no side information with a known bound),
``side_bits`` as above, ``entropy_bits = d H(signs) + side_bits`` (empirical entropy of the
signs sent).

References:
    Jin, Huang, He, Dai, Wu, "Stochastic-Sign SGD for Federated Learning with Theoretical
    Guarantees", arXiv 2002.10940 (the stochastic sign with a bound ``B``).
    1-bit GC-DL, arXiv 2403.14716 (1-bit messages of coded gradients with stragglers).
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_choice, check_positive
from ratedist.compressors import _kernels
from ratedist.compressors._common import (
    binary_entropy_bits,
    check_float_bits,
    check_key,
    check_rng_bits,
    check_vector,
    make_info,
)
from ratedist.compressors.base import COMPRESSORS, FLOAT_BITS, Compressor, Facts, register

SCALES = ("bound", "l2", "linf")
#: the two levels of the rounding (``Q(v) = R * level``)
PM1 = np.array([-1.0, 1.0])


class OneBitState(NamedTuple):
    """State of the (stateless) stochastic sign: an empty pytree."""


def _omega(d: int, scale: str = "l2", **_: Any) -> float:
    # l2: d||v||^2 − ||v||^2; linf: d||v||_inf^2 − ||v||^2 <= (d − 1)||v||^2 (||v||_inf <= ||v||_2)
    return float(d - 1)


def _scale_value(x: Any, scale: str, bound: float | None) -> Any:
    """``R`` of one call."""
    if scale == "l2":
        return jnp.sqrt(jnp.sum(x * x))
    if scale == "linf":
        return jnp.max(jnp.abs(x))
    return jnp.asarray(bound, x.dtype)


@register(
    "stochastic-sign",
    unbiased=True,
    deterministic=False,
    omega=_omega,
    examples=[{"scale": "l2"}, {"scale": "linf"}, {"scale": "bound", "bound": 4.0}],
)
def stochastic_sign(
    scale: str = "l2",
    bound: float | None = None,
    float_bits: int = FLOAT_BITS,
    rng_bits: int = 32,
) -> Compressor:
    """Unbiased stochastic 1-bit quantizer ``Q(v)_j = ±R``, ``P(+R) = (1 + v_j/R)/2``.

    Unbiased with ``E||Q(v) − v||^2 = d R^2 − ||v||^2`` whenever ``||v||_inf <= R`` (always for
    ``scale="l2"``/``"linf"``; for ``scale="bound"`` only inside the box, so that instance is
    declared biased and has no omega). ``omega = d − 1`` for the sent norms. A zero vector
    (``R = 0``) gives zeros; a non-finite coordinate gives a non-finite output.

    Args:
        scale: ``"bound"`` (``R = bound``, exactly ``d`` bits), ``"l2"`` (``R = ||v||_2``) or
            ``"linf"`` (``R = ||v||_inf``), the norm sent as ``float_bits`` side bits.
        bound: the known bound ``R > 0`` (only with ``scale="bound"``).
        float_bits: width of the sent norm.
        rng_bits: random bits per coordinate for the Bernoulli draws (8 or 16: approximately
            unbiased only, declared biased).

    Raises:
        ValueError: an unknown scale, ``bound`` missing or ``<= 0`` with ``scale="bound"``,
            ``bound`` given with another scale, bad ``float_bits``/``rng_bits``.
    """
    scale = check_choice("scale", scale, SCALES)
    if scale == "bound":
        if bound is None:
            raise ValueError("bound must be given (a number R > 0) with scale='bound', got None")
        bound = check_positive("bound", bound)
    elif bound is not None:
        raise ValueError(
            f"bound must be None with scale={scale!r} (R is the sent norm), got {bound!r}; "
            "use scale='bound' for a known bound"
        )
    float_bits = check_float_bits(float_bits)
    rng_bits = check_rng_bits(rng_bits)
    side = 0 if scale == "bound" else float_bits

    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        key = check_key(key, "stochastic-sign")
        d = x.shape[0]
        R = _scale_value(x, scale, bound)
        # the two-level stochastic rounding of v / R onto {-1, 1}: P(+1) = (v/R + 1) / 2
        # (= (1 + v/R) / 2 in IEEE arithmetic), v/R clipped to [-1, 1]; x_hat = R * (+-1)
        x_hat, counts = _kernels.signed(x, key, R, PM1, rng_bits)
        ent = binary_entropy_bits(counts[1], d) + side
        return x_hat, state, make_info(d, 0, side, ent)

    params = {"scale": scale, "bound": bound, "float_bits": float_bits, "rng_bits": rng_bits}
    exact = scale != "bound" and rng_bits == 32
    facts = COMPRESSORS.facts("stochastic-sign")
    return Compressor(
        lambda x: OneBitState(),
        _kernels.propagates_nonfinite(update),
        Facts(
            name="stochastic-sign",
            params=params,
            unbiased=exact,
            deterministic=False,
            omega=partial(facts["omega"], scale=scale) if exact else None,
        ),
    )
