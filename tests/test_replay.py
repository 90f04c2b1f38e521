"""The replay engine: hand-made trace + replay -> expected summary and conflicts.

Every expectation is derived by hand from the contract (``shared/reference/replay-semantics.md``,
section numbers in the docstrings), not from running the engine. The traces are QEMU 7.2
destination logs written by ``tests/replay_traces.py``; the usual skeleton is ADVISE 1.0,
first DISCARD 2.0, LISTEN 3.0, RUN 3.1 and END 9.0 (seconds), on a 1 GiB ``pc.ram`` whose GPA is
its offset.
"""

from __future__ import annotations

import json

import pyarrow.csv as pacsv
import pytest

from tests.conftest import run_cli as cli
from tests.replay_traces import GIB, HVA, T, ns, postcopy

POLICIES = ("no-inhibit", "inhibit", "inhibit-discard", "defer")
AFTER, IN_FLIGHT, BEFORE = "discard-after-place", "discard-in-flight", "discard-before-arrival"
MS = 1_000_000  # ns


def replay(t: T, tmp_path, policy="all", **kw):
    return t.load(tmp_path).replay(policy, **kw)


def classes(res, policy: str) -> dict[str, int]:
    return res.summary["policies"][policy]["conflicts"]


def conf(after: int = 0, in_flight: int = 0, before: int = 0) -> dict[str, int]:
    return {AFTER: after, IN_FLIGHT: in_flight, BEFORE: before}


def fates(res) -> dict[str, tuple[int, int, int, int]]:
    """Per policy: (applied, dropped, deferred, cancelled) inflate pages."""
    return {
        k: (v["applied_pages"], v["dropped_pages"], v["deferred_pages"], v["cancelled_pages"])
        for k, v in res.summary["policies"].items()
    }


def rows(res, policy: str | None = None) -> list[dict]:
    out = res.conflicts.to_pylist()
    return [r for r in out if policy is None or r["policy"] == policy]


def test_builder_writes_lines_tracetool_decodes_completely(tmp_path):
    t = (
        T()
        .version(0.5, 7, 2)
        .advise(1.0, block_discard=True)
        .load_page(1.5, 0x9000)
        .discard(2.0, ranges=[(0x9000, 0x1000)])
        .listen(3.0)
        .run(3.1)
        .fault(3.5, 0x5000)
        .receive(3.9, 0x5000)
        .place(4.0, 0x5000)
        .place(4.1, 0x6000, zero=True)
        .get_config(4.9, 2, 0)
        .inflate(5.0, gpas=[0x5000, 0x6000], discard=[0x6000], queue=0)
        .deflate(6.0, gpa=0x5000)
        .end(9.0, cleanup=9.5, state_end=9.8)
    )
    tr = t.load(tmp_path)
    assert tr.stats.lines == len(t.lines()) == 29
    assert (tr.stats.events, tr.stats.other_lines, tr.stats.rejected_lines) == (29, 0, 0)
    assert tr.table("postcopy_place_page")["host_addr"].to_pylist() == [HVA + 0x5000]
    assert tr.table("virtio_balloon_set_config")["actual"].to_pylist() == [2, 1]
    assert tr.table("postcopy_init_range")["length"].to_pylist() == [GIB]
    assert tr.table("ram_load_postcopy_loop")["addr"].to_pylist() == [0x5000]
    assert tr.events["ts_ns"][0].as_py() == ns(0.5)


# -- section 6: conflict classes ---------------------------------------------------------------


def test_discard_after_place_only_under_no_inhibit(tmp_path):
    """Placed at 4.0, inflated at 5.0 inside LISTEN..END: PRESENT -> discard-after-place when
    applied at t (no-inhibit); dropped (inhibit, inhibit-discard) or deferred to END (defer)
    never conflicts."""
    t = postcopy().place(4.0, 0x5000).inflate(5.0, gpa=0x5000).end(9.0)
    res = replay(t, tmp_path)
    assert classes(res, "no-inhibit") == conf(after=1)
    for p in ("inhibit", "inhibit-discard", "defer"):
        assert classes(res, p) == conf(), p
    assert fates(res) == {
        "no-inhibit": (1, 0, 0, 0),
        "inhibit": (0, 1, 0, 0),
        "inhibit-discard": (0, 1, 0, 0),
        "defer": (1, 0, 1, 0),
    }
    assert res.summary["policies"]["defer"]["applied_at_end_pages"] == 1
    [row] = rows(res)
    assert (row["policy"], row["class"], row["ts_ns"], row["related_ts_ns"]) == (
        "no-inhibit",
        AFTER,
        ns(5.0),
        ns(4.0),
    )
    assert row["refault_expected"] is False


def test_discard_in_flight_requested(tmp_path):
    """Fault requested at 4.0, inflate at 5.0, place at 6.0: REQUESTED -> discard-in-flight,
    related to the fault."""
    t = postcopy().fault(4.0, 0x5000).inflate(5.0, gpa=0x5000).place(6.0, 0x5000).end(9.0)
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(in_flight=1)
    [row] = rows(res)
    assert row["related_ts_ns"] == ns(4.0)
    assert row["related_line"] == t.line_of("postcopy_ram_fault_thread_request")


def test_discard_in_flight_in_transit(tmp_path):
    """A target page of the host page is received at 4.0 (``ram_load_postcopy_loop`` on the
    listen thread; its host page is the next placement's), inflate at 5.0, place at 6.0:
    IN_TRANSIT -> discard-in-flight."""
    t = postcopy().receive(4.0, 0x5000).inflate(5.0, gpa=0x5000).place(6.0, 0x5000).end(9.0)
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(in_flight=1)
    assert rows(res)[0]["related_ts_ns"] == ns(4.0)


