"""Small hand-made analysis results (the documented tables and columns) for presentation tests.

``inject(trace, results)`` puts them in ``trace.analyses``' cache, so plots and the report see
them exactly as they would see the analyses' own output.
"""

from __future__ import annotations

import pyarrow as pa

from analyses.base import AnalysisResult

GIB = 2**30
S = 1_000_000_000
START = 1_700_000_000 * S


def phases() -> AnalysisResult:
    states = ["setup", "active", "postcopy-active", "completed"]
    t_rel = [0.0, 0.001, 8.4, 113.35]
    dur = [1_000_000, int(8.399 * S), int(104.95 * S), None]
    t = pa.table(
        {
            "migration": pa.array([0] * 4, pa.int32()),
            "side": ["destination"] * 4,
            "state": states,
            "ts_ns": [START + int(x * S) for x in t_rel],
            "line": [10, 20, 30, 40],
            "duration_ns": pa.array(dur, pa.int64()),
            "t_rel_s": t_rel,
        }
    )
    return AnalysisResult("phases", {"start_ns": START, "per_migration": []}, {"phases": t})


def postcopy_faults() -> AnalysisResult:
    lat = [3.0, 40.0, 300.0, 900.0, 5000.0]
    req = pa.table(
        {
            "migration": pa.array([0] * 5, pa.int32()),
            "ramblock": ["pc.ram"] * 5,
            "offset": [i * 4096 for i in range(5)],
            "hva": [0x7F0000000000 + i * 4096 for i in range(5)],
            "tid": [7] * 5,
            "requested_ts_ns": [START + 9 * S + i for i in range(5)],
            "placed_ts_ns": [START + 9 * S + i + int(x * 1000) for i, x in enumerate(lat)],
            "latency_us": lat,
            "requests": [1] * 5,
            "line": [100 + i for i in range(5)],
        }
    )
    hist = pa.table({"lo_us": [2, 32, 256, 512, 4096], "hi_us": [4, 64, 512, 1024, 8192],
                     "count": [1, 1, 1, 1, 1]})  # fmt: skip
    rate = pa.table(
        {
            "ts_ns": [START + 9 * S, START + 10 * S],
            "t_rel_s": [9.0, 10.0],
            "requests": [3, 2],
            "placed_demand": [3, 2],
            "placed_background": [50, 40],
        }
    )
    threads = pa.table({"cpu": [0], "tid": [7], "faults": [5], "blocked_ns": [6_243_000]})
    summary = {"requests": 5, "resolved": 5, "p50_us": 300.0, "p90_us": 5000.0,
               "p99_us": 5000.0, "max_us": 5000.0}  # fmt: skip
    tables = {"requests": req, "histogram": hist, "rate": rate, "threads": threads}
    return AnalysisResult("postcopy_faults", summary, tables)


def balloon() -> AnalysisResult:
    timeline = pa.table(
        {
            "ts_ns": [START + x * S for x in (20, 21, 120)],
            "t_rel_s": [20.0, 21.0, 120.0],
            "side": ["destination"] * 3,
            "inflate_pages": [1000, 500, 0],
            "deflate_pages": [0, 0, 800],
            "actual_pages": [1000, 1500, 700],
        }
    )
    targets = pa.table(
        {
            "ts_ns": [START + 20 * S],
            "target_bytes": [512 * 2**20],
            "num_pages": [131072],
            "reached_ts_ns": pa.array([None], pa.int64()),
            "time_to_target_s": pa.array([None], pa.float64()),
        }
    )
    return AnalysisResult(
        "balloon", {"inflate_pages": 1500}, {"timeline": timeline, "targets": targets}
    )


def policies() -> AnalysisResult:
    comp = pa.table(
        {
            "policy": ["no-inhibit", "inhibit"],
            "discard-after-place": [4, 0],
            "discard-in-flight": [0, 0],
            "discard-before-arrival": [0, 0],
            "reclaimed_bytes": [1500 * 4096, 0],
        }
    )
    rec = pa.table(
        {
            "ts_ns": [START + x * S for x in (20, 21, 20, 113)],
            "t_rel_s": [20.0, 21.0, 20.0, 113.35],
            "policy": ["no-inhibit", "no-inhibit", "inhibit", "inhibit"],
            "reclaimed_bytes": [1000 * 4096, 1500 * 4096, 0, 0],
        }
    )
    return AnalysisResult("policies", {"policies": 2}, {"comparison": comp, "reclaimed": rec})


def conflicts_map(untrusted: str = "pc.ram") -> AnalysisResult:
    gpa = [GIB // 2 + i * 4096 for i in range(4)]
    conf = pa.table(
        {
            "ts_ns": [START + 20 * S + i for i in range(4)],
            "t_rel_s": [20.0, 20.0, 20.5, 21.0],
            "policy": ["no-inhibit"] * 4,
            "class": ["discard-after-place"] * 3 + ["discard-in-flight"],
            "ramblock": [untrusted] * 4,
            "gpa": pa.array(gpa, pa.uint64()),
        }
    )
    by_region = pa.table(
        {
            "gpa_lo": pa.array([GIB // 2, GIB // 2], pa.uint64()),
            "gpa_hi": pa.array([GIB // 2 + 2**24] * 2, pa.uint64()),
            "policy": ["no-inhibit"] * 2,
            "class": ["discard-after-place", "discard-in-flight"],
            "pages": [3, 1],
        }
    )
    by_time = pa.table({"t_rel_s": [20.0], "policy": ["no-inhibit"], "pages": [4]})
    tables = {"conflicts": conf, "by_region": by_region, "by_time": by_time}
    return AnalysisResult("conflicts_map", {"conflicts": 4}, tables)


def all_results(untrusted: str = "pc.ram") -> dict[str, AnalysisResult]:
    return {
        "phases": phases(),
        "postcopy_faults": postcopy_faults(),
        "balloon": balloon(),
        "policies": policies(),
        "conflicts_map": conflicts_map(untrusted),
    }


def inject(trace, results: dict[str, AnalysisResult]) -> None:
    """Make ``trace.analyses.result(name)`` return ``results[name]``."""
    for name, res in results.items():
        trace.analyses._cache[(name, ())] = res
