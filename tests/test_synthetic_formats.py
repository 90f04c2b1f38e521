"""Synthetic inputs: the canonical events table as JSON Lines / CSV / Parquet, and page-event
what-if files (docs/synthetic.md).

Round trips use the real QEMU 7.2 sample; the page-event scenarios' expected conflict counts
are derived from docs/replay.md ("Conflicts": the class of an inflate applied inside
LISTEN .. END comes from its host page's state; no-inhibit applies every inflate at its time).
"""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import parsers
import tracetool
from parsers import page_events
from tests.conftest import DST_EXCERPT
from tracetool.errors import FormatError, UsageError
from tracetool.inputs import open_input

AFTER, IN_FLIGHT, BEFORE = "discard-after-place", "discard-in-flight", "discard-before-arrival"
POLICIES = ("no-inhibit", "inhibit", "inhibit-discard", "defer")
HVA = page_events.DEFAULT_HVA


@pytest.fixture(scope="module")
def sample():
    return tracetool.load(DST_EXCERPT)


def names_as_text(events: pa.Table) -> pa.Table:
    i = events.schema.get_field_index("event")
    return events.set_column(i, "event", events["event"].cast(pa.string()))


def assert_same_trace(got, want) -> None:
    assert names_as_text(got.events).equals(names_as_text(want.events))
    assert got.event_counts() == want.event_counts()
    for name in want.event_names():
        assert got.table(name).equals(want.table(name)), name
    assert got.rejected.num_rows == 0


def detect(path) -> str:
    inp = open_input(path)
    try:
        return parsers.detect(inp)
    finally:
        inp.close()


# -- canonical events: round trips ----------------------------------------------------------


def write_jsonl(table: pa.Table, path, compress=False):
    text = "".join(json.dumps(r) + "\n" for r in names_as_text(table).to_pylist())
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_round_trip_jsonl(tmp_path, sample, engine):
    path = write_jsonl(sample.events, tmp_path / "events.jsonl")
    assert detect(path) == "synthetic-jsonl"
    t = tracetool.load(path, engine=engine)
    assert t.stats.format == "synthetic-jsonl"
    assert (t.stats.lines, t.stats.events) == (sample.stats.events, sample.stats.events)
    assert_same_trace(t, sample)


def test_round_trip_csv(tmp_path, sample, engine):
    path = tmp_path / "events.csv"
    pacsv.write_csv(names_as_text(sample.events), path)
    assert detect(path) == "synthetic-csv"
    t = tracetool.load(path, engine=engine)
    assert t.stats.format == "synthetic-csv"
    assert (t.stats.events, t.stats.other_lines) == (sample.stats.events, 1)  # + the header
    assert_same_trace(t, sample)


def test_round_trip_parquet(tmp_path, sample, engine):
    path = tmp_path / "events.parquet"
    pq.write_table(sample.events, path)  # dictionary-encoded event column, as convert writes
    assert detect(path) == "synthetic-parquet"
    t = tracetool.load(path, engine=engine)
    assert t.stats.format == "synthetic-parquet"
    assert_same_trace(t, sample)


def test_round_trip_in_small_blocks_and_compressed(tmp_path, sample):
    from parsers.base import ParseOptions

    path = write_jsonl(sample.events, tmp_path / "events.jsonl.gz", compress=True)
    t = tracetool.load(path, options=ParseOptions(block_size=64 << 10))
    assert t.stats.compression == "gzip"
    assert_same_trace(t, sample)
    csv_path = tmp_path / "events.csv"
    pacsv.write_csv(names_as_text(sample.events), csv_path)
    assert_same_trace(tracetool.load(csv_path, options=ParseOptions(block_size=64 << 10)), sample)
    pq_path = tmp_path / "events.parquet"
    pq.write_table(sample.events, pq_path, row_group_size=1000)
    assert_same_trace(tracetool.load(pq_path, options=ParseOptions(block_size=64 << 10)), sample)


