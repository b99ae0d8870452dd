"""JAX simulator of compressed distributed optimisation (problems, algorithms, engines, runner).

from ratedist.sim import run, tridiagonal_quadratic, ef21
from ratedist.compressors import make
trace = run(ef21(make("top-k:k=5")), tridiagonal_quadratic(10, 100), steps=1000,
            key=jax.random.key(0))
trace.grad_norm_sq, trace.bits.container, trace.violations
"""

from ratedist.sim.algorithms import (
    ALGORITHMS,
    Algorithm,
    Message,
    Shared,
    clag,
    compressed_sgd,
    ef14,
    ef21,
    gd,
    lag,
    marina,
    tpc_v1,
    tpc_v2,
    tpc_v3,
    tpc_v4,
    tpc_v5,
)
from ratedist.sim.problems import (
    PROBLEMS,
    Problem,
    least_squares,
    load_libsvm,
    logistic_breast_cancer,
    logistic_libsvm,
    logistic_nonconvex,
    make_problem,
    mlp,
    quadratic,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
)
from ratedist.sim.runner import Bits, Stepper, Trace, make_stepper, run, theory_gamma
from ratedist.sim.store import ResultStore, config_hash, load_trace, save_trace
from ratedist.sim.sweep import expand_sweep, load_sweep, make_algorithm, run_config, run_sweep

__all__ = [
    "ALGORITHMS",
    "PROBLEMS",
    "Algorithm",
    "Bits",
    "Message",
    "Problem",
    "ResultStore",
    "Shared",
    "Stepper",
    "Trace",
    "clag",
    "compressed_sgd",
    "config_hash",
    "ef14",
    "ef21",
    "expand_sweep",
    "gd",
    "lag",
    "least_squares",
    "load_libsvm",
    "load_sweep",
    "load_trace",
    "logistic_breast_cancer",
    "logistic_libsvm",
    "logistic_nonconvex",
    "make_algorithm",
    "make_problem",
    "make_stepper",
    "marina",
    "mlp",
    "quadratic",
    "run",
    "run_config",
    "run_sweep",
    "save_trace",
    "theory_gamma",
    "tpc_v1",
    "tpc_v2",
    "tpc_v3",
    "tpc_v4",
    "tpc_v5",
    "tridiagonal_linear_terms",
    "tridiagonal_matrices",
    "tridiagonal_quadratic",
]
