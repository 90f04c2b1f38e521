"""postcopy_faults analysis: hand-made traces with known latencies (both methods, blocktime with
a superseded fault), and the real captures against a plain-text pass over their raw lines."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

import tracetool
from analyses import MissingAnalysisEvents, run
from tests.conftest import DST_EXCERPT, SRC_EXCERPT, shared_trace
from tests.replay_traces import HVA, postcopy

FAULT_TID = 2001  # the builder's fault thread of migration 0


def _fault_trace():
    """Faults on pages 0x1000 (twice), 0x2000 (never placed), 0x3000 (placed before it is
    requested, never again); background places of 0x8000 and a zero page 0x9000."""
    t = postcopy()
    t.fault(4.0, 0x1000).fault(4.0002, 0x1000).place(4.0010, 0x1000)
    t.fault(4.1, 0x2000)
    t.place(3.5, 0x3000).fault(4.2, 0x3000)
    t.place(4.3, 0x8000).place(4.4, 0x9000, zero=True)
    return t.end(t=9.0)


def test_fault_request_to_place_exact(tmp_path):
    t = _fault_trace()
    res = run("postcopy_faults", t.load(tmp_path))
    s = res.summary
    assert s["method"].startswith("postcopy_ram_fault_thread_request")
    rows = res.tables["requests"].to_pylist()
    assert [r["offset"] for r in rows] == [0x1000, 0x2000, 0x3000]
    assert [r["hva"] for r in rows] == [HVA + 0x1000, HVA + 0x2000, HVA + 0x3000]
    assert [r["requests"] for r in rows] == [2, 1, 1]
    assert rows[0]["latency_us"] == pytest.approx(1000.0)
    assert rows[0]["line"] == t.line_of("offset=0x1000")
    assert rows[0]["placed_line"] == t.line_of(f"host=0x{HVA + 0x1000:x}")
    assert rows[1]["placed_ts_ns"] is None and rows[1]["latency_us"] is None
    assert rows[2]["latency_us"] is None  # placed before the request only
    assert all(r["ramblock"] == "pc.ram" and r["migration"] == 0 for r in rows)
    assert (s["requests"], s["resolved"], s["unresolved"], s["fault_messages"]) == (3, 1, 2, 4)
    assert s["pages_placed_demand"] == 1
    assert s["pages_placed_background"] == 3  # 0x3000, 0x8000, 0x9000
    assert s["zero_pages"] == 1
    assert s["p50_us"] == s["max_us"] == pytest.approx(1000.0)
    hist = res.tables["histogram"].to_pylist()
    assert [h["count"] for h in hist if h["count"]] == [1]
    b = next(h for h in hist if h["count"])
    assert b["lo_us"] <= 1000.0 < b["hi_us"] and b["lo_us"] == 512.0
    assert s["blocktime_ms"] is None and res.tables["threads"].num_rows == 0


def _req_lines(t, time, offset, total, add=True):
    word, name = ("new", "postcopy_page_req_add") if add else ("resolved", "postcopy_page_req_del")
    tid = FAULT_TID if add else t.listen_tid
    return t.raw(time, tid, name, f"{word} page req 0x{HVA + offset:x} total {total}")


def test_req_add_to_req_del_latencies_and_percentiles(tmp_path):
    t = postcopy()
    latencies_us = [3, 700, 40_000, 100_000, 250]
    for i, lat in enumerate(latencies_us):
        start = 4.0 + i * 0.5
        t.fault(start, 0x10000 + i * 0x1000)
        _req_lines(t, start, 0x10000 + i * 0x1000, 1)
        t.place(start + lat / 1e6, 0x10000 + i * 0x1000)
        _req_lines(t, start + lat / 1e6, 0x10000 + i * 0x1000, 0, add=False)
    res = run("postcopy_faults", t.end(t=9.0).load(tmp_path))
    s = res.summary
    assert s["method"] == "postcopy_page_req_add -> postcopy_page_req_del"
    got = res.tables["requests"]["latency_us"].to_pylist()
    assert got == pytest.approx(latencies_us)
    for q in (50, 90, 99):
        assert s[f"p{q}_us"] == pytest.approx(np.percentile(latencies_us, q), abs=1e-3)
    assert s["max_us"] == pytest.approx(100_000)
    counts = {h["bucket"]: h["count"] for h in res.tables["histogram"].to_pylist()}
    for lat in latencies_us:  # QEMU's bucket: floor(log2(us))
        assert counts[int(np.floor(np.log2(lat)))] >= 1
    assert sum(counts.values()) == len(latencies_us)
    rate = res.tables["rate"]
    assert sum(rate["requests"].to_pylist()) == 5
    assert sum(rate["placed_demand"].to_pylist()) == 5
    assert rate.num_rows <= 500


def test_blocktime_begin_end_with_a_superseded_fault(tmp_path):
    t = postcopy()
    begin = "mark_postcopy_blocktime_begin"
    end = "mark_postcopy_blocktime_end"

    def b(time, off, cpu=0, received=0):
        t.fault(time, off)
        t.raw(time, FAULT_TID, begin,
              f"addr: 0x{HVA + off:x}, dd: 0x55, time: 1, cpu: {cpu}, already_received: {received}")  # fmt: skip

    def e(time, off, affected=1):
        t.raw(time, t.listen_tid, end, f"addr: 0x{HVA + off:x}, dd: 0x55, time: 7, affected_cpu: {affected}")  # fmt: skip
        t.place(time, off)

    b(4.0, 0x1000)
    e(4.005, 0x1000)  # 5 ms
    b(5.0, 0x2000)  # superseded by the next begin of cpu 0
    b(5.1, 0x3000)
    e(5.102, 0x3000)  # 2 ms
    e(5.2, 0x2000, affected=0)
    b(6.0, 0x4000, received=1)  # already received: never blocks
    b(6.5, 0x5000, cpu=1)
    e(6.510, 0x5000)  # 10 ms on cpu 1
    res = run("postcopy_faults", t.end(t=9.0).load(tmp_path))
    threads = res.tables["threads"].to_pylist()
    assert [(r["cpu"], r["faults"], r["blocked_ns"], r["superseded"]) for r in threads] == [
        (0, 3, 7_000_000, 1),
        (1, 1, 10_000_000, 0),
    ]
    assert threads[0]["superseded_ns"] == 100_000_000
    s = res.summary
    assert s["blocktime_ms"] == pytest.approx(17.0)
    assert s["per_cpu_blocktime_ms"] == {"0": 7.0, "1": 10.0}
    assert s["all_vcpus_blocked_ms"] == 0.0  # the two vCPUs were never blocked together
    assert s["qemu_blocktime_ms"] == 7  # the last end's running total


def test_source_trace_has_no_faults():
    with pytest.raises(MissingAnalysisEvents) as exc:
        run("postcopy_faults", tracetool.load(SRC_EXCERPT))
    msg = str(exc.value)
    # QEMU takes one pattern per -trace option: one option per event the analysis can use
    enabled = re.findall(r"-trace enable=(\S+?)[\s)]", msg)
    assert enabled == [
        "postcopy_page_req_add",
        "postcopy_ram_fault_thread_request",
        "postcopy_place_page",
        "postcopy_place_page_zero",
        "postcopy_page_req_del",
    ]
    assert "a-src-excerpt" in msg


def test_vcpu_tid_from_the_fault_requests(tmp_path):
    res = run("postcopy_faults", tracetool.load(DST_EXCERPT))
    (row,) = res.tables["threads"].to_pylist()
    # the pid= of the fault request logged just before each blocktime begin
    with gzip.open(DST_EXCERPT, "rt") as f:
        lines = f.read().splitlines()
    pids = {
        re.search(r"pid=(\d+)", lines[i - 1]).group(1)
        for i, line in enumerate(lines)
        if "mark_postcopy_blocktime_begin" in line and "already_received: 0" in line
    }
    assert pids == {str(row["tid"])}


def _raw_latencies(path) -> tuple[list[float], int]:
    """First req_add -> next req_del of each address, from the raw text (us), and the number of
    fault request lines."""
    pat = re.compile(r"@(\d+)\.(\d{6}):postcopy_page_req_(add|del) \w+ page req (0x[0-9a-f]+)")
    pending: dict[str, int] = {}
    out, faults = [], 0
    with gzip.open(path, "rt") as f:
        for line in f:
            if "postcopy_ram_fault_thread_request" in line:
                faults += 1
            m = pat.search(line)
            if not m:
                continue
            us = int(m.group(1)) * 1_000_000 + int(m.group(2))
            if m.group(3) == "add":
                pending.setdefault(m.group(4), us)
            elif m.group(4) in pending:
                out.append(float(us - pending.pop(m.group(4))))
    return out, faults


@pytest.mark.parametrize(
    "capture",
    ["a-balloon-during-postcopy", "b-balloon-no-overlap", "d-simpletrace-balloon-during-postcopy"],
)
def test_capture_latencies_match_a_raw_text_pass(capture):
    path = shared_trace(capture, "dst.trace.log.gz")
    lat, n_faults = _raw_latencies(path)
    counts = json.loads(shared_trace(capture, "counts.json").read_text())["counts"]["dst"]
    s = run("postcopy_faults", tracetool.load(path)).summary
    assert s["requests"] == counts["postcopy_page_req_add"] == len(lat)
    assert s["fault_messages"] == counts["postcopy_ram_fault_thread_request"] == n_faults
    assert s["resolved"] == len(lat)
    for q in (50, 90, 99):
        assert s[f"p{q}_us"] == pytest.approx(np.percentile(lat, q), abs=1e-3)
    assert s["max_us"] == max(lat)
    assert s["zero_pages"] <= counts.get("postcopy_place_page_zero", 0)
    assert s["pages_placed_demand"] + s["pages_placed_background"] <= (
        counts["postcopy_place_page"] + counts.get("postcopy_place_page_zero", 0)
    )


@pytest.mark.parametrize(
    "capture", ["a-balloon-during-postcopy", "d-simpletrace-balloon-during-postcopy"]
)
def test_capture_blocktime_close_to_qemus_own(capture):
    """QEMU accounts blocktime in whole ms; the trace's timestamps are in us."""
    s = run("postcopy_faults", tracetool.load(shared_trace(capture, "dst.trace.log.gz"))).summary
    with gzip.open(shared_trace(capture, "dst.trace.log.gz"), "rt") as f:
        total = [line for line in f if "postcopy_ram_incoming_cleanup_blocktime" in line]
    qemu_ms = int(total[-1].split()[-1])
    assert s["qemu_blocktime_ms"] == qemu_ms
    assert s["blocktime_ms"] == pytest.approx(qemu_ms, rel=1e-3)


def test_simpletrace_and_log_of_one_run_agree():
    log = run("postcopy_faults", tracetool.load(
        shared_trace("d-simpletrace-balloon-during-postcopy", "dst.trace.log.gz"))).summary  # fmt: skip
    simple = run("postcopy_faults", tracetool.load(
        shared_trace("d-simpletrace-balloon-during-postcopy", "dst.trace.simple.gz"))).summary  # fmt: skip
    for k in ("requests", "resolved", "fault_messages", "pages_placed_demand", "zero_pages"):
        assert log[k] == simple[k]
    assert simple["p50_us"] == pytest.approx(log["p50_us"], abs=1.0)  # ns vs us clocks


def test_latency_printed_in_readable_units():
    from tracetool.fault_report import _dur

    assert [_dur(v) for v in (None, 12.34, 999.9, 96642.5, 9_999_000, 12_500_000)] == [
        "-", "12.3 µs", "999.9 µs", "96.6 ms", "9,999.0 ms", "12.50 s"
    ]  # fmt: skip
