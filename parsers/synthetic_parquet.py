"""Synthetic traces as Parquet: the canonical ``events`` table, read back in batches.

A Parquet file with the columns of :data:`tracetool.schema.EVENTS_SCHEMA` (``event`` required;
``ts_ns``, ``tid``, ``line``, ``args`` optional), e.g. what ``tracetool convert TRACE -o
x.parquet`` writes, or a table a user built with pandas. The arguments of catalogued events are
decoded exactly as the log parser decodes them: every row becomes the text ``NAME ARGS``, which the
log parser's block decoder types (or rejects when the arguments match none of the event's
formats); ``ts_ns``, ``tid`` and ``line`` are the file's. Documented in ``docs/synthetic.md``.

This module also holds what the three canonical-table formats (Parquet, JSON Lines, CSV) and the
page-event form share: :class:`RecordDecoder` (rows -> :class:`~parsers.base.Chunk` through the
log decoder) and the checks of the canonical columns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers._log_arrow import _parse_decimal
from parsers._log_common import LogContext
from parsers.base import Chunk, ParseOptions
from parsers.qemu_log import choose_engine as _choose_engine
from tracetool.errors import FormatError, InputError
from tracetool.inputs import Input
from tracetool.schema import EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

name = "synthetic-parquet"
description = "canonical events table as Parquet (ts_ns, tid, event, line, args)"
CLOCK = "as given in the file's ts_ns column (ns; null where absent)"

COLUMNS = ("ts_ns", "tid", "event", "line", "args")
EVENT_NAME_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: A prefix that makes the log decoder take every line as a trace record (whatever its name);
#: its time and id are replaced by the row's.
_RECORD_PREFIX = "0@0.0:"
_INT32_MAX = (1 << 31) - 1


def sniff(head: bytes) -> bool:
    """Parquet magic."""
    return head[:4] == b"PAR1"


def choose_engine(options: ParseOptions, size_hint: int | None):
    return _choose_engine(options, size_hint)


# ---------------------------------------------------------------------------------------------
# Rows -> chunk


def _bool(arr) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _text_block(lines: pa.Array) -> bytes:
    """A string array as one block of ``\\n``-terminated lines."""
    joined = pc.binary_join_element_wise(lines, pa.scalar(""), pa.scalar("\n"))
    joined = joined.cast(pa.large_string())
    bufs = joined.buffers()
    if not len(joined) or bufs[2] is None:
        return b""
    off = np.frombuffer(bufs[1], np.int64, count=len(joined) + 1, offset=joined.offset * 8)
    return bytes(memoryview(bufs[2])[int(off[0]) : int(off[-1])])


class Rejects:
    """Rejected rows collected before decoding: (line, reason, text) groups."""

    def __init__(self) -> None:
        self.lines: list[np.ndarray] = []
        self.reasons: list[pa.Array] = []
        self.texts: list[pa.Array] = []

    def add(self, lines: np.ndarray, reasons, texts: pa.Array) -> None:
        lines = np.asarray(lines, np.int64)
        if not len(lines):
            return
        if isinstance(reasons, str):
            reasons = pa.repeat(pa.scalar(reasons), len(lines))
        elif not isinstance(reasons, pa.Array):
            reasons = pa.array(list(reasons), pa.string())
        self.lines.append(lines)
        self.reasons.append(reasons.cast(pa.string()))
        self.texts.append(texts.cast(pa.string()))

    def __len__(self) -> int:
        return sum(len(x) for x in self.lines)

    def batch(self) -> pa.RecordBatch:
        if not self.lines:
            return _empty(REJECTED_SCHEMA)
        lines = np.concatenate(self.lines)
        srt = pa.array(np.argsort(lines, kind="stable"))
        return pa.RecordBatch.from_arrays(
            [
                pa.array(lines, pa.int64()).take(srt),
                pa.concat_arrays(self.reasons).take(srt),
                pa.concat_arrays(self.texts).take(srt),
            ],
            schema=REJECTED_SCHEMA,
        )


def other_batch(lines: np.ndarray, texts: pa.Array | None) -> pa.RecordBatch:
    if texts is None or not len(lines):
        return _empty(OTHER_SCHEMA)
    return pa.RecordBatch.from_arrays(
        [pa.array(np.asarray(lines, np.int64), pa.int64()), texts.cast(pa.string())],
        schema=OTHER_SCHEMA,
    )


class RecordDecoder:
    """Rows of (event, args, ts_ns, tid, line) -> chunks, through the log parser's decoder.

    Each row becomes the log line ``0@0.0:EVENT ARGS`` (an ``ID@`` prefix makes the decoder take
    every row as a record, whatever its name); the decoder types the arguments of catalogued
    events with the catalog and rejects rows whose arguments match none of the formats. The
    row's own ``ts_ns``, ``tid`` and ``line`` then replace the decoder's. One decoder context
    (event-name dictionary, compiled-name table) serves the whole input.
    """

    def __init__(self, options: ParseOptions, path: str, size_hint: int | None, shape: str) -> None:
        self.ctx = LogContext(replace(options, strict=False), path)
        _, self.decode = choose_engine(options, size_hint)
        self.strict = options.strict
        self.path = path
        self.shape = shape

    def chunk(
        self,
        event: pa.Array,
        args: pa.Array,
        ts: pa.Array,
        tid: pa.Array,
        line: np.ndarray,
        *,
        texts: pa.Array | None = None,
        rejects: Rejects | None = None,
        other: pa.RecordBatch | None = None,
        lines: int | None = None,
        nbytes: int = 0,
    ) -> Chunk:
        """Decode rows; ``texts`` (the rows as written) is what a rejected row shows
        (default ``EVENT ARGS``); ``rejects``/``other`` are rows the caller already classified;
        ``lines`` defaults to every row counted once."""
        rejects = rejects if rejects is not None else Rejects()
        other = other if other is not None else _empty(OTHER_SCHEMA)
        n_rows = len(event)
        event = event.cast(pa.string())
        args = args.cast(pa.string()).fill_null("")
        ts = ts.cast(pa.int64())
        tid = tid.cast(pa.int32())
        line = np.asarray(line, np.int64)
        if texts is None:
            texts = pc.binary_join_element_wise(event.fill_null(""), args, " ")

        # Rows the decoder cannot take as one line.
        bad_name = ~_bool(pc.match_substring_regex(event, EVENT_NAME_REGEX))
        bad_args = _bool(pc.match_substring_regex(args, r"[\n\x00]|\r$"))
        bad_args &= ~bad_name
        if bad_name.any():
            shown = pc.fill_null(event, "").filter(pa.array(bad_name)).to_pylist()
            rejects.add(
                line[bad_name],
                [
                    "column event: missing"
                    if not v
                    else f"column event: {v!r} is not an event name ([A-Za-z_][A-Za-z0-9_]*)"
                    for v in shown
                ],
                texts.filter(pa.array(bad_name)),
            )
        if bad_args.any():
            rejects.add(
                line[bad_args],
                "column args: holds a line break or a NUL byte (one record is one line)",
                texts.filter(pa.array(bad_args)),
            )
        ok = np.flatnonzero(~(bad_name | bad_args))
        if len(ok) < n_rows:
            take = pa.array(ok)
            event, args, ts, tid, texts = (
                event.take(take),
                args.take(take),
                ts.take(take),
                tid.take(take),
                texts.take(take),
            )
            line = line[ok]

        if len(event):
            head = pc.binary_join_element_wise(pa.scalar(_RECORD_PREFIX), event, "")
            block = _text_block(pc.binary_join_element_wise(head, args, " "))
            sub = self.decode(block, 1, self.ctx)
        else:
            sub = Chunk(_empty(EVENTS_SCHEMA), _empty(OTHER_SCHEMA), _empty(REJECTED_SCHEMA))
        if sub.other.num_rows:  # cannot happen with the ID@ prefix; never lose a row
            idx = sub.other.column(0).to_numpy() - 1
            rejects.add(line[idx], "not a trace record", texts.take(pa.array(idx)))
        if sub.rejected.num_rows:
            idx = sub.rejected.column(0).to_numpy() - 1
            rejects.add(line[idx], sub.rejected.column(1), texts.take(pa.array(idx)))

        def remap(batch: pa.RecordBatch) -> pa.RecordBatch:
            idx = pa.array(batch.column(batch.schema.names.index("line")).to_numpy() - 1)
            arrays = list(batch.columns)
            names = batch.schema.names
            arrays[names.index("ts_ns")] = ts.take(idx)
            arrays[names.index("tid")] = tid.take(idx)
            arrays[names.index("line")] = pa.array(line, pa.int64()).take(idx)
            return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)

        events = remap(sub.events)
        typed = {key: remap(b) for key, b in sub.typed.items()}
        rejected = rejects.batch()
        if self.strict and rejected.num_rows:
            raise FormatError(
                rejected.column(1)[0].as_py(), path=self.path, line=rejected.column(0)[0].as_py()
            )
        total = events.num_rows + other.num_rows + rejected.num_rows
        return Chunk(
            events=events,
            other=other,
            rejected=rejected,
            typed=typed,
            lines=total if lines is None else lines,
            nbytes=nbytes,
            shapes=Counter({self.shape: events.num_rows}) if events.num_rows else Counter(),
        )


# ---------------------------------------------------------------------------------------------
# Canonical columns


def int_strings(s: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimal integer strings -> (int64 values, present, bad): ``present`` where not null or
    empty, ``bad`` where present but not an int64 (``[+-]?digits``, spaces around allowed)."""
    s = pc.utf8_trim_whitespace(s.cast(pa.string()))
    present = _bool(pc.and_(pc.is_valid(s), pc.not_equal(s, "")))
    shape = _bool(pc.match_substring_regex(s, r"^[+-]?[0-9]+$"))
    s = pc.replace_substring_regex(s, r"^\+", "")
    safe = pc.if_else(pa.array(shape), s, "0")
    vals, over = _parse_decimal(safe, True)
    vals = np.where(shape & ~over, vals, 0)
    return vals, present, present & (~shape | over)


