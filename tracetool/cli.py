"""The ``tracetool`` command line: analyze and convert QEMU traces.

Exit codes: 0 success, 1 findings the user asked to fail on, 2 usage or input errors,
3 an internal error (a bug in tracetool: please report it with the command line).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tracetool.errors import TracetoolError

app = typer.Typer(
    name="tracetool",
    help="Turn QEMU trace output into Arrow tables and find where virtio-balloon and postcopy collide.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Pipes and files get wide lines rather than tables squeezed to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class Engine(str, Enum):
    auto = "auto"
    numba = "numba"
    arrow = "arrow"


FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Input format: auto, qemu-log, simpletrace, ftrace, synthetic-jsonl, synthetic-csv, "
        "synthetic-parquet, page-events.",
    ),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Stop at the first bad line instead of counting it.")
]
EventsOpt = Annotated[
    Path | None,
    typer.Option(
        "--trace-events",
        help="Your build's trace-events-all: its definitions override the bundled catalog.",
    ),
]
EngineOpt = Annotated[
    Engine, typer.Option("--engine", help="Parser engine: auto, numba (compiled) or arrow.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
SvgOpt = Annotated[bool, typer.Option("--svg", help="Write SVG beside each PNG.")]


class _LazyProgress:
    """A progress bar on stderr that appears only if the work takes more than a second."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and err.is_terminal
        self.start = time.monotonic()
        self.bar: Progress | None = None
        self.task = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.start < 1.0:
                return
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def _progress(label: str, enabled: bool):
    p = _LazyProgress(label, enabled)
    try:
        yield p
    finally:
        p.close()


def _load(
    trace: Path, fmt: str, strict: bool, trace_events: Path | None, engine: Engine, quiet: bool
):
    from tracetool.trace import load

    with _progress(f"reading {trace.name}", not quiet) as progress:
        t = load(
            trace,
            format=fmt,
            strict=strict,
            trace_events=trace_events,
            engine=engine.value,
            progress=progress,
        )
    _warn_damage(t.stats.input_damage)
    return t


def _warn_damage(damage: str | None) -> None:
    """A compressed input that broke off: its data up to the damage was read (lenient mode)."""
    if damage:
        err.print(f"tracetool: warning: {damage}", markup=False, highlight=False)


def _ts(ts_ns: int | None, base: int | None) -> str:
    if ts_ns is None:
        return "-"
    if base is None:
        return str(ts_ns)
    return f"{(ts_ns - base) / 1e9:+.3f} s"