@pytest.mark.parametrize(
    "race_ns, expected",
    [
        (2 * MS, conf(in_flight=1)),  # placed 1 ms later, inside the race window
        (1 * MS, conf(in_flight=1)),  # t' - t <= race_window: the boundary is in flight
        (1 * MS - 1, conf(before=1)),
        (0, conf(before=1)),  # the default
    ],
)
def test_race_window(tmp_path, race_ns, expected):
    """Untouched page inflated at 5.000 and placed at 5.001."""
    t = postcopy().inflate(5.0, gpa=0x5000).place(5.001, 0x5000).end(9.0)
    res = replay(t, tmp_path, "no-inhibit", race_window_ns=race_ns)
    assert classes(res, "no-inhibit") == expected
    assert res.summary["race_window_ns"] == race_ns
    assert rows(res)[0]["related_ts_ns"] == ns(5.001)


def test_discard_before_arrival(tmp_path):
    """Inflated at 5.0, placed at 6.0: the place refills it (refilled_pages)."""
    t = postcopy().inflate(5.0, gpa=0x5000).place(6.0, 0x5000).end(9.0)
    res = replay(t, tmp_path)
    assert classes(res, "no-inhibit") == conf(before=1)
    assert res.summary["policies"]["no-inhibit"]["refilled_pages"] == 1
    assert res.summary["policies"]["no-inhibit"]["conflict_pages"] == 1
    [row] = rows(res)
    assert (row["related_ts_ns"], row["related_line"]) == (
        ns(6.0),
        t.line_of("postcopy_place_page"),
    )


def test_no_conflict_when_absent_and_never_placed(tmp_path):
    """An inflate of a page nothing touched and nobody places later: nothing provable."""
    t = postcopy().place(4.0, 0x6000).inflate(5.0, gpa=0x5000).end(9.0)
    res = replay(t, tmp_path)
    for p in POLICIES:
        assert classes(res, p) == conf(), p
    assert res.conflicts.num_rows == 0
    assert res.summary["policies"]["no-inhibit"]["applied_pages"] == 1


def test_refault_expected_after_place_then_deflate_in_the_window(tmp_path):
    """Placed 4.0, inflated 5.0, deflated 6.0 (same window): the after-place conflict expects a
    refault. Page 0x6000's deflate comes after END: not the same window."""
    t = (
        postcopy()
        .place(4.0, 0x5000)
        .place(4.0, 0x6000)
        .inflate(5.0, gpas=[0x5000, 0x6000])
        .deflate(6.0, gpa=0x5000)
        .end(9.0)
        .deflate(9.5, gpa=0x6000)
    )
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(after=2)
    got = {r["gpa"]: r["refault_expected"] for r in rows(res)}
    assert got == {0x5000: True, 0x6000: False}
    assert res.summary["policies"]["no-inhibit"]["refault_expected"] == 1
    assert res.summary["policies"]["no-inhibit"]["deflate_pages"] == 2


# -- sections 2 and 5: window edges ------------------------------------------------------------


def test_inflate_just_before_listen_is_applied_by_every_policy(tmp_path):
    """No discard command (DISCARD = LISTEN); the inflate is 1 us before LISTEN, the page is
    placed later: outside every window -> applied, never a conflict."""
    t = (
        T()
        .advise(1.0)
        .inflate(2.999999, gpa=0x5000)
        .listen(3.0)
        .run(3.1)
        .place(4.0, 0x5000)
        .end(9.0)
    )
    res = replay(t, tmp_path)
    for p in POLICIES:
        assert fates(res)[p] == (1, 0, 0, 0), p
        assert classes(res, p) == conf(), p
        assert res.summary["policies"][p]["inflate_pages_in_window"] == 0, p
    assert "discard: no discard command, taken as LISTEN" in res.summary["windows"][0]["inferred"]


def test_inflate_at_listen_time_but_logged_before_it_is_outside(tmp_path):
    """Same timestamp as LISTEN, earlier in the trace: ties go by trace order -> before."""
    t = T().advise(1.0).inflate(3.0, gpa=0x5000).listen(3.0).run(3.1).place(4.0, 0x5000).end(9.0)
    res = replay(t, tmp_path)
    for p in POLICIES:
        assert fates(res)[p] == (1, 0, 0, 0), p
        assert classes(res, p) == conf(), p


def test_inflate_exactly_at_listen_is_in_the_window(tmp_path):
    """Same timestamp as LISTEN, logged after it: start <= t -> inside every window."""
    t = T().advise(1.0).listen(3.0).inflate(3.0, gpa=0x5000).run(3.1).place(4.0, 0x5000).end(9.0)
    res = replay(t, tmp_path)
    assert fates(res) == {
        "no-inhibit": (1, 0, 0, 0),
        "inhibit": (0, 1, 0, 0),
        "inhibit-discard": (0, 1, 0, 0),
        "defer": (1, 0, 1, 0),
    }
    assert classes(res, "no-inhibit") == conf(before=1)
    for p in POLICIES:
        assert res.summary["policies"][p]["inflate_pages_in_window"] == 1, p


def test_inflate_exactly_at_end_is_outside_the_conflict_window(tmp_path):
    """END 9.0, cleanup done 9.5. An inflate at 9.0 logged after the END lines: t < end fails
    -> applied at t by no-inhibit and defer with no conflict although the page is PRESENT;
    still inside inhibit's LISTEN..CLEANUP and inhibit-discard's DISCARD..STATE_END."""
    t = postcopy().place(4.0, 0x5000).end(9.0, cleanup=9.5).inflate(9.0, gpa=0x5000)
    res = replay(t, tmp_path)
    assert fates(res) == {
        "no-inhibit": (1, 0, 0, 0),
        "inhibit": (0, 1, 0, 0),
        "inhibit-discard": (0, 1, 0, 0),
        "defer": (1, 0, 0, 0),
    }
    for p in POLICIES:
        assert classes(res, p) == conf(), p
    assert res.summary["policies"]["no-inhibit"]["inflate_pages_in_window"] == 0
    assert res.summary["policies"]["defer"]["inflate_pages_in_window"] == 0


def test_inflate_at_end_time_logged_before_end_is_inside(tmp_path):
    t = postcopy().place(4.0, 0x5000).inflate(9.0, gpa=0x5000).end(9.0, cleanup=9.5)
    res = replay(t, tmp_path)
    assert classes(res, "no-inhibit") == conf(after=1)
    assert fates(res)["defer"] == (1, 0, 1, 0)


