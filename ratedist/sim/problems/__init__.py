"""Optimisation problems for the simulator: ``f(x) = (1/n) sum_i f_i(x)`` split over workers.

A :class:`Problem` is data plus pure JAX functions of ONE worker's data slice:

    problem = tridiagonal_quadratic(n_workers=10, dim=50, seed=0)
    problem.grad_fn(x, data_i)            # exact local gradient (JAX, jit/vmap safe)
    problem.L_minus, problem.L_plus       # smoothness constants computed here (numpy)

``data`` is a pytree whose leaves all have the worker axis first (shape ``(n_workers, ...)``),
so the engines can map or shard it. Every constant carries a label in ``problem.labels`` saying
whether it is exact, a bound, or numerical.

Users' sparse data stay sparse: ``quadratic`` takes a sequence of per-worker
``scipy.sparse`` ``A_i``, ``least_squares``/``logistic_nonconvex`` a ``scipy.sparse`` ``X``, and
``logistic_libsvm`` reads LIBSVM files into CSR; inside JAX they are padded per-worker layouts
(:mod:`ratedist.sim.problems.sparse`) with O(nnz) memory, and their constants come from
Lanczos (exact dense ``eigvalsh`` for small matrices).

Smoothness conventions (arXiv 2202.00998, Assumptions 1-2): ``f`` is ``L_-``-smooth and
``(1/n) sum_i ||grad f_i(x) - grad f_i(y)||^2 <= L_+^2 ||x - y||^2``. Always
``L_- <= L_+ <= sqrt(mean_i L_i^2) = L_plus_upper``.
"""

from ratedist.sim.problems.core import PROBLEMS, Problem, make_problem
from ratedist.sim.problems.datasets import load_libsvm, logistic_breast_cancer, logistic_libsvm
from ratedist.sim.problems.neural import mlp
from ratedist.sim.problems.quadratics import (
    quadratic,
    tridiagonal_linear_terms,
    tridiagonal_matrices,
    tridiagonal_quadratic,
)
from ratedist.sim.problems.regression import least_squares, logistic_nonconvex

__all__ = [
    "PROBLEMS",
    "Problem",
    "least_squares",
    "load_libsvm",
    "logistic_breast_cancer",
    "logistic_libsvm",
    "logistic_nonconvex",
    "make_problem",
    "mlp",
    "quadratic",
    "tridiagonal_linear_terms",
    "tridiagonal_matrices",
    "tridiagonal_quadratic",
]
