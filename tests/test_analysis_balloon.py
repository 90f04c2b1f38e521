"""The balloon analysis: hand-made traces with expectations worked out by hand, and the shared
QEMU 7.2 captures against their counts.json / meta.json (written by the capture driver, not by
tracetool)."""

from __future__ import annotations

import json
import re

import pytest

from analyses import MissingAnalysisEvents, run
from tests.conftest import shared_trace
from tests.replay_traces import MAIN, RAM, T, ns, postcopy

KIB4 = 4096


def to_target(t: T, at: float, num_pages: int) -> T:
    """What QEMU 7.2 prints for a QMP ``balloon``: balloon_event then virtio_balloon_to_target."""
    target = RAM - num_pages * KIB4
    t.raw(at, MAIN, "balloon_event", f"opaque 0x55d0aa addr {target}")
    return t.raw(
        at, MAIN, "virtio_balloon_to_target", f"balloon target: 0x{target:x} num_pages: {num_pages}"
    )


def scenario() -> T:
    """Target 3 pages at 0.5; inflate 2 pages at 5.0 and 1 at 5.2 (actual 2, then 3); target
    1 page at 6.0; deflate 2 pages at 7.0 (actual 1). ADVISE at 1.0 is t_rel 0."""
    t = to_target(T(), 0.5, 3)
    t.advise(1.0).discard(2.0).listen(3.0).run(3.1)
    t.inflate(5.0, gpas=[0x5000, 0x6000]).inflate(5.2, gpa=0x7000)
    to_target(t, 6.0, 1)
    return t.deflate(7.0, gpas=[0x5000, 0x6000]).end(9.0)


def test_timeline_bins_pages_and_forward_filled_actual(tmp_path):
    res = run("balloon", scenario().load(tmp_path))
    tl = res.tables["timeline"].to_pylist()
    # span 0.5 .. 9.0 s from ADVISE 1.0: 10 ms bins need 851 > 500, 20 ms bins 426 (-25 .. 400)
    assert len(tl) == 426
    assert tl[0]["ts_ns"] == ns(0.5) and tl[-1]["ts_ns"] == ns(1.0 + 400 * 0.02)
    assert all(b["ts_ns"] - a["ts_ns"] == 20_000_000 for a, b in zip(tl, tl[1:], strict=False))
    assert {r["side"] for r in tl} == {"destination"}
    inflates = {round(r["t_rel_s"], 3): r["inflate_pages"] for r in tl if r["inflate_pages"]}
    deflates = {round(r["t_rel_s"], 3): r["deflate_pages"] for r in tl if r["deflate_pages"]}
    assert inflates == {4.0: 2, 4.2: 1} and deflates == {6.0: 2}

    def actual(t_rel: float) -> int:  # by hand: 0, 2 from 5.0, 3 from 5.2, 1 from 7.0
        return 0 if t_rel < 4.0 else 2 if t_rel < 4.2 else 3 if t_rel < 6.0 else 1

    assert [r["actual_pages"] for r in tl] == [actual(round(r["t_rel_s"], 3)) for r in tl]
    assert res.summary["bin_width_ns"] == 20_000_000


def test_targets_reached_and_time_to_target(tmp_path):
    res = run("balloon", scenario().load(tmp_path))
    rows = res.tables["targets"].to_pylist()
    assert [
        (
            r["ts_ns"],
            r["event"],
            r["target_bytes"],
            r["num_pages"],
            r["from_pages"],
            r["reached_ts_ns"],
        )
        for r in rows
    ] == [
        (ns(0.5), "virtio_balloon_to_target", RAM - 3 * KIB4, 3, 0, ns(5.2)),
        (ns(6.0), "virtio_balloon_to_target", RAM - KIB4, 1, 3, ns(7.0)),
    ]
    assert [r["time_to_target_s"] for r in rows] == pytest.approx([4.7, 1.0])
    s = res.summary
    assert (s["inflate_pages"], s["deflate_pages"], s["unresolved_pages"]) == (3, 2, 0)
    assert (s["targets"], s["targets_reached"], s["final_actual_pages"]) == (2, 2, 1)
    assert s["max_time_to_target_s"] == pytest.approx(4.7)


def test_target_superseded_before_reached_is_null(tmp_path):
    t = to_target(T(), 0.5, 5).inflate(1.0, gpas=[0x5000, 0x6000])
    to_target(t, 2.0, 0).deflate(3.0, gpas=[0x5000, 0x6000])
    rows = run("balloon", t.load(tmp_path)).tables["targets"].to_pylist()
    assert [(r["num_pages"], r["reached_ts_ns"]) for r in rows] == [(5, None), (0, ns(3.0))]


