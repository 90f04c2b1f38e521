"""QMP cross-check: what QEMU itself reported in ``query-migrate`` against tracetool's figures.

The log is a JSON list of records (or one JSON object per line) such as the captures'
``qmp-log.json``: ``{"side": "src"|"dst"|"driver", "kind": "command"|"event"|..., "execute",
"reply"}``. The last ``query-migrate`` reply of each side is compared with the analyses:
QEMU 7.2 gives the destination's ``postcopy-blocktime``/``postcopy-vcpu-blocktime`` (ms) and
the source's ``ram.postcopy-requests``; 10.1+ adds ``postcopy-latency`` (ns, mean),
``postcopy-vcpu-latency`` and ``postcopy-latency-dist`` (power-of-two us buckets).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracetool.errors import InputError

SIDES = ("src", "dst")


class QmpLogError(InputError):
    """The QMP log is not JSON or not a list of QMP records."""


def load(path: str | Path) -> list[dict]:
    """The records of a QMP log: a JSON list, or one JSON object per line."""
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QmpLogError(f"cannot read the QMP log: {exc}", path=p) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as first:
        data = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError:
                raise QmpLogError(
                    f"not JSON (a list, or one object per line): {first.msg}", path=p, line=n
                ) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise QmpLogError("expected a JSON list of QMP records (objects)", path=p)
    return data


def last_query_migrate(records: list[dict], path: str = "") -> dict[str, dict]:
    """Side -> the ``return`` of the last successful ``query-migrate`` of that side."""
    out: dict[str, dict] = {}
    for r in records:
        if r.get("execute") != "query-migrate" or r.get("side") not in SIDES:
            continue
        reply = r.get("reply")
        if not isinstance(reply, dict):
            continue
        ret = reply.get("return")
        if ret is not None and not isinstance(ret, dict):
            raise QmpLogError(f"query-migrate reply of {r.get('side')} is not an object", path=path)
        if ret is not None:
            out[r["side"]] = ret
    return out


def _row(figure: str, side: str, qemu: Any, ours: Any, computed: str, note: str = "") -> dict:
    diff = pct = None
    if isinstance(qemu, int | float) and isinstance(ours, int | float):
        diff = round(ours - qemu, 3)
        pct = (round(100.0 * diff / qemu, 3) or 0.0) if qemu else None
        diff = diff or 0.0 if isinstance(diff, float) else diff
    return {
        "figure": figure,
        "side": side,
        "qemu": qemu,
        "ours": ours,
        "diff": diff,
        "diff_pct": pct,
        "compared_with": computed,
        "note": note,
    }


def compare(
    replies: dict[str, dict],
    faults: dict | None,
    phases: dict | None,
    side: str,
    served: int | None = None,
) -> list:
    """One row per figure QEMU reported that tracetool computes too (see module docstring)."""
    rows: list[dict] = []
    f = faults or {}
    dst, src = replies.get("dst", {}), replies.get("src", {})
    if "postcopy-blocktime" in dst:
        rows.append(
            _row("postcopy-blocktime (ms)", "dst", dst["postcopy-blocktime"],
                 f.get("all_vcpus_blocked_ms"), "postcopy_faults.all_vcpus_blocked_ms",
                 "QEMU counts from the fault thread's begin to the wake-up, in whole ms; "
                 "faults superseded by another fault of the vCPU are not counted")
        )  # fmt: skip
    for i, v in enumerate(dst.get("postcopy-vcpu-blocktime") or []):
        ours = (f.get("per_cpu_blocktime_ms") or {}).get(str(i))
        rows.append(
            _row(f"postcopy-vcpu-blocktime[{i}] (ms)", "dst", v, ours,
                 f"postcopy_faults.per_cpu_blocktime_ms[{i}]")
        )  # fmt: skip
    if "postcopy-latency" in dst:
        mean = f.get("mean_us")
        rows.append(
            _row("postcopy-latency (ns)", "dst", dst["postcopy-latency"],
                 None if mean is None else round(mean * 1e3), "postcopy_faults.mean_us x 1000",
                 "QEMU averages per fault (each blocked thread), tracetool per requested page")
        )  # fmt: skip
    if "postcopy-latency-dist" in dst:
        ours = f.get("latency_dist")
        rows.append(
            _row("postcopy-latency-dist (faults)", "dst", sum(dst["postcopy-latency-dist"]),
                 None if ours is None else sum(ours), "postcopy_faults histogram (sum of counts)")
        )  # fmt: skip
    ram = src.get("ram") or {}
    if "postcopy-requests" in ram:
        if faults:
            ours, how = f.get("requests"), "postcopy_faults.requests (host pages requested)"
        else:
            ours, how = served, "migrate_handle_rp_req_pages records (source)"
        rows.append(_row("ram.postcopy-requests", "src", ram["postcopy-requests"], ours, how))
    per = {p["side"]: p for p in (phases or {}).get("per_migration", [])}
    mine = per.get(side)
    for qside, reply in replies.items():
        if "status" in reply:
            ours = mine["final_state"] if mine and _same_side(qside, side) else None
            rows.append(
                _row("status", qside, reply["status"], ours, "phases final_state",
                     "" if ours is not None else "the trace is from the other side")
            )  # fmt: skip
    if mine and _same_side("src", side):
        for key, ours_key in (("setup-time", "setup_s"), ("total-time", "total_s")):
            if key in src and mine.get(ours_key) is not None:
                rows.append(
                    _row(f"{key} (ms)", "src", src[key], round(mine[ours_key] * 1e3, 3),
                         f"phases per_migration.{ours_key} x 1000")
                )  # fmt: skip
    return rows


def _same_side(qmp_side: str, trace_side: str) -> bool:
    return {"src": "source", "dst": "destination"}[qmp_side] == trace_side


def check(
    path: str | Path, faults: dict | None, phases: dict | None, side: str, served: int | None = None
) -> dict:
    """``analyze --json``'s ``qmp_check``: the log, the replies found and the comparison."""
    records = load(path)
    replies = last_query_migrate(records, str(path))
    return {
        "qmp_log": str(path),
        "records": len(records),
        "query_migrate_sides": sorted(replies),
        "rows": compare(replies, faults, phases, side, served),
    }
