"""Any designed :class:`~ratedist.quantizers.ScalarQuantizer` as a run-time compressor."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_choice, check_int
from ratedist.compressors import _kernels
from ratedist.compressors._common import (
    ceil_log2,
    check_float_bits,
    check_key,
    check_rng_bits,
    check_vector,
    counts_entropy_bits,
    make_info,
)
from ratedist.compressors.base import FLOAT_BITS, Compressor, register
from ratedist.compressors.dense import _stateless
from ratedist.quantizers.core import ScalarQuantizer
from ratedist.quantizers.registry import DESIGNS
from ratedist.sources.classic import Gaussian

_EXAMPLE_Q4 = ScalarQuantizer.from_levels([-1.5, -0.5, 0.5, 1.5])
_EXAMPLE_Q3 = ScalarQuantizer.from_levels([-2.0, 0.0, 2.0])


def _design(method: Any, bits: Any) -> tuple[ScalarQuantizer, str]:
    """Design ``2**bits`` levels for a unit Gaussian with ``DESIGNS[method]``."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {method!r}")
    if method not in DESIGNS:
        known = ", ".join(DESIGNS.names()) or "none registered yet"
        raise ValueError(f"method {method!r} is not a known quantizer design; known: {known}")
    bits = check_int("bits", bits, min_value=1, max_value=16)
    sol = DESIGNS.get(method)(Gaussian(1.0), 2**bits)
    q = sol.value if isinstance(sol.value, ScalarQuantizer) else sol.value.quantizer
    return q, DESIGNS.facts(method).get("rounding", "deterministic")


@register(
    "scalar",
    unbiased=False,
    deterministic=None,  # depends on ``rounding``; see the instance facts
    rd_sweep=[
        {"method": "lloyd-max", "bits": 1},
        {"method": "lloyd-max", "bits": 2},
        {"method": "lloyd-max", "bits": 3},
        {"method": "lloyd-max", "bits": 4},
    ],
    examples=[
        {"quantizer": _EXAMPLE_Q4},
        {"quantizer": _EXAMPLE_Q4, "rounding": "stochastic"},
        {"quantizer": _EXAMPLE_Q3, "rounding": "stochastic", "normalize": "none"},
    ],
)
def scalar(
    quantizer: ScalarQuantizer | None = None,
    rounding: str | None = None,
    normalize: str = "rms",
    float_bits: int = FLOAT_BITS,
    *,
    method: str | None = None,
    bits: int | None = None,
    rng_bits: int = 32,
) -> Compressor:
    """Apply a scalar quantizer designed for a unit-variance source to every coordinate.

    With ``normalize="rms"`` the quantizer acts on ``x / sigma_hat``, ``sigma_hat =
    ||x||_2 / sqrt(d)``, which is sent as ``float_bits`` side information, and the output is
    ``sigma_hat * Q(x / sigma_hat)``; with ``normalize="none"`` it acts on ``x`` directly and
    no side information is sent. Deterministic rounding maps to the nearest cell; stochastic
    rounding clips to ``[levels[0], levels[-1]]`` and rounds unbiasedly between neighbouring
    levels (truncation + stochastic rounding, the TNQ/TUQ scheme of arXiv 2402.01160), so the
    compressor is biased where x leaves that range.

    Bits: ``ceil(log2 n_levels)`` per coordinate in the container; the entropy layer codes the
    level indices at their empirical entropy (plus the side information).

    Args:
        quantizer: the quantizer (levels for a unit-variance source when ``normalize="rms"``).
        rounding: ``"deterministic"`` or ``"stochastic"``; None: deterministic for a given
            quantizer, the design's ``rounding`` fact for ``method``.
        normalize: ``"rms"`` or ``"none"``.
        float_bits: width of the sent scale.
        method: instead of ``quantizer``: a name in ``ratedist.quantizers.DESIGNS``; the
            quantizer is designed for a unit Gaussian with ``2**bits`` levels.
        bits: bits per coordinate for ``method``.
        rng_bits: random bits per coordinate for stochastic rounding.

    Returns:
        A :class:`Compressor` (biased; no omega/alpha declared: both depend on the design).

    Raises:
        ValueError: if neither or both of ``quantizer`` and ``method`` are given, or on bad
            options.
    """
    if quantizer is None and method is None:
        raise ValueError("scalar needs quantizer= or method= (with bits=), got neither")
    if quantizer is not None and (method is not None or bits is not None):
        raise ValueError("give either quantizer= or method=/bits= to scalar, not both")
    if quantizer is None:
        if bits is None:
            raise ValueError(f"scalar with method={method!r} needs bits=")
        quantizer, design_rounding = _design(method, bits)
        rounding = design_rounding if rounding is None else rounding
    elif not isinstance(quantizer, ScalarQuantizer):
        raise TypeError(f"quantizer must be a ScalarQuantizer, got {type(quantizer).__name__}")
    rounding = check_choice(
        "rounding",
        "deterministic" if rounding is None else rounding,
        ("deterministic", "stochastic"),
    )
    normalize = check_choice("normalize", normalize, ("rms", "none"))
    float_bits = check_float_bits(float_bits)
    rng_bits = check_rng_bits(rng_bits)
    levels = np.asarray(quantizer.levels, np.float64)
    thresholds = np.asarray(quantizer.thresholds, np.float64)
    n = levels.size
    side = float_bits if normalize == "rms" else 0
    stochastic = rounding == "stochastic"

    @_kernels.propagates_nonfinite
    def update(x: Any, state: Any, *, key: Any = None) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        d = x.shape[0]
        if stochastic:
            key = check_key(key, "scalar")
        sigma = jnp.sqrt(jnp.sum(x * x) / d) if normalize == "rms" else None
        if stochastic:
            x_hat, counts = _kernels.signed(x, key, sigma, levels, rng_bits)
        else:
            x_hat, counts = _kernels.nearest(x, sigma, thresholds, levels)
        ent = counts_entropy_bits(counts, d) + side
        return x_hat, state, make_info(d * ceil_log2(n), 0, side, ent)

    params = {
        "levels": [float(v) for v in levels],
        "thresholds": [float(v) for v in thresholds],
        "rounding": rounding,
        "normalize": normalize,
        "float_bits": float_bits,
        "rng_bits": rng_bits,
    }
    if method is not None:
        params.update(method=method, bits=bits)
    return _stateless("scalar", params, update, deterministic=not stochastic)
