"""Shannon theory and operational rate–distortion points.

Layering (no cycles, nothing deferred): the Shannon tools live in :mod:`ratedist.infotheory`,
below :mod:`ratedist.quantizers` and :mod:`ratedist.compressors`, and are re-exported here; the
closed forms (:mod:`ratedist.rd.closed_forms`) and the operational points
(:mod:`ratedist.rd.operational`) sit above the quantizers and the compressors and import them.
A closed form registers itself against its compressor's registry name, so the compressors
never import this package.
"""

from ratedist.infotheory import (
    BlahutArimoto,
    WaterFilling,
    blahut_arimoto,
    gap_to_shannon,
    gaussian_distortion,
    gaussian_rate,
    grid_probabilities,
    reverse_water_filling,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)
from ratedist.rd.closed_forms import CLOSED_FORMS, ClosedForm, register_closed_form
from ratedist.rd.operational import (
    DEFAULT_PARAMS,
    RDPoint,
    closed_form,
    closed_form_point,
    curve_specs,
    default_specs,
    design_point,
    monte_carlo_point,
    rd_point,
)

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
    "curve_specs",
    "default_specs",
    "design_point",
    "gap_to_shannon",
    "gaussian_distortion",
    "gaussian_rate",
    "grid_probabilities",
    "monte_carlo_point",
    "rd_point",
    "register_closed_form",
    "reverse_water_filling",
    "shannon_lower_bound_distortion",
    "shannon_lower_bound_rate",
]
