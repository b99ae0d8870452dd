"""A small string-keyed registry used instead of if/elif factories.

Entries carry static *facts* (keyword metadata) next to the object, so generic tests and the
bounds layer can read, e.g., whether a compressor is unbiased without calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its static facts."""

    name: str
    obj: T
    facts: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object map with facts; lookups of unknown names raise ``ValueError``.

    Args:
        kind: what is registered (``"compressor"``, ``"design method"``), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **facts: Any) -> Callable[[T], T]:
        """Decorator that enrols ``obj`` under ``name`` with ``facts``."""

        def deco(obj: T) -> T:
            self.add(name, obj, **facts)
            return obj

        return deco

    def add(self, name: str, obj: T, **facts: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self._kind} {name!r} is already registered")
        self._entries[name] = Entry(name, obj, MappingProxyType(dict(facts)))

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self._kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def facts(self, name: str) -> Mapping[str, Any]:
        return self.entry(name).facts

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
