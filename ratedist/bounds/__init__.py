"""Convergence theorems as pure functions of named constants.

Every bound returns a :class:`SublinearBound` (``transient/T + floor`` for the average of
``E||∇f(x^t)||^2``, or of ``E f(x^t) − f*`` in the convex case: see its ``quantity``), a
:class:`LinearBound` (``scale * rate**T``, PL case) or a :class:`DiminishingStepBound`
(``gamma_t = gamma0/sqrt(t + offset)``) that carries its step size, the theorem it comes from
and its assumptions, evaluates vectorised over ``T`` and inverts itself (``iterations_to(eps)``,
``bits_per_worker_to(eps, bits_per_iteration)``). Derivations: :mod:`ratedist.symbolic.descent` and
``docs/theory/bounds.md``.
"""

from ratedist.bounds.constants import (
    Estimate,
    declared_alpha,
    declared_omega,
    measure_alpha,
    measure_omega,
)
from ratedist.bounds.core import DiminishingStepBound, LinearBound, SublinearBound, step_sums
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

__all__ = [
    "THREE_PC",
    "DiminishingStepBound",
    "Estimate",
    "LinearBound",
    "SublinearBound",
    "ThreePCConstants",
    "best_step_size",
    "declared_alpha",
    "declared_omega",
    "lyapunov",
    "lyapunov_slack",
    "m1",
    "m2",
    "marina_bound",
    "measure_alpha",
    "measure_omega",
    "sgd_biased_bound",
    "sgd_relative_bound",
    "sgd_step_size",
    "sgd_unbiased_bound",
    "step_sums",
    "three_pc_bound",
    "three_pc_constants",
    "three_pc_pl_bound",
    "three_pc_step_size",
    "three_pc_step_size_exact",
    "tnqsgd_bound",
    "tnqsgd_bound_for_design",
]
