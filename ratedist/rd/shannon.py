"""Shannon rate–distortion functions; defined in :mod:`ratedist.infotheory.shannon`.

This path is kept for existing imports. Inside the package, import from
:mod:`ratedist.infotheory` (below the quantizers) so that no module below :mod:`ratedist.rd`
has to load it.
"""

from ratedist.infotheory.shannon import (
    gap_to_shannon,
    gaussian_distortion,
    gaussian_rate,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)

__all__ = [
    "gap_to_shannon",
    "gaussian_distortion",
    "gaussian_rate",
    "shannon_lower_bound_distortion",
    "shannon_lower_bound_rate",
]
