"""One registry per kind of object, so a string name and an object are accepted alike.

`Registry.register(name)` both records a class under a public name and registers it as
Keras-serializable (package ``mtl_keras``), as keras-rs does with one decorator.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import keras

T = TypeVar("T")

PACKAGE = "mtl_keras"


def serializable(cls: type[T]) -> type[T]:
    """Register ``cls`` with Keras under the ``mtl_keras`` package."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def suggest(name: str, choices: list[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry(Generic[T]):
    """Maps public names to classes of one kind (balancers, builders, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered.")
            self._items[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return serializable(cls)

        return decorator

    def names(self) -> list[str]:
        return sorted(self._items)

    def lookup(self, name: str) -> type[T]:
        if name not in self._items:
            raise ValueError(
                f"Unknown {self.kind} {name!r}. Expected one of {self.names()}." + suggest(name, self.names())
            )
        return self._items[name]

    def get(self, identifier: Any, **options: Any) -> T:
        """Return an instance for a registered name (with ``options``) or pass an instance through."""
        if isinstance(identifier, str):
            return self.lookup(identifier)(**options)
        if options:
            raise ValueError(
                f"Options {sorted(options)} can only be given with a {self.kind} name, "
                f"not with an object ({identifier!r})."
            )
        return identifier  # type: ignore[no-any-return]
