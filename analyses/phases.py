"""Migration phases: every ``migrate_set_state`` and postcopy phase marker, per migration and side.

A migration starts at SETUP or at the postcopy ADVISE (whichever comes first); a second SETUP or
ADVISE, or a new state after a final one (completed, failed, cancelled), starts the next. A
repeated marker inside one migration (one per discard command, the listen stages) keeps its
first line. Rows are in time order (ties: trace order).
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import pyarrow as pa

from analyses.base import AnalysisResult, Needs
from tracetool.enums import migration_state
from tracetool.trace import Trace

NAME = "phases"


class Side(str, Enum):
    SOURCE = "source"
    DESTINATION = "destination"
    UNKNOWN = "unknown"


#: Events that mark postcopy phases, in the order QEMU emits them (D = destination, S = source).
PHASE_MARKERS = {
    "qemu_savevm_send_postcopy_advise": "postcopy advise sent (S)",
    "postcopy_start": "postcopy start (S)",
    "savevm_send_postcopy_listen": "postcopy listen sent (S)",
    "savevm_send_postcopy_run": "postcopy run sent (S)",
    "loadvm_postcopy_handle_advise": "postcopy advise (D)",
    "loadvm_postcopy_ram_handle_discard": "postcopy discard (D)",
    "loadvm_postcopy_handle_listen": "postcopy listen (D)",
    "postcopy_ram_enable_notify": "userfaultfd registered (D)",
    "loadvm_postcopy_handle_run": "postcopy run (D)",
    "postcopy_ram_listen_thread_exit": "listen thread exit (D)",
    "postcopy_ram_incoming_cleanup_entry": "postcopy cleanup start (D)",
    "postcopy_ram_incoming_cleanup_exit": "postcopy cleanup done (D)",
}
NEEDS = Needs(any_of=(("migrate_set_state", *PHASE_MARKERS),))

#: States/markers that open a migration, and the states that close one.
START = {"setup": "setup", "postcopy advise sent (S)": "advise", "postcopy advise (D)": "advise"}
FINAL = frozenset({"completed", "failed", "cancelled"})
#: Fallback markers for the postcopy start/end when ``migrate_set_state`` is absent (QEMU 2.5 D).
POSTCOPY_START = ("postcopy-active", "postcopy start (S)", "postcopy listen (D)")
POSTCOPY_END = ("completed", "failed", "listen thread exit (D)", "postcopy cleanup start (D)")

SCHEMA = pa.schema(
    [
        ("migration", pa.int32()),
        ("side", pa.string()),
        ("state", pa.string()),
        ("ts_ns", pa.int64()),
        ("line", pa.int64()),
        ("duration_ns", pa.int64()),
        ("t_rel_s", pa.float64()),
    ]
)


SOURCE_EVENTS = ("savevm_", "qemu_savevm_", "ram_save_", "postcopy_start", "migrate_handle_rp")
DEST_EVENTS = ("loadvm_", "qemu_loadvm_", "ram_load_", "postcopy_place_page", "postcopy_ram_fault")


def trace_side(trace: Trace) -> str:
    """Which side wrote the trace, by its share of source-only and destination-only events."""
    counts = trace.event_counts()
    src = sum(c for n, c in counts.items() if n.startswith(SOURCE_EVENTS))
    dst = sum(c for n, c in counts.items() if n.startswith(DEST_EVENTS))
    if src == dst == 0:
        return Side.UNKNOWN.value
    return Side.SOURCE.value if src > dst else Side.DESTINATION.value


def _marker_side(state: str, side: str) -> str:
    if state.endswith("(S)"):
        return Side.SOURCE.value
    if state.endswith("(D)"):
        return Side.DESTINATION.value
    return side


def thread_sides(trace: Trace) -> dict[int, str]:
    """Side of each thread (or process) id that wrote source-only or destination-only events:
    a log holding both processes (a libvirt domain log, a synthetic trace) has both."""
    ev = trace.events
    if ev.num_rows == 0 or ev["tid"].null_count == ev.num_rows:
        return {}
    names = ev["event"].combine_chunks()
    kinds = np.array(
        [1 if n.startswith(SOURCE_EVENTS) else -1 if n.startswith(DEST_EVENTS) else 0
         for n in names.dictionary.to_pylist()] or [0],
        np.int8,
    )  # fmt: skip
    row_kind = kinds[names.indices.to_numpy(zero_copy_only=False)]
    sel = row_kind != 0
    tids, inv = np.unique(ev["tid"].fill_null(-1).to_numpy()[sel], return_inverse=True)
    src = np.bincount(inv, weights=row_kind[sel] == 1, minlength=len(tids))
    dst = np.bincount(inv, weights=row_kind[sel] == -1, minlength=len(tids))
    return {
        int(t): Side.SOURCE.value if a > b else Side.DESTINATION.value
        for t, a, b in zip(tids, src, dst, strict=True)
        if t >= 0 and a != b
    }


def _raw_rows(trace: Trace, side: str) -> list[dict]:
    """Every state change and marker record (markers repeat), in time-then-trace order. A state
    change takes the side of the thread that wrote it when that is known, else ``side``."""
    rows: list[dict] = []
    if "migrate_set_state" in trace:
        t = trace.table("migrate_set_state")
        col = "new_state" if "new_state" in t.column_names else t.column_names[-1]
        sides = thread_sides(trace)
        for ts, tid, line, state in zip(
            t["ts_ns"].to_pylist(), t["tid"].to_pylist(), t["line"].to_pylist(),
            t[col].to_pylist(), strict=True,
        ):  # fmt: skip
            rows.append(
                {"side": sides.get(tid, side), "state": migration_state(state), "ts_ns": ts,
                 "line": line}
            )  # fmt: skip
    for name, what in PHASE_MARKERS.items():
        if name in trace:
            t = trace.table(name)
            s = _marker_side(what, side)
            for ts, line in zip(t["ts_ns"].to_pylist(), t["line"].to_pylist(), strict=True):
                rows.append({"side": s, "state": what, "ts_ns": ts, "line": line})
    rows.sort(key=lambda r: (r["ts_ns"] is None, r["ts_ns"] or 0, r["line"]))
    return rows


def kept_rows(trace: Trace, side: str) -> list[tuple[int, dict]]:
    """(migration, row) of every kept row: migrations are numbered per side (the source's
    outgoing migration 0 and the destination's incoming migration 0 are the same one)."""
    by_side: dict[str, list[dict]] = {}
    for r in _raw_rows(trace, side):
        by_side.setdefault(r["side"], []).append(r)
    out = [x for rows in by_side.values() for x in assign(rows)]
    out.sort(key=lambda mr: (mr[1]["ts_ns"] is None, mr[1]["ts_ns"] or 0, mr[1]["line"]))
    return out


def assign(rows: list[dict]) -> list[tuple[int, dict]]:
    """(migration, row) for each row of one side that is kept (see the module docstring)."""
    out: list[tuple[int, dict]] = []
    mig, starts, final, seen = 0, set(), False, set()
    for r in rows:
        kind = START.get(r["state"])
        is_state = not r["state"].endswith(")")
        new = (kind is not None and kind in starts) or (final and (kind or is_state))
        if new and out:
            mig, starts, final, seen = mig + 1, set(), False, set()
        if kind:
            starts.add(kind)
        if r["state"] in FINAL:
            final = True
        if not is_state:  # a marker: its first record per migration only
            if r["state"] in seen:
                continue
            seen.add(r["state"])
        out.append((mig, r))
    return out


def phase_list(trace: Trace, side: str) -> list[dict]:
    """The ``phases`` list of ``tracetool analyze --json``: ``{side, state, ts_ns, line}``."""
    return [r for _, r in kept_rows(trace, side)]


def migration_starts(trace: Trace, side: str | None = None) -> np.ndarray:
    """Trace line of the first phase row of each migration (sorted), from the destination's
    rows when the trace has any (page events are the destination's)."""
    kept = kept_rows(trace, side or trace_side(trace))
    if any(r["side"] == Side.DESTINATION.value for _, r in kept):
        kept = [(m, r) for m, r in kept if r["side"] == Side.DESTINATION.value]
    first: dict[int, int] = {}
    for m, r in kept:
        first.setdefault(m, r["line"])
    return np.sort(np.array(list(first.values()), np.int64))


def migration_of(starts: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Migration index of trace lines: the last start at or before each (0 before the first)."""
    if len(starts) == 0:
        return np.zeros(len(lines), np.int32)
    return np.maximum(np.searchsorted(starts, lines, side="right") - 1, 0).astype(np.int32)


def _secs(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / 1e9, 6)


def _first(rows: list[dict], states, after: int | None = None) -> int | None:
    """Time of the first row of the first of ``states`` (in priority order) that has one."""
    for state in states:
        for r in rows:
            if r["state"] == state and (after is None or (r["ts_ns"] or 0) >= after):
                return r["ts_ns"]
    return None


def _per_migration(mig: int, side: str, rows: list[dict]) -> dict:
    states = [r for r in rows if not r["state"].endswith(")")]
    setup, active = _first(rows, ("setup",)), _first(rows, ("active",))
    pc_start = _first(rows, POSTCOPY_START)
    pc_end = None if pc_start is None else _first(rows, POSTCOPY_END, after=pc_start)
    final = next((r["ts_ns"] for r in states if r["state"] in FINAL), None)
    start = rows[0]["ts_ns"] if rows else None
    return {
        "migration": mig,
        "side": side,
        "setup_s": _secs(setup, active),
        "precopy_s": _secs(active, pc_start if pc_start is not None else final),
        "postcopy_s": _secs(pc_start, pc_end),
        "total_s": _secs(start, final),
        "final_state": states[-1]["state"] if states else None,
    }


def run(trace: Trace) -> AnalysisResult:
    """Phase rows per migration and side, with durations and the per-migration timings."""
    NEEDS.check(trace, NAME)
    side = trace_side(trace)
    kept = kept_rows(trace, side)
    groups: dict[tuple[int, str], list[dict]] = {}
    for m, r in kept:
        groups.setdefault((m, r["side"]), []).append(r)
    mig_start: dict[int, int | None] = {}
    for m, r in kept:
        if mig_start.get(m) is None:
            mig_start[m] = r["ts_ns"]
    duration: dict[int, int | None] = {}
    for rows in groups.values():
        for a, b in zip(rows, [*rows[1:], None], strict=True):
            ok = b is not None and a["ts_ns"] is not None and b["ts_ns"] is not None
            duration[id(a)] = b["ts_ns"] - a["ts_ns"] if ok else None
    cols: dict[str, list] = {f.name: [] for f in SCHEMA}
    for m, r in kept:
        base = mig_start.get(m)
        cols["migration"].append(m)
        for k in ("side", "state", "ts_ns", "line"):
            cols[k].append(r[k])
        cols["duration_ns"].append(duration[id(r)])
        cols["t_rel_s"].append(
            None if base is None or r["ts_ns"] is None else (r["ts_ns"] - base) / 1e9
        )
    table = pa.table(cols, schema=SCHEMA)
    summary = {
        "start_ns": mig_start.get(0),
        "migrations": len(mig_start),
        "phases": [r for _, r in kept],
        "per_migration": [_per_migration(m, s, rows) for (m, s), rows in sorted(groups.items())],
    }
    return AnalysisResult(NAME, summary, {"phases": table})
