"""QEMU ``simple`` trace backend binaries (simpletrace v2, v3, v4; either byte order), streamed.

Layout: reference section 1.3 and :mod:`tracetool.simpletrace_write`. The file is read in blocks
of ``options.block_size`` bytes. Per block, one sequential scan finds the record boundaries
(a compiled numba kernel for big inputs, a ``struct`` loop for small ones: the same rules),
then everything else is vectorised: record headers are read with numpy structured dtypes laid
over the block at every record offset (``strides=(1,)`` views, byte order in the dtype), the
payloads of string-free events with the same structured views, string payloads with one
vectorised step per argument, and the argument text is rendered with
:func:`tracetool.catalog.render.render_args` (the log backend's text for the same values).

Tables (``docs/formats.md``, section "simpletrace"):

* ``events``: one row per event record; ``ts_ns`` = the record's CLOCK_MONOTONIC ns as stored,
  ``tid`` = the record's **pid** (the format has no thread id; v2 has neither: null),
  ``line`` = record number counting every record from 1 (header and mapping records
  included), ``args`` = the rendered argument text (null when the event is not in the catalog or
  its format cannot be rendered).
* typed batches keyed ``(name, catalog variant index)``; the variant is the newest definition
  whose argument layout fits the record's payload (file version's QEMU releases first).
* ``other``: the header and every mapping record (``mapping 7 = postcopy_place_page``).
* ``rejected``: records that cannot be decoded, and the point where the file is damaged.
* dropped-events records are events named ``dropped`` (args ``num_events_dropped=N``, typed
  column ``num_events_dropped``); each chunk carries ``dropped_events``, their sum.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers._log_common import wrap_int
from parsers.base import Chunk, NameRegistry, ParseOptions, resolve_engine, typed_schema
from tracetool.catalog import ArgKind, Catalog, EventDef
from tracetool.catalog.render import render_args
from tracetool.errors import FormatError, InputError
from tracetool.inputs import Input, _read_into, read_some
from tracetool.schema import EVENT_KEY_FIELDS, EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

name = "simpletrace"
description = "QEMU simple trace backend binary (simpletrace v2/v3/v4, little or big endian)"

HEADER_EVENT_ID = 0xFFFFFFFFFFFFFFFF
HEADER_MAGIC = 0xF2B177CB0AA429B4
DROPPED_EVENT_ID = 0xFFFFFFFFFFFFFFFE
VERSIONS = (2, 3, 4)
#: A record's length field (24 + payload) above this is damage. QEMU writes at most 10
#: arguments of 8 bytes or 4 + 512 bytes (strings are cut at 512), i.e. under 5.2 KiB.
MAX_RECORD = 64 << 10
#: A mapping record's name length above this (or 0) is damage; event names are identifiers.
MAX_NAME = 1024
#: QEMU releases that wrote each file version (to prefer the variants of that era).
ERA = {2: ((1, 2), (2, 0)), 3: ((2, 1), (2, 7)), 4: ((2, 8), None)}

# scan status codes
ST_END, ST_MORE, ST_BAD_TYPE, ST_SHORT_LEN, ST_LONG_LEN, ST_BAD_NAME = range(6)
K_MAPPING, K_EVENT = 0, 1

DROPPED_DEF = EventDef("dropped", (), None)


# -- detection -----------------------------------------------------------------------------


def _header(head: bytes) -> tuple[int, bool] | None:
    """(version, big_endian) if ``head`` starts with a simpletrace header, else None."""
    if len(head) < 24 or head[:8] != b"\xff" * 8:
        return None
    for big, fmt in ((False, "<QQ"), (True, ">QQ")):
        magic, version = struct.unpack_from(fmt, head, 8)
        if magic == HEADER_MAGIC:
            return version, big
    return None


def sniff(head: bytes) -> bool:
    """A simpletrace header (id ~0, magic in either byte order, any version)."""
    return _header(head) is not None


# -- engines -------------------------------------------------------------------------------


def choose_engine(options: ParseOptions, size_hint: int | None):
    """("numba" | "arrow", scan function) for ``options.engine``; "arrow" is the pure
    numpy/struct scan (the same rules)."""
    if resolve_engine(options.engine, size_hint) == "numba":
        from parsers import _simpletrace_kernels

        return "numba", _simpletrace_kernels.scan
    return "arrow", _scan_struct


def _scan_struct(buf, pos, end, v4, big, max_record, max_name, starts, ends, kinds):
    """Record boundaries of buf[pos:end], with ``struct`` (the numba engine runs the same rules
    compiled: ``parsers._simpletrace_kernels.scan``).

    Returns (records found, position reached, status, offending value)."""
    data = buf.data if isinstance(buf, np.ndarray) else buf
    q = struct.Struct(">Q" if big else "<Q").unpack_from
    i = struct.Struct(">I" if big else "<I").unpack_from
    n = 0
    cap = len(starts)
    while n < cap:
        left = end - pos
        if left == 0:
            return n, pos, ST_END, 0
        hsize = 0
        if v4:
            if left < 8:
                return n, pos, ST_MORE, 0
            typ = q(data, pos)[0]
            if typ > 1:
                return n, pos, ST_BAD_TYPE, pos
            if typ == 0:
                if left < 20:
                    return n, pos, ST_MORE, 0
                nlen = i(data, pos + 16)[0]
                if nlen == 0 or nlen > max_name:
                    return n, pos, ST_BAD_NAME, nlen
                if left < 20 + nlen:
                    return n, pos, ST_MORE, 0
                starts[n], ends[n], kinds[n] = pos, pos + 20 + nlen, K_MAPPING
                pos += 20 + nlen
                n += 1
                continue
            hsize = 8
        if left < hsize + 24:
            return n, pos, ST_MORE, 0
        length = i(data, pos + hsize + 16)[0]
        if length < 24:
            return n, pos, ST_SHORT_LEN, length
        if length > max_record:
            return n, pos, ST_LONG_LEN, length
        if left < hsize + length:
            return n, pos, ST_MORE, 0
        starts[n], ends[n], kinds[n] = pos, pos + hsize + length, K_EVENT
        pos += hsize + length
        n += 1
    return n, pos, ST_MORE if pos < end else ST_END, 0


# -- per-parse state -----------------------------------------------------------------------


@dataclass
class _Decoder:
    """How to decode the records of one event name: its candidate variants, newest first."""

    name: str
    #: (variant index in the catalog, definition, layout: True per string argument)
    candidates: list[tuple[int, EventDef, tuple[bool, ...]]]
    known: bool  # in the catalog


@dataclass
class SimpleContext:
    """State of one parse: options, names seen, the id -> name mapping, record numbers."""

    options: ParseOptions
    path: str
    registry: NameRegistry = field(default_factory=NameRegistry)
    version: int = 4
    big: bool = False
    idmap: dict[int, int] = field(default_factory=dict)  # v4 event id -> name code
    names: list[str] = field(default_factory=list)  # name code -> name
    codes: dict[str, int] = field(default_factory=dict)
    decoders: dict[int, _Decoder] = field(default_factory=dict)
    reg_ids: dict[int, int] = field(default_factory=dict)  # name code -> registry id
    line: int = 1  # number of the next record
    dropped_events: int = 0
    compiled: bool = False  # numba engine: compiled decode and printf
    render_ops: dict[int, tuple | None] = field(default_factory=dict)  # id(EventDef) -> ops
    program: object = None  # numba engine: parsers._simpletrace_fast.Program

    def code(self, name: str) -> int:
        c = self.codes.get(name)
        if c is None:
            c = self.codes[name] = len(self.names)
            self.names.append(name)
        return c

    def decoder(self, code: int) -> _Decoder:
        d = self.decoders.get(code)
        if d is None:
            d = self.decoders[code] = self._make_decoder(self.names[code])
        return d

    def _make_decoder(self, ev_name: str) -> _Decoder:
        variants = list(enumerate(self.options.catalog.variants(ev_name)))
        lo, hi = ERA[self.version]

        def in_era(ev: EventDef) -> bool:
            vlo, vhi = ev.versions
            return (vlo is None or hi is None or vlo <= hi) and (vhi is None or vhi >= lo)

        def newest(ev: EventDef) -> tuple[int, int]:
            vlo, vhi = ev.versions
            return (99, 99) if vhi is None else vhi

        ordered = sorted(
            variants, key=lambda iv: (not in_era(iv[1]), tuple(-x for x in newest(iv[1])))
        )
        cands = [(i, ev, tuple(a.ctype.is_string for a in ev.args)) for i, ev in ordered]
        return _Decoder(ev_name, cands, bool(variants))


def _order_lookup(catalog: Catalog) -> list[str] | None:
    """Event names by v2/v3 id (trace-events file order), or None for the bundled catalog
    (its order is not that of any QEMU build)."""
    if catalog is Catalog.bundled() or not catalog.order:
        return None
    return catalog.order


# -- reading -------------------------------------------------------------------------------


def parse(inp: Input, options: ParseOptions, ctx: SimpleContext | None = None) -> Iterator[Chunk]:
    """Yield one :class:`Chunk` per block of whole records of ``inp``."""
    ctx = ctx or SimpleContext(options, inp.name)
    size_hint = inp.size * (8 if inp.compression else 1) if inp.size is not None else None
    engine, scan = choose_engine(options, size_hint)
    ctx.compiled = engine == "numba"
    block_size = max(int(options.block_size), 1)  # a record longer than a block is carried
    head = read_some(inp, 24, 0)
    while len(head) < 24:
        more = read_some(inp, 24 - len(head), len(head))
        if not more:
            break
        head += more
    got = _header(head)
    if got is None:
        if len(head) < 24:
            msg = f"file ends inside the 24-byte simpletrace header ({len(head)} bytes)"
        else:
            msg = (
                "the first 24 bytes are not a simpletrace header (expected id "
                "0xffffffffffffffff, magic 0xf2b177cb0aa429b4, version)"
            )
        raise InputError(msg, path=inp.name, offset=0)
    version, big = got
    if version not in VERSIONS:
        raise InputError(
            f"simpletrace version {version} is not supported (versions 2, 3 and 4 are)",
            path=inp.name,
            offset=16,
        )
    ctx.version, ctx.big = version, big
    order = _order_lookup(options.catalog) if version < 4 else None
    header_text = f"header: simpletrace v{version}, {'big' if big else 'little'}-endian"
    pending_other = [(ctx.line, header_text)]
    ctx.line += 1
    offset = 24  # file offset of buf[0]
    # blocks are read into ``pool`` after the carried bytes ``pool[c0 : c0 + nc]`` (a record
    # cut by the block's end); the compiled walk copies what it keeps, so it reuses the pool
    reuse = ctx.compiled and block_size < 2**30  # (larger blocks take the numpy engine)
    pool, c0, nc = np.empty(0, np.uint8), 0, 0
    eof = False
    first = True
    while True:
        if reuse and len(pool) >= nc + block_size:
            pool[:nc] = pool[c0 : c0 + nc]
        else:
            fresh = np.empty(nc + block_size, np.uint8)
            fresh[:nc] = pool[c0 : c0 + nc]
            pool = fresh
        got = 0 if eof else _read_into(inp, memoryview(pool)[nc : nc + block_size], offset + nc)
        eof = eof or not got
        buf = pool[: nc + got]
        if not len(buf) and eof:
            if pending_other:
                yield _only_other(pending_other, ctx, 24)
            return
        cap = len(buf) // 20 + 1
        starts = np.empty(cap, np.int64)
        ends = np.empty(cap, np.int64)
        kinds = np.empty(cap, np.int8)
        n, pos, status, detail = scan(
            buf, 0, len(buf), version >= 4, big, MAX_RECORD, MAX_NAME, starts, ends, kinds
        )
        n, pos, status, detail = int(n), int(pos), int(status), int(detail)
        damage = None
        if status in (ST_BAD_TYPE, ST_SHORT_LEN, ST_LONG_LEN, ST_BAD_NAME):
            damage = _damage_text(status, detail, offset + pos, version)
        elif status == ST_MORE and eof:
            damage = _truncated_text(bytes(buf[pos:]), 0, offset + pos, version, big)
        chunk = _decode_block(
            buf, starts[:n], ends[:n], kinds[:n], offset, ctx, order, pending_other
        )
        pending_other = []
        if damage is not None:
            _add_damage(chunk, ctx, damage, bytes(buf[pos : pos + 32]), offset + pos)
            chunk.nbytes = len(buf) + (24 if first else 0)
            yield chunk
            return
        chunk.nbytes = pos + (24 if first else 0)
        if chunk.lines or chunk.nbytes:
            first = False
            yield chunk
        c0, nc = pos, len(buf) - pos
        offset += pos
        if eof and not nc:
            return


def _only_other(rows, ctx, nbytes) -> Chunk:
    other = pa.RecordBatch.from_arrays(
        [pa.array([r[0] for r in rows], pa.int64()), pa.array([r[1] for r in rows], pa.string())],
        schema=OTHER_SCHEMA,
    )
    chunk = Chunk(
        _empty_events(ctx), other, _empty(REJECTED_SCHEMA), lines=len(rows), nbytes=nbytes
    )
    chunk.dropped_events = 0
    return chunk


def _damage_text(status: int, detail: int, at: int, version: int) -> str:
    if status == ST_BAD_TYPE:
        return f"byte {at}: record type is not 0 (mapping) or 1 (event): damaged file"
    if status == ST_SHORT_LEN:
        return f"byte {at}: record length {detail} is below 24 (the record header): damaged file"
    if status == ST_LONG_LEN:
        return (
            f"byte {at}: record length {detail} is above {MAX_RECORD} bytes (QEMU records are "
            "under 5.2 KiB): damaged file"
        )
    return f"byte {at}: mapping name length {detail} is not 1..{MAX_NAME}: damaged file"


def _truncated_text(buf: bytes, pos: int, offset: int, version: int, big: bool) -> str:
    left = len(buf) - pos
    at = offset + pos
    need = None
    hsize = 8 if version >= 4 else 0
    try:
        if version >= 4 and left >= 8 and buf[pos : pos + 8] in (b"\0" * 8,):
            if left >= 20:
                need = 20 + struct.unpack_from(">I" if big else "<I", buf, pos + 16)[0]
            what = "mapping record"
        else:
            what = "event record"
            if left >= hsize + 24:
                need = hsize + struct.unpack_from(">I" if big else "<I", buf, pos + hsize + 16)[0]
    except struct.error:  # pragma: no cover - lengths checked above
        what = "record"
    size = f" of {need}" if need else ""
    return f"byte {at}: file ends inside a {what} ({left}{size} bytes): truncated file"


def _add_damage(chunk: Chunk, ctx: SimpleContext, reason: str, raw: bytes, at: int) -> None:
    if ctx.options.strict:
        raise FormatError(reason.split(": ", 1)[1], path=ctx.path, offset=at)
    row = pa.RecordBatch.from_arrays(
        [pa.array([ctx.line], pa.int64()), pa.array([reason]), pa.array([raw.hex(" ")])],
        schema=REJECTED_SCHEMA,
    )
    chunk.rejected = pa.Table.from_batches([chunk.rejected, row]).combine_chunks().to_batches()[0]
    chunk.lines += 1
    ctx.line += 1


# -- decoding one block --------------------------------------------------------------------


def _view(buf: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A structured view of ``dtype`` starting at every byte of ``buf`` (index = offset)."""
    n = len(buf) - dtype.itemsize + 1
    if n <= 0:
        return np.zeros(0, dtype)
    return np.ndarray((n,), dtype, buffer=buf, offset=0, strides=(1,))