def _print_summary(s: dict) -> None:
    ver = s["qemu_version"]
    version = ver["exact"] or (
        f"{ver['min'] or '?'} .. {ver['max'] or '?'}" if (ver["min"] or ver["max"]) else "unknown"
    )
    comp = f" ({s['compression']})" if s["compression"] else ""
    out.print(f"[bold]{s['path']}[/bold]")
    out.print(
        f"  format [cyan]{s['format']}[/cyan]{comp}, line shape [cyan]{s['line_shape']}[/cyan], "
        f"QEMU [cyan]{version}[/cyan], side [cyan]{s['side']}[/cyan]"
    )
    span = "-" if s["span_s"] is None else f"{s['span_s']:.3f} s"
    out.print(
        f"  {s['lines']:,} lines = {s['events']:,} events + {s['other_lines']:,} other + "
        f"{s['rejected_lines']:,} rejected"
        + ("" if s["balanced"] else "  [red](counts do not add up!)[/red]")
        + f"; time span {span}; parsed in {s['parse_seconds']:.2f} s ({s['engine']} engine)"
    )
    if s.get("clock"):
        out.print(f"  timestamps: {s['clock']}", highlight=False)
    if s.get("dropped_events"):
        out.print(
            f"  [yellow]the tracer dropped {s['dropped_events']:,} events[/yellow] (simpletrace dropped records)"
        )
    if s["rejected_reasons"]:
        t = Table(
            title="Rejected lines (see --strict, or convert --table rejected)", title_justify="left"
        )
        t.add_column("lines", justify="right")
        t.add_column("reason")
        for reason, n in sorted(s["rejected_reasons"].items(), key=lambda kv: -kv[1])[:5]:
            t.add_row(f"{n:,}", reason)
        out.print(t)
    t = Table(title=f"Top events ({s['event_names']} names)", title_justify="left")
    t.add_column("event")
    t.add_column("records", justify="right")
    for row in s["top_events"]:
        t.add_row(row["event"], f"{row['count']:,}")
    out.print(t)
    if s["phases"]:
        base = next((p["ts_ns"] for p in s["phases"] if p["ts_ns"] is not None), None)
        t = Table(title="Migration phases on this side (time from the first)", title_justify="left")
        t.add_column("time", justify="right")
        t.add_column("phase / state")
        t.add_column("line", justify="right")
        for p in s["phases"]:
            t.add_row(_ts(p["ts_ns"], base), p["state"], str(p["line"]))
        out.print(t)
    pc_, bl = s["postcopy"], s["balloon"]
    t = Table(title="Postcopy pages and balloon requests", title_justify="left")
    t.add_column("what")
    t.add_column("count", justify="right")
    for label, value in [
        ("fault requests (postcopy_ram_fault_thread_request)", pc_["fault_requests"]),
        ("page requests (postcopy_page_req_add)", pc_["page_requests"]),
        ("pages placed (postcopy_place_page)", pc_["pages_placed"]),
        ("zero pages placed (postcopy_place_page_zero)", pc_["zero_pages_placed"]),
        (
            "requests served by the source (migrate_handle_rp_req_pages)",
            pc_["requests_served_by_source"],
        ),
        ("balloon page requests (virtio_balloon_handle_output)", bl["requests"]),
        ("4 KiB discards (ram_block_discard_range)", bl["discards_4k"]),
        ("balloon targets set (virtio_balloon_to_target)", len(bl["targets"])),
    ]:
        t.add_row(label, f"{value:,}")
    out.print(t)


CLASSES = ("discard-after-place", "discard-in-flight", "discard-before-arrival")


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.1f}"


def _print_replay(r: dict) -> None:
    t = Table(
        title="Balloon x postcopy: policy comparison (4 KiB balloon pages)", title_justify="left"
    )
    for col in ("policy", "inflates in window", "applied", "dropped", "deferred", "cancelled",
                "after-place", "in-flight", "before-arrival", "conflict host pages",
                "reclaimed MiB (window end)", "reclaimed MiB (trace end)"):  # fmt: skip
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, p in r["policies"].items():
        label = name if p["effective_policy"] == name else f"{name} ({p['effective_policy']})"
        t.add_row(
            label, f"{p['inflate_pages_in_window']:,}", f"{p['applied_pages']:,}", f"{p['dropped_pages']:,}",
            f"{p['deferred_pages']:,}", f"{p['cancelled_pages']:,}",
            *[f"{p['conflicts'][c]:,}" for c in CLASSES], f"{p['conflict_pages']:,}",
            _mib(p["reclaimed_bytes_end_of_window"]), _mib(p["reclaimed_bytes_end_of_trace"]),
        )  # fmt: skip
    out.print(t)
    o = r["observed"]
    f = o["fidelity"]
    known = f["agree"] + f["disagree"]
    fid = (
        f"{100 * f['agree'] / known:.2f}% ({f['agree']:,}/{known:,})"
        if known
        else "n/a (no discard tracing)"
    )
    evidence = ", ".join(f"{k} {v:,}" for k, v in r["direction_evidence"].items()) or "nothing"
    out.print(
        f"  balloon pages {r['balloon_pages']:,} (direction from {evidence}; "
        f"unresolved {r['unresolved_direction_pages']:,}, unmapped {r['unmapped_balloon_pages']:,})"
    )
    out.print(
        f"  observed in QEMU: applied {o['applied_pages']:,}, dropped {o['dropped_pages']:,}, "
        f"unknown {o['unknown_pages']:,}; qemu policy {f['policy']} [{f['why']}] predicts it: {fid}"
    )
    a = r["anomalies"]
    out.print(
        f"  anomalies: observed refaults {a['observed-refault']:,}, double places {a['observed-double-place']:,}"
    )
    for w in r["windows"]:
        if w["inferred"]:
            out.print(f"  migration {w['migration']}: inferred {'; '.join(w['inferred'])}")
    am = r["address_map"]
    blocks = [b for b in am["blocks"] if b["hva"]]
    if blocks:
        shown = ", ".join(
            f"{b['name']}@{b['hva']} ({b['host_page_size'] >> 10} KiB pages)" for b in blocks[:4]
        )
        more = f" and {len(blocks) - 4} more" if len(blocks) > 4 else ""
        out.print(
            f"  address map: {shown}{more}; GPA map: {am['gpa_map_evidence']}", highlight=False
        )
    for d in r["address_map"]["disagreements"]:
        out.print(f"  [yellow]address map disagreement:[/yellow] {d}")


