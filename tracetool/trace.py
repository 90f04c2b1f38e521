"""The Trace object: the canonical tables of one trace file and typed per-event views."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from parsers.base import Chunk, ParseOptions, empty_batch
from tracetool.catalog import Catalog
from tracetool.errors import MissingEventError
from tracetool.ingest import IngestStats, ProgressFn, iter_chunks, make_options
from tracetool.schema import EVENT_KEY_FIELDS, EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

if TYPE_CHECKING:
    import pandas as pd


class Trace:
    """One parsed trace.

    ``events`` has one row per trace record (:data:`tracetool.schema.EVENTS_SCHEMA`);
    ``other`` and ``rejected`` hold the lines that were not records; ``stats`` has the counts
    (``lines == events + other_lines + rejected_lines``). ``table(name)`` gives one event's
    arguments as typed columns.
    """

    def __init__(
        self,
        events: pa.Table,
        other: pa.Table,
        rejected: pa.Table,
        typed: dict[str, list[pa.RecordBatch]],
        stats: IngestStats,
        catalog: Catalog,
    ) -> None:
        self.events = events
        self.other = other
        self.rejected = rejected
        self.stats = stats
        self.catalog = catalog
        self._typed = typed
        self._tables: dict[str, pa.Table] = {}
        self._counts: dict[str, int] | None = None
        #: (event name, catalog variant index) of every definition variant that decoded a record
        self.variants_seen: set[tuple[str, int]] = set()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_chunks(cls, chunks, stats: IngestStats, catalog: Catalog) -> Trace:
        ev, oth, rej = [], [], []
        typed: dict[str, list[pa.RecordBatch]] = defaultdict(list)
        variants_seen: set[tuple[str, int]] = set()
        for chunk in chunks:
            chunk: Chunk
            ev.append(chunk.events)
            oth.append(chunk.other)
            rej.append(chunk.rejected)
            for (name, variant), batch in chunk.typed.items():
                typed[name].append(batch)
                variants_seen.add((name, variant))
        events = pa.Table.from_batches(ev or [empty_batch(EVENTS_SCHEMA)], EVENTS_SCHEMA)
        events = events.unify_dictionaries()
        other = pa.Table.from_batches(oth or [empty_batch(OTHER_SCHEMA)], OTHER_SCHEMA)
        rejected = pa.Table.from_batches(rej or [empty_batch(REJECTED_SCHEMA)], REJECTED_SCHEMA)
        trace = cls(events, other, rejected, dict(typed), stats, catalog)
        trace.variants_seen = variants_seen
        return trace

    # -- queries ------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self.stats.path

    def event_counts(self) -> dict[str, int]:
        """Number of records per event name, most frequent first."""
        if self._counts is None:
            if self.events.num_rows == 0:
                self._counts = {}
            else:
                vc = pc.value_counts(self.events["event"].combine_chunks().dictionary_decode())
                pairs = sorted(
                    zip(
                        vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
                    ),
                    key=lambda kv: (-kv[1], kv[0]),
                )
                self._counts = dict(pairs)
        return self._counts

    def event_mask(self, name: str) -> pa.ChunkedArray:
        """Boolean mask of the ``events`` rows of event ``name``."""
        col = self.events["event"]
        chunks = []
        for chunk in col.chunks:
            idx = chunk.dictionary.index(name).as_py()
            chunks.append(
                pc.equal(chunk.indices, idx)
                if idx >= 0
                else pa.nulls(len(chunk), pa.bool_()).fill_null(False)
            )
        return pa.chunked_array(chunks, pa.bool_())

    def event_names(self) -> list[str]:
        return sorted(self.event_counts())

    def __contains__(self, name: object) -> bool:
        return name in self.event_counts()

    def table(self, name: str) -> pa.Table:
        """The records of event ``name``: ts_ns, tid, line, then its arguments, typed.

        Uncatalogued events (and catalogued ones without a usable format) get the raw
        ``args`` text instead. Raises :class:`MissingEventError` naming the closest event.
        """
        got = self._tables.get(name)
        if got is not None:
            return got
        if name not in self.event_counts():
            if name in self.catalog:
                # Known event with no record here: an empty typed table, not an error.
                latest = self.catalog.latest(name)
                if latest is not None:
                    from parsers.base import typed_schema

                    return typed_schema(latest).empty_table()
            raise MissingEventError(name, self.event_counts(), path=self.path)
        batches = self._typed.get(name)
        if batches:
            tables = _harmonise([pa.Table.from_batches([b]) for b in batches])
            table = pa.concat_tables(tables, promote_options="permissive")
            if len({b.schema for b in batches}) > 1:
                table = table.sort_by("line")
            n_typed = table.num_rows
            n_all = self.event_counts()[name]
            if n_typed != n_all:  # some records matched no variant with a plan: keep raw ones
                raise AssertionError(f"{name}: {n_typed} typed rows for {n_all} records")
        else:
            rows = self.events.filter(self.event_mask(name))
            table = pa.table(
                [rows["ts_ns"], rows["tid"], rows["line"], rows["args"]],
                schema=pa.schema([*EVENT_KEY_FIELDS, pa.field("args", pa.string())]),
            )
        self._tables[name] = table
        return table

    def to_pandas(self, name: str | None = None) -> pd.DataFrame:
        """``events`` (or ``table(name)``) as a pandas DataFrame."""
        return (self.events if name is None else self.table(name)).to_pandas()

    # -- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Trace {Path(s.path).name}: {s.format}, {s.events} events, "
            f"{s.other_lines} other, {s.rejected_lines} rejected, {len(self.event_counts())} names>"
        )


def _harmonise(tables: list[pa.Table]) -> list[pa.Table]:
    """Variants that type one argument differently (``new state %d`` in QEMU <= 2.10, ``%s``
    later) are combined as strings; other differences are left to Arrow's type promotion."""
    types: dict[str, set[pa.DataType]] = defaultdict(set)
    for t in tables:
        for f in t.schema:
            types[f.name].add(f.type)
    clash = {n for n, ts in types.items() if len(ts) > 1 and pa.string() in ts}
    if not clash:
        return tables
    out = []
    for t in tables:
        for n in clash & set(t.column_names):
            i = t.column_names.index(n)
            t = t.set_column(i, pa.field(n, pa.string()), pc.cast(t[n], pa.string()))
        out.append(t)
    return out


def load(
    path: str | Path,
    *,
    format: str = "auto",
    strict: bool = False,
    trace_events: str | Path | None = None,
    engine: str = "auto",
    progress: ProgressFn | None = None,
    options: ParseOptions | None = None,
) -> Trace:
    """Parse a trace file into a :class:`Trace`.

    ``format``: ``auto`` or a name from :data:`parsers.FORMATS`; ``strict``: the first bad line
    is an error instead of a rejected row; ``trace_events``: the build's trace-events-all, whose
    definitions override the bundled catalog; ``engine``: ``auto``, ``numba`` or ``arrow``.
    """
    opts = options or make_options(strict=strict, trace_events=trace_events, engine=engine)
    stats = IngestStats(path=str(path), format=format)
    chunks = iter_chunks(path, opts, format=format, progress=progress, stats=stats)
    return Trace.from_chunks(chunks, stats, opts.catalog)
