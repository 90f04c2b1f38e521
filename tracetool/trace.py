"""The Trace object: the canonical tables of one trace file and typed per-event views."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
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
        self._replays: dict[tuple, object] = {}
        self._analyses = None
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

    @property
    def analyses(self):
        """The analyses (phases, postcopy_faults, balloon, policies, conflicts_map) as methods
        returning DataFrames: ``trace.analyses.postcopy_faults()``."""
        if self._analyses is None:
            from analyses import Analyses

            self._analyses = Analyses(self)
        return self._analyses

    @property
    def plot(self):
        """The figures (timeline, latency_histogram, latency_cdf, reclaimed, conflicts_map) as
        methods returning matplotlib Figures: ``trace.plot.timeline()``."""
        from tracetool.plots import Plots

        return Plots(self)

    def event_counts(self) -> dict[str, int]:
        """Number of records per event name, most frequent first."""
        if self._counts is None:
            if self.events.num_rows == 0:
                self._counts = {}
            else:
                col = self.events["event"]  # dictionaries unified: count the integer codes
                names = col.chunk(0).dictionary.to_pylist()
                counts = np.zeros(len(names), np.int64)
                for chunk in col.chunks:
                    codes = chunk.indices.to_numpy(zero_copy_only=False)
                    counts += np.bincount(codes, minlength=len(names))[: len(names)]
                pairs = sorted(
                    ((n, int(c)) for n, c in zip(names, counts, strict=True) if c),
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
                schema = event_schema(self.catalog, name)
                if schema is not None:
                    return schema.empty_table()
            raise MissingEventError(name, self.event_counts(), path=self.path)
        batches = self._typed.get(name)
        if batches:
            schema = event_schema(self.catalog, name) or batches[0].schema
            table = conform(batches, schema)
            n_typed = table.num_rows
            n_all = self.event_counts()[name]
            if n_typed != n_all:  # parsers reject records that match no variant: a bug if not
                raise AssertionError(f"{name}: {n_typed} typed rows for {n_all} records")
        else:
            rows = self.events.filter(self.event_mask(name))
            table = pa.table(
                [rows["ts_ns"], rows["tid"], rows["line"], rows["args"]],
                schema=pa.schema([*EVENT_KEY_FIELDS, pa.field("args", pa.string())]),
            )
        self._tables[name] = table
        return table

    def replay(
        self,
        policy: str | list[str] = "all",
        *,
        race_window_ns: int = 0,
        memory_map: str | None = None,
        host_page_size: int | None = None,
        qemu_version: str | None = None,
    ):
        """Replay the balloon and postcopy page events under one or more policies.

        ``policy``: ``all`` (no-inhibit, inhibit, inhibit-discard, defer), one policy name or a
        list; ``qemu`` is the rule of the QEMU version that wrote the trace. Returns a
        :class:`tracetool.replay.ReplayResult` (``.summary``, ``.conflicts``, ``.to_pandas()``).
        """
        from tracetool.replay import ALL_POLICIES, Policy, ReplayOptions, replay

        names = [policy] if isinstance(policy, str) else list(policy)
        pols: list[Policy] = []
        for n in names:
            pols.extend(ALL_POLICIES if n == "all" else [Policy.parse(n)])
        opts = ReplayOptions(
            policies=tuple(dict.fromkeys(pols)),
            race_window_ns=race_window_ns,
            memory_map=memory_map,
            host_page_size=host_page_size,
            qemu_version=qemu_version,
        )
        key = (opts.policies, race_window_ns, memory_map, host_page_size, qemu_version)
        if key not in self._replays:  # analyses and the CLI ask for the same replay
            self._replays[key] = replay(self, opts)
        return self._replays[key]

    def to_pandas(self, name: str | None = None) -> pd.DataFrame:
        """``events`` (or ``table(name)``) as a pandas DataFrame."""
        return (self.events if name is None else self.table(name)).to_pandas()

    # -- display ------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        from tracetool.display import trace_html

        return trace_html(self)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Trace {Path(s.path).name}: {s.format}, {s.events} events, "
            f"{s.other_lines} other, {s.rejected_lines} rejected, {len(self.event_counts())} names>"
        )


def event_schema(catalog: Catalog, name: str) -> pa.Schema | None:
    """Schema of ``name``'s typed table: key columns, then the union of its variants' columns
    (the newest variant's first); a column typed differently by two variants is a string."""
    variants = [v for v in catalog.variants(name) if v.plan is not None]
    if not variants:
        return None
    from parsers.base import typed_schema

    latest = catalog.latest(name)
    ordered = [latest, *[v for v in variants if v is not latest]]
    fields: dict[str, pa.Field] = {}
    for v in ordered:
        for f in typed_schema(v):
            old = fields.get(f.name)
            if old is None:
                fields[f.name] = f
            elif old.type != f.type:
                fields[f.name] = pa.field(f.name, pa.string())
    return pa.schema(list(fields.values()))


def conform(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    """Batches of one event's variants as one table of ``schema``, in line order."""
    tables = []
    for b in batches:
        cols = []
        for f in schema:
            if f.name in b.schema.names:
                col = b.column(f.name)
                cols.append(col if col.type == f.type else pc.cast(col, f.type))
            else:
                cols.append(pa.nulls(b.num_rows, f.type))
        tables.append(pa.Table.from_arrays(cols, schema=schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if len(tables) > 1 and not _in_line_order(table["line"]):
        table = table.take(np.argsort(table["line"].to_numpy(), kind="stable"))
    return table


def _in_line_order(lines: pa.ChunkedArray) -> bool:
    """Whether line numbers never decrease, checked chunk by chunk (concatenating the column
    first made a copy of it: 16 MB of peak memory for a 2M-row table)."""
    last = None
    for chunk in lines.chunks:
        if len(chunk):
            v = chunk.to_numpy(zero_copy_only=False)
            if (last is not None and v[0] < last) or (v[1:] < v[:-1]).any():
                return False
            last = v[-1]
    return True


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
