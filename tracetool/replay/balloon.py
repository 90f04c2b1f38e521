"""Balloon requests: one per ``virtio_balloon_handle_output`` (a 4 KiB page), with its direction
(inflate or deflate) and what QEMU observably did with it.

Direction, best evidence first: the ``virtio_queue_notify`` queue index on the same thread
(0 inflate, 1 deflate); the sign of the next ``virtio_balloon_set_config`` ``actual - oldactual``
on that thread when its magnitude equals the batch size; the last ``virtio_balloon_get_config``
target versus actual; a following 4 KiB ``ram_block_discard_range`` (an applied inflate).
Observed outcome (QEMU >= 4.0 traces discards): an inflate whose next line on the same thread is
a ``ram_block_discard_range`` was applied, else dropped; unknown without discard tracing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tracetool.replay.columns import Columns
from tracetool.trace import Trace

INFLATE, DEFLATE, UNRESOLVED = 1, -1, 0
EVIDENCE = ("none", "virtio_queue_notify", "set_config", "target", "discard")
OBS_APPLIED, OBS_DROPPED, OBS_UNKNOWN = 0, 1, 2
OBSERVED = ("applied", "dropped", "unknown")
_SHIFT = np.int64(1) << np.int64(40)  # lines < 2**40 in one key with the thread id


@dataclass
class Requests:
    """Balloon requests in trace order (numpy columns)."""

    line: np.ndarray
    order: np.ndarray
    tid: np.ndarray
    block_name: pa.Array
    gpa: np.ndarray
    direction: np.ndarray  # int8: 1 inflate, -1 deflate, 0 unresolved
    evidence: np.ndarray  # int8 index into EVIDENCE
    observed: np.ndarray  # int8 index into OBSERVED (inflates; deflates are OBS_UNKNOWN)
    discard_traced: bool

    def __len__(self) -> int:
        return len(self.line)


class ThreadOrder:
    """What comes next on the same thread. A log (lines increasing) answers per queried
    thread: that thread's rows, a binary search in their lines. Otherwise (or when the queries
    span many threads) every event is sorted by (thread, line) once."""

    MAX_THREADS = 16  # queried threads answered one by one; more: the full sort

    def __init__(self, trace: Trace, cols: Columns | None = None) -> None:
        cols = cols or Columns(trace)
        ev = trace.events
        self._cols = cols
        col = ev["event"]
        names = col.chunk(0).dictionary.to_pylist() if col.num_chunks else []
        self.name_id = {n: i for i, n in enumerate(names)}
        self.ev = (
            np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in col.chunks])
            if col.num_chunks
            else np.zeros(0, np.int32)
        )
        self._increasing = cols.lines_increasing()
        self._sort: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def tid(self) -> np.ndarray:
        """Thread id of every event (-1: none)."""
        return self._cols.tid()

    @property
    def line(self) -> np.ndarray:
        return self._cols.get(None, "line")

    @property
    def sort(self) -> np.ndarray:
        """Rows by (thread, line)."""
        return self._sorted()[0]

    @property
    def sorted_key(self) -> np.ndarray:
        return self._sorted()[1]

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sort is None:
            key = self.tid * _SHIFT + self.line
            srt = np.argsort(key, kind="stable")
            self._sort = (srt, key[srt])
        return self._sort

    def _thread(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        return self._cols.thread(tid)

    def lines_of(self, rows: np.ndarray) -> np.ndarray:
        """``self.line[rows]`` (-1: the last line, as numpy indexing gives) without converting
        the whole column."""
        n = self._cols.trace.events.num_rows
        return self._cols.take(None, "line", np.where(rows < 0, rows + n, rows))

    def next_event(self, tids: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Event-name id of the next line on the same thread after each (tid, line); -1 if none."""
        rows = self.next_row(tids, lines)
        return np.where(rows >= 0, self.ev[np.maximum(rows, 0)], -1) if len(self.ev) else rows

    def next_row(self, tids: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Row (in ``trace.events``) of the next line on the same thread; -1 if none."""
        tids = tids.astype(np.int64, copy=False)
        out = np.full(len(tids), -1, np.int64)
        uniq = np.unique(tids)
        if self._increasing and len(uniq) <= self.MAX_THREADS:
            for t in uniq.tolist():  # per queried thread
                rows, t_lines = self._thread(t)
                q = np.flatnonzero(tids == t) if len(uniq) > 1 else np.arange(len(tids))
                pos = np.searchsorted(t_lines, lines[q], side="right")
                ok = pos < len(rows)
                out[q[ok]] = rows[pos[ok]]
            return out
        srt, sorted_key = self._sorted()
        key = tids * _SHIFT + lines
        pos = np.searchsorted(sorted_key, key, side="right")
        ok = pos < len(sorted_key)
        nxt = srt[pos[ok]]
        same = self.tid[nxt] == tids[ok]
        out[np.flatnonzero(ok)[same]] = nxt[same]
        return out


def _keyed(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    tid = t["tid"].fill_null(-1).to_numpy().astype(np.int64)
    key = tid * _SHIFT + t["line"].to_numpy()
    idx = np.argsort(key, kind="stable")
    return key[idx], idx


def resolve(trace: Trace, order_of_lines, threads: ThreadOrder) -> Requests | None:
    """Balloon requests of the trace with their direction and observed outcome."""
    if "virtio_balloon_handle_output" not in trace:
        return None
    t = trace.table("virtio_balloon_handle_output")
    n = t.num_rows
    line = t["line"].to_numpy()
    tid = t["tid"].fill_null(-1).to_numpy().astype(np.int64)
    key = tid * _SHIFT + line
    gpa_col = "gpa" if "gpa" in t.column_names else t.column_names[-1]
    direction = np.zeros(n, np.int8)
    evidence = np.zeros(n, np.int8)

    def settle(mask: np.ndarray, values: np.ndarray, code: int) -> None:
        m = mask & (direction == UNRESOLVED) & (values != UNRESOLVED)
        direction[m] = values[m]
        evidence[m] = code

    # 1. virtio_queue_notify of the balloon device, last before the request on its thread.
    if "virtio_queue_notify" in trace:
        q = trace.table("virtio_queue_notify")
        qtid = q["tid"].fill_null(-1).to_numpy().astype(np.int64)
        nxt = threads.next_event(qtid, q["line"].to_numpy())
        hid = threads.name_id.get("virtio_balloon_handle_output", -2)
        vdev = q["vdev"].to_numpy()
        balloon_vdevs = np.unique(vdev[nxt == hid])
        qm = np.isin(vdev, balloon_vdevs)
        if qm.any():
            qkey = (qtid * _SHIFT + q["line"].to_numpy())[qm]
            qn = q["n"].to_numpy()[qm]
            srt = np.argsort(qkey)
            qkey, qn = qkey[srt], qn[srt]
            pos = np.searchsorted(qkey, key, side="left") - 1
            ok = (pos >= 0) & ((qkey[np.maximum(pos, 0)] // _SHIFT) == tid)
            val = np.where(
                qn[np.maximum(pos, 0)] == 0,
                INFLATE,
                np.where(qn[np.maximum(pos, 0)] == 1, DEFLATE, 0),
            )
            settle(ok, val.astype(np.int8), 1)

    # 2. Next set_config on the same thread: sign of actual - oldactual, if it equals the batch.
    if "virtio_balloon_set_config" in trace:
        s = trace.table("virtio_balloon_set_config")
        skey, sidx = _keyed(s)
        actual = s["actual"].to_numpy().astype(np.int64)[sidx]
        old = s[s.column_names[-1]].to_numpy().astype(np.int64)[sidx]
        pos = np.searchsorted(skey, key, side="right")
        ok = pos < len(skey)
        ok[ok] &= (skey[pos[ok]] // _SHIFT) == tid[ok]
        batch = np.bincount(pos[ok], minlength=len(skey) + 1)
        delta = np.zeros(n, np.int64)
        delta[ok] = (actual - old)[pos[ok]]
        size = np.zeros(n, np.int64)
        size[ok] = batch[pos[ok]]
        good = ok & (np.abs(delta) == size) & (delta != 0)
        settle(good, np.sign(delta).astype(np.int8), 2)

    # 3. Target versus actual of the last get_config before the request.
    if "virtio_balloon_get_config" in trace:
        g = trace.table("virtio_balloon_get_config")
        go = order_of_lines(g["line"].to_numpy())
        srt = np.argsort(go)
        go = go[srt]
        target = g["num_pages"].to_numpy().astype(np.int64)[srt]
        actual = g["actual"].to_numpy().astype(np.int64)[srt]
        pos = np.searchsorted(go, order_of_lines(line), side="left") - 1
        ok = pos >= 0
        val = np.sign(target - actual)[np.maximum(pos, 0)].astype(np.int8)
        settle(ok, val, 3)

    # 4./observed: the next line on the thread is a ram_block_discard_range.
    discard_traced = "ram_block_discard_range" in trace
    observed = np.full(n, OBS_UNKNOWN, np.int8)
    if discard_traced:
        did = threads.name_id["ram_block_discard_range"]
        followed = threads.next_event(tid, line) == did
        settle(followed, np.full(n, INFLATE, np.int8), 4)
        observed[direction == INFLATE] = OBS_DROPPED
        observed[(direction == INFLATE) & followed] = OBS_APPLIED

    names = t["name"] if "name" in t.column_names else pa.nulls(n, pa.string())
    return Requests(
        line=line,
        order=order_of_lines(line),
        tid=tid,
        block_name=names.combine_chunks() if hasattr(names, "combine_chunks") else names,
        gpa=t[gpa_col].to_numpy().astype(np.int64),
        direction=direction,
        evidence=evidence,
        observed=observed,
        discard_traced=discard_traced,
    )
