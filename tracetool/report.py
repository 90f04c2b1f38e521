"""``tracetool report``: one self-contained HTML file about a trace, to attach to a bug report.

Images are embedded as base64 PNG data URIs and the style sheet is inline: the file needs
nothing else. Every string that came from the trace is escaped (:func:`tracetool.display.esc`).
"""

from __future__ import annotations

import base64
import io
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from analyses.base import AnalysisResult, MissingAnalysisEvents
from tracetool.display import dict_html, esc, result_html, table_html
from tracetool.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tracetool.trace import Trace

#: Conflict rows shown in the report (all of them are in ``tracetool replay --conflicts-out``).
TOP_CONFLICTS = 50
#: Phase rows shown: all of them in any real trace (the final state is the row that matters).
TOP_PHASES = 500
TOP_REJECTED = 20

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}caption{text-align:left;font-weight:bold;padding:.3em 0}
img{max-width:100%;display:block;margin:.6em 0}.skip{color:#a33}
"""


class Section(str, Enum):
    """The report's sections (the value is the HTML id)."""

    SUMMARY = "summary"
    PHASES = "phases"
    POSTCOPY_FAULTS = "postcopy-faults"
    BALLOON = "balloon"
    POLICIES = "policies"
    CONFLICTS = "conflicts"
    QMP = "qmp-check"
    SKIPPED = "skipped"


TITLES = {
    Section.SUMMARY: "Summary",
    Section.PHASES: "Migration phases",
    Section.POSTCOPY_FAULTS: "Postcopy faults",
    Section.BALLOON: "Balloon",
    Section.POLICIES: "Inhibit policies",
    Section.CONFLICTS: "Balloon x postcopy conflicts",
    Section.QMP: "QEMU's own figures (QMP query-migrate) beside tracetool's",
    Section.SKIPPED: "Skipped analyses",
}
#: Analysis shown in each section, and the figures drawn there.
ANALYSIS = {
    Section.PHASES: ("phases", ("timeline",)),
    Section.POSTCOPY_FAULTS: ("postcopy_faults", ("latency_histogram", "latency_cdf")),
    Section.BALLOON: ("balloon", ()),
    Section.POLICIES: ("policies", ("reclaimed",)),
    Section.CONFLICTS: ("conflicts_map", ("conflicts_map",)),
}


def png_data_uri(fig: Figure) -> str:
    """``fig`` as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig: Figure, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="{png_data_uri(fig)}">'


def _summary(trace: Trace) -> str:
    from analyses import summary

    s = summary.run(trace)
    v = s["qemu_version"]
    version = v.get("exact") or (
        f"{v.get('min') or '?'} .. {v.get('max') or '?'}"
        if v.get("min") or v.get("max")
        else "unknown"
    )
    facts = {
        "file": s["path"],
        "format": s["format"] + (f" ({s['compression']})" if s["compression"] else ""),
        "line shape": s["line_shape"],
        "QEMU version": version,
        "side": s["side"],
        "lines": f"{s['lines']:,} = {s['events']:,} events + {s['other_lines']:,} other + "
        f"{s['rejected_lines']:,} rejected" + ("" if s["balanced"] else " (do NOT add up)"),
        "time span": "-" if s["span_s"] is None else f"{s['span_s']:.3f} s",
        "event names": s["event_names"],
    }
    if s.get("dropped_events"):
        facts["dropped by the tracer"] = s["dropped_events"]
    if s.get("input_damage"):
        facts["input damage"] = s["input_damage"]
    import pyarrow as pa

    top = pa.table(
        {
            "event": [r["event"] for r in s["top_events"]],
            "records": [r["count"] for r in s["top_events"]],
        }
    )
    out = dict_html(facts) + table_html(top, len(top), caption="Top events")
    if trace.rejected.num_rows:
        rej = trace.rejected.select(["line", "reason", "text"])
        out += table_html(rej, TOP_REJECTED, caption="Rejected lines")
    return out


def _analysis_section(trace: Trace, section: Section, skipped: dict[str, str]) -> str:
    from tracetool import plots

    name, figs = ANALYSIS[section]
    try:
        res: AnalysisResult = trace.analyses.result(name)
    except MissingAnalysisEvents as exc:
        skipped[name] = exc.message
        return f'<p class="skip">Not in this trace: {esc(exc.message)}</p>'
    limit = {Section.CONFLICTS: TOP_CONFLICTS, Section.PHASES: TOP_PHASES}.get(section, 10)
    body = result_html(res, limit, every_table=True)
    for fn in figs:
        body += _img(getattr(plots, fn)(trace), f"{fn.replace('_', ' ')} figure")
    return body


def _qmp_section(trace: Trace, qmp_log: str | Path) -> str:
    """The cross-check of ``analyze --qmp-log`` as a table (figure, side, QEMU, ours, diff)."""
    import pyarrow as pa

    from analyses import summary
    from tracetool.fault_report import fault_json, qmp_json

    s = summary.run(trace)
    s.update(fault_json(trace))
    check = qmp_json(trace, s, Path(qmp_log))
    rows = check["rows"]
    if not rows:
        return f"<p>No query-migrate reply of this trace's side in {esc(str(qmp_log))}.</p>"
    cols = ("figure", "side", "qemu", "ours", "diff", "diff_pct", "compared_with", "note")
    table = pa.table({c: [None if r.get(c) is None else str(r[c]) for r in rows] for c in cols})
    return f"<p>QMP log: {esc(str(qmp_log))}</p>" + table_html(table, len(rows))


def render(trace: Trace, qmp_log: str | Path | None = None) -> str:
    """The report as an HTML string (with the QMP cross-check when ``qmp_log`` is given)."""
    skipped: dict[str, str] = {}
    parts = [
        f'<section id="{Section.SUMMARY.value}"><h2>{TITLES[Section.SUMMARY]}</h2>'
        f"{_summary(trace)}</section>"
    ]
    for section in ANALYSIS:
        body = _analysis_section(trace, section, skipped)
        parts.append(f'<section id="{section.value}"><h2>{TITLES[section]}</h2>{body}</section>')
    if qmp_log is not None:
        body = _qmp_section(trace, qmp_log)
        parts.append(
            f'<section id="{Section.QMP.value}"><h2>{TITLES[Section.QMP]}</h2>{body}</section>'
        )
    rows = "".join(f"<li><strong>{esc(n)}</strong>: {esc(m)}</li>" for n, m in skipped.items())
    parts.append(
        f'<section id="{Section.SKIPPED.value}"><h2>{TITLES[Section.SKIPPED]}</h2>'
        + (f"<ul>{rows}</ul>" if rows else "<p>None: every analysis ran.</p>")
        + "</section>"
    )
    title = f"tracetool report - {Path(trace.path).name}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>{''.join(parts)}</body></html>\n"
    )


def write_report(trace: Trace, path: str | Path, qmp_log: str | Path | None = None) -> Path:
    """Write the report of ``trace`` to ``path`` (one self-contained HTML file); ``qmp_log``
    adds QEMU's own figures from a QMP log beside tracetool's."""
    path = Path(path)
    text = render(trace, qmp_log)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report: {exc.strerror}", path=str(path)) from None
    return path
