"""vCPU blocked time from QEMU's postcopy blocktime events (capability ``postcopy-blocktime``).

``mark_postcopy_blocktime_begin/end`` (3.0-10.0) or ``postcopy_blocktime_begin/end`` (10.1+): a
begin is a vCPU (``cpu`` >= 0; -1 is another thread) faulting on a page, the end is the placement
of that page that wakes it. A vCPU is blocked from its begin to the next end of the same host
page. Begins of an ``already_received`` page (3.0-10.0) never block. A vCPU that faults again
before its page arrives (a signal interrupted the fault: TCG kicks, the retry touches another
page) was woken at some unknown time in between: QEMU overwrites that fault and never counts it,
and so do we (``superseded``; ``superseded_ns`` is the most it could add). ``blocktime_ms`` sums the
vCPUs' blocked time; ``all_vcpus_blocked_ms`` is the time all vCPUs seen were blocked at once
(QEMU's ``postcopy-blocktime`` definition, if every vCPU faulted at least once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from analyses import phases
from analyses._pages import col, keys, next_after, ts_col
from tracetool.replay import addresses
from tracetool.trace import Trace

BEGIN = ("mark_postcopy_blocktime_begin", "postcopy_blocktime_begin")
END = ("mark_postcopy_blocktime_end", "postcopy_blocktime_end")
TID_MAP = ("get_mem_fault_cpu_index", "postcopy_blocktime_tid_cpu_map")
CLEANUP = "postcopy_ram_incoming_cleanup_blocktime"

SCHEMA = pa.schema(
    [
        ("cpu", pa.int32()),
        ("tid", pa.int64()),
        ("faults", pa.int64()),
        ("blocked_ns", pa.int64()),
        ("unresolved", pa.int64()),
        ("superseded", pa.int64()),
        ("superseded_ns", pa.int64()),
    ]
)


@dataclass
class Blocktime:
    table: pa.Table
    summary: dict


def page_align(amap: addresses.AddressMap, hva: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Round HVAs down to the page size of their RAMBlock (4 KiB where unknown)."""
    block, _ = amap.hva_to_block(hva, lines)
    sizes = np.append(amap.page_sizes(), addresses.KIB4).astype(np.uint64)
    ps = sizes[np.where(block < 0, len(sizes) - 1, block)]
    return hva - hva % ps


def all_blocked_ns(cpu: np.ndarray, start: np.ndarray, end: np.ndarray, ncpu: int) -> int:
    """Time during which at least ``ncpu`` of the intervals overlap (a sweep over their ends)."""
    if ncpu <= 0 or len(start) == 0:
        return 0
    t = np.concatenate([start, end])
    d = np.concatenate([np.ones(len(start), np.int64), -np.ones(len(end), np.int64)])
    order = np.lexsort((d, t))  # at equal times, ends (-1) first
    t, level = t[order], np.cumsum(d[order])
    return int(np.diff(t)[level[:-1] >= ncpu].sum())