ReplayPolicyOpt = Annotated[
    str,
    typer.Option(
        "--policy",
        "-p",
        help="all, or one or more of no-inhibit, inhibit, inhibit-discard, defer, qemu (comma separated).",
    ),
]
RaceOpt = Annotated[
    int,
    typer.Option(
        "--race-window", help="ns after a discard within which a placement counts as in flight."
    ),
]
MapOpt = Annotated[
    str | None,
    typer.Option(
        "--memory-map",
        help="GPA map: GPA_START-GPA_END=BLOCK[+OFFSET],... (default: x86 pc.ram rule).",
    ),
]
PageOpt = Annotated[
    int | None,
    typer.Option("--host-page-size", help="Host page size in bytes (default: learned, else 4096)."),
]
VersionOpt = Annotated[
    str | None,
    typer.Option("--qemu-version", help="X.Y: the QEMU whose rule the qemu policy follows."),
]


def _run_replay(t, policy: str, race: int, memory_map, page, version):
    names = [p.strip() for p in policy.split(",") if p.strip()]
    return t.replay(
        names, race_window_ns=race, memory_map=memory_map, host_page_size=page, qemu_version=version
    )


@app.command()
def replay(
    trace: Annotated[
        Path, typer.Argument(help="Destination-side trace (plain or compressed) or - for stdin.")
    ],
    policy: ReplayPolicyOpt = "all",
    race_window: RaceOpt = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the replay summary as JSON.")
    ] = False,
    conflicts_out: Annotated[
        Path | None,
        typer.Option(
            "--conflicts-out", help="Write one row per conflict (.parquet, .feather, .csv...)."
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="'conflicts': exit 1 when a reported policy has conflicts."),
    ] = None,
    memory_map: MapOpt = None,
    host_page_size: PageOpt = None,
    qemu_version: VersionOpt = None,
    fmt: FormatOpt = "auto",
    strict: StrictOpt = False,
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
    quiet: QuietOpt = False,
) -> None:
    """Replay balloon and postcopy page events under inhibit policies; report conflicting pages."""
    from tracetool.errors import UsageError

    if fail_on not in (None, "conflicts"):
        raise UsageError(f"--fail-on takes 'conflicts', not {fail_on!r}")
    if conflicts_out is not None:
        from tracetool.writers import kind_for

        kind_for(conflicts_out)
    t = _load(trace, fmt, strict, trace_events, engine, quiet or json_out)
    res = _run_replay(t, policy, race_window, memory_map, host_page_size, qemu_version)
    summary = res.summary
    if conflicts_out is not None:
        from tracetool.writers import TableWriter

        with TableWriter(conflicts_out, res.conflicts.schema) as w:
            for b in res.conflicts.to_batches():
                w.write(b)
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _print_replay(summary)
        if conflicts_out is not None:
            err.print(f"wrote {res.conflicts.num_rows:,} conflicts to {conflicts_out}")
    if fail_on == "conflicts":
        bad = {k: sum(v["conflicts"].values()) for k, v in summary["policies"].items()}
        bad = {k: n for k, n in bad.items() if n}
        if bad:
            err.print(f"conflicts found: {', '.join(f'{k} {n:,}' for k, n in bad.items())}")
            raise typer.Exit(EXIT_FINDINGS)