def _dt(fields, big: bool) -> np.dtype:
    e = ">" if big else "<"
    return np.dtype([(f, e + t) for f, t in fields])


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _empty_events(ctx: SimpleContext) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array([], pa.int64()),
            pa.array([], pa.int32()),
            pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), ctx.registry.dictionary()),
            pa.array([], pa.int64()),
            pa.array([], pa.string()),
        ],
        schema=EVENTS_SCHEMA,
    )


def _gather(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, compiled: bool):
    """(int32 offsets, bytes): the byte ranges data[starts[i]:ends[i]] concatenated."""
    lens = ends - starts
    total = int(lens.sum())
    if compiled:
        from parsers._simpletrace_kernels import gather

        return gather(data, starts, ends, total)
    offsets = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    if total:
        out = data[np.repeat(starts - offsets[:-1], lens) + np.arange(total)]
    else:
        out = np.zeros(0, np.uint8)
    return offsets.astype(np.int32), out


def _strings_at(
    buf: np.ndarray, sst: np.ndarray, slen: np.ndarray, null_empty=True, compiled=False
) -> pa.Array:
    """Arrow strings of the byte ranges buf[sst : sst + slen] (invalid UTF-8 replaced); with
    ``null_empty``, empty ranges are nulls (QEMU writes a NULL ``char *`` as length 0)."""
    n = len(sst)
    offsets, data = _gather(buf, sst, sst + slen, compiled)
    total = len(data)
    empty = slen == 0
    nulls = int(empty.sum()) if null_empty else 0
    validity = pa.array(~empty, pa.bool_()).buffers()[1] if nulls else None
    arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity, nulls)
    if total and data.max() >= 0x80:
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            raw = pa.Array.from_buffers(
                pa.binary(),
                n,
                [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
                nulls,
            )
            arr = pa.array(
                [None if b is None else b.decode("utf-8", "replace") for b in raw.to_pylist()],
                pa.string(),
            )
    return arr


def _strings_hold_nul(buf, views, sst, slen, layout) -> np.ndarray:
    """Rows whose string arguments hold a NUL byte: QEMU writes C strings, so such a layout is
    the wrong variant (a <= 6.2 ``loadvm_process_command(uint16_t com, ...)`` payload also fits
    the 7.0+ ``(const char *s, ...)`` layout, as a string of NULs)."""
    nz = views.get("nulcum")
    if nz is None:
        nz = views["nulcum"] = np.concatenate(([0], np.cumsum(buf == 0, dtype=np.int64)))
    bad = np.zeros(len(sst), bool)
    for j, is_str in enumerate(layout):
        if is_str:
            st, ln = sst[:, j], slen[:, j]
            bad |= (ln > 0) & (
                nz[np.minimum(st + ln, len(nz) - 1)] - nz[np.minimum(st, len(nz) - 1)] > 0
            )
    return bad


def _decode_payloads(buf, views, pst, pen, layout, big, compiled=False):
    """Decode payloads buf[pst:pen] with ``layout`` (True = string argument): numpy structured
    views for string-free layouts, one vectorised step per argument otherwise (or the compiled
    kernel). Returns (ok mask, u64 values (n, k), string starts (n, k), string lengths (n, k))."""
    if compiled:
        from parsers._simpletrace_kernels import decode

        return decode(buf, pst, pen, np.array(layout, np.int8).reshape(-1), big)
    n, k = len(pst), len(layout)
    vals = np.zeros((n, k), np.uint64)
    sst = np.zeros((n, k), np.int64)
    slen = np.zeros((n, k), np.int64)
    plen = pen - pst
    if not any(layout):
        ok = plen == 8 * k
        if k and ok.any():
            rows = np.flatnonzero(ok)
            key = ("fixed", k)
            v = views.get(key)
            if v is None:
                v = views[key] = _view(buf, np.dtype((">u8" if big else "<u8", (k,))))
            vals[rows] = v[pst[rows]]
        return ok, vals, sst, slen
    u64 = views["u64"]
    u32 = views["u32"]
    ok = np.ones(n, bool)
    cur = pst.copy()
    limit = len(buf)
    for j, is_str in enumerate(layout):
        if is_str:
            ok &= cur + 4 <= pen
            at = np.where(ok, cur, 0)
            ln = np.where(ok, u32[np.minimum(at, limit - 4)], 0).astype(np.int64)
            ok &= cur + 4 + ln <= pen
            sst[:, j] = cur + 4
            slen[:, j] = np.where(ok, ln, 0)
            cur = np.where(ok, cur + 4 + ln, cur)
        else:
            ok &= cur + 8 <= pen
            at = np.where(ok, cur, 0)
            vals[:, j] = np.where(ok, u64[np.minimum(at, limit - 8)], 0)
            cur = np.where(ok, cur + 8, cur)
    ok &= cur == pen
    slen[~ok] = 0
    return ok, vals, sst, slen


def _typed_columns(ev: EventDef, buf, vals, sst, slen, compiled=False) -> list:
    cols = []
    for j, col in enumerate(ev.columns()):
        is_str = ev.args[j].ctype.is_string
        if col.kind is ArgKind.STRING:
            cols.append(
                _strings_at(buf, sst[:, j], slen[:, j], compiled=compiled) if is_str else None
            )
        elif is_str:  # a char * printed as a number: the pointer is not in the file
            cols.append(pa.nulls(len(vals), pa.uint64()))
        elif col.kind is ArgKind.FLOAT:
            cols.append(vals[:, j].view(np.int64).astype(np.float64))
        else:
            cols.append(wrap_int(vals[:, j].view(np.int64), col.kind, col.bits))
    return cols


# -- argument text ---------------------------------------------------------------------------

_CONV_OPS = {"d": (1, 10, 1), "i": (1, 10, 1), "u": (1, 10, 0), "x": (1, 16, 0), "X": (1, 16, 0)}
_CONV_OPS.update({"o": (1, 8, 0), "p": (2, 16, 0), "c": (4, 10, 0), "s": (3, 10, 0)})
_FLAG_BITS = {"-": 1, "+": 2, " ": 4, "#": 8, "0": 16}


def render_ops(ev: EventDef) -> tuple[np.ndarray, np.ndarray] | None:
    """The compiled printer's op table of ``ev``'s format, or None when it has conversions the
    kernel does not print (floats, ``%s`` with a width or precision, widths above 60): those
    go through :func:`render_args`."""
    from tracetool.catalog.render import format_specs

    if ev.plan is None:
        return None
    rows, lits = [], bytearray()
    cols = ev.columns()
    k = 0
    for piece in format_specs(ev.plan.fmt):
        if isinstance(piece, bytes):
            rows.append([0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, len(lits), len(piece)])
            lits += piece
            continue
        col = cols[k]
        k += 1
        op = _CONV_OPS.get(piece.conv)
        if op is None or piece.width > 60 or (piece.prec or 0) > 60:
            return None
        kind, base, signed = op
        if kind == 3 and (piece.width or piece.prec is not None or col.kind is not ArgKind.STRING):
            return None
        if kind != 3 and col.kind not in (
            ArgKind.SIGNED, ArgKind.UNSIGNED, ArgKind.POINTER, ArgKind.BOOL
        ):  # fmt: skip
            return None
        flags = sum(_FLAG_BITS.get(f, 0) for f in set(piece.flags))
        rows.append([
            kind, k - 1, base, flags, piece.width, -1 if piece.prec is None else piece.prec,
            piece.bits, signed, int(piece.conv == "X"), int(col.kind), col.bits, 0, 0,
        ])  # fmt: skip
    ops = np.array(rows, np.int64).reshape(-1, 13)
    return ops, np.frombuffer(bytes(lits) or b"\0", np.uint8).copy()


def _text_part(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(int64 offsets, bytes, validity or None) of an Arrow string array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    return offsets, data, valid


def _render(ev: EventDef, ctx: SimpleContext, buf, vals, sst, slen, cols, n):
    """The argument text of n decoded records: the compiled printer when the engine is numba
    and the format allows it, else :func:`render_args`."""
    if ctx.compiled:
        key = id(ev)
        if key not in ctx.render_ops:
            ctx.render_ops[key] = render_ops(ev)
        ops = ctx.render_ops[key]
        if ops is not None:
            from parsers._simpletrace_kernels import render

            table, lits = ops
            strs = [int(r[1]) for r in table if r[0] == 3]
            bound = n * (int(table[:, 12].sum()) + 140 * len(table)) + int(
                slen[:, strs].sum() if strs else 0
            )
            out = np.empty(bound, np.uint8)
            offsets = render(buf, vals, sst, slen, table, lits, out)
            data = out[: offsets[-1]]
            if not strs or not len(data) or data.max() < 0x80:
                return offsets, data, None
            try:  # string bytes that are not UTF-8: render_args replaces them
                pa.StringArray.from_buffers(
                    n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
                ).validate(full=True)
                return offsets, data, None
            except pa.ArrowInvalid:
                pass
    filled = [x if x is not None else pa.nulls(n, pa.string()) for x in cols]
    return _text_part(render_args(ev, filled, n))


def _null_part(n: int):
    return np.zeros(n + 1, np.int64), np.zeros(0, np.uint8), np.zeros(n, bool)


def _assemble(parts, ne: int, kept: np.ndarray, compiled: bool) -> pa.Array:
    """The args column in record order from per-group parts (rows, offsets, bytes, valid)."""
    starts = np.zeros(ne, np.int64)
    ends = np.zeros(ne, np.int64)
    valid = np.ones(ne, bool)
    datas = []
    base = 0
    for rows, offsets, data, ok in parts:
        starts[rows] = offsets[:-1] + base
        ends[rows] = offsets[1:] + base
        if ok is not None:
            valid[rows] = ok
        datas.append(data)
        base += len(data)
    data = np.concatenate(datas) if len(datas) > 1 else datas[0] if datas else np.zeros(0, np.uint8)
    offsets, out = _gather(data, starts[kept], ends[kept], compiled)
    v = valid[kept]
    nulls = int(len(v) - v.sum())
    validity = pa.array(v, pa.bool_()).buffers()[1] if nulls else None
    return pa.StringArray.from_buffers(
        len(kept), pa.py_buffer(offsets), pa.py_buffer(out), validity, nulls
    )


def _mappings(buf, starts, ends, kinds, lines, ctx: SimpleContext, pending_other):
    """The block's mapping records (v4; few, decoded in Python): (other-table line numbers,
    other-table text, their record indices, their ids, their name codes)."""
    other_lines = [ln for ln, _ in pending_other]
    other_text = [t for _, t in pending_other]
    map_idx = np.flatnonzero(kinds == K_MAPPING)
    m_ids = np.zeros(0, np.uint64)
    m_codes = np.zeros(0, np.int64)
    if len(map_idx):
        mv = _view(buf, _dt([("type", "u8"), ("id", "u8"), ("nlen", "u4")], ctx.big))
        m = mv[starts[map_idx]]
        m_ids = m["id"].astype(np.uint64)
        codes = []
        for i, s, mid in zip(
            map_idx.tolist(), starts[map_idx].tolist(), m_ids.tolist(), strict=True
        ):
            nm = bytes(buf[s + 20 : ends[i]]).decode("ascii", "replace")
            codes.append(ctx.code(nm))
            other_lines.append(int(lines[i]))
            other_text.append(f"mapping {mid} = {nm}")
        m_codes = np.array(codes, np.int64)
    return other_lines, other_text, map_idx, m_ids, m_codes


def _event_codes(ids, ev_idx, m_ids, m_codes, map_idx, ctx: SimpleContext, order) -> np.ndarray:
    """Name code of every event record (-1 unknown id, -2 dropped-events record); remembers
    the block's mappings for the next blocks."""
    ne = len(ids)
    code = np.full(ne, -1, np.int64)
    dropped = ids == np.uint64(DROPPED_EVENT_ID)
    if ctx.version >= 4:
        code = _resolve_v4(ids, ev_idx, m_ids, m_codes, map_idx, ctx)
        for mid, c in zip(m_ids.tolist(), m_codes.tolist(), strict=True):
            ctx.idmap[mid] = c
    elif order is not None and ne:
        inside = ids < np.uint64(len(order))
        uniq = np.unique(ids[inside])
        table = {int(u): ctx.code(order[int(u)]) for u in uniq}
        lut_ids = np.array(list(table), np.uint64)
        lut_codes = np.array(list(table.values()), np.int64)
        pos = np.searchsorted(lut_ids, ids[inside])
        code[inside] = lut_codes[np.minimum(pos, max(len(lut_ids) - 1, 0))] if len(lut_ids) else -1
    code[dropped] = -2
    return code


def _decode_block(buf, starts, ends, kinds, offset, ctx: SimpleContext, order, pending_other):
    """The chunk of one block of whole records: the numba engine's one compiled walk
    (:mod:`parsers._simpletrace_fast`), or vectorised numpy steps per name and variant."""
    if ctx.compiled and len(buf) < 2**31:  # the compiled walk's offsets are int32
        from parsers._simpletrace_fast import decode_block

        return decode_block(buf, starts, ends, kinds, offset, ctx, order, pending_other)
    big = ctx.big
    v4 = ctx.version >= 4
    hsize = 8 if v4 else 0
    n = len(starts)
    first_line = ctx.line
    lines = np.arange(first_line, first_line + n, dtype=np.int64)
    ctx.line += n
    views: dict = {}
    if len(buf) >= 8:
        views["u64"] = _view(buf, np.dtype(">u8" if big else "<u8"))
        views["u32"] = _view(buf, np.dtype(">u4" if big else "<u4"))

    other_lines, other_text, map_idx, m_ids, m_codes = _mappings(
        buf, starts, ends, kinds, lines, ctx, pending_other
    )
    is_map = kinds == K_MAPPING
    # event records: header fields through a structured view at every record offset
    ev_idx = np.flatnonzero(~is_map)
    ne = len(ev_idx)
    hv = _view(buf, _dt([("id", "u8"), ("ts", "u8"), ("len", "u4"), ("pid", "u4")], big))
    head = hv[starts[ev_idx] + hsize] if ne else np.zeros(0, hv.dtype)
    ids = head["id"].astype(np.uint64)
    ts = head["ts"].astype(np.uint64).view(np.int64)
    pid = head["pid"].astype(np.int64)
    pst = starts[ev_idx] + hsize + 24
    pen = ends[ev_idx]
    ev_lines = lines[ev_idx]

    code = _event_codes(ids, ev_idx, m_ids, m_codes, map_idx, ctx, order)

    # decode per name
    parts: list = []  # (rows, offsets, bytes, valid) of the argument text of each group
    compiled = ctx.compiled
    typed: dict[tuple[str, int], pa.RecordBatch] = {}
    rej_rows: list[np.ndarray] = []
    rej_reasons: list[pa.Array] = []
    keep = np.ones(ne, bool)
    ev_code_final = code.copy()
    tid = pid.astype(np.int64)
    tid_null = (pid > 2**31 - 1) | (ctx.version == 2)
    dropped_total = 0

    if ne:
        small = len(ctx.names) < 32000  # 16-bit keys: numpy's stable sort is a radix sort
        order_idx = np.argsort(code.astype(np.int16) if small else code, kind="stable")
        sorted_codes = code[order_idx]
        bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
        groups = np.split(order_idx, bounds)
    else:
        groups = []
    for rows in groups:
        c = int(code[rows[0]])
        if c == -1:
            rej_rows.append(rows)
            rej_reasons.append(
                _unknown_reasons(ids[rows], offset, starts[ev_idx[rows]], ctx, order)
            )
            keep[rows] = False
            continue
        if c == -2:
            ok = pen[rows] - pst[rows] == 8
            bad = rows[~ok]
            if len(bad):
                rej_rows.append(bad)
                rej_reasons.append(
                    pc.binary_join_element_wise(
                        "dropped-events record with a ",
                        pc.cast(pa.array(pen[bad] - pst[bad]), pa.string()),
                        "-byte payload (expected one 8-byte count)",
                        "",
                    )
                )
                keep[bad] = False
            good = rows[ok]
            cnt = views["u64"][pst[good]].astype(np.uint64) if len(good) else np.zeros(0, np.uint64)
            dropped_total += int(cnt.sum()) if len(good) else 0
            text = pc.binary_join_element_wise(
                "num_events_dropped=", pc.cast(pa.array(cnt), pa.string()), ""
            )
            parts.append((good, *_text_part(text)))
            schema = pa.schema([*EVENT_KEY_FIELDS, pa.field("num_events_dropped", pa.uint64())])
            typed[("dropped", 0)] = _typed_batch(
                schema, ts[good], tid[good], tid_null[good], ev_lines[good], [cnt]
            )
            ev_code_final[good] = ctx.code("dropped")
            continue
        dec = ctx.decoder(c)
        if not dec.known:
            parts.append((rows, *_null_part(len(rows))))
            continue
        remaining = rows
        for vi, ev, layout in dec.candidates:
            if not len(remaining):
                break
            ok, vals, sst, slen = _decode_payloads(
                buf, views, pst[remaining], pen[remaining], layout, big, compiled
            )
            if any(layout) and ok.any():
                ok &= ~_strings_hold_nul(buf, views, sst, slen, layout)
            if not ok.any():
                continue
            got = remaining[ok]
            vals, sst, slen = vals[ok], sst[ok], slen[ok]
            remaining = remaining[~ok]
            if ev.plan is None:
                parts.append((got, *_null_part(len(got))))
                continue
            cols = _typed_columns(ev, buf, vals, sst, slen, compiled)
            parts.append((got, *_render(ev, ctx, buf, vals, sst, slen, cols, len(got))))
            schema = typed_schema(ev)
            typed[(dec.name, vi)] = _typed_batch(
                schema, ts[got], tid[got], tid_null[got], ev_lines[got], cols
            )
        if len(remaining):
            rej_rows.append(remaining)
            rej_reasons.append(
                _layout_reasons(
                    dec, pen[remaining] - pst[remaining], offset, starts[ev_idx[remaining]]
                )
            )
            keep[remaining] = False
    ctx.dropped_events += dropped_total

    # events table in record order
    kept = np.flatnonzero(keep)
    args_col = _assemble(parts, ne, kept, compiled)
    events = pa.RecordBatch.from_arrays(
        [
            pa.array(ts[kept], pa.int64()),
            pa.array(tid[kept].astype(np.int32), pa.int32(), mask=tid_null[kept]),
            _name_column(ev_code_final[kept], ctx),
            pa.array(ev_lines[kept], pa.int64()),
            args_col,
        ],
        schema=EVENTS_SCHEMA,
    )
    rejected = _rejected(
        rej_rows, rej_reasons, buf, starts[ev_idx], ends[ev_idx], ev_lines, ctx, offset
    )
    return _chunk(
        events, other_lines, other_text, rejected, typed, n + len(pending_other), ctx, dropped_total
    )


def _name_column(ev_codes: np.ndarray, ctx: SimpleContext) -> pa.DictionaryArray:
    """The ``event`` column of rows with these name codes (registry ids in first-seen order)."""
    uniq_codes, first = np.unique(ev_codes, return_index=True)
    for cc in uniq_codes[np.argsort(first)].tolist():
        if cc not in ctx.reg_ids:
            ctx.reg_ids[cc] = ctx.registry.id(ctx.names[cc])
    lut = np.zeros(max(len(ctx.names), 1), np.int32)
    for cc, rid in ctx.reg_ids.items():
        lut[cc] = rid
    return pa.DictionaryArray.from_arrays(pa.array(lut[ev_codes]), ctx.registry.dictionary())


def _rejected(rej_rows, rej_reasons, buf, rec_starts, rec_ends, ev_lines, ctx, offset):
    """The rejected rows (event record indices and reasons, per group) in record order; under
    ``strict``, the first one as a FormatError."""
    if not rej_rows:
        return _empty(REJECTED_SCHEMA)
    rr = np.concatenate(rej_rows)
    reasons = pa.concat_arrays(rej_reasons)
    srt = np.argsort(rr, kind="stable")
    rr = rr[srt]
    reasons = reasons.take(pa.array(srt))
    if ctx.options.strict:
        first_bad = int(rr[0])
        raise FormatError(
            f"record {int(ev_lines[first_bad])}: {reasons[0].as_py()}",
            path=ctx.path,
            offset=offset + int(rec_starts[first_bad]),
        )
    texts = _record_hex(buf, rec_starts[rr], rec_ends[rr])
    return pa.RecordBatch.from_arrays(
        [pa.array(ev_lines[rr], pa.int64()), reasons, texts], schema=REJECTED_SCHEMA
    )


def _chunk(events, other_lines, other_text, rejected, typed, lines, ctx, dropped_total) -> Chunk:
    other = pa.RecordBatch.from_arrays(
        [pa.array(other_lines, pa.int64()), pa.array(other_text, pa.string())], schema=OTHER_SCHEMA
    )
    nev = events.num_rows
    shape = f"simpletrace v{ctx.version} {'big' if ctx.big else 'little'}-endian"
    chunk = Chunk(
        events,
        other,
        rejected,
        typed,
        lines=lines,
        nbytes=0,
        shapes=Counter({shape: nev}) if nev else Counter(),
    )
    chunk.dropped_events = dropped_total
    return chunk


def _typed_batch(schema, ts, tid, tid_null, lines, cols) -> pa.RecordBatch:
    mask = tid_null if np.any(tid_null) else None
    arrays = [
        pa.array(ts, pa.int64()),
        pa.array(tid.astype(np.int32, copy=False), pa.int32(), mask=mask),
        pa.array(lines, pa.int64()),
    ]
    for f, col in zip(list(schema)[3:], cols, strict=True):
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.array(col, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _resolve_v4(ids, ev_idx, m_ids, m_codes, map_idx, ctx: SimpleContext) -> np.ndarray:
    """Name code of every event record: the last mapping of its id before it (-1: none)."""
    ne = len(ids)
    code = np.full(ne, -1, np.int64)
    if not ne:
        return code
    if not len(m_ids) and ctx.idmap and max(ctx.idmap) < (1 << 20):
        # the common case: ids are small and every mapping came before this block
        top = max(ctx.idmap) + 1
        lut = np.full(top + 1, -1, np.int64)
        lut[np.array(list(ctx.idmap), np.int64)] = np.array(list(ctx.idmap.values()), np.int64)
        return lut[np.minimum(ids, np.uint64(top)).astype(np.int64)]
    uniq, inv = np.unique(ids, return_inverse=True)
    if not len(m_ids):  # the common case: every mapping came before this block
        lut = np.array([ctx.idmap.get(int(u), -1) for u in uniq.tolist()], np.int64)
        return lut[inv]
    # mappings inside the block: position-aware lookup (key = id rank, position)
    known = [(int(u), ctx.idmap[int(u)]) for u in uniq.tolist() if int(u) in ctx.idmap]
    all_ids = np.concatenate([np.array([k for k, _ in known], np.uint64), m_ids])
    all_pos = np.concatenate([np.full(len(known), -1, np.int64), map_idx.astype(np.int64)])
    all_codes = np.concatenate([np.array([c for _, c in known], np.int64), m_codes])
    ranks = np.unique(np.concatenate([uniq, all_ids]))
    span = np.int64(len(ev_idx) + len(map_idx) + 2)
    mkey = np.searchsorted(ranks, all_ids).astype(np.int64) * span + (all_pos + 1)
    srt = np.argsort(mkey, kind="stable")
    mkey, mcodes = mkey[srt], all_codes[srt]
    rrank = np.searchsorted(ranks, ids).astype(np.int64)
    rkey = rrank * span + (ev_idx.astype(np.int64) + 1)
    at = np.searchsorted(mkey, rkey, side="right") - 1
    valid = at >= 0
    valid[valid] &= mkey[at[valid]] // span == rrank[valid]
    code[valid] = mcodes[at[valid]]
    return code


def _const(text: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int32)), pa.array([text], pa.string())
    ).cast(pa.string())


def _unknown_reasons(ids, offset, rec_starts, ctx: SimpleContext, order) -> pa.Array:
    if ctx.version >= 4:
        why = "no mapping record names it before this record"
    elif order is None:
        why = (
            f"simpletrace v{ctx.version} names events by their position in the build's "
            "trace-events-all: pass that file with --trace-events"
        )
    else:
        why = f"the trace-events file has {len(order)} events"
    return pc.binary_join_element_wise(
        "unknown event id ", pc.cast(pa.array(ids), pa.string()), f": {why}", ""
    )


def _layout_reasons(dec: _Decoder, plen, offset, rec_starts) -> pa.Array:
    sigs = " or ".join(dict.fromkeys(ev.signature() for _, ev, _ in dec.candidates))
    return pc.binary_join_element_wise(
        pc.cast(pa.array(plen), pa.string()),
        f"-byte payload does not fit the arguments of {sigs}",
        "",
    )


def _record_hex(buf, starts, ends) -> pa.Array:
    """The first 48 bytes of each record, in hex (rejected rows' text)."""
    n = len(starts)
    w = 48
    ln = np.minimum(ends - starts, w)
    idx = np.minimum(starts[:, None] + np.arange(w), len(buf) - 1)
    raw = buf[idx]
    lut = np.frombuffer(b"0123456789abcdef", np.uint8)
    mat = np.empty((n, w, 3), np.uint8)
    mat[:, :, 0] = lut[raw >> 4]
    mat[:, :, 1] = lut[raw & 15]
    mat[:, :, 2] = 32
    mat = mat.reshape(n, w * 3)
    nd = np.maximum(ln * 3 - 1, 0)
    mask = np.arange(w * 3) < nd[:, None]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(nd, out=offsets[1:])
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(mat[mask]))
    )
