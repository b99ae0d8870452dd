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
from ratedist.sim.runner import Bits, Trace, run, theory_gamma

__all__ = [
    "ALGORITHMS",
    "PROBLEMS",
    "Algorithm",
    "Bits",
    "Message",
    "Problem",
    "Trace",
    "clag",
    "compressed_sgd",
    "ef14",
    "ef21",
    "gd",
    "lag",
    "least_squares",
    "load_libsvm",
    "logistic_breast_cancer",
    "logistic_libsvm",
    "logistic_nonconvex",
    "make_problem",
    "marina",
    "mlp",
    "quadratic",
    "run",
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
