"""Balloon activity over time: pages requested per direction, the balloon size the guest
reports, how long each target took to reach, and what QEMU did with the requests.

Directions and QEMU's observed outcome come from the replay's request resolution
(``tracetool.replay.balloon``); sizes from ``virtio_balloon_set_config`` (``actual``, 4 KiB
pages); targets from ``virtio_balloon_to_target`` (else ``balloon_event``).
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import pyarrow as pa

from analyses import _replayed
from analyses.base import AnalysisResult, Needs
from analyses.summary import _side
from tracetool.replay import ReplayResult
from tracetool.replay import balloon as rb
from tracetool.trace import Trace

NAME = "balloon"
NEEDS = Needs(
    any_of=(
        (
            "virtio_balloon_handle_output",
            "virtio_balloon_set_config",
            "virtio_balloon_to_target",
            "balloon_event",
        ),
    )
)
MAX_BINS = 500
KIB4 = 4096


class Direction(enum.IntEnum):
    """A balloon request's direction, as the replay resolved it."""

    INFLATE = rb.INFLATE
    DEFLATE = rb.DEFLATE
    UNRESOLVED = rb.UNRESOLVED


TIMELINE_SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("t_rel_s", pa.float64()),
        ("side", pa.string()),
        ("inflate_pages", pa.int64()),
        ("deflate_pages", pa.int64()),
        ("actual_pages", pa.int64()),
    ]
)
TARGETS_SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("line", pa.int64()),
        ("event", pa.string()),
        ("target_bytes", pa.uint64()),
        ("num_pages", pa.int64()),
        ("from_pages", pa.int64()),
        ("reached_ts_ns", pa.int64()),
        ("time_to_target_s", pa.float64()),
    ]
)
REQUESTS_SCHEMA = pa.schema(
    [("direction", pa.string()), ("observed", pa.string()), ("pages", pa.int64()),
     ("bytes", pa.int64())]
)  # fmt: skip


class _SetConfig:
    """``virtio_balloon_set_config`` records in replay order: x (ns or order), actual, old."""

    def __init__(self, trace: Trace, res: ReplayResult) -> None:
        t = (
            trace.table("virtio_balloon_set_config")
            if "virtio_balloon_set_config" in trace
            else None
        )
        if t is None or not {"actual", "oldactual"} <= set(t.column_names):  # not decoded
            self.x = self.actual = self.old = np.zeros(0, np.int64)
            return
        order = res.order.of_lines(t["line"].to_numpy())
        srt = np.argsort(order, kind="stable")
        self.x = _x(res, order[srt])
        self.actual = t["actual"].to_numpy().astype(np.int64)[srt]
        self.old = t["oldactual"].to_numpy().astype(np.int64)[srt]

    def at(self, x: np.ndarray) -> np.ndarray:
        """Balloon size reported before each x (the first record's ``oldactual`` before it;
        -1 without any record)."""
        if not len(self.x):
            return np.full(len(x), -1, np.int64)
        pos = np.searchsorted(self.x, x, side="left") - 1
        return np.where(pos >= 0, self.actual[np.maximum(pos, 0)], self.old[0])


def _x(res: ReplayResult, orders: np.ndarray) -> np.ndarray:
    """x position of replay orders: their timestamp, or the order itself without timestamps."""
    ts = _replayed.ts_of_orders(res, orders)
    return np.asarray(orders if ts is None else ts, np.int64)


def _timeline(trace: Trace, res: ReplayResult, sc: _SetConfig) -> pa.Table:
    timed = _replayed.has_time(res)
    if res.order.n == 0:
        return TIMELINE_SCHEMA.empty_table()
    lo, hi = (
        (int(res.order.ts_sorted[0]), int(res.order.ts_sorted[-1])) if timed else (0, res.order.n)
    )
    origin = _replayed.origin_ns(res) if timed else 0
    bins = _replayed.Bins.over(lo, hi, origin, MAX_BINS, _replayed.MIN_NS if timed else 1)
    r = res.requests
    counts = {}
    for d in (Direction.INFLATE, Direction.DEFLATE):
        if r is None:
            counts[d] = np.zeros(bins.n, np.int64)
            continue
        x = _x(res, r.order[r.direction == d])
        counts[d] = np.bincount(bins.index(x), minlength=bins.n)[: bins.n]
    starts = bins.starts()
    actual = sc.at(starts + bins.width)
    return pa.table(
        {
            "ts_ns": pa.array(starts, pa.int64()) if timed else pa.nulls(bins.n, pa.int64()),
            "t_rel_s": _replayed.t_rel_s(starts if timed else None, origin, bins.n),
            "side": pa.array([_side(trace)] * bins.n, pa.string()),
            "inflate_pages": counts[Direction.INFLATE],
            "deflate_pages": counts[Direction.DEFLATE],
            "actual_pages": pa.array(actual, mask=actual < 0),
        },
        schema=TIMELINE_SCHEMA,
    )