def _next_begin(
    cpu: np.ndarray, line: np.ndarray, ts: np.ndarray, blocks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Line and time of the same vCPU's next blocking begin (int64 max where none)."""
    big = np.iinfo(np.int64).max
    idx = np.flatnonzero(blocks & (cpu >= 0))
    order = idx[np.lexsort((line[idx], cpu[idx]))]
    nxt_line = np.full(len(line), big, np.int64)
    nxt_ts = np.zeros(len(line), np.int64)
    same = cpu[order][1:] == cpu[order][:-1]
    nxt_line[order[:-1][same]] = line[order[1:][same]]
    nxt_ts[order[:-1][same]] = ts[order[1:][same]]
    return nxt_line, nxt_ts


def _tids(trace: Trace, v: int, b: pa.Table, page, faults, fault_pages) -> dict[int, int]:
    """Thread id of each vCPU: QEMU's cpu/tid map event, else the fault request logged just
    before each begin (same page) by the fault thread."""
    if TID_MAP[v] in trace:
        t = trace.table(TID_MAP[v])
        cpus = col(t, "cpu", np.int64)
        tids = col(t, t.column_names[-1], np.int64)
    elif faults is not None and "pid" in faults.column_names and faults.num_rows:
        fl = col(faults, "line", np.int64)
        i = np.searchsorted(fl, col(b, "line", np.int64)) - 1
        ok = (i >= 0) & (fault_pages[np.maximum(i, 0)] == page)
        cpus = col(b, "cpu", np.int64)[ok]
        tids = col(faults, "pid", np.int64)[i[ok]]
    else:
        return {}
    keep = tids > 0
    out: dict[int, int] = {}
    for c in np.unique(cpus[keep]):  # per vCPU: its most frequent thread id
        vals, n = np.unique(tids[keep][cpus[keep] == c], return_counts=True)
        out[int(c)] = int(vals[np.argmax(n)])
    return out


def _qemu_total(trace: Trace, v: int | None) -> int | None:
    """QEMU's own total blocktime (ms) as the trace shows it."""
    if CLEANUP in trace and trace.table(CLEANUP).num_rows:
        t = trace.table(CLEANUP)
        return int(t[t.column_names[-1]][-1].as_py())
    if v == 0 and END[0] in trace and trace.table(END[0]).num_rows:
        return int(trace.table(END[0])["time"][-1].as_py())  # running total_blocktime
    return None


def analyse(trace, starts, amap, faults, fault_pages) -> Blocktime:
    v = 0 if BEGIN[0] in trace else 1 if BEGIN[1] in trace else None
    empty = {
        "blocktime_ms": None,
        "all_vcpus_blocked_ms": None,
        "per_cpu_blocktime_ms": None,
        "vcpus_seen": 0,
        "superseded_faults": None,
        "superseded_ms": None,
        "qemu_blocktime_ms": _qemu_total(trace, v),
    }
    if v is None:
        return Blocktime(SCHEMA.empty_table(), empty)
    b = trace.table(BEGIN[v])
    bline = col(b, "line", np.int64)
    mig = phases.migration_of(starts, bline)
    page = page_align(amap, col(b, "addr", np.uint64), bline)
    cpu = col(b, "cpu", np.int64, fill=-1)
    blocks = np.ones(len(bline), bool)
    if v == 0 and "received" in b.column_names:
        blocks = col(b, "received", np.int64) == 0
    bts, bhas = ts_col(b)
    if END[v] in trace:
        e = trace.table(END[v])
        eline = col(e, "line", np.int64)
        epage = page_align(amap, col(e, "addr", np.uint64), eline)
        hit = next_after(
            keys(mig, page), bline, keys(phases.migration_of(starts, eline), epage), eline
        )
        ets, ehas = ts_col(e)
    else:
        hit, ets, ehas = np.full(len(bline), -1), np.zeros(1, np.int64), np.zeros(1, bool)
    h = np.maximum(hit, 0)
    eline_h = np.where(hit >= 0, eline[h], np.iinfo(np.int64).max) if END[v] in trace else h
    nxt_line, nxt_ts = _next_begin(cpu, bline, bts, blocks)
    sup = blocks & (nxt_line < eline_h)
    done = blocks & (hit >= 0) & bhas & ehas[h] & ~sup
    dur = np.where(done, ets[h] - bts, 0)
    sup_ns = np.where(sup & bhas, nxt_ts - bts, 0)
    tids = _tids(trace, v, b, page, faults, fault_pages)
    cpus = np.unique(cpu[blocks])
    rows = {
        "cpu": cpus,
        "tid": [tids.get(int(c)) for c in cpus],
        "faults": [int((blocks & (cpu == c)).sum()) for c in cpus],
        "blocked_ns": [int(dur[cpu == c].sum()) for c in cpus],
        "unresolved": [int((blocks & (hit < 0) & (cpu == c)).sum()) for c in cpus],
        "superseded": [int((sup & (cpu == c)).sum()) for c in cpus],
        "superseded_ns": [int(sup_ns[cpu == c].sum()) for c in cpus],
    }
    table = pa.table(rows, schema=SCHEMA)
    vcpu = done & (cpu >= 0)
    nv = int((cpus >= 0).sum())
    both = all_blocked_ns(cpu[vcpu], bts[vcpu], ets[h][vcpu], nv)
    per = {
        str(int(c)): round(ns / 1e6, 3)
        for c, ns in zip(cpus, rows["blocked_ns"], strict=True)
        if c >= 0
    }
    return Blocktime(
        table,
        {
            "blocktime_ms": round(float(dur[vcpu].sum()) / 1e6, 3),
            "all_vcpus_blocked_ms": round(both / 1e6, 3),
            "per_cpu_blocktime_ms": per,
            "vcpus_seen": nv,
            "superseded_faults": int(sup[cpu >= 0].sum()),
            "superseded_ms": round(float(sup_ns[cpu >= 0].sum()) / 1e6, 3),
            "qemu_blocktime_ms": empty["qemu_blocktime_ms"],
        },
    )
