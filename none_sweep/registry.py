"""A tiny name → factory registry, the way timm registers models.

Variants are data: ``badnets_a2a`` is a registration, not a new class tree, and an unknown
name is one clear error listing the choices. No if/elif over names anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError
from .text import did_you_mean

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Maps names to factories; duplicate names raise at import time."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(factory: F) -> F:
            self.add(name, factory)
            return factory

        return decorator

    def add(self, name: str, factory: F) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = factory

    def get(self, name: str) -> F:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self.names())
        article = "an" if self.kind[:1].lower() in "aeiou" else "a"
        return f"{name!r} is not {article} {self.kind}{hint}; choose from {self.names()}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