@pytest.mark.parametrize(
    "when, applied_by",
    [
        # END 9.0 <= t < CLEANUP 9.5 (<= STATE_END 9.8)
        (9.2, {"no-inhibit", "defer"}),
        # CLEANUP 9.5 <= t < STATE_END 9.8 (the listen thread's last line)
        (9.6, {"no-inhibit", "defer", "inhibit"}),
        # after STATE_END
        (9.9, set(POLICIES)),
        # first DISCARD 2.0 <= t < LISTEN 3.0
        (2.5, {"no-inhibit", "defer", "inhibit"}),
    ],
)
def test_inflate_between_markers(tmp_path, when, applied_by):
    """END 9.0, CLEANUP 9.5, STATE_END 9.8. Outside LISTEN..END nothing conflicts, even for a
    PRESENT page: the late inflates hit 0x6000 (placed at 4.0), the early one 0x5000 (loaded
    in precopy)."""
    t = (
        T()
        .advise(1.0)
        .load_page(1.5, 0x5000)
        .discard(2.0)
        .listen(3.0)
        .run(3.1)
        .place(4.0, 0x6000)
        .end(9.0, cleanup=9.5, state_end=9.8)
    )
    gpa = 0x5000 if when < 3.0 else 0x6000
    t.inflate(when, gpa=gpa)
    res = replay(t, tmp_path)
    for p in POLICIES:
        applied = p in applied_by
        assert fates(res)[p] == ((1, 0, 0, 0) if applied else (0, 1, 0, 0)), p
        assert classes(res, p) == conf(), p


def test_window_markers_in_the_summary(tmp_path):
    t = postcopy().end(9.0, cleanup=9.5, state_end=9.8)
    w = t.load(tmp_path).replay().summary["windows"]
    assert len(w) == 1
    got = {k: w[0][f"{k}_ns"] for k in ("advise", "discard", "listen", "run", "end")}
    assert got == {"advise": ns(1.0), "discard": ns(2.0), "listen": ns(3.0), "run": ns(3.1),
                   "end": ns(9.0)}  # fmt: skip
    assert (w[0]["cleanup_ns"], w[0]["state_end_ns"]) == (ns(9.5), ns(9.8))
    assert w[0]["inferred"] == []


# -- section 5: defer ---------------------------------------------------------------------------


def test_defer_inflate_then_deflate_is_cancelled(tmp_path):
    t = postcopy().inflate(4.0, gpa=0x5000).deflate(5.0, gpa=0x5000).end(9.0)
    res = replay(t, tmp_path)
    d = res.summary["policies"]["defer"]
    assert (d["deferred_pages"], d["applied_pages"], d["applied_at_end_pages"]) == (1, 0, 0)
    assert (d["cancelled_pages"], d["dropped_pages"]) == (1, 0)
    assert (d["inflate_pages_in_window"], d["deflate_pages_in_window"]) == (1, 1)


def test_defer_inflate_twice_applies_once_at_end(tmp_path):
    t = postcopy().inflate(4.0, gpa=0x5000).inflate(5.0, gpa=0x5000).end(9.0)
    res = replay(t, tmp_path)
    d = res.summary["policies"]["defer"]
    assert (d["deferred_pages"], d["applied_pages"], d["applied_at_end_pages"]) == (2, 1, 1)
    assert d["cancelled_pages"] == 1
    assert fates(res)["no-inhibit"] == (2, 0, 0, 0)
    assert fates(res)["inhibit"] == (0, 2, 0, 0)


def test_defer_inflate_deflate_inflate_applies_the_last(tmp_path):
    t = (
        postcopy()
        .inflate(4.0, gpa=0x5000)
        .deflate(5.0, gpa=0x5000)
        .inflate(6.0, gpa=0x5000)
        .end(9.0)
    )
    d = replay(t, tmp_path).summary["policies"]["defer"]
    assert (d["deferred_pages"], d["applied_pages"], d["cancelled_pages"]) == (2, 1, 1)


def mixed_trace() -> T:
    """Inflates before, inside and after the window, repeated and cancelled pages, a refill,
    an after-place, a second balloon thread."""
    return (
        T()
        .advise(1.0)
        .inflate(1.5, gpas=[0x1000, 0x2000])
        .discard(2.0)
        .inflate(2.5, gpa=0x3000)
        .listen(3.0)
        .run(3.1)
        .place(3.5, 0x4000)
        .inflate(4.0, gpas=[0x4000, 0x5000, 0x6000])
        .deflate(4.5, gpa=0x5000)
        .inflate(5.0, gpas=[0x6000, 0x7000], tid=1003)
        .place(6.0, 0x7000)
        .end(9.0, cleanup=9.5, state_end=9.8)
        .inflate(9.2, gpa=0x8000)
        .inflate(9.6, gpa=0x9000)
        .inflate(10.0, gpa=0xA000)
    )


def test_accounting_identity_for_every_policy(tmp_path):
    """applied + dropped + cancelled = inflate requests, per policy (section 8); the counts
    themselves by hand: 11 inflates, 3 before LISTEN (1 of them after DISCARD), 5 in
    LISTEN..END (one page, 0x6000, twice; 0x5000 deflated), 1 in END..CLEANUP, 1 in
    CLEANUP..STATE_END, 1 after."""
    res = replay(mixed_trace(), tmp_path)
    s = res.summary["policies"]
    for p in POLICIES:
        v = s[p]
        assert v["inflate_pages"] == 11 and v["deflate_pages"] == 1, p
        assert v["applied_pages"] + v["dropped_pages"] + v["cancelled_pages"] == 11, p
    assert fates(res) == {
        "no-inhibit": (11, 0, 0, 0),
        "inhibit": (5, 6, 0, 0),  # LISTEN..CLEANUP: the 5 + 9.2
        "inhibit-discard": (3, 8, 0, 0),  # DISCARD..STATE_END: 2.5, the 5, 9.2, 9.6
        # the 5 queued: 0x4000, 0x7000 and one 0x6000 applied at END; 0x5000 (deflated) and
        # the other 0x6000 cancelled; the 6 outside LISTEN..END applied at t
        "defer": (9, 0, 5, 2),
    }
    assert {p: s[p]["inflate_pages_in_window"] for p in POLICIES} == {
        "no-inhibit": 5,
        "inhibit": 6,
        "inhibit-discard": 8,
        "defer": 5,
    }
    assert s["defer"]["applied_at_end_pages"] == 3
    # no-inhibit conflicts: 0x4000 placed at 3.5 -> after-place; 0x7000 placed at 6.0 ->
    # before-arrival; the second 0x6000 inflate finds the page ABSENT (first inflate) and
    # never placed -> none.
    assert classes(res, "no-inhibit") == conf(after=1, before=1)


