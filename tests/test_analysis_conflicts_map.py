"""The conflicts_map analysis: region and time maps of a hand-made trace, the empty map, and the
shared captures (totals must equal the replay's conflicts table per policy and class)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from analyses import MissingAnalysisEvents, run
from analyses.conflicts_map import (
    BY_REGION_SCHEMA,
    BY_TIME_SCHEMA,
    CONFLICTS_MAP_SCHEMA,
    region_size,
)
from tests.conftest import shared_trace
from tests.replay_traces import T, ns, postcopy

MIB = 1 << 20
AFTER = "discard-after-place"


def scenario() -> T:
    """0x5000 placed at 4.0 and 0x401000 at 4.1; inflates of both at 5.0 and 6.0 (each a
    discard-after-place under no-inhibit only) and of 0x9000 (never placed) at 6.5; END 9.0."""
    t = postcopy().place(4.0, 0x5000).place(4.1, 0x401000)
    t.inflate(5.0, gpa=0x5000).inflate(6.0, gpa=0x401000).inflate(6.5, gpa=0x9000)
    return t.end(9.0)


def test_region_size_rule():
    assert region_size(0, 0) == 2 * MIB
    assert region_size(0, 512 * MIB - 1) == 2 * MIB  # 256 regions
    assert region_size(0, 512 * MIB) == 4 * MIB  # 257 would be too many
    assert region_size(0, (1 << 30) - 1) == 4 * MIB
    assert region_size(4 << 30, (4 << 30) + 3 * MIB) == 2 * MIB  # the span, not the top, counts


def test_maps_by_hand(tmp_path):
    res = run("conflicts_map", scenario().load(tmp_path))
    conf = res.tables["conflicts"]
    assert conf.schema == CONFLICTS_MAP_SCHEMA
    assert [(r["policy"], r["gpa"], r["t_rel_s"]) for r in conf.to_pylist()] == [
        ("no-inhibit", 0x5000, pytest.approx(4.0)),
        ("no-inhibit", 0x401000, pytest.approx(5.0)),
    ]
    # GPAs seen: 0x5000 .. 0x401000, three 2 MiB regions
    assert res.summary["region_bytes"] == 2 * MIB
    assert res.tables["by_region"].to_pylist() == [
        {"gpa_lo": 0, "gpa_hi": 2 * MIB, "policy": "no-inhibit", "class": AFTER, "pages": 1},
        {"gpa_lo": 4 * MIB, "gpa_hi": 6 * MIB, "policy": "no-inhibit", "class": AFTER, "pages": 1},
    ]
    # span 1.0 .. 9.0 s from ADVISE 1.0: 20 ms bins
    assert res.summary["bin_width_ns"] == 20_000_000
    assert [
        (r["ts_ns"], r["policy"], r["class"], r["pages"]) for r in res.tables["by_time"].to_pylist()
    ] == [
        (ns(5.0), "no-inhibit", AFTER, 1),
        (ns(6.0), "no-inhibit", AFTER, 1),
    ]
    s = res.summary["policies"]
    assert list(s) == ["no-inhibit"]
    assert s["no-inhibit"] == {
        "conflicts": 2,
        "pages": 2,
        "by_class": {AFTER: 2},
        "densest_region": {"gpa_lo": 0, "gpa_hi": 2 * MIB, "pages": 1},
        "first_ts_ns": ns(5.0),
        "last_ts_ns": ns(6.0),
        "first_t_rel_s": pytest.approx(4.0),
        "last_t_rel_s": pytest.approx(5.0),
    }


def test_no_conflict_is_an_empty_map(tmp_path):
    t = postcopy().place(4.0, 0x5000).end(9.0).inflate(9.5, gpa=0x5000)
    res = run("conflicts_map", t.load(tmp_path))
    assert res.tables["conflicts"].schema == CONFLICTS_MAP_SCHEMA
    assert res.tables["by_region"].schema == BY_REGION_SCHEMA
    assert res.tables["by_time"].schema == BY_TIME_SCHEMA
    assert [t.num_rows for t in res.tables.values()] == [0, 0, 0]
    assert res.summary["policies"] == {} and res.summary["conflicts"] == 0


def test_missing_balloon_requests(tmp_path):
    tr = postcopy().place(4.0, 0x5000).end(9.0).load(tmp_path)
    with pytest.raises(MissingAnalysisEvents, match="virtio_balloon_handle_output"):
        run("conflicts_map", tr)


@pytest.mark.parametrize("name", ["a-balloon-during-postcopy", "b-balloon-no-overlap"])
def test_captures_totals_equal_the_conflicts_table(name):
    import tracetool

    path = shared_trace(name, "dst.trace.log.gz")
    counts = json.loads((path.parent / "counts.json").read_text())
    meta = json.loads((path.parent / "meta.json").read_text())
    tr = tracetool.load(path)
    res = run("conflicts_map", tr)
    conf = tr.replay(["all", "qemu"]).conflicts
    want = Counter(zip(conf["policy"].to_pylist(), conf["class"].to_pylist(), strict=True))
    for key in ("by_region", "by_time"):
        got: Counter = Counter()
        for r in res.tables[key].to_pylist():
            got[(r["policy"], r["class"])] += r["pages"]
        assert got == want
    assert {p: v["conflicts"] for p, v in res.summary["policies"].items()} == dict(
        Counter(conf["policy"].to_pylist())
    )
    size = res.summary["region_bytes"]
    assert size >= 2 * MIB and size & (size - 1) == 0
    # all RAM below the 32-bit hole (1 GiB guests): GPAs span less than RAM, so RAM / 256
    # (a power of two here) is always enough
    assert size <= max(2 * MIB, meta["guest_ram_mb"] * MIB // 256)
    assert res.tables["by_time"].num_rows <= 500 * max(len(want), 1)
    # a balloon request can only conflict inside the destination's postcopy window
    in_window = counts["dst_postcopy_window_counts"].get("virtio_balloon_handle_output", 0)
    assert all(v["conflicts"] <= in_window for v in res.summary["policies"].values())
    # QEMU 7.2's rule drops every request of the window: nothing of it can conflict
    assert "qemu" not in res.summary["policies"]
    if in_window == 0:
        assert res.tables["conflicts"].num_rows == 0
