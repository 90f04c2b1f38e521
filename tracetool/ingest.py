"""Drive a parser over an input: stream chunks, keep the counts honest, collect a Trace."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import parsers
from parsers.base import Chunk, ParseOptions
from tracetool.catalog import Catalog
from tracetool.errors import TracetoolError
from tracetool.inputs import Input, open_input

#: progress(bytes of the underlying file read so far, its size or None)
ProgressFn = Callable[[int, int | None], None]


@dataclass
class IngestStats:
    """What was read: every line is an event, an other line or a rejected line."""

    path: str
    format: str
    compression: str | None = None
    engine: str = ""
    lines: int = 0
    events: int = 0
    other_lines: int = 0
    rejected_lines: int = 0
    bytes: int = 0
    seconds: float = 0.0
    shapes: Counter = field(default_factory=Counter)
    clock: str | None = None  # what ts_ns counts (the format module's CLOCK)
    dropped_events: int = 0  # events the tracer itself lost (simpletrace dropped records)
    input_damage: str | None = None  # a compressed input that broke off (lenient mode)

    def add(self, chunk: Chunk) -> None:
        self.lines += chunk.lines
        self.events += chunk.events.num_rows
        self.other_lines += chunk.other.num_rows
        self.rejected_lines += chunk.rejected.num_rows
        self.bytes += chunk.nbytes
        self.shapes.update(chunk.shapes)
        self.dropped_events += chunk.dropped_events
        if chunk.lines != chunk.events.num_rows + chunk.other.num_rows + chunk.rejected.num_rows:
            raise AssertionError("parser lost lines: counts do not add up")  # a bug, not input

    @property
    def balanced(self) -> bool:
        return self.lines == self.events + self.other_lines + self.rejected_lines

    @property
    def line_shape(self) -> str:
        return self.shapes.most_common(1)[0][0] if self.shapes else "none"


def make_options(
    *,
    strict: bool = False,
    trace_events: str | Path | None = None,
    engine: str = "auto",
    catalog: Catalog | None = None,
) -> ParseOptions:
    """Parse options with the bundled catalog, overridden by a user's trace-events file."""
    cat = catalog or Catalog.bundled()
    if trace_events is not None:
        from tracetool.catalog import read_trace_events

        cat = cat.with_overrides(read_trace_events(trace_events))
    return ParseOptions(catalog=cat, strict=strict, engine=engine)


def iter_chunks(
    path: str | Path,
    options: ParseOptions,
    *,
    format: str = "auto",
    progress: ProgressFn | None = None,
    stats: IngestStats | None = None,
) -> Iterator[Chunk]:
    """Open ``path``, pick its parser and yield its chunks, updating ``stats`` as they come."""
    inp: Input = open_input(path)
    try:
        if format == "auto":
            fmt = parsers.detect(inp)
        else:
            parsers.check_format(format, inp)
            fmt = format
        module = parsers.get(fmt)
        if stats is not None:
            stats.format = fmt
            stats.compression = inp.compression
            stats.clock = getattr(module, "CLOCK", None)
            if hasattr(module, "choose_engine"):
                size = inp.size * (8 if inp.compression else 1) if inp.size is not None else None
                stats.engine = module.choose_engine(options, size)[0]
        start = time.perf_counter()
        for chunk in module.parse(inp, options):
            if stats is not None:
                stats.add(chunk)
                stats.seconds = time.perf_counter() - start
            if progress is not None:
                progress(inp.raw_position(), inp.size)
            yield chunk
        if inp.damage is not None:
            if options.strict:
                raise inp.damage
            if stats is not None:
                stats.input_damage = str(inp.damage)
    except TracetoolError as exc:
        if exc.path is None:
            exc.path = inp.name
        raise
    finally:
        inp.close()
