"""``tracetool synth``: seeded, realistic QEMU traces of balloon x postcopy migrations, with the
ground truth of what was planted written beside them.

>>> from tracetool.synth import Scenario, generate
>>> res = generate(Scenario(era="7.2", ram="256M", seed=1), "dst.log")  # doctest: +SKIP
>>> res.truth_path  # doctest: +SKIP
PosixPath('dst.truth.json')

See ``docs/synth.md`` for the scenario model, the eras, the outputs and the truth file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracetool.synth.scenario import ERAS, FORMATS, HELP, SCHEDULE, Era, Scenario, parse_size

TRUTH_SCHEMA = 1
_SUFFIXES = (".log", ".txt", ".jsonl", ".csv", ".parquet", ".simpletrace", ".st", ".bin")


@dataclass
class SynthResult:
    path: Path
    truth_path: Path
    format: str
    truth: dict
    seconds: float
    bytes: int

    @property
    def events(self) -> int:
        return self.truth["lines"]["events"]

    @property
    def lines(self) -> int:
        return self.truth["lines"]["lines"]

    def summary(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        t = self.truth
        pol = t["replay"]["policies"]["no-inhibit"]["conflicts"]
        return (
            f"wrote {self.path} ({self.format}, QEMU {t['trace']['qemu_version']}, "
            f"{len(t['replay']['windows'])} migration(s)): {self.lines:,} lines = "
            f"{self.events:,} events + {t['lines']['other']:,} other + "
            f"{t['lines']['rejected']:,} rejected, {self.bytes / 2**20:,.1f} MiB in "
            f"{self.seconds:.2f} s ({rate / 1e6:.2f} M lines/s, "
            f"{self.bytes / 2**20 / max(self.seconds, 1e-9):.0f} MiB/s); "
            f"{t['replay']['balloon_pages']:,} balloon pages, no-inhibit conflicts "
            f"{sum(pol.values()):,}; truth in {self.truth_path}"
        )


def truth_path_for(out: str | Path) -> Path:
    """``dst.log`` -> ``dst.truth.json`` (``.gz`` and the output's extension dropped)."""
    out = Path(out)
    name = out.name
    if name.endswith(".gz"):
        name = name[:-3]
    for suf in _SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            name = name[: -len(suf)]
            break
    return out.with_name(name + ".truth.json")


def generate(
    scenario: Scenario,
    out: str | Path,
    format: str = "log",
    *,
    truth_path: str | Path | None = None,
    chunk_rows: int = 1_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Generate the scenario into ``out`` in ``format`` and its truth file beside it."""
    from tracetool.errors import UsageError
    from tracetool.synth import emit
    from tracetool.synth.model import Model
    from tracetool.synth.truth import Truth
    from tracetool.synth.writers import WRITERS, ids_of

    if format not in WRITERS:
        raise UsageError(f"unknown output format {format!r}; expected one of {', '.join(FORMATS)}")
    if not Path(out).parent.is_dir():
        raise UsageError(f"cannot write {out}: {Path(out).parent} is not a directory")
    start = time.perf_counter()
    model = Model(scenario)
    writer = WRITERS[format](Path(out), model)
    try:
        rec = emit.run(model, writer, chunk_rows=chunk_rows, progress=progress)
    finally:
        writer.close()
    truth = Truth(model, rec, format, clock_offset_ns=writer.clock_offset_ns).to_dict()
    era = model.era
    other = rec.other + writer.extra_other
    lines = rec.events + other + rec.damaged
    shape = {"pid": "ID@SEC.USEC: (process id)", "tid": "ID@SEC.USEC: (thread id)",
             "iso": "ISO-8601"}[era.shape] if format == "log" else format  # fmt: skip
    doc = {
        "tracetool_synth": TRUTH_SCHEMA,
        "trace": {
            "path": Path(out).name,
            "format": format,
            "era": era.name,
            "qemu_version": era.version_text,
            "line_shape": shape,
            "thread_ids": ids_of(format, era),
            "clock": (
                "CLOCK_MONOTONIC ns (host boot a day before the trace)"
                if format == "simpletrace"
                else "wall clock (ns since the epoch)"
            ),
            "clock_offset_ns": writer.clock_offset_ns,
        },
        "scenario": scenario.to_dict(),
        "lines": {
            "lines": lines,
            "events": rec.events,
            "other": other,
            "rejected": rec.damaged,
            "planted_other_lines": scenario.other_lines if format == "log" else 0,
            "planted_damaged_lines": rec.damaged,
        },
        "event_counts": dict(sorted(rec.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        **truth,
    }
    tp = Path(truth_path) if truth_path else truth_path_for(out)
    tp.write_text(json.dumps(doc, indent=1) + "\n")
    seconds = time.perf_counter() - start
    return SynthResult(Path(out), tp, format, doc, seconds, Path(out).stat().st_size)


__all__ = [
    "ERAS",
    "FORMATS",
    "HELP",
    "SCHEDULE",
    "Era",
    "Scenario",
    "SynthResult",
    "generate",
    "parse_size",
    "truth_path_for",
]
