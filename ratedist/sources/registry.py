"""Registry of sources by command-line name: the one place a source class is enrolled.

An entry (:class:`SourceSpec`) carries everything the consumers need, so that none of them
keeps its own list: the constructor parameters (read from the class signature), which
command-line option sets which parameter, and named example parameter sets. ``ratedist
levels`` takes its ``--source`` choices and its parameter flags from here, :func:`make_source`
builds from option values, and the generic tests in ``tests/sources`` and
``tests/quantizers`` run on every example. Supported parameter ranges live on the class
(:attr:`~ratedist.sources.base.AbstractSource.PARAM_RANGES`, and ``DESIGN_RANGES`` for
quantizer design).

=================  ===========================  ===================================
name               class                        options (-> parameter)
=================  ===========================  ===================================
``gaussian``       :class:`Gaussian`            ``scale`` -> ``sigma`` (default 1)
``laplace``        :class:`Laplace`             ``scale`` (default 1)
``student-t``      :class:`StudentT`            ``df`` (required), ``scale`` (default 1)
``gen-gaussian``   :class:`GeneralizedGaussian` ``shape`` (required), ``scale`` (default 1)
``power-law``      :class:`PowerLaw`            ``shape`` -> ``tail_index`` (required),
                                                ``scale`` (default 1)
=================  ===========================  ===================================

``power-law`` reads its tail index from ``shape`` (not ``df``) so that the CLI has one flag for
"the parameter that sets the tail". The empirical source needs data and is not registered.

Adding a source is one call, next to its class or anywhere before use::

    register_source("logistic", Logistic, examples={"logistic0.7": {"scale": 0.7}})
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ratedist._registry import Registry
from ratedist.sources.base import AbstractSource
from ratedist.sources.classic import Gaussian, Laplace
from ratedist.sources.heavy import GeneralizedGaussian, PowerLaw, StudentT


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What the CLI and the generic tests need to know about one registered source class.

    Attributes:
        name: registry (command-line) name.
        cls: the source class.
        params: constructor parameters in signature order (read from the signature).
        defaults: default values of the parameters that have one.
        options: command-line option name -> constructor parameter.
        examples: named example parameter sets (constructor names) used by generic tests.
    """

    name: str
    cls: type[AbstractSource]
    params: tuple[str, ...]
    defaults: Mapping[str, Any]
    options: Mapping[str, str]
    examples: Mapping[str, Mapping[str, float]]

    @property
    def required(self) -> tuple[str, ...]:
        """Parameters without a default."""
        return tuple(p for p in self.params if p not in self.defaults)

    def option_of(self, param: str) -> str:
        """The command-line option that sets ``param``."""
        return next(opt for opt, p in self.options.items() if p == param)

    def build(self, **params: Any) -> AbstractSource:
        """The source from constructor parameters (the class validates them)."""
        return self.cls(**params)

    def from_options(self, **options: Any) -> AbstractSource:
        """The source from command-line option values (``None`` means not given).

        Raises:
            ValueError: an option this source does not take, or a required one missing.
        """
        given = {opt: v for opt, v in options.items() if v is not None}
        for opt, value in given.items():
            if opt not in self.options:
                raise ValueError(
                    f"source {self.name!r} does not take {opt} (got {value!r}); "
                    f"it takes {', '.join(self.options)}"
                )
        for param in self.required:
            if self.option_of(param) not in given:
                raise ValueError(
                    f"source {self.name!r} requires {self.option_of(param)} (got none)"
                )
        return self.build(**{self.options[opt]: v for opt, v in given.items()})


class SourceRegistry(Registry[SourceSpec]):
    """:class:`~ratedist._registry.Registry` of :class:`SourceSpec`, with removal (tests)."""

    def remove(self, name: str) -> None:
        """Unregister ``name`` (for tests that enrol a temporary source)."""
        self.entry(name)  # ValueError naming the known sources
        del self._entries[name]

    def option_names(self) -> list[str]:
        """Every command-line option of every source, in first-registered order."""
        seen: dict[str, None] = {}
        for name in self._entries:
            seen.update(dict.fromkeys(self._entries[name].obj.options))
        return list(seen)


#: name -> :class:`SourceSpec`.
SOURCES = SourceRegistry("source")