def _target_records(trace: Trace) -> tuple[str, pa.Table] | None:
    for name in ("virtio_balloon_to_target", "balloon_event"):
        if name in trace:
            return name, trace.table(name)
    return None


def _targets(trace: Trace, res: ReplayResult, sc: _SetConfig) -> pa.Table:
    """One row per target; reached when set_config's actual gets to ``num_pages`` (from
    below for an inflate, from above for a deflate) before the next target."""
    found = _target_records(trace)
    if found is None:
        return TARGETS_SCHEMA.empty_table()
    name, t = found
    order = res.order.of_lines(t["line"].to_numpy())
    srt = np.argsort(order, kind="stable")
    t = t.take(pa.array(srt))
    x = _x(res, order[srt])
    n = t.num_rows
    if name == "virtio_balloon_to_target":
        target = t["target"].to_numpy().astype(np.uint64)
        num = t["num_pages"].to_numpy().astype(np.int64)
    else:  # balloon_event: addr is the target size in bytes; the page count needs RAM size
        target = t["addr"].to_numpy().astype(np.uint64)
        num = np.full(n, -1, np.int64)
    before = sc.at(x)
    reached = np.full(n, -1, np.int64)
    nxt = np.append(x[1:], np.iinfo(np.int64).max)
    for i in np.flatnonzero(num >= 0):  # one per target request: a handful
        if before[i] == num[i]:
            reached[i] = x[i]
            continue
        a, b = np.searchsorted(sc.x, [x[i], nxt[i]], side="left")
        sign = 1 if before[i] < num[i] else -1
        hit = np.flatnonzero(sign * (sc.actual[a:b] - num[i]) >= 0)
        if len(hit):
            reached[i] = sc.x[a + hit[0]]
    timed = _replayed.has_time(res)
    got = reached >= 0
    return pa.table(
        {
            "ts_ns": t["ts_ns"],
            "line": t["line"],
            "event": pa.array([name] * n, pa.string()),
            "target_bytes": target,
            "num_pages": pa.array(num, mask=num < 0),
            "from_pages": pa.array(before, mask=before < 0),
            "reached_ts_ns": pa.array(reached, mask=~got | (not timed)),
            "time_to_target_s": pa.array((reached - x) / 1e9, mask=~got | (not timed)),
        },
        schema=TARGETS_SCHEMA,
    )


def _requests(res: ReplayResult) -> pa.Table:
    r = res.requests
    if r is None or not len(r):
        return REQUESTS_SCHEMA.empty_table()
    combo = (r.direction.astype(np.int64) + 1) * len(rb.OBSERVED) + r.observed
    codes, pages = np.unique(combo, return_counts=True)
    direction = [Direction(int(c) // len(rb.OBSERVED) - 1).name.lower() for c in codes]
    observed = [rb.OBSERVED[int(c) % len(rb.OBSERVED)] for c in codes]
    return pa.table(
        {"direction": direction, "observed": observed, "pages": pages, "bytes": pages * KIB4},
        schema=REQUESTS_SCHEMA,
    )


def run(trace: Trace, **options: Any) -> AnalysisResult:
    """Balloon requests per time bin, target requests and their time to target, and request
    outcomes per direction (options: those of ``trace.replay()``)."""
    NEEDS.check(trace, NAME)
    res = _replayed.replay(trace, NAME, **options)
    sc = _SetConfig(trace, res)
    timeline = _timeline(trace, res, sc)
    targets = _targets(trace, res, sc)
    requests = _requests(res)
    r = res.requests
    obs = res.summary["observed"]

    def pages(d: Direction) -> int:
        return int(np.count_nonzero(r.direction == d)) if r is not None else 0

    tt = targets["time_to_target_s"].drop_null().to_pylist()
    summary = {
        "inflate_pages": pages(Direction.INFLATE),
        "deflate_pages": pages(Direction.DEFLATE),
        "unresolved_pages": pages(Direction.UNRESOLVED),
        "targets": targets.num_rows,
        "targets_reached": targets.num_rows - targets["reached_ts_ns"].null_count,
        "max_time_to_target_s": max(tt) if tt else None,
        "observed_applied_pages": obs["applied_pages"],
        "observed_dropped_pages": obs["dropped_pages"],
        "final_actual_pages": int(sc.actual[-1]) if len(sc.actual) else None,
        "bin_width_ns": _bin_width(timeline),
    }
    notes = []
    if not _replayed.has_time(res):
        notes.append("no timestamps: timeline bins are over trace order, times are null")
    if targets.num_rows and targets["num_pages"].null_count:
        notes.append("balloon_event only: target page counts need virtio_balloon_to_target")
    return AnalysisResult(
        NAME,
        summary,
        {"timeline": timeline, "targets": targets, "requests": requests},
        notes,
    )


def _bin_width(timeline: pa.Table) -> int | None:
    ts = timeline["ts_ns"].drop_null().to_numpy()
    return int(ts[1] - ts[0]) if len(ts) > 1 else None
