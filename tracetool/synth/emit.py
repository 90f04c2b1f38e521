"""Merge the model's sources into trace order, chunk by chunk, and record where rows land.

Chunks are time slices chosen so each holds about ``chunk_rows`` rows; every source expands
only the items of the slice, so memory stays bounded whatever the trace size. Within a chunk,
rows are ordered by ``(ts, prio, seq)``. The :class:`Recorder` keeps the positions (event
order, the replay's time-then-trace order) of the rows the ground truth needs: window markers,
balloon requests, and the page events of the host pages balloon requests touch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from tracetool.synth.rows import (
    PAGE_SHIFT,
    R_ADVISE,
    R_BALLOON,
    R_CL_ENTRY,
    R_CL_EXIT,
    R_COMPLETED,
    R_DAMAGED,
    R_DISCARD_CMD,
    R_FAULT,
    R_LISTEN,
    R_LOAD,
    R_LT_EXIT,
    R_LT_START,
    R_MIG_DISCARD,
    R_OTHER,
    R_PLACE,
    R_RECEIVE,
    R_RUN,
    TEXT_ROLES,
    Block,
)

MARKER_ROLES = {
    R_ADVISE: "advise", R_DISCARD_CMD: "discard", R_LISTEN: "listen", R_RUN: "run",
    R_LT_START: "lt_start", R_LT_EXIT: "lt_exit", R_CL_ENTRY: "cl_entry", R_CL_EXIT: "cl_exit",
    R_COMPLETED: "completed",
}  # fmt: skip
PAGE_ROLES = {R_LOAD: "load", R_FAULT: "fault", R_RECEIVE: "receive", R_PLACE: "place"}


def plan(sources, chunk_rows: int) -> list[tuple[int, int]]:
    """Time slices ``[t0, t1)`` covering every source, about ``chunk_rows`` rows each."""
    spans = [s.span() for s in sources]
    spans = [x for x in spans if x is not None]
    if not spans:
        return []
    lo = min(a for a, _ in spans)
    hi = max(b for _, b in spans) + 1
    total = sum(s.total for s in sources)
    n = max(1, -(-total // chunk_rows))
    cuts = [lo]
    for k in range(1, n):
        want = k * chunk_rows
        a, b = cuts[-1], hi
        while b - a > 1:  # first t with count_before(t) >= want
            m = (a + b) // 2
            if sum(s.count_before(m) for s in sources) >= want:
                b = m
            else:
                a = m
        if b > cuts[-1] and b < hi:
            cuts.append(b)
    cuts.append(hi)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


class Recorder:
    """What the truth needs to know about where the model's rows ended up."""

    def __init__(self, tracked_pages: np.ndarray, listen_tids: set[int], text: bool) -> None:
        tracked = np.unique(tracked_pages)
        # membership by bitmap over block 0 (pc.ram, the only block balloon pages are in)
        assert not len(tracked) or int(tracked.max()) >> PAGE_SHIFT == 0
        self.tracked = np.zeros(int(tracked.max()) + 2 if len(tracked) else 1, bool)
        self.tracked[tracked] = True
        self.listen_tids = listen_tids
        self.text = text  # other/damaged lines are written (log output)
        self.events = 0
        self.other = 0
        self.damaged = 0
        self.counts: Counter = Counter()
        self.markers: dict[str, list] = {v: [] for v in MARKER_ROLES.values()}
        self.lt_last: dict[int, int] = {}
        self.req_order: list = []  # (request index, order, ts)
        self.page: list = []  # (role code, page key, order, ts, hz)
        self.mig_discard: list = []  # (block, p0, p1, order, layer: 0 ADVISE, 1 bitmap)

    def record(self, blocks: list[Block], rank: list[np.ndarray], base: int) -> None:
        """``rank[i]``: event order of each row of ``blocks[i]`` (-1 for text lines)."""
        for b, order in zip(blocks, rank, strict=True):
            if b.role in TEXT_ROLES:
                if b.role == R_OTHER:
                    self.other += len(b)
                elif b.role == R_DAMAGED:
                    self.damaged += len(b)
                continue
            self.events += len(b)
            self.counts[b.event] += len(b)
            ts = b.ts
            if b.role in MARKER_ROLES:
                tid = np.broadcast_to(b.tid, (len(b),))
                self.markers[MARKER_ROLES[b.role]].extend(
                    zip(order.tolist(), ts.tolist(), tid.tolist(), strict=True)
                )
            if b.role == R_BALLOON:
                self.req_order.append(np.stack([b.tags["req"], order, ts], axis=1))
            elif b.role in PAGE_ROLES:
                pk = b.tags["pk"]
                sel = pk < len(self.tracked)
                sel[sel] = self.tracked[pk[sel]]
                if sel.any():
                    hz = b.tags.get("hz", np.zeros(len(b), np.int64))
                    self.page.append(np.stack([np.full(int(sel.sum()), b.role), pk[sel], order[sel],
                                               ts[sel], hz[sel]], axis=1))  # fmt: skip
            elif b.role == R_MIG_DISCARD:
                layer = np.full(len(b), 0 if b.event == "ram_discard_range" and "cmd" not in b.tags
                                else 1)  # fmt: skip
                self.mig_discard.append(
                    np.stack([b.tags["blk"], b.tags["p0"], b.tags["p1"], order, layer], axis=1)
                )
            tid = np.broadcast_to(b.tid, (len(b),))
            for lt in self.listen_tids:
                m = np.flatnonzero(tid == lt)
                if len(m):
                    i = m[np.argmax(order[m])]
                    if int(order[i]) > self.lt_last.get(lt, (-1, 0))[0]:
                        self.lt_last[lt] = (int(order[i]), int(ts[i]))

    def arrays(self) -> dict:
        def cat(parts, width):
            return np.concatenate(parts) if parts else np.zeros((0, width), np.int64)

        return {
            "req": cat(self.req_order, 3),
            "page": cat(self.page, 5),
            "mig_discard": cat(self.mig_discard, 5),
        }