def test_replay_of_a_round_trip_is_the_replay_of_the_log(tmp_path, sample):
    path = tmp_path / "events.parquet"
    pq.write_table(sample.events, path)
    a = sample.replay("no-inhibit").summary["policies"]["no-inhibit"]
    b = tracetool.load(path).replay("no-inhibit").summary["policies"]["no-inhibit"]
    assert a == b


# -- canonical events: optional columns, bad records ----------------------------------------


def test_minimal_columns_and_default_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(
        '{"event": "postcopy_place_page", "args": "host=0x7f0000005000"}\n'
        "\n"
        '{"event": "loadvm_postcopy_handle_run", "ts_ns": 12, "tid": 7}\n'
        '{"event": "my_tool_marker", "args": "anything at all", "extra": [1, 2]}\n'
    )
    t = tracetool.load(path)
    assert (t.stats.lines, t.stats.events, t.stats.other_lines) == (4, 3, 1)
    assert t.events.select(["ts_ns", "tid", "line", "args"]).to_pylist() == [
        {"ts_ns": None, "tid": None, "line": 1, "args": "host=0x7f0000005000"},
        {"ts_ns": 12, "tid": 7, "line": 3, "args": ""},
        {"ts_ns": None, "tid": None, "line": 4, "args": "anything at all"},
    ]
    assert t.table("postcopy_place_page")["host_addr"].to_pylist() == [0x7F0000005000]
    assert t.table("my_tool_marker")["args"].to_pylist() == ["anything at all"]


def test_csv_without_line_column_numbers_records_by_file_line(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "ts_ns,tid,event,args\n"
        "5,1000,postcopy_place_page,host=0x1000\n"
        "\n"
        '6,1000,migrate_set_state,"new state completed"\n'
    )
    t = tracetool.load(path)
    assert t.events["line"].to_pylist() == [2, 4]
    assert t.table("migrate_set_state")["new_state"].to_pylist() == ["completed"]
    assert t.other["line"].to_pylist() == [1, 3]


BAD_JSONL = (
    '{"ts_ns": 1, "event": "postcopy_place_page", "args": "host=0x1000"}\n'
    '{"ts_ns": "soon", "event": "postcopy_place_page", "args": "host=0x1000"}\n'
    "{not json\n"
    '{"ts_ns": 3, "event": "postcopy_place_page", "args": "host=zzz"}\n'
    '{"ts_ns": 4, "event": "not an event", "args": ""}\n'
    '{"ts_ns": 5, "tid": 99999999999, "event": "runstate_set"}\n'
    '{"ts_ns": 6, "event": "postcopy_place_page", "args": "host=0x2000", "line": 0}\n'
)


def test_bad_canonical_records_are_rejected(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(BAD_JSONL)
    t = tracetool.load(path)
    assert (t.stats.lines, t.stats.events, t.stats.rejected_lines) == (7, 1, 6)
    rej = {r["line"]: r["reason"] for r in t.rejected.to_pylist()}
    assert rej[2] == "column ts_ns: expected an integer, got 'soon'"
    assert rej[3].startswith("not a JSON object")
    assert rej[4] == "arguments of postcopy_place_page do not match its format 'host=%p'"
    assert rej[5] == "column event: 'not an event' is not an event name ([A-Za-z_][A-Za-z0-9_]*)"
    assert rej[6] == "column tid: outside int32"
    assert rej[7] == "column line: must be 1 or more"
    with pytest.raises(FormatError) as exc:
        tracetool.load(path, strict=True)
    assert (exc.value.line, exc.value.message) == (2, rej[2])


def test_bad_csv_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "ts_ns,tid,event,line,args\n"
        "1,1000,postcopy_place_page,,host=0x1000\n"
        "2,1000,postcopy_place_page\n"
        "x,1000,postcopy_place_page,,host=0x1000\n"
    )
    t = tracetool.load(path)
    assert (t.stats.lines, t.stats.events, t.stats.other_lines, t.stats.rejected_lines) == (
        4,
        1,
        1,
        2,
    )
    assert t.rejected.select(["line", "reason"]).to_pylist() == [
        {"line": 3, "reason": "row has 3 fields, the header has 5"},
        {"line": 4, "reason": "column ts_ns: not an integer"},
    ]