# -- section 2: several migrations -------------------------------------------------------------


def two_migrations() -> T:
    """Migration 0: ADVISE 1, LISTEN 3, END 9; migration 1: ADVISE 20, LISTEN 23, END 29."""
    t = T().advise(1.0).discard(2.0).listen(3.0).run(3.1)
    t.place(4.0, 0x5000).place(4.0, 0x7000).inflate(5.0, gpa=0x8000).end(9.0)
    t.inflate(15.0, gpa=0x7000)
    t.advise(20.0).discard(22.0).listen(23.0).run(23.1)
    t.place(24.0, 0x6000).place(24.0, 0x8000).inflate(25.0, gpas=[0x5000, 0x6000]).end(29.0)
    return t


def test_two_migrations_two_windows(tmp_path):
    res = replay(two_migrations(), tmp_path)
    w = res.windows_table().to_pylist()
    assert [r["migration"] for r in w] == [0, 1]
    assert [(r["advise_ns"], r["listen_ns"], r["end_ns"]) for r in w] == [
        (ns(1.0), ns(3.0), ns(9.0)),
        (ns(20.0), ns(23.0), ns(29.0)),
    ]
    assert [x["postcopy"] for x in res.summary["windows"]] == [True, True]


def test_two_migrations_each_inflate_judged_against_its_own_window(tmp_path):
    """No-inhibit: 0x8000 inflated in window 0 is placed only in migration 1 (not inside its
    own window) -> none; 0x7000 inflated at 15 is between the windows -> applied, none;
    0x5000 was placed in migration 0, but migration 1's ADVISE reset it -> none; 0x6000 placed
    at 24 and inflated at 25 -> after-place in migration 1. Inhibit drops the 3 in-window."""
    res = replay(two_migrations(), tmp_path)
    assert classes(res, "no-inhibit") == conf(after=1)
    [row] = rows(res)
    assert (row["gpa"], row["migration"], row["related_ts_ns"]) == (0x6000, 1, ns(24.0))
    assert fates(res)["inhibit"] == (1, 3, 0, 0)
    assert fates(res)["defer"] == (4, 0, 3, 0)
    assert res.summary["policies"]["inhibit"]["inflate_pages_in_window"] == 3


def test_missing_end_is_inferred_and_reported(tmp_path):
    """No END marker at all: the window runs to the end of the trace (reported)."""
    t = postcopy().place(4.0, 0x5000).inflate(5.0, gpa=0x5000)
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(after=1)
    assert "end: not traced, taken as the end of the trace" in res.summary["windows"][0]["inferred"]


def test_end_taken_as_cleanup_done(tmp_path):
    """Only postcopy_ram_incoming_cleanup_exit traced: END = cleanup done (reported)."""
    t = postcopy().place(4.0, 0x5000).inflate(5.0, gpa=0x5000)
    t.raw(9.0, t.listen_tid, "postcopy_ram_incoming_cleanup_exit")
    t.inflate(9.5, gpa=0x5000)
    res = replay(t, tmp_path)
    assert res.summary["windows"][0]["end_ns"] == ns(9.0)
    assert "end: taken as cleanup done" in res.summary["windows"][0]["inferred"]
    assert res.summary["policies"]["no-inhibit"]["inflate_pages_in_window"] == 1
    assert classes(res, "no-inhibit") == conf(after=1)


def test_missing_end_before_the_next_migration_keeps_the_last_line(tmp_path):
    """Migration 0 has no END marker; its last line (before migration 1's ADVISE) is an
    inflate of a placed page: inside the window as it would be were it the last migration."""
    t = postcopy().place(4.0, 0x5000).inflate(6.0, gpa=0x5000, queue=0, set_config=False)
    t.advise(20.0).discard(22.0).listen(23.0).run(23.1).end(29.0)
    res = replay(t, tmp_path, "no-inhibit")
    assert res.summary["policies"]["no-inhibit"]["inflate_pages_in_window"] == 1
    assert classes(res, "no-inhibit") == conf(after=1)


# -- section 3: UNKNOWN pages when precopy loads are not traced --------------------------------


def test_untouched_pages_are_unknown_without_precopy_loads(tmp_path):
    """No ram_load_loop at all: 0x5000 (never touched) cannot be proven PRESENT -> no conflict;
    0x6000's next event is a place -> before-arrival."""
    t = postcopy().inflate(5.0, gpas=[0x5000, 0x6000]).place(6.0, 0x6000).end(9.0)
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(before=1)
    assert [r["gpa"] for r in rows(res)] == [0x6000]


def test_precopy_loads_make_pages_present(tmp_path):
    """The same with 0x5000 loaded in precopy: PRESENT -> after-place; a loaded page that the
    discard bitmap dropped (0x7000) is ABSENT and never placed -> none."""
    t = (
        T()
        .advise(1.0)
        .load_page(1.5, 0x5000)
        .load_page(1.5, 0x7000)
        .discard(2.0, ranges=[(0x7000, 0x1000)])
        .listen(3.0)
        .run(3.1)
        .inflate(5.0, gpas=[0x5000, 0x6000, 0x7000])
        .place(6.0, 0x6000)
        .end(9.0)
    )
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(after=1, before=1)
    assert {r["gpa"]: r["class"] for r in rows(res)} == {0x5000: AFTER, 0x6000: BEFORE}
    assert [r["related_ts_ns"] for r in rows(res) if r["gpa"] == 0x5000] == [ns(1.5)]


