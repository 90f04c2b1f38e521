"""The bulk sources of a scenario: precopy loads, discard commands, the postcopy stream, page
faults and balloon batches. Each stores compact per-item arrays and expands a time slice into
rows with numpy (no Python loop per row)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracetool.synth.rows import (
    PAGE_SHIFT,
    R_BALLOON,
    R_BALLOON_DISCARD,
    R_DISCARD_CMD,
    R_FAULT,
    R_LOAD,
    R_MIG_DISCARD,
    R_NONE,
    R_PLACE,
    R_RECEIVE,
    Block,
    Source,
    full,
)

KIB4 = 4096


@dataclass
class RamBlock:
    id: int
    name: str
    length: int
    page: int  # host page size
    hva: int
    ram_addr: int

    @property
    def pages(self) -> int:
        return self.length // self.page


def _names(blocks: list[RamBlock], ids: np.ndarray) -> np.ndarray:
    table = np.array([b.name for b in blocks], dtype=object)
    return table[ids]


class Loads(Source):
    """Precopy page loads (``ram_load_loop``) of target pages ``0 .. n-1`` in block order,
    evenly spread over ``[t0, t0 + duration)``: load ``i`` at ``t0 + i * duration // n``."""

    def __init__(self, prio, blocks, n, t0, duration, tid, pid, zero_share=0.3) -> None:
        self.prio, self.blocks, self.n, self.t0, self.d = prio, blocks, int(n), int(t0), duration
        self.tid, self.pid = tid, pid
        self.cum = np.concatenate([[0], np.cumsum([b.length // KIB4 for b in blocks])])
        self.zero_pct = int(zero_share * 100)
        self.cum_rows = np.array([0, self.n], np.int64)
        self.t_first = np.array([t0], np.int64)
        self.t_last = np.array([self.ts(max(self.n - 1, 0))], np.int64)

    def ts(self, i):
        return self.t0 + (np.asarray(i, np.int64) * self.d) // max(self.n, 1)

    def _index(self, t: int) -> int:
        """First load index with ts >= t (exact integer arithmetic)."""
        a = int(t) - self.t0
        if a <= 0:
            return 0
        return min(self.n, -(-(a * self.n) // self.d))

    def count_before(self, t: int) -> int:
        return self._index(t)

    def span(self):
        return (self.t0, int(self.t_last[0])) if self.n else None

    def rows(self, t0: int, t1: int) -> list[Block]:
        lo, hi = self._index(t0), self._index(t1)
        if hi <= lo:
            return []
        i = np.arange(lo, hi, dtype=np.int64)
        b = np.searchsorted(self.cum, i, side="right") - 1
        off = (i - self.cum[b]) * KIB4
        base = np.array([x.hva for x in self.blocks], np.int64)
        psz = np.array([x.page for x in self.blocks], np.int64)
        zero = ((i * 2654435761) % 100) < self.zero_pct
        flags = np.where(zero, 0x2, 0x8) | np.where(off > 0, 0x20, 0)
        return [
            Block(
                "ram_load_loop", self.ts(i), self.prio, i, self.tid, self.pid,
                {"rbname": _names(self.blocks, b), "addr": off, "flags": flags,
                 "host": base[b] + off},
                R_LOAD, {"pk": (b << PAGE_SHIFT) | (off // psz[b])},
            )
        ]  # fmt: skip


class Discards(Source):
    """The source's discard bitmap: commands of up to 12 ranges of one block each
    (``loadvm_postcopy_ram_handle_discard`` .. ``_end``), one ``ram_discard_range`` (+
    ``ram_block_discard_range`` >= 2.12; ``postcopy_ram_discard_range`` in 2.5) per range."""

    RANGE_US = 2

    def __init__(self, prio, blocks, ranges, t0, tid, pid, era, process_command) -> None:
        """``ranges``: (block id, first host page, host pages) int64 array of shape (n, 3)."""
        self.prio, self.blocks, self.tid, self.pid, self.era = prio, blocks, tid, pid, era
        self.cmd_fields = process_command
        r = np.asarray(ranges, np.int64).reshape(-1, 3)
        self.r = r
        # commands: consecutive ranges of one block, 12 at most
        starts = []
        for bid in np.unique(r[:, 0]) if len(r) else []:
            idx = np.flatnonzero(r[:, 0] == bid)
            starts.extend(idx[::12].tolist())
        starts = np.array(sorted(starts), np.int64)
        ends = np.append(starts[1:], len(r)).astype(np.int64)
        self.c_lo, self.c_n = starts, ends - starts
        dur = 6 + self.RANGE_US * self.c_n + 4
        self.c_t = t0 + np.concatenate([[0], np.cumsum(dur)])[: len(dur)].astype(np.int64)
        self.end = int(t0 + dur.sum()) if len(dur) else int(t0)
        self.t_first = self.c_t
        self.t_last = self.c_t + dur - 4
        rows_per = 3 + self.c_n * (2 if era.at_least(2, 12) else 1) + 1
        self.cum_rows = np.concatenate([[0], np.cumsum(rows_per)]).astype(np.int64)

    @property
    def n_commands(self) -> int:
        return len(self.c_t)

    def _expand(self, lo: int, hi: int) -> list[Block]:
        c = np.arange(lo, hi, dtype=np.int64)
        t, n = self.c_t[c], self.c_n[c]
        bid = self.r[self.c_lo[c], 0]
        names = _names(self.blocks, bid)
        base = c << 16
        out = []
        nb = np.array([len(x.name) for x in self.blocks], np.int64)[bid]
        cmd = dict(self.cmd_fields)
        cmd["len"] = (2 + nb + 16 * n) & 0xFFFF
        out.append(Block("loadvm_process_command", t, self.prio, base, self.tid, self.pid, cmd))
        out.append(
            Block("loadvm_postcopy_ram_handle_discard", t + 1, self.prio, base + 1, self.tid,
                  self.pid, {}, R_DISCARD_CMD)
        )  # fmt: skip
        out.append(
            Block("loadvm_postcopy_ram_handle_discard_header", t + 5, self.prio, base + 2,
                  self.tid, self.pid, {"ramid": names, "len": (16 * n) & 0xFFFF})
        )  # fmt: skip
        # ranges
        k = np.repeat(np.arange(len(c)), n)
        j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        ri = self.c_lo[c][k] + j
        rb, p0, pn = self.r[ri, 0], self.r[ri, 1], self.r[ri, 2]
        psz = np.array([x.page for x in self.blocks], np.int64)[rb]
        hva = np.array([x.hva for x in self.blocks], np.int64)[rb]
        start, length = p0 * psz, pn * psz
        rt = t[k] + 6 + self.RANGE_US * j
        rseq = base[k] + 3 + 2 * j
        rnames = _names(self.blocks, rb)
        if self.era.at_least(2, 9):
            out.append(
                Block("ram_discard_range", rt, self.prio, rseq, self.tid, self.pid,
                      {"rbname": rnames, "start": start, "len": length}, R_MIG_DISCARD,
                      {"blk": rb, "p0": p0, "p1": p0 + pn, "cmd": c[k]})
            )  # fmt: skip
        else:
            out.append(
                Block("postcopy_ram_discard_range", rt, self.prio, rseq, self.tid, self.pid,
                      {"start": hva + start, "length": length})
            )  # fmt: skip
        if self.era.at_least(2, 12):
            huge = (psz > KIB4).astype(np.int64)
            out.append(
                Block("ram_block_discard_range", rt, self.prio, rseq + 1, self.tid, self.pid,
                      {"rbname": rnames, "hva": hva + start, "length": length,
                       "need_madvise": full(len(rt), 1), "need_fallocate": huge,
                       "ret": full(len(rt), 0)})
            )  # fmt: skip
        out.append(
            Block("loadvm_postcopy_ram_handle_discard_end", t + 6 + self.RANGE_US * n,
                  self.prio, base + 0xFFFF, self.tid, self.pid, {})
        )  # fmt: skip
        return out


class Stream(Source):
    """The postcopy stream on the listen thread: per host page in send order, one
    ``ram_load_postcopy_loop`` per target page, then the placement (``postcopy_place_page``,
    ``postcopy_place_page_zero``; hugetlbfs zero pages print ``_zero`` then ``postcopy_place_page``
    because UFFDIO_ZEROPAGE does not work there), and ``postcopy_page_req_del`` (>= 5.2) for a
    page that was requested."""

    def __init__(self, prio, blocks, blk, hpi, start, taus, zero, urgent, del_count, tid, pid,
                 era) -> None:  # fmt: skip
        """Per host page in send order: block id, host page index, start time (µs, float),
        zero, requested, outstanding requests after its placement; ``taus``: µs per host
        page of each block."""
        self.prio, self.blocks, self.tid, self.pid, self.era = prio, blocks, tid, pid, era
        self.blk = blk.astype(np.int8)
        self.hpi, self.start, self.taus = hpi, start, np.asarray(taus, np.float64)
        self.zero, self.urgent = zero, urgent
        self.del_count = del_count.astype(np.int32)
        psz = np.array([b.page for b in blocks], np.int64)
        self.t_first = np.floor(start).astype(np.int64)
        self.t_place = place_times(start, self.taus[self.blk])
        self.t_last = self.t_place
        nrecv = (psz // KIB4)[self.blk]
        self.huge_zero = zero & (psz[self.blk] > KIB4)
        req = urgent & era.at_least(5, 2)
        rows = nrecv + 1 + self.huge_zero + req
        self.cum_rows = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def _expand(self, lo: int, hi: int) -> list[Block]:
        k = np.arange(lo, hi, dtype=np.int64)
        blk, hpi = self.blk[k].astype(np.int64), self.hpi[k]
        psz = np.array([b.page for b in self.blocks], np.int64)[blk]
        base = np.array([b.hva for b in self.blocks], np.int64)[blk]
        off = hpi * psz
        pk = (blk << PAGE_SHIFT) | hpi
        nr = psz // KIB4
        tau = self.taus[blk]
        # receives
        rk = np.repeat(np.arange(len(k)), nr)
        j = np.arange(int(nr.sum())) - np.repeat(np.cumsum(nr) - nr, nr)
        rts = np.floor(self.start[k][rk] + j * (tau[rk] / nr[rk])).astype(np.int64)
        zero = self.zero[k]
        flags = np.where(zero[rk], 0x22, 0x28)
        out = [
            Block("ram_load_postcopy_loop", rts, self.prio, (k[rk] << 10) + j, self.tid,
                  self.pid, {"channel": full(len(rts), 0), "addr": off[rk] + j * KIB4,
                             "flags": flags}, R_RECEIVE, {"pk": pk[rk]})
        ]  # fmt: skip
        tp = self.t_place[k]
        hz = self.huge_zero[k]
        z4 = zero & ~hz
        seqb = k << 10
        # postcopy_place_page_zero: every zero page (first line of a hugetlbfs zero page)
        zi = np.flatnonzero(zero)
        if len(zi):
            out.append(
                Block("postcopy_place_page_zero", tp[zi], self.prio, seqb[zi] + 1000, self.tid,
                      self.pid, {"host_addr": base[zi] + off[zi]}, R_PLACE,
                      {"pk": pk[zi], "hz": hz[zi].astype(np.int64)})
            )  # fmt: skip
        if self.era.at_least(5, 2):
            di = np.flatnonzero(self.urgent[k])
            if len(di):
                out.append(
                    Block("postcopy_page_req_del", tp[di], self.prio, seqb[di] + 1001, self.tid,
                          self.pid, {"addr": base[di] + off[di], "count": self.del_count[k][di]})
                )  # fmt: skip
        pi = np.flatnonzero(~z4)
        if len(pi):
            out.append(
                Block("postcopy_place_page", tp[pi], self.prio, seqb[pi] + 1002, self.tid,
                      self.pid, {"host_addr": base[pi] + off[pi]}, R_PLACE,
                      {"pk": pk[pi], "hz": hz[pi].astype(np.int64) * 2})
            )  # fmt: skip
        return out


def place_times(start: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """When the last target page of a host page has arrived and QEMU places it (µs)."""
    return np.maximum(np.floor(start + tau * 0.999), np.floor(start)).astype(np.int64)


class Faults(Source):
    """Userfaults on the fault thread: ``postcopy_ram_fault_thread_request`` per fault, then
    (>= 5.2) ``postcopy_page_req_add`` for a page not received yet and the return-path request
    ``migrate_send_rp_message`` (<= 5.1 requests even a received page)."""

    def __init__(self, prio, blocks, t, blk, hpi, hva, race, add_count, tid, pid, era) -> None:
        self.prio, self.blocks, self.tid, self.pid, self.era = prio, blocks, tid, pid, era
        o = np.argsort(t, kind="stable")
        self.t, self.blk, self.hpi, self.hva = t[o], blk[o], hpi[o], hva[o]
        self.race, self.add_count = race[o], add_count[o]
        new = era.at_least(5, 2)
        self.add = ~self.race & new
        self.send = ~self.race | (not new)
        # REQ_PAGES_ID (3) for the first request of the process and when the block changes
        sb = self.blk[self.send]
        first = np.ones(len(sb), bool)
        first[1:] = sb[1:] != sb[:-1]
        self.rp = np.zeros(len(self.t), np.int64)
        self.rp[self.send] = np.where(first, 3, 4)
        self.t_first = self.t
        self.t_last = self.t + 2
        rows = 1 + self.add + self.send
        self.cum_rows = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def _expand(self, lo: int, hi: int) -> list[Block]:
        k = np.arange(lo, hi, dtype=np.int64)
        t, blk, hpi = self.t[k], self.blk[k], self.hpi[k]
        psz = np.array([b.page for b in self.blocks], np.int64)[blk]
        base = np.array([b.hva for b in self.blocks], np.int64)[blk]
        names = _names(self.blocks, blk)
        pk = (blk << PAGE_SHIFT) | hpi
        seq = k << 2
        out = [
            Block("postcopy_ram_fault_thread_request", t, self.prio, seq, self.tid, self.pid,
                  {"hostaddr": self.hva[k], "ramblock": names, "offset": hpi * psz,
                   "pid": full(len(k), 0)}, R_FAULT, {"pk": pk})
        ]  # fmt: skip
        a = np.flatnonzero(self.add[k])
        if len(a):
            out.append(
                Block("postcopy_page_req_add", t[a] + 1, self.prio, seq[a] + 1, self.tid,
                      self.pid, {"addr": base[a] + hpi[a] * psz[a], "count": self.add_count[k][a]})
            )  # fmt: skip
        s = np.flatnonzero(self.send[k])
        if len(s):
            rp = self.rp[k][s]
            nlen = np.array([len(b.name) for b in self.blocks], np.int64)[blk[s]]
            out.append(
                Block("migrate_send_rp_message", t[s] + 2, self.prio, seq[s] + 2, self.tid,
                      self.pid, {"msg_type": rp, "len": np.where(rp == 3, 13 + nlen, 12)})
            )  # fmt: skip
        return out


class Balloon(Source):
    """Balloon batches of one process: the guest reads the config (``get_config``, vCPU), kicks
    the queue (``virtio_queue_notify`` on the handler thread), QEMU pops one 4 KiB page per
    ``virtio_balloon_handle_output`` (each applied inflate followed by its 4 KiB
    ``ram_block_discard_range``), then the guest writes ``actual`` (``set_config``, vCPU)."""

    def __init__(self, prio, batches: dict, reqs: dict, handler_tid, vcpu_tid, pid, vdev, vq,
                 base_hva) -> None:  # fmt: skip
        """``batches``: t_get, t_notify, t_set, first, n, inflate (bool), actual, target
        (arrays); ``reqs``: t, gpa, offset, discard (bool), index (global request id)."""
        self.prio, self.b, self.r = prio, batches, reqs
        self.handler, self.vcpu, self.pid = handler_tid, vcpu_tid, pid
        self.vdev, self.vq, self.base = vdev, vq, base_hva
        self.t_first = batches["t_get"]
        self.t_last = batches["t_set"]
        nd = np.add.reduceat(reqs["discard"].astype(np.int64), batches["first"]) if len(
            reqs["t"]) else np.zeros(0, np.int64)  # fmt: skip
        nd = np.where(batches["n"] > 0, nd, 0)
        rows = 3 + batches["n"] + nd
        self.cum_rows = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)

    def _expand(self, lo: int, hi: int) -> list[Block]:
        b = {k: v[lo:hi] for k, v in self.b.items()}
        bi = np.arange(lo, hi, dtype=np.int64)
        seqb = bi << 10
        nb = len(bi)
        inflate = b["inflate"]
        after = b["actual"] + np.where(inflate, b["n"], -b["n"])
        out = [
            Block("virtio_balloon_get_config", b["t_get"], self.prio, seqb, self.vcpu, self.pid,
                  {"num_pages": b["target"], "actual": b["actual"]}),
            Block("virtio_queue_notify", b["t_notify"], self.prio, seqb + 1, self.handler,
                  self.pid, {"vdev": full(nb, self.vdev), "n": np.where(inflate, 0, 1),
                             "vq": np.where(inflate, self.vq, self.vq + 0x78)}),
            Block("virtio_balloon_set_config", b["t_set"], self.prio, seqb + 1023, self.vcpu,
                  self.pid, {"actual": after, "oldactual": b["actual"]}),
        ]  # fmt: skip
        n = b["n"]
        if n.sum():
            k = np.repeat(np.arange(nb), n)
            j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            ri = b["first"][k] + j
            r = {key: v[ri] for key, v in self.r.items()}
            out.append(
                Block("virtio_balloon_handle_output", r["t"], self.prio, seqb[k] + 2 + 2 * j,
                      self.handler, self.pid,
                      {"name": np.full(len(ri), "pc.ram", dtype=object), "gpa": r["gpa"]},
                      R_BALLOON, {"req": r["index"]})
            )  # fmt: skip
            d = np.flatnonzero(r["discard"])
            if len(d):
                out.append(
                    Block("ram_block_discard_range", r["t"][d], self.prio, seqb[k][d] + 3 + 2 * j[d],
                          self.handler, self.pid,
                          {"rbname": np.full(len(d), "pc.ram", dtype=object),
                           "hva": self.base + r["offset"][d], "length": full(len(d), KIB4),
                           "need_madvise": full(len(d), 1), "need_fallocate": full(len(d), 0),
                           "ret": full(len(d), 0)}, R_BALLOON_DISCARD, {"req": r["index"][d]})
                )  # fmt: skip
        return out


__all__ = ["Balloon", "Discards", "Faults", "Loads", "RamBlock", "Stream", "R_NONE"]
