"""``tracetool check``: compare traces' analysis results with golden baselines and limits.

A golden file is ``analyze --json`` of a trace with the values that legitimately vary between
runs or machines left out (:data:`VOLATILE_KEYS`). :func:`diff` compares two such dicts field by
field (dotted key paths, list items by index); :class:`Limit` is an explicit threshold
(``conflicts:POLICY``, the p99 postcopy fault latency); :func:`run_check` checks many traces;
:func:`junit_xml` and :func:`render` report the result. Exit codes: 0 all good, 1 a regression or
a limit exceeded, 2 an error (missing baseline, unreadable trace, a limit without its data). Limits
are skipped (exit 0, reported as such) on a source-side trace: both read destination-side events.
"""

from __future__ import annotations

import enum
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracetool.errors import CheckError, TracetoolError, UsageError

#: Keys left out of golden files at any depth: the input's path, timings, the parser engine
#: (``auto`` picks one by input size; both give the same tables) and tool versions.
VOLATILE_KEYS = frozenset({"path", "parse_seconds", "engine", "tracetool_version"})
#: Compression suffixes dropped from a trace's name to form its baseline's name.
COMPRESSION_SUFFIXES = (".gz", ".xz", ".bz2", ".zst")
#: Floats are equal when within this relative tolerance (sums in another order, other CPUs).
REL_TOL = 1e-9
_ABSENT = object()


class Status(str, enum.Enum):
    """Outcome of one trace or limit; the run's exit code is the worst one's."""

    OK = "ok"
    UPDATED = "updated"
    SKIPPED = "skipped"
    CHANGED = "changed"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "updated": 0, "skipped": 0, "changed": 1, "error": 2}[self.value]


class LimitKind(str, enum.Enum):
    CONFLICTS = "conflicts"
    LATENCY_P99 = "max-latency-p99"


# -- golden files -------------------------------------------------------------------------------


def golden(result: Any) -> Any:
    """``result`` without :data:`VOLATILE_KEYS` (recursively): what a golden file holds."""
    if isinstance(result, dict):
        return {k: golden(v) for k, v in result.items() if k not in VOLATILE_KEYS}
    if isinstance(result, list):
        return [golden(v) for v in result]
    return result


def baseline_name(trace: Path | str) -> str:
    """``a-dst.trace.log.gz`` -> ``a-dst.trace.log.json``: the name without compression."""
    name = Path(trace).name
    for suf in COMPRESSION_SUFFIXES:
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    return name + ".json"


