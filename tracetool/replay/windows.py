"""Incoming postcopy windows: one per migration on the destination, from its phase markers.

ADVISE ``loadvm_postcopy_handle_advise``; DISCARD the first ``loadvm_postcopy_ram_handle_discard``
(else LISTEN); LISTEN ``loadvm_postcopy_handle_listen``; RUN ``loadvm_postcopy_handle_run``;
END the first of ``postcopy_ram_listen_thread_exit``, ``postcopy_ram_incoming_cleanup_entry`` and
``migrate_set_state completed``; STATE_END the last line of the listen thread (else completed,
else END); CLEANUP ``postcopy_ram_incoming_cleanup_exit``. Missing markers are inferred from the
next best one and the inference is recorded.

Times are kept twice: ``*_ns`` (trace clock) and ``*_ord`` (the position of the line in
time-then-trace order, which is what the replay compares).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tracetool.enums import migration_state
from tracetool.replay.columns import Columns
from tracetool.trace import Trace

MARKERS = ("advise", "discard", "listen", "run", "end", "state_end", "cleanup")


@dataclass
class Window:
    migration: int
    ord: dict[str, int] = field(default_factory=dict)
    ns: dict[str, int | None] = field(default_factory=dict)
    inferred: list[str] = field(default_factory=list)

    @property
    def postcopy(self) -> bool:
        return "listen" in self.ord


class Order:
    """Position of every event line in time-then-trace order (``order[line]``).

    A log written in time order (lines increasing, timestamps non-decreasing) is already in
    that order: no sort, and ``of_lines`` is a subtraction when its lines have no gaps."""

    def __init__(self, trace: Trace, cols: Columns | None = None) -> None:
        self._trace = trace
        cols = cols or Columns(trace)
        self._cols: Columns | None = cols
        ts = trace.events["ts_ns"]
        self.n = trace.events.num_rows
        tsv = cols.get(None, "ts_ns") if self.n and ts.null_count == 0 else None
        increasing = cols.lines_increasing()
        self._lines_sorted: np.ndarray | None = None
        if tsv is not None and not (increasing and bool(np.all(tsv[1:] >= tsv[:-1]))):
            lines = cols.get(None, "line")
            rank_rows = np.lexsort((lines, tsv))
            self.ts_sorted = tsv[rank_rows]
            self._lines_sorted = lines[rank_rows]
            if self.n and int(lines.max()) < (1 << 31) and int(lines.min()) >= 0:
                self._lines_sorted = self._lines_sorted.astype(np.int32)  # the result holds it
        else:  # already in order (or no timestamps: trace order)
            rank_rows = None
            self.ts_sorted = tsv
        self._rank_rows = rank_rows  # the sort, only while the replay runs
        self._by_line: np.ndarray | None = None
        chunks = cols.chunks(None, "line")
        self._first = int(chunks[0][0]) if self.n else 0
        self._contiguous = (
            rank_rows is None
            and increasing
            and self.n > 0
            and int(chunks[-1][-1]) - self._first == self.n - 1
        )
        self.last_ts = int(tsv.max()) if tsv is not None and self.n else None

    @property
    def lines_sorted(self) -> np.ndarray:
        """Line of each order."""
        if self._lines_sorted is None:
            if self._cols is not None:
                self._lines_sorted = self._cols.get(None, "line")
            else:
                self._lines_sorted = self._trace.events["line"].to_numpy()
        return self._lines_sorted

    def release(self) -> None:
        """Let go of what only the replay needs (the shared columns, the sort and the
        line -> order map, rebuilt on demand): the result keeps this object alive."""
        self._cols = None
        self._rank_rows = None
        self._by_line = None

    @property
    def by_line(self) -> np.ndarray:
        """Order of each line number (-1: not an event line)."""
        if self._by_line is None:
            lines = self.lines_sorted
            by_line = np.full(int(lines.max()) + 2 if self.n else 1, -1, np.int64)
            by_line[lines] = np.arange(self.n, dtype=np.int64)
            self._by_line = by_line
        return self._by_line

    def of_lines(self, lines: np.ndarray) -> np.ndarray:
        if self._contiguous:
            return np.asarray(lines, np.int64) - self._first
        return self.by_line[lines]

    def line_of(self, order: int) -> int:
        return int(self.lines_sorted[order]) if 0 <= order < self.n else 0

    def ts_of(self, order: int) -> int | None:
        if self.ts_sorted is None or order < 0 or order >= self.n:
            return None
        return int(self.ts_sorted[order])


def _marker(trace: Trace, order: Order, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Orders and tids of an event's records, sorted by order."""
    if name not in trace:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = trace.table(name)
    o = order.of_lines(t["line"].to_numpy())
    tid = t["tid"].fill_null(-1).to_numpy()
    idx = np.argsort(o, kind="stable")
    return o[idx], tid[idx]


