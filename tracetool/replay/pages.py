"""Normalise a trace into page events: one row per (host page, event), sorted for the scans.

Only pages a balloon request, a fault or a placement touches are tracked (the page universe);
range events (ADVISE resets, migration discards) and precopy loads are expanded onto those.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tracetool.replay import _rows
from tracetool.replay.addresses import AddressMap
from tracetool.replay.balloon import DEFLATE, INFLATE, Requests, ThreadOrder
from tracetool.replay.columns import Columns
from tracetool.replay.model import Kind
from tracetool.replay.windows import Order, Window
from tracetool.trace import Trace

PAGE_SHIFT = np.int64(1) << np.int64(40)  # page key = block id << 40 | host page index


@dataclass
class PageEvents:
    """Page events sorted by (page key, order, kind)."""

    page: np.ndarray  # page key
    order: np.ndarray  # (int32 when it fits)
    kind: np.ndarray  # int8 Kind
    req: np.ndarray  # balloon request index or -1 (int32 when it fits)
    line: np.ndarray  # (int32 when it fits)
    ts_sorted: np.ndarray | None  # the trace's timestamps in replay order (``Order.ts_sorted``)
    offset: np.ndarray  # block offset of the host page (or of the 4 KiB balloon page)
    hva: np.ndarray  # host virtual address or 0

    def __len__(self) -> int:
        return len(self.page)

    @property
    def ts(self) -> np.ndarray:
        """int64 ns of each event (0 where unknown), gathered on each call from the
        timestamps by order (not held: the caller keeps it while it needs it)."""
        ords, ts_sorted = self.order, self.ts_sorted
        if ts_sorted is None or not len(ts_sorted):
            return np.zeros(len(ords), np.int64)
        if len(ords) and (ords.min() < 0 or ords.max() >= len(ts_sorted)):
            ts = ts_sorted[np.clip(ords, 0, len(ts_sorted) - 1)]
        else:  # orders are positions of event lines: in range
            ts = ts_sorted[ords]
        return ts.astype(np.int64, copy=False)


COLUMNS = ("block", "pidx", "order", "kind", "req", "line", "offset", "hva")


class _Builder:
    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, kind: Kind, block, page, order, line, offset, hva=None, req=None) -> None:
        n = len(page)
        if n == 0:
            return
        self.parts.append(
            {
                "block": np.broadcast_to(np.asarray(block, np.int64), (n,)),
                "pidx": np.asarray(page, np.int64),
                "order": np.asarray(order, np.int64),
                "kind": np.broadcast_to(np.int8(kind), (n,)),
                "req": _const(-1, n) if req is None else np.asarray(req, np.int64),
                "line": np.asarray(line, np.int64),
                "offset": np.asarray(offset, np.int64),
                "hva": _const(0, n) if hva is None else np.asarray(hva, np.int64),
            }
        )

    def scatter(
        self, key: str, to: np.ndarray, dtype: type = np.int64, free: bool = False
    ) -> np.ndarray:
        """Column ``key`` of the concatenated parts, row ``j`` written at ``to[j]`` (a
        permutation): the sorted column without concatenating the parts first, as ``dtype``
        (the caller checked that its values fit). ``free``: drop each part's column once
        written."""
        consts = {int(p[key][0]) for p in self.parts if p[key].strides == (0,)}
        n = len(to)
        out = np.full(n, consts.pop(), dtype) if len(consts) == 1 else np.empty(n, dtype)
        lo = 0
        for p in self.parts:
            n = len(p[key])
            if p[key].strides != (0,) or len(consts):
                out[to[lo : lo + n]] = p[key]
            if free:
                del p[key]
            lo += n
        return out

    def fits_int32(self, key: str) -> bool:
        """Whether every value of column ``key`` fits in an int32."""
        lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        return all(int(p[key].min()) >= lo and int(p[key].max()) <= hi for p in self.parts)

    def concat(self, keys: tuple[str, ...] = COLUMNS) -> dict[str, np.ndarray]:
        if not self.parts:
            return {k: np.zeros(0, np.int8 if k == "kind" else np.int64) for k in keys}
        return {k: np.concatenate([p[k] for p in self.parts]) for k in keys}


def argsort_keys(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")``, by the faster unstable sort when the keys are
    distinct (the two then agree; checked on the sorted keys)."""
    srt = np.argsort(keys)
    ks = keys[srt]
    if len(ks) > 1 and not np.all(ks[1:] != ks[:-1]):
        return np.argsort(keys, kind="stable")
    return srt


