"""The family registry: a family is a model class registered by name (`@register_family("name")`)."""

from __future__ import annotations

from typing import Any

_FAMILIES: dict[str, type] = {}


class UnknownFamily(ValueError):
    """A family name nobody registered."""


def register_family(name: str, cls: type | None = None) -> Any:
    """Register `cls` as family `name`; used bare (`register_family("x", Cls)`) or as a class decorator.

    The class is an `IterativeModel` subclass; it declares its behaviour as class attributes and methods
    (see `models.base.IterativeModel`). Registering a name again replaces the earlier class.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a family name must be an identifier, got {name!r}")

    def add(c: type) -> type:
        c.family_name = name
        _FAMILIES[name] = c
        return c

    return add(cls) if cls is not None else add


def get_family(name: str) -> type:
    """The class registered under name; an unknown name raises with the known ones."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise UnknownFamily(f"unknown family {name!r}; known families: {', '.join(family_names())}") from None


def family_names() -> tuple[str, ...]:
    """Registered family names in display order (the class's `order`, then the name)."""
    return tuple(sorted(_FAMILIES, key=lambda n: (getattr(_FAMILIES[n], "order", 50), n)))


def families() -> list[type]:
    return [_FAMILIES[n] for n in family_names()]

