"""Shannon theory and operational rate–distortion points."""

from ratedist.rd.shannon import (
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
