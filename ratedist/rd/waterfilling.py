"""Reverse water-filling; defined in :mod:`ratedist.infotheory.waterfilling` (path kept)."""

from ratedist.infotheory.waterfilling import WaterFilling, reverse_water_filling

__all__ = ["WaterFilling", "reverse_water_filling"]
