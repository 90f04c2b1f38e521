"""HTML fragments for notebooks and the report: tables and summaries, every string escaped.

Everything that came from a trace (event names, arguments, paths, rejected lines) is untrusted:
it goes through :func:`esc` before it reaches HTML.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from analyses.base import AnalysisResult
    from tracetool.trace import Trace

#: Rows shown by default when a table is rendered.
HEAD = 10


def esc(value: object) -> str:
    """``value`` as escaped HTML text (quotes too: safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


#: Columns printed in hexadecimal (addresses, and RAMBlock offsets as QEMU prints them).
HEX_COLUMNS = frozenset({"hva", "gpa", "gpa_lo", "gpa_hi", "host", "host_addr", "offset"})


def _cell(value: Any, column: str = "") -> str:
    """A value as text: addresses in hex, timestamps as plain digits, counts with commas."""
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e15 else f"{value:.6e}"
    if isinstance(value, int) and not isinstance(value, bool):
        if column in HEX_COLUMNS:
            return hex(value)
        return str(value) if column.endswith("_ns") and abs(value) > 1 << 40 else f"{value:,}"
    return "" if value is None else str(value)


def table_html(table: pa.Table, limit: int = HEAD, caption: str | None = None) -> str:
    """The first ``limit`` rows of ``table`` as an HTML table, with the row count."""
    head = table.slice(0, limit).to_pylist()
    th = "".join(f"<th>{esc(n)}</th>" for n in table.column_names)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(r[n], n))}</td>" for n in table.column_names) + "</tr>"
        for r in head
    )
    shown = f" (first {len(head)} of {table.num_rows:,} rows)" if table.num_rows > limit else ""
    cap = f"<caption>{esc(caption or '')}{esc(shown)}</caption>" if caption or shown else ""
    return f"<table>{cap}<thead><tr>{th}</tr></thead><tbody>{rows}</tbody></table>"


def dict_html(values: dict[str, Any]) -> str:
    """A flat ``key: value`` table; nested values are shown as their text."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(_cell(v, k))}</td></tr>" for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def result_html(result: AnalysisResult, limit: int = HEAD, every_table: bool = False) -> str:
    """An analysis result: headline figures, notes, and the head of its main table (of every
    table with ``every_table``)."""
    flat = {k: v for k, v in result.summary.items() if not isinstance(v, dict | list)}
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    shown = list(result.tables)[: None if every_table else 1]
    body = "".join(table_html(result.tables[n], limit, caption=n) for n in shown)
    others = [n for n in result.tables if n not in shown]
    more = f"<p>Other tables: {esc(', '.join(others))}</p>" if others else ""
    return (
        f"<div><strong>{esc(result.name)}</strong>{dict_html(flat)}"
        + (f"<ul>{notes}</ul>" if notes else "")
        + body
        + more
        + "</div>"
    )


def trace_html(trace: Trace, top: int = HEAD) -> str:
    """A trace: format, counts (``lines = events + other + rejected``), top events, and which
    analyses can run on it (with what is missing for the others)."""
    from analyses import runnable

    s = trace.stats
    counts = trace.event_counts()
    top_rows = "".join(
        f"<tr><td>{esc(n)}</td><td>{c:,}</td></tr>" for n, c in list(counts.items())[:top]
    )
    status = "".join(
        f"<tr><td>{esc(name)}</td><td>"
        + ("runnable" if not missing else "needs " + esc(", ".join(missing)))
        + "</td></tr>"
        for name, missing in runnable(trace).items()
    )
    return (
        f"<div><strong>Trace {esc(s.path)}</strong>"
        f"<p>format {esc(s.format)}, {s.lines:,} lines = {s.events:,} events + "
        f"{s.other_lines:,} other + {s.rejected_lines:,} rejected; {len(counts):,} event names</p>"
        f"<table><caption>Top events</caption><thead><tr><th>event</th><th>records</th></tr>"
        f"</thead><tbody>{top_rows}</tbody></table>"
        f"<table><caption>Analyses</caption><tbody>{status}</tbody></table></div>"
    )