def register_source(
    name: str,
    cls: type[AbstractSource],
    *,
    examples: Mapping[str, Mapping[str, float]],
    options: Mapping[str, str] | None = None,
) -> SourceSpec:
    """Enrol a source class under ``name`` for the CLI and the generic tests.

    Args:
        name: command-line name (``ratedist levels --source NAME``).
        cls: a concrete :class:`AbstractSource` subclass (a dataclass).
        examples: example parameter sets keyed by a short id unique across the registry
            (``{"t5.5": {"df": 5.5, "scale": 1.3}}``); at least one.
        options: command-line option -> constructor parameter; default: each parameter is
            its own option. Every parameter without a default must have an option.

    Returns:
        The :class:`SourceSpec` now registered.

    Raises:
        TypeError: ``cls`` is not an AbstractSource subclass.
        ValueError: duplicate name or example id, an option naming no parameter, a required
            parameter without an option, an example with unknown parameters, or no example.
    """
    if not (isinstance(cls, type) and issubclass(cls, AbstractSource)):
        raise TypeError(f"cls must be an AbstractSource subclass, got {cls!r}")
    sig = inspect.signature(cls)
    params = tuple(sig.parameters)
    defaults = {
        p: v.default for p, v in sig.parameters.items() if v.default is not inspect.Parameter.empty
    }
    options = dict(options) if options is not None else {p: p for p in params}
    for opt, param in options.items():
        if param not in params:
            raise ValueError(
                f"options[{opt!r}] = {param!r} is not a parameter of {cls.__name__} {params}"
            )
    for param in params:
        if param not in defaults and param not in options.values():
            raise ValueError(f"required parameter {param!r} of {cls.__name__} has no option")
    if not examples:
        raise ValueError(f"source {name!r} needs at least one example parameter set")
    taken = {ex for n in SOURCES.names() for ex in SOURCES.get(n).examples}
    for ex_id, ex in examples.items():
        if ex_id in taken:
            raise ValueError(f"example id {ex_id!r} of source {name!r} is already used")
        unknown = set(ex) - set(params)
        if unknown:
            raise ValueError(f"example {ex_id!r} has unknown parameters {sorted(unknown)}")
    spec = SourceSpec(
        name=name,
        cls=cls,
        params=params,
        defaults=MappingProxyType(defaults),
        options=MappingProxyType(options),
        examples=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in examples.items()}),
    )
    SOURCES.add(name, spec)
    return spec


register_source(
    "gaussian",
    Gaussian,
    options={"scale": "sigma"},
    examples={"gauss": {"sigma": 1.7}},
)
register_source("laplace", Laplace, examples={"laplace": {"scale": 0.8}})
register_source(
    "student-t",
    StudentT,
    examples={
        "t5.5": {"df": 5.5, "scale": 1.3},
        "t4": {"df": 4.0},
        "t2.5": {"df": 2.5},
        "t1.5": {"df": 1.5, "scale": 0.5},
        "t40": {"df": 40.0, "scale": 0.9},
    },
)
register_source(
    "gen-gaussian",
    GeneralizedGaussian,
    examples={"gg0.6": {"shape": 0.6, "scale": 2.0}, "gg3": {"shape": 3.0}},
)
register_source(
    "power-law",
    PowerLaw,
    options={"shape": "tail_index", "scale": "scale"},
    examples={
        "pl4.5": {"tail_index": 4.5, "scale": 0.7},
        "pl3": {"tail_index": 3.0},
        "pl1.5": {"tail_index": 1.5},
    },
)


def make_source(name: str, **options: Any) -> AbstractSource:
    """Build a registered source from command-line style options.

    Args:
        name: a name in :data:`SOURCES` (``gaussian``, ``laplace``, ``student-t``,
            ``gen-gaussian``, ``power-law``, and any source registered later).
        **options: the source's options (``None`` = not given): ``scale`` (sigma for
            ``gaussian``; default 1), ``df`` (``student-t``, required there), ``shape``
            (``gen-gaussian`` shape or ``power-law`` tail index; required there).

    Returns:
        The source.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: unknown ``name`` (the message lists known names), a required option
            missing, an option the source does not take, or a value outside the parameter's
            supported range.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    return SOURCES.get(name).from_options(**options)
