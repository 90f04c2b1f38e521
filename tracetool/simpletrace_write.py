"""Write QEMU ``simple`` trace backend files (simpletrace v2, v3, v4), for tests and generators.

Layout (reference section 1.3; all integers unsigned, in the chosen byte order)::

    header   u64 0xffffffffffffffff, u64 0xf2b177cb0aa429b4, u64 version
    mapping  (v4 only) u64 0, u64 event_id, u32 len, name bytes
    record   (v4: u64 1,) u64 event_id, u64 ts_ns, u32 length, u32 pid (v2: 0), payload
             length = 24 + len(payload); payload: per argument a u64, or u32 n + n bytes
    dropped  a record of event id 0xfffffffffffffffe with one u64 argument (events dropped)

v2/v3 have no record type word and no mapping records: an event id is the position of the event
in the build's trace-events file (``Catalog.order``). Strings longer than ``max_strlen`` (QEMU:
512) are cut like QEMU does; ``None`` is a NULL string (written with length 0, as QEMU does).

>>> import io
>>> out = io.BytesIO()
>>> w = SimpletraceWriter(out)
>>> w.header(); w.mapping(7, "postcopy_place_page"); w.record(7, 1000, [0x7F0000001000], pid=42)
>>> len(out.getvalue())
103
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

HEADER_EVENT_ID = 0xFFFFFFFFFFFFFFFF
HEADER_MAGIC = 0xF2B177CB0AA429B4
DROPPED_EVENT_ID = 0xFFFFFFFFFFFFFFFE
RECORD_TYPE_MAPPING = 0
RECORD_TYPE_EVENT = 1
MAX_STRLEN = 512
VERSIONS = (2, 3, 4)

Arg = int | bytes | str | None


def _u64(v: int) -> int:
    return int(v) & 0xFFFFFFFFFFFFFFFF


def _bytes(v: bytes | str | None, max_strlen: int) -> bytes:
    if v is None:
        return b""
    b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
    return b[:max_strlen]


class SimpletraceWriter:
    """Write a simpletrace file record by record, or many records of one event at once.

    ``file``: a path or a binary file object (not closed by :meth:`close` unless opened here).
    ``version``: 2, 3 or 4; ``byteorder``: ``"little"`` or ``"big"`` (the QEMU host's);
    ``pid``: the pid field of records (v3/v4; v2 writes 0, its reserved field).
    """

    def __init__(
        self,
        file: str | os.PathLike | BinaryIO,
        *,
        version: int = 4,
        byteorder: str = "little",
        pid: int = 0,
        max_strlen: int = MAX_STRLEN,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"simpletrace version {version} cannot be written; use 2, 3 or 4")
        if byteorder not in ("little", "big"):
            raise ValueError("byteorder must be 'little' or 'big'")
        if isinstance(file, (str, os.PathLike)):
            self._f: BinaryIO = open(file, "wb")  # noqa: SIM115
            self._own = True
        else:
            self._f = file
            self._own = False
        self.version = version
        self.byteorder = byteorder
        self.pid = pid
        self.max_strlen = max_strlen
        self._e = "<" if byteorder == "little" else ">"
        self.records_written = 0  # every record: header, mappings, events, dropped

    # -- context manager ----------------------------------------------------------------
    def __enter__(self) -> SimpletraceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.flush()
        if self._own:
            self._f.close()

    def write_raw(self, data: bytes) -> None:
        """Append bytes as they are (to build damaged files in tests)."""
        self._f.write(data)

    # -- records ------------------------------------------------------------------------
    def _int(self, v: int, size: int) -> bytes:
        return (int(v) & ((1 << (8 * size)) - 1)).to_bytes(size, self.byteorder)

    def header(self) -> None:
        self._f.write(
            self._int(HEADER_EVENT_ID, 8) + self._int(HEADER_MAGIC, 8) + self._int(self.version, 8)
        )
        self.records_written += 1

    def mapping(self, event_id: int, name: str) -> None:
        """A v4 name <-> id mapping record (may appear anywhere after the header)."""
        if self.version < 4:
            raise ValueError(f"simpletrace v{self.version} has no mapping records")
        raw = name.encode("ascii")
        self._f.write(
            self._int(RECORD_TYPE_MAPPING, 8)
            + self._int(event_id, 8)
            + self._int(len(raw), 4)
            + raw
        )
        self.records_written += 1

    def payload(self, args: Sequence[Arg]) -> bytes:
        """The payload bytes of ``args`` (ints as u64, strings as u32 length + bytes)."""
        out = bytearray()
        for a in args:
            if a is None or isinstance(a, (bytes, bytearray, str)):
                b = _bytes(a, self.max_strlen)
                out += self._int(len(b), 4) + b
            else:
                out += self._int(_u64(a), 8)
        return bytes(out)

    def record(
        self, event_id: int, ts_ns: int, args: Sequence[Arg] = (), pid: int | None = None
    ) -> None:
        """One event record; ``args`` in declaration order (int, bytes/str, or None)."""
        self.raw_record(event_id, ts_ns, self.payload(args), pid)

    def raw_record(
        self, event_id: int, ts_ns: int, payload: bytes, pid: int | None = None, length=None
    ) -> None:
        """A record with an arbitrary payload (and optionally a wrong ``length`` field)."""
        pid = self.pid if pid is None else pid
        if self.version == 2:
            pid = 0
        head = self._int(RECORD_TYPE_EVENT, 8) if self.version >= 4 else b""
        n = 24 + len(payload) if length is None else length
        self._f.write(
            head
            + self._int(event_id, 8)
            + self._int(ts_ns, 8)
            + self._int(n, 4)
            + self._int(pid, 4)
            + payload
        )
        self.records_written += 1

    def dropped(self, ts_ns: int, count: int, pid: int | None = None) -> None:
        """A dropped-events record: ``count`` events were lost before ``ts_ns``."""
        self.record(DROPPED_EVENT_ID, ts_ns, [count], pid)

    # -- vectorised ---------------------------------------------------------------------
    def records(
        self,
        event_id: int,
        ts_ns: Sequence[int] | np.ndarray,
        args_columns: Sequence[Sequence[Arg] | np.ndarray] = (),
        pid: int | np.ndarray | None = None,
    ) -> None:
        """Many records of one event at once, built with numpy.

        ``ts_ns``: one timestamp per record; ``args_columns``: one column per argument, in
        declaration order: an integer array (u64 bit patterns; negative values are written
        two's complement) or, for a string argument, a sequence of bytes/str/None (a numpy
        object array, a list, or an Arrow string/binary array). ``pid``: one value or one per
        record.
        """
        data = self.records_bytes(event_id, ts_ns, args_columns, pid)
        self._f.write(data)
        self.records_written += len(np.asarray(ts_ns))

    def records_bytes(self, event_id, ts_ns, args_columns=(), pid=None) -> bytes:
        """The bytes :meth:`records` writes."""
        ts = np.asarray(ts_ns).astype(np.int64, copy=False).view(np.uint64)
        n = len(ts)
        if n == 0:
            return b""
        e = self._e
        hsize = 32 if self.version >= 4 else 24
        pids = np.broadcast_to(
            np.asarray(self.pid if pid is None else pid, np.int64).astype(np.uint32), (n,)
        )
        if self.version == 2:
            pids = np.zeros(n, np.uint32)
        kinds: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        lens = np.full(n, hsize, np.int64)
        for col in args_columns:
            strs = _as_strings(col, self.max_strlen)
            if strs is None:
                vals = _as_u64(col)
                if len(vals) != n:
                    raise ValueError("argument columns must have one value per record")
                kinds.append(("u64", vals, None))
                lens += 8
            else:
                offsets, data = strs
                if len(offsets) != n + 1:
                    raise ValueError("argument columns must have one value per record")
                slen = np.diff(offsets)
                kinds.append(("str", offsets, data))
                lens += 4 + slen
        starts = np.zeros(n, np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        hdr = np.dtype(
            [("id", e + "u8"), ("ts", e + "u8"), ("len", e + "u4"), ("pid", e + "u4")]
            if self.version < 4
            else [
                ("type", e + "u8"),
                ("id", e + "u8"),
                ("ts", e + "u8"),
                ("len", e + "u4"),
                ("pid", e + "u4"),
            ]
        )
        if all(k == "u64" for k, _, _ in kinds):
            # fixed layout: one structured array, written in one go
            dt = np.dtype(hdr.descr + [(f"a{j}", e + "u8") for j in range(len(kinds))])
            rec = np.zeros(n, dt)
            _fill_header(rec, self.version, event_id, ts, lens - (hsize - 24), pids)
            for j, (_, vals, _) in enumerate(kinds):
                rec[f"a{j}"] = vals
            return rec.tobytes()
        buf = np.zeros(int(starts[-1] + lens[-1]), np.uint8)
        heads = np.zeros(n, hdr)
        _fill_header(heads, self.version, event_id, ts, lens - (hsize - 24), pids)
        _scatter_rows(buf, starts, heads.view(np.uint8).reshape(n, hsize))
        pos = starts + hsize
        u64 = np.dtype(e + "u8")
        u32 = np.dtype(e + "u4")
        for kind, a, data in kinds:
            if kind == "u64":
                _scatter_rows(buf, pos, a.astype(u64).view(np.uint8).reshape(n, 8))
                pos = pos + 8
            else:
                slen = np.diff(a)
                _scatter_rows(buf, pos, slen.astype(u32).view(np.uint8).reshape(n, 4))
                pos = pos + 4
                if len(data):
                    dst = np.repeat(pos - a[:-1], slen) + np.arange(len(data))
                    buf[dst] = data
                pos = pos + slen
        return buf.tobytes()


def _fill_header(rec, version, event_id, ts, lengths, pids) -> None:
    if version >= 4:
        rec["type"] = RECORD_TYPE_EVENT
    rec["id"] = _u64(event_id)
    rec["ts"] = ts
    rec["len"] = lengths
    rec["pid"] = pids


def _scatter_rows(buf: np.ndarray, starts: np.ndarray, rows: np.ndarray) -> None:
    """buf[starts[i] : starts[i] + w] = rows[i] for every row of the (n, w) byte matrix."""
    w = rows.shape[1]
    buf[starts[:, None] + np.arange(w)] = rows


def _as_u64(col) -> np.ndarray:
    a = col.to_numpy(zero_copy_only=False) if hasattr(col, "to_numpy") else np.asarray(col)
    if a.dtype == np.bool_:
        return a.astype(np.uint64)
    if a.dtype.kind == "f":
        return np.trunc(a).astype(np.int64).view(np.uint64)
    if a.dtype.kind == "u":
        return a.astype(np.uint64)
    if a.dtype.kind == "O":
        return np.array([_u64(v) for v in a], np.uint64)
    return a.astype(np.int64).view(np.uint64)


def _as_strings(col, max_strlen: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(offsets, bytes) of a string column, or None if the column is numeric."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pa = None
    if pa is not None and isinstance(col, (pa.Array, pa.ChunkedArray)):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if not (pa.types.is_string(col.type) or pa.types.is_binary(col.type)):
            return None
        col = col.cast(pa.binary()).fill_null(b"")
        if max_strlen is not None:
            import pyarrow.compute as pc

            col = pc.binary_slice(col, 0, max_strlen)
        offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + len(col) + 1]
        data = np.frombuffer(col.buffers()[2] or b"", np.uint8)
        offsets = offsets.astype(np.int64)
        data = data[offsets[0] : offsets[-1]]
        return offsets - offsets[0], data
    a = col if isinstance(col, np.ndarray) else None
    if a is not None and a.dtype.kind in "iufb":
        return None
    items = list(col)
    if items and not all(v is None or isinstance(v, (bytes, bytearray, str)) for v in items):
        if all(isinstance(v, (int, np.integer)) for v in items):
            return None
        raise TypeError("a string argument column holds non-string values")
    if not items:
        return None
    raw = [_bytes(v, max_strlen) for v in items]
    lens = np.fromiter((len(b) for b in raw), np.int64, len(raw))
    offsets = np.zeros(len(raw) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    return offsets, np.frombuffer(b"".join(raw), np.uint8)
