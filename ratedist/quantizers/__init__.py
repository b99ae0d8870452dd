"""Quantizer design: quantizers as data, and the designers that build them."""

from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS
from ratedist.quantizers.truncated import TruncationDesign, optimal_truncation, tnq, tuq

__all__ = [
    "DESIGNS",
    "ScalarQuantizer",
    "Solution",
    "TruncationDesign",
    "optimal_truncation",
    "tnq",
    "tuq",
]