def _first_in(orders: np.ndarray, lo: int, hi: int) -> int | None:
    i = np.searchsorted(orders, lo, side="left")
    return int(orders[i]) if i < len(orders) and orders[i] < hi else None


def find_windows(trace: Trace, order: Order, cols: Columns | None = None) -> list[Window]:
    cols = cols or Columns(trace)
    advise, _ = _marker(trace, order, "loadvm_postcopy_handle_advise")
    discard, _ = _marker(trace, order, "loadvm_postcopy_ram_handle_discard")
    listen, listen_tid = _marker(trace, order, "loadvm_postcopy_handle_listen")
    run, _ = _marker(trace, order, "loadvm_postcopy_handle_run")
    lt_start, lt_tid = _marker(trace, order, "postcopy_ram_listen_thread_start")
    lt_exit, _ = _marker(trace, order, "postcopy_ram_listen_thread_exit")
    cl_entry, _ = _marker(trace, order, "postcopy_ram_incoming_cleanup_entry")
    cl_exit, _ = _marker(trace, order, "postcopy_ram_incoming_cleanup_exit")
    completed = np.zeros(0, np.int64)
    if "migrate_set_state" in trace:
        t = trace.table("migrate_set_state")
        col = t.column_names[-1]
        states = [migration_state(v) for v in t[col].to_pylist()]
        o = order.of_lines(t["line"].to_numpy())
        completed = np.sort(o[np.array([s == "completed" for s in states], bool)])

    starts = list(advise)
    inferred_start = False
    if not starts and len(listen):
        starts, inferred_start = [0], True
    windows = []
    for i, start in enumerate(starts):
        hi = int(starts[i + 1]) if i + 1 < len(starts) else order.n + 1
        w = Window(i)
        w.ord["advise"] = int(start)
        if inferred_start:
            w.inferred.append("advise: not traced, taken as the start of the trace")
        li = _first_in(listen, start, hi)
        if li is not None:
            w.ord["listen"] = li
            di = _first_in(discard, start, hi)
            if di is None or di > li:
                di = li
                w.inferred.append("discard: no discard command, taken as LISTEN")
            w.ord["discard"] = di
            ru = _first_in(run, li, hi)
            if ru is not None:
                w.ord["run"] = ru
            ends = [
                x
                for x in (_first_in(a, li, hi) for a in (lt_exit, cl_entry, completed))
                if x is not None
            ]
            cleanup = _first_in(cl_exit, li, hi)
            if ends:
                w.ord["end"] = min(ends)
            elif cleanup is not None:
                w.ord["end"] = cleanup
                w.inferred.append("end: taken as cleanup done")
            else:
                w.ord["end"] = min(hi, order.n)  # half open: every line of this migration is in
                w.inferred.append("end: not traced, taken as the end of the trace")
            # STATE_END: last line of the listen thread, else completed, else END.
            # The id is only a thread id if the listen thread's differs from the one that
            # handled LISTEN (QEMU <= 3.1 logs and simpletrace give the process id).
            se = None
            k = np.searchsorted(lt_start, li, side="left")
            li_tid = listen_tid[np.searchsorted(listen, li)] if len(listen) else -1
            if k < len(lt_start) and lt_start[k] < hi and lt_tid[k] >= 0 and lt_tid[k] != li_tid:
                se = _last_line_of_tid(cols, order, int(lt_tid[k]), li, hi)
            if se is None:
                c = _first_in(completed, li, hi)
                se = c if c is not None else w.ord["end"]
                w.inferred.append(
                    "state_end: no listen-thread id in the trace, taken as completed/END"
                )
            w.ord["state_end"] = max(se, w.ord["end"])
            if cleanup is None:
                w.ord["cleanup"] = w.ord["state_end"]
                w.inferred.append("cleanup: not traced, taken as STATE_END")
            else:
                w.ord["cleanup"] = max(cleanup, w.ord["end"])
        w.ns = {k: order.ts_of(v) for k, v in w.ord.items()}
        windows.append(w)
    return windows


def _last_line_of_tid(cols: Columns, order: Order, tid: int, lo: int, hi: int) -> int | None:
    o = order.of_lines(cols.thread(tid)[1])
    o = o[(o >= lo) & (o < hi)]
    return int(o.max()) if len(o) else None


def windows_table(windows: list[Window]) -> pa.Table:
    cols: dict[str, list] = {"migration": [w.migration for w in windows]}
    for k in MARKERS:
        cols[f"{k}_ns"] = [w.ns.get(k) for w in windows]
    for k in MARKERS:
        cols[f"{k}_ord"] = [w.ord.get(k) for w in windows]
    cols["inferred"] = ["; ".join(w.inferred) for w in windows]
    types = {"migration": pa.int32(), "inferred": pa.string()}
    return pa.table({k: pa.array(v, types.get(k, pa.int64())) for k, v in cols.items()})
