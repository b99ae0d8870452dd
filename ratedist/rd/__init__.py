"""Shannon theory and operational rate–distortion points.

The Shannon tools are imported eagerly; the operational layer (closed forms and Monte Carlo
of the compressors) is imported on first use, because it depends on
:mod:`ratedist.compressors` and :mod:`ratedist.quantizers`, which themselves use
:mod:`ratedist.rd.shannon` (an eager import would be circular).
"""

import importlib
from typing import Any

from ratedist.rd.blahut import BlahutArimoto, blahut_arimoto, grid_probabilities
from ratedist.rd.shannon import (
    gap_to_shannon,
    gaussian_distortion,
    gaussian_rate,
    shannon_lower_bound_distortion,
    shannon_lower_bound_rate,
)
from ratedist.rd.waterfilling import WaterFilling, reverse_water_filling

_LAZY = {
    "CLOSED_FORMS": "ratedist.rd.closed_forms",
    "ClosedForm": "ratedist.rd.closed_forms",
    "DEFAULT_PARAMS": "ratedist.rd.operational",
    "RDPoint": "ratedist.rd.operational",
    "closed_form": "ratedist.rd.operational",
    "closed_form_point": "ratedist.rd.operational",
    "default_specs": "ratedist.rd.operational",
    "design_point": "ratedist.rd.operational",
    "monte_carlo_point": "ratedist.rd.operational",
    "rd_point": "ratedist.rd.operational",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ratedist.rd' has no attribute {name!r}")


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
    "design_point",
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