def merge(blocks: list[Block]) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The trace order of a chunk's rows: ``perm`` (row indices of the concatenated blocks in
    order), and per block the row positions in that order and the event ranks (-1 for text)."""
    ts = np.concatenate([b.ts for b in blocks])
    prio = np.concatenate([np.full(len(b), b.prio, np.int64) for b in blocks])
    seq = np.concatenate([b.seq for b in blocks])
    perm = np.lexsort((seq, prio, ts))
    pos = np.empty(len(perm), np.int64)
    pos[perm] = np.arange(len(perm))
    is_event = np.concatenate([np.full(len(b), b.role not in TEXT_ROLES) for b in blocks])
    ev_rank_sorted = np.cumsum(is_event[perm]) - 1
    ev_rank = np.where(is_event, ev_rank_sorted[pos], -1)
    offs = np.concatenate([[0], np.cumsum([len(b) for b in blocks])])
    positions = [pos[offs[i] : offs[i + 1]] for i in range(len(blocks))]
    ranks = [ev_rank[offs[i] : offs[i + 1]] for i in range(len(blocks))]
    return perm, positions, ranks


def run(model, writer, chunk_rows: int = 1_000_000,
        progress: Callable[[int, int], None] | None = None) -> Recorder:  # fmt: skip
    """Write the model's rows with ``writer`` and return what the truth needs."""
    c = model.reqs.cols
    hp = model.hp
    tracked = (np.int64(0) << PAGE_SHIFT) | (c["offset"] // hp) if model.reqs.n else np.zeros(0)
    rec = Recorder(np.asarray(tracked, np.int64), {p.listen for p in model.procs},
                   writer.text_lines)  # fmt: skip
    total = sum(s.total for s in model.sources)
    done = 0
    base = 0
    for t0, t1 in plan(model.sources, chunk_rows):
        blocks = [b for s in model.sources for b in s.rows(t0, t1)]
        if not writer.text_lines:
            blocks = [b for b in blocks if b.role not in TEXT_ROLES]
        if not blocks:
            continue
        perm, positions, ranks = merge(blocks)
        ranks = [np.where(r >= 0, r + base, -1) for r in ranks]
        rec.record(blocks, ranks, base)
        writer.write(blocks, perm, positions, ranks)
        n_events = sum(len(b) for b in blocks if b.role not in TEXT_ROLES)
        base += n_events
        done += len(perm)
        if progress is not None:
            progress(done, total)
    return rec