def test_a_page_whose_next_event_is_a_place_was_absent(tmp_path):
    """Section 3: "QEMU only places missing pages, so a page whose next event is a place is
    ABSENT until that place, whatever else is known." Loaded in precopy (the discard range
    that dropped it again is not traced), inflated at 5.0, placed at 6.0: before-arrival."""
    t = (
        T()
        .advise(1.0)
        .load_page(1.5, 0x5000)
        .discard(2.0)
        .listen(3.0)
        .run(3.1)
        .inflate(5.0, gpa=0x5000)
        .place(6.0, 0x5000)
        .end(9.0)
    )
    res = replay(t, tmp_path, "no-inhibit")
    assert classes(res, "no-inhibit") == conf(before=1)


# -- section 7: observed outcome and fidelity --------------------------------------------------


def observed_trace(major: int, minor: int, d_applied: bool = False) -> T:
    """Inflates A 1.5 (before DISCARD, discarded), D 2.5 (DISCARD..LISTEN, not discarded),
    B 5.0 (in the window, not discarded), C 9.9 (after STATE_END, discarded): what QEMU 7.2
    does; ``d_applied``: D discarded too (what QEMU 2.5-5.0 does)."""
    return (
        T()
        .version(0.5, major, minor)
        .advise(1.0)
        .inflate(1.5, gpa=0x1000, discard=True)
        .discard(2.0)
        .inflate(2.5, gpa=0x2000, discard=d_applied)
        .listen(3.0)
        .run(3.1)
        .inflate(5.0, gpa=0x3000)
        .end(9.0, cleanup=9.5, state_end=9.8)
        .inflate(9.9, gpa=0x4000, discard=True)
    )


@pytest.mark.parametrize(
    "major, minor, policy, agree, disagree",
    [
        (7, 2, "inhibit-discard", 4, 0),  # predicts A, C applied; D, B dropped
        (5, 1, "inhibit-discard", 4, 0),
        (5, 0, "inhibit", 3, 1),  # LISTEN..CLEANUP: predicts D applied
        (4, 2, "inhibit", 3, 1),
        (2, 5, "inhibit", 3, 1),
        (2, 4, "no-inhibit", 2, 2),  # predicts all applied
    ],
)
def test_observed_outcome_and_fidelity(tmp_path, major, minor, policy, agree, disagree):
    res = replay(observed_trace(major, minor), tmp_path)
    obs = res.summary["observed"]
    assert (obs["applied_pages"], obs["dropped_pages"], obs["unknown_pages"]) == (2, 2, 0)
    f = obs["fidelity"]
    assert (f["policy"], f["agree"], f["disagree"]) == (policy, agree, disagree)
    assert res.summary["qemu_policy"]["policy"] == policy


@pytest.mark.parametrize(
    "observed_version, policy, scores",
    [
        ((7, 2), "inhibit-discard", "inhibit predicts 3, inhibit-discard predicts 4"),
        ((4, 2), "inhibit", "inhibit predicts 4, inhibit-discard predicts 3"),
    ],
)
def test_qemu_policy_chosen_by_the_observed_outcome_when_the_range_spans_5_1(
    tmp_path, monkeypatch, observed_version, policy, scores
):
    """Without an exact version, a detected range across the 5.1 change leaves two rules: the
    qemu policy is the one that predicts what QEMU did, and the reason says so. The trace
    does what ``observed_version`` does (its query-version removed, the range forced)."""
    from analyses import qemu_version

    monkeypatch.setattr(
        qemu_version, "run", lambda trace: {"exact": None, "min": "4.0", "max": "10.0"}
    )
    t = observed_trace(*observed_version, d_applied=observed_version < (5, 1))
    t._lines = [x for x in t._lines if "qmp_exit_query_version" not in x[2]]
    res = replay(t, tmp_path)
    q = res.summary["qemu_policy"]
    assert q["policy"] == policy
    assert q["why"] == f"QEMU 4.0..10.0 (detected range); {scores} observed outcomes"
    f = res.summary["observed"]["fidelity"]
    assert (f["agree"], f["disagree"]) == (4, 0)


def test_qemu_policy_alias_follows_the_version(tmp_path):
    res = replay(observed_trace(4, 2), tmp_path, "qemu")
    assert list(res.summary["policies"]) == ["qemu"]
    q = res.summary["policies"]["qemu"]
    assert q["effective_policy"] == "inhibit"
    assert (q["applied_pages"], q["dropped_pages"]) == (3, 1)


def test_qemu_version_option_overrides_the_trace(tmp_path):
    res = replay(observed_trace(7, 2), tmp_path, qemu_version="2.4")
    f = res.summary["observed"]["fidelity"]
    assert (f["policy"], f["agree"], f["disagree"]) == ("no-inhibit", 2, 2)


def test_without_discard_tracing_the_outcome_is_unknown(tmp_path):
    t = postcopy().inflate(5.0, gpas=[0x5000, 0x6000]).end(9.0).inflate(9.9, gpa=0x7000)
    obs = replay(t, tmp_path).summary["observed"]
    assert (obs["applied_pages"], obs["dropped_pages"], obs["unknown_pages"]) == (0, 0, 3)
    assert (obs["fidelity"]["agree"], obs["fidelity"]["disagree"]) == (0, 0)