def canonical_chunk(dec, data_cols: dict, default_line, texts: pa.Array, rejects, **kw):
    """The chunk of rows given as canonical columns: checked (bad rows rejected), decoded."""
    keep, c = canonical_columns(data_cols, default_line, texts, rejects)
    return dec.chunk(
        c["event"], c["args"], c["ts_ns"], c["tid"], c["line"].to_numpy(),
        texts=texts.take(pa.array(keep)), rejects=rejects, **kw,
    )  # fmt: skip


def canonical_columns(
    cols: dict[str, pa.Array], default_line: np.ndarray, texts: pa.Array, rejects: Rejects
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Check and type the canonical columns of a batch (strings or numbers).

    Returns (rows to keep, {event, args, ts_ns, tid, line}); bad values are added to
    ``rejects`` naming the column. A missing or null ``line`` is ``default_line``.
    """
    n = len(default_line)
    bad = np.zeros(n, bool)
    reasons: list[tuple[np.ndarray, str]] = []
    out: dict[str, pa.Array] = {}
    ints: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for col in ("ts_ns", "tid", "line"):
        arr = cols.get(col)
        if arr is None:
            ints[col] = (np.zeros(n, np.int64), np.zeros(n, bool))
            continue
        if pa.types.is_integer(arr.type):
            v = arr.cast(pa.int64())
            present = _bool(v.is_valid())
            vals = v.fill_null(0).to_numpy(zero_copy_only=False)
            b = np.zeros(n, bool)
        elif pa.types.is_floating(arr.type):
            f = arr.to_numpy(zero_copy_only=False)
            present = ~np.isnan(f)
            integral = present & np.isfinite(f) & (np.trunc(np.nan_to_num(f)) == np.nan_to_num(f))
            integral &= np.abs(np.nan_to_num(f)) < 2.0**63
            vals = np.where(integral, np.nan_to_num(f), 0).astype(np.int64)
            b = present & ~integral
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            vals, present, b = int_strings(arr)
        elif pa.types.is_null(arr.type):
            vals, present, b = np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool)
        else:
            raise FormatError(f"column {col}: expected integers, found {arr.type}")
        if b.any():
            reasons.append((b & ~bad, f"column {col}: not an integer"))
            bad |= b
        ints[col] = (vals, present)
    tid_v, tid_p = ints["tid"]
    b = tid_p & ((tid_v < -(1 << 31)) | (tid_v > _INT32_MAX)) & ~bad
    if b.any():
        reasons.append((b, "column tid: outside int32"))
        bad |= b
    line_v, line_p = ints["line"]
    b = line_p & (line_v < 1) & ~bad
    if b.any():
        reasons.append((b, "column line: must be 1 or more"))
        bad |= b
    for mask, reason in reasons:
        rejects.add(default_line[mask], reason, texts.filter(pa.array(mask)))
    keep = np.flatnonzero(~bad)
    for col in ("event", "args"):
        arr = cols.get(col)
        if arr is None:
            arr = pa.nulls(n, pa.string())
        elif pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if not (
            pa.types.is_string(arr.type)
            or pa.types.is_large_string(arr.type)
            or pa.types.is_null(arr.type)
        ):
            raise FormatError(f"column {col}: expected text, found {arr.type}")
        out[col] = arr.cast(pa.string()).take(pa.array(keep))
    ts_v, ts_p = ints["ts_ns"]
    out["ts_ns"] = pa.array(ts_v[keep], pa.int64(), mask=~ts_p[keep])
    out["tid"] = pa.array(tid_v[keep].astype(np.int32), pa.int32(), mask=~tid_p[keep])
    out["line"] = pa.array(np.where(line_p, line_v, default_line)[keep], pa.int64())
    return keep, out


# ---------------------------------------------------------------------------------------------
# Parquet


def _open(inp: Input):
    import pyarrow.parquet as pq

    stream = inp.stream
    source = stream
    seekable = inp.compression is None and getattr(stream, "seekable", lambda: False)()
    if not seekable:
        source = pa.BufferReader(stream.read())
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=inp.name) from None


def parse(inp: Input, options: ParseOptions) -> Iterator[Chunk]:
    """Yield one chunk per Parquet record batch (about ``block_size / 64`` rows)."""
    pf = _open(inp)
    names = pf.schema_arrow.names
    if "event" not in names:
        raise FormatError(
            "Parquet file without an 'event' column: expected the canonical events table "
            f"({', '.join(COLUMNS)}); found {', '.join(names)}",
            path=inp.name,
        )
    cols = [c for c in COLUMNS if c in names]
    size_hint = (pf.metadata.num_rows * 64) if pf.metadata is not None else None
    dec = RecordDecoder(options, inp.name, size_hint, "synthetic (parquet)")
    row = 0
    batch_rows = max(1024, options.block_size // 64)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
        n = batch.num_rows
        default_line = np.arange(row + 1, row + n + 1, dtype=np.int64)
        data = {c: batch.column(c) for c in cols}
        rejects = Rejects()
        ev = data["event"]
        ev = ev.cast(ev.type.value_type) if pa.types.is_dictionary(ev.type) else ev
        args = data.get("args", pa.nulls(n, pa.string()))
        texts = pc.binary_join_element_wise(
            ev.cast(pa.string()).fill_null(""), args.cast(pa.string()).fill_null(""), " "
        )
        yield canonical_chunk(dec, data, default_line, texts, rejects, lines=n, nbytes=batch.nbytes)
        row += n


# ---------------------------------------------------------------------------------------------
# Text formats (JSON Lines, CSV): blocks of whole lines


def text_lines(data: bytes) -> tuple[pa.Array, np.ndarray]:
    """The lines of a block (without ``\\n`` and one trailing ``\\r``) and a mask of the lines
    that are text: valid UTF-8 without NUL (the others are shown with U+FFFD)."""
    from parsers._log_arrow import _invalid_utf8_lines, split_lines

    starts, ends, text = split_lines(data)
    n = len(starts)
    ok = np.ones(n, bool)
    buf = np.frombuffer(data, np.uint8)
    ok[np.searchsorted(starts, np.flatnonzero(buf == 0), side="right") - 1] = False
    ok[_invalid_utf8_lines(data, starts)] = False
    if not ok.all():
        texts = [  # rare: rebuild the text of the block in Python
            bytes(data[starts[i] : ends[i]]).decode("utf-8", "replace").replace("\0", "\ufffd")
            for i in range(n)
        ]
        text = pa.array(texts, pa.string())
    return text, ok


def reject_binary(text: pa.Array, ok: np.ndarray, lineno: np.ndarray, rejects: Rejects) -> None:
    bad = ~ok
    if bad.any():
        rejects.add(
            lineno[bad], "line is not UTF-8 text (invalid bytes or NUL)", text.filter(pa.array(bad))
        )


def text_block(lines: pa.Array) -> bytes:
    """Lines as one ``\\n``-terminated block (to feed a pyarrow reader)."""
    return _text_block(lines)
