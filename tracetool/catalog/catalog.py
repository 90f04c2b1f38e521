"""The catalog of trace events: bundled definitions of QEMU 2.5-10.x plus the user's own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

from tracetool.catalog.fmt import Conv
from tracetool.catalog.grammar import EventDef, Version, parse_trace_events, read_trace_events


class Catalog:
    """Event definitions by name; each name may have several variants (one per QEMU era).

    Variants are tried in order when decoding a record. Bundled variants are ordered most
    constrained first (fewest ``%s``), then newest; definitions from ``--trace-events``
    replace every bundled variant of their names and are tried in file order.
    """

    def __init__(self, defs: Iterable[EventDef] = ()) -> None:
        self._variants: dict[str, list[EventDef]] = {}
        self.order: list[str] = []  # names in file order (simpletrace v2/v3 ids)
        for ev in defs:
            self._add(ev)

    def _add(self, ev: EventDef) -> None:
        if ev.name not in self._variants:
            self._variants[ev.name] = []
        self._variants[ev.name].append(ev)
        self.order.append(ev.name)

    @classmethod
    def bundled(cls) -> Catalog:
        """The definitions shipped with tracetool (see ``tracetool/catalog/data``)."""
        return _bundled()

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        return cls(read_trace_events(path))

    def with_overrides(self, defs: Iterable[EventDef]) -> Catalog:
        """A new catalog where ``defs`` replace this catalog's variants of the same names."""
        defs = list(defs)
        new = Catalog(defs)
        overridden = {d.name for d in defs}
        for name, variants in self._variants.items():
            if name not in overridden:
                for ev in variants:
                    new._variants.setdefault(name, []).append(ev)
        return new

    def variants(self, name: str) -> list[EventDef]:
        """Definitions of ``name`` in the order a decoder tries them."""
        return self._variants.get(name, [])

    def latest(self, name: str) -> EventDef | None:
        """The newest definition of ``name`` that has a usable format (for empty tables)."""
        typed = [v for v in self.variants(name) if v.plan is not None]
        return max(typed, key=_version_key) if typed else None

    def __contains__(self, name: object) -> bool:
        return name in self._variants

    def __iter__(self) -> Iterator[str]:
        return iter(self._variants)

    def __len__(self) -> int:
        return len(self._variants)

    def names(self) -> list[str]:
        return sorted(self._variants)

    def plan_errors(self) -> list[str]:
        return [ev.plan_error for vs in self._variants.values() for ev in vs if ev.plan_error]


def _match_key(ev: EventDef) -> tuple[int, int, tuple[int, int]]:
    """Order in which variants are tried: the most constrained plan first (fewest ``%s``,
    which match anything), then the newest. ``new state 5`` is the 2.10 int variant, not the
    string variant of 2.11+; ``com=0x3`` is the <= 6.2 numeric command, not a command name."""
    if ev.plan is None:
        return (1, 0, (0, 0))
    strings = sum(1 for t in ev.plan.conversions if t.kind is Conv.STRING)
    newest = _version_key(ev)
    return (0, strings, (-newest[0], -newest[1]))


def _version_key(ev: EventDef) -> tuple[int, int]:
    lo, hi = ev.versions
    edge: Version | None = hi or lo
    return (99, 99) if hi is None else (edge or (0, 0))


@lru_cache(maxsize=1)
def _bundled() -> Catalog:
    defs: list[EventDef] = []
    data = resources.files("tracetool.catalog") / "data"
    for entry in sorted(data.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".trace-events"):
            defs.extend(
                parse_trace_events(entry.read_text(encoding="utf-8"), f"bundled:{entry.name}")
            )
    # Most constrained variant first, then newest (see _match_key).
    by_name: dict[str, list[EventDef]] = {}
    for ev in defs:
        by_name.setdefault(ev.name, []).append(ev)
    ordered = [ev for evs in by_name.values() for ev in sorted(evs, key=_match_key)]
    return Catalog(ordered)
