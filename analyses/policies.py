"""The balloon policies compared on one trace: the replay's accounting per policy, and the memory
the balloon holds over time under each one (``docs/replay.md``, ``docs/analyses.md``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from analyses import _replayed
from analyses.base import AnalysisResult, Needs
from tracetool.replay import ConflictClass, ReplayResult
from tracetool.trace import Trace

NAME = "policies"
NEEDS = Needs(
    all_of=("virtio_balloon_handle_output",),
    any_of=(("postcopy_place_page", "postcopy_place_page_zero"),),
)
MAX_POINTS = 2000
CLASSES = [c.value for c in ConflictClass]
_COUNTS = ("inflate_pages", "inflate_pages_in_window", "applied_pages", "dropped_pages",
           "deferred_pages", "cancelled_pages")  # fmt: skip
_TAIL = ("conflict_pages", "refault_expected")
_BYTES = ("reclaimed_bytes_end_of_window", "reclaimed_bytes_end_of_trace")

COMPARISON_SCHEMA = pa.schema(
    [("policy", pa.string()), ("effective_policy", pa.string())]
    + [(c, pa.int64()) for c in (*_COUNTS, *CLASSES, *_TAIL, *_BYTES)]
)
RECLAIMED_SCHEMA = pa.schema(
    [("ts_ns", pa.int64()), ("t_rel_s", pa.float64()), ("policy", pa.string()),
     ("reclaimed_bytes", pa.int64())]
)  # fmt: skip


def _comparison(res: ReplayResult) -> pa.Table:
    rows = []
    for name, p in res.summary["policies"].items():
        row = {"policy": name, "effective_policy": p["effective_policy"]}
        row |= {k: p[k] for k in (*_COUNTS, *_TAIL, *_BYTES)}
        row |= {c: p["conflicts"][c] for c in CLASSES}
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA)


def _series(res: ReplayResult, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, bytes held from x on), x being ns (replay orders without timestamps), from the first
    event to the last; past MAX_POINTS changes, the value at the end of each of MAX_POINTS
    equal bins of x."""
    at, held = res.reclaimed_steps(policy)
    n = res.order.n
    at, held = np.append(0, at), np.append(0, held)  # nothing is held before the first event
    keep = at < n
    at, held = at[keep], held[keep]
    ts = _replayed.ts_of_orders(res, at)
    x = at if ts is None else ts
    last = np.append(x[1:] != x[:-1], True)  # one point per x: the value after its changes
    x, held = x[last], held[last]
    lo, hi = (0, max(n - 1, 0)) if ts is None else (res.order.ts_sorted[0], res.order.ts_sorted[-1])
    if len(x) > MAX_POINTS:
        edges = np.linspace(lo, hi, MAX_POINTS + 1)[1:].astype(np.int64)
        edges[-1] = hi
        pos = np.searchsorted(x, edges, side="right") - 1
        x, held = edges, held[pos]
    if x[-1] < hi:  # the series ends at the end of the trace
        x, held = np.append(x, hi), np.append(held, held[-1])
    return x, held


def _reclaimed(res: ReplayResult) -> pa.Table:
    timed = _replayed.has_time(res)
    origin = _replayed.origin_ns(res)
    parts = []
    for name in res.summary["policies"]:
        x, held = _series(res, name)
        parts.append(
            pa.table(
                {
                    "ts_ns": pa.array(x, pa.int64()) if timed else pa.nulls(len(x), pa.int64()),
                    "t_rel_s": _replayed.t_rel_s(x if timed else None, origin, len(x)),
                    "policy": pa.array([name] * len(x), pa.string()),
                    "reclaimed_bytes": held,
                },
                schema=RECLAIMED_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else RECLAIMED_SCHEMA.empty_table()


def _best(policies: dict[str, dict]) -> str | None:
    """Most memory held at the end of the trace among policies without conflicts; ties go to
    more at the end of the window, then fewer dropped pages, then the listed order."""
    clean = [
        (n, p)
        for n, p in policies.items()
        if not sum(p["conflicts"].values()) and n != "qemu"  # qemu is another policy's rule
    ]
    if not clean:
        return None
    return max(
        clean,
        key=lambda np_: (
            np_[1]["reclaimed_bytes_end_of_trace"],
            np_[1]["reclaimed_bytes_end_of_window"] or 0,
            -np_[1]["dropped_pages"],
        ),
    )[0]


def run(trace: Trace, **options: Any) -> AnalysisResult:
    """Per policy: the replay's accounting and the memory reclaimed over time (options: those
    of ``trace.replay()``: race_window_ns, memory_map, host_page_size, qemu_version)."""
    NEEDS.check(trace, NAME)
    res = _replayed.replay(trace, NAME, **options)
    pols = res.summary["policies"]
    summary = {
        "policies": {
            n: {
                "effective_policy": p["effective_policy"],
                "applied_pages": p["applied_pages"],
                "dropped_pages": p["dropped_pages"],
                "deferred_pages": p["deferred_pages"],
                "conflicts": sum(p["conflicts"].values()),
                "conflict_pages": p["conflict_pages"],
                "reclaimed_bytes_end_of_window": p["reclaimed_bytes_end_of_window"],
                "reclaimed_bytes_end_of_trace": p["reclaimed_bytes_end_of_trace"],
            }
            for n, p in pols.items()
        },
        "best_policy": _best(pols),
        "observed": res.summary["observed"],
        "qemu_policy": res.summary["qemu_policy"],
    }
    notes = [] if _replayed.has_time(res) else ["no timestamps: reclaimed times are null"]
    return AnalysisResult(
        NAME, summary, {"comparison": _comparison(res), "reclaimed": _reclaimed(res)}, notes
    )
