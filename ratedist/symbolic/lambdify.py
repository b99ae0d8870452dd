"""One cached ``sympy.lambdify`` for every derivation in :mod:`ratedist.symbolic`.

A derivation module registers *expression builders*: zero-argument functions returning a
sympy expression (``@expression("tnq_laplace.alpha_opt")``). Callers turn a builder (or its
registered name) into a numeric function with :func:`lambdified`, which compiles each
``(builder, args, backend)`` triple once per process (``functools.lru_cache``).

Backends:

* ``"numpy"``: float64 numpy/scipy (analysis zone); ``LambertW`` maps to
  ``scipy.special.lambertw`` (real part of the principal branch).
* ``"jax"``: ``jax.numpy`` (simulation zone, jit/vmap safe); special functions that sympy's JAX
  printer does not know (``erf``, ``erfc``, ``erfinv``, ``LambertW``) are supplied here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy as sp
from scipy import special

from ratedist._registry import Registry
from ratedist._validation import check_choice

ExprBuilder = Callable[[], sp.Expr]

#: Registered expression builders, keyed by ``"module.quantity"``.
EXPRESSIONS: Registry[ExprBuilder] = Registry("symbolic expression")

BACKENDS = ("numpy", "jax")


def expression(name: str, **facts: Any) -> Callable[[ExprBuilder], ExprBuilder]:
    """Decorator: cache a zero-argument expression builder and register it under ``name``."""

    def deco(builder: ExprBuilder) -> ExprBuilder:
        cached = functools.lru_cache(maxsize=None)(builder)
        functools.update_wrapper(cached, builder)
        EXPRESSIONS.add(name, cached, **facts)
        return cached  # type: ignore[return-value]

    return deco


def _numpy_lambertw(z: Any) -> np.ndarray:
    return np.real(special.lambertw(z))


def _jax_lambertw(z: Any) -> Any:
    """Principal branch ``W0(z)`` for real ``z >= 0`` (Newton on ``w - z e^{-w} = 0``).

    ``log1p(z) >= W0(z)`` for ``z >= 0`` and ``w - z e^{-w}`` is increasing and concave, so
    after the first step the iterates increase monotonically to the root; 40 steps are far
    more than double precision needs for ``z <= 1e12``.
    """
    import jax
    import jax.numpy as jnp

    z = jnp.asarray(z)

    def step(_: int, w: Any) -> Any:
        ze = z * jnp.exp(-w)
        return w - (w - ze) / (1.0 + ze)

    return jax.lax.fori_loop(0, 40, step, jnp.log1p(z))


def _modules(backend: str) -> list[Any]:
    if backend == "numpy":
        return [
            {
                "LambertW": _numpy_lambertw,
                "erf": special.erf,
                "erfc": special.erfc,
                "erfinv": special.erfinv,
            },
            "numpy",
        ]
    import jax.scipy.special as jss

    return [
        {"LambertW": _jax_lambertw, "erf": jss.erf, "erfc": jss.erfc, "erfinv": jss.erfinv},
        "jax",
    ]


def _resolve(expr_builder_or_name: str | ExprBuilder) -> ExprBuilder:
    if isinstance(expr_builder_or_name, str):
        return EXPRESSIONS.get(expr_builder_or_name)
    if not callable(expr_builder_or_name):
        raise TypeError(
            "expr_builder_or_name must be a registered name or a zero-argument callable "
            f"returning a sympy expression, got {type(expr_builder_or_name).__name__}"
        )
    return expr_builder_or_name


@functools.cache
def _compiled(builder: ExprBuilder, args: tuple[str, ...], backend: str) -> Callable[..., Any]:
    expr = builder()
    if not isinstance(expr, sp.Basic):
        raise TypeError(
            f"expression builder {getattr(builder, '__name__', builder)!r} returned "
            f"{type(expr).__name__}, not a sympy expression"
        )
    by_name = {str(sym): sym for sym in expr.free_symbols}
    unknown = sorted(set(by_name) - set(args))
    if unknown:
        raise ValueError(
            f"args {list(args)} do not cover the free symbols {unknown} of the expression"
        )
    symbols = [by_name.get(name, sp.Symbol(name)) for name in args]
    return sp.lambdify(symbols, expr, modules=_modules(backend))


def lambdified(
    expr_builder_or_name: str | ExprBuilder,
    args: Sequence[str],
    backend: str = "numpy",
) -> Callable[..., Any]:
    """A numeric function of ``args`` evaluating a symbolic expression (compiled once).

    Args:
        expr_builder_or_name: a name registered in :data:`EXPRESSIONS` or a zero-argument
            (hashable) callable returning a sympy expression.
        args: names of the positional arguments, in order; they must cover the expression's
            free symbols (matched by name, whatever their assumptions).
        backend: ``"numpy"`` or ``"jax"``.

    Returns:
        ``f(*values)`` broadcasting like the backend's ufuncs.

    Raises:
        ValueError: unknown name or backend, or ``args`` missing a free symbol.
        TypeError: ``expr_builder_or_name`` is neither a name nor a callable, or ``args`` is
            not a sequence of strings.
    """
    backend = check_choice("backend", backend, BACKENDS)
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise TypeError(f"args must be a sequence of symbol names (str), got {args!r}")
    return _compiled(_resolve(expr_builder_or_name), tuple(args), backend)


def cache_info() -> Any:
    """``functools`` cache statistics of the compiled functions (for tests and benchmarks)."""
    return _compiled.cache_info()
