"""ratedist: rate–distortion analysis of gradient compression in distributed SGD.

The light, always-needed names are re-exported here; the heavier subpackages
(:mod:`ratedist.rd`, :mod:`ratedist.sim`, :mod:`ratedist.bounds`, :mod:`ratedist.validate`,
:mod:`ratedist.symbolic`, :mod:`ratedist.plotting`) load on first attribute access::

    import ratedist as rd
    sol = rd.design("lloyd-max", rd.Gaussian(), bits=3)
    comp = rd.make_compressor("top-k:k=10")
    trace = rd.sim.run(...)
"""

import importlib
from typing import Any

from ratedist import compressors, quantizers, sources
from ratedist.compressors import COMPRESSORS, CompressInfo, Compressor, error_feedback
from ratedist.compressors import make as make_compressor
from ratedist.infotheory import gap_to_shannon, gaussian_distortion, gaussian_rate
from ratedist.quantizers import (
    DESIGNS,
    ScalarQuantizer,
    Solution,
    design,
    evaluate,
    lloyd_max,
    optimal_truncation,
    tnq,
    tuq,
)
from ratedist.sources import (
    Empirical,
    Gaussian,
    GeneralizedGaussian,
    Laplace,
    PdfSource,
    PowerLaw,
    StudentT,
    make_source,
)

__version__ = "0.1.0"

# The lazy names below are for import time only (``ratedist.rd`` alone loads scipy.stats and
# the closed forms, about 1 s; sim, validate, symbolic and plotting load sympy, matplotlib
# and the simulator). They hide no import cycle: every subpackage imports its dependencies
# at module level, and tests/test_imports.py checks the graph.
_LAZY = ("rd", "sim", "bounds", "validate", "symbolic", "plotting")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"ratedist.{name}")
    if name == "rd_point":
        return importlib.import_module("ratedist.rd").rd_point
    raise AttributeError(f"module 'ratedist' has no attribute {name!r}")


__all__ = [
    "COMPRESSORS",
    "DESIGNS",
    "CompressInfo",
    "Compressor",
    "Empirical",
    "Gaussian",
    "GeneralizedGaussian",
    "Laplace",
    "PdfSource",
    "PowerLaw",
    "ScalarQuantizer",
    "Solution",
    "StudentT",
    "__version__",
    "bounds",
    "compressors",
    "design",
    "error_feedback",
    "evaluate",
    "gap_to_shannon",
    "gaussian_distortion",
    "gaussian_rate",
    "lloyd_max",
    "make_compressor",
    "make_source",
    "optimal_truncation",
    "plotting",
    "quantizers",
    "rd",
    "rd_point",
    "sim",
    "sources",
    "symbolic",
    "tnq",
    "tuq",
    "validate",
]
