"""Synthetic traces as JSON Lines: the canonical ``events`` table, one JSON object per line.

``{"ts_ns": 1700000000000000000, "tid": 1000, "event": "postcopy_place_page", "line": 7,
"args": "host=0x7f0000005000"}``: ``event`` required; ``ts_ns``, ``tid``, ``line`` integers or
null; ``args`` text (missing or null: empty); other keys are ignored. Read in blocks of whole
lines with pyarrow's JSON reader (a block that pyarrow refuses, e.g. a broken line or a value
of the wrong type, is read again line by line in Python so that only the bad lines are
rejected, naming the column), then decoded like the other synthetic formats
(:class:`parsers.synthetic_parquet.RecordDecoder`). Without ``line``, ``line`` is the line of
the object in the file. Blank lines count as ``other``. Documented in ``docs/synthetic.md``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from parsers.base import Chunk, ParseOptions
from parsers.synthetic_parquet import (
    RecordDecoder,
    Rejects,
    canonical_chunk,
    choose_engine,
    other_batch,
    reject_binary,
    text_block,
    text_lines,
)
from tracetool.inputs import Input, iter_line_blocks

name = "synthetic-jsonl"
description = "canonical events table as JSON Lines (ts_ns, tid, event, line, args)"
CLOCK = "as given in the file's ts_ns column (ns; null where absent)"

__all__ = ["choose_engine", "first_object", "parse", "read_objects", "sniff"]

SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("tid", pa.int64()),
        ("event", pa.string()),
        ("line", pa.int64()),
        ("args", pa.string()),
    ]
)


def first_object(head: bytes) -> dict | None:
    """The first non-blank line of ``head`` as a JSON object, if it is one."""
    if b"\0" in head[:4096]:
        return None
    for raw in head.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return obj if isinstance(obj, dict) else None
    return None


def sniff(head: bytes) -> bool:
    """First non-blank line: a JSON object with ``event`` and (``ts_ns`` or ``args``)."""
    obj = first_object(head)
    return obj is not None and "event" in obj and ("ts_ns" in obj or "args" in obj)


def read_json_block(lines: pa.Array, parse_options: pajson.ParseOptions) -> pa.Table | None:
    """pyarrow's JSON reader over a block of object lines: the table when it reads one row per
    line, None when it refuses the block (callers then read line by line)."""
    data = text_block(lines)
    try:
        table = pajson.read_json(
            io.BytesIO(data),
            read_options=pajson.ReadOptions(
                use_threads=False, block_size=max(1 << 16, len(data) + 1)
            ),
            parse_options=parse_options,
        )
    except pa.ArrowInvalid:
        return None
    return table if table.num_rows == len(lines) else None


def json_objects(lines: pa.Array) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(index, object, None)`` for each line that is a JSON object, ``(index, None, reason)``
    for the others (the line-by-line path, taken only for blocks pyarrow refused)."""
    for i, text in enumerate(lines.to_pylist()):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            yield i, None, f"not a JSON object: {exc}"
            continue
        if isinstance(obj, dict):
            yield i, obj, None
        else:
            yield i, None, f"not a JSON object: {type(obj).__name__}"


def read_objects(
    lines: pa.Array, schema: pa.Schema
) -> tuple[dict[str, pa.Array], np.ndarray, list[str]]:
    """Read JSON-object lines into ``schema``'s columns.

    Returns (columns of the good lines, mask of the good lines, reasons of the bad lines in
    order). Fast path: pyarrow's reader on the whole block; if it refuses the block, every line
    is read with :func:`json.loads` and checked against the schema's types (``int64``: an
    integer; ``string``: text; null or missing is null)."""
    n = len(lines)
    table = read_json_block(
        lines, pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    )
    if table is not None:
        return {f.name: table.column(f.name).combine_chunks() for f in schema}, np.ones(n, bool), []
    # Slow path (only for blocks pyarrow refused): line by line.
    values: dict[str, list] = {f.name: [] for f in schema}
    good = np.ones(n, bool)
    reasons: list[str] = []
    for i, obj, why in json_objects(lines):
        if obj is None:
            good[i] = False
            reasons.append(why)
            continue
        row = {}
        for f in schema:
            v = obj.get(f.name)
            if v is None:
                row[f.name] = None
            elif pa.types.is_integer(f.type):
                if isinstance(v, bool) or not isinstance(v, int):
                    reason = f"column {f.name}: expected an integer, got {v!r}"
                    break
                if not -(1 << 63) <= v < (1 << 63):
                    reason = f"column {f.name}: {v} is outside int64"
                    break
                row[f.name] = v
            elif isinstance(v, str):
                row[f.name] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f.name] = json.dumps(v)  # a number where text is expected: as written
            else:
                reason = f"column {f.name}: expected text, got {json.dumps(v)[:40]}"
                break
        else:
            for k, v in row.items():
                values[k].append(v)
            continue
        good[i] = False
        reasons.append(reason)
    cols = {f.name: pa.array(values[f.name], f.type) for f in schema}
    return cols, good, reasons


def parse(inp: Input, options: ParseOptions) -> Iterator[Chunk]:
    """Yield one chunk per block of whole lines."""
    size_hint = inp.size * (8 if inp.compression else 1) if inp.size is not None else None
    dec = RecordDecoder(options, inp.name, size_hint, "synthetic (jsonl)")
    first = 1
    for block, _offset in iter_line_blocks(inp, options.block_size):
        data = bytes(block)
        text, ok = text_lines(data)
        n = len(text)
        lineno = first + np.arange(n, dtype=np.int64)
        rejects = Rejects()
        reject_binary(text, ok, lineno, rejects)
        blank = ok & ~np.asarray(
            pc.match_substring_regex(text, r"\S").to_numpy(zero_copy_only=False), bool
        )
        oth = np.flatnonzero(blank)
        other = other_batch(lineno[oth], text.take(pa.array(oth)))
        rows = np.flatnonzero(ok & ~blank)
        row_text = text.take(pa.array(rows))
        cols, good, reasons = read_objects(row_text, SCHEMA)
        if not good.all():
            rejects.add(lineno[rows[~good]], reasons, row_text.filter(pa.array(~good)))
            rows = rows[good]
            row_text = row_text.filter(pa.array(good))
        yield canonical_chunk(
            dec, cols, lineno[rows], row_text, rejects, other=other, lines=n, nbytes=len(data)
        )
        first += n
