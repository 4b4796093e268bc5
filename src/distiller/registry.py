"""Name -> object registries.

Everything a user can name in a schedule or on the command line (models, datasets, pruners, ...)
is looked up in a :class:`Registry`. Looking a name up never imports or evaluates anything: a
schedule can only build what was registered. A miss raises :class:`ConfigError` with the closest
names, so a typo is one edit away from a fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from distiller.errors import ConfigError

T = TypeVar("T")


def close_matches(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The registered names closest to ``name`` (case-insensitive), best first."""
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: list[str]) -> str:
    """A " Did you mean ...?" sentence, or an empty string when nothing is close."""
    hits = close_matches(name, candidates)
    return f" Did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


class Registry(Generic[T]):
    """A mapping from names to registered objects of one kind (e.g. "model", "pruner").

    Register with the decorator form ``@registry.register("name")`` or directly with
    ``registry.register("name", obj)``. Names are case-sensitive, as YAML ``class:`` names are.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None, obj: T | None = None, *, replace: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        ``name`` defaults to the object's ``__name__``. Registering a taken name raises unless
        ``replace`` is true, so two plugins cannot silently shadow each other.
        """

        def add(target: T) -> T:
            key = name or getattr(target, "__name__", None)
            if not key:
                raise ConfigError(f"Cannot register a {self.kind} without a name.")
            if key in self._entries and not replace and self._entries[key] is not target:
                raise ConfigError(
                    f"A {self.kind} named {key!r} is already registered; pass replace=True to override it."
                )
            self._entries[key] = target
            return target

        if obj is not None:
            return add(obj)
        return add

    def get(self, name: str) -> T:
        """The object registered as ``name``; raises :class:`ConfigError` with suggestions."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, list(self._entries))} "
                f"See the registered names with `distiller list {self.kind}s`."
            ) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


RegisterDecorator = Callable[[T], T]
