"""One writer per output form. Each takes a chunk of rows (blocks, and their trace order) and
appends it to the output: QEMU log text in an era's line shape, simpletrace v4, and the
synthetic canonical-events forms (JSONL, CSV, Parquet).

Argument text is rendered with :func:`tracetool.catalog.render.render_args` (QEMU's printf
formats, vectorised); simpletrace payloads with :class:`tracetool.simpletrace_write.SimpletraceWriter`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracetool.catalog.render import render_args
from tracetool.schema import EVENTS_SCHEMA
from tracetool.synth.rows import Block

MAX_STRLEN = 512


def _col(block: Block, name: str, n: int):
    """A block's column for argument ``name`` (constants broadcast)."""
    try:
        v = block.fields[name]
    except KeyError:
        raise KeyError(f"{block.event}: no value for argument {name!r}") from None
    if isinstance(v, np.ndarray):
        return v
    return np.full(n, v, dtype=object if isinstance(v, str) else np.int64)


def _dec(a: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(a, np.int64)), pa.string())


def _open(path: Path):
    if str(path).endswith(".gz"):  # no time in the header: the same bytes every run
        return gzip.GzipFile(path, "wb", compresslevel=1, mtime=0)
    return open(path, "wb")  # noqa: SIM115


class BaseWriter:
    text_lines = False  # whether other/damaged lines are written
    clock_offset_ns = 0  # ts_ns in the output = wall-clock ns + this
    extra_other = 0  # lines/records the output adds that are not events (headers, mappings)

    def __init__(self, path: Path, model) -> None:
        self.path = Path(path)
        self.model = model
        self.ev = model.ev
        self.ids = ids_of(self.fmt_name, model.era)

    fmt_name = ""

    def args_text(self, b: Block) -> pa.Array:
        ev = self.ev[b.event]
        n = len(b)
        cols = ev.columns()
        if not cols:  # "" format: the line is "name " (trailing space)
            return pa.array(np.full(n, "", dtype=object), pa.string())
        return render_args(ev, [_col(b, c.name, n) for c in cols])

    def tid_column(self, b: Block) -> np.ndarray | None:
        """What the trace shows as the thread id of each row (None: nothing)."""
        n = len(b)
        if self.ids == "none":
            return None
        v = b.pid if self.ids == "pid" else b.tid
        return np.broadcast_to(np.asarray(v, np.int64), (n,))

    def close(self) -> None: ...


def ids_of(fmt: str, era) -> str:
    """What a reader learns about threads: "tid" (each line's thread), "pid" (only the process:
    QEMU <= 3.1 logs, simpletrace) or "none" (10.1+ ISO-prefixed logs)."""
    if fmt == "simpletrace":
        return "pid"
    return {"pid": "pid", "tid": "tid", "iso": "none"}[era.shape]


class LogWriter(BaseWriter):
    """QEMU's log/stderr backend text in the era's line shape."""

    text_lines = True
    fmt_name = "log"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path, model)
        self.f = _open(self.path)
        self.shape = model.era.shape
        self.bytes = 0

    def prefix(self, b: Block, shape: str | None = None) -> pa.Array:
        n = len(b)
        sec, usec = np.divmod(b.ts, 1_000_000)
        us6 = pc.utf8_lpad(_dec(usec), width=6, padding="0")
        if (shape or self.shape) == "iso":
            stamp = pc.strftime(pa.array(sec, pa.timestamp("s", tz="UTC")),
                                format="%Y-%m-%dT%H:%M:%S")  # fmt: skip
            # GLib prints the fraction only when the microseconds are not zero
            frac = pc.if_else(pa.array(usec == 0), "", pc.binary_join_element_wise(".", us6, ""))
            return pc.binary_join_element_wise(stamp, frac, "Z ", "")
        ids = np.broadcast_to(np.asarray(b.pid if self.shape == "pid" else b.tid), (n,))
        return pc.binary_join_element_wise(_dec(ids), "@", _dec(sec), ".", us6, ":", "")

    def lines(self, b: Block) -> pa.Array:
        if not b.event:  # other / damaged lines
            text = pa.array(b.text, pa.string())
            pre = self.prefix(b)
            # a damaged "glued" line: a NUL marks where another line (with its prefix) starts
            text = pc.binary_join(pc.split_pattern(text, "\x00"), pre)
            kind = b.prefixed
            if (kind == 2).any():
                pre = pc.if_else(pa.array(kind == 2), self.prefix(b, "iso"), pre)
            pre = pc.if_else(pa.array(kind > 0), pre, "")
            return pc.binary_join_element_wise(pre, text, "\n", "")
        head = f"{b.event} "
        return pc.binary_join_element_wise(self.prefix(b), head, self.args_text(b), "\n", "")

    def write(self, blocks, perm, positions, ranks) -> None:
        parts = [self.lines(b) for b in blocks]
        allv = pa.concat_arrays(parts).take(pa.array(perm))
        data = _string_data(allv)
        self.f.write(data)
        self.bytes += len(data)

    def close(self) -> None:
        self.f.close()


