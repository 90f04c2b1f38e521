"""Postcopy remote faults on the destination: latency from the first request of a host page to
its placement, a latency histogram, request/placement rates and vCPU blocked time.

Requests and placements, best first (``summary["method"]`` says which were used):

* ``postcopy_page_req_add`` -> ``postcopy_page_req_del`` (QEMU >= 5.2): QEMU's own bookkeeping
  of outstanding requests, keyed by the page-aligned HVA (what QEMU >= 10.1 reports as
  ``postcopy-latency``);
* ``postcopy_ram_fault_thread_request`` (exact HVA, block offset rounded down to the block's page
  size) -> the next ``postcopy_place_page``/``postcopy_place_page_zero`` of that host page.

A host page is keyed per migration (a new one at each SETUP/ADVISE, see :mod:`analyses.phases`);
its latency runs from its first request to its first placement after that request.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import pyarrow as pa

from analyses import _blocktime, phases
from analyses._pages import col, concat, group_first, keys, lookup, next_after, ts_col
from analyses.base import AnalysisResult, Needs
from tracetool.replay import addresses
from tracetool.trace import Trace

NAME = "postcopy_faults"
FAULT = "postcopy_ram_fault_thread_request"
REQ_ADD, REQ_DEL = "postcopy_page_req_add", "postcopy_page_req_del"
PLACES = ("postcopy_place_page", "postcopy_place_page_zero")
NEEDS = Needs(any_of=((REQ_ADD, FAULT), (*PLACES, REQ_DEL)))
#: Rate bin widths (ns) to choose from: the smallest giving at most MAX_BINS bins.
WIDTHS = [int(m * 10**e) for e in range(6, 12) for m in (1, 2, 5)]
MAX_BINS = 500


class Method(str, Enum):
    REQ_ADD_DEL = "postcopy_page_req_add -> postcopy_page_req_del"
    REQ_ADD_PLACE = "postcopy_page_req_add -> postcopy_place_page"
    FAULT_PLACE = "postcopy_ram_fault_thread_request -> postcopy_place_page"
    FAULT_DEL = "postcopy_ram_fault_thread_request -> postcopy_page_req_del"


REQUESTS_SCHEMA = pa.schema(
    [
        ("migration", pa.int32()),
        ("ramblock", pa.string()),
        ("offset", pa.uint64()),
        ("hva", pa.uint64()),
        ("tid", pa.int64()),
        ("requested_ts_ns", pa.int64()),
        ("placed_ts_ns", pa.int64()),
        ("latency_us", pa.float64()),
        ("requests", pa.int32()),
        ("line", pa.int64()),
        ("placed_line", pa.int64()),
    ]
)


def _page_sizes(amap: addresses.AddressMap, names: pa.ChunkedArray) -> np.ndarray:
    ids = amap.block_ids(names)
    sizes = np.append(amap.page_sizes(), addresses.KIB4)
    return sizes[np.where(ids < 0, len(sizes) - 1, ids)].astype(np.uint64)


def _fault_pages(t: pa.Table, amap: addresses.AddressMap) -> np.ndarray:
    """Page-aligned HVA of fault requests: the block base is page aligned and the offset is
    rounded down to the page size, so ``(HVA - offset) % page`` is the offset in the page."""
    hva = col(t, "hostaddr", np.uint64)
    off = col(t, "offset", np.uint64)
    return hva - (hva - off) % _page_sizes(amap, t["ramblock"])


def _choose(trace: Trace) -> Method:
    if REQ_ADD in trace:
        return Method.REQ_ADD_DEL if REQ_DEL in trace else Method.REQ_ADD_PLACE
    return Method.FAULT_PLACE if any(p in trace for p in PLACES) else Method.FAULT_DEL


def _pct(lat: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(lat, q)), 3) if len(lat) else None


def histogram(lat_us: np.ndarray) -> pa.Table:
    """Power-of-two buckets as QEMU's ``postcopy-latency-dist``: bucket N holds
    [2^N, 2^(N+1)) us (bucket 0 also takes latencies under 1 us)."""
    b = np.floor(np.log2(np.maximum(lat_us, 1.0))).astype(np.int64) if len(lat_us) else lat_us
    counts = np.bincount(b, minlength=1) if len(lat_us) else np.zeros(0, np.int64)
    n = np.arange(len(counts))
    return pa.table(
        {
            "bucket": pa.array(n, pa.int32()),
            "lo_us": pa.array(np.where(n == 0, 0.0, 2.0**n), pa.float64()),
            "hi_us": pa.array(2.0 ** (n + 1), pa.float64()),
            "count": pa.array(counts, pa.int64()),
        }
    )


def rate(series: dict[str, np.ndarray], start_ns: int | None) -> pa.Table:
    """Counts per time bin of each timestamp series; bins of a round width (<= MAX_BINS)."""
    present = [v for v in series.values() if len(v)]
    if not present:
        cols = {"ts_ns": pa.array([], pa.int64()), "t_rel_s": pa.array([], pa.float64())}
        return pa.table({**cols, **{k: pa.array([], pa.int64()) for k in series}})
    lo = min(int(v.min()) for v in present)
    hi = max(int(v.max()) for v in present)
    width = next((w for w in WIDTHS if (hi - lo) // w + 1 <= MAX_BINS), WIDTHS[-1])
    lo -= lo % width
    n = (hi - lo) // width + 1
    edges = lo + width * np.arange(n, dtype=np.int64)
    base = lo if start_ns is None else start_ns
    cols = {"ts_ns": pa.array(edges), "t_rel_s": pa.array((edges - base) / 1e9)}
    for name, v in series.items():
        cols[name] = pa.array(np.bincount((v - lo) // width, minlength=n).astype(np.int64))
    return pa.table(cols)


def run(trace: Trace) -> AnalysisResult:
    """Fault latency per requested host page, histogram, rates and blocked vCPU time."""
    NEEDS.check(trace, NAME)
    method = _choose(trace)
    starts = phases.migration_starts(trace) if not phases.NEEDS.missing(trace) else np.zeros(0, int)
    amap = addresses.learn(trace, mig_of=lambda lines: phases.migration_of(starts, lines))

    # Requests: one record per request message, keyed by (migration, page-aligned HVA).
    faults = trace.table(FAULT) if FAULT in trace else None
    fault_pages = _fault_pages(faults, amap) if faults is not None else None
    if method in (Method.REQ_ADD_DEL, Method.REQ_ADD_PLACE):
        req = trace.table(REQ_ADD)
        req_page = col(req, "addr", np.uint64)
    else:
        req, req_page = faults, fault_pages
    req_line = col(req, "line", np.int64)
    req_ts, req_has_ts = ts_col(req)
    req_mig = phases.migration_of(starts, req_line)
    rk = keys(req_mig, req_page)
    first, counts = group_first(rk, req_line)
    q = rk[first]
    if faults is not None:  # fault messages per page (several threads or retries per page)
        fk = keys(phases.migration_of(starts, col(faults, "line", np.int64)), fault_pages)
        uniq, fcounts = np.unique(fk, return_counts=True)
        pos, hit = lookup(uniq, q)
        counts = np.where(hit, fcounts[pos], counts)

    # Placements: QEMU's resolution of the request, or the UFFDIO_COPY/ZEROPAGE of the page.
    pl_names = (REQ_DEL,) if method in (Method.REQ_ADD_DEL, Method.FAULT_DEL) else PLACES
    pl_col = "addr" if pl_names == (REQ_DEL,) else "host_addr"
    pl = concat(trace, pl_names, (pl_col,))
    pl_line = col(pl, "line", np.int64) if pl is not None else np.zeros(0, np.int64)
    pl_page = col(pl, pl_col, np.uint64) if pl is not None else np.zeros(0, np.uint64)
    pl_ts, pl_has_ts = ts_col(pl) if pl is not None else (pl_line, pl_line > 0)
    pk = keys(phases.migration_of(starts, pl_line), pl_page)
    hit = next_after(q, req_line[first], pk, pl_line)
    placed = hit >= 0
    h = np.maximum(hit, 0)
    t_req = req_ts[first]
    has_lat = placed & req_has_ts[first] & (pl_has_ts[h] if len(pl_has_ts) else placed)
    lat_us = (pl_ts[h] - t_req) / 1e3 if len(pl_ts) else np.zeros(len(first))

    block, offset = amap.hva_to_block(q["h"], req_line[first])
    names = np.array([*amap.names(), None], dtype=object)
    tid = col(req, "tid", np.int64, fill=-1)[first]
    requests = pa.table(
        {
            "migration": pa.array(q["m"], pa.int32()),
            "ramblock": pa.array(names[np.where(block < 0, len(names) - 1, block)], pa.string()),
            "offset": pa.array(offset.astype(np.uint64), pa.uint64(), mask=block < 0),
            "hva": pa.array(q["h"], pa.uint64()),
            "tid": pa.array(tid, pa.int64(), mask=tid < 0),
            "requested_ts_ns": pa.array(t_req, pa.int64(), mask=~req_has_ts[first]),
            "placed_ts_ns": pa.array(pl_ts[h] if len(pl_ts) else t_req, pa.int64(), mask=~has_lat),
            "latency_us": pa.array(lat_us, pa.float64(), mask=~has_lat),
            "requests": pa.array(counts, pa.int32()),
            "line": pa.array(req_line[first], pa.int64()),
            "placed_line": pa.array(pl_line[h] if len(pl_line) else h, pa.int64(), mask=~placed),
        },
        schema=REQUESTS_SCHEMA,
    ).sort_by([("line", "ascending")])

    # Placed pages, demand versus background (from the UFFDIO events, whatever the method).
    places = concat(trace, PLACES, ("host_addr",))
    summary_places = _placed_pages(places, starts, q[placed] if method != Method.FAULT_DEL else q)
    zero = concat(trace, PLACES[1:], ("host_addr",))
    lat = lat_us[has_lat]
    start_ns = None
    if len(starts) and phases.NEEDS.missing(trace) == []:
        start_ns = trace.analyses.result("phases").summary["start_ns"]
    bt = _blocktime.analyse(trace, starts, amap, faults, fault_pages)
    demand_ts = (pl_ts[h])[has_lat] if len(pl_ts) else np.zeros(0, np.int64)
    hist = histogram(lat)
    tables = {
        "requests": requests,
        "histogram": hist,
        "rate": rate(
            {
                "requests": t_req[req_has_ts[first]],
                "placed_demand": demand_ts,
                "placed_background": summary_places.pop("background_ts"),
            },
            start_ns,
        ),
        "threads": bt.table,
    }
    summary = {
        "method": method.value,
        "requests": int(len(first)),
        "resolved": int(placed.sum()),
        "p50_us": _pct(lat, 50),
        "p90_us": _pct(lat, 90),
        "p99_us": _pct(lat, 99),
        "max_us": round(float(lat.max()), 3) if len(lat) else None,
        "mean_us": round(float(lat.mean()), 3) if len(lat) else None,
        "latency_dist": hist["count"].to_pylist(),
        "unresolved": int((~placed).sum()),
        "fault_messages": int(faults.num_rows) if faults is not None else int(req.num_rows),
        **summary_places,
        "zero_pages": _distinct_pages(zero, starts),
        **bt.summary,
    }
    notes = list(amap.notes)
    return AnalysisResult(NAME, summary, tables, notes)


def _distinct_pages(t: pa.Table | None, starts: np.ndarray) -> int:
    if t is None:
        return 0
    line = col(t, "line", np.int64)
    k = keys(phases.migration_of(starts, line), col(t, "host_addr", np.uint64))
    return int(len(np.unique(k)))


def _placed_pages(places: pa.Table | None, starts: np.ndarray, requested: np.ndarray) -> dict:
    """Distinct placed pages that were requested (demand) or not (background), and the first
    placement time of each background page."""
    if places is None:
        return {
            "pages_placed_demand": None,
            "pages_placed_background": None,
            "background_ts": np.zeros(0, np.int64),
        }
    line = col(places, "line", np.int64)
    k = keys(phases.migration_of(starts, line), col(places, "host_addr", np.uint64))
    first, _ = group_first(k, line)
    demand = lookup(np.unique(requested), k[first])[1]
    ts, have = ts_col(places)
    bg = first[~demand]
    return {
        "pages_placed_demand": int(demand.sum()),
        "pages_placed_background": int((~demand).sum()),
        "background_ts": ts[bg][have[bg]],
    }
