"""Shannon theory of memoryless sources: the bottom layer of the rate–distortion stack.

Gaussian ``D(R)``/``R(D)``, the Shannon lower bound, reverse water-filling and
Blahut–Arimoto depend only on :mod:`ratedist.sources` and numpy/scipy, so the quantizer
designers (which report gaps to Shannon) and :mod:`ratedist.rd` (operational points of the
compressors, above both) can import them without a cycle. :mod:`ratedist.rd` re-exports every
name here; import from there in user code.
"""

from ratedist.infotheory.blahut import BlahutArimoto, blahut_arimoto, grid_probabilities
from ratedist.infotheory.shannon import (
    gap_to_shannon,
    gaussian_distortion,
    gaussian_rate,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)
from ratedist.infotheory.waterfilling import WaterFilling, reverse_water_filling

__all__ = [
    "BlahutArimoto",
    "WaterFilling",
    "blahut_arimoto",
    "gap_to_shannon",
    "gaussian_distortion",
    "gaussian_rate",
    "grid_probabilities",
    "reverse_water_filling",
    "shannon_lower_bound_distortion",
    "shannon_lower_bound_rate",
]