def test_observed_discard_may_come_after_other_threads_lines(tmp_path):
    """The discard is the next line of the request's thread; a placement between them on the
    listen thread does not hide it."""
    t = postcopy().version(0.5, 7, 2)
    t.raw(5.0, 1002, "virtio_balloon_handle_output", "section name: pc.ram gpa: 0x5000")
    t.place(5.0, 0x9000)
    t.raw(5.0, 1002, "ram_block_discard_range",
          f"pc.ram@0x{HVA + 0x5000:x} + 0x1000: madvise: 1 fallocate: 0 ret: 0")  # fmt: skip
    t.raw(5.0, 1002, "virtio_balloon_set_config", "actual: 1 oldactual: 0")
    t.end(9.0)
    obs = replay(t, tmp_path).summary["observed"]
    assert (obs["applied_pages"], obs["dropped_pages"]) == (1, 0)
    assert (obs["fidelity"]["agree"], obs["fidelity"]["disagree"]) == (0, 1)


# -- section 6: anomalies ----------------------------------------------------------------------


def test_observed_refault_and_double_place(tmp_path):
    """0x5000: placed then faulted -> refault; 0x6000: placed twice -> double place; 0x7000:
    placed, ballooned, faulted -> refault on the migration's own state, whatever the policy;
    0x8000: faulted, never present -> nothing; 0x9000: faulted then placed -> nothing."""
    t = (
        postcopy()
        .place(4.0, 0x5000)
        .fault(5.0, 0x5000)
        .place(4.0, 0x6000)
        .place(5.0, 0x6000)
        .place(4.0, 0x7000)
        .inflate(4.5, gpa=0x7000)
        .fault(5.0, 0x7000)
        .fault(5.0, 0x8000)
        .fault(5.0, 0x9000)
        .place(5.5, 0x9000)
        .end(9.0)
    )
    for policy in ("all", "no-inhibit", "inhibit"):
        res = replay(t, tmp_path, policy)
        assert res.summary["anomalies"] == {"observed-refault": 2, "observed-double-place": 1}


