"""Ground truth of a generated trace, from the generator's own model (no parsing, no replay).

The generator knows what every row it wrote means (which rows are window markers, which 4 KiB
page each balloon request names and in which direction, which host page each fault, receive and
placement concerns) and where each row landed (its position in time-then-trace order, recorded
while writing). From that, this module applies the rules of the replay contract
(``shared/reference/replay-semantics.md``, sections 2-8) to say what a correct replay of the
written file must report, per policy; and, separately, what the era's QEMU really did.

What the file lets a reader know is part of the truth: a trace without precopy loads
(``ram_load_loop``, QEMU < 2.10) has UNKNOWN pages; a trace without thread ids (10.1+ ISO
prefixes) cannot tie a ``ram_load_postcopy_loop`` to its placement, nor find the listen
thread's last line; a trace with process ids only (QEMU <= 3.1 logs, simpletrace) cannot find
the listen thread either. The contract's fallbacks then apply (STATE_END = the first
``completed`` after LISTEN, else END), and the truth says so in ``windows``.
"""

from __future__ import annotations

import numpy as np

from tracetool.synth.model import CLASS_CODES, PHASES
from tracetool.synth.rows import PAGE_SHIFT, R_FAULT, R_LOAD, R_PLACE, R_RECEIVE
from tracetool.synth.writers import ids_of

POLICIES = ("no-inhibit", "inhibit", "inhibit-discard", "defer")
CLASSES = ("discard-after-place", "discard-in-flight", "discard-before-arrival")
POLICY_WINDOW = {
    "no-inhibit": ("listen", "end"),
    "inhibit": ("listen", "cleanup"),
    "inhibit-discard": ("discard", "state_end"),
    "defer": ("listen", "end"),
}
BIG = 1 << 62
KIB4 = 4096
# page states and event kinds (the contract's, in tie-break order)
UNKNOWN, ABSENT, REQUESTED, IN_TRANSIT, PRESENT = range(5)
K_RESET, K_DISCARD, K_LOAD, K_FAULT, K_RECEIVE, K_PLACE, K_INFLATE, K_DEFLATE = range(8)
APPLIED, DROPPED, DEFERRED_APPLIED, CANCELLED = range(4)


def _first(orders: np.ndarray, lo: int, hi: int) -> int | None:
    i = int(np.searchsorted(orders, lo, side="left"))
    return int(orders[i]) if i < len(orders) and orders[i] < hi else None


def windows(rec, ids: str) -> list[dict]:
    """The incoming postcopy windows a reader can establish, in event orders (contract 2)."""
    mk = {k: np.array(sorted(v), np.int64).reshape(-1, 3) for k, v in rec.markers.items()}
    order = {k: v[:, 0] for k, v in mk.items()}
    ts = {int(o): int(t) for v in mk.values() for o, t, _ in v}
    ts.update({int(o): int(t) for o, t in rec.lt_last.values()})
    n = rec.events
    adv = order["advise"]
    out = []
    for i, a in enumerate(adv.tolist()):
        hi = int(adv[i + 1]) if i + 1 < len(adv) else n + 1
        w = {"migration": i, "advise": a}
        li = _first(order["listen"], a, hi)
        if li is not None:
            w["listen"] = li
            di = _first(order["discard"], a, hi)
            w["discard"] = li if di is None or di > li else di
            ru = _first(order["run"], li, hi)
            if ru is not None:
                w["run"] = ru
            ends = [x for x in (_first(order[k], li, hi) for k in ("lt_exit", "cl_entry",
                                                                    "completed")) if x is not None]  # fmt: skip
            cleanup = _first(order["cl_exit"], li, hi)
            w["end"] = min(ends) if ends else (cleanup if cleanup is not None else min(hi, n))
            se = None
            if ids == "tid":
                k = int(np.searchsorted(order["lt_start"], li, side="left"))
                if k < len(order["lt_start"]) and order["lt_start"][k] < hi:
                    tid = int(mk["lt_start"][k, 2])
                    se = rec.lt_last.get(tid, (None, None))[0]
            if se is None:
                c = _first(order["completed"], li, hi)
                se = c if c is not None else w["end"]
            w["state_end"] = max(se, w["end"])
            w["cleanup"] = w["state_end"] if cleanup is None else max(cleanup, w["end"])
        w["ts"] = {k: ts.get(v) for k, v in w.items() if k != "migration"}
        out.append(w)
    return out