def _const(value: int, n: int) -> np.ndarray:
    return np.broadcast_to(np.int64(value), (n,))


def _np(t: pa.Table, col: str) -> np.ndarray:
    return t[col].to_numpy(zero_copy_only=False)


def _zero_page_companions(trace: Trace, threads: ThreadOrder) -> np.ndarray:
    """Lines of postcopy_place_page that complete a postcopy_place_page_zero: the next
    placement on the same thread, at the same address (the hugetlbfs zero-page fallback)."""
    if "postcopy_place_page_zero" not in trace or "postcopy_place_page" not in trace:
        return np.zeros(0, np.int64)
    z = trace.table("postcopy_place_page_zero")
    p = trace.table("postcopy_place_page")
    shift = np.int64(1) << np.int64(40)
    p_tid = p["tid"].fill_null(-1).to_numpy().astype(np.int64)
    p_key = p_tid * shift + _np(p, "line")
    srt = np.argsort(p_key)
    p_key, p_host, p_lines = p_key[srt], _np(p, "host_addr")[srt], _np(p, "line")[srt]
    z_tid = z["tid"].fill_null(-1).to_numpy().astype(np.int64)
    pos = np.searchsorted(p_key, z_tid * shift + _np(z, "line"), side="right")
    ok = pos < len(p_key)
    pos = np.minimum(pos, len(p_key) - 1)
    ok &= (p_key[pos] // shift == z_tid) & (p_host[pos] == _np(z, "host_addr"))
    return p_lines[pos[ok]]


def _check_observed(trace, threads, requests, blk, off, base) -> int:
    """An inflate counts as applied only if the discard that follows it is of its own page
    (when the page's HVA is known); otherwise its outcome becomes unknown. Returns how many."""
    from tracetool.replay.balloon import OBS_APPLIED, OBS_UNKNOWN

    cand = np.flatnonzero((requests.observed == OBS_APPLIED) & (blk >= 0) & (off >= 0))
    if not len(cand) or "ram_block_discard_range" not in trace:
        return 0
    want = base[cand] + (off[cand] // 4096) * 4096
    known = base[cand] > 0
    rows = threads.next_row(requests.tid[cand], requests.line[cand])
    d = trace.table("ram_block_discard_range")
    d_lines = _np(d, "line")
    d_hva = _np(d, "hva").astype(np.int64)
    pos = np.clip(np.searchsorted(d_lines, threads.lines_of(rows)), 0, len(d_lines) - 1)
    got = d_hva[pos]
    bad = known & (got != want)
    requests.observed[cand[bad]] = OBS_UNKNOWN
    return int(bad.sum())


class _Universe:
    """The tracked host pages (sorted page keys) with a membership test and their ranks.

    When every page index is small enough (the usual case: a block's pages), membership and
    rank are a bitmap and a prefix count over the blocks' page spaces (no sort, no search);
    otherwise a sorted array and ``searchsorted``."""

    MAX_BITS = 1 << 28

    def __init__(self, block: np.ndarray, pidx: np.ndarray) -> None:
        self.bitmap = None
        if len(block) and block.min() >= 0 and pidx.min() >= 0:
            n_blocks = int(block.max()) + 1
            limit = np.zeros(n_blocks, np.int64)
            np.maximum.at(limit, block, pidx + 1)
            if limit.sum() <= self.MAX_BITS:
                base = np.zeros(n_blocks + 1, np.int64)
                base[1:] = np.cumsum(limit)
                bits = np.zeros(int(base[-1]) + 1, bool)  # + one False: "not a page"
                bits[base[block] + pidx] = True
                pos = np.flatnonzero(bits)
                u_blk = np.searchsorted(base, pos, side="right") - 1
                self.keys = u_blk * PAGE_SHIFT + (pos - base[u_blk])
                self.bitmap, self.limit, self.base = bits, limit, base
                self.n_blocks = n_blocks
                return
        keys = block * PAGE_SHIFT + pidx
        self.keys = np.unique(keys) if len(keys) else np.zeros(0, np.int64)
        # Membership of (block, page) in the universe: one bitmap per block, a gather per lookup.
        u_blk = self.keys // PAGE_SHIFT
        u_pidx = self.keys % PAGE_SHIFT
        n_blocks = int(u_blk.max()) + 1 if len(self.keys) else 0
        limit = np.zeros(n_blocks, np.int64)
        base_of = np.zeros(n_blocks, np.int64)
        if len(self.keys):
            np.maximum.at(limit, u_blk, u_pidx + 1)
            base_of[1:] = np.cumsum(limit)[:-1]
        bitmap = np.zeros(int(limit.sum()), bool)
        bitmap[base_of[u_blk] + u_pidx] = True
        self._slow = (n_blocks, limit, base_of, bitmap)

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, block, pidx: np.ndarray) -> np.ndarray:
        """Whether each (block, page index) is a tracked page (``block`` may be one int)."""
        if self.bitmap is None:
            n_blocks, limit, base_of, bitmap = self._slow
            block = np.broadcast_to(np.asarray(block, np.int64), pidx.shape)
            ok = (block >= 0) & (block < n_blocks) & (pidx >= 0)
            ok[ok] &= pidx[ok] < limit[block[ok]]
            out = np.zeros(len(block), bool)
            out[ok] = bitmap[base_of[block[ok]] + pidx[ok]]
            return out
        sentinel = len(self.bitmap) - 1
        if np.ndim(block) == 0:
            b = int(block)
            if not 0 <= b < self.n_blocks:
                return np.zeros(len(pidx), bool)
            ok = pidx.view(np.uint64) < np.uint64(self.limit[b])  # negative: not a page
            return self.bitmap[np.where(ok, pidx + self.base[b], sentinel)]
        known = (block >= 0) & (block < self.n_blocks)
        b = np.where(known, block, 0)
        ok = known & (pidx.view(np.uint64) < self.limit[b].view(np.uint64))
        return self.bitmap[np.where(ok, pidx + self.base[b], sentinel)]

    def rank(self, block: np.ndarray, pidx: np.ndarray) -> np.ndarray:
        """Position in ``keys`` of tracked pages."""
        if self.bitmap is None:
            return np.searchsorted(self.keys, block * PAGE_SHIFT + pidx)
        if len(pidx) == 0:
            return np.zeros(0, np.int64)
        if not hasattr(self, "_rank"):
            dt = np.int32 if len(self.keys) < (1 << 31) else np.int64
            self._rank = np.cumsum(self.bitmap, dtype=dt) - dt(1)
        return self._rank[self.base[block] + pidx]


def _block_ids(amap: AddressMap, cols: Columns, ev: str, col: str) -> np.ndarray | int:
    """Block id of each row's name column; one int when the column holds a single name."""
    values, codes = cols.names(ev, col)
    if codes is None:
        return amap.block(values[0]).id if values else -1
    ids = np.array([amap.block(v).id for v in values] + [-1], np.int64)
    return ids[codes]


def build(
    trace: Trace,
    amap: AddressMap,
    order: Order,
    windows: list[Window],
    requests: Requests | None,
    threads: ThreadOrder,
    cols: Columns | None = None,
) -> tuple[PageEvents, dict]:
    """Page events of the trace, and counts of what could not be placed on a page."""
    cols = cols or Columns(trace)
    sizes = amap.page_sizes
    b = _Builder()
    info = {"unmapped_balloon_pages": 0, "unplaced_receives": 0}

    def page_of(block, offset: np.ndarray) -> np.ndarray:
        if not len(amap.blocks):
            return offset // 4096
        ps = sizes()
        if len(ps) == 1 or np.ndim(block) == 0:  # one page size
            p = int(ps[max(int(block), 0)] if np.ndim(block) == 0 else ps[0])
            return offset >> (p.bit_length() - 1) if p & (p - 1) == 0 else offset // p
        return offset // ps[np.maximum(block, 0)]

    # Balloon requests (the 4 KiB page's host page).
    if requests is not None and len(requests):
        blk = amap.block_ids(requests.block_name)
        off = amap.gpa_to_offset(blk, requests.gpa)
        ok = (blk >= 0) & (off >= 0)
        info["unmapped_balloon_pages"] = int(np.count_nonzero(~ok))
        kind = np.where(requests.direction == INFLATE, int(Kind.INFLATE),
                        np.where(requests.direction == DEFLATE, int(Kind.DEFLATE), int(Kind.BALLOON_UNKNOWN)))  # fmt: skip
        idx = np.flatnonzero(ok)
        mig = (
            amap.mig_of(requests.line) if amap.mig_of is not None else np.zeros(len(blk), np.int64)
        )
        base_rows = amap.bases(mig)  # per request: its migration's base of every block
        base_req = np.where(blk >= 0, base_rows[np.arange(len(blk)), np.maximum(blk, 0)], 0)
        info["observed_other_page"] = _check_observed(trace, threads, requests, blk, off, base_req)
        for kd in (Kind.INFLATE, Kind.DEFLATE):
            sel = idx[kind[idx] == int(kd)]
            hva = np.where(base_req[sel] > 0, base_req[sel] + off[sel], 0)
            b.add(kd, blk[sel], page_of(blk[sel], off[sel]), requests.order[sel], requests.line[sel],
                  off[sel], hva, req=sel)  # fmt: skip

    # Placements. On hugetlbfs QEMU places a zero page by copying one: postcopy_place_page_zero
    # then postcopy_place_page of the same address on the same thread is ONE placement.
    companion = _zero_page_companions(trace, threads)
    place_tids = []
    for ev in ("postcopy_place_page", "postcopy_place_page_zero"):
        if ev in trace:
            line = cols.get(ev, "line")
            hva = cols.i64(ev, "host_addr")
            blk, off = amap.hva_to_block(hva, line)
            ok = blk >= 0
            if ev == "postcopy_place_page" and len(companion):
                ok &= ~np.isin(line, companion)
            b.add(Kind.PLACE, blk[ok], page_of(blk[ok], off[ok]), order.of_lines(line[ok]),
                  line[ok], off[ok], hva[ok])  # fmt: skip
            if ok.any():
                place_tids.append(cols.tid(ev)[ok])

    # Faults: the fault thread's request (else the page request list of QEMU >= 5.2).
    if "postcopy_ram_fault_thread_request" in trace:
        ev = "postcopy_ram_fault_thread_request"
        line = cols.get(ev, "line")
        blk = amap.block_ids(trace.table(ev)["ramblock"])
        off = cols.i64(ev, "offset")
        b.add(Kind.FAULT, blk, page_of(blk, off), order.of_lines(line), line, off,
              cols.i64(ev, "hostaddr"))  # fmt: skip
    elif "postcopy_page_req_add" in trace:
        ev = "postcopy_page_req_add"
        line = cols.get(ev, "line")
        hva = cols.i64(ev, "addr")
        blk, off = amap.hva_to_block(hva, line)
        ok = blk >= 0
        b.add(Kind.FAULT, blk[ok], page_of(blk[ok], off[ok]), order.of_lines(line[ok]),
              line[ok], off[ok], hva[ok])  # fmt: skip

    seed = b.concat(("block", "pidx"))
    universe = _Universe(seed["block"], seed["pidx"])
    del seed

    # Receives: block from the next placement on the same thread (same host page).
    if "ram_load_postcopy_loop" in trace and len(universe):
        ev = "ram_load_postcopy_loop"
        tid = cols.tid(ev)
        line = cols.get(ev, "line")
        addr = cols.i64(ev, "addr")
        places = [p for p in b.parts if p["kind"][0] == int(Kind.PLACE)]
        if places and trace.events["tid"].null_count < trace.events.num_rows:
            pl_line = np.concatenate([p["line"] for p in places])
            pl_block = np.concatenate([p["block"] for p in places])
            pl_pidx = np.concatenate([p["pidx"] for p in places])
            pl_tid = np.concatenate(place_tids)
            key = pl_tid * (np.int64(1) << np.int64(40)) + pl_line
            srt = np.argsort(key)
            key, pl_block, pl_pidx, pl_tid = key[srt], pl_block[srt], pl_pidx[srt], pl_tid[srt]
            pos = np.searchsorted(key, tid * (np.int64(1) << np.int64(40)) + line, side="right")
            ok = pos < len(key)
            ok[ok] &= pl_tid[pos[ok]] == tid[ok]
            blk = np.where(ok, pl_block[np.minimum(pos, len(key) - 1)], -1)
            pidx = np.where(ok, pl_pidx[np.minimum(pos, len(key) - 1)], -1)
            ok &= page_of(np.maximum(blk, 0), addr) == pidx
            info["unplaced_receives"] = int(np.count_nonzero(~ok))
            sel = ok & universe.contains(blk, pidx)
            b.add(
                Kind.RECEIVE, blk[sel], pidx[sel], order.of_lines(line[sel]), line[sel], addr[sel]
            )

    # Precopy loads: usually most of the trace's lines, so only the tracked pages' are kept.
    if "ram_load_loop" in trace and len(universe):
        ev = "ram_load_loop"
        blk = _block_ids(amap, cols, ev, "rbname")
        size = int(sizes()[max(blk, 0)]) if np.ndim(blk) == 0 and len(amap.blocks) else 0
        if size and size & (size - 1) == 0 and universe.bitmap is not None:  # one pass
            sel, off = np.zeros(0, np.int64), np.zeros(0, np.int64)
            if 0 <= blk < universe.n_blocks:
                lim, base = int(universe.limit[blk]), int(universe.base[blk])
                chunks = cols.i64_chunks(ev, "addr")
                sel, off = _rows.tracked(chunks, size.bit_length() - 1, lim, base, universe.bitmap)
            pidx = off >> (size.bit_length() - 1)
        else:
            off = cols.i64(ev, "addr")
            pidx = page_of(blk, off)
            sel = np.flatnonzero(universe.contains(blk, pidx))
            pidx, off = pidx[sel], off[sel]
        line = cols.take(ev, "line", sel)
        blk = blk if np.ndim(blk) == 0 else blk[sel]
        b.add(Kind.LOAD, blk, pidx, order.of_lines(line), line, off)

    keys = universe.keys

    # Range events expanded onto the universe: migration discards and ADVISE resets.
    def expand(kind: Kind, block, p0, p1, ords, lines) -> None:
        if not len(keys) or not len(block):
            return
        lo = np.searchsorted(keys, block * PAGE_SHIFT + p0)
        hi = np.searchsorted(keys, block * PAGE_SHIFT + p1)
        cnt = np.maximum(hi - lo, 0)
        total = int(cnt.sum())
        if not total:
            return
        ps = sizes()
        if len(block) == 1:  # one range: its pages are a slice of the universe
            k = keys[int(lo[0]) : int(hi[0])]
            blk, pidx = int(block[0]), k & (PAGE_SHIFT - 1)
            if (k >> np.int64(40) != blk).any():  # the range spans blocks (p1 past the last)
                blk = k >> np.int64(40)
            b.add(kind, blk, pidx, _const(int(ords[0]), total), _const(int(lines[0]), total),
                  pidx * ps[blk])  # fmt: skip
            return
        rep = np.repeat(np.arange(len(block)), cnt)
        pos = np.arange(total, dtype=np.int64)
        pos += np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
        k = keys[pos]
        del pos
        blk, pidx = k >> np.int64(40), k & (PAGE_SHIFT - 1)
        if len(k) and blk[0] == blk[-1]:  # keys are sorted: one block
            blk = int(blk[0])
        size = ps[blk] if len(np.unique(ps)) > 1 else (ps[0] if len(ps) else 0)
        b.add(kind, blk, pidx, ords[rep], lines[rep], pidx * size)

    if "ram_discard_range" in trace and len(keys):
        t = trace.table("ram_discard_range")
        blk = amap.block_ids(t["rbname"])
        start = _np(t, "start").astype(np.int64)
        length = _np(t, "len").astype(np.int64)
        ps = sizes()[np.maximum(blk, 0)]
        ok = blk >= 0
        expand(Kind.MIG_DISCARD, blk[ok], (start // ps)[ok], (-(-(start + length) // ps))[ok],
               order.of_lines(_np(t, "line")[ok]), _np(t, "line")[ok])  # fmt: skip
    if len(keys):
        for w in windows:
            ords = np.full(1, w.ord["advise"], np.int64)
            for bid in np.unique(keys // PAGE_SHIFT):
                line = np.array([order.line_of(w.ord["advise"])], np.int64)
                expand(
                    Kind.RESET,
                    np.array([bid]),
                    np.array([0]),
                    np.array([PAGE_SHIFT - 1]),
                    ords,
                    line,
                )

    # (page, order, kind) as one packed key: dense page rank, order, kind (one radix sort)
    n = sum(len(p["order"]) for p in b.parts)
    # request indices and lines as int32 when they fit (the result holds them)
    narrow = {k: np.int32 if b.fits_int32(k) else np.int64 for k in ("req", "line")}
    small = all(p["order"].max() < (1 << 32) and p["order"].min() >= 0 for p in b.parts)
    if len(keys) < (1 << 27) and small:
        packed = np.empty(n, np.int64)
        lo = 0
        for p in b.parts:
            m = len(p["order"])
            blk = p["block"] if p["block"].strides != (0,) else int(p["block"][0])
            rank = universe.rank(blk, p["pidx"])
            dst = packed[lo : lo + m]
            np.left_shift(rank, np.int64(36), out=dst, dtype=np.int64)
            dst |= p["order"] << np.int64(4)
            dst |= p["kind"]
            lo += m
        for p in b.parts:  # packed now: free them (and the locals that alias them)
            del p["block"], p["pidx"], p["order"], p["kind"]
        pidx = off = line = sel = hva = None
        srt = argsort_keys(packed)
        packed = packed[srt]
        ords = packed >> np.int64(4)
        ords &= np.int64((1 << 32) - 1)
        if n and int(ords.max()) < (1 << 31):
            ords = ords.astype(np.int32)  # the result holds them
        if sys.byteorder == "little":  # the low byte of each key, without an int64 temporary
            kind = packed.view(np.int8)[::8] & np.int8(15)
        else:
            kind = (packed & np.int64(15)).astype(np.int8)
        packed >>= np.int64(36)  # page ranks, in place
        page = keys[packed] if len(keys) else np.zeros(n, np.int64)
        del packed
        to = np.empty(n, np.int64)  # where each concatenated row goes
        to[srt] = np.arange(n, dtype=np.int64)
        del srt
        req, line = (b.scatter(k, to, narrow[k], free=True) for k in ("req", "line"))
        offset, hva = (b.scatter(k, to, free=True) for k in ("offset", "hva"))
    else:
        c = b.concat()
        key = c["block"] * PAGE_SHIFT + c["pidx"]
        srt = np.lexsort((c["kind"], c["order"], key))
        ords, kind, page = c["order"][srt], c["kind"][srt], key[srt]
        req, line, offset, hva = (c[k][srt] for k in ("req", "line", "offset", "hva"))
        req, line = req.astype(narrow["req"]), line.astype(narrow["line"])
    if ords.dtype != np.int32 and len(ords) and ords.min() >= 0 and ords.max() < (1 << 31):
        ords = ords.astype(np.int32)  # the result holds them
    pe = PageEvents(
        page=page, order=ords, kind=kind, req=req, line=line, ts_sorted=order.ts_sorted,
        offset=offset, hva=hva,
    )  # fmt: skip
    return pe, info
