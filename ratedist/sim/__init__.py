"""JAX simulator of compressed distributed optimisation (problems, algorithms, engines, runner).

from ratedist.sim import run, tridiagonal_quadratic, ef21
from ratedist.compressors import make
trace = run(ef21(make("top-k:k=5")), tridiagonal_quadratic(10, 100), steps=1000,
            key=jax.random.key(0))
trace.grad_norm_sq, trace.bits.container, trace.violations

A round's other stages (who answers, how the server combines and steps, what it broadcasts)
are keyword arguments of ``run`` (:mod:`ratedist.sim.stages`, :mod:`ratedist.sim.round`)::

run(ef21(C), problem, steps=500, key=key, server=optax.adam(1e-2),
    participation=bernoulli_stragglers(0.2))
run(ef21(C), problem, steps=500, key=key, gamma=np.geomspace(1e-3, 1e-1, 16))  # one program
"""

from ratedist.sim.algorithms import (
    ALGORITHMS,
    clag,
    compressed_sgd,
    ef14,
    ef21,
    example_algorithm,
    gd,
    lag,
)
from ratedist.sim.code_moments import (
    CLOSED_FORMS,
    STRAGGLER_LAWS,
    MaskLaw,
    adversarial_mask,
    adversarial_stragglers,
    decoding_moments,
    straggler_masks_of,
)
from ratedist.sim.coded import Coded, PartitionGrads, coded, partitionwise
from ratedist.sim.codes import (
    CODES,
    GradientCode,
    crc,
    frc,
    make_code,
    random_replication,
    uncoded,
)
from ratedist.sim.configs import make_algorithm
from ratedist.sim.gcdl import GC_METHODS, GCMethod, GCSetup, gc_methods, gc_setup
from ratedist.sim.method import Algorithm, Message, Shared
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
from ratedist.sim.round import Round
from ratedist.sim.runner import Stepper, make_round, make_stepper, run, theory_gamma
from ratedist.sim.stages import (
    AGGREGATION,
    DOWNLINKS,
    PARTICIPATION,
    Aggregation,
    Downlink,
    Participation,
    bernoulli_stragglers,
    compressed_updates,
    decode,
    everyone,
    exactly_stragglers,
    identity_downlink,
    majority,
    mean,
    mean_active,
    pattern_stragglers,
    quantized_weights,
)
from ratedist.sim.store import ResultStore, config_hash, load_trace, save_trace
from ratedist.sim.sweep import (
    Shard,
    expand_sweep,
    load_sweep,
    parse_shard,
    run_config,
    run_sweep,
)
from ratedist.sim.tpc import marina, tpc_v1, tpc_v2, tpc_v3, tpc_v4, tpc_v5
from ratedist.sim.trace import Bits, Trace

__all__ = [
    "AGGREGATION",
    "ALGORITHMS",
    "CLOSED_FORMS",
    "CODES",
    "DOWNLINKS",
    "GC_METHODS",
    "PARTICIPATION",
    "PROBLEMS",
    "STRAGGLER_LAWS",
    "Aggregation",
    "Algorithm",
    "Bits",
    "Coded",
    "Downlink",
    "GCMethod",
    "GCSetup",
    "GradientCode",
    "MaskLaw",
    "Message",
    "Participation",
    "PartitionGrads",
    "Problem",
    "ResultStore",
    "Round",
    "Shard",
    "Shared",
    "Stepper",
    "Trace",
    "adversarial_mask",
    "adversarial_stragglers",
    "bernoulli_stragglers",
    "clag",
    "coded",
    "compressed_sgd",
    "compressed_updates",
    "config_hash",
    "crc",
    "decode",
    "decoding_moments",
    "ef14",
    "ef21",
    "everyone",
    "exactly_stragglers",
    "example_algorithm",
    "expand_sweep",
    "frc",
    "gc_methods",
    "gc_setup",
    "gd",
    "identity_downlink",
    "lag",
    "least_squares",
    "load_libsvm",
    "load_sweep",
    "load_trace",
    "logistic_breast_cancer",
    "logistic_libsvm",
    "logistic_nonconvex",
    "majority",
    "make_algorithm",
    "make_code",
    "make_problem",
    "make_round",
    "make_stepper",
    "marina",
    "mean",
    "mean_active",
    "mlp",
    "parse_shard",
    "partitionwise",
    "pattern_stragglers",
    "quadratic",
    "quantized_weights",
    "random_replication",
    "run",
    "run_config",
    "run_sweep",
    "save_trace",
    "straggler_masks_of",
    "theory_gamma",
    "tpc_v1",
    "tpc_v2",
    "tpc_v3",
    "tpc_v4",
    "tpc_v5",
    "tridiagonal_linear_terms",
    "tridiagonal_matrices",
    "tridiagonal_quadratic",
    "uncoded",
]