def test_refault_of_a_precopy_page_needs_traced_loads(tmp_path):
    with_loads = T().advise(1.0).load_page(1.5, 0x5000).listen(3.0).fault(5.0, 0x5000).end(9.0)
    without = T().advise(1.0).listen(3.0).fault(5.0, 0x5000).end(9.0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert replay(with_loads, tmp_path / "a").summary["anomalies"]["observed-refault"] == 1
    assert replay(without, tmp_path / "b").summary["anomalies"]["observed-refault"] == 0


# -- section 4: direction ----------------------------------------------------------------------


def test_unresolved_directions_are_counted_and_in_no_policy(tmp_path):
    """Two requests with no set_config after them on their thread and no get_config: counted
    as unresolved, in no policy's inflates or deflates."""
    t = (
        postcopy()
        .inflate(4.0, gpa=0x4000)
        .inflate(5.0, gpas=[0x5000, 0x6000], set_config=False, tid=1003)
        .end(9.0)
    )
    res = replay(t, tmp_path)
    s = res.summary
    assert s["unresolved_direction_pages"] == 2
    assert s["balloon_pages"] == 3
    for p in POLICIES:
        v = s["policies"][p]
        assert (v["inflate_pages"], v["deflate_pages"]) == (1, 0), p
        assert v["applied_pages"] + v["dropped_pages"] + v["cancelled_pages"] == 1, p
    assert s["observed"]["unknown_pages"] == 1


def test_set_config_must_match_the_batch_size(tmp_path):
    """Two unconfirmed requests, then a batch of one with its set_config (+1) on the same
    thread: the set_config covers three requests but says one -> all three unresolved."""
    t = (
        postcopy()
        .place(4.0, 0x9000)
        .inflate(4.0, gpas=[0x5000, 0x6000], set_config=False)
        .inflate(5.0, gpa=0x7000)
        .end(9.0)
    )
    s = replay(t, tmp_path).summary
    assert s["unresolved_direction_pages"] == 3
    assert s["policies"]["no-inhibit"]["inflate_pages"] == 0


@pytest.mark.parametrize("case", ["unresolved", "unmapped"])
def test_summary_without_any_page_event(tmp_path, case):
    """One balloon request and no placement or fault. Unresolved: counted as such (section
    4). Unmapped (GPA outside --memory-map): accounted, applied outside the map's pages, never
    a conflict (docs/replay.md)."""
    if case == "unresolved":
        t = postcopy().inflate(5.0, gpa=0x5000, set_config=False).end(9.0)
        s = replay(t, tmp_path).summary
        assert s["unresolved_direction_pages"] == 1
        assert s["policies"]["no-inhibit"]["inflate_pages"] == 0
    else:
        t = postcopy().end(9.0).inflate(9.9, gpa=0x5000)
        s = replay(t, tmp_path, memory_map="0x100000000-0x200000000=pc.ram").summary
        assert s["unmapped_balloon_pages"] == 1
        assert s["policies"]["no-inhibit"]["applied_pages"] == 1


def test_unmapped_balloon_pages_are_accounted_but_never_conflict(tmp_path):
    """GPA 0x5000 is outside the given map; 0x100006000 maps to offset 0x6000."""
    t = (
        postcopy()
        .place(4.0, 0x5000)
        .place(4.0, 0x6000)
        .inflate(5.0, gpas=[0x5000, 0x100006000])
        .end(9.0)
    )
    res = replay(t, tmp_path, memory_map="0x100000000-0x140000000=pc.ram")
    s = res.summary
    assert s["unmapped_balloon_pages"] == 1
    assert fates(res)["no-inhibit"] == (2, 0, 0, 0)
    assert fates(res)["inhibit"] == (0, 2, 0, 0)
    assert classes(res, "no-inhibit") == conf(after=1)
    assert [(r["gpa"], r["offset"]) for r in rows(res)] == [(0x100006000, 0x6000)]


def test_queue_notify_wins_over_set_config(tmp_path):
    """Queue 1 (deflateq) before a batch whose set_config says +2: deflates; queue 0 before a
    batch whose set_config says -1: an inflate."""
    t = (
        postcopy(actual=10)
        .inflate(4.0, gpas=[0x5000, 0x6000], queue=1)
        .deflate(5.0, gpa=0x7000, queue=0)
        .end(9.0)
    )
    s = replay(t, tmp_path).summary
    assert s["direction_evidence"] == {"virtio_queue_notify": 3}
    assert (
        s["policies"]["inhibit"]["inflate_pages"],
        s["policies"]["inhibit"]["deflate_pages"],
    ) == (1, 2)


def test_get_config_target_resolves_a_batch_without_set_config(tmp_path):
    t = (
        postcopy()
        .get_config(4.9, num_pages=8, actual=0)
        .inflate(5.0, gpa=0x5000, set_config=False)
        .end(9.0)
    )
    s = replay(t, tmp_path).summary
    assert s["direction_evidence"] == {"target": 1}
    assert s["policies"]["inhibit"]["inflate_pages"] == 1
    assert s["unresolved_direction_pages"] == 0


def test_a_following_discard_resolves_an_inflate(tmp_path):
    t = postcopy().end(9.0).inflate(9.9, gpa=0x5000, discard=True, set_config=False)
    s = replay(t, tmp_path).summary
    assert s["direction_evidence"] == {"discard": 1}
    assert s["policies"]["inhibit"]["inflate_pages"] == 1
    assert s["observed"]["applied_pages"] == 1


# -- section 1: addresses ----------------------------------------------------------------------

BIG = ("pc.ram", HVA, 4 * GIB)  # 4 GiB q35: 2 GiB low, 2 GiB from 4 GiB


def high_gpa_trace(place_offset: int) -> T:
    t = T().advise(1.0, blocks=[BIG]).discard(2.0).listen(3.0).run(3.1)
    return t.place(4.0, place_offset).inflate(5.0, gpa=0x100005000).end(9.0)


def test_gpa_above_4g_maps_after_the_low_memory(tmp_path):
    """4 GiB q35 guest: low memory ends at 2 GiB, so GPA 4 GiB + 0x5000 is offset
    2 GiB + 0x5000, placed at 4.0 -> after-place; the conflict row carries all three."""
    res = replay(high_gpa_trace(0x80005000), tmp_path, "no-inhibit")
    [row] = rows(res)
    assert (row["class"], row["ramblock"]) == (AFTER, "pc.ram")
    assert (row["gpa"], row["offset"], row["hva"]) == (0x100005000, 0x80005000, HVA + 0x80005000)
    gmap = res.summary["address_map"]["gpa_map"]
    assert [(g["gpa_start"], g["gpa_end"], g["offset"]) for g in gmap] == [
        ("0x0", "0x80000000", "0x0"),
        ("0x100000000", "0x180000000", "0x80000000"),
    ]


def test_memory_map_overrides_the_x86_rule(tmp_path):
    t = high_gpa_trace(0x5000)
    tr = t.load(tmp_path)
    assert classes(tr.replay("no-inhibit"), "no-inhibit") == conf()
    res = tr.replay("no-inhibit", memory_map="0x100000000-0x200000000=pc.ram")
    assert classes(res, "no-inhibit") == conf(after=1)
    assert (rows(res)[0]["offset"], rows(res)[0]["hva"]) == (0x5000, HVA + 0x5000)
    assert res.summary["address_map"]["gpa_map_evidence"] == "--memory-map"


def hugepage_trace() -> T:
    """Eight placements, all 2 MiB aligned; host page 1 (offset 2 MiB) is placed at 6.0, after
    two inflates of 4 KiB pages inside it (5.0 and 5.5); host page 2 (offset 4 MiB) is placed
    at 4.2, before an inflate of a 4 KiB page inside it (5.0)."""
    t = postcopy()
    for i in range(8):
        t.place(6.0 if i == 1 else 4.0 + i / 10, i * 0x200000)
    t.inflate(5.0, gpas=[0x200000, 0x403000]).inflate(5.5, gpa=0x201000)
    return t.end(9.0)


def test_hugepage_host_pages(tmp_path):
    """2 MiB host pages: both inflates of host page 1 find it not present and placed later
    (before-arrival, the first one's discard leaves it ABSENT for the second); the one of
    host page 2 finds it present. Three conflicts on two distinct host pages."""
    res = replay(hugepage_trace(), tmp_path, "no-inhibit")
    [block] = res.summary["address_map"]["blocks"]
    assert block["host_page_size"] == 2 << 20
    v = res.summary["policies"]["no-inhibit"]
    assert v["conflicts"] == conf(after=1, before=2)
    assert v["conflict_pages"] == 2
    assert sorted((r["offset"], r["class"]) for r in rows(res)) == [
        (0x200000, BEFORE),
        (0x201000, BEFORE),
        (0x403000, AFTER),
    ]


def test_observed_outcome_on_large_host_pages(tmp_path):
    """QEMU discards a 2 MiB host page only when all of it is ballooned, so a 4 KiB inflate
    with no discard after it is 'unknown' there (not 'dropped'); a traced discard is still
    'applied'. Told 4 KiB host pages, the same trace reads as one applied, one dropped."""
    t = postcopy()
    for i in range(8):
        t.place(4.0 + i / 10, i * 0x200000)
    t.inflate(5.0, gpas=[0x200000, 0x403000], discard=[0x403000]).end(9.0)

    def observed(**kw):
        obs = replay(t, tmp_path, "no-inhibit", **kw).summary["observed"]
        return obs["applied_pages"], obs["dropped_pages"], obs["unknown_pages"]

    assert observed() == (1, 0, 1)
    assert observed(host_page_size=4096) == (1, 1, 0)


def test_host_page_size_option(tmp_path):
    """Told 4 KiB host pages: only the 4 KiB page at 2 MiB is ever placed (at 6.0); the pages
    at 2 MiB + 4 KiB and 4 MiB + 12 KiB are untouched."""
    res = replay(hugepage_trace(), tmp_path, "no-inhibit", host_page_size=4096)
    assert res.summary["address_map"]["blocks"][0]["host_page_size"] == 4096
    v = res.summary["policies"]["no-inhibit"]
    assert (v["conflicts"], v["conflict_pages"]) == (conf(before=1), 1)


# -- the command line --------------------------------------------------------------------------


def conflicting_trace() -> T:
    """after-place (0x5000, deflated later in the window) and before-arrival (0x6000)."""
    return (
        postcopy()
        .version(0.5, 7, 2)
        .place(4.0, 0x5000)
        .inflate(5.0, gpas=[0x5000, 0x6000])
        .place(6.0, 0x6000)
        .deflate(7.0, gpa=0x5000)
        .end(9.0)
    )


POLICY_KEYS = {
    "inflate_pages",
    "deflate_pages",
    "inflate_pages_in_window",
    "applied_pages",
    "dropped_pages",
    "deferred_pages",
    "cancelled_pages",
    "conflicts",
    "conflict_pages",
}


def is_int(x) -> bool:
    return type(x) is int


def test_replay_json_shape(monkeypatch, capsys, tmp_path):
    path = conflicting_trace().write(tmp_path / "dst.trace.log")
    code, out, _ = cli(monkeypatch, capsys, "replay", path, "--json", "--policy", "all")
    assert code == 0
    s = json.loads(out)
    assert set(s["policies"]) == set(POLICIES)
    for name, v in s["policies"].items():
        assert set(v) >= POLICY_KEYS, name
        assert all(is_int(v[k]) for k in POLICY_KEYS - {"conflicts"}), name
        assert set(v["conflicts"]) == {AFTER, IN_FLIGHT, BEFORE}
        assert all(is_int(n) for n in v["conflicts"].values())
    obs = s["observed"]
    assert {"applied_pages", "dropped_pages", "unknown_pages", "fidelity"} <= set(obs)
    assert all(is_int(obs[k]) for k in ("applied_pages", "dropped_pages", "unknown_pages"))
    assert {"policy", "agree", "disagree"} <= set(obs["fidelity"])
    assert obs["fidelity"]["policy"] == "inhibit-discard"
    assert is_int(obs["fidelity"]["agree"]) and is_int(obs["fidelity"]["disagree"])
    assert s["anomalies"] == {"observed-refault": 0, "observed-double-place": 0}
    assert is_int(s["unresolved_direction_pages"]) and s["unresolved_direction_pages"] == 0
    # the figures, by hand
    assert s["policies"]["no-inhibit"]["conflicts"] == conf(after=1, before=1)
    assert s["policies"]["no-inhibit"]["conflict_pages"] == 2
    assert s["policies"]["inhibit"]["dropped_pages"] == 2
    assert s["policies"]["defer"]["deferred_pages"] == 2
    assert s["policies"]["defer"]["cancelled_pages"] == 1  # 0x5000 deflated at 7.0


def test_analyze_json_carries_the_replay(monkeypatch, capsys, tmp_path):
    path = conflicting_trace().write(tmp_path / "dst.trace.log")
    _, out, _ = cli(monkeypatch, capsys, "analyze", path, "--json")
    r = json.loads(out)["replay"]
    assert set(r["policies"]) == set(POLICIES)
    assert r["policies"]["no-inhibit"]["conflicts"] == conf(after=1, before=1)


@pytest.mark.parametrize("policy, code", [("no-inhibit", 1), ("inhibit", 0), ("defer", 0)])
def test_fail_on_conflicts(monkeypatch, capsys, tmp_path, policy, code):
    path = conflicting_trace().write(tmp_path / "dst.trace.log")
    got, _, _ = cli(
        monkeypatch, capsys, "replay", path, "--fail-on", "conflicts", "--policy", policy
    )
    assert got == code


def test_conflicts_out_csv(monkeypatch, capsys, tmp_path):
    t = conflicting_trace()
    path = t.write(tmp_path / "dst.trace.log")
    out = tmp_path / "x.csv"
    code, _, _ = cli(
        monkeypatch,
        capsys,
        "replay",
        path,
        "--policy",
        "no-inhibit,inhibit",
        "--conflicts-out",
        out,
    )
    assert code == 0
    table = pacsv.read_csv(out)
    assert {
        "ts_ns", "policy", "class", "ramblock", "offset", "gpa", "hva", "line", "related_ts_ns",
        "refault_expected",
    } <= set(table.column_names)  # fmt: skip
    got = sorted(table.to_pylist(), key=lambda r: r["gpa"])
    assert len(got) == 2
    a, b = got
    inflate_line = t.line_of("virtio_balloon_handle_output section name: pc.ram gpa: 0x5000")
    assert {k: a[k] for k in (
        "ts_ns", "policy", "class", "ramblock", "offset", "gpa", "hva", "line", "related_ts_ns",
        "refault_expected",
    )} == {
        "ts_ns": ns(5.0), "policy": "no-inhibit", "class": AFTER, "ramblock": "pc.ram",
        "offset": 0x5000, "gpa": 0x5000, "hva": HVA + 0x5000, "line": inflate_line,
        "related_ts_ns": ns(4.0), "refault_expected": True,
    }  # fmt: skip
    assert (b["class"], b["gpa"], b["line"], b["related_ts_ns"], b["refault_expected"]) == (
        BEFORE,
        0x6000,
        inflate_line + 1,
        ns(6.0),
        False,
    )


def test_cli_memory_map_and_race_window(monkeypatch, capsys, tmp_path):
    high = high_gpa_trace(0x5000).write(tmp_path / "high.log")
    args = ("replay", high, "--json", "--policy", "no-inhibit")
    _, out, _ = cli(monkeypatch, capsys, *args)
    assert json.loads(out)["policies"]["no-inhibit"]["conflicts"] == conf()
    _, out, _ = cli(monkeypatch, capsys, *args, "--memory-map", "0x100000000-0x200000000=pc.ram")
    assert json.loads(out)["policies"]["no-inhibit"]["conflicts"] == conf(after=1)

    race = postcopy().inflate(5.0, gpa=0x5000).place(5.001, 0x5000).end(9.0)
    path = race.write(tmp_path / "race.log")
    _, out, _ = cli(monkeypatch, capsys, "replay", path, "--json", "--race-window", "2000000")
    s = json.loads(out)
    assert s["race_window_ns"] == 2 * MS
    assert s["policies"]["no-inhibit"]["conflicts"] == conf(in_flight=1)
