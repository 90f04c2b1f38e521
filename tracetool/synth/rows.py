"""Rows of the generated trace: homogeneous blocks (one event per block) and the sources that
produce them for a time slice.

A source is one thread's (or one activity's) sequence of rows, sorted by time. The emitter asks
every source for the rows of ``[t0, t1)`` (microseconds) and merges them by ``(ts, prio, seq)``:
``prio`` is the source's rank, ``seq`` the row's position in its source, so equal timestamps
keep a total, deterministic order (the order a reader sees, line by line).

Each row carries a truth ``role`` (what the replay contract cares about: window markers, page
events, balloon requests) and tags (host page key, request index) so the generator can record
where the rows it planted land in the trace, without reading the trace back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Truth roles of rows.
R_NONE, R_ADVISE, R_DISCARD_CMD, R_LISTEN, R_RUN, R_LT_START = 0, 1, 2, 3, 4, 5
R_LT_EXIT, R_CL_ENTRY, R_CL_EXIT, R_COMPLETED = 6, 7, 8, 9
R_MIG_DISCARD, R_LOAD, R_FAULT, R_RECEIVE, R_PLACE, R_BALLOON, R_BALLOON_DISCARD = (
    10, 11, 12, 13, 14, 15, 16,
)  # fmt: skip
R_OTHER, R_DAMAGED = 20, 21
#: roles of rows that are not trace records (log text only)
TEXT_ROLES = (R_OTHER, R_DAMAGED)

PAGE_SHIFT = 40  # page key = block id << 40 | host page index


@dataclass
class Block:
    """Rows of one event (or text lines when ``event`` is empty), any order."""

    event: str
    ts: np.ndarray  # int64 microseconds since the epoch
    prio: int
    seq: np.ndarray  # int64, unique within the source
    tid: np.ndarray  # int64 thread id (the process id for the main thread)
    pid: np.ndarray  # int64 process id
    fields: dict[str, object] = field(default_factory=dict)  # argument name -> column
    role: int = R_NONE
    tags: dict[str, np.ndarray] = field(default_factory=dict)
    text: list[str] | None = None  # other/damaged lines: the text after the prefix
    prefixed: np.ndarray | None = None  # text lines: 0 no prefix, 1 the trace prefix, 2 ISO

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> Block:
        def sub(v):
            if isinstance(v, np.ndarray):
                return v[idx]
            if isinstance(v, list):
                return [v[i] for i in idx]
            return v  # a constant

        return Block(
            self.event, self.ts[idx], self.prio, self.seq[idx], sub(self.tid), sub(self.pid),
            {k: sub(v) for k, v in self.fields.items()}, self.role,
            {k: v[idx] for k, v in self.tags.items()},
            None if self.text is None else [self.text[i] for i in idx],
            None if self.prefixed is None else self.prefixed[idx],
        )  # fmt: skip


def full(n: int, v, dtype=np.int64) -> np.ndarray:
    return np.full(n, v, dtype)


class Source:
    """A time-sorted sequence of items (an item expands into one or more rows).

    Subclasses set ``t_first``/``t_last`` (int64 arrays, non-decreasing: the first and last row
    time of each item), ``cum_rows`` (rows before each item, len items + 1) and implement
    ``_expand(lo, hi)`` returning the blocks of items ``lo .. hi-1``.
    """

    prio: int = 0
    t_first: np.ndarray
    t_last: np.ndarray
    cum_rows: np.ndarray

    @property
    def total(self) -> int:
        return int(self.cum_rows[-1]) if len(self.cum_rows) else 0

    def count_before(self, t: int) -> int:
        return int(self.cum_rows[np.searchsorted(self.t_first, t, side="left")])

    def span(self) -> tuple[int, int] | None:
        if not len(self.t_first):
            return None
        return int(self.t_first[0]), int(self.t_last.max())

    def rows(self, t0: int, t1: int) -> list[Block]:
        lo = int(np.searchsorted(self.t_last, t0, side="left"))
        hi = int(np.searchsorted(self.t_first, t1, side="left"))
        if hi <= lo:
            return []
        out = []
        for b in self._expand(lo, hi):
            if not len(b):
                continue
            keep = (b.ts >= t0) & (b.ts < t1)
            if not keep.all():
                b = b.take(np.flatnonzero(keep))
            if len(b):
                out.append(b)
        return out

    def _expand(self, lo: int, hi: int) -> list[Block]:
        raise NotImplementedError


class Script(Source):
    """Rows written one by one (markers, targets, process headers): few, explicit."""

    def __init__(self, prio: int) -> None:
        self.prio = prio
        self._rows: list[tuple] = []
        self._final: dict | None = None

    def add(self, ts: int, tid: int, pid: int, event: str, role: int = R_NONE, tags=None,
            **fields) -> None:  # fmt: skip
        self._rows.append((int(ts), int(tid), int(pid), event, role, tags or {}, fields, None))

    def text(self, ts: int, tid: int, pid: int, text: str, role: int, prefixed: int) -> None:
        self._rows.append((int(ts), int(tid), int(pid), "", role, {}, {}, (text, prefixed)))

    def finish(self) -> Script:
        rows = sorted(enumerate(self._rows), key=lambda r: (r[1][0], r[0]))
        self._sorted = [r for _, r in rows]
        ts = np.array([r[0] for r in self._sorted], np.int64)
        self.t_first = self.t_last = ts
        self.cum_rows = np.arange(len(ts) + 1, dtype=np.int64)
        self._rows = []
        return self

    def _expand(self, lo: int, hi: int) -> list[Block]:
        groups: dict[tuple, list[int]] = {}
        for i in range(lo, hi):
            r = self._sorted[i]
            key = (r[3], r[4], tuple(sorted(r[5])), tuple(sorted(r[6])))
            groups.setdefault(key, []).append(i)
        out = []
        for (event, role, tag_keys, field_keys), idx in groups.items():
            rows = [self._sorted[i] for i in idx]
            b = Block(
                event,
                np.array([r[0] for r in rows], np.int64),
                self.prio,
                np.array(idx, np.int64),
                np.array([r[1] for r in rows], np.int64),
                np.array([r[2] for r in rows], np.int64),
                {k: _column([r[6][k] for r in rows]) for k in field_keys},
                role,
                {k: np.array([r[5][k] for r in rows], np.int64) for k in tag_keys},
            )
            if not event:
                b.text = [r[7][0] for r in rows]
                b.prefixed = np.array([r[7][1] for r in rows], np.int8)
            out.append(b)
        return out


def _column(values: list) -> object:
    if all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    return np.array(values, dtype=np.int64)
