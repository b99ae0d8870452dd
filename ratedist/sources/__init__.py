"""Gradient-coordinate sources (numpy/scipy float64; ``sample`` in JAX)."""

from ratedist.sources.base import AbstractSource
from ratedist.sources.classic import Gaussian, Laplace
from ratedist.sources.empirical import Empirical, silverman_bandwidth
from ratedist.sources.heavy import GeneralizedGaussian, PowerLaw, StudentT
from ratedist.sources.numeric import PdfSource
from ratedist.sources.registry import SOURCES, make_source

__all__ = [
    "SOURCES",
    "AbstractSource",
    "Empirical",
    "Gaussian",
    "GeneralizedGaussian",
    "Laplace",
    "PdfSource",
    "PowerLaw",
    "StudentT",
    "make_source",
    "silverman_bandwidth",
]