QmpOpt = Annotated[
    Path | None,
    typer.Option("--qmp-log", help="QMP log (JSON): compare QEMU's query-migrate figures."),
]


def analysis_json(
    t, replay: bool = True, race: int = 0, memory_map=None, page=None, version=None, qmp_log=None
) -> dict:
    """What ``analyze --json`` prints for a loaded trace (``check`` compares the same dict)."""
    from analyses import summary
    from tracetool.fault_report import fault_json, qmp_json

    s = summary.run(t)
    s.update(fault_json(t))
    if qmp_log is not None:
        s["qmp_check"] = qmp_json(t, s, qmp_log)
    if replay:
        s["replay"] = _run_replay(t, "all", race, memory_map, page, version).summary
    return s


@app.command()
def analyze(
    trace: Annotated[
        Path, typer.Argument(help="Trace file (plain, .gz, .xz, .bz2, .zst) or - for stdin.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    no_replay: Annotated[
        bool, typer.Option("--no-replay", help="Skip the policy comparison.")
    ] = False,
    race_window: RaceOpt = 0,
    memory_map: MapOpt = None,
    host_page_size: PageOpt = None,
    qemu_version: VersionOpt = None,
    fmt: FormatOpt = "auto",
    strict: StrictOpt = False,
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
    quiet: QuietOpt = False,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Also write the figures (PNG) to this folder.")
    ] = None,
    svg: SvgOpt = False,
    qmp_log: QmpOpt = None,
) -> None:
    """Summarise a trace: format, counts, phases, fault latency, balloon, and the policy replay."""
    from tracetool.fault_report import print_faults

    t = _load(trace, fmt, strict, trace_events, engine, quiet or json_out)
    s = analysis_json(
        t, not no_replay, race_window, memory_map, host_page_size, qemu_version, qmp_log
    )
    if json_out:
        sys.stdout.write(json.dumps(s, indent=2, sort_keys=False) + "\n")
    else:
        _print_summary(s)
        print_faults(out, s)
        if "replay" in s:
            _print_replay(s["replay"])
    if plots is not None:
        _write_plots(t, plots, svg)


def _write_plots(t, outdir: Path, svg: bool) -> None:
    from tracetool.plots import write_plots

    skipped: dict[str, str] = {}
    paths = write_plots(t, outdir, svg=svg, skipped=skipped)
    err.print(f"wrote {len(paths)} figure files to {outdir}", highlight=False)
    for kind, why in skipped.items():
        err.print(f"  skipped {kind}: {why}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def plot(
    trace: Annotated[Path, typer.Argument(help="Trace file (plain or compressed) or - for stdin.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the figures.")],
    svg: SvgOpt = False,
    fmt: FormatOpt = "auto",
    strict: StrictOpt = False,
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
    quiet: QuietOpt = False,
) -> None:
    """Write the figures (timeline, fault latency, memory per policy, conflicts map) as PNG."""
    t = _load(trace, fmt, strict, trace_events, engine, quiet)
    _write_plots(t, output, svg)


@app.command()
def report(
    trace: Annotated[Path, typer.Argument(help="Trace file (plain or compressed) or - for stdin.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")],
    fmt: FormatOpt = "auto",
    strict: StrictOpt = False,
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
    quiet: QuietOpt = False,
    qmp_log: QmpOpt = None,
) -> None:
    """Write one self-contained HTML report (tables, embedded figures) to attach to a bug."""
    from tracetool.report import write_report

    t = _load(trace, fmt, strict, trace_events, engine, quiet)
    write_report(t, output, qmp_log=qmp_log)
    err.print(f"wrote {output} ({output.stat().st_size:,} bytes)", highlight=False)


