"""Registry of sources by command-line name, and :func:`make_source` for the CLI.

``ratedist levels --source NAME [--scale X] [--df X] [--shape X]`` builds its source with
:func:`make_source`. Parameter meaning per name:

=================  ===========================  ===================================
name               class                        parameters
=================  ===========================  ===================================
``gaussian``       :class:`Gaussian`            ``scale`` = sigma (default 1)
``laplace``        :class:`Laplace`             ``scale`` (default 1)
``student-t``      :class:`StudentT`            ``df`` (required), ``scale`` (default 1)
``gen-gaussian``   :class:`GeneralizedGaussian` ``shape`` (required), ``scale`` (default 1)
``power-law``      :class:`PowerLaw`            ``shape`` = tail index a (required),
                                                ``scale`` (default 1)
=================  ===========================  ===================================

``power-law`` reads its tail index from ``shape`` (not ``df``) so that the CLI has one flag for
"the parameter that sets the tail". The empirical source needs data and is not registered.
"""

from __future__ import annotations

from collections.abc import Callable

from ratedist._registry import Registry
from ratedist.sources.base import AbstractSource
from ratedist.sources.classic import Gaussian, Laplace
from ratedist.sources.heavy import GeneralizedGaussian, PowerLaw, StudentT

#: name -> builder(scale, df, shape); facts ``required`` / ``accepted`` (parameter names).
SOURCES: Registry[Callable[..., AbstractSource]] = Registry("source")

SOURCES.add(
    "gaussian",
    lambda scale, df, shape: Gaussian(sigma=scale),
    required=(),
    accepted=("scale",),
)
SOURCES.add(
    "laplace",
    lambda scale, df, shape: Laplace(scale=scale),
    required=(),
    accepted=("scale",),
)
SOURCES.add(
    "student-t",
    lambda scale, df, shape: StudentT(df=df, scale=scale),
    required=("df",),
    accepted=("scale", "df"),
)
SOURCES.add(
    "gen-gaussian",
    lambda scale, df, shape: GeneralizedGaussian(shape=shape, scale=scale),
    required=("shape",),
    accepted=("scale", "shape"),
)
SOURCES.add(
    "power-law",
    lambda scale, df, shape: PowerLaw(tail_index=shape, scale=scale),
    required=("shape",),
    accepted=("scale", "shape"),
)


def make_source(
    name: str,
    *,
    scale: float | None = None,
    df: float | None = None,
    shape: float | None = None,
) -> AbstractSource:
    """Build a registered source from command-line style parameters.

    Args:
        name: one of :data:`SOURCES` (``gaussian``, ``laplace``, ``student-t``,
            ``gen-gaussian``, ``power-law``).
        scale: scale parameter (sigma for ``gaussian``); default 1.
        df: degrees of freedom (``student-t`` only, required there).
        shape: shape exponent (``gen-gaussian``) or tail index (``power-law``); required there.

    Returns:
        The source.

    Raises:
        ValueError: unknown ``name`` (the message lists known names), a required parameter
            missing, a parameter the source does not take, or a bad parameter value.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    entry = SOURCES.entry(name)
    given = {"scale": scale, "df": df, "shape": shape}
    for param in entry.facts["required"]:
        if given[param] is None:
            raise ValueError(f"source {name!r} requires {param} (got none)")
    for param, value in given.items():
        if value is not None and param not in entry.facts["accepted"]:
            raise ValueError(
                f"source {name!r} does not take {param} (got {value!r}); "
                f"it takes {', '.join(entry.facts['accepted'])}"
            )
    return entry.obj(1.0 if scale is None else scale, df, shape)