def dumps(doc: Any) -> str:
    """A golden file's text: indented, keys in the tool's order (so regeneration diffs read well)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def read_baseline(path: Path) -> Any:
    if not path.exists():
        raise CheckError(
            "no baseline (create it with tracetool check --update, then review and commit it)",
            path=str(path),
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckError(f"unreadable baseline: {exc}", path=str(path)) from None


# -- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One field that differs: ``field`` is a dotted path (``replay.policies.defer.applied``)."""

    field: str
    baseline: Any
    current: Any

    def text(self) -> str:
        b, c = self.shown()
        return f"{self.field}: {b} -> {c}"

    def shown(self) -> tuple[str, str]:
        """Both values as short JSON text; long strings are cut around their first difference."""
        b, c = self.baseline, self.current
        if isinstance(b, str) and isinstance(c, str) and max(len(b), len(c)) > _SHOW:
            start = max(0, len(os.path.commonprefix([b, c])) - _SHOW // 3)
            if start:
                return _show("..." + b[start : start + _SHOW]), _show(
                    "..." + c[start : start + _SHOW]
                )
        return _show(b), _show(c)


_SHOW = 120


def _show(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= _SHOW else s[: _SHOW - 3] + "..."


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
        return False
    return type(a) is type(b) and a == b


def _key(prefix: str, k: str) -> str:
    return f"{prefix}.{k}" if prefix else k


def diff(baseline: Any, current: Any, prefix: str = "") -> list[Change]:
    """Every field where ``current`` differs from ``baseline`` (keys added, removed, changed)."""
    if isinstance(baseline, dict) and isinstance(current, dict):
        out: list[Change] = []
        for k in [*baseline, *(k for k in current if k not in baseline)]:
            b, c = baseline.get(k, _ABSENT), current.get(k, _ABSENT)
            if b is _ABSENT or c is _ABSENT:
                out.append(Change(_key(prefix, k), b, c))
            else:
                out += diff(b, c, _key(prefix, k))
        return out
    if isinstance(baseline, list) and isinstance(current, list):
        out = []
        for i in range(max(len(baseline), len(current))):
            b = baseline[i] if i < len(baseline) else _ABSENT
            c = current[i] if i < len(current) else _ABSENT
            out += (
                [Change(f"{prefix}[{i}]", b, c)]
                if _ABSENT in (b, c)
                else diff(b, c, f"{prefix}[{i}]")
            )
        return out
    if isinstance(baseline, dict | list) or isinstance(current, dict | list):
        return [] if baseline == current else [Change(prefix, baseline, current)]
    return [] if _same_scalar(baseline, current) else [Change(prefix, baseline, current)]


# -- limits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """An explicit threshold: no conflicts under ``policy``, or a p99 fault latency bound."""

    kind: LimitKind
    policy: str | None = None
    max_ms: float | None = None

    @classmethod
    def parse_fail_on(cls, text: str) -> Limit:
        kind, _, policy = text.partition(":")
        if kind != LimitKind.CONFLICTS.value:
            raise UsageError(f"--fail-on takes conflicts or conflicts:POLICY, not {text!r}")
        return cls(LimitKind.CONFLICTS, policy=policy or None)

    @classmethod
    def p99_latency(cls, ms: float) -> Limit:
        if not 0 < ms < math.inf:
            raise UsageError(f"--max-latency-p99 takes a positive number of ms, not {ms:g}")
        return cls(LimitKind.LATENCY_P99, max_ms=ms)

    @property
    def name(self) -> str:
        if self.kind is LimitKind.CONFLICTS:
            return f"conflicts:{self.policy or 'any'}"
        return f"max-latency-p99 {self.max_ms:g} ms"

    @staticmethod
    def skip_reason(result: dict) -> str | None:
        """Why no limit applies to this trace, or ``None``: the replay and the fault latencies
        read destination-side events, so a source-side trace is skipped rather than passed."""
        if result.get("side") == "source":
            return "source-side trace (limits read the destination's events)"
        return None

    def evaluate(self, result: dict) -> str | None:
        """``None`` when the trace keeps to the limit, else what exceeds it; raises
        :class:`CheckError` when the result lacks the data the limit reads."""
        if self.kind is LimitKind.CONFLICTS:
            policies = (result.get("replay") or {}).get("policies")
            if not policies:
                raise CheckError("no replay in the results: conflicts cannot be checked")
            policy = self.policy
            if policy == "qemu":  # the policy of the QEMU that wrote the trace
                policy = result["replay"]["qemu_policy"]["policy"]
            if policy is not None and policy not in policies:
                raise CheckError(
                    f"unknown policy {policy!r} (expected one of: {', '.join(policies)}, qemu)"
                )
            names = [policy] if policy else list(policies)
            found = {n: sum(policies[n]["conflicts"].values()) for n in names}
            found = {n: c for n, c in found.items() if c}
            if not found:
                return None
            return "conflicts: " + ", ".join(
                f"{n} {c:,} ({_classes(policies[n]['conflicts'])})" for n, c in found.items()
            )
        p99 = (result.get("postcopy_faults") or {}).get("p99_us")
        if p99 is None:
            raise CheckError(
                "no postcopy_faults.p99_us in the results: no postcopy fault latencies in this "
                "trace (record postcopy_ram_fault_thread_request and postcopy_place_page) or "
                "none computed by this tracetool"
            )
        limit_us = self.max_ms * 1000
        return (
            None if p99 <= limit_us else f"p99 fault latency {p99 / 1000:g} ms > {self.max_ms:g} ms"
        )


def _classes(conflicts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in conflicts.items() if v)


# -- one run ------------------------------------------------------------------------------------


@dataclass
class LimitResult:
    limit: Limit
    violation: str | None = None
    error: str | None = None
    skipped: str | None = None

    @property
    def status(self) -> Status:
        if self.error:
            return Status.ERROR
        if self.violation:
            return Status.CHANGED
        return Status.SKIPPED if self.skipped else Status.OK

    @property
    def message(self) -> str:
        return self.error or self.violation or self.skipped or ""


@dataclass
class TraceReport:
    """What check found for one trace."""

    trace: str
    baseline: str
    changes: list[Change] = field(default_factory=list)
    limits: list[LimitResult] = field(default_factory=list)
    error: str | None = None
    updated: bool = False

    @property
    def name(self) -> str:
        return Path(self.trace).name

    @property
    def status(self) -> Status:
        """The status of the comparison with the baseline (limits are reported apart)."""
        if self.error:
            return Status.ERROR
        if self.changes:
            return Status.CHANGED
        return Status.UPDATED if self.updated else Status.OK

    def to_dict(self) -> dict:
        return {
            "trace": self.trace,
            "baseline": self.baseline,
            "status": self.status.value,
            "error": self.error,
            "changes": [
                {"field": c.field, "baseline": _json(c.baseline), "current": _json(c.current)}
                for c in self.changes
            ],
            "limits": [
                {
                    "limit": r.limit.name,
                    "status": r.status.value,
                    "violation": r.violation,
                    "error": r.error,
                    "skipped": r.skipped,
                }
                for r in self.limits
            ],  # fmt: skip
        }


def _json(v: Any) -> Any:
    return None if v is _ABSENT else v


def exit_code(reports: Sequence[TraceReport]) -> int:
    statuses = [r.status for r in reports] + [lr.status for r in reports for lr in r.limits]
    return max((s.exit_code for s in statuses), default=0)


def analyze(path: Path | str) -> dict:
    """What ``tracetool analyze --json PATH`` prints (the default results of :func:`run_check`)."""
    from tracetool.cli import analysis_json
    from tracetool.trace import load

    return analysis_json(load(path))


def run_check(
    traces: Iterable[Path | str],
    baseline_dir: Path | str,
    compute: Callable[[Path], dict] = analyze,
    limits: Sequence[Limit] = (),
    *,
    update: bool = False,
) -> list[TraceReport]:
    """Compute each trace's results, compare them with ``baseline_dir/<name>.json`` (or write it
    with ``update``) and evaluate ``limits``. Errors of one trace do not stop the others.

    >>> reports = run_check(["dst.trace.log.gz"], "baselines")  # doctest: +SKIP
    >>> exit_code(reports), [c.text() for r in reports for c in r.changes]  # doctest: +SKIP
    """
    traces, baseline_dir = [Path(t) for t in traces], Path(baseline_dir)
    seen: dict[str, Path] = {}
    for t in traces:
        other = seen.setdefault(baseline_name(t), t)
        if other != t:
            raise UsageError(f"{other} and {t} would share the baseline {baseline_name(t)}")
    if update:
        try:
            baseline_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckError(f"cannot create the baseline folder: {exc.strerror}",
                             path=str(baseline_dir)) from None  # fmt: skip
    reports = []
    for t in traces:
        bpath = baseline_dir / baseline_name(t)
        rep = TraceReport(str(t), str(bpath))
        reports.append(rep)
        try:
            result = compute(t)
        except TracetoolError as exc:
            rep.error = str(exc)
            continue
        current = golden(result)
        try:
            if update:
                bpath.write_text(dumps(current), encoding="utf-8")
                rep.updated = True
            else:
                rep.changes = diff(read_baseline(bpath), current)
        except TracetoolError as exc:
            rep.error = str(exc)
        except OSError as exc:
            rep.error = f"{bpath}: cannot write the baseline: {exc.strerror}"
        for lim in limits:
            if why := Limit.skip_reason(result):
                rep.limits.append(LimitResult(lim, skipped=why))
                continue
            try:
                rep.limits.append(LimitResult(lim, violation=lim.evaluate(result)))
            except CheckError as exc:
                rep.limits.append(LimitResult(lim, error=f"{t}: {exc}"))
    return reports


# -- reports ------------------------------------------------------------------------------------


def errors(reports: Sequence[TraceReport]) -> list[str]:
    """Every error of the run, one line each (they name the file)."""
    return [r.error for r in reports if r.error] + [
        lr.error for r in reports for lr in r.limits if lr.error
    ]


def summary_json(reports: Sequence[TraceReport]) -> dict:
    return {"exit_code": exit_code(reports), "traces": [r.to_dict() for r in reports]}


def junit_xml(reports: Sequence[TraceReport], seconds: float = 0.0) -> str:
    """JUnit XML: one testsuite per run, one testcase per trace and per (trace, limit)."""
    suite = ET.Element("testsuite", name="tracetool check")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(name: str, status: Status, message: str, text: str) -> None:
        tc = ET.SubElement(suite, "testcase", classname="tracetool.check", name=name, time="0")
        counts["tests"] += 1
        if status is Status.CHANGED:
            ET.SubElement(tc, "failure", message=message, type="regression").text = text
            counts["failures"] += 1
        elif status is Status.ERROR:
            ET.SubElement(tc, "error", message=message, type="error").text = text
            counts["errors"] += 1
        elif status is Status.SKIPPED:
            ET.SubElement(tc, "skipped", message=message)
            counts["skipped"] += 1

    for r in reports:
        msg = r.error or f"{len(r.changes)} field(s) differ from {r.baseline}"
        case(r.name, r.status, msg, "\n".join(c.text() for c in r.changes) or (r.error or ""))
        for lr in r.limits:
            case(f"{r.name} [{lr.limit.name}]", lr.status, lr.message, lr.message)
    for k, n in counts.items():
        suite.set(k, str(n))
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites", tests=suite.get("tests"), failures=suite.get("failures"),
                      errors=suite.get("errors"), skipped=suite.get("skipped"),
                      time=suite.get("time"))  # fmt: skip
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, reports: Sequence[TraceReport], seconds: float = 0.0) -> None:
    try:
        path.write_text(junit_xml(reports, seconds), encoding="utf-8")
    except OSError as exc:
        raise CheckError(f"cannot write the JUnit report: {exc.strerror}", path=str(path)) from None


