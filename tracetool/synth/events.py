"""The trace events of one QEMU era: the bundled catalog variant whose version range covers it."""

from __future__ import annotations

from functools import lru_cache

from tracetool.catalog import ArgKind, Catalog, EventDef

#: MIG_CMD numbers (numeric ``loadvm_process_command`` up to 6.2) and names (7.0+)
MIG_CMD = {
    "OPEN_RETURN_PATH": 1, "PING": 2, "POSTCOPY_ADVISE": 3, "POSTCOPY_LISTEN": 4,
    "POSTCOPY_RUN": 5, "POSTCOPY_RAM_DISCARD": 6, "PACKAGED": 7,
}  # fmt: skip
#: MigrationStatus numbers (numeric ``migrate_set_state`` up to 2.10)
MIG_STATUS = {"setup": 1, "active": 4, "postcopy-active": 5, "completed": 6}


def _covers(ev: EventDef, v: tuple[int, int]) -> bool:
    lo, hi = ev.versions
    return (lo or (0, 0)) <= v <= (hi or (99, 99))


class EraEvents:
    """Which events an era's QEMU has, and the definition (format, arguments) it prints."""

    def __init__(self, version: tuple[int, int], catalog: Catalog | None = None) -> None:
        self.version = version
        self.catalog = catalog or Catalog.bundled()
        self._defs: dict[str, EventDef | None] = {}

    def get(self, name: str) -> EventDef | None:
        if name not in self._defs:
            hits = [v for v in self.catalog.variants(name) if _covers(v, self.version) and v.plan]
            self._defs[name] = hits[0] if hits else None
        return self._defs[name]

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name: str) -> EventDef:
        ev = self.get(name)
        if ev is None:
            raise KeyError(f"QEMU {self.version} has no trace event {name}")
        return ev

    def string_arg(self, name: str, arg: str) -> bool:
        """Whether argument ``arg`` of ``name`` is printed as a string in this era."""
        for col in self[name].columns():
            if col.name == arg:
                return col.kind is ArgKind.STRING
        return False

    def all_names(self) -> list[str]:
        """Every catalogued event this era has (simpletrace v4 writes a mapping for each)."""
        return sorted(n for n in self.catalog.names() if self.get(n) is not None)


@lru_cache(maxsize=8)
def era_events(version: tuple[int, int]) -> EraEvents:
    return EraEvents(version)
