"""One registry for everything registered by name (families, tasks, solvers, backward modes): a dict with one
registration rule (an identifier name; registering again replaces) and one lookup error that lists what is
known. A leaf module: it imports nothing of the project, so tasks/ may use it too.

A family is a model class registered by name (`@register_family("name")`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry(dict):
    """name -> object. `lookup(name)` raises `error("unknown {kind} 'x'; known {plural}: a, b")`; `register(name,
    obj)` adds (bare or as a decorator); `names()` in display order (`order(obj)`, then the name)."""

    def __init__(self, kind: str, error: type[Exception], plural: str | None = None,
                 order: Callable[[Any], Any] | None = None, entries: dict | None = None):
        super().__init__(entries or {})
        self.kind, self.error, self.plural = kind, error, plural or f"{kind}s"
        self._order = order

    def lookup(self, name: str) -> Any:
        try:
            return self[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names())}") from None

    def register(self, name: str, obj: Any = None, on_add: Callable[[Any], None] | None = None) -> Any:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a {self.kind} name must be an identifier, got {name!r}")

        def add(o: Any) -> Any:
            if on_add is not None:
                on_add(o)
            self[name] = o
            return o

        return add(obj) if obj is not None else add

    def names(self) -> tuple[str, ...]:
        if self._order is None:
            return tuple(self)
        return tuple(sorted(self, key=lambda n: (self._order(self[n]), n)))


class UnknownFamily(ValueError):
    """A family name nobody registered."""


_FAMILIES = Registry("family", UnknownFamily, "families", order=lambda cls: getattr(cls, "order", 50))


def register_family(name: str, cls: type | None = None) -> Any:
    """Register `cls` as family `name`; used bare (`register_family("x", Cls)`) or as a class decorator.

    The class is an `IterativeModel` subclass; it declares its behaviour as class attributes and methods
    (see `models.base.IterativeModel`). Registering a name again replaces the earlier class.
    """
    def name_it(c: type) -> None:
        c.family_name = name

    return _FAMILIES.register(name, cls, on_add=name_it)


def get_family(name: str) -> type:
    """The class registered under name; an unknown name raises with the known ones."""
    return _FAMILIES.lookup(name)


def family_names() -> tuple[str, ...]:
    """Registered family names in display order (the class's `order`, then the name)."""
    return _FAMILIES.names()


def families() -> list[type]:
    return [_FAMILIES[n] for n in family_names()]