@app.command()
def check(
    traces: Annotated[list[Path], typer.Argument(help="Traces to check (plain or compressed).")],
    baseline: Annotated[
        Path, typer.Option("--baseline", help="Folder of golden results: DIR/<trace name>.json.")
    ],
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", help="conflicts:POLICY (or conflicts: any policy); repeatable."),
    ] = None,
    max_latency_p99: Annotated[
        float | None,
        typer.Option("--max-latency-p99", help="Limit in ms on postcopy_faults.p99_us."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Write the baselines from these traces.")
    ] = False,
    fmt: FormatOpt = "auto",
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
) -> None:
    """Compare traces' analysis results with golden baselines and limits (exit 0/1/2)."""
    from tracetool import check as ck

    limits = [ck.Limit.parse_fail_on(f) for f in fail_on or []]
    if max_latency_p99 is not None:
        limits.append(ck.Limit.p99_latency(max_latency_p99))
    start = time.monotonic()
    reports = ck.run_check(
        traces,
        baseline,
        lambda p: analysis_json(_load(p, fmt, False, trace_events, engine, True)),
        limits,
        update=update,
    )
    if junit is not None:
        ck.write_junit(junit, reports, time.monotonic() - start)
    if json_out:
        sys.stdout.write(json.dumps(ck.summary_json(reports), indent=2) + "\n")
    else:
        ck.render(reports, out)
    for msg in ck.errors(reports):
        sys.stderr.write(f"tracetool: error: {msg}\n")
    raise typer.Exit(ck.exit_code(reports))