def test_balloon_event_only_targets_have_no_page_count(tmp_path):
    t = T().raw(0.5, MAIN, "balloon_event", f"opaque 0x55d0aa addr {RAM // 2}")
    t.inflate(1.0, gpa=0x5000)
    res = run("balloon", t.load(tmp_path))
    rows = res.tables["targets"].to_pylist()
    assert [(r["event"], r["target_bytes"], r["num_pages"], r["reached_ts_ns"]) for r in rows] == [
        ("balloon_event", RAM // 2, None, None)
    ]
    assert res.summary["targets_reached"] == 0 and res.notes


def test_requests_by_direction_and_observed_outcome(tmp_path):
    t = (
        postcopy()
        .inflate(5.0, gpas=[0x5000, 0x6000, 0x7000], discard=[0x6000])
        .deflate(6.0, gpa=0x6000)
    )
    res = run("balloon", t.end(9.0).load(tmp_path))
    got = {
        (r["direction"], r["observed"]): (r["pages"], r["bytes"])
        for r in res.tables["requests"].to_pylist()
    }
    assert got == {
        ("inflate", "applied"): (1, KIB4),
        ("inflate", "dropped"): (2, 2 * KIB4),
        ("deflate", "unknown"): (1, KIB4),
    }
    assert (res.summary["observed_applied_pages"], res.summary["observed_dropped_pages"]) == (1, 2)


def test_trace_without_timestamps_bins_over_trace_order(tmp_path):
    text = re.sub(r"(?m)^\d+@\d+\.\d+:", "", scenario().text())
    path = tmp_path / "notime.log"
    path.write_text(text)
    import tracetool

    res = run("balloon", tracetool.load(path))
    tl = res.tables["timeline"]
    assert tl["ts_ns"].null_count == tl.num_rows and tl["t_rel_s"].null_count == tl.num_rows
    assert sum(tl["inflate_pages"].to_pylist()) == 3 and sum(tl["deflate_pages"].to_pylist()) == 2
    assert tl["actual_pages"].to_pylist()[-1] == 1
    assert res.tables["targets"]["time_to_target_s"].null_count == 2 and res.notes


def test_set_config_alone_gives_sizes_but_no_requests(tmp_path):
    t = T().raw(1.0, MAIN, "virtio_balloon_set_config", "actual: 7 oldactual: 0")
    t.raw(2.0, MAIN, "virtio_balloon_set_config", "actual: 4 oldactual: 7")
    res = run("balloon", t.load(tmp_path))
    tl = res.tables["timeline"]
    # span 1.0 .. 2.0 s from the first event (no migration): 2 ms bins need 501, 5 ms 201
    assert tl.num_rows == 201 and res.summary["bin_width_ns"] == 5_000_000
    assert sum(tl["inflate_pages"].to_pylist()) == sum(tl["deflate_pages"].to_pylist()) == 0
    actual = tl["actual_pages"].to_pylist()
    assert actual[0] == 7 and actual[-1] == 4 and set(actual) == {7, 4}
    assert res.tables["requests"].num_rows == 0
    assert (res.summary["inflate_pages"], res.summary["final_actual_pages"]) == (0, 4)


def test_missing_balloon_events_name_them(tmp_path):
    tr = postcopy().place(4.0, 0x5000).end(9.0).load(tmp_path)
    with pytest.raises(MissingAnalysisEvents) as exc:
        run("balloon", tr)
    msg = str(exc.value)
    assert "virtio_balloon_handle_output" in msg and "-trace enable=" in msg
    assert str(tmp_path / "dst.trace.log") in msg and "\n" not in msg


# -- shared captures ---------------------------------------------------------------------------


def capture(name: str):
    import tracetool

    path = shared_trace(name, "dst.trace.log.gz")
    counts = json.loads((path.parent / "counts.json").read_text())
    meta = json.loads((path.parent / "meta.json").read_text())
    return tracetool.load(path), counts, meta


@pytest.mark.parametrize("name", ["a-balloon-during-postcopy", "b-balloon-no-overlap"])
def test_captures_against_the_balloon_commands(name):
    tr, counts, meta = capture(name)
    ram = meta["guest_ram_mb"] << 20
    cmds = sorted(counts["balloon_commands"], key=lambda c: c["t"])
    # direction of each command from the size before it (the balloon state migrates)
    inflate = deflate = 0
    before = ram
    for c in cmds:
        if c["side"] == "dst":
            n = c["counts"]["virtio_balloon_handle_output"]
            inflate += n if c["target"] < before else 0
            deflate += n if c["target"] > before else 0
        before = c["target"]
    dst = [c for c in cmds if c["side"] == "dst"]
    res = run("balloon", tr)
    s = res.summary
    assert (s["inflate_pages"], s["deflate_pages"], s["unresolved_pages"]) == (inflate, deflate, 0)
    applied = sum(c["counts"].get("ram_block_discard_range (+0x1000)", 0) for c in dst)
    assert (s["observed_applied_pages"], s["observed_dropped_pages"]) == (
        applied,
        inflate - applied,
    )
    assert s["final_actual_pages"] == (ram - dst[-1]["last_actual"]) // KIB4

    tl = res.tables["timeline"]
    assert tl.num_rows <= 500
    assert sum(tl["inflate_pages"].to_pylist()) == inflate
    assert sum(tl["deflate_pages"].to_pylist()) == deflate
    assert tl["actual_pages"].to_pylist()[-1] == s["final_actual_pages"]

    rows = res.tables["targets"].to_pylist()
    assert [(r["target_bytes"], r["num_pages"]) for r in rows] == [
        (c["target"], (ram - c["target"]) // KIB4) for c in dst
    ]
    nxt = [c["t"] for c in dst[1:]] + [float("inf")]
    for r, c, until in zip(rows, dst, nxt, strict=True):
        assert c["last_actual"] == c["target"]  # every command was reached: so must the row be
        assert c["handle_output_last"] * 1e9 - 1000 <= r["reached_ts_ns"] < until * 1e9
    assert s["targets"] == s["targets_reached"] == len(dst)
