"""Figures of a migration: timeline, fault latency, memory reclaimed per policy, conflicts map.

Every function takes a :class:`~tracetool.trace.Trace`, reads the analyses it needs through
``trace.analyses.result(...)`` and returns a :class:`matplotlib.figure.Figure` drawn on the Agg
canvas (no display needed, nothing registered with pyplot). Times are seconds relative to the
start of migration (the analyses' ``t_rel_s``). A function whose analysis cannot run raises
:class:`analyses.base.MissingAnalysisEvents`; :func:`write_plots` skips it with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analyses.base import AnalysisResult, MissingAnalysisEvents
from analyses.phases import PHASE_MARKERS
from tracetool.errors import UsageError
from tracetool.replay.model import ConflictClass

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from tracetool.trace import Trace

MIB = 2**20
GIB = 2**30
BALLOON_PAGE = 4096  # virtio-balloon pages are 4 KiB whatever the host page size
DPI = 110
#: Colour of each conflict class (the same in every figure).
CLASS_COLOURS = {
    ConflictClass.DISCARD_AFTER_PLACE.value: "#d62728",
    ConflictClass.DISCARD_IN_FLIGHT.value: "#ff7f0e",
    ConflictClass.DISCARD_BEFORE_ARRIVAL.value: "#9467bd",
}
STATE_COLOURS = {
    "setup": "#c7c7c7",
    "active": "#aec7e8",
    "pre-switchover": "#dbdb8d",
    "device": "#f7b6d2",
    "postcopy-active": "#ffbb78",
    "postcopy-paused": "#ff9896",
    "postcopy-recover": "#c5b0d5",
    "completed": "#98df8a",
    "failed": "#d62728",
    "cancelled": "#7f7f7f",
}
_SPARE = ("#9edae5", "#c49c94", "#e377c2", "#bcbd22", "#17becf", "#8c564b", "#1f77b4")
POSTCOPY_STATE = "postcopy-active"
#: Postcopy phase markers in the phases table (drawn as ticks, not states).
MARKERS = frozenset(PHASE_MARKERS.values())


class PlotKind(str, Enum):
    """The figures :func:`write_plots` writes (file stem = value)."""

    TIMELINE = "timeline"
    LATENCY_HISTOGRAM = "latency-histogram"
    LATENCY_CDF = "latency-cdf"
    RECLAIMED = "reclaimed"
    CONFLICTS_MAP = "conflicts-map"


# -- helpers -------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _single(trace: Trace, size: tuple[float, float], title: str, xlabel: str, ylabel: str):
    """A figure with one axes, titled with the trace's file name, and its axis labels."""
    fig = _figure(*size)
    ax = fig.subplots()
    ax.set_title(f"{title} - {Path(trace.path).name}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def _result(trace: Trace, name: str) -> AnalysisResult:
    return trace.analyses.result(name)


def _optional(trace: Trace, name: str) -> AnalysisResult | None:
    try:
        return _result(trace, name)
    except MissingAnalysisEvents:
        return None


def _np(table: pa.Table, column: str, dtype: type = np.float64) -> np.ndarray:
    """A column as numpy, nulls as NaN (floats) or 0."""
    col = table[column]
    if dtype is np.float64:
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(dtype)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _bin_edges(t: np.ndarray, target: int = 150) -> np.ndarray:
    """Edges of about ``target`` bins over ``t`` with a round width (1, 2 or 5 x 10^k s)."""
    t = t[np.isfinite(t)]
    lo, hi = (float(t.min()), float(t.max())) if len(t) else (0.0, 1.0)
    span = max(hi - lo, 1e-6)
    raw = span / target
    k = math.floor(math.log10(raw))
    width = min((m * 10**k for m in (1, 2, 5, 10) if m * 10**k >= raw), default=10 ** (k + 1))
    start = math.floor(lo / width) * width
    return np.arange(start, hi + width * 1.0001, width)


def _rate(t: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``weights`` per bin divided by the bin width: (bin starts, rate per second)."""
    ok = np.isfinite(t)
    counts, _ = np.histogram(t[ok], bins=edges, weights=weights[ok])
    return edges[:-1], counts / np.diff(edges)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A string column as integer codes and the distinct values, in order of first appearance."""
    enc = pc.dictionary_encode(pc.cast(column, pa.string()).combine_chunks())
    return enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist()


def _phase_colour(state: str, spare: dict[str, str]) -> str:
    if state in STATE_COLOURS:
        return STATE_COLOURS[state]
    return spare.setdefault(state, _SPARE[len(spare) % len(_SPARE)])


def _state_spans(phases: AnalysisResult | None) -> list[tuple[str, str, float, float]]:
    """(row label, state, start s, end s) of every migration state (markers left out); a
    state lasts until the next state of its migration and side (the last one: NaN)."""
    if phases is None or not phases.tables["phases"].num_rows:
        return []
    t = phases.tables["phases"]
    out: list[tuple[str, str, float, float]] = []
    last: dict[str, int] = {}
    for side, mig, state, t0 in zip(t["side"].to_pylist(), t["migration"].to_pylist(),
                                    t["state"].to_pylist(), _np(t, "t_rel_s"), strict=True):  # fmt: skip
        if state in MARKERS:
            continue
        row = f"{side} #{mig}"
        if row in last:
            r, st, s0, _ = out[last[row]]
            out[last[row]] = (r, st, s0, t0)
        last[row] = len(out)
        out.append((row, str(state), t0, math.nan))
    return out


def _postcopy_spans(phases: AnalysisResult | None) -> list[tuple[float, float]]:
    """(start, end) seconds of every postcopy-active state."""
    return [(s0, s1) for _, st, s0, s1 in _state_spans(phases) if st == POSTCOPY_STATE]


def _shade(axes: Iterable[Axes], spans: list[tuple[float, float]]) -> None:
    for ax in axes:
        for lo, hi in spans:
            ax.axvspan(lo, hi, color=STATE_COLOURS[POSTCOPY_STATE], alpha=0.25, lw=0)


# -- figures -------------------------------------------------------------------------------
def timeline(trace: Trace) -> Figure:
    """Phases as bands (one row per migration and side), conflicts as marks (one row per
    policy), balloon inflate/deflate and postcopy page rates below, postcopy shaded."""
    phases = _optional(trace, "phases")
    balloon = _optional(trace, "balloon")
    faults = _optional(trace, "postcopy_faults")
    conflicts = _optional(trace, "conflicts_map")
    if phases is balloon is faults is conflicts is None:
        _result(trace, "phases")  # raises MissingAnalysisEvents with the phases' needs
    fig = _figure(11, 7.5)
    ax_ph, ax_bl, ax_pc = fig.subplots(3, 1, sharex=True, height_ratios=[1.2, 1, 1])
    fig.suptitle(f"Migration timeline - {Path(trace.path).name}")
    ax_pc.set_xlabel("time since migration start (s)")

    rows: list[str] = []
    seen: dict[str, object] = {}
    _draw_phases(ax_ph, phases, rows, seen)
    if conflicts is not None and conflicts.tables["conflicts"].num_rows:
        t = conflicts.tables["conflicts"]
        pol, pol_names = _codes(t["policy"])
        cls, cls_names = _codes(t["class"])
        when = _np(t, "t_rel_s")
        rows += [f"conflicts: {p}" for p in pol_names]
        y = (len(rows) - len(pol_names) + pol).astype(np.float64)  # row of each conflict
        for i, c in enumerate(cls_names):
            sel = cls == i
            art = ax_ph.scatter(
                when[sel], y[sel], marker="|", s=120, color=CLASS_COLOURS.get(c, "k")
            )
            seen.setdefault(f"conflict {c}", art)
    ax_ph.set_yticks(range(len(rows)), rows)
    ax_ph.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax_ph.invert_yaxis()
    ax_ph.set_title("Migration phases and balloon x postcopy conflicts", fontsize="medium")
    if seen:
        ax_ph.legend(seen.values(), seen.keys(), loc="upper left", bbox_to_anchor=(1.01, 1),
                     fontsize="small", frameon=False)  # fmt: skip
    else:
        _note(ax_ph, "no migration phases in this trace")

    times = [r.tables[k]["t_rel_s"] for r, k in ((balloon, "timeline"), (faults, "rate")) if r]
    all_t = np.concatenate([pc.cast(c, pa.float64()).to_numpy(zero_copy_only=False)
                            for c in times] or [np.zeros(0)])  # fmt: skip
    edges = _bin_edges(all_t)
    width = edges[1] - edges[0]
    ax_bl.set_ylabel("balloon (MiB/s)")
    ax_bl.set_title(f"Balloon inflate and deflate ({width:g} s bins)", fontsize="medium")
    if balloon is not None and balloon.tables["timeline"].num_rows:
        t = balloon.tables["timeline"]
        tt = _np(t, "t_rel_s")
        for col, colour in (("inflate_pages", "#1f77b4"), ("deflate_pages", "#2ca02c")):
            x, r = _rate(tt, _np(t, col) * BALLOON_PAGE / MIB, edges)
            ax_bl.step(x, r, where="post", color=colour, label=col.replace("_pages", ""))
        ax_bl.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    else:
        _note(ax_bl, "no balloon requests" if balloon else "balloon events not traced")
    ax_pc.set_ylabel("host pages/s")
    ax_pc.set_title("Postcopy page requests and placements", fontsize="medium")
    if faults is not None and faults.tables["rate"].num_rows:
        t = faults.tables["rate"]
        tt = _np(t, "t_rel_s")
        # requests on top, dashed: demand placements follow them closely and would hide them
        for col, colour, ls, z in (("placed_background", "#7f7f7f", "-", 2),
                                   ("placed_demand", "#ff7f0e", "-", 2),
                                   ("requests", "#d62728", "--", 3)):  # fmt: skip
            if col in t.column_names:
                x, r = _rate(tt, _np(t, col), edges)
                ax_pc.step(x, r, where="post", color=colour, ls=ls, zorder=z,
                           label=col.replace("_", " "))  # fmt: skip
        ax_pc.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    else:
        _note(ax_pc, "no postcopy page traffic" if faults else "postcopy page events not traced")
    _shade((ax_bl, ax_pc), _postcopy_spans(phases))
    return fig


def _draw_phases(ax: Axes, phases: AnalysisResult | None, rows: list[str], seen: dict) -> None:
    """States as bars (one row per migration and side), postcopy markers as labelled ticks."""
    spare: dict[str, str] = {}
    for row, state, s0, s1 in _state_spans(phases):
        if row not in rows:
            rows.append(row)
        y = rows.index(row)
        colour = _phase_colour(state, spare)
        if np.isfinite(s1) and s1 > s0:
            art = ax.broken_barh([(s0, s1 - s0)], (y - 0.35, 0.7), color=colour, ec="0.3", lw=0.5)
        else:
            (art,) = ax.plot([s0, s0], [y - 0.4, y + 0.4], color=colour, lw=3)
        seen.setdefault(state, art)
    if phases is None:
        return
    t = phases.tables["phases"]
    t = t.filter(pc.is_in(t["state"], pa.array(sorted(MARKERS))))
    if not t.num_rows:
        return
    when = _np(t, "t_rel_s")
    span = max(float(np.nanmax(when) - np.nanmin(when)), 1e-9)
    last_label = -math.inf
    for side, mig, state, t0 in zip(t["side"].to_pylist(), t["migration"].to_pylist(),
                                    t["state"].to_pylist(), when, strict=True):  # fmt: skip
        row = f"{side} #{mig} postcopy"
        if row not in rows:
            rows.append(row)
        y = rows.index(row)
        (art,) = ax.plot([t0, t0], [y - 0.3, y + 0.3], color="0.35", lw=1)
        seen.setdefault("postcopy marker", art)
        if t0 - last_label > 0.04 * span:  # label only markers that do not overlap
            right = t0 > np.nanmin(when) + 0.8 * span  # late markers: label to the left
            ax.annotate(state, (t0, y - 0.3), xytext=(-2 if right else 2, 0),
                        textcoords="offset points", ha="right" if right else "left",
                        fontsize="x-small", rotation=20 if not right else -20, va="bottom",
                        clip_on=True)  # fmt: skip
            last_label = t0


def _latency(trace: Trace) -> tuple[AnalysisResult, np.ndarray]:
    res = _result(trace, "postcopy_faults")
    lat = _np(res.tables["requests"], "latency_us")
    return res, lat[np.isfinite(lat)]


def latency_histogram(trace: Trace) -> Figure:
    """Request -> placement latency of postcopy remote faults in power-of-two microsecond
    buckets (the shape of QEMU's ``postcopy-latency-dist``)."""
    res = _result(trace, "postcopy_faults")
    h = res.tables["histogram"]
    fig, ax = _single(
        trace,
        (8, 4.5),
        "Postcopy fault latency (request -> placement)",
        "latency (µs, log2 buckets)",
        "host pages",
    )
    lo, hi, n = _np(h, "lo_us"), _np(h, "hi_us"), _np(h, "count")
    keep = n > 0
    if keep.any():
        lo = np.where(lo > 0, lo, hi / 2)  # the [0, 1) bucket drawn as [0.5, 1) on a log axis
        ax.bar(lo[keep], n[keep], width=(hi - lo)[keep], align="edge", color="#1f77b4",
               ec="white", label=f"{int(n.sum()):,} resolved requests")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.legend(frameon=False)
    else:
        _note(ax, "no resolved page requests in this trace")
    return fig


def latency_cdf(trace: Trace) -> Figure:
    """Cumulative distribution of request -> placement latency, p50/p90/p99 marked."""
    res, lat = _latency(trace)
    fig, ax = _single(
        trace, (8, 4.5), "Postcopy fault latency CDF", "latency (µs)", "fraction of requests"
    )
    if len(lat):
        x = np.sort(lat)
        y = np.arange(1, len(x) + 1) / len(x)
        ax.step(x, y, where="post", color="#1f77b4", label=f"{len(x):,} requests")
        for key, ls in (("p50_us", ":"), ("p90_us", "--"), ("p99_us", "-.")):
            v = res.summary.get(key)
            if v is not None:
                ax.axvline(v, color="#d62728", ls=ls, label=f"{key[:-3]} {v:,.0f} µs")
        if x.min() > 0:
            ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False, loc="upper left")
    else:
        _note(ax, "no resolved page requests in this trace")
    return fig


def reclaimed(trace: Trace) -> Figure:
    """Memory the balloon gives back to the host over time under each replayed policy."""
    res = _result(trace, "policies")
    t = res.tables["reclaimed"]
    fig, ax = _single(
        trace,
        (9, 4.5),
        "Memory reclaimed by the balloon under each policy",
        "time since migration start (s)",
        "reclaimed (MiB)",
    )
    pol = pc.cast(t["policy"], pa.string())
    styles = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
    for i, p in enumerate(pc.unique(pol).to_pylist()):  # overlapping policies stay visible
        sel = t.filter(pc.equal(pol, p))
        ax.step(_np(sel, "t_rel_s"), _np(sel, "reclaimed_bytes") / MIB, where="post", label=p,
                ls=styles[i % len(styles)], lw=2.2 - 0.3 * (i % 4))  # fmt: skip
    if t.num_rows:
        ax.legend(frameon=False, title="policy")
    else:
        _note(ax, "no balloon inflate applied under any policy")
    _shade([ax], _postcopy_spans(_optional(trace, "phases")))
    return fig


def conflicts_map(trace: Trace) -> Figure:
    """Conflicting pages over the guest-physical address space: when (top) and how many per
    region (bottom), coloured by conflict class."""
    res = _result(trace, "conflicts_map")
    fig = _figure(10, 6.5)
    ax_t, ax_n = fig.subplots(2, 1, sharex=True)
    fig.suptitle(f"Balloon x postcopy conflicts over guest memory - {Path(trace.path).name}")
    c = res.tables["conflicts"]
    c = c.filter(pc.is_valid(c["gpa"]))
    ax_t.set_ylabel("time since migration start (s)")
    ax_n.set_ylabel("conflicting pages")
    ax_n.set_xlabel("guest-physical address (GiB)")
    markers = dict(zip(pc.unique(c["policy"]).to_pylist(), "oxs^vD", strict=False))
    cls = pc.cast(c["class"], pa.string())
    for k in pc.unique(cls).to_pylist():
        for p, m in markers.items():
            sel = c.filter(pc.and_(pc.equal(cls, k), pc.equal(c["policy"], p)))
            if sel.num_rows:
                ax_t.scatter(_np(sel, "gpa") / GIB, _np(sel, "t_rel_s"), marker=m, s=18,
                             color=CLASS_COLOURS.get(k, "k"), label=f"{k} ({p})")  # fmt: skip
    _region_bars(ax_n, res.tables["by_region"])
    ax_t.ticklabel_format(axis="y", useOffset=False)
    ax_n.set_xlim(0, _gpa_end(trace, c) / GIB)
    if c.num_rows:
        ax_t.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        _note(ax_t, "no conflicting pages under any replayed policy")
    return fig


def _gpa_end(trace: Trace, conflicts: pa.Table) -> float:
    """End of guest RAM in the replay's GPA map (else just past the last conflict)."""
    gpa_map = trace.replay().summary["address_map"]["gpa_map"]
    ends = [int(str(m["gpa_end"]), 0) for m in gpa_map]
    last = float(pc.max(conflicts["gpa"]).as_py() or 0) + 4096 if conflicts.num_rows else 0.0
    return float(max([*ends, last])) or float(GIB)


def _region_bars(ax: Axes, by_region: pa.Table) -> None:
    """Pages per address region of the policy with the most conflicts, stacked by class."""
    if not by_region.num_rows:
        return
    pol = pc.cast(by_region["policy"], pa.string())
    per = by_region.group_by("policy").aggregate([("pages", "sum")])
    worst = per["policy"][int(np.argmax(_np(per, "pages_sum")))].as_py()
    r = by_region.filter(pc.equal(pol, worst))
    lo, hi = _np(r, "gpa_lo"), _np(r, "gpa_hi")
    regions, inv = np.unique(lo, return_inverse=True)
    width = np.zeros(len(regions))
    width[inv] = (hi - lo) / GIB
    cls = np.asarray(pc.cast(r["class"], pa.string()).to_pylist(), dtype=object)
    pages = _np(r, "pages")
    bottom = np.zeros(len(regions))
    for k in dict.fromkeys(cls):
        sel = cls == k
        n = np.bincount(inv[sel], weights=pages[sel], minlength=len(regions))
        ax.bar(regions / GIB, n, width=width, bottom=bottom, align="edge",
               color=CLASS_COLOURS.get(k, "k"), label=k)  # fmt: skip
        bottom += n
    ax.set_title(f"Conflicting pages per address region, policy {worst}", fontsize="medium")
    ax.legend(frameon=False, fontsize="small", title="class", loc="upper left",
              bbox_to_anchor=(1.01, 1))  # fmt: skip


PLOTS: dict[PlotKind, Callable[[Trace], Figure]] = {
    PlotKind.TIMELINE: timeline,
    PlotKind.LATENCY_HISTOGRAM: latency_histogram,
    PlotKind.LATENCY_CDF: latency_cdf,
    PlotKind.RECLAIMED: reclaimed,
    PlotKind.CONFLICTS_MAP: conflicts_map,
}


def figures(trace: Trace, skipped: dict[str, str] | None = None) -> dict[PlotKind, Figure]:
    """Every figure the trace has data for; ``skipped`` receives ``{kind: reason}`` for the
    others (the missing-events message of the analysis)."""
    out: dict[PlotKind, Figure] = {}
    for kind, fn in PLOTS.items():
        try:
            out[kind] = fn(trace)
        except MissingAnalysisEvents as exc:
            if skipped is not None:
                skipped[kind.value] = exc.message
    return out


def write_plots(
    trace: Trace, outdir: str | Path, svg: bool = False, skipped: dict[str, str] | None = None
) -> list[Path]:
    """Write each figure as ``OUTDIR/<kind>.png`` (and ``.svg``); returns the paths written.
    Figures whose analysis cannot run are left out, their reason put in ``skipped``."""
    outdir = Path(outdir)
    paths: list[Path] = []
    path = outdir
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for kind, fig in figures(trace, skipped).items():
            for ext in ("png", "svg") if svg else ("png",):
                path = outdir / f"{kind.value}.{ext}"
                fig.savefig(path, format=ext)
                paths.append(path)
    except OSError as exc:
        raise UsageError(f"cannot write the figure: {exc.strerror}", path=str(path)) from None
    return paths


class Plots:
    """``trace.plot``: each figure as a method returning a matplotlib Figure."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace

    def timeline(self) -> Figure:
        return timeline(self._trace)

    def latency_histogram(self) -> Figure:
        return latency_histogram(self._trace)

    def latency_cdf(self) -> Figure:
        return latency_cdf(self._trace)

    def reclaimed(self) -> Figure:
        return reclaimed(self._trace)

    def conflicts_map(self) -> Figure:
        return conflicts_map(self._trace)

    def write(self, outdir: str | Path, svg: bool = False) -> list[Path]:
        return write_plots(self._trace, outdir, svg=svg)

    def __repr__(self) -> str:
        return f"<plots: {', '.join(k.name.lower() for k in PlotKind)}>"
