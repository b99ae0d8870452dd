"""Symbol sources: compressors whose entropy layer is estimated from symbols pooled over trials.

A compressor reports the entropy layer of ONE call (``CompressInfo.entropy_bits``). Where that
is the plug-in entropy of few samples of a large alphabet (lattice labels: ``d / n`` blocks
per call), the mean over trials is a strongly biased estimate of the entropy of the symbol
law, which is the rate a rate–distortion point should report. A compressor enrolled here
exposes the integer symbols it codes; :func:`ratedist.rd.operational.monte_carlo_stats`
pools them over all Monte Carlo trials and uses the Miller–Madow estimate with its stated
bias bound and jackknife SE (:func:`ratedist.infotheory.entropy_estimate.pooled_entropy_bits`):

    entropy rate = (rows * H_MM(symbols) + side_bits) / d     bits per coordinate.

Entries: ``symbols(x, *, key, **params) -> int array (rows, columns)`` (each column coded
separately, exactly as the compressor's entropy layer does), with the fact
``side_bits(params) -> float``: the bits per call the entropy layer adds (scales).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ratedist._registry import Registry
from ratedist.compressors.lattice import lattice_symbols

#: Compressor name -> its symbol function; fact ``side_bits(params)``.
SYMBOL_SOURCES: Registry[Callable[..., Any]] = Registry("symbol source")

SYMBOL_SOURCES.add("lattice", lattice_symbols, side_bits=lambda params: params["float_bits"])

__all__ = ["SYMBOL_SOURCES"]