def _bounds(ws: list[dict], lo: str, hi: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([w.get(lo, BIG) if "listen" in w else BIG for w in ws] or [BIG], np.int64)
    b = np.array([w.get(hi, BIG) if "listen" in w else BIG for w in ws] or [BIG], np.int64)
    return a, b


class Truth:
    """Ground truth of one written trace (``to_dict`` is the truth file)."""

    def __init__(self, model, rec, fmt: str, race_window_ns: int = 0, clock_offset_ns: int = 0
                 ) -> None:  # fmt: skip
        self.m, self.rec, self.fmt = model, rec, fmt
        self.clock = clock_offset_ns
        self.ids = ids_of(fmt, model.era)
        self.race = race_window_ns
        self.ws = windows(rec, self.ids)
        arr = rec.arrays()
        c = model.reqs.cols
        n = model.reqs.n
        r = arr["req"]
        self.order = np.full(n, -1, np.int64)
        self.ts = np.zeros(n, np.int64)
        self.order[r[:, 0]] = r[:, 1]
        self.ts[r[:, 0]] = r[:, 2] * 1000
        assert (self.order >= 0).all(), "every balloon request must have been written"
        self.inflate = c["inflate"]
        self.deflate = ~c["inflate"]
        self.gpa = c["gpa"]
        self.page = (np.int64(0) << PAGE_SHIFT) | (c["offset"] // model.hp)
        self.adv = np.array([w["advise"] for w in self.ws], np.int64)
        self.mig = (np.searchsorted(self.adv, self.order, side="right") - 1) if len(self.adv) \
            else np.full(n, -1)  # fmt: skip
        self.conf_lo, self.conf_hi = _bounds(self.ws, "listen", "end")
        self.loads_traced = rec.counts.get("ram_load_loop", 0) > 0
        self.pages = arr["page"]
        self.mig_discard = arr["mig_discard"]

    # -- per policy ------------------------------------------------------------------------
    def in_window(self, policy: str) -> np.ndarray:
        lo, hi = _bounds(self.ws, *POLICY_WINDOW[policy])
        m = np.maximum(self.mig, 0)
        return (self.mig >= 0) & (self.order >= lo[m]) & (self.order < hi[m])

    def decisions(self, policy: str) -> tuple[np.ndarray, np.ndarray]:
        """(in window, decision per request: 0 apply, 1 drop, 2 defer)."""
        win = self.in_window(policy)
        d = np.zeros(len(win), np.int8)
        if policy in ("inhibit", "inhibit-discard"):
            d[win & self.inflate] = 1
        elif policy == "defer":
            d[win & self.inflate] = 2
        return win, d

    def outcomes(self, win: np.ndarray, d: np.ndarray) -> np.ndarray:
        out = np.full(len(d), -1, np.int8)
        out[self.inflate & (d == 0)] = APPLIED
        out[self.inflate & (d == 1)] = DROPPED
        queued = self.inflate & (d == 2)
        out[queued] = CANCELLED
        # a page's queue at END: applied once if its last request in the window inflates
        rel = np.flatnonzero(win)
        last: dict[tuple[int, int], int] = {}
        for i in rel[np.argsort(self.order[rel], kind="stable")]:
            last[(int(self.mig[i]), int(self.gpa[i]))] = int(i)
        for i in last.values():
            if queued[i]:
                out[i] = DEFERRED_APPLIED
        return out

    def page_events(self, pages: np.ndarray) -> np.ndarray:
        """Migration events of the given host pages, as rows (page, order, kind, ts_ns, x):
        the ADVISE reset of every migration (x = the state it resets to), the migration
        discards covering the page, precopy loads, faults, receives and placements."""
        pages = np.unique(pages)
        parts = []
        reset = ABSENT if self.loads_traced else UNKNOWN
        for w in self.ws:
            parts.append(np.stack([pages, np.full(len(pages), w["advise"]), np.full(len(pages), K_RESET),
                                   np.zeros(len(pages), np.int64), np.full(len(pages), reset)], axis=1))  # fmt: skip
        # migration discards: per migration and layer (ADVISE whole blocks; the discard
        # bitmap) the ranges are disjoint, so one look-up per page finds the covering one
        md = self.mig_discard
        if len(md):
            blk, hpi = pages >> PAGE_SHIFT, pages & ((1 << PAGE_SHIFT) - 1)
            mig = np.searchsorted(self.adv, md[:, 3], side="right") - 1
            for key in np.unique(np.stack([mig, md[:, 4]], axis=1), axis=0):
                g = md[(mig == key[0]) & (md[:, 4] == key[1])]
                g = g[np.lexsort((g[:, 1], g[:, 0]))]
                gk = g[:, 0] * (1 << PAGE_SHIFT) + g[:, 1]
                i = np.searchsorted(gk, blk * (1 << PAGE_SHIFT) + hpi, side="right") - 1
                ok = i >= 0
                ok[ok] &= (g[i[ok], 0] == blk[ok]) & (g[i[ok], 2] > hpi[ok])
                n = int(ok.sum())
                parts.append(np.stack([pages[ok], g[i[ok], 3], np.full(n, K_DISCARD),
                                       np.zeros(n, np.int64), np.zeros(n, np.int64)], axis=1))  # fmt: skip
        kinds = np.zeros(32, np.int64)
        kinds[[R_LOAD, R_FAULT, R_RECEIVE, R_PLACE]] = [K_LOAD, K_FAULT, K_RECEIVE, K_PLACE]
        pe = self.pages[np.isin(self.pages[:, 1], pages)]
        if self.ids == "none":  # no thread ids: a receive cannot be tied to its placement
            pe = pe[pe[:, 0] != R_RECEIVE]
        parts.append(np.stack([pe[:, 1], pe[:, 2], kinds[pe[:, 0]], pe[:, 3] * 1000,
                               np.zeros(len(pe), np.int64)], axis=1))  # fmt: skip
        return np.concatenate(parts) if parts else np.zeros((0, 5), np.int64)

    def refill(self, applied: np.ndarray) -> np.ndarray:
        """Order of the next placement of each applied inflate's host page (BIG if none)."""
        out = np.full(len(applied), BIG, np.int64)
        pe = self.pages[self.pages[:, 0] == R_PLACE]
        idx = np.flatnonzero(applied)
        if not len(pe) or not len(idx):
            return out
        srt = np.lexsort((pe[:, 2], pe[:, 1]))
        pk, po = pe[srt, 1], pe[srt, 2]
        upk, inv = np.unique(pk, return_inverse=True)
        comb = inv.astype(np.int64) * (1 << 40) + po
        r = np.searchsorted(upk, self.page[idx])
        exists = (r < len(upk)) & (upk[np.minimum(r, len(upk) - 1)] == self.page[idx])
        q = np.searchsorted(comb, r * (1 << 40) + self.order[idx], side="right")
        ok = exists & (q < len(comb))
        ok[ok] &= inv[q[ok]] == r[ok]
        out[idx[ok]] = po[q[ok]]
        return out

    def classify(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conflict class (0 none, 1..3) and refault_expected of every applied inflate in the
        conflict window LISTEN .. END (contract 6), by a per-page state machine."""
        n = len(d)
        cls = np.zeros(n, np.int8)
        refault = np.zeros(n, bool)
        applied = self.inflate & (d == 0)
        m = np.maximum(self.mig, 0)
        in_conf = (self.mig >= 0) & (self.order >= self.conf_lo[m]) & (self.order < self.conf_hi[m])
        pages = np.unique(self.page[applied & in_conf])
        if not len(pages):
            return cls, refault
        ev = self.page_events(pages)
        req = np.flatnonzero(np.isin(self.page, pages) & (applied | self.deflate))
        kind = np.where(self.inflate[req], K_INFLATE, K_DEFLATE)
        ev = np.concatenate([ev, np.stack([self.page[req], self.order[req], kind, self.ts[req],
                                           req], axis=1)])  # fmt: skip
        ev = ev[np.lexsort((ev[:, 2], ev[:, 1], ev[:, 0]))]
        mig = np.searchsorted(self.adv, ev[:, 1], side="right") - 1
        # per event: the next placement of its page, and whether the page's next migration
        # event is a placement (a backward pass)
        n = len(ev)
        nxt_place = np.full(n, -1, np.int64)
        nxt_is_place = np.zeros(n, bool)
        cur_place, cur_kind = -1, -1
        pg = ev[:, 0].tolist()
        kd = ev[:, 2].tolist()
        for j in range(n - 1, -1, -1):
            if j + 1 < n and pg[j + 1] != pg[j]:
                cur_place, cur_kind = -1, -1
            nxt_place[j] = cur_place
            nxt_is_place[j] = cur_kind == K_PLACE
            if kd[j] == K_PLACE:
                cur_place = j
            if kd[j] <= K_PLACE:
                cur_kind = kd[j]
        rows = ev.tolist()
        mg = mig.tolist()
        state, ap_req, ap_mig, prev = UNKNOWN, -1, -1, None
        for j, (p, o, k, t, x) in enumerate(rows):
            if p != prev:
                state, ap_req, ap_mig, prev = UNKNOWN, -1, -1, p
            mm = mg[j]
            conf = mm >= 0 and self.conf_lo[mm] <= o < self.conf_hi[mm]
            if k == K_RESET:
                state = x
            elif k == K_DISCARD:
                state = ABSENT
            elif k in (K_LOAD, K_PLACE):
                state = PRESENT
            elif k == K_FAULT:
                state = state if state == PRESENT else REQUESTED
            elif k == K_RECEIVE:
                state = state if state == PRESENT else IN_TRANSIT
            elif k == K_INFLATE:
                if conf:
                    s = state
                    if nxt_is_place[j] and s in (PRESENT, UNKNOWN):
                        s = ABSENT  # QEMU only places missing pages
                    c = 0
                    q = int(nxt_place[j])
                    if s == PRESENT:
                        c = 1
                    elif s in (REQUESTED, IN_TRANSIT):
                        c = 2
                    elif q >= 0 and rows[q][1] < self.conf_hi[mm]:
                        c = 2 if rows[q][3] - t <= self.race else 3
                    cls[x] = c
                    if c == 1:
                        ap_req, ap_mig = x, mm
                state = ABSENT
            elif k == K_DEFLATE and ap_req >= 0 and ap_mig == mm and conf:
                refault[ap_req] = True
                ap_req = -1
        return cls, refault

    def reclaimed(self, out: np.ndarray, refill: np.ndarray, at: int) -> int:
        """Bytes the balloon holds at order ``at`` (contract 8)."""
        applied = (out == APPLIED) | (out == DEFERRED_APPLIED)
        m = np.clip(self.mig, 0, len(self.conf_hi) - 1)
        start = np.where(out == DEFERRED_APPLIED, self.conf_hi[m], self.order)
        evi = np.flatnonzero(applied | self.deflate)
        srt = evi[np.lexsort((start[evi], self.gpa[evi] >> 12))]
        stop = np.full(len(out), BIG, np.int64)
        same = self.gpa[srt][1:] == self.gpa[srt][:-1]
        stop[srt[:-1][same]] = start[srt[1:][same]]
        end = np.minimum(stop, np.where(out == APPLIED, refill, BIG))
        live = applied & (start <= at) & (end > at)
        return int(np.count_nonzero(live)) * KIB4

    def policy(self, name: str) -> dict:
        win, d = self.decisions(name)
        out = self.outcomes(win, d)
        cls, refault = self.classify(d)
        refill = self.refill(self.inflate & (d == 0))
        conf_win = self.in_window("no-inhibit")
        w = conf_win if name == "no-inhibit" else win
        counts = {
            c: int(np.count_nonzero(cls[self.inflate] == i + 1)) for i, c in enumerate(CLASSES)
        }
        post = [x for x in self.ws if "listen" in x]
        end_of_window = max((x["end"] for x in post), default=-1)
        return {
            "inflate_pages": int(self.inflate.sum()),
            "deflate_pages": int(self.deflate.sum()),
            "inflate_pages_in_window": int((self.inflate & w).sum()),
            "deflate_pages_in_window": int((self.deflate & w).sum()),
            "applied_pages": int(((out == APPLIED) | (out == DEFERRED_APPLIED)).sum()),
            "dropped_pages": int((out == DROPPED).sum()),
            "deferred_pages": int((self.inflate & (d == 2)).sum()),
            "cancelled_pages": int((out == CANCELLED).sum()),
            "applied_at_end_pages": int((out == DEFERRED_APPLIED).sum()),
            "refilled_pages": counts["discard-before-arrival"],
            "conflicts": counts,
            "conflict_pages": int(len(np.unique(self.page[(cls > 0) & self.inflate]))),
            "refault_expected": int(refault.sum()),
            "reclaimed_bytes_end_of_window": self.reclaimed(out, refill, end_of_window)
            if post
            else None,
            "reclaimed_bytes_end_of_trace": self.reclaimed(out, refill, self.rec.events),
            "_outcome": out,
        }

    # -- the file ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        m, rec, era = self.m, self.rec, self.m.era
        c = m.reqs.cols
        pols = {p: self.policy(p) for p in POLICIES}
        qpol = era.policy
        discard_traced = rec.counts.get("ram_block_discard_range", 0) > 0
        n_inf = int(self.inflate.sum())
        if discard_traced:
            # On a larger host page QEMU discards only a wholly ballooned host page: an inflate
            # without its discard is then unknown, not dropped.
            known = self.inflate if m.hp == 4096 else self.inflate & c["discard"]
            observed = {"applied_pages": int((self.inflate & c["discard"]).sum()),
                        "dropped_pages": int((known & ~c["discard"]).sum()),
                        "unknown_pages": int((self.inflate & ~known).sum())}  # fmt: skip
            pred = np.isin(pols[qpol]["_outcome"], [APPLIED, DEFERRED_APPLIED])
            agree = known & (pred == c["discard"])
            fid = {"policy": qpol, "agree": int(agree.sum()),
                   "disagree": int(known.sum() - agree.sum())}  # fmt: skip
        else:
            observed = {"applied_pages": 0, "dropped_pages": 0, "unknown_pages": n_inf}
            fid = {"policy": qpol, "agree": 0, "disagree": 0}
        observed["fidelity"] = fid
        for p in pols.values():
            p.pop("_outcome")
        races = sum(x.info.get("refault_races", 0) for x in m.migs)
        hz = sum(x.info.get("hugetlb_zero_pages", 0) for x in m.migs)
        wins = []
        for w in self.ws:
            item = {"migration": w["migration"], "postcopy": "listen" in w}
            item.update({f"{k}_ns": (None if v is None else v * 1000 + self.clock)
                         for k, v in w["ts"].items()})  # fmt: skip
            item.update({f"{k}_order": w[k] for k in w if k not in ("migration", "ts")})
            wins.append(item)
        phase = c["phase"]
        per_phase = {
            ph: {"inflate": int((self.inflate & (phase == i)).sum()),
                 "deflate": int((self.deflate & (phase == i)).sum())}
            for i, ph in enumerate(PHASES)
        }  # fmt: skip
        planted = {k: int((c["planted"] == v).sum()) for k, v in CLASS_CODES.items()}
        return {
            "replay": {
                "race_window_ns": self.race,
                "qemu_policy": qpol,
                "balloon_pages": int(m.reqs.n),
                "unresolved_direction_pages": 0,
                "direction_evidence": {"virtio_queue_notify": int(m.reqs.n)} if m.reqs.n else {},
                "unmapped_balloon_pages": 0,
                "policies": pols,
                "observed": observed,
                "anomalies": {"observed-refault": int(races), "observed-double-place": 0},
                "windows": wins,
            },
            "qemu": self.qemu_facts(hz),
            "balloon": {"phases": per_phase, "planted": planted},
        }

    def qemu_facts(self, hugetlb_zero: int) -> dict:
        """What the era's QEMU really did (the model's facts, beyond what the trace proves)."""
        m, c = self.m, self.m.reqs.cols
        real = []
        for x in m.migs:
            lo, hi = x.real_window
            real.append({"migration": x.index, "policy": m.era.policy,
                         "inhibit_from_ns": lo * 1000, "inhibit_until_ns": hi * 1000,
                         "listen_thread_last_line_ns": x.t["lt_last"] * 1000})  # fmt: skip
        return {
            "version": m.era.version_text,
            "policy": m.era.policy,
            "inflate_pages_applied": int((self.inflate & c["applied"]).sum()),
            "inflate_pages_dropped": int((self.inflate & ~c["applied"]).sum()),
            "discards_traced": int(c["discard"].sum()),
            "real_windows": real,
            # hugetlbfs zero pages: QEMU prints postcopy_place_page_zero, then places the page
            # with postcopy_place_page (one placement, two lines)
            "hugetlb_zero_place_pairs": int(hugetlb_zero),
            "migrations": [{"migration": x.index, **x.info, "planted": x.planted} for x in m.migs],
        }