def _string_data(arr: pa.Array) -> bytes:
    """The concatenated bytes of a string array (its data buffer between the first and last
    offsets)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offs = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1]
    buf = arr.buffers()[2]
    return buf.to_pybytes()[offs[0] : offs[-1]] if buf is not None else b""


class EventsWriter(BaseWriter):
    """Canonical events rows (``ts_ns, tid, event, line, args``) for the synthetic forms."""

    def table(self, blocks, perm, ranks) -> pa.Table:
        ts = np.concatenate([b.ts for b in blocks]) * 1000
        tids = [self.tid_column(b) for b in blocks]
        tid = None if tids[0] is None else np.concatenate(tids).astype(np.int32)
        names = np.concatenate([np.full(len(b), b.event, dtype=object) for b in blocks])
        args = pa.concat_arrays([self.args_text(b) for b in blocks])
        line = np.concatenate(ranks) + 1
        idx = pa.array(perm)
        cols = {
            "ts_ns": pa.array(ts[perm], pa.int64()),
            "tid": (pa.nulls(len(perm), pa.int32()) if tid is None else pa.array(tid[perm], pa.int32())),
            "event": pa.array(names[perm], pa.string()),
            "line": pa.array(line[perm], pa.int64()),
            "args": args.take(idx),
        }  # fmt: skip
        return pa.table(cols)


class JsonlWriter(EventsWriter):
    fmt_name = "jsonl"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path, model)
        self.f = _open(self.path)

    def write(self, blocks, perm, positions, ranks) -> None:
        t = self.table(blocks, perm, ranks)
        args = t["args"].combine_chunks() if isinstance(t["args"], pa.ChunkedArray) else t["args"]
        for a, b in (("\\", "\\\\"), ('"', '\\"'), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            args = pc.replace_substring(args, a, b)
        tid = pc.cast(t["tid"], pa.string()).fill_null("null")
        lines = pc.binary_join_element_wise(
            '{"ts_ns":', pc.cast(t["ts_ns"], pa.string()), ',"tid":', tid, ',"event":"',
            t["event"], '","line":', pc.cast(t["line"], pa.string()), ',"args":"', args, '"}\n',
            "",
        )  # fmt: skip
        self.f.write(
            _string_data(lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines)
        )

    def close(self) -> None:
        self.f.close()


class CsvWriter(EventsWriter):
    fmt_name = "csv"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path, model)
        import pyarrow.csv as pacsv

        self.f = _open(self.path)
        self.extra_other = 1  # the header line
        self.schema = pa.schema([f if f.name != "event" else pa.field("event", pa.string())
                                 for f in EVENTS_SCHEMA])  # fmt: skip
        self.w = pacsv.CSVWriter(self.f, self.schema)

    def write(self, blocks, perm, positions, ranks) -> None:
        self.w.write_table(self.table(blocks, perm, ranks).cast(self.schema))

    def close(self) -> None:
        self.w.close()
        self.f.close()


class ParquetWriter(EventsWriter):
    fmt_name = "parquet"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path, model)
        import pyarrow.parquet as pq

        self.w = pq.ParquetWriter(self.path, EVENTS_SCHEMA, compression="zstd")

    def write(self, blocks, perm, positions, ranks) -> None:
        t = self.table(blocks, perm, ranks)
        t = t.set_column(
            2, "event", pc.dictionary_encode(t["event"]).cast(EVENTS_SCHEMA.field("event").type)
        )
        self.w.write_table(t.cast(EVENTS_SCHEMA))

    def close(self) -> None:
        self.w.close()


class SimpletraceOut(BaseWriter):
    """simpletrace v4: header, a mapping record per event the era has (ids in registration
    order, not name order), then one record per event, ``ts_ns`` from the host's monotonic
    clock and the pid of the writing process (simpletrace has no thread ids)."""

    fmt_name = "simpletrace"

    def __init__(self, path: Path, model) -> None:
        super().__init__(path, model)
        from tracetool.simpletrace_write import SimpletraceWriter

        self.f = _open(self.path)
        self.w = SimpletraceWriter(self.f, version=4)
        self.w.header()
        names = model.ev.all_names()
        perm = np.random.default_rng(model.sc.seed ^ 0x5EED).permutation(len(names))
        self.eids = {names[i]: int(k) for k, i in enumerate(perm)}
        for name, eid in sorted(self.eids.items(), key=lambda kv: kv[1]):
            self.w.mapping(eid, name)
        self.extra_other = 1 + len(self.eids)  # the header and the mapping records
        # CLOCK_MONOTONIC: nanoseconds since the host booted, a day before the trace starts
        self.boot_ns = (model.procs[0].start - 86_400 * 1_000_000) * 1000
        self.clock_offset_ns = -self.boot_ns

    def write(self, blocks, perm, positions, ranks) -> None:
        datas, lens = [], []
        for b in blocks:
            ev = self.ev[b.event]
            n = len(b)
            cols, size = [], np.full(n, 32, np.int64)
            for a in ev.args:
                v = _col(b, a.name, n)
                if a.ctype.is_string:
                    arr = pa.array(v.tolist() if isinstance(v, np.ndarray) else v, pa.string())
                    size += 4 + np.minimum(
                        pc.binary_length(arr).to_numpy(zero_copy_only=False), MAX_STRLEN
                    )
                    cols.append(arr)
                else:
                    cols.append(np.asarray(v).astype(np.int64))
                    size += 8
            pid = np.broadcast_to(np.asarray(b.pid, np.int64), (n,))
            datas.append(np.frombuffer(
                self.w.records_bytes(self.eids[b.event], b.ts * 1000 - self.boot_ns, cols, pid), np.uint8))  # fmt: skip
            lens.append(size)
        self.f.write(_interleave(datas, lens, perm))

    def close(self) -> None:
        self.w.close()
        self.f.close()


def _interleave(datas: list[np.ndarray], lens: list[np.ndarray], perm: np.ndarray) -> bytes:
    """Records of several blocks (each a byte run of consecutive records) in trace order."""
    ln = np.concatenate(lens)
    src = np.concatenate(datas)
    block_start = np.cumsum([0] + [len(d) for d in datas])[:-1]
    so = np.concatenate([bs + np.concatenate([[0], np.cumsum(x)[:-1]])
                         for bs, x in zip(block_start, lens, strict=True)])  # fmt: skip
    out = np.empty(int(ln.sum()), np.uint8)
    _copy_runs(out, src, so[perm], ln[perm])
    return out.tobytes()


def _copy_runs(out, src, starts, lengths) -> None:
    from tracetool.synth import _kernels

    _kernels.copy_runs(out, src, starts.astype(np.int64), lengths.astype(np.int64))


WRITERS = {
    "log": LogWriter,
    "simpletrace": SimpletraceOut,
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
    "parquet": ParquetWriter,
}
