"""Synthetic traces as CSV: the canonical ``events`` table, one record per line.

The first line is a header naming the columns (``event`` and ``ts_ns`` are what detection looks
for; ``tid``, ``line``, ``args`` optional; other columns are ignored), e.g. what ``tracetool
convert TRACE -o x.csv`` writes. Read in blocks of whole lines with pyarrow's CSV reader (every
column as text), then typed and decoded like the other synthetic formats
(:class:`parsers.synthetic_parquet.RecordDecoder`). A value may be quoted (commas, quotes), but
must not hold a line break. An empty unquoted ``ts_ns``/``tid`` is null; ``args`` empty or
missing is the empty string. Without a ``line`` column (or where it is empty) ``line`` is the
line of the record in the file (the header is line 1). Blank lines and the header count as
``other`` lines. Documented in ``docs/synthetic.md``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from parsers.base import Chunk, ParseOptions
from parsers.synthetic_parquet import (
    COLUMNS,
    RecordDecoder,
    Rejects,
    canonical_chunk,
    choose_engine,
    other_batch,
    reject_binary,
    text_block,
    text_lines,
)
from tracetool.errors import FormatError
from tracetool.inputs import Input, iter_line_blocks

name = "synthetic-csv"
description = "canonical events table as CSV with a header (ts_ns, tid, event, line, args)"
CLOCK = "as given in the file's ts_ns column (ns; null where absent)"

__all__ = ["choose_engine", "parse", "sniff"]


def header_names(line: str) -> list[str]:
    """Column names of a CSV header line (quotes allowed; spaces around names dropped)."""
    row = next(csv.reader([line.lstrip("\ufeff")]), [])
    return [c.strip() for c in row]


def _first_line(head: bytes) -> str | None:
    text = head.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip():
            return line
    return None


def sniff(head: bytes) -> bool:
    """First non-blank line: a CSV header with ``event`` and ``ts_ns`` columns."""
    if b"\0" in head[:4096]:
        return False
    line = _first_line(head)
    if line is None or line.lstrip().startswith(("{", "#")):
        return False
    names = set(header_names(line))
    return {"event", "ts_ns"} <= names


def read_rows(
    lines: pa.Array, names: list[str], wanted: list[str]
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Parse non-blank CSV lines (no header) with every wanted column as text.

    Returns the table of the well-formed rows and ``(index, reason)`` of the others (index in
    ``lines``)."""
    bad: list[tuple[int, str]] = []

    def invalid(row) -> str:
        bad.append(
            (
                row.number - 1,
                f"row has {row.actual_columns} fields, the header has {row.expected_columns}",
            )
        )
        return "skip"

    data = text_block(lines)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(1 << 16, len(data) + 1)
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise FormatError(f"CSV: {exc}") from None
    return table, bad


def parse(inp: Input, options: ParseOptions) -> Iterator[Chunk]:
    """Yield one chunk per block of whole lines."""
    size_hint = inp.size * (8 if inp.compression else 1) if inp.size is not None else None
    dec = RecordDecoder(options, inp.name, size_hint, "synthetic (csv)")
    names: list[str] | None = None
    first = 1
    for block, _offset in iter_line_blocks(inp, options.block_size):
        data = bytes(block)
        text, ok = text_lines(data)
        n = len(text)
        lineno = first + np.arange(n, dtype=np.int64)
        rejects = Rejects()
        reject_binary(text, ok, lineno, rejects)
        blank = ok & (pc.utf8_length(text).to_numpy(zero_copy_only=False) == 0)
        other = blank.copy()
        if names is None:
            cand = np.flatnonzero(ok & ~blank)
            if len(cand):
                h = int(cand[0])
                names = header_names(text[h].as_py())
                if "event" not in names:
                    raise FormatError(
                        f"CSV header without an 'event' column: {text[h].as_py()!r}; expected "
                        f"the canonical events columns {', '.join(COLUMNS)}",
                        path=inp.name,
                        line=int(lineno[h]),
                    )
                other[h] = True
        rows = np.flatnonzero(ok & ~other)
        oth = np.flatnonzero(other)
        other_b = other_batch(lineno[oth], text.take(pa.array(oth)))
        if names is None or not len(rows):
            yield dec.chunk(
                pa.array([], pa.string()),
                pa.array([], pa.string()),
                pa.array([], pa.int64()),
                pa.array([], pa.int32()),
                np.zeros(0, np.int64),
                rejects=rejects,
                other=other_b,
                lines=n,
                nbytes=len(data),
            )
            first += n
            continue
        row_text = text.take(pa.array(rows))
        wanted = [c for c in COLUMNS if c in names]
        try:
            table, bad = read_rows(row_text, names, wanted)
        except FormatError as exc:
            exc.path = inp.name
            exc.line = int(lineno[rows[0]])
            raise
        good = np.ones(len(rows), bool)
        if bad:
            idx = np.array([i for i, _ in bad], np.int64)
            good[idx] = False
            rejects.add(
                lineno[rows[idx]],
                [r for _, r in bad],
                row_text.take(pa.array(idx)),
            )
        rows = rows[good]
        row_text = row_text.filter(pa.array(good))
        data_cols = {c: table.column(c).combine_chunks() for c in wanted}
        yield canonical_chunk(
            dec,
            data_cols,
            lineno[rows],
            row_text,
            rejects,
            other=other_b,
            lines=n,
            nbytes=len(data),
        )
        first += n
