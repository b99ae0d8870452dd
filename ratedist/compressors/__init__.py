"""Run-time JAX compressors with exact bit accounting.

Build one with a factory (``top_k(k=10)``) or from a string (``make("top-k:k=10")``); every
factory is enrolled in :data:`COMPRESSORS` with its static facts (``unbiased``,
``deterministic``, ``params``, ``examples``, ``omega``/``alpha``).
"""

from ratedist.compressors.base import (
    COMPRESSORS,
    FLOAT_BITS,
    CompressInfo,
    Compressor,
    Facts,
    register,
)
from ratedist.compressors.dense import (
    identity,
    natural,
    nuqsgd,
    qsgd,
    scaled_sign,
    sign,
    terngrad,
)
from ratedist.compressors.feedback import ErrorFeedbackState, error_feedback
from ratedist.compressors.grid import grid
from ratedist.compressors.lattice import LatticeState, lattice
from ratedist.compressors.onebit import stochastic_sign
from ratedist.compressors.scalar import scalar
from ratedist.compressors.sparse import (
    perm_k,
    rand_k,
    rand_k_unbiased,
    threshold,
    top_k,
    top_k_sign,
)
from ratedist.compressors.spec import make, parse_spec

__all__ = [
    "COMPRESSORS",
    "FLOAT_BITS",
    "CompressInfo",
    "Compressor",
    "ErrorFeedbackState",
    "Facts",
    "LatticeState",
    "error_feedback",
    "grid",
    "identity",
    "lattice",
    "make",
    "natural",
    "nuqsgd",
    "parse_spec",
    "perm_k",
    "qsgd",
    "rand_k",
    "rand_k_unbiased",
    "register",
    "scalar",
    "scaled_sign",
    "sign",
    "stochastic_sign",
    "terngrad",
    "threshold",
    "top_k",
    "top_k_sign",
]
