"""Blahut–Arimoto; defined in :mod:`ratedist.infotheory.blahut` (this path kept for imports)."""

from ratedist.infotheory.blahut import BlahutArimoto, blahut_arimoto, grid_probabilities

__all__ = ["BlahutArimoto", "blahut_arimoto", "grid_probabilities"]
