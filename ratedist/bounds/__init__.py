"""Convergence theorems as pure functions of named constants.

Every bound returns a :class:`SublinearBound` (``transient/T + floor`` for the average of
``E||∇f(x^t)||^2``) or a :class:`LinearBound` (``scale * rate**T``, PL case) that carries its
step size, the theorem it comes from and its assumptions, evaluates vectorised over ``T`` and
inverts itself (``iterations_to(eps)``, ``bits_per_worker_to(eps, bits_per_iteration)``).
Derivations: :mod:`ratedist.symbolic.descent` and ``docs/theory/bounds.md``.

:mod:`ratedist.bounds.adam`: quantized distributed Adam with error feedback (both modes; a
stationary-point bound with gradient quantization, a ``Delta_w^2`` neighbourhood with weight
quantization; ``docs/theory/quantized_adam.md``).

:mod:`ratedist.bounds.weights`: the exact error floor of weight quantization on a quadratic
(``E||∇f(Q(x*))||^2``, ``docs/theory/weight_quantization.md``) and how far a GD run's plateau
can sit from it.
"""

from ratedist.bounds.adam import (
    ADAM_MODES,
    QuantizedAdamConstants,
    adam_direction_bound,
    adam_direction_ratio,
    adam_step_range,
    ef_message_bound,
    ef_residual_bound,
    quadratic_weight_excess,
    quantized_adam_bound,
    quantized_adam_constants,
    smooth_weight_gradient_bound,
)
from ratedist.bounds.constants import (
    Estimate,
    declared_alpha,
    declared_omega,
    measure_alpha,
    measure_omega,
)
from ratedist.bounds.core import LinearBound, SublinearBound
from ratedist.bounds.sgd import (
    best_step_size,
    sgd_biased_bound,
    sgd_relative_bound,
    sgd_step_size,
    sgd_unbiased_bound,
    tnqsgd_bound,
    tnqsgd_bound_for_design,
)
from ratedist.bounds.three_pc import (
    THREE_PC,
    ThreePCConstants,
    lyapunov,
    lyapunov_slack,
    m1,
    m2,
    marina_bound,
    three_pc_bound,
    three_pc_constants,
    three_pc_pl_bound,
    three_pc_step_size,
    three_pc_step_size_exact,
)
from ratedist.bounds.weights import (
    PLATEAU_QUANTITIES,
    PlateauDeviation,
    WeightFloor,
    gd_weight_plateau_deviation,
    grid_rounding_variance,
    weight_quantization_floor,
    weight_quantization_floor_bound,
)

__all__ = [
    "ADAM_MODES",
    "PLATEAU_QUANTITIES",
    "THREE_PC",
    "Estimate",
    "LinearBound",
    "PlateauDeviation",
    "QuantizedAdamConstants",
    "SublinearBound",
    "ThreePCConstants",
    "WeightFloor",
    "adam_direction_bound",
    "adam_direction_ratio",
    "adam_step_range",
    "best_step_size",
    "declared_alpha",
    "declared_omega",
    "ef_message_bound",
    "ef_residual_bound",
    "gd_weight_plateau_deviation",
    "grid_rounding_variance",
    "lyapunov",
    "lyapunov_slack",
    "m1",
    "m2",
    "marina_bound",
    "measure_alpha",
    "measure_omega",
    "quadratic_weight_excess",
    "quantized_adam_bound",
    "quantized_adam_constants",
    "sgd_biased_bound",
    "sgd_relative_bound",
    "sgd_step_size",
    "sgd_unbiased_bound",
    "smooth_weight_gradient_bound",
    "three_pc_bound",
    "three_pc_constants",
    "three_pc_pl_bound",
    "three_pc_step_size",
    "three_pc_step_size_exact",
    "tnqsgd_bound",
    "tnqsgd_bound_for_design",
    "weight_quantization_floor",
    "weight_quantization_floor_bound",
]
