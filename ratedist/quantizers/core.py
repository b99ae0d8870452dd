"""Quantizers as data, and the record every solver returns.

A :class:`ScalarQuantizer` is a frozen pytree of two float64 numpy arrays: decision
``thresholds`` (``n - 1``, ascending) and reconstruction ``levels`` (``n``, ascending). The
design zone builds it with numpy/scipy; the simulation zone applies it with ``jax.numpy``:

* ``q(x)``: deterministic nearest-cell mapping ``x -> levels[#{thresholds < x}]``. The index is
  a fused ``sum(x > thresholds)`` rather than ``jnp.searchsorted`` (≈ 6× faster on CPU for
  ≤ 256 levels; see DESIGN.md "Performance facts").
* ``q.stochastic(key, x)``: unbiased stochastic rounding between neighbouring *levels*
  after clipping to ``[levels[0], levels[-1]]``: for ``l_j <= x <= l_{j+1}`` the output is
  ``l_{j+1}`` with probability ``(x - l_j)/(l_{j+1} - l_j)``, so ``E[Q(x)] = x`` inside the
  range and the conditional variance is ``(l_{j+1} - x)(x - l_j)``. Values outside the range
  are truncated first (this is the ``T_alpha`` stage of arXiv 2402.01160).

Non-finite inputs: both maps return ``x_i`` itself where ``x_i`` is NaN or ``±inf`` (never a
level: a quantized NaN would hide a divergence); finite inputs are unaffected bit for bit. The
index maps (:meth:`ScalarQuantizer.index`, :meth:`ScalarQuantizer.stochastic_index`) cannot
say "non-finite": their value there is an unspecified valid index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ratedist._validation import check_increasing


def _trailing(v: jax.Array, ndim: int) -> jax.Array:
    """Shape a 1-D vector to broadcast against ``x[..., None]`` (explicit ranks, no promotion)."""
    return v.reshape((1,) * ndim + (-1,))


def _keep_nonfinite(x: jax.Array, q: jax.Array) -> jax.Array:
    """``q`` with ``x_i`` wherever ``x_i`` is NaN or ``±inf`` (a select: exact elsewhere)."""
    return jnp.where(jnp.isfinite(x), q, x.astype(q.dtype))


class Solution(NamedTuple):
    """How an iterative design ended.

    Attributes:
        value: the designed object (usually a :class:`ScalarQuantizer` or a design record).
        converged: whether the stopping tolerance was met.
        n_iter: iterations (sweeps, Newton steps or function evaluations) used.
        residual: the final value of the stopping criterion.
    """

    value: Any
    converged: bool
    n_iter: int
    residual: float


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class ScalarQuantizer:
    """A scalar quantizer given by ``thresholds`` and ``levels``.

    Args:
        thresholds: ``n - 1`` strictly increasing decision thresholds.
        levels: ``n >= 2`` strictly increasing reconstruction points with
            ``levels[i] <= thresholds[i] <= levels[i + 1]``.

    Raises:
        ValueError: if the arrays are not finite, sorted, of matching sizes and interleaved.
    """

    thresholds: np.ndarray
    levels: np.ndarray

    def __post_init__(self) -> None:
        if isinstance(self.levels, jax.core.Tracer):  # rebuilt inside a transformation
            return
        levels = check_increasing("levels", self.levels)
        if levels.size < 2:
            raise ValueError(f"levels must have at least 2 entries, got {levels.size}")
        thresholds = (
            check_increasing("thresholds", self.thresholds)
            if levels.size > 2
            else (np.asarray(self.thresholds, np.float64).reshape(-1))
        )
        if thresholds.size != levels.size - 1:
            raise ValueError(
                f"thresholds must have len(levels) - 1 = {levels.size - 1} entries, got {thresholds.size}"
            )
        if not np.all(np.isfinite(thresholds)):
            raise ValueError("thresholds must be finite")
        if np.any(thresholds < levels[:-1]) or np.any(thresholds > levels[1:]):
            raise ValueError(
                "thresholds must interleave levels: levels[i] <= thresholds[i] <= levels[i+1]"
            )
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "thresholds", thresholds)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_levels(cls, levels: Any) -> ScalarQuantizer:
        """Nearest-neighbour quantizer: thresholds at the midpoints of ``levels``."""
        levels = check_increasing("levels", levels)
        return cls(0.5 * (levels[1:] + levels[:-1]), levels)

    # ----------------------------------------------------------------- facts
    @property
    def n_levels(self) -> int:
        return int(np.shape(self.levels)[0])

    @property
    def rate_bits(self) -> float:
        """Fixed-rate code length ``log2(n_levels)`` bits per coordinate."""
        return float(np.log2(self.n_levels))

    @property
    def alpha(self) -> float:
        """Largest level magnitude (the truncation threshold for stochastic rounding)."""
        return float(max(-self.levels[0], self.levels[-1]))

    # ----------------------------------------------------------------- JAX apply
    def index(self, x: Any) -> jax.Array:
        """Deterministic cell index in ``[0, n_levels)`` (int32)."""
        x = jnp.asarray(x)
        t = _trailing(jnp.asarray(self.thresholds, dtype=x.dtype), x.ndim)
        return jnp.sum(x[..., None] > t, axis=-1, dtype=jnp.int32)

    def __call__(self, x: Any) -> jax.Array:
        """Deterministic quantization ``levels[index(x)]`` (dtype of ``x`` preserved).

        NaN and ``±inf`` entries are returned as they are (see the module docstring).
        """
        x = jnp.asarray(x)
        return _keep_nonfinite(x, jnp.asarray(self.levels, dtype=x.dtype)[self.index(x)])

    def stochastic_index(self, key: Any, x: Any) -> jax.Array:
        """Index of the level chosen by unbiased stochastic rounding (after clipping)."""
        x = jnp.asarray(x)
        lv = jnp.asarray(self.levels, dtype=x.dtype)
        xc = jnp.clip(x, lv[0], lv[-1])
        lo = jnp.sum(xc[..., None] >= _trailing(lv[1:-1], x.ndim), axis=-1, dtype=jnp.int32)
        l_lo, l_hi = lv[lo], lv[lo + 1]
        p_up = (xc - l_lo) / (l_hi - l_lo)
        u = jax.random.uniform(key, x.shape, dtype=x.dtype)
        return lo + (u < p_up).astype(jnp.int32)

    def stochastic(self, key: Any, x: Any) -> jax.Array:
        """Unbiased stochastic rounding onto ``levels`` (values outside are clipped first).

        NaN and ``±inf`` entries are returned as they are (see the module docstring).
        """
        x = jnp.asarray(x)
        levels = jnp.asarray(self.levels, dtype=x.dtype)
        return _keep_nonfinite(x, levels[self.stochastic_index(key, x)])

    # ----------------------------------------------------------------- pytree
    def tree_flatten(self) -> tuple[tuple[Any, Any], None]:
        return (self.thresholds, self.levels), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: tuple[Any, Any]) -> ScalarQuantizer:
        obj = object.__new__(cls)
        object.__setattr__(obj, "thresholds", children[0])
        object.__setattr__(obj, "levels", children[1])
        return obj
