"""Registry of quantizer design methods.

Every designer has the signature ``designer(source, n_levels, **options) -> Solution`` whose
``value`` is a :class:`~ratedist.quantizers.core.ScalarQuantizer` or a record with a
``quantizer`` attribute. Facts: ``rounding`` (``"deterministic"`` or ``"stochastic"``: how the
design is meant to be applied and how its ``mse`` is evaluated) and ``truncated`` (bool).
"""

from __future__ import annotations

from collections.abc import Callable

from ratedist._registry import Registry
from ratedist.quantizers.core import Solution

DESIGNS: Registry[Callable[..., Solution]] = Registry("design method")
