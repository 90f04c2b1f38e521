"""QEMU's ``ftrace`` trace backend: kernel ftrace text (the ``trace`` file, ``trace_pipe``, or
``trace-cmd report``), streamed in blocks.

QEMU's ftrace backend formats every event as ``"<name> " fmt "\\n"`` into a 512-byte buffer and
writes it to ``<tracefs>/trace_marker``; the kernel stores it as a marker write of the calling
thread. Reading the ring buffer back gives one line per marker, among the lines of whatever other
kernel events were enabled. Supported line layouts (``TASK`` may hold spaces, dashes and slashes,
e.g. ``CPU 0/KVM``; the ``(TGID)`` column is there with the ``record-tgid`` option; the flags
column has 4 characters on older kernels, 5 on newer ones, none with ``noirq-info``)::

    # /sys/kernel/tracing/trace, trace_pipe (seconds with 6 digits)
      qemu-system-x86-23141 [002] .... 5123.456789: tracing_mark_write: postcopy_place_page host=0x7f0c2a9f5000
      CPU 0/KVM-23150 (  23141) [003] d..1. 5123.000001: tracing_mark_write: virtio_balloon_handle_output section name: pc.ram gpa: 0x5000
    # trace-cmd report (6 or 9 digits; the marker is the "print" event; -l puts CPU and flags together)
      qemu-system-x86-23141 [002]  5123.456789: print:                tracing_mark_write: postcopy_place_page host=0x7f0c2a9f5000
      qemu-system-x86-23141 [002]  5123.456789123: print:  ffffffff8120d3e4s: postcopy_place_page host=0x7f0c2a9f5000
      qemu-system-x86-23141   2d..1. 5123.456789: print:  tracing_mark_write: postcopy_place_page host=0x7f0c2a9f5000

Per line (vectorised over the block: one RE2 regex reads TASK-PID, CPU, timestamp and the marker
payload of every line): comment/header lines (``#``), blank lines, other kernel events, and
anything that is not a marker write go to ``other``. The payloads of the marker writes (``NAME
ARGS``) are decoded by the QEMU log parser's block decoder (:mod:`parsers._log_arrow` /
:mod:`parsers._log_numba`, the same rules as an unprefixed log line: a payload whose name is
not catalogued and does not look like a QEMU event name is ``other``; a catalogued event whose
arguments match none of its formats is ``rejected``); then ``ts_ns`` and ``tid`` come from the
ftrace columns and ``line`` is the line in the ftrace file.

* ``tid`` = the task's PID column, i.e. the kernel thread id of the QEMU thread that wrote the
  marker (the TGID column, when present, is the QEMU process id; it is not kept).
* ``ts_ns`` = the ftrace timestamp in nanoseconds: ``SEC*10^9 + FRAC`` scaled to 9 digits. This
  is the kernel **trace clock** (``trace_clock``; default ``local``: per-CPU ``sched_clock``,
  nanoseconds since boot, *not* the wall clock of the log backend). Counter clocks
  (``counter``, ``x86-tsc``) print an integer without ``.``: ``ts_ns`` is then that raw count.
* Rejected: lines that are not UTF-8 or hold a NUL; lines that mention ``tracing_mark_write:``
  but do not have the ftrace layout (damaged or cut lines); markers whose PID is above 2^31-1;
  QEMU records cut by the backend's 512-byte buffer (a payload of 511 bytes or more whose name
  is a QEMU event name: the last bytes, and the newline, are missing); catalogued records whose
  arguments do not match (what any other truncation or damage of a payload gives).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers._log_arrow import _invalid_utf8_lines, parse_radix_u64, split_lines
from parsers._log_common import REASON_BAD_UTF8, REASON_NUL, LogContext
from parsers.base import Chunk, ParseOptions
from parsers.qemu_log import choose_engine as _choose_engine
from tracetool.errors import FormatError
from tracetool.inputs import Input, iter_line_blocks
from tracetool.schema import EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

name = "ftrace"
description = "QEMU ftrace backend: kernel trace / trace_pipe text or trace-cmd report"
CLOCK = (
    "kernel trace clock (trace_clock; default 'local': ns since boot, not the wall clock); "
    "counter clocks: the raw count"
)

#: One RE2 regex per line: ``TASK-PID [(TGID)] [CPU] [FLAGS] SEC[.FRAC]: `` (and trace-cmd's
#: ``-l`` layout ``TASK-PID CPUFLAGS SEC.FRAC: ``), then the marker write event:
#: ``tracing_mark_write: PAYLOAD`` in the trace file (with the ``sym-offset``/``sym-addr``
#: options the symbol gets ``+0x../0x..``/`` <addr>``), ``print: tracing_mark_write: PAYLOAD``
#: or ``print: ffffffff8120d3e4s: PAYLOAD`` (symbol not resolved) in trace-cmd report. The task
#: name is matched lazily: the first ``-digits`` followed by the CPU column ends it (names like
#: ``qemu-system-x86`` or ``CPU 0/KVM``). Exactly one space follows the symbol's colon.
MARKER_LINE_REGEX = (
    r"^\s*.*?-(?P<pid>[0-9]+)\s+(?:\(\s*[0-9-]+\)\s+)?"
    r"(?:\[[0-9]+\](?:\s+[^\s0-9:][^\s:]{2,7})?|[0-9]+[^\s0-9:][^\s:]{2,7})"
    r"\s+(?P<sec>[0-9]+)(?:\.(?P<frac>[0-9]{1,9}))?:\s+"
    r"(?:(?P<print>print):\s+)?"
    r"(?:(?P<sym>tracing_mark_write)(?:\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+)?(?: <[0-9a-fA-F]+>)?"
    r"|(?:0x)?[0-9a-fA-F]+s?): (?P<payload>.*)$"
)
MARKER_MAX = 511  # QEMU: vsnprintf into char[512]; at most 511 bytes reach trace_marker

REASON_DAMAGED = (
    "damaged ftrace line: it mentions tracing_mark_write but does not have the layout "
    "'TASK-PID [CPU] FLAGS SEC.USEC: tracing_mark_write: NAME ARGS'"
)
REASON_BIG_PID = "task PID of the ftrace line is above 2147483647 (int32)"
REASON_TRUNCATED = (
    f"QEMU record cut at {MARKER_MAX} bytes by the ftrace backend's 512-byte buffer "
    "(its end is missing)"
)
SHAPE_TRACE = "ftrace (trace file)"
SHAPE_REPORT = "ftrace (trace-cmd report)"

#: Any ftrace event line (the kernel's own events too): ``TASK-PID [(TGID)] [CPU] ... SEC.FRAC: X``.
_SNIFF_LINE = re.compile(
    r"^[ \t]*\S[^\n]*?-[0-9]+[ \t]+(?:\([ \t]*[0-9-]+\)[ \t]+)?\[[0-9]+\][^\n]*?"
    r"[ \t][0-9]+\.[0-9]{1,9}: [A-Za-z_]",
    re.M,
)


def sniff(head: bytes) -> bool:
    """The ``# tracer:`` header of the trace file, a marker write, or any ftrace event line
    (``TASK-PID [CPU] ... SEC.USEC: event``) within the head."""
    if b"\0" in head[:4096]:
        return False
    if re.search(rb"^# tracer: ", head, re.M) or b"tracing_mark_write: " in head:
        return True
    return _SNIFF_LINE.search(head.decode("utf-8", "replace")) is not None


def choose_engine(options: ParseOptions, size_hint: int | None):
    """The log block decoder used for marker payloads (see :func:`parsers.qemu_log.choose_engine`)."""
    return _choose_engine(options, size_hint)


def _bool(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _nonempty(arr: pa.Array) -> np.ndarray:
    return _bool(pc.not_equal(arr, ""))


def _ns(sec: pa.Array, frac: pa.Array) -> np.ndarray:
    """``SEC[.FRAC]`` -> int64 ns (FRAC scaled to 9 digits; no FRAC: the raw count)."""
    s, _ = parse_radix_u64(sec, 10)
    flen = pc.binary_length(frac).to_numpy(zero_copy_only=False).astype(np.int64)
    f, _ = parse_radix_u64(frac, 10)
    scale = (10 ** (9 - np.minimum(flen, 9))).astype(np.uint64)
    ns = np.where(flen > 0, s * np.uint64(1_000_000_000) + f * scale, s)
    return ns.view(np.int64)


def _payload_block(payload: pa.Array) -> bytes:
    """The payloads as one block of ``\\n``-terminated lines."""
    joined = pc.binary_join_element_wise(payload, pa.scalar(""), pa.scalar("\n"))
    joined = joined.cast(pa.large_string())
    bufs = joined.buffers()
    offsets = np.frombuffer(bufs[1], np.int64, count=len(joined) + 1, offset=joined.offset * 8)
    if bufs[2] is None:
        return b""
    return bytes(memoryview(bufs[2])[int(offsets[0]) : int(offsets[-1])])


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _remap_keys(batch: pa.RecordBatch, idx: np.ndarray, ts, tid, line) -> pa.RecordBatch:
    """Replace the (ts_ns, tid, line) leading columns of a decoded batch; ``idx`` = marker index
    of every row."""
    cols = [
        pa.array(ts[idx], pa.int64()),
        pa.array(tid[idx], pa.int32()),
        pa.array(line[idx], pa.int64()),
    ]
    names = batch.schema.names
    arrays = list(batch.columns)
    for key, col in zip(("ts_ns", "tid", "line"), cols, strict=True):
        arrays[names.index(key)] = col
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def decode_block(data, first_line: int, ctx: LogContext, decode, strict: bool) -> Chunk:
    """Decode one block of whole ftrace lines (``first_line``: number of its first line)."""
    starts, ends, text_all = split_lines(bytes(data))
    n = len(starts)
    lineno = first_line + np.arange(n, dtype=np.int64)

    rej_rows: list[np.ndarray] = []
    rej_reasons: list[pa.Array] = []
    rej_texts: list[pa.Array] = []

    def reject(rows: np.ndarray, reason, texts: pa.Array) -> None:
        if len(rows):
            rej_rows.append(rows)
            rej_reasons.append(
                reason if isinstance(reason, pa.Array) else pa.repeat(pa.scalar(reason), len(rows))
            )
            rej_texts.append(texts.cast(pa.string()))

    # 1. Lines with a NUL byte or invalid UTF-8 (as in the log parser).
    buf = np.frombuffer(data, np.uint8)
    nul = np.unique(np.searchsorted(starts, np.flatnonzero(buf == 0), side="right") - 1)
    bad_utf8 = np.setdiff1d(_invalid_utf8_lines(bytes(data), starts), nul)
    good = np.ones(n, bool)
    good[nul] = False
    good[bad_utf8] = False
    for rows, reason in ((nul, REASON_NUL), (bad_utf8, REASON_BAD_UTF8)):
        if len(rows):
            texts = [bytes(data[starts[i] : ends[i]]).decode("utf-8", "replace") for i in rows]
            reject(rows, reason, pa.array(texts, pa.string()))
    rows = np.flatnonzero(good)
    text = text_all if len(rows) == n else text_all.filter(pa.array(good))

    # 2. The ftrace columns and the marker event, one regex.
    mk = pc.extract_regex(text, MARKER_LINE_REGEX)
    has_print = _nonempty(mk.field("print"))
    # A bare address is the unresolved symbol of trace-cmd's print event only.
    is_mark = _bool(mk.is_valid()) & (_nonempty(mk.field("sym")) | has_print)
    comment = _bool(pc.match_substring_regex(text, r"^\s*#"))
    damaged = ~is_mark & ~comment & _bool(pc.match_substring(text, "tracing_mark_write:"))
    reject(rows[damaged], REASON_DAMAGED, text.filter(pa.array(damaged)))

    mrows = np.flatnonzero(is_mark)  # positions in `text`
    fields = mk.take(pa.array(mrows))
    pid, over = parse_radix_u64(fields.field("pid"), 10)
    big = over | (pid > np.uint64((1 << 31) - 1))
    if big.any():
        reject(rows[mrows[big]], REASON_BIG_PID, text.take(pa.array(mrows[big])))
        mrows = mrows[~big]
        pid = pid[~big]
        fields = fields.filter(pa.array(~big))
    mtext = text.take(pa.array(mrows))
    payload = fields.field("payload").cast(pa.string())
    ts = _ns(fields.field("sec"), fields.field("frac"))
    tid = pid.astype(np.int32)
    mline = lineno[rows[mrows]]
    report = has_print[mrows]

    # 3. Records cut by QEMU's 512-byte buffer: a QEMU event name and >= 511 bytes.
    plen = pc.binary_length(payload).to_numpy(zero_copy_only=False)
    long = np.flatnonzero(plen >= MARKER_MAX)
    if len(long):
        names = pc.extract_regex(
            payload.take(pa.array(long)), r"^(?P<n>[A-Za-z_][A-Za-z0-9_]*)(?: |$)"
        )
        nm = names.field("n").to_pylist()
        cut = np.array([v is not None and ctx.accepts_unprefixed(v) for v in nm], bool)
        if cut.any():
            reject(rows[mrows[long[cut]]], REASON_TRUNCATED, mtext.take(pa.array(long[cut])))
            keep = np.ones(len(mrows), bool)
            keep[long[cut]] = False
            mrows, payload, mtext = (
                mrows[keep],
                payload.filter(pa.array(keep)),
                mtext.filter(pa.array(keep)),
            )
            ts, tid, mline, report = ts[keep], tid[keep], mline[keep], report[keep]

    # 4. Payloads through the log decoder (lines 1..k of a block of its own).
    if len(mrows):
        sub = decode(_payload_block(payload), 1, ctx)
    else:
        sub = Chunk(_empty(EVENTS_SCHEMA), _empty(OTHER_SCHEMA), _empty(REJECTED_SCHEMA))
    ev_idx = sub.events.column(3).to_numpy() - 1
    events = _remap_keys(sub.events, ev_idx, ts, tid, mline)
    typed = {
        key: _remap_keys(b, b.column(b.schema.names.index("line")).to_numpy() - 1, ts, tid, mline)
        for key, b in sub.typed.items()
    }
    if sub.rejected.num_rows:
        ridx = sub.rejected.column(0).to_numpy() - 1
        reject(rows[mrows[ridx]], sub.rejected.column(1), mtext.take(pa.array(ridx)))

    # 5. other: non-marker lines and marker payloads that are not records (full line text).
    # (lines rejected above, and marker lines, are not other)
    not_other = np.zeros(n, bool)
    for rr in rej_rows:
        not_other[rr] = True
    not_other[rows[mrows]] = True
    oth_pos = np.flatnonzero(~not_other[rows])  # positions in `text`
    o_lines = [lineno[rows[oth_pos]]]
    o_texts = [text.take(pa.array(oth_pos)).cast(pa.string())]
    if sub.other.num_rows:
        oidx = sub.other.column(0).to_numpy() - 1
        o_lines.append(mline[oidx])
        o_texts.append(mtext.take(pa.array(oidx)).cast(pa.string()))
    o_line = np.concatenate(o_lines)
    o_order = pa.array(np.argsort(o_line, kind="stable"))
    other = pa.RecordBatch.from_arrays(
        [pa.array(o_line, pa.int64()).take(o_order), pa.concat_arrays(o_texts).take(o_order)],
        schema=OTHER_SCHEMA,
    )

    if rej_rows:
        rr = lineno[np.concatenate(rej_rows)]
        srt = pa.array(np.argsort(rr, kind="stable"))
        rejected = pa.RecordBatch.from_arrays(
            [
                pa.array(rr, pa.int64()).take(srt),
                pa.concat_arrays([r.cast(pa.string()) for r in rej_reasons]).take(srt),
                pa.concat_arrays(rej_texts).take(srt),
            ],
            schema=REJECTED_SCHEMA,
        )
    else:
        rejected = _empty(REJECTED_SCHEMA)
    if strict and rejected.num_rows:
        raise FormatError(
            rejected.column(1)[0].as_py(), path=ctx.path, line=rejected.column(0)[0].as_py()
        )

    n_report = int(report[ev_idx].sum()) if len(ev_idx) else 0
    shapes = Counter({SHAPE_TRACE: len(ev_idx) - n_report, SHAPE_REPORT: n_report})
    shapes = Counter({k: v for k, v in shapes.items() if v})
    return Chunk(
        events=events,
        other=other,
        rejected=rejected,
        typed=typed,
        lines=n,
        nbytes=len(data),
        shapes=shapes,
    )


def parse(inp: Input, options: ParseOptions) -> Iterator[Chunk]:
    """Yield one :class:`Chunk` per block of whole lines of ``inp``."""
    # The decoder never raises on its own (its line numbers are the payload block's): this
    # parser raises for strict mode with the ftrace file's line numbers.
    ctx = LogContext(replace(options, strict=False), inp.name)
    size_hint = inp.size * (8 if inp.compression else 1) if inp.size is not None else None
    _, decode = choose_engine(options, size_hint)
    line = 1
    for block, _offset in iter_line_blocks(inp, options.block_size):
        chunk = decode_block(block, line, ctx, decode, options.strict)
        line += chunk.lines
        yield chunk
