"""Gradient-coordinate sources (numpy/scipy float64; ``sample`` in JAX)."""

from ratedist.sources.base import AbstractSource
from ratedist.sources.classic import Gaussian, Laplace

__all__ = ["AbstractSource", "Gaussian", "Laplace"]
