"""The Trace object: trace + query -> expected table."""

from __future__ import annotations

import pyarrow as pa
import pytest

import tracetool
from tests.conftest import DST_EXCERPT, MIXED
from tracetool.errors import MissingEventError


@pytest.fixture(scope="module")
def dst() -> tracetool.Trace:
    return tracetool.load(DST_EXCERPT)


def test_events_schema(dst):
    assert dst.events.schema.names == ["ts_ns", "tid", "event", "line", "args"]
    assert dst.events.schema.field("event").type == pa.dictionary(pa.int32(), pa.string())
    assert dst.events["line"].to_pylist() == list(range(1, dst.stats.lines + 1))


def test_typed_table_matches_the_raw_lines(dst):
    t = dst.table("postcopy_init_range")
    assert t.column_names == ["ts_ns", "tid", "line", "ramblock", "host_addr", "offset", "length"]
    first = t.slice(0, 1).to_pylist()[0]
    # 15155@1795630436.999068:postcopy_init_range pc.ram: 0x7f1247e00000 offset=0x0 length=0x40000000
    assert first == {
        "ts_ns": 1795630436999068000,
        "tid": 15155,
        "line": first["line"],
        "ramblock": "pc.ram",
        "host_addr": 0x7F1247E00000,
        "offset": 0,
        "length": 0x40000000,
    }
    assert t.schema.field("host_addr").type == pa.uint64()


def test_bool_and_string_with_at_sign(dst):
    t = dst.table("ram_block_discard_range")
    row = t.filter(pa.compute.equal(t["rbname"], "/rom@etc/table-loader")).to_pylist()[0]
    # ram_block_discard_range /rom@etc/table-loader@0x7f12d5a00000 + 0x1000: madvise: 1 fallocate: 0 ret: 0
    assert row["hva"] == 0x7F12D5A00000 and row["length"] == 0x1000
    assert row["need_madvise"] is True and row["need_fallocate"] is False and row["ret"] == 0


def test_every_typed_row_is_an_event(dst):
    for name in dst.event_names():
        assert dst.table(name).num_rows == dst.event_counts()[name]


def test_missing_event_suggests_the_closest(dst):
    with pytest.raises(MissingEventError) as exc:
        dst.table("postcopy_place_pag")
    assert "postcopy_place_page" in str(exc.value)
    assert "-trace enable=postcopy_place_pag" in str(exc.value)


def test_catalogued_event_not_in_trace_is_an_empty_typed_table(dst):
    t = dst.table("postcopy_page_req_sync")
    assert t.num_rows == 0 and "host_addr" in t.column_names


def test_uncatalogued_event_keeps_raw_args():
    t = tracetool.load(MIXED).table("some_uncatalogued_event")
    assert t.to_pylist() == [
        {"ts_ns": 1700000000200003000, "tid": 23150, "line": 21, "args": "whatever 1 2 3"}
    ]


def test_to_pandas(dst):
    df = dst.to_pandas("postcopy_place_page")
    assert len(df) == dst.event_counts()["postcopy_place_page"]
    assert list(df.columns) == ["ts_ns", "tid", "line", "host_addr"]


def test_old_and_new_variants_in_one_table():
    t = tracetool.load(MIXED).table("postcopy_ram_fault_thread_request")
    rows = t.to_pylist()
    # 2.5: "Request for HVA=7f0c2a9f5000 rb=pc.ram offset=9f5000" (bare hex, no pid)
    assert (
        rows[0]["hostaddr"] == 0x7F0C2A9F5000
        and rows[0]["offset"] == 0x9F5000
        and rows[0]["pid"] is None
    )
    # 4.x: "... HVA=0x7f0c2a9f5123 rb=pc.ram offset=0x9f5000 pid=23149"
    assert rows[1]["hostaddr"] == 0x7F0C2A9F5123 and rows[1]["pid"] == 23149


def test_numeric_state_of_old_qemu():
    t = tracetool.load(MIXED).table("migrate_set_state")
    assert t["new_state"].to_pylist() == ["5", "postcopy-active", "completed"]