def test_parquet_without_event_column_is_a_format_error(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"ts_ns": [1], "host_addr": [2]}), path)
    with pytest.raises(FormatError, match="without an 'event' column"):
        tracetool.load(path)


@pytest.mark.parametrize(
    "head, fmt",
    [
        (b"PAR1\x15\x04", "synthetic-parquet"),
        (b'{"ts_ns": 1, "event": "x", "args": ""}\n', "synthetic-jsonl"),
        (b'{"event": "x", "args": ""}\n', "synthetic-jsonl"),
        (b"ts_ns,tid,event,line,args\n1,2,x,3,\n", "synthetic-csv"),
        (b'"ts_ns","tid","event","line","args"\n', "synthetic-csv"),
        (b"time,kind,offset\n1.0,place,0x5000\n", "page-events"),
        (b"# ram_size=4G\n\nkind,gpa\ninflate,0x5000\n", "page-events"),
        (b'{"kind": "advise"}\n{"kind": "listen"}\n', "page-events"),
        (b'{"time": 1, "kind": "place", "offset": 4096}\n', "page-events"),
        (b"23141@1447173100.512239:postcopy_place_page host=0x7f0c2a9f5000\n", "qemu-log"),
        (b'{"event": "x"}\n', "qemu-log"),  # neither ts_ns nor args: not a canonical record
        (b"kind,event\nplace,x\n", "qemu-log"),
    ],
)
def test_detection(tmp_path, head, fmt):
    path = tmp_path / "x"
    path.write_bytes(head)
    assert detect(path) == fmt


