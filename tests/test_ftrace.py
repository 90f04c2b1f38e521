"""The ftrace format: QEMU's ftrace backend read back from the kernel's trace file or from
``trace-cmd report``.

The samples are written by hand from the documented layouts (kernel
``Documentation/trace/ftrace.rst`` "Output format", the ``irq-info``/``record-tgid`` options,
trace-cmd report's ``print`` event lines) and QEMU's ftrace backend (``"<name> " fmt "\\n"`` into
a 512-byte buffer written to ``trace_marker``; shared reference section 1.5).
"""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

import parsers
import tracetool
from parsers import ftrace
from tests.conftest import DST_EXCERPT
from tracetool.errors import FormatError
from tracetool.inputs import open_input

PAD = "x" * 600
# A QEMU record longer than the backend's buffer: what reached trace_marker is its first 511 bytes.
LONG_RECORD = ("qmp_exit_query_status " + '{"status": "postmigrate", "running": false} ' + PAD)[
    :511
]

SPACE = " "  # QEMU prints "name " for an event with an empty format

# /sys/kernel/tracing/trace of a 6.x kernel (5 flag columns, record-tgid on for one line).
TRACE_FILE = f"""\
# tracer: nop
#
# entries-in-buffer/entries-written: 14/14   #P:4
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
 qemu-system-x86-23141   [002] .....  5123.456789: tracing_mark_write: loadvm_postcopy_handle_advise{SPACE}
 qemu-system-x86-23141   [002] .....  5123.456800: tracing_mark_write: postcopy_init_range pc.ram: 0x7f0c20000000 offset=0x0 length=0x40000000
          <idle>-0       [001] d..2.  5123.456810: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=CPU 0/KVM next_pid=23150 next_prio=120
 postcopy/listen-23149   [003] .....  5123.500000: tracing_mark_write: postcopy_place_page host=0x7f0c2a9f5000
       CPU 0/KVM-23150 (  23141) [001] .....  5123.600000: tracing_mark_write: virtio_balloon_handle_output section name: pc.ram gpa: 0x9f5000
       CPU 0/KVM-23150   [001] .....  5123.600010: tracing_mark_write: virtio_balloon_set_config actual: 1 oldactual: 0
       CPU 0/KVM-23150   [001] .....  5123.600020: tracing_mark_write: B|23150|vcpu_run

 qemu-system-x86-23141   [002] .....  5123.700000: tracing_mark_write: postcopy_place_page host=zzz
 qemu-system-x86-23141   [002] .....  5123.700001: tracing_mark_write: {LONG_RECORD}
 qemu-system-x86-23141   [002] .....  5123.70
garbage tracing_mark_write: postcopy_place_page host=0x1000
          <idle>-0       [000] d.h1.  5123.800000: irq_handler_entry: irq=24 name=virtio0-input.0
 qemu-system-x86-23141   [002] .....  5123.900000: tracing_mark_write: migrate_set_state new state completed
"""

