"""The command line: output, JSON keys, exit codes, one-line errors, convert round trips."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from tests.conftest import DST_EXCERPT, MIXED, SRC_EXCERPT
from tests.conftest import run_cli as run


def grep_count(path, pattern: str) -> int:
    """What ``zcat | grep -c`` says: an expectation computed outside tracetool."""
    cat = "zcat" if str(path).endswith(".gz") else "cat"
    proc = subprocess.run(
        f"{cat} '{path}' | grep -c -- '{pattern}'", shell=True, capture_output=True, text=True
    )
    return int(proc.stdout.strip() or 0)


def test_analyze_json_has_the_documented_keys(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "analyze", DST_EXCERPT, "--json")
    assert code == 0
    s = json.loads(out)
    for key in (
        "format",
        "lines",
        "events",
        "other_lines",
        "rejected_lines",
        "event_counts",
        "first_ts_ns",
        "last_ts_ns",
    ):
        assert key in s
    assert s["format"] == "qemu-log"
    assert s["lines"] == s["events"] + s["other_lines"] + s["rejected_lines"]


@pytest.mark.parametrize("trace", [DST_EXCERPT, SRC_EXCERPT])
def test_analyze_counts_match_grep(monkeypatch, capsys, trace):
    _, out, _ = run(monkeypatch, capsys, "analyze", trace, "--json")
    s = json.loads(out)
    with gzip.open(trace, "rb") as f:
        assert s["lines"] == f.read().count(b"\n")
    for event, n in s["event_counts"].items():
        assert n == grep_count(trace, f":{event} "), event
    assert s["rejected_lines"] == 0 and s["other_lines"] == 0


def test_analyze_dst_excerpt_sees_the_postcopy_phases(monkeypatch, capsys):
    _, out, _ = run(monkeypatch, capsys, "analyze", DST_EXCERPT, "--json")
    s = json.loads(out)
    assert s["side"] == "destination"
    assert s["qemu_version"]["exact"] == "7.2.22"
    states = [p["state"] for p in s["phases"]]
    for expected in (
        "active",
        "postcopy advise (D)",
        "postcopy listen (D)",
        "postcopy-active",
        "postcopy run (D)",
        "completed",
    ):
        assert expected in states
    assert (
        states.index("postcopy listen (D)")
        < states.index("postcopy run (D)")
        < states.index("completed")
    )
    assert s["postcopy"]["pages_placed"] == grep_count(DST_EXCERPT, ":postcopy_place_page ")
    assert s["balloon"]["requests"] == grep_count(DST_EXCERPT, ":virtio_balloon_handle_output ")


def test_analyze_human_output(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "analyze", DST_EXCERPT)
    assert code == 0
    assert "QEMU 7.2.22" in out and "ID@SEC.USEC:" in out
    assert "9,854 lines = 9,854 events + 0 other + 0 rejected" in out
    assert "postcopy run (D)" in out


def test_mixed_sample_counts(monkeypatch, capsys):
    _, out, _ = run(monkeypatch, capsys, "analyze", MIXED, "--json")
    s = json.loads(out)
    assert (s["lines"], s["events"], s["other_lines"], s["rejected_lines"]) == (22, 15, 4, 3)
    assert s["line_shapes"] == {"ID@SEC.USEC:": 10, "ISO-8601": 4, "no prefix": 1}


def test_strict_stops_at_the_first_bad_line_with_file_and_line(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "analyze", MIXED, "--strict")
    assert code == 2
    assert out == ""
    assert err.strip().startswith(f"tracetool: error: {MIXED}:18: expected an event name")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "/nonexistent/trace.log"], "/nonexistent/trace.log: no such file"),
        (["analyze", MIXED, "--format", "nope"], "unknown input format 'nope'"),
        (["convert", MIXED, "-o", "out.xlsx"], "cannot tell the output format"),
        (["analyze", MIXED, "--trace-events", "/nonexistent/te"], "cannot read trace-events file"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(monkeypatch, capsys, args, message):
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_binary_input_exit_2(monkeypatch, capsys, tmp_path):
    p = tmp_path / "core"
    p.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(1000))
    code, _, err = run(monkeypatch, capsys, "analyze", p)
    assert code == 2 and f"{p}: byte 7: binary data" in err


def test_typer_usage_error_is_exit_2(monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "analyze")
    assert code == 2 and "Missing argument" in err


@pytest.mark.parametrize("ext", ["parquet", "feather", "arrows", "csv"])
def test_convert_round_trip(monkeypatch, capsys, tmp_path, ext):
    import tracetool

    out_path = tmp_path / f"out.{ext}"
    code, _, err = run(monkeypatch, capsys, "convert", DST_EXCERPT, "-o", out_path)
    assert code == 0 and "wrote 9,854 rows" in err
    ref = tracetool.load(DST_EXCERPT).events
    if ext == "parquet":
        got = pq.read_table(out_path)
    elif ext == "feather":
        got = ipc.open_file(out_path).read_all()
    elif ext == "arrows":
        got = ipc.open_stream(out_path).read_all()
    else:
        got = pacsv.read_csv(out_path)
    assert got.num_rows == ref.num_rows
    assert got["line"].to_pylist() == ref["line"].to_pylist()
    assert [str(x) for x in got["event"].to_pylist()] == [str(x) for x in ref["event"].to_pylist()]


def test_convert_typed_event_table(monkeypatch, capsys, tmp_path):
    import tracetool

    out_path = tmp_path / "place.parquet"
    code, _, _ = run(
        monkeypatch,
        capsys,
        "convert",
        DST_EXCERPT,
        "-o",
        out_path,
        "--table",
        "postcopy_place_page",
    )
    assert code == 0
    got = pq.read_table(out_path)
    assert got.column_names == ["ts_ns", "tid", "line", "host_addr"]
    assert got.equals(tracetool.load(DST_EXCERPT).table("postcopy_place_page"))


def test_convert_rejected_table(monkeypatch, capsys, tmp_path):
    out_path = tmp_path / "rej.csv"
    code, _, _ = run(monkeypatch, capsys, "convert", MIXED, "-o", out_path, "--table", "rejected")
    assert code == 0
    assert pacsv.read_csv(out_path)["line"].to_pylist() == [18, 19, 22]


def test_console_script_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "tracetool.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "analyze" in proc.stdout and "convert" in proc.stdout


def test_convert_event_with_two_variants_keeps_line_order(monkeypatch, capsys, tmp_path):
    import tracetool

    out_path = tmp_path / "faults.parquet"
    code, _, _ = run(
        monkeypatch,
        capsys,
        "convert",
        MIXED,
        "-o",
        out_path,
        "-t",
        "postcopy_ram_fault_thread_request",
    )
    assert code == 0
    got = pq.read_table(out_path)
    assert got.column_names == ["ts_ns", "tid", "line", "hostaddr", "ramblock", "offset", "pid"]
    assert got["line"].to_pylist() == [2, 7]
    assert got["pid"].to_pylist() == [None, 23149]
    assert got.equals(tracetool.load(MIXED).table("postcopy_ram_fault_thread_request"))


def test_convert_uncatalogued_event(monkeypatch, capsys, tmp_path):
    out_path = tmp_path / "u.csv"
    code, _, _ = run(
        monkeypatch, capsys, "convert", MIXED, "-o", out_path, "-t", "some_uncatalogued_event"
    )
    assert code == 0
    assert pacsv.read_csv(out_path)["args"].to_pylist() == ["whatever 1 2 3"]