def test_format_option_is_checked(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("time,kind,offset\n1.0,place,0x5000\n")
    assert tracetool.load(path, format="page-events").stats.format == "page-events"
    with pytest.raises(UsageError, match="looks like page-events"):
        tracetool.load(path, format="synthetic-csv")


# -- page events ----------------------------------------------------------------------------


def page_csv(tmp_path, rows: str, header: str = "time,kind,ramblock,offset,gpa,length", pre=""):
    path = tmp_path / "what-if.csv"
    path.write_text(pre + header + "\n" + rows)
    return path


def conflicts(res, policy: str) -> dict[str, int]:
    return res.summary["policies"][policy]["conflicts"]


def conf(after=0, in_flight=0, before=0) -> dict[str, int]:
    return {AFTER: after, IN_FLIGHT: in_flight, BEFORE: before}


# One scenario per conflict class, on separate pages of pc.ram (1 GiB: GPA = offset):
#   0x5000 placed 4.0, inflated 5.0                  -> PRESENT: discard-after-place
#   0x6000 fault 4.0, inflated 5.0, placed 6.1       -> REQUESTED: discard-in-flight
#   0x7000 received 4.0, inflated 5.0, placed 6.0    -> IN_TRANSIT: discard-in-flight
#   0x8000 inflated 5.0, placed 6.2                  -> placed later: discard-before-arrival
#   0x9000 inflated 5.0, never placed                -> no conflict
#   0xa000 inflated 5.0, placed 5.001                -> before-arrival, in flight with a 1 ms
#                                                       race window
# The receive's page is that of the next place row in the file (QEMU's stream places a
# received page right after it), so the 0x7000 row comes before the 0xa000 one; the replay
# orders events by time, not by file position.
SCENARIO = """\
1.0,advise,,,,
2.0,discard,pc.ram,0x100000,,0x2000
3.0,listen,,,,
3.1,run,,,,
4.0,place,pc.ram,0x5000,,
4.0,fault,pc.ram,0x6000,,
4.0,receive,pc.ram,0x7000,,
5.0,inflate,,,0x5000,
5.0,inflate,,,0x6000,0x1000
5.0,inflate,pc.ram,0x7000,,
5.0,inflate,,,0x8000,
5.0,inflate,,,0x9000,
5.0,inflate,,,0xa000,
6.0,place,pc.ram,0x7000,,
5.001,place,pc.ram,0xa000,,
6.1,place,pc.ram,0x6000,,
6.2,place,pc.ram,0x8000,,
9.0,end,,,,
9.5,cleanup,,,,
"""


def test_page_events_every_conflict_class(tmp_path):
    path = page_csv(tmp_path, SCENARIO)
    t = tracetool.load(path)
    assert t.stats.format == "page-events"
    assert t.rejected.num_rows == 0
    res = t.replay()
    assert conflicts(res, "no-inhibit") == conf(after=1, in_flight=2, before=2)
    for p in ("inhibit", "inhibit-discard", "defer"):
        assert conflicts(res, p) == conf(), p
    pol = res.summary["policies"]
    assert pol["no-inhibit"]["inflate_pages_in_window"] == 6
    assert (pol["inhibit"]["dropped_pages"], pol["inhibit-discard"]["dropped_pages"]) == (6, 6)
    assert pol["defer"]["deferred_pages"] == 6
    assert res.summary["direction_evidence"] == {"set_config": 6}
    # conflicts point back to the rows of the file (line 1 is the header)
    rows = {r["offset"]: r for r in res.conflicts.to_pylist()}
    assert (rows[0x5000]["class"], rows[0x5000]["line"], rows[0x5000]["related_line"]) == (
        AFTER,
        9,
        6,
    )
    assert (rows[0x6000]["class"], rows[0x6000]["related_line"]) == (IN_FLIGHT, 7)
    assert (rows[0x7000]["class"], rows[0x7000]["related_line"]) == (IN_FLIGHT, 8)
    assert (rows[0x8000]["class"], rows[0x8000]["related_line"]) == (BEFORE, 18)
    assert rows[0xA000]["ts_ns"] == 5_000_000_000
    assert rows[0xA000]["related_ts_ns"] == 5_001_000_000
    race = t.replay("no-inhibit", race_window_ns=1_000_000)
    assert conflicts(race, "no-inhibit") == conf(after=1, in_flight=3, before=1)


def test_page_events_windows_and_refault(tmp_path):
    """Placed 4.0, inflated 5.0, deflated 6.0 in the window: the after-place conflict expects a
    refault; an inflate before LISTEN is applied outside every window (no conflict)."""
    path = page_csv(
        tmp_path,
        "1.0,advise,,,,\n"
        "2.5,inflate,,,0x6000,\n"
        "3.0,listen,,,,\n"
        "4.0,place,pc.ram,0x5000,,\n"
        "4.0,place,pc.ram,0x6000,,\n"
        "5.0,inflate,,,0x5000,\n"
        "6.0,deflate,,,0x5000,\n"
        "9.0,end,,,,\n",
    )
    res = tracetool.load(path).replay()
    assert conflicts(res, "no-inhibit") == conf(after=1)
    assert res.conflicts.to_pylist()[0]["refault_expected"] is True
    assert res.summary["policies"]["no-inhibit"]["refault_expected"] == 1
    w = res.summary["windows"][0]
    assert (w["advise_ns"], w["listen_ns"], w["end_ns"]) == (
        1_000_000_000,
        3_000_000_000,
        9_000_000_000,
    )
    for p in POLICIES:  # no discard row: DISCARD = LISTEN, so 2.5 is outside every window
        assert res.summary["policies"][p]["inflate_pages_in_window"] == 1, p
        assert res.summary["policies"][p]["inflate_pages"] == 2, p


def test_page_events_translation(tmp_path):
    """What the rows become: events, args, threads, helper line numbers, lines count."""
    path = page_csv(
        tmp_path,
        "1.0,advise,,,,\n"
        "2.0,discard,pc.ram,0x9000,,0x3000\n"
        "3.0,listen,,,,\n"
        "3.5,load,pc.ram,0x1000,,\n"
        "4.0,place,pc.ram,0x5000,,0x2000\n"
        "5.0,inflate,,,0x5000,0x2000\n"
        "6.0,deflate,pc.ram,0x6000,,\n"
        "9.0,end,,,,\n"
        "9.5,cleanup,,,,\n",
        pre="# ramblock=pc.ram size=1G hva=0x7f1000000000\n# a plain comment\n",
    )
    t = tracetool.load(path)
    n_file = 12  # 2 comments + header + 9 rows
    got = [(r["line"], r["tid"], r["event"], r["args"]) for r in t.events.to_pylist()]
    hva = 0x7F1000000000
    assert got == [
        (4, 1000, "loadvm_postcopy_handle_advise", ""),
        (13, 1000, "postcopy_init_range", f"pc.ram: {hva:#x} offset=0x0 length=0x40000000"),
        (5, 1000, "loadvm_postcopy_ram_handle_discard", ""),
        (14, 1000, "ram_discard_range", "pc.ram: start: 9000 3000"),
        (6, 1000, "loadvm_postcopy_handle_listen", "enter"),
        (15, 2000, "postcopy_ram_listen_thread_start", ""),
        (16, 2000, "migrate_set_state", "new state postcopy-active"),
        (7, 1000, "ram_load_loop", f"pc.ram: addr: 0x1000 flags: 0x8 host: {hva + 0x1000:#x}"),
        (8, 2000, "postcopy_place_page", f"host={hva + 0x5000:#x}"),
        (17, 2000, "postcopy_place_page", f"host={hva + 0x6000:#x}"),
        (9, 100000, "virtio_balloon_handle_output", "section name: pc.ram gpa: 0x5000"),
        (18, 100000, "virtio_balloon_handle_output", "section name: pc.ram gpa: 0x6000"),
        (19, 100000, "virtio_balloon_set_config", "actual: 3 oldactual: 1"),
        (10, 100001, "virtio_balloon_handle_output", "section name: pc.ram gpa: 0x6000"),
        (20, 100001, "virtio_balloon_set_config", "actual: 2 oldactual: 3"),
        (11, 2000, "postcopy_ram_listen_thread_exit", ""),
        (21, 2000, "postcopy_ram_incoming_cleanup_entry", ""),
        (12, 2000, "postcopy_ram_incoming_cleanup_exit", ""),
        (22, 2000, "migrate_set_state", "new state completed"),
    ]
    assert (t.stats.lines, t.stats.events, t.stats.other_lines) == (n_file + 10, 19, 3)
    assert t.table("ram_discard_range").select(["start", "len"]).to_pylist() == [
        {"start": 0x9000, "len": 0x3000}
    ]
    # helpers share their row's time
    ts = dict(zip(t.events["line"].to_pylist(), t.events["ts_ns"].to_pylist(), strict=True))
    assert ts[17] == ts[8] == 4_000_000_000


def test_page_events_without_times_follow_the_file_order(tmp_path):
    """No time column: ts_ns is null and the replay takes the file's order. With no times
    there is no race window: the requested page is in flight, the absent page placed later
    arrives after the discard (before-arrival), as in the timed scenario."""
    path = tmp_path / "order.jsonl"
    path.write_text(
        '{"kind": "advise"}\n'
        '{"kind": "listen"}\n'
        '{"kind": "place", "offset": "0x5000"}\n'
        '{"kind": "fault", "offset": 24576}\n'
        '{"kind": "inflate", "gpa": "0x5000"}\n'
        '{"kind": "inflate", "gpa": "0x6000"}\n'
        '{"kind": "inflate", "gpa": "0x8000"}\n'
        '{"kind": "place", "offset": "0x6000"}\n'
        '{"kind": "place", "offset": "0x8000"}\n'
        '{"kind": "end"}\n'
    )
    t = tracetool.load(path)
    assert t.stats.format == "page-events"
    assert t.events["ts_ns"].null_count == t.events.num_rows
    res = t.replay()
    assert conflicts(res, "no-inhibit") == conf(after=1, in_flight=1, before=1)
    for p in ("inhibit", "inhibit-discard", "defer"):
        assert conflicts(res, p) == conf(), p


def test_page_events_high_memory_and_other_blocks(tmp_path):
    """pc.ram of 4 GiB (x86 split at 2 GiB): GPA 0x100001000 is offset 0x80001000. A second
    block gets its own HVA range after pc.ram's."""
    path = page_csv(
        tmp_path,
        "1,advise,,,,\n"
        "3,listen,,,,\n"
        "4,place,pc.ram,0x80001000,,\n"
        "4,place,pc.bios,0x3000,,\n"
        "5,inflate,,,0x100001000,\n"
        "9,end,,,,\n",
        pre="# ram_size=4G\n# ramblock=pc.bios size=256K\n",
    )
    t = tracetool.load(path)
    assert t.rejected.num_rows == 0
    init = t.table("postcopy_init_range").to_pylist()
    assert [(r["ramblock"], r["host_addr"], r["offset"], r["length"]) for r in init] == [
        ("pc.ram", HVA, 0, 4 << 30),
        ("pc.bios", HVA + (4 << 30), 4 << 30, 256 << 10),
    ]
    assert t.table("postcopy_place_page")["host_addr"].to_pylist() == [
        HVA + 0x80001000,
        HVA + (4 << 30) + 0x3000,
    ]
    res = t.replay("no-inhibit")
    assert conflicts(res, "no-inhibit") == conf(after=1)
    assert res.conflicts.to_pylist()[0]["offset"] == 0x80001000


def test_page_events_qemu_version_and_page_size_directives(tmp_path):
    path = page_csv(
        tmp_path,
        "1,advise,,,,\n3,listen,,,,\n4,place,pc.ram,0x200000,,0x400000\n9,end,,,,\n",
        pre="# qemu_version=4.2.1\n# page_size=2M\n",
    )
    t = tracetool.load(path)
    assert t.table("postcopy_place_page")["host_addr"].to_pylist() == [
        HVA + 0x200000,
        HVA + 0x400000,
    ]
    assert t.table("qmp_exit_query_version").num_rows == 1
    assert t.replay("qemu").summary["qemu_policy"]["policy"] == "inhibit"


BAD_ROWS = """\
1.0,advise,,,,
x,place,pc.ram,0x5000,,
2.0,teleport,pc.ram,0x5000,,
3.0,place,pc.ram,0x5zz,,
4.0,place,pc.ram,,,
5.0,place,pc.ram,0x5000,0x5000,
6.0,place,pc.ram,0x5001,,
7.0,place,pc.ram,0x40000000,,
8.0,inflate,,,0x5000,0x1800
,place,pc.ram,0x5000,,
9.0,place,pc ram,0x5000,,
10.0,place,pc.ram,0x5000,,
"""


def test_bad_page_event_rows_are_rejected_naming_row_and_column(tmp_path):
    path = page_csv(tmp_path, BAD_ROWS + "1,2\n")
    t = tracetool.load(path)
    rej = {r["line"]: r["reason"] for r in t.rejected.to_pylist()}
    assert rej == {
        3: "row 2: column time: not a number of seconds",
        4: "row 3: column kind: 'teleport' is not a page-event kind (expected one of "
        + ", ".join(page_events.KINDS)
        + ")",
        5: "row 4: column offset: not a number (decimal or 0x hex, optional K/M/G/T suffix)",
        6: "row 5: column offset (or gpa): required for place",
        7: "row 6: columns offset and gpa: give one, not both",
        8: "row 7: column offset: 0x5001 is not aligned to 0x1000",
        9: "row 8: column offset: 0x40000000 + length 0x1000 is beyond the end of pc.ram "
        "(size 0x40000000; declare it with '# ramblock=pc.ram size=...' or a ram_size column)",
        10: "row 9: column length: 0x1800 is not a multiple of 4 KiB (a balloon request)",
        11: "row 10: column time (or ts_ns): missing (every row needs a time when the file has times)",
        12: "row 11: column ramblock: a RAM block name has no white space",
        14: "row 13: row has 2 fields, the header has 6",
    }
    assert t.events["line"].to_pylist()[0] == 2
    assert 13 in t.events["line"].to_pylist()
    assert t.stats.lines == t.stats.events + t.stats.other_lines + t.stats.rejected_lines
    with pytest.raises(FormatError) as exc:
        tracetool.load(path, strict=True)
    assert str(exc.value) == f"{path}:3: row 2: column time: not a number of seconds"


def test_bad_directive_and_json_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        "# ramblock=pc.ram size=3K\n"
        '{"kind": "advise"}\n'
        '{"kind": "place", "offset": [1]}\n'
        "{oops\n"
        '{"kind": "place", "offset": 4096, "ram_size": "2G"}\n'
        '{"kind": "place", "offset": 8192, "ram_size": "1G"}\n'
    )
    t = tracetool.load(path)
    rej = {r["line"]: r["reason"] for r in t.rejected.to_pylist()}
    assert rej[1] == "directive: a RAM block size is a positive multiple of 4 KiB"
    assert rej[3] == "row 2: column offset: expected a number or text, got [1]"
    assert rej[4].startswith("row 3: not a JSON object")
    assert rej[6] == (
        "row 5: column ram_size: 0x40000000 disagrees with pc.ram's 0x80000000 "
        "(declared in a '#' line or on an earlier row)"
    )
    assert t.table("postcopy_init_range")["length"].to_pylist() == [2 << 30]