def render(reports: Sequence[TraceReport], console) -> None:
    """Rich tables: every trace's status, the fields that changed, the limits exceeded."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="tracetool check", title_justify="left")
    for col in ("trace", "baseline", "result"):
        t.add_column(col)
    style = {Status.OK: "green", Status.UPDATED: "cyan", Status.SKIPPED: "yellow",
             Status.CHANGED: "red", Status.ERROR: "red"}  # fmt: skip
    for r in reports:
        what = r.error or (f"{len(r.changes)} field(s) changed" if r.changes else r.status.value)
        t.add_row(escape(r.name), escape(r.baseline), f"[{style[r.status]}]{escape(what)}[/]")
    console.print(t)
    changed = [(r, c) for r in reports for c in r.changes]
    if changed:
        t = Table(title="Changed fields (baseline -> current)", title_justify="left")
        for col in ("trace", "field", "baseline", "current"):
            t.add_column(col, overflow="fold")
        for r, c in changed[:200]:
            t.add_row(*map(escape, (r.name, c.field, *c.shown())))
        console.print(t)
        if len(changed) > 200:
            console.print(f"... and {len(changed) - 200:,} more (see --json)")
    bad = [(r, lr) for r in reports for lr in r.limits if lr.status is not Status.OK]
    if bad:
        t = Table(title="Limits not met or not checked", title_justify="left")
        for col in ("trace", "limit", "result"):
            t.add_column(col, overflow="fold")
        for r, lr in bad:
            label = "exceeded" if lr.status is Status.CHANGED else lr.status.value
            t.add_row(escape(r.name), lr.limit.name, f"[{style[lr.status]}]{label}[/]: "
                      + escape(lr.message))  # fmt: skip
        console.print(t)
