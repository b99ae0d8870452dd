"""Error feedback (EF14) as a wrapper around any compressor."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from ratedist.compressors._common import check_vector
from ratedist.compressors.base import Compressor, Facts


class ErrorFeedbackState(NamedTuple):
    """``error``: the residual ``e`` (shape ``(d,)``); ``inner``: the wrapped state."""

    error: Any
    inner: Any


def error_feedback(inner: Compressor) -> Compressor:
    """EF14 residual memory: send ``C(x + e)`` and keep ``e_new = (x + e) - x_hat``.

    The residual is computed literally as ``(x + e) - x_hat`` from the very ``v = x + e``
    that was compressed, so ``e_new`` carries everything not sent. In floating point
    ``x_hat + e_new`` equals ``x + e_old`` bitwise whenever every ``x_hat_i`` is ``0`` or
    ``v_i`` (sparsifiers) or within a factor 2 of ``v_i`` (Sterbenz); otherwise it agrees to
    within one rounding of ``|e_new|`` and ``|v|`` (e.g. sign: ``v_i = 1e-20, x_hat_i = 1``).
    Caveat: under ``jit`` XLA may fuse an inner ``x_hat = a * b`` into the subtraction and
    contract it to an FMA, so that ``e_new = v - a b`` is rounded once from the exact
    product (≤ 1 ulp of ``e_new`` from ``v - x_hat``); ``optimization_barrier`` does not
    prevent this on CPU. Sparsifiers (``x_hat_i in {0, v_i}``) are bitwise exact always.

    Args:
        inner: the compressor applied to ``x + e``.

    Returns:
        A compressor with state :class:`ErrorFeedbackState`; its ``info`` is the inner one
        (error feedback sends nothing extra). Facts: biased, ``deterministic`` and ``shared``
        as the inner; extra keywords of ``update`` (PermK's ``worker``) go to the inner.

    Raises:
        TypeError: if ``inner`` is not a :class:`Compressor`.

    References:
        Seide et al., "1-bit SGD" (Interspeech 2014); Stich et al., arXiv 1809.07599;
        Karimireddy et al., arXiv 1901.09847.
    """
    if not isinstance(inner, Compressor):
        raise TypeError(f"inner must be a Compressor, got {type(inner).__name__}")

    def init(x: Any) -> ErrorFeedbackState:
        x = check_vector(x)
        return ErrorFeedbackState(jnp.zeros_like(x), inner.init(x))

    def update(
        x: Any, state: ErrorFeedbackState, *, key: Any = None, **kw: Any
    ) -> tuple[Any, Any, Any]:
        x = check_vector(x)
        v = x + state.error
        x_hat, inner_state, info = inner.update(v, state.inner, key=key, **kw)
        return x_hat, ErrorFeedbackState(v - x_hat, inner_state), info

    facts = Facts(
        name="error-feedback",
        params={
            "inner": inner.facts.name,
            **{f"inner.{k}": v for k, v in inner.facts.params.items()},
        },
        unbiased=False,
        deterministic=inner.facts.deterministic,
        shared=inner.facts.shared,
    )
    return Compressor(init, update, facts)