def test_docs_example(tmp_path):
    """The complete example of docs/synthetic.md gives the figures the page states."""
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "synthetic.md").read_text()
    start = doc.index("```csv\n# ramblock=pc.ram size=1G") + len("```csv\n")
    path = tmp_path / "what-if.csv"
    path.write_text(doc[start : doc.index("```", start)])
    t = tracetool.load(path)
    assert (t.stats.lines, t.stats.events, t.stats.other_lines, t.stats.rejected_lines) == (
        27,
        25,
        2,
        0,
    )
    assert t.events["line"].to_pylist()[:2] == [3, 17]  # advise, its postcopy_init_range
    res = t.replay()
    fig = {
        p: (*v["conflicts"].values(), v["applied_pages"], v["dropped_pages"], v["deferred_pages"])
        for p, v in res.summary["policies"].items()
    }
    assert fig == {
        "no-inhibit": (1, 2, 1, 5, 0, 0),
        "inhibit": (0, 0, 0, 0, 5, 0),
        "inhibit-discard": (0, 0, 0, 0, 5, 0),
        "defer": (0, 0, 0, 5, 0, 5),
    }
    rows = [(r["offset"], r["line"], r["related_line"]) for r in res.conflicts.to_pylist()]
    assert sorted(rows) == [(0x5000, 10, 7), (0x6000, 21, 8), (0x7000, 22, 9), (0x8000, 23, 14)]
    for race, want in ((200_000_000, conf(after=1, in_flight=2, before=1)),
                       (2_500_000_000, conf(after=1, in_flight=3))):  # fmt: skip
        got = t.replay("no-inhibit", race_window_ns=race)
        assert conflicts(got, "no-inhibit") == want