@app.command()
def convert(
    trace: Annotated[Path, typer.Argument(help="Trace file or - for stdin.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Output: .parquet, .feather/.arrow, .arrows or .csv"),
    ],
    table: Annotated[
        str,
        typer.Option(
            "--table", "-t", help="events, other, rejected, or an event name (typed columns)."
        ),
    ] = "events",
    fmt: FormatOpt = "auto",
    strict: StrictOpt = False,
    trace_events: EventsOpt = None,
    engine: EngineOpt = Engine.auto,
    quiet: QuietOpt = False,
) -> None:
    """Convert a trace to Parquet, Arrow IPC or CSV, streaming (memory stays flat)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tracetool.ingest import IngestStats, iter_chunks, make_options
    from tracetool.schema import EVENT_KEY_FIELDS, EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA
    from tracetool.trace import conform, event_schema
    from tracetool.writers import TableWriter, kind_for

    kind_for(output)  # fail early on an unknown extension
    opts = make_options(strict=strict, trace_events=trace_events, engine=engine.value)
    stats = IngestStats(path=str(trace), format=fmt)
    fixed = {"events": EVENTS_SCHEMA, "other": OTHER_SCHEMA, "rejected": REJECTED_SCHEMA}
    raw_schema = pa.schema([*EVENT_KEY_FIELDS, pa.field("args", pa.string())])
    schema = fixed.get(table) or event_schema(opts.catalog, table) or raw_schema
    writer = None
    try:
        with _progress(f"converting {trace.name}", not quiet) as progress:
            writer = TableWriter(output, schema)
            for chunk in iter_chunks(trace, opts, format=fmt, progress=progress, stats=stats):
                if table in fixed:
                    writer.write(getattr(chunk, table))
                elif schema is raw_schema:  # an event without a catalogued format: raw args
                    ev = chunk.events.filter(
                        pc.equal(pc.cast(chunk.events["event"], pa.string()), table)
                    )
                    writer.write(
                        pa.RecordBatch.from_arrays(
                            [ev[n] for n in raw_schema.names], schema=raw_schema
                        )
                    )
                else:
                    batches = [b for (name, _vi), b in chunk.typed.items() if name == table]
                    if batches:
                        for b in conform(batches, schema).to_batches():
                            writer.write(b)
    finally:
        if writer is not None:
            writer.close()
    err.print(
        f"wrote {writer.rows:,} rows to {output} ({stats.lines:,} lines = {stats.events:,} events + "
        f"{stats.other_lines:,} other + {stats.rejected_lines:,} rejected)"
    )
    _warn_damage(stats.input_damage)


def _synth_opt(field: str, *names: str):
    from tracetool.synth import HELP

    return typer.Option(*(names or ("--" + field.replace("_", "-"),)), help=HELP[field])


@app.command()
def synth(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Trace to write (.gz compresses text forms).")
    ],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="Output form: log, simpletrace, jsonl, csv, parquet."),
    ] = "log",
    era: Annotated[str, _synth_opt("era")] = "7.2",
    seed: Annotated[int, _synth_opt("seed")] = 0,
    ram: Annotated[str, _synth_opt("ram")] = "1G",
    host_page: Annotated[str, _synth_opt("host_page")] = "4K",
    precopy_s: Annotated[float, _synth_opt("precopy_s")] = 1.0,
    bandwidth: Annotated[str, _synth_opt("bandwidth")] = "1G",
    dirty: Annotated[float, _synth_opt("dirty")] = 0.05,
    fault_rate: Annotated[float, _synth_opt("fault_rate")] = 2000.0,
    fault_latency_us: Annotated[int, _synth_opt("fault_latency_us")] = 300,
    zero_pages: Annotated[float, _synth_opt("zero_pages")] = 0.2,
    inflate_before: Annotated[str, _synth_opt("inflate_before")] = "4%",
    deflate_before: Annotated[str, _synth_opt("deflate_before")] = "1%",
    inflate_during: Annotated[str, _synth_opt("inflate_during")] = "2%",
    deflate_during: Annotated[str, _synth_opt("deflate_during")] = "0.5%",
    inflate_after: Annotated[str, _synth_opt("inflate_after")] = "2%",
    deflate_after: Annotated[str, _synth_opt("deflate_after")] = "1%",
    plant: Annotated[int, _synth_opt("plant")] = 4,
    tail: Annotated[bool, _synth_opt("tail", "--tail/--no-tail")] = True,
    refault_races: Annotated[int, _synth_opt("refault_races")] = 2,
    migrations: Annotated[int, _synth_opt("migrations")] = 1,
    other_lines: Annotated[int, _synth_opt("other_lines")] = 20,
    damaged_lines: Annotated[int, _synth_opt("damaged_lines")] = 4,
    balloon_thread: Annotated[str, _synth_opt("balloon_thread")] = "main",
    aslr: Annotated[bool, _synth_opt("aslr", "--aslr/--no-aslr")] = False,
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Where to write the truth file (default: OUT.truth.json)."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate a seeded, realistic destination trace of balloon x postcopy migrations, and the
    ground truth of what it holds (docs/synth.md)."""
    from tracetool.synth import Scenario, generate

    sc = Scenario(
        era=era, seed=seed, ram=ram, host_page=host_page, precopy_s=precopy_s,
        bandwidth=bandwidth, dirty=dirty, fault_rate=fault_rate,
        fault_latency_us=fault_latency_us, zero_pages=zero_pages,
        inflate_before=inflate_before, deflate_before=deflate_before,
        inflate_during=inflate_during, deflate_during=deflate_during,
        inflate_after=inflate_after, deflate_after=deflate_after, plant=plant, tail=tail,
        refault_races=refault_races, migrations=migrations, other_lines=other_lines,
        damaged_lines=damaged_lines, balloon_thread=balloon_thread, aslr=aslr,
    )  # fmt: skip
    with _progress(f"writing {output.name}", not quiet) as progress:
        res = generate(sc, output, fmt, truth_path=truth, progress=progress)
    sys.stdout.write(res.summary() + "\n")


def main() -> None:
    """Entry point: run the app, turning tracetool errors into one line and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # click returns typer.Exit codes in this mode
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except TracetoolError as exc:
        sys.stderr.write(f"tracetool: error: {exc}\n")
        sys.exit(EXIT_INPUT)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("tracetool: interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors have exit codes; others are bugs
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click.ClickException
            exc.show()
            sys.exit(EXIT_INPUT)
        if os.environ.get("TRACETOOL_DEBUG"):
            raise
        sys.stderr.write(
            f"tracetool: internal error: {type(exc).__name__}: {exc} "
            "(a bug; set TRACETOOL_DEBUG=1 for a traceback and please report it)\n"
        )
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
