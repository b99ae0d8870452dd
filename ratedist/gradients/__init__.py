"""Real gradients: capture them from small JAX models and fit gradient-coordinate models.

* :mod:`.models` — a registry of small models on scikit-learn's bundled data;
* :mod:`.capture` — train one and record per-layer full-batch and minibatch gradients at
  chosen steps into a resumable on-disk store; :func:`load_capture` reads it back;
* :mod:`.fit` — maximum-likelihood fits of the :mod:`ratedist.sources` families with
  goodness of fit, a Hill tail index and the best model by AIC;
* :mod:`.design` — every quantizer designed from the best-fit model of half the minibatch
  gradients, its predicted MSE against the MSE measured on the other half.

See docs/gradients.md.
"""

from ratedist.gradients.capture import (
    OPTIMIZERS,
    SAMPLE_KINDS,
    Capture,
    CaptureReport,
    StepGradients,
    capture_gradients,
    load_capture,
)
from ratedist.gradients.design import (
    DesignRow,
    LayerDesign,
    design_capture,
    design_layer,
)
from ratedist.gradients.fit import (
    FAMILIES,
    BestFit,
    Fit,
    HillEstimate,
    best_fit,
    fit_capture,
    fit_family,
    hill_estimator,
)
from ratedist.gradients.models import MODELS, GradientModel, register_model

__all__ = [
    "FAMILIES",
    "MODELS",
    "OPTIMIZERS",
    "SAMPLE_KINDS",
    "BestFit",
    "Capture",
    "CaptureReport",
    "DesignRow",
    "Fit",
    "GradientModel",
    "HillEstimate",
    "LayerDesign",
    "StepGradients",
    "best_fit",
    "capture_gradients",
    "design_capture",
    "design_layer",
    "fit_capture",
    "fit_family",
    "hill_estimator",
    "load_capture",
    "register_model",
]
