"""phases analysis: hand-made traces with known state times, and the real captures' MANIFEST
phase times (counts.json)."""

from __future__ import annotations

import json

import pytest

import tracetool
from analyses import MissingAnalysisEvents, run
from tests.conftest import DST_EXCERPT, SRC_EXCERPT, shared_trace
from tests.replay_traces import MAIN, T, ns


def _two_migrations(tmp_path):
    t = T().raw(0.5, MAIN, "migrate_set_state", "new state active")
    t.advise(t=1.0).discard(t=2.0).listen(t=3.0).run(t=3.1).end(t=9.0)
    t.raw(19.5, MAIN, "migrate_set_state", "new state active")
    t.advise(t=20.0).discard(t=21.0).listen(t=22.0).run(t=22.5).end(t=28.0)
    return t, t.load(tmp_path)


def test_two_migrations_exact_rows(tmp_path):
    t, trace = _two_migrations(tmp_path)
    res = run("phases", trace)
    rows = res.tables["phases"].to_pylist()
    first = [r for r in rows if r["migration"] == 0]
    second = [r for r in rows if r["migration"] == 1]
    assert {r["migration"] for r in rows} == {0, 1}
    assert [r["state"] for r in first] == [
        "active", "postcopy advise (D)", "postcopy discard (D)", "postcopy listen (D)",
        "postcopy-active", "postcopy run (D)", "listen thread exit (D)",
        "postcopy cleanup start (D)", "postcopy cleanup done (D)", "completed",
    ]  # fmt: skip
    assert first[0]["ts_ns"] == ns(0.5) and first[0]["t_rel_s"] == 0.0
    assert first[1]["duration_ns"] == ns(2.0) - ns(1.0)
    assert first[-1]["duration_ns"] is None
    assert second[0]["state"] == "active" and second[0]["ts_ns"] == ns(19.5)
    assert second[3]["t_rel_s"] == pytest.approx(22.0 - 19.5)
    assert all(r["side"] == "destination" for r in rows)
    assert rows[0]["line"] == t.line_of("new state active")
    s = res.summary
    assert s["migrations"] == 2 and s["start_ns"] == ns(0.5)
    assert s["per_migration"] == [
        {"migration": 0, "side": "destination", "setup_s": None, "precopy_s": 2.5,
         "postcopy_s": 6.0, "total_s": 8.5, "final_state": "completed"},
        {"migration": 1, "side": "destination", "setup_s": None, "precopy_s": 2.5,
         "postcopy_s": 6.0, "total_s": 8.5, "final_state": "completed"},
    ]  # fmt: skip


def test_repeated_markers_keep_their_first_record_per_migration(tmp_path):
    t = T().advise(t=1.0).discard(t=2.0).discard(t=2.5).listen(t=3.0).run(t=3.1).end(t=9.0)
    rows = run("phases", t.load(tmp_path)).tables["phases"].to_pylist()
    discards = [r for r in rows if r["state"] == "postcopy discard (D)"]
    assert [d["ts_ns"] for d in discards] == [ns(2.0)]


def test_summary_phases_list_is_the_table(tmp_path):
    _, trace = _two_migrations(tmp_path)
    from analyses import summary

    table = run("phases", trace).tables["phases"].to_pylist()
    listed = summary.run(trace)["phases"]
    assert listed == [{k: r[k] for k in ("side", "state", "ts_ns", "line")} for r in table]


def test_missing_phase_events_name_the_enable(tmp_path):
    trace = T().inflate(t=1.0, gpa=0x5000).load(tmp_path)
    with pytest.raises(MissingAnalysisEvents) as exc:
        run("phases", trace)
    assert "-trace enable=migrate_set_state" in str(exc.value)
    assert str(exc.value).startswith(str(tmp_path))


def test_source_excerpt_setup_precopy_postcopy():
    res = run("phases", tracetool.load(SRC_EXCERPT))
    (m,) = res.summary["per_migration"]
    assert m["side"] == "source" and m["final_state"] == "completed"
    assert {r["side"] for r in res.tables["phases"].to_pylist()} == {"source"}
    assert res.summary["migrations"] == 1


def _manifest_phases(capture: str) -> dict:
    return json.loads(shared_trace(capture, "counts.json").read_text())["phases"]


@pytest.mark.parametrize("capture", ["a-balloon-during-postcopy", "b-balloon-no-overlap"])
def test_capture_phase_times_match_the_manifest(capture):
    p = _manifest_phases(capture)
    dst = run("phases", tracetool.load(shared_trace(capture, "dst.trace.log.gz")))
    (d,) = dst.summary["per_migration"]
    assert d["postcopy_s"] == pytest.approx(p["dst_completed"] - p["dst_postcopy_active"], abs=2e-6)
    assert d["total_s"] == pytest.approx(p["dst_completed"] - p["dst_active"], abs=2e-6)
    src = run("phases", tracetool.load(shared_trace(capture, "src.trace.log.gz")))
    (s,) = src.summary["per_migration"]
    assert s["setup_s"] == pytest.approx(p["src_active"] - p["src_setup"], abs=2e-6)
    assert s["precopy_s"] == pytest.approx(p["src_postcopy_active"] - p["src_active"], abs=2e-6)
    assert s["total_s"] == pytest.approx(p["src_completed"] - p["src_setup"], abs=2e-6)


def test_dst_excerpt_start_is_the_first_state_change():
    trace = tracetool.load(DST_EXCERPT)
    res = run("phases", trace)
    first_state = trace.table("migrate_set_state")["ts_ns"][0].as_py()
    assert res.summary["start_ns"] == first_state
