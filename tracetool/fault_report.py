"""``tracetool analyze``: the postcopy fault latency section and the QMP cross-check (JSON and
text)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from tracetool.trace import Trace


def fault_json(t: Trace) -> dict:
    """``{"postcopy_faults": summary}``, or null and ``postcopy_faults_missing`` (why)."""
    from analyses import MissingAnalysisEvents, run

    try:
        return {"postcopy_faults": run("postcopy_faults", t).summary}
    except MissingAnalysisEvents as exc:
        return {"postcopy_faults": None, "postcopy_faults_missing": exc.message}


def qmp_json(t: Trace, s: dict, qmp_log: Path) -> dict:
    """``analyze --json``'s ``qmp_check`` for a trace whose summary is ``s``."""
    from analyses import MissingAnalysisEvents, qmp, run

    try:
        phases = run("phases", t).summary
    except MissingAnalysisEvents:
        phases = None
    served = (s.get("postcopy") or {}).get("requests_served_by_source") or None
    return qmp.check(qmp_log, s.get("postcopy_faults"), phases, s["side"], served)


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else f"{v:,}"


def _dur(us: float | None) -> str:
    """A latency in the unit that reads best: µs below 1 ms, ms below 10 s, else s."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:,.1f} µs"
    return f"{us / 1000:,.1f} ms" if us < 10_000_000 else f"{us / 1e6:,.2f} s"


def print_faults(out: Console, s: dict) -> None:
    """The fault latency lines and, when asked for, the QMP comparison table."""
    f = s.get("postcopy_faults")
    if f:
        out.print(
            f"[bold]Postcopy fault latency[/bold] ({f['method']}): {f['requests']:,} pages "
            f"requested, {f['resolved']:,} resolved; p50 {_dur(f['p50_us'])}, "
            f"p90 {_dur(f['p90_us'])}, p99 {_dur(f['p99_us'])}, max {_dur(f['max_us'])}",
            highlight=False,
        )
        if f.get("blocktime_ms") is not None:
            per = ", ".join(
                f"vCPU {c}: {_num(ms)} ms"
                for c, ms in (f.get("per_cpu_blocktime_ms") or {}).items()
            )
            out.print(
                f"  vCPU blocktime {_num(f['blocktime_ms'])} ms ({per}); QEMU's own total "
                f"for the run (cleanup_blocktime) {_num(f['qemu_blocktime_ms'])} ms",
                highlight=False,
            )
    elif s.get("postcopy_faults_missing"):
        out.print(f"  no fault latency: {s['postcopy_faults_missing']}", highlight=False)
    c = s.get("qmp_check")
    if not c:
        return
    t = Table(title=f"QMP query-migrate vs this trace ({c['qmp_log']})", title_justify="left")
    for col in ("figure", "side", "QEMU", "tracetool", "diff", "diff %", "compared with"):
        t.add_column(
            col, justify="right" if col in ("QEMU", "tracetool", "diff", "diff %") else "left"
        )
    for r in c["rows"]:
        t.add_row(
            r["figure"], r["side"], _num(r["qemu"]) if not isinstance(r["qemu"], str) else r["qemu"],
            _num(r["ours"]) if not isinstance(r["ours"], str) else r["ours"],
            _num(r["diff"]), _num(r["diff_pct"]), r["compared_with"],
        )  # fmt: skip
    out.print(t)
    if not c["rows"]:
        out.print("  no query-migrate reply in the QMP log", highlight=False)
