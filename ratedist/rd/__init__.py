"""Shannon theory and operational rate–distortion points."""

from ratedist.rd.blahut import BlahutArimoto, blahut_arimoto, grid_probabilities
from ratedist.rd.closed_forms import CLOSED_FORMS, ClosedForm
from ratedist.rd.operational import (
    DEFAULT_PARAMS,
    RDPoint,
    closed_form,
    closed_form_point,
    default_specs,
    monte_carlo_point,
    rd_point,
)
from ratedist.rd.shannon import (
    gap_to_shannon,
    gaussian_distortion,
    gaussian_rate,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)
from ratedist.rd.waterfilling import WaterFilling, reverse_water_filling

__all__ = [
    "CLOSED_FORMS",
    "DEFAULT_PARAMS",
    "BlahutArimoto",
    "ClosedForm",
    "RDPoint",
    "WaterFilling",
    "blahut_arimoto",
    "closed_form",
    "closed_form_point",
    "default_specs",
    "gap_to_shannon",
    "gaussian_distortion",
    "gaussian_rate",
    "grid_probabilities",
    "monte_carlo_point",
    "rd_point",
    "reverse_water_filling",
    "shannon_lower_bound_distortion",
    "shannon_lower_bound_rate",
]
