"""Run-time JAX compressors with exact bit accounting."""

from ratedist.compressors.base import (
    COMPRESSORS,
    FLOAT_BITS,
    CompressInfo,
    Compressor,
    Facts,
    register,
)

__all__ = ["COMPRESSORS", "FLOAT_BITS", "CompressInfo", "Compressor", "Facts", "register"]
