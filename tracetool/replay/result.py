"""Replay results: the summary (the ``--json`` shape), the conflicts table, display."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from tracetool.memory import small_pages, trim_heap
from tracetool.replay import balloon
from tracetool.replay.model import ConflictClass, Outcome, Policy
from tracetool.replay.pages import PAGE_SHIFT, argsort_keys

if TYPE_CHECKING:
    import pandas as pd

KIB4 = 4096
BIG = np.int64(1) << np.int64(62)
CLASSES = [c.value for c in ConflictClass]

CONFLICTS_SCHEMA = pa.schema(
    [
        pa.field("ts_ns", pa.int64()),
        pa.field("policy", pa.string()),
        pa.field("class", pa.string()),
        pa.field("ramblock", pa.string()),
        pa.field("offset", pa.int64()),  # block offset of the 4 KiB balloon page
        pa.field("gpa", pa.uint64()),
        pa.field("hva", pa.uint64()),
        pa.field("line", pa.int64()),
        pa.field("related_ts_ns", pa.int64()),
        pa.field("related_line", pa.int64()),
        pa.field("refault_expected", pa.bool_()),
        pa.field("migration", pa.int32()),
    ]
)


@dataclass
class PolicyRun:
    """One policy's replay, per request. Arrays are read-only and may be shared with another
    run's when equal."""

    policy: Policy
    effective: Policy
    in_window: np.ndarray  # per request: inside the policy's own window
    decision: np.ndarray
    outcome: np.ndarray  # Outcome per inflate request (-1 for others)
    cclass: np.ndarray  # int8 conflict code
    related: np.ndarray  # page-event index or -1 (int32 when there are fewer than 2**31)
    refault: np.ndarray
    refill_at: np.ndarray

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "in_window", "decision", "outcome", "cclass", "related", "refault", "refill_at",
    )  # fmt: skip


