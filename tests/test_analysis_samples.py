"""Every analysis on the bundled synthetic samples against their truth files (written by the
generator from its own model: it neither reads the trace nor runs the replay), so the sample
library is covered without the shared captures."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

import tracetool
from analyses import run
from tests.conftest import SAMPLES

SYNTHETIC = sorted((SAMPLES / "synthetic").glob("*.truth.json"))
POLICY_FIGURES = (
    "applied_pages",
    "dropped_pages",
    "deferred_pages",
    "cancelled_pages",
    "conflict_pages",
    "reclaimed_bytes_end_of_window",
    "reclaimed_bytes_end_of_trace",
)


@pytest.fixture(scope="module", params=SYNTHETIC, ids=lambda p: p.name.removesuffix(".truth.json"))
def sample(request):
    truth = json.loads(request.param.read_text())
    path = request.param.parent / truth["trace"]["path"]
    return tracetool.load(path), truth


def test_there_are_samples_to_check():
    assert len(SYNTHETIC) >= 10


def test_phases(sample):
    trace, truth = sample
    s = run("phases", trace).summary
    states = [r for r in s["phases"] if not r["state"].endswith(")")]
    assert len(states) == truth["event_counts"]["migrate_set_state"]


@pytest.mark.parametrize("name", ["two-migrations", "conflict-classes"])
def test_phases_sides_of_a_domain_log(name):
    """A log holding both processes: each side's state changes are its own (by the thread
    that wrote them) and each side counts the planted migrations once."""
    truth = json.loads((SAMPLES / "synthetic" / f"{name}.truth.json").read_text())
    s = run("phases", tracetool.load(SAMPLES / "synthetic" / truth["trace"]["path"])).summary
    n = len(truth["qemu"]["migrations"])
    for side in ("source", "destination"):
        rows = [r for r in s["per_migration"] if r["side"] == side]
        assert len({r["migration"] for r in rows}) == n, side
        assert [r["final_state"] for r in rows] == ["completed"] * n, side
    first = {r["side"]: r["state"] for r in reversed(s["phases"])}
    assert first == {"source": "setup", "destination": "active"}


def test_postcopy_faults(sample):
    trace, truth = sample
    s = run("postcopy_faults", trace).summary
    migs = truth["qemu"]["migrations"]
    # refault races: faults on pages placed, then discarded; never placed again (they block
    # until the end). QEMU >= 5.2 sends no request (no req_add) for a page it has received.
    races = sum(m["refault_races"] for m in migs)
    assert s["resolved"] == sum(m["requested_pages"] for m in migs)
    assert s["unresolved"] == (0 if "postcopy_page_req_add" in truth["event_counts"] else races)
    assert s["resolved"] + s["unresolved"] == s["requests"]
    assert s["fault_messages"] == sum(m["faults"] for m in migs) + races
    assert s["fault_messages"] == truth["event_counts"]["postcopy_ram_fault_thread_request"]
    assert sum(s["latency_dist"]) == s["resolved"] > 0


def test_balloon(sample):
    trace, truth = sample
    s = run("balloon", trace).summary
    planted = truth["balloon"]["phases"].values()
    assert s["inflate_pages"] == sum(p["inflate"] for p in planted)
    assert s["deflate_pages"] == sum(p["deflate"] for p in planted)
    if truth["qemu"]["discards_traced"]:  # QEMU's outcome is observable (4 KiB pages)
        assert s["observed_applied_pages"] == truth["qemu"]["inflate_pages_applied"]
        assert s["observed_dropped_pages"] == truth["qemu"]["inflate_pages_dropped"]


def test_policies(sample):
    trace, truth = sample
    comp = {r["policy"]: r for r in run("policies", trace).tables["comparison"].to_pylist()}
    for policy, want in truth["replay"]["policies"].items():
        got = comp[policy]
        assert {k: got[k] for k in POLICY_FIGURES} == {k: want[k] for k in POLICY_FIGURES}
        for cls, n in want["conflicts"].items():
            assert got[cls] == n, (policy, cls)


def test_conflicts_map(sample):
    trace, truth = sample
    res = run("conflicts_map", trace)
    conflicts = res.tables["conflicts"]
    for policy, want in truth["replay"]["policies"].items():
        rows = conflicts.filter(pc.equal(conflicts["policy"], policy))
        assert rows.num_rows == sum(want["conflicts"].values()), policy
        regions = res.tables["by_region"]
        in_regions = pc.sum(regions.filter(pc.equal(regions["policy"], policy))["pages"]).as_py()
        assert (in_regions or 0) == rows.filter(pc.is_valid(rows["gpa"])).num_rows
