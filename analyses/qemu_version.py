"""Which QEMU release wrote a trace: exact from QMP query-version, else bounded by evidence.

Evidence: the catalog variants that decoded records (each printed by a range of releases, see
``#@ versions:`` in the bundled catalog), and the line shape (``ID@SEC.USEC:`` since 2.3,
ISO-8601 since 10.1).
"""

from __future__ import annotations

import json

from tracetool.trace import Trace

NAME = "qemu_version"
NEEDS: list[str] = []

Version = tuple[int, int]


def _fmt(v: Version | None) -> str:
    return "" if v is None else f"{v[0]}.{v[1]}"


def _exact(trace: Trace) -> str | None:
    if "qmp_exit_query_version" not in trace:
        return None
    col = "result" if "result" in trace.table("qmp_exit_query_version").column_names else "args"
    for text in trace.table("qmp_exit_query_version")[col].to_pylist():
        try:
            start = text.index("{")
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
            q = obj["qemu"]
            return f"{q['major']}.{q['minor']}.{q['micro']}"
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


def run(trace: Trace) -> dict:
    """``{"exact", "min", "max", "evidence": [...]}``; min/max as ``"X.Y"`` or ``None``."""
    lo: Version | None = None
    hi: Version | None = None
    evidence: list[str] = []

    def narrow(a: Version | None, b: Version | None, why: str) -> None:
        nonlocal lo, hi
        if a is None and b is None:
            return
        new_lo = max(x for x in (lo, a) if x is not None) if (lo or a) else None
        new_hi = min(x for x in (hi, b) if x is not None) if (hi or b) else None
        if new_lo is not None and new_hi is not None and new_lo > new_hi:
            evidence.append(f"ignored (contradicts the rest): {why}")
            return
        if (new_lo, new_hi) != (lo, hi):
            evidence.append(why)
        lo, hi = new_lo, new_hi

    shapes = trace.stats.shapes
    if shapes.get("ISO-8601"):
        narrow((10, 1), None, "ISO-8601 timestamps on trace lines (QEMU >= 10.1)")
    if shapes.get("ID@SEC.USEC:"):
        narrow((2, 3), (10, 0), "ID@SEC.USEC: prefix (QEMU 2.3 - 10.0)")
    for name, vi in sorted(trace.variants_seen):
        variants = trace.catalog.variants(name)
        if vi >= len(variants) or len(variants) < 2:
            continue  # an event that never changed tells nothing
        a, b = variants[vi].versions
        narrow(a, b, f"{name} format {variants[vi].fmt!r} ({_fmt(a)}-{_fmt(b)})")
    exact = _exact(trace)
    if exact:
        evidence.insert(0, f"qmp query-version reply says {exact}")
    return {"exact": exact, "min": _fmt(lo) or None, "max": _fmt(hi) or None, "evidence": evidence}
