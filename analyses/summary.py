"""What is in a trace: counts, time span, line shape, QEMU version, migration phases seen on
this side, postcopy page traffic and balloon requests."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from analyses import qemu_version
from analyses.phases import phase_list
from analyses.phases import trace_side as _side
from tracetool.trace import Trace

NAME = "summary"
NEEDS: list[str] = []

TOP = 10


def _count(trace: Trace, name: str) -> int:
    return trace.event_counts().get(name, 0)


def _balloon(trace: Trace) -> dict:
    out = {
        "requests": _count(trace, "virtio_balloon_handle_output"),
        "set_config": _count(trace, "virtio_balloon_set_config"),
        "discards_4k": 0,
        "targets": [],
    }
    if "ram_block_discard_range" in trace:
        t = trace.table("ram_block_discard_range")
        if "length" in t.column_names:
            out["discards_4k"] = int(
                pc.sum(pc.equal(t["length"], pa.scalar(4096, pa.uint64()))).as_py() or 0
            )
    if "virtio_balloon_to_target" in trace:
        t = trace.table("virtio_balloon_to_target")
        if "target" in t.column_names:
            out["targets"] = [
                {"ts_ns": ts, "target_bytes": tg, "num_pages": n}
                for ts, tg, n in zip(
                    t["ts_ns"].to_pylist(),
                    t["target"].to_pylist(),
                    t["num_pages"].to_pylist(),
                    strict=True,
                )
            ]
    return out


def _postcopy(trace: Trace) -> dict:
    return {
        "fault_requests": _count(trace, "postcopy_ram_fault_thread_request"),
        "page_requests": _count(trace, "postcopy_page_req_add"),
        "pages_placed": _count(trace, "postcopy_place_page"),
        "zero_pages_placed": _count(trace, "postcopy_place_page_zero"),
        "pages_received": _count(trace, "ram_load_postcopy_loop"),
        "requests_served_by_source": _count(trace, "migrate_handle_rp_req_pages"),
        "discard_ranges_sent": _count(trace, "postcopy_discard_send_range"),
    }


def _time_span(trace: Trace) -> tuple[int | None, int | None]:
    ts = trace.events["ts_ns"]
    if trace.events.num_rows == 0 or ts.null_count == len(ts):
        return None, None
    mm = pc.min_max(ts)
    return mm["min"].as_py(), mm["max"].as_py()


def run(trace: Trace) -> dict:
    s = trace.stats
    first, last = _time_span(trace)
    counts = trace.event_counts()
    side = _side(trace)
    reasons: dict[str, int] = {}
    if trace.rejected.num_rows:
        vc = pc.value_counts(trace.rejected["reason"].combine_chunks())
        reasons = dict(
            zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
        )
    return {
        "path": s.path,
        "format": s.format,
        "compression": s.compression,
        "engine": s.engine,
        "line_shape": s.line_shape,
        "line_shapes": dict(s.shapes),
        "lines": s.lines,
        "events": s.events,
        "other_lines": s.other_lines,
        "rejected_lines": s.rejected_lines,
        "balanced": s.balanced,
        "bytes": s.bytes,
        "parse_seconds": round(s.seconds, 3),
        "clock": s.clock,
        "dropped_events": s.dropped_events,
        "input_damage": s.input_damage,
        "first_ts_ns": first,
        "last_ts_ns": last,
        "span_s": None if first is None else round((last - first) / 1e9, 6),
        "event_names": len(counts),
        "event_counts": counts,
        "top_events": [{"event": n, "count": c} for n, c in list(counts.items())[:TOP]],
        "rejected_reasons": reasons,
        "side": side,
        "qemu_version": qemu_version.run(trace),
        "phases": phase_list(trace, side),
        "postcopy": _postcopy(trace),
        "balloon": _balloon(trace),
    }
