"""Quantizer design: quantizers as data, and the designers that build them.

Importing this package registers every design method in :data:`DESIGNS`.
"""

from ratedist.quantizers.companded import companded, panter_dite_constant
from ratedist.quantizers.core import ScalarQuantizer, Solution
from ratedist.quantizers.ecsq import ecsq, generalized_lloyd
from ratedist.quantizers.evaluate import Evaluation, design, evaluate
from ratedist.quantizers.lloyd_max import lloyd, lloyd_max
from ratedist.quantizers.registry import DESIGNS
from ratedist.quantizers.truncated import TruncationDesign, optimal_truncation, tnq, tuq
from ratedist.quantizers.uniform import optimal_uniform
from ratedist.quantizers.variance_optimal import variance_optimal

__all__ = [
    "DESIGNS",
    "Evaluation",
    "ScalarQuantizer",
    "Solution",
    "TruncationDesign",
    "companded",
    "design",
    "ecsq",
    "evaluate",
    "generalized_lloyd",
    "lloyd",
    "lloyd_max",
    "optimal_truncation",
    "optimal_uniform",
    "panter_dite_constant",
    "tnq",
    "tuq",
    "variance_optimal",
]
