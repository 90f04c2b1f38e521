"""The replay engine: re-execute balloon and postcopy page events under each policy.

See ``docs/replay.md`` for the contract. Pipeline: learn the address maps, find the postcopy
windows, resolve balloon request directions, normalise page events, then one compiled scan per
policy (``tracetool.replay.kernels``) and vectorised accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyses import qemu_version
from tracetool.memory import small_pages, trim_heap
from tracetool.replay import addresses, balloon, kernels, pages, windows
from tracetool.replay.columns import Columns
from tracetool.replay.model import ALL_POLICIES, CONFLICT_CODES, Kind, Outcome, Policy, State
from tracetool.replay.pages import PAGE_SHIFT
from tracetool.replay.result import PolicyRun, ReplayResult
from tracetool.trace import Trace

KIB4 = 4096


@dataclass
class ReplayOptions:
    policies: tuple[Policy, ...] = ALL_POLICIES
    race_window_ns: int = 0
    memory_map: str | None = None
    host_page_size: int | None = None
    qemu_version: str | None = None  # "X.Y" to override the detected version for Policy.QEMU


def policy_of_version(version: str) -> Policy:
    """The inhibit rule of a QEMU release ("X.Y"): none before 2.5, LISTEN..CLEANUP from 2.5,
    DISCARD..end of postcopy from 5.1."""
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) < (2, 5):
        return Policy.NO_INHIBIT
    if (major, minor) < (5, 1):
        return Policy.INHIBIT
    return Policy.INHIBIT_DISCARD


def qemu_policy(version: str | None, trace: Trace) -> tuple[list[Policy], str]:
    """The policy of a QEMU version (given, else detected from the trace): one candidate, or
    two when the detected range of releases spans a change of rule (the replay then keeps the
    one that predicts QEMU's observed outcome best)."""
    why = "given"
    if version is None:
        v = qemu_version.run(trace)
        version, why = v["exact"], "query-version in the trace"
        if version is None and v["min"]:
            version, why = v["min"], f"detected range {v['min']}..{v['max'] or ''}"
            if v["max"] and policy_of_version(v["max"]) != policy_of_version(v["min"]):
                cands = [policy_of_version(v["min"]), policy_of_version(v["max"])]
                return cands, f"QEMU {v['min']}..{v['max']} (detected range)"
    if version is None:
        return [Policy.INHIBIT_DISCARD], "QEMU version unknown: assumed >= 5.1"
    return [policy_of_version(version)], f"QEMU {version} ({why})"


def _agreement(run: PolicyRun, reqs: balloon.Requests | None) -> int:
    """Inflates with a known observed outcome that ``run`` predicts."""
    if reqs is None or not len(reqs):
        return 0
    known = (reqs.direction == balloon.INFLATE) & (reqs.observed != balloon.OBS_UNKNOWN)
    pred = np.isin(run.outcome, [int(Outcome.APPLIED), int(Outcome.DEFERRED_APPLIED)])
    return int(np.count_nonzero(known & (pred == (reqs.observed == balloon.OBS_APPLIED))))


def _bounds(ws: list[windows.Window], lo: str, hi: str) -> tuple[np.ndarray, np.ndarray]:
    big = np.int64(1) << np.int64(62)
    a = np.array([w.ord.get(lo, big) if w.postcopy else big for w in ws] or [big], np.int64)
    b = np.array([w.ord.get(hi, big) if w.postcopy else big for w in ws] or [big], np.int64)
    return a, b


POLICY_WINDOW = {
    Policy.NO_INHIBIT: ("listen", "end"),  # no window; this is only where conflicts can happen
    Policy.INHIBIT: ("listen", "cleanup"),
    Policy.INHIBIT_DISCARD: ("discard", "state_end"),
    Policy.DEFER: ("listen", "end"),
}


def _outcomes(
    decision: np.ndarray, reqs: balloon.Requests, req_mig: np.ndarray, in_win: np.ndarray
) -> np.ndarray:
    """Outcome of every inflate; a deferred queue is reconciled per 4 KiB page at END: the
    last queued inflate is applied once if the page's last request in the window is an
    inflate, every other queued inflate is cancelled."""
    out = np.full(len(decision), -1, np.int8)
    inflate = reqs.direction == balloon.INFLATE
    out[inflate & (decision == kernels.D_APPLY)] = int(Outcome.APPLIED)
    out[inflate & (decision == kernels.D_DROP)] = int(Outcome.DROPPED)
    queued = inflate & (decision == kernels.D_DEFER)
    if queued.any():
        out[queued] = int(Outcome.CANCELLED)
        # requests (both directions) inside the defer window, by (migration, page, order)
        rel = np.flatnonzero(in_win & (reqs.direction != balloon.UNRESOLVED))
        srt = rel[np.lexsort((reqs.order[rel], reqs.gpa[rel], req_mig[rel]))]
        g_m, g_p = req_mig[srt], reqs.gpa[srt]
        last = np.ones(len(srt), bool)
        last[:-1] = (g_m[1:] != g_m[:-1]) | (g_p[1:] != g_p[:-1])
        last_req = srt[last]
        ok = last_req[reqs.direction[last_req] == balloon.INFLATE]
        out[ok] = int(Outcome.DEFERRED_APPLIED)
    return out


def replay(trace: Trace, options: ReplayOptions | None = None) -> ReplayResult:
    """Replay ``trace`` under ``options`` (see the module docstring)."""
    with small_pages():
        result = _replay(trace, options)
    trim_heap()
    return result


def _replay(trace: Trace, options: ReplayOptions | None = None) -> ReplayResult:
    opts = options or ReplayOptions()
    cols = Columns(trace)  # numpy columns shared by the steps (each converted once)
    order = windows.Order(trace, cols)
    ws = windows.find_windows(trace, order, cols)
    advise = np.array([w.ord["advise"] for w in ws], np.int64)

    def mig_of_lines(lines: np.ndarray) -> np.ndarray:
        if not len(advise):
            return np.zeros(len(lines), np.int64)
        return np.searchsorted(advise, order.of_lines(lines), side="right") - 1  # -1: before

    amap = addresses.learn(trace, opts.memory_map, opts.host_page_size, mig_of_lines, cols)
    threads = balloon.ThreadOrder(trace, cols)
    reqs = balloon.resolve(trace, order.of_lines, threads)
    pe, info = pages.build(trace, amap, order, ws, reqs, threads, cols)
    n_req = len(reqs) if reqs is not None else 0
    if n_req and reqs.discard_traced:
        _unknown_on_large_pages(reqs, pe, amap)

    advise_ords = np.array([w.ord["advise"] for w in ws], np.int64)
    mig_of = lambda o: np.searchsorted(advise_ords, o, side="right") - 1  # noqa: E731
    pe_mig = mig_of(pe.order) if len(ws) else np.full(len(pe), -1, np.int64)
    req_mig = mig_of(reqs.order) if (len(ws) and n_req) else np.full(n_req, -1, np.int64)
    conf_lo, conf_hi = _bounds(ws, "listen", "end")
    loads_traced = "ram_load_loop" in trace
    reset_state = int(State.ABSENT) if loads_traced else int(State.UNKNOWN)
    nxt = kernels.next_place(pe.page, pe.kind)
    nxt_is_place = kernels.next_is_place(pe.page, pe.kind)
    refault, double = kernels.anomalies(pe.page, pe.kind, reset_state)

    cands, qwhy = qemu_policy(opts.qemu_version, trace)
    # Without timestamps there is no race window: a later placement is an arrival (-1).
    race_ns = int(opts.race_window_ns) if order.ts_sorted is not None else -1

    pe_ts = pe.ts  # gathered once for the runs, not kept by the result

    def run_policy(pol: Policy, eff: Policy) -> PolicyRun:
        lo_m, hi_m = _bounds(ws, *POLICY_WINDOW[eff])
        if n_req:
            in_win = (
                (req_mig >= 0)
                & (reqs.order >= lo_m[np.maximum(req_mig, 0)])
                & (reqs.order < hi_m[np.maximum(req_mig, 0)])
            )
        else:
            in_win = np.zeros(0, bool)
        decision = np.zeros(n_req, np.int8)
        if eff in (Policy.INHIBIT, Policy.INHIBIT_DISCARD):
            decision[in_win] = kernels.D_DROP
        elif eff is Policy.DEFER:
            decision[in_win] = kernels.D_DEFER
        out = kernels.replay(
            pe.page, pe.order, pe.kind, pe.req, pe_ts, pe_mig, conf_lo, conf_hi, decision, nxt,
            nxt_is_place, reset_state, race_ns, n_req,
        )  # fmt: skip
        outcome = _outcomes(decision, reqs, req_mig, in_win) if n_req else np.zeros(0, np.int8)
        cclass, related, refault_exp, refill_at = out
        if len(pe) < (1 << 31):  # a page-event index (or -1)
            related = related.astype(np.int32)
        return PolicyRun(
            pol, eff, in_win, decision, outcome, cclass, related, refault_exp, refill_at
        )

    qpol = cands[0]
    if len(cands) > 1:  # the detected releases span a change of rule: QEMU's outcome decides
        score = {c: _agreement(run_policy(Policy.QEMU, c), reqs) for c in cands}
        if any(score.values()):
            qpol = max(cands, key=lambda c: score[c])  # ties: the older rule
            qwhy += "; " + ", ".join(f"{c.value} predicts {n:,}" for c, n in score.items())
            qwhy += " observed outcomes"
        else:
            qwhy += f"; no observed outcome to choose by: assumed {qpol.value}"
    runs: dict[str, PolicyRun] = {}
    wanted = list(opts.policies)
    if Policy.QEMU not in wanted and qpol not in wanted:
        wanted.append(Policy.QEMU)  # always: the observed outcome's fidelity needs it
    for pol in wanted:
        key = pol.value if pol in opts.policies else "_qemu"
        runs[key] = run_policy(pol, qpol if pol is Policy.QEMU else pol)
    _share_identical(list(runs.values()))
    order.release()  # the Columns cache and the sort go with it

    return ReplayResult(
        trace=trace, options=opts, order=order, windows=ws, address_map=amap, requests=reqs,
        page_events=pe, info=info, runs=runs, refault=refault, double_place=double,
        qemu_policy=qpol, qemu_policy_why=qwhy, conf_bounds=(conf_lo, conf_hi),
    )  # fmt: skip


def _share_identical(runs: list[PolicyRun]) -> None:
    """Policies often agree on whole per-request arrays (e.g. every refill order): a run keeps
    an earlier run's array instead of its own equal copy."""
    # type(run), not the name: benchmarks/bench_replay.py wraps engine.PolicyRun to time it
    for f in type(runs[0]).ARRAYS if runs else ():
        kept: list[np.ndarray] = []
        for run in runs:
            a = getattr(run, f)
            same = next((k for k in kept if k.dtype == a.dtype and np.array_equal(k, a)), None)
            if same is None:
                kept.append(a)
            else:
                setattr(run, f, same)


def _unknown_on_large_pages(reqs: balloon.Requests, pe, amap) -> None:
    """A 4 KiB inflate on a larger host page (hugetlbfs) is discarded only once its whole host
    page is in the balloon (QEMU tracks partially ballooned host pages), so the absence of a
    discard after it does not mean it was dropped: observed becomes unknown."""
    sel = pe.req >= 0
    if not sel.any() or not len(amap.names()):
        return
    large = amap.page_sizes()[pe.page[sel] // PAGE_SHIFT] > KIB4
    r = pe.req[sel][large]
    reqs.observed[r[reqs.observed[r] == balloon.OBS_DROPPED]] = balloon.OBS_UNKNOWN


__all__ = ["ReplayOptions", "replay", "Kind", "Outcome", "CONFLICT_CODES", "KIB4"]
