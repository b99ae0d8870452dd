"""Build compressors from strings such as ``"top-k:k=10,float_bits=16"`` (the CLI syntax)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from ratedist.compressors.base import COMPRESSORS, Compressor

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _param_types(name: str) -> dict[str, Any]:
    """``param -> type`` from the registry's ``params`` fact (``(type, default)`` or a type)."""
    raw = COMPRESSORS.facts(name).get("params", {})
    return {p: (t[0] if isinstance(t, tuple | list) else t) for p, t in raw.items()}


def _convert(comp: str, param: str, typ: Any, text: str) -> Any:
    where = f"parameter {param} of compressor {comp!r}"
    if typ is bool:
        low = text.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ValueError(f"{where} must be a boolean (true/false), got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = math.nan
            if math.isfinite(f) and f.is_integer():
                return int(f)
            raise ValueError(f"{where} must be an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{where} must be a number, got {text!r}") from None
    if typ is str:
        return text
    tname = getattr(typ, "__name__", repr(typ))
    raise ValueError(
        f"{where} (a {tname}) cannot be given in a spec string; pass it as a keyword argument"
    )


def parse_spec(
    spec: str, *, aliases: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the registry name and typed parameters.

    Values are converted with the types declared in the registry's ``params`` fact
    (``int``, ``float``, ``bool``, ``str``).

    Args:
        spec: the string, e.g. ``"top-k:k=10"`` or ``"sign"``; spaces around tokens ignored.
        aliases: other spellings of parameter keys, ``{alias: parameter}`` (the command
            line's ``lattice:name=e8`` for ``lattice:lattice=e8``); errors quote ``spec``
            as given.

    Returns:
        ``(name, params)``.

    Raises:
        ValueError: naming the unknown compressor, the unknown or repeated parameter, the
            malformed token, or the parameter whose value has the wrong type.
    """
    if not isinstance(spec, str):
        raise ValueError(f"spec must be a string like 'top-k:k=10', got {spec!r}")
    name, sep, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"spec {spec!r} has no compressor name; expected 'name:key=value,...'")
    COMPRESSORS.entry(name)  # raises "unknown compressor ...; known: ..."
    types = _param_types(name)
    params: dict[str, Any] = {}
    if sep and rest.strip():
        for token in rest.split(","):
            key, eq, value = token.partition("=")
            key, value = key.strip(), value.strip()
            key = (aliases or {}).get(key, key)
            if not eq or not key:
                raise ValueError(
                    f"spec {spec!r}: token {token.strip()!r} is not of the form key=value"
                )
            if key not in types:
                allowed = ", ".join(sorted(types)) or "none"
                raise ValueError(
                    f"unknown parameter {key!r} for compressor {name!r}; allowed: {allowed}"
                )
            if key in params:
                raise ValueError(f"spec {spec!r}: parameter {key!r} given twice")
            params[key] = _convert(name, key, types[key], value)
    return name, params


def make(spec: str | None = None, /, **params: Any) -> Compressor:
    """Build a registered compressor from a spec string and/or keyword parameters.

    ``make("top-k:k=10")``, ``make("top-k", k=10)`` and ``make(name="top-k", k=10)`` are
    equivalent.

    Args:
        spec: ``"name"`` or ``"name:key=value,..."`` (see :func:`parse_spec`); None to pass
            the name as ``name=``.
        **params: further parameters (Python values, validated by the factory).

    Returns:
        The configured :class:`Compressor`.

    Raises:
        ValueError: unknown compressor or parameter, a parameter given twice, a missing
            required parameter, or a bad value (the message names it).
        TypeError: a parameter of the wrong kind (from the factory's checks).
    """
    if spec is None:
        if "name" not in params:
            raise ValueError(
                "make needs a compressor: make('top-k:k=10') or make(name='top-k', k=10)"
            )
        spec = params.pop("name")
        if not isinstance(spec, str):
            raise ValueError(f"name must be a compressor name string, got {spec!r}")
    name, spec_params = parse_spec(spec)
    types = _param_types(name)
    unknown = sorted(set(params) - set(types))
    if unknown:
        allowed = ", ".join(sorted(types)) or "none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for compressor {name!r}; allowed: {allowed}"
        )
    both = sorted(set(params) & set(spec_params))
    if both:
        raise ValueError(
            f"parameter(s) {', '.join(both)} given both in spec {spec!r} and as keywords"
        )
    kwargs = {**spec_params, **params}
    factory = COMPRESSORS.get(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"compressor {name!r}: {exc}") from None
    return factory(**kwargs)