@dataclass
class ReplayResult:
    """What a replay found: ``summary`` (dict), ``conflicts`` (pyarrow.Table), ``windows``."""

    trace: Any
    options: Any
    order: Any
    windows: list
    address_map: Any
    requests: balloon.Requests | None
    page_events: Any
    info: dict
    runs: dict[str, PolicyRun]
    refault: np.ndarray
    double_place: np.ndarray
    qemu_policy: Policy
    qemu_policy_why: str
    conf_bounds: tuple[np.ndarray, np.ndarray]
    _summary: dict | None = field(default=None, repr=False)
    _conflicts: pa.Table | None = field(default=None, repr=False)
    _holding: dict = field(default_factory=dict, repr=False)  # see holding()
    _by_page: np.ndarray | None = field(default=None, repr=False)

    # -- per-request helpers ---------------------------------------------------------------
    def _req_page_columns(self):
        """Per request: (host page index in page_events of its own row, hva, block offset)."""
        pe = self.page_events
        n = len(self.requests) if self.requests is not None else 0
        row = np.full(n, -1, np.int64)
        sel = pe.req >= 0
        row[pe.req[sel]] = np.flatnonzero(sel)
        return row

    def holding(self, run: PolicyRun) -> tuple[np.ndarray, np.ndarray]:
        """Replay orders ``[start, stop)`` during which each applied inflate holds its 4 KiB
        page: from the request (a deferred apply: from the END of its window) to the page's
        next deflate or next applied inflate, or the placement that refilled it (BIG: never)."""
        # runs that share their outcome and refill arrays hold the same pages: one entry
        key = (id(run.outcome), id(run.refill_at))
        got = self._holding.get(key)
        if got is None or got[0] is not run.outcome or got[1] is not run.refill_at:
            got = self._holding[key] = (run.outcome, run.refill_at, *self._holding_of(run))
        return got[2], got[3]

    def _requests_by_page(self) -> np.ndarray | None:
        """Every request by (4 KiB page, order), stable; None if the orders are too large for
        one packed key (then each policy sorts its own requests)."""
        r = self.requests
        small = r.order.max(initial=0) < (1 << 32) and r.order.min(initial=0) >= 0
        if self._by_page is None and r.gpa.max(initial=0) < (1 << 44) and small:
            self._by_page = argsort_keys(((r.gpa >> 12) << 32) | r.order)
        return self._by_page

    def _holding_of(self, run: PolicyRun) -> tuple[np.ndarray, np.ndarray]:
        r = self.requests
        if r is None or not len(r):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        applied = (run.outcome == int(Outcome.APPLIED)) | (
            run.outcome == int(Outcome.DEFERRED_APPLIED)
        )
        deferred = run.outcome == int(Outcome.DEFERRED_APPLIED)
        start = np.where(deferred, self._end_of(r.order), r.order) if deferred.any() else r.order
        # a page stops being reclaimed at its next deflate or next applied inflate
        held = applied | (r.direction == balloon.DEFLATE)
        by_page = None if deferred.any() else self._requests_by_page()
        if by_page is not None:  # start is the order: the shared sort, restricted
            srt = by_page[held[by_page]]
        else:
            ev = np.flatnonzero(held)
            if r.gpa.max(initial=0) < (1 << 44) and start[ev].max(initial=0) < (1 << 32):
                srt = ev[argsort_keys(((r.gpa[ev] >> 12) << 32) | start[ev])]
            else:
                srt = ev[np.lexsort((start[ev], r.gpa[ev]))]
        stop = np.full(len(r), BIG, np.int64)
        g = r.gpa[srt]
        same = g[1:] == g[:-1]
        stop[srt[:-1][same]] = start[srt[1:][same]]
        end = np.minimum(stop, run.refill_at)
        return start[applied], end[applied]

    def _reclaimed(self, run: PolicyRun, at: int) -> int:
        """Bytes the balloon holds at order ``at``: applied inflates not refilled, not deflated."""
        start, end = self.holding(run)
        return int(np.count_nonzero((start <= at) & (end > at))) * KIB4

    def reclaimed_steps(self, policy: str) -> tuple[np.ndarray, np.ndarray]:
        """Reclaimed memory over time under ``policy`` as a step function: the replay orders
        where it changes and the bytes held from each of them on (vectorised: a cumulative sum
        of +1 at every hold's start and -1 at its stop)."""
        start, end = self.holding(self.runs[policy])
        end = end[end < BIG]
        at = np.concatenate([start, end])
        step = np.concatenate([np.ones(len(start), np.int64), -np.ones(len(end), np.int64)])
        srt = np.argsort(at, kind="stable")
        at, held = at[srt], np.cumsum(step[srt]) * KIB4
        last = np.ones(len(at), bool)
        last[:-1] = at[1:] != at[:-1]  # one value per order: the one after all its changes
        return at[last], held[last]

    def _end_of(self, orders: np.ndarray) -> np.ndarray:
        """END order of the migration window of each order (for deferred applies)."""
        lo, hi = self.conf_bounds
        adv = np.array([w.ord["advise"] for w in self.windows] or [0], np.int64)
        m = np.clip(np.searchsorted(adv, orders, side="right") - 1, 0, len(hi) - 1)
        return hi[m]

    # -- summary ---------------------------------------------------------------------------
    @property
    def summary(self) -> dict:
        if self._summary is None:
            with small_pages():
                self._summary = self._build_summary()
            self._by_page = None  # only for holding(), which every run has been through
            trim_heap()
        return self._summary

    def _build_summary(self) -> dict:
        r = self.requests
        n = len(r) if r is not None else 0
        inflate = r.direction == balloon.INFLATE if n else np.zeros(0, bool)
        deflate = r.direction == balloon.DEFLATE if n else np.zeros(0, bool)
        lo, hi = self.conf_bounds
        post = [w for w in self.windows if w.postcopy]
        end_of_window = max((w.ord["end"] for w in post), default=-1)
        end_of_trace = self.order.n
        conf_win = np.zeros(n, bool)
        if n and post:
            m = np.clip(
                np.searchsorted([w.ord["advise"] for w in self.windows], r.order, side="right") - 1,
                0,
                None,
            )
            conf_win = (r.order >= lo[m]) & (r.order < hi[m])
        row = self._req_page_columns()
        pages = self.page_events.page
        page_key = (
            np.where(row >= 0, pages[np.maximum(row, 0)], -1) if len(pages) else np.full(n, -1)
        )
        policies = {}
        for name, run in self.runs.items():
            if name.startswith("_"):
                continue
            counts = {
                c: int(np.count_nonzero(run.cclass[inflate] == i + 1))
                for i, c in enumerate(CLASSES)
            }
            conflicted = (run.cclass > 0) & inflate
            win = run.in_window if run.policy is not Policy.NO_INHIBIT else conf_win
            policies[name] = {
                "effective_policy": run.effective.value,
                "inflate_pages": int(inflate.sum()),
                "deflate_pages": int(deflate.sum()),
                "inflate_pages_in_window": int((inflate & win).sum()),
                "deflate_pages_in_window": int((deflate & win).sum()),
                "applied_pages": int(
                    np.isin(
                        run.outcome, [int(Outcome.APPLIED), int(Outcome.DEFERRED_APPLIED)]
                    ).sum()
                ),
                "dropped_pages": int((run.outcome == int(Outcome.DROPPED)).sum()),
                "deferred_pages": int((inflate & (run.decision == 2)).sum()),
                "cancelled_pages": int((run.outcome == int(Outcome.CANCELLED)).sum()),
                "applied_at_end_pages": int((run.outcome == int(Outcome.DEFERRED_APPLIED)).sum()),
                "refilled_pages": counts[ConflictClass.DISCARD_BEFORE_ARRIVAL.value],
                "conflicts": counts,
                "conflict_pages": int(len(np.unique(page_key[conflicted]))),
                "refault_expected": int(np.count_nonzero(run.refault)),
                "reclaimed_bytes_end_of_window": self._reclaimed(run, end_of_window)
                if post
                else None,
                "reclaimed_bytes_end_of_trace": self._reclaimed(run, end_of_trace),
            }
        observed = {"applied_pages": 0, "dropped_pages": 0, "unknown_pages": int(inflate.sum())}
        fidelity = {
            "policy": self.qemu_policy.value,
            "why": self.qemu_policy_why,
            "agree": 0,
            "disagree": 0,
        }
        if n and r.discard_traced:
            obs = r.observed
            observed = {
                "applied_pages": int((inflate & (obs == balloon.OBS_APPLIED)).sum()),
                "dropped_pages": int((inflate & (obs == balloon.OBS_DROPPED)).sum()),
                "unknown_pages": int((inflate & (obs == balloon.OBS_UNKNOWN)).sum()),
            }
            q = (
                self.runs.get("qemu")
                or self.runs.get("_qemu")
                or self.runs.get(self.qemu_policy.value)
            )
            if q is not None:
                pred_applied = np.isin(
                    q.outcome, [int(Outcome.APPLIED), int(Outcome.DEFERRED_APPLIED)]
                )
                known = inflate & (obs != balloon.OBS_UNKNOWN)
                agree = known & (pred_applied == (obs == balloon.OBS_APPLIED))
                fidelity["agree"] = int(agree.sum())
                fidelity["disagree"] = int((known & ~agree).sum())
        observed["fidelity"] = fidelity
        evidence = {}
        if n:
            for i, name in enumerate(balloon.EVIDENCE):
                c = int(np.count_nonzero(r.evidence == i))
                if c:
                    evidence[name] = c
        return {
            "policies": policies,
            "observed": observed,
            "anomalies": {
                "observed-refault": int(np.count_nonzero(self.refault)),
                "observed-double-place": int(np.count_nonzero(self.double_place)),
            },
            "unresolved_direction_pages": int(np.count_nonzero(r.direction == balloon.UNRESOLVED))
            if n
            else 0,
            "balloon_pages": n,
            "direction_evidence": evidence,
            "unmapped_balloon_pages": self.info.get("unmapped_balloon_pages", 0),
            "observed_discard_of_other_page": self.info.get("observed_other_page", 0),
            "race_window_ns": int(self.options.race_window_ns),
            "qemu_policy": {"policy": self.qemu_policy.value, "why": self.qemu_policy_why},
            "windows": [
                {
                    "migration": w.migration,
                    "postcopy": w.postcopy,
                    **{f"{k}_ns": w.ns.get(k) for k in w.ord},
                    "inferred": w.inferred,
                }
                for w in self.windows
            ],  # fmt: skip
            "address_map": self.address_map.to_dict(),
            "page_events": len(self.page_events),
        }

    # -- tables ----------------------------------------------------------------------------
    @property
    def conflicts(self) -> pa.Table:
        """One row per conflicting inflate request and policy (see ``CONFLICTS_SCHEMA``)."""
        if self._conflicts is None:
            self._conflicts = self._build_conflicts()
        return self._conflicts

    def _build_conflicts(self) -> pa.Table:
        r = self.requests
        parts = []
        if r is None or not len(r):
            return CONFLICTS_SCHEMA.empty_table()
        pe = self.page_events
        row = self._req_page_columns()
        names = self.address_map.names()
        adv = np.array([w.ord["advise"] for w in self.windows] or [0], np.int64)
        ts = pe.ts
        for name, run in self.runs.items():
            if name.startswith("_"):
                continue
            idx = np.flatnonzero(run.cclass > 0)
            if not len(idx):
                continue
            prow = row[idx]
            rel = run.related[idx]
            blk = pe.page[prow] // PAGE_SHIFT
            parts.append(
                pa.table(
                    {
                        "ts_ns": ts[prow],
                        "policy": pa.array([name] * len(idx), pa.string()),
                        "class": pa.array([CLASSES[c - 1] for c in run.cclass[idx]], pa.string()),
                        "ramblock": pa.array([names[b] for b in blk], pa.string()),
                        "offset": pe.offset[prow],
                        "gpa": r.gpa[idx].astype(np.uint64),
                        "hva": pe.hva[prow].astype(np.uint64),
                        "line": r.line[idx],
                        "related_ts_ns": pa.array(
                            np.where(rel >= 0, ts[np.maximum(rel, 0)], 0), mask=rel < 0
                        ),
                        "related_line": pa.array(
                            np.where(rel >= 0, pe.line[np.maximum(rel, 0)], 0).astype(np.int64),
                            mask=rel < 0,
                        ),
                        "refault_expected": run.refault[idx],
                        "migration": (np.searchsorted(adv, r.order[idx], side="right") - 1).astype(
                            np.int32
                        ),
                    },
                    schema=CONFLICTS_SCHEMA,
                )
            )
        if not parts:
            return CONFLICTS_SCHEMA.empty_table()
        return pa.concat_tables(parts)

    def page_events_table(self) -> pa.Table:
        """The normalised page events: ts_ns, kind, ramblock, offset (host-page aligned), gpa
        (balloon requests), hva, length (host page size), line, in replay order."""
        from tracetool.replay.model import Kind

        pe = self.page_events
        names = self.address_map.names()
        sizes = self.address_map.page_sizes()
        blk = pe.page // PAGE_SHIFT
        pidx = pe.page % PAGE_SHIFT
        is_req = pe.req >= 0
        gpa = np.zeros(len(pe), np.uint64)
        if self.requests is not None and is_req.any():
            gpa[is_req] = self.requests.gpa[pe.req[is_req]].astype(np.uint64)
        kinds = [k.name.lower() for k in Kind]
        offset = (pidx * sizes[blk]) if len(names) else pidx
        base = np.array([self.address_map.blocks[n].hva or 0 for n in names] or [0], np.int64)
        hva = np.where(pe.hva != 0, pe.hva, np.where(base[blk] != 0, base[blk] + offset, 0))
        return pa.table(
            {
                "ts_ns": pe.ts,
                "kind": pa.DictionaryArray.from_arrays(
                    pa.array(pe.kind.astype(np.int32)), pa.array(kinds)
                ),
                "ramblock": pa.DictionaryArray.from_arrays(
                    pa.array(blk.astype(np.int32)), pa.array(names or [""])
                ),
                "offset": offset,
                "gpa": pa.array(gpa, mask=~is_req),
                "hva": pa.array(hva.astype(np.uint64), mask=hva == 0),
                "length": sizes[blk] if len(names) else np.full(len(pe), KIB4),
                "line": pe.line.astype(np.int64, copy=False),
            }
        )

    def windows_table(self) -> pa.Table:
        from tracetool.replay.windows import windows_table

        return windows_table(self.windows)

    def to_pandas(self) -> pd.DataFrame:
        """The conflicts table as a pandas DataFrame."""
        return self.conflicts.to_pandas()

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        pols = ", ".join(
            f"{k}: {sum(v['conflicts'].values())} conflicts"
            for k, v in self.summary["policies"].items()
        )
        return f"<ReplayResult {self.summary['balloon_pages']} balloon pages; {pols}>"

    def _repr_html_(self) -> str:
        s = self.summary
        head = "".join(
            f"<th>{html.escape(h)}</th>"
            for h in [
                "policy",
                "in window",
                "applied",
                "dropped",
                "deferred",
                "cancelled",
                *CLASSES,
                "reclaimed MiB",
            ]
        )
        rows = []
        for k, v in s["policies"].items():
            cells = [k, v["inflate_pages_in_window"], v["applied_pages"], v["dropped_pages"], v["deferred_pages"],
                     v["cancelled_pages"], *[v["conflicts"][c] for c in CLASSES],
                     f"{v['reclaimed_bytes_end_of_trace'] / 2**20:.1f}"]  # fmt: skip
            rows.append(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
            )
        obs = s["observed"]
        return (
            f"<p>Replay of {s['balloon_pages']} balloon pages; observed applied {obs['applied_pages']}, "
            f"dropped {obs['dropped_pages']}; fidelity of {html.escape(obs['fidelity']['policy'])}: "
            f"{obs['fidelity']['agree']} agree, {obs['fidelity']['disagree']} disagree</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
