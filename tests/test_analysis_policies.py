"""The policies analysis: the comparison against the replay summary, the reclaimed-memory step
series worked out by hand on a tiny trace, and the shared captures against counts.json."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from analyses import MissingAnalysisEvents, run
from tests.conftest import shared_trace
from tests.replay_traces import T, ns, postcopy
from tracetool.replay import ConflictClass

KIB4 = 4096
AFTER = ConflictClass.DISCARD_AFTER_PLACE.value


def scenario() -> T:
    """QEMU 7.2 (query-version at 0.5); 0x7000 placed at 4.0; inflate 0x5000 (never placed)
    and 0x7000 at 5.0, inside every window; END, cleanup and STATE_END at 9.0; after it
    inflate 0x6000 at 9.5 and deflate it at 9.7 (the last event)."""
    t = T().version(0.5, 7, 2).advise(1.0).discard(2.0).listen(3.0).run(3.1)
    t.place(4.0, 0x7000).inflate(5.0, gpas=[0x5000, 0x7000]).end(9.0)
    return t.inflate(9.5, gpa=0x6000).deflate(9.7, gpa=0x6000)


#: By hand (docs/replay.md): no-inhibit applies both at 5.0 (0x7000 discard-after-place) and
#: holds them to the end; inhibit and inhibit-discard (7.2's rule, the qemu row) drop them;
#: defer applies both at END 9.0. Everyone holds 0x6000 from 9.5 to 9.7.
SERIES = {
    "no-inhibit": [(0.5, 0), (5.0, 2), (9.5, 3), (9.7, 2)],
    "inhibit": [(0.5, 0), (9.5, 1), (9.7, 0)],
    "inhibit-discard": [(0.5, 0), (9.5, 1), (9.7, 0)],
    "defer": [(0.5, 0), (9.0, 2), (9.5, 3), (9.7, 2)],
    "qemu": [(0.5, 0), (9.5, 1), (9.7, 0)],
}


def test_reclaimed_step_series_by_hand(tmp_path):
    res = run("policies", scenario().load(tmp_path))
    got: dict[str, list] = {}
    for r in res.tables["reclaimed"].to_pylist():
        got.setdefault(r["policy"], []).append((r["ts_ns"], r["reclaimed_bytes"]))
    assert got == {p: [(ns(t), n * KIB4) for t, n in pts] for p, pts in SERIES.items()}
    t_rel = [r["t_rel_s"] for r in res.tables["reclaimed"].to_pylist() if r["policy"] == "defer"]
    assert t_rel == pytest.approx([-0.5, 8.0, 8.5, 8.7])  # from ADVISE at 1.0


def test_comparison_and_best_policy_by_hand(tmp_path):
    res = run("policies", scenario().load(tmp_path))
    rows = {r["policy"]: r for r in res.tables["comparison"].to_pylist()}
    assert list(rows) == list(SERIES)
    fate = {
        p: (r["applied_pages"], r["dropped_pages"], r["deferred_pages"], r[AFTER])
        for p, r in rows.items()
    }
    assert fate == {
        "no-inhibit": (3, 0, 0, 1),
        "inhibit": (1, 2, 0, 0),
        "inhibit-discard": (1, 2, 0, 0),
        "defer": (3, 0, 2, 0),
        "qemu": (1, 2, 0, 0),
    }
    assert rows["qemu"]["effective_policy"] == "inhibit-discard"
    assert {p: r["reclaimed_bytes_end_of_trace"] for p, r in rows.items()} == {
        p: pts[-1][1] * KIB4 for p, pts in SERIES.items()
    }
    # END is 9.0: the series' value there is the end-of-window figure
    assert {p: r["reclaimed_bytes_end_of_window"] for p, r in rows.items()} == {
        p: [n for t, n in pts if t <= 9.0][-1] * KIB4 for p, pts in SERIES.items()
    }
    # no-inhibit conflicts; of the others defer holds the most at the end of the trace
    assert res.summary["best_policy"] == "defer"
    assert res.summary["policies"]["no-inhibit"]["conflicts"] == 1


def test_qemu_version_option_reaches_the_replay(tmp_path):
    t = postcopy().place(4.0, 0x5000).inflate(5.0, gpa=0x5000).end(9.0)
    res = run("policies", t.load(tmp_path), qemu_version="2.4")
    q = res.summary["policies"]["qemu"]
    assert (q["effective_policy"], q["conflicts"]) == ("no-inhibit", 1)  # 2.4 never inhibits
    assert res.summary["best_policy"] == "defer"  # applied at END: holds the page to the end


def test_best_policy_needs_a_policy_without_conflicts():
    from analyses.policies import _best

    def p(conflicts: int, end: int) -> dict:
        return {"conflicts": {AFTER: conflicts}, "reclaimed_bytes_end_of_trace": end,
                "reclaimed_bytes_end_of_window": end, "dropped_pages": 0}  # fmt: skip

    assert _best({"no-inhibit": p(2, 8192), "defer": p(1, 4096)}) is None
    assert _best({"no-inhibit": p(2, 8192), "defer": p(0, 4096), "inhibit": p(0, 0)}) == "defer"
    assert _best({"qemu": p(0, 8192), "inhibit": p(0, 0)}) == "inhibit"  # qemu is an alias


def test_unknown_option_is_a_usage_error(tmp_path):
    from tracetool.errors import UsageError

    with pytest.raises(UsageError, match="race_window"):
        run("policies", scenario().load(tmp_path), race_window=5)


def test_missing_placement_events(tmp_path):
    tr = T().inflate(1.0, gpa=0x5000).load(tmp_path)
    with pytest.raises(
        MissingAnalysisEvents, match="postcopy_place_page or postcopy_place_page_zero"
    ):
        run("policies", tr)


@pytest.mark.parametrize("name", ["a-balloon-during-postcopy", "b-balloon-no-overlap"])
def test_captures(name):
    import tracetool

    path = shared_trace(name, "dst.trace.log.gz")
    counts = json.loads((path.parent / "counts.json").read_text())
    tr = tracetool.load(path)
    res = run("policies", tr)
    rep = tr.replay(["all", "qemu"])
    # consistency: the comparison is the replay's summary, the series end at its figures
    for row in res.tables["comparison"].to_pylist():
        p = rep.summary["policies"][row["policy"]]
        assert {k: row[k] for k in p if k in row and k != "policy"} == {
            k: v for k, v in p.items() if k in row
        }
        assert {c.value: row[c.value] for c in ConflictClass} == p["conflicts"]
    rec = res.tables["reclaimed"]
    for pol, p in rep.summary["policies"].items():
        pts = rec.filter(pc.equal(rec["policy"], pol))
        assert 2 <= pts.num_rows <= 2001
        assert pts["reclaimed_bytes"][-1].as_py() == p["reclaimed_bytes_end_of_trace"]
        ts = pts["ts_ns"].to_pylist()
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
    # independently: QEMU 7.2 drops the inflates of the postcopy window, applies the others
    dst = [c for c in counts["balloon_commands"] if c["side"] == "dst"]
    in_window = counts["dst_postcopy_window_counts"].get("virtio_balloon_handle_output", 0)
    applied = sum(c["counts"].get("ram_block_discard_range (+0x1000)", 0) for c in dst)
    q = {r["policy"]: r for r in res.tables["comparison"].to_pylist()}["qemu"]
    assert (q["dropped_pages"], q["applied_pages"]) == (in_window, applied)
    assert res.summary["observed"]["applied_pages"] == applied
    # the most the balloon held under QEMU's rule: the largest applied inflate command
    qemu = rec.filter(pc.equal(rec["policy"], "qemu"))["reclaimed_bytes"].to_pylist()
    assert max(qemu) == KIB4 * max(
        c["counts"].get("ram_block_discard_range (+0x1000)", 0) for c in dst
    )
