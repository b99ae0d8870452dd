"""Quantizer design: quantizers as data, and the designers that build them."""

from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.registry import DESIGNS

__all__ = ["DESIGNS", "ScalarQuantizer", "Solution"]