# trace-cmd report: header lines, the print event, a 9-digit timestamp, an unresolved symbol
# (libtraceevent prints the address with the 's' of '%ps'), and the -l latency layout.
REPORT = """\
version = 6
CPU 0 is empty
cpus=4
 qemu-system-x86-23141 [002]  5123.456789: print:                tracing_mark_write: loadvm_postcopy_handle_listen enter
 postcopy/listen-23149 [003]  5123.500000123: print:                tracing_mark_write: postcopy_place_page host=0x7f0c2a9f5000
 postcopy/listen-23149 [003]  5123.500001: print:                ffffffff8120d3e4s: postcopy_place_page_zero host=0x7f0c2a9f6000
 fault-default-23148   2d..1. 5123.500002: print:                tracing_mark_write: postcopy_ram_fault_thread_request Request for HVA=0x7f0c2a9f7123 rb=pc.ram offset=0x9f7000 pid=23150
 qemu-system-x86-23141 [002]  5123.500003: sched_switch:         qemu-system-x86:23141 [120] S ==> swapper/2:0 [120]
 qemu-system-x86-23141 [002]  5123.500004: print:                tracing_mark_write: Hello from another program
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def counts(t) -> tuple[int, int, int, int]:
    s = t.stats
    return s.lines, s.events, s.other_lines, s.rejected_lines


def test_trace_file_layout(tmp_path, engine):
    t = tracetool.load(write(tmp_path, "trace", TRACE_FILE), engine=engine)
    assert t.stats.format == "ftrace"
    assert counts(t) == (26, 6, 17, 3)
    assert t.stats.lines == t.stats.events + t.stats.other_lines + t.stats.rejected_lines
    ev = t.events.to_pylist()
    assert [(r["event"], r["line"], r["tid"], r["ts_ns"]) for r in ev] == [
        ("loadvm_postcopy_handle_advise", 13, 23141, 5123_456789000),
        ("postcopy_init_range", 14, 23141, 5123_456800000),
        ("postcopy_place_page", 16, 23149, 5123_500000000),
        ("virtio_balloon_handle_output", 17, 23150, 5123_600000000),
        ("virtio_balloon_set_config", 18, 23150, 5123_600010000),
        ("migrate_set_state", 26, 23141, 5123_900000000),
    ]
    # typed values, decoded by the catalog as for a log line
    assert t.table("postcopy_init_range").to_pylist() == [
        {
            "ts_ns": 5123_456800000,
            "tid": 23141,
            "line": 14,
            "ramblock": "pc.ram",
            "host_addr": 0x7F0C20000000,
            "offset": 0,
            "length": 1 << 30,
        }
    ]
    assert t.table("postcopy_place_page")["host_addr"].to_pylist() == [0x7F0C2A9F5000]
    assert t.table("virtio_balloon_handle_output")["gpa"].to_pylist() == [0x9F5000]
    assert t.table("virtio_balloon_set_config").select(["actual"]).to_pylist() == [{"actual": 1}]
    assert t.table("migrate_set_state")["new_state"].to_pylist() == ["completed"]
    assert t.events["args"][0].as_py() == ""  # "name " of an empty format
    # other: header, the kernel's own events, a marker that is not a QEMU record, a blank line,
    # a line cut before its marker (nothing says it was one)
    other = dict(zip(t.other["line"].to_pylist(), t.other["text"].to_pylist(), strict=True))
    assert sorted(other) == [*range(1, 13), 15, 19, 20, 23, 25]
    assert other[19].endswith("tracing_mark_write: B|23150|vcpu_run")
    assert other[20] == ""
    # rejected: bad arguments, the record cut at 511 bytes, a damaged marker line
    rej = {r["line"]: r["reason"] for r in t.rejected.to_pylist()}
    assert sorted(rej) == [21, 22, 24]
    assert rej[21] == "arguments of postcopy_place_page do not match its format 'host=%p'"
    assert rej[22] == ftrace.REASON_TRUNCATED
    assert rej[24] == ftrace.REASON_DAMAGED
    assert t.rejected["text"][0].as_py().startswith(" qemu-system-x86-23141")
    assert dict(t.stats.shapes) == {ftrace.SHAPE_TRACE: 6}
    assert t.stats.clock.startswith("kernel trace clock")


def test_a_truncated_record_whose_format_ends_in_text_is_still_rejected(tmp_path):
    """``loadvm_postcopy_handle_listen "%s"`` would match any cut text: the 511-byte rule
    rejects it anyway; 510 bytes (511 with the newline QEMU wrote) is a whole record."""
    whole = ("loadvm_postcopy_handle_listen " + PAD)[:510]
    cut = ("loadvm_postcopy_handle_listen " + PAD)[:511]
    text = "".join(
        f" qemu-system-x86-1 [000] .... 1.00000{i}: tracing_mark_write: {p}\n"
        for i, p in enumerate((whole, cut))
    )
    t = tracetool.load(write(tmp_path, "trace", "# tracer: nop\n" + text))
    assert counts(t) == (3, 1, 1, 1)
    assert t.events["line"].to_pylist() == [2]
    assert t.rejected.to_pylist()[0]["reason"] == ftrace.REASON_TRUNCATED


def test_trace_cmd_report_layout(tmp_path, engine):
    t = tracetool.load(write(tmp_path, "report.txt", REPORT), engine=engine)
    assert t.stats.format == "ftrace"
    assert counts(t) == (9, 4, 5, 0)
    ev = t.events.to_pylist()
    assert [(r["event"], r["line"], r["tid"], r["ts_ns"]) for r in ev] == [
        ("loadvm_postcopy_handle_listen", 4, 23141, 5123_456789000),
        ("postcopy_place_page", 5, 23149, 5123_500000123),  # 9 digits: ns
        ("postcopy_place_page_zero", 6, 23149, 5123_500001000),
        ("postcopy_ram_fault_thread_request", 7, 23148, 5123_500002000),
    ]
    assert t.table("postcopy_ram_fault_thread_request").to_pylist()[0] == {
        "ts_ns": 5123_500002000,
        "tid": 23148,
        "line": 7,
        "hostaddr": 0x7F0C2A9F7123,
        "ramblock": "pc.ram",
        "offset": 0x9F7000,
        "pid": 23150,
    }
    assert t.table("loadvm_postcopy_handle_listen")["str"].to_pylist() == ["enter"]
    assert t.other["line"].to_pylist() == [1, 2, 3, 8, 9]
    assert dict(t.stats.shapes) == {ftrace.SHAPE_REPORT: 4}


@pytest.mark.parametrize(
    "head, expected",
    [
        (TRACE_FILE, True),
        (REPORT, True),
        ("# tracer: function\n", True),
        (" bash-1 [000] .... 1.000000: tracing_mark_write: hello\n", True),
        (" bash-1 [000]  1.000000: print:  ffffffff8120d3e4s: hello\n", True),
        ("23141@1447173100.512239:postcopy_place_page host=0x7f0c2a9f5000\n", False),
        ("cpus=4\n bash-1 [000]  1.000000: sched_switch: x\n", True),  # markers further down
        ("  CPU 0/KVM-23150 (  23141) [001] d..1. 5123.000001: kvm_exit: reason EPT\n", True),
        ("[000] 1.000000: x\n", False),
        ("bash-1 [000]\n", False),
    ],
)
def test_sniff(head, expected):
    assert ftrace.sniff(head.encode()) is expected


def test_auto_detection_and_format_option(tmp_path):
    for name, text in (("a.txt", TRACE_FILE), ("b.txt", REPORT)):
        path = write(tmp_path, name, text)
        inp = open_input(path)
        try:
            assert parsers.detect(inp) == "ftrace"
        finally:
            inp.close()
        assert tracetool.load(path, format="ftrace").stats.events > 0
    gz = tmp_path / "trace.gz"
    gz.write_bytes(gzip.compress(TRACE_FILE.encode()))
    t = tracetool.load(gz)
    assert (t.stats.format, t.stats.compression, t.stats.events) == ("ftrace", "gzip", 6)


def test_strict_reports_the_ftrace_line(tmp_path):
    with pytest.raises(FormatError) as exc:
        tracetool.load(write(tmp_path, "trace", TRACE_FILE), strict=True)
    assert exc.value.line == 21
    assert str(exc.value).endswith(
        "trace:21: arguments of postcopy_place_page do not match its format 'host=%p'"
    )


def test_small_blocks_keep_line_numbers(tmp_path):
    from parsers.base import ParseOptions

    path = write(tmp_path, "trace", TRACE_FILE)
    ref = tracetool.load(path)
    t = tracetool.load(path, options=ParseOptions(block_size=300))
    assert counts(t) == counts(ref)
    assert t.events.to_pylist() == ref.events.to_pylist()
    assert t.rejected.to_pylist() == ref.rejected.to_pylist()
    assert t.other.to_pylist() == ref.other.to_pylist()


def _as_ftrace(trace) -> tuple[str, int]:
    """The events of a log trace as the ftrace backend would have put them in the trace file:
    same thread ids and timestamps, records cut at 511 bytes. Returns (text, cut records)."""
    lines = ["# tracer: nop", "#"]
    cut = 0
    for r in trace.events.to_pylist():
        sec, usec = divmod(r["ts_ns"] // 1000, 1_000_000)
        payload = f"{r['event']} {r['args']}"
        if len(payload.encode()) > 510:
            payload, cut = payload.encode()[:511].decode("utf-8", "ignore"), cut + 1
        lines.append(f" qemu-system-x86-{r['tid']:<7d} [001] ..... {sec}.{usec:06d}: ")
        lines[-1] += f"tracing_mark_write: {payload}"
    return "\n".join(lines) + "\n", cut


def test_the_sample_trace_through_ftrace_gives_the_log_tables(tmp_path):
    """A real QEMU 7.2 trace rewritten as ftrace output decodes to the same typed tables (same
    ts/tid; lines shifted by the 2 header lines), except the records the 512-byte buffer cut."""
    log = tracetool.load(DST_EXCERPT)
    text, cut = _as_ftrace(log)
    t = tracetool.load(write(tmp_path, "trace", text))
    assert cut > 0
    assert counts(t) == (log.stats.lines + 2, log.stats.events - cut, 2, cut)
    assert set(t.rejected["reason"].to_pylist()) == {ftrace.REASON_TRUNCATED}
    cut_lines = {ln - 2 for ln in t.rejected["line"].to_pylist()}
    for name in log.event_names():
        want = log.table(name)
        keep = pa.array([ln not in cut_lines for ln in want["line"].to_pylist()])
        want = want.filter(keep)
        got = t.table(name) if want.num_rows else None
        if got is None:
            assert name not in t
            continue
        assert got.drop_columns(["line"]).equals(want.drop_columns(["line"])), name
        assert [x - 2 for x in got["line"].to_pylist()] == want["line"].to_pylist()


def test_replay_of_the_ftrace_sample_matches_the_log(tmp_path):
    log = tracetool.load(DST_EXCERPT)
    text, _ = _as_ftrace(log)
    t = tracetool.load(write(tmp_path, "trace", text))
    a = log.replay("no-inhibit").summary["policies"]["no-inhibit"]
    b = t.replay("no-inhibit").summary["policies"]["no-inhibit"]
    assert b["conflicts"] == a["conflicts"]
    assert b["inflate_pages"] == a["inflate_pages"] > 0


def test_counter_clock_and_symbol_options(tmp_path):
    """A counter trace clock prints an integer (kept as the raw count); the sym-offset and
    sym-addr options decorate the marker's symbol."""
    text = (
        "# tracer: nop\n"
        " qemu-system-x86-7 [000] ....  123456789: tracing_mark_write: loadvm_postcopy_handle_run \n"
        " qemu-system-x86-7 [000] ....  1.000002: tracing_mark_write+0x0/0x60: "
        "loadvm_postcopy_handle_run \n"
        " qemu-system-x86-7 [000] ....  1.000003: tracing_mark_write <ffffffff8120d3e4>: "
        "loadvm_postcopy_handle_run \n"
        " qemu-system-x86-7 [000] ....  1.000004: 0xffffffff8120d3e4: loadvm_postcopy_handle_run \n"
    )
    t = tracetool.load(write(tmp_path, "trace", text))
    assert t.events.select(["ts_ns", "line"]).to_pylist() == [
        {"ts_ns": 123456789, "line": 2},
        {"ts_ns": 1_000_002_000, "line": 3},
        {"ts_ns": 1_000_003_000, "line": 4},
    ]
    assert t.other["line"].to_pylist() == [1, 5]  # a bare address is trace-cmd's print only
