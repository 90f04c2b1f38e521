"""What every parser produces: chunks of canonical Arrow record batches.

A parser reads its input in blocks and yields one :class:`Chunk` per block. A chunk holds the
rows of the canonical ``events``/``other``/``rejected`` tables (:mod:`tracetool.schema`) and,
for every catalogued event it decoded, a typed record batch per matching definition variant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from tracetool.catalog import Catalog, EventDef
from tracetool.catalog.ctypes import ARROW_TYPES
from tracetool.errors import UsageError
from tracetool.schema import EVENT_KEY_FIELDS, EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA


@dataclass
class ParseOptions:
    """How to parse: the catalog to type arguments with, strictness, engine choice."""

    catalog: Catalog = field(default_factory=Catalog.bundled)
    strict: bool = False
    engine: str = "auto"  # "auto" | "numba" | "arrow"
    block_size: int = 8 << 20  # whole lines per block: lower peak memory, same speed as 16 MB


class NameRegistry:
    """Event names seen so far, in first-seen order: the shared dictionary of ``event``."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def id(self, name: str) -> int:
        i = self.ids.get(name)
        if i is None:
            i = self.ids[name] = len(self.names)
            self.names.append(name)
        return i

    def dictionary(self) -> pa.Array:
        return pa.array(self.names, pa.string())


@dataclass
class Chunk:
    """The tables decoded from one block of input."""

    events: pa.RecordBatch
    other: pa.RecordBatch
    rejected: pa.RecordBatch
    #: (event name, variant index in the catalog) -> typed record batch
    typed: dict[tuple[str, int], pa.RecordBatch] = field(default_factory=dict)
    lines: int = 0  # lines read in this block (events + other + rejected)
    nbytes: int = 0  # input bytes consumed (decompressed)
    shapes: Counter = field(default_factory=Counter)  # line shape -> number of event lines
    dropped_events: int = 0  # events the tracer reported lost (simpletrace dropped records)


class Parser(Protocol):
    """A format module: ``parse(source, options)`` yields chunks; ``name`` registers it."""

    name: str

    def parse(self, source: object, options: ParseOptions) -> Iterator[Chunk]: ...


def typed_schema(ev: EventDef) -> pa.Schema:
    """Schema of the typed table of one event definition (computed once per definition)."""
    got = ev.__dict__.get("_typed_schema")
    if got is None:
        fields = list(EVENT_KEY_FIELDS)
        fields += [pa.field(c.name, ARROW_TYPES[c.kind]) for c in ev.columns()]
        got = ev.__dict__["_typed_schema"] = pa.schema(fields)
    return got


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


EMPTY_OTHER = empty_batch(OTHER_SCHEMA)
EMPTY_REJECTED = empty_batch(REJECTED_SCHEMA)
EMPTY_EVENTS_SCHEMA = EVENTS_SCHEMA


#: Inputs smaller than this use the pure arrow/numpy engine under engine="auto" (no JIT start-up).
SMALL_INPUT = 8 << 20


def resolve_engine(engine: str, size_hint: int | None) -> str:
    """``"numba"`` or ``"arrow"`` for a requested engine (``auto``, ``numba``, ``arrow``): auto
    picks numba for inputs of ``SMALL_INPUT`` or more (or of unknown size) when it is
    available; forcing an unavailable numba, or an unknown name, is a usage error."""
    if engine == "auto":
        if size_hint is not None and size_hint < SMALL_INPUT:
            return "arrow"  # without importing numba (its start-up cost)
        from parsers import _numba_setup

        return "numba" if _numba_setup.available() else "arrow"
    if engine == "numba":
        from parsers import _numba_setup

        if not _numba_setup.available():
            raise UsageError(f"engine 'numba' is not available: {_numba_setup.UNAVAILABLE}")
    if engine not in ("numba", "arrow"):
        raise UsageError(f"unknown engine {engine!r}; expected auto, numba or arrow")
    return engine
