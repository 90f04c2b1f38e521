"""The replay engine on the shared real QEMU 7.2 captures.

Expected figures come from outside tracetool: each folder's MANIFEST.md ("Balloon commands vs
trace": which ``balloon`` commands inflated or deflated, which ran inside the destination's
postcopy window, how many 4 KiB ``ram_block_discard_range`` QEMU logged for them) and an awk
pass over the raw log (directions from the ``set_config`` deltas, the window from the
LISTEN/END lines, observed discards as the next line of the request's thread).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import shared_trace

# From MANIFEST.md, "Balloon commands vs trace" (destination side; 4 KiB pages).
MANIFEST = {
    "a-balloon-during-postcopy": {
        # 512 MiB inside postcopy (131072, all in the window), then 1024 / 512 / 1024 after
        "inflate": 131072 + 131072,
        "deflate": 131072 + 131072,
        "in_window": 131072,
        "applied": 131072,  # ram_block_discard_range (+0x1000) of the 512 MiB after completion
    },
    "b-balloon-no-overlap": {
        # src commands are in src.trace.log; on dst: 1024 (from 768) / 512 / 1024 after
        "inflate": 131072,
        "deflate": 65536 + 131072,
        "in_window": 0,
        "applied": 131072,
    },
    "d-simpletrace-balloon-during-postcopy": {
        # 256 MiB of a 512 MiB guest inside postcopy, then 512 / 256 / 512 after
        "inflate": 65536 + 65536,
        "deflate": 65536 + 65536,
        "in_window": 65536,
        "applied": 65536,
    },
}
POLICIES = ("no-inhibit", "inhibit", "inhibit-discard", "defer")

# Balloon figures of a raw 7.2 log: "TID@SEC.USEC:event args". A batch of handle_output lines
# is settled by the next set_config of its thread when |actual - oldactual| is its size. In-window
# figures for two windows [lo1, hi1) and [lo2, hi2); timestamps are compared as strings (same
# width) to keep microseconds exact.
AWK = r"""
{
  at = index($0, "@"); colon = index($0, ":")
  tid = substr($0, 1, at - 1); ts = substr($0, at + 1, colon - at - 1) ""
  split(substr($0, colon + 1), f, " "); ev = f[1]
}
ev == "virtio_balloon_handle_output" {
  batch[tid]++
  for (w = 1; w <= 2; w++) {
    if (ts >= (lo[w] "") && ts < (hi[w] "")) {
      win[w, tid]++
      if (!((w, f[6]) in seen)) { seen[w, f[6]] = 1; distinct[w]++ }
    }
  }
}
ev == "virtio_balloon_set_config" {
  d = f[3] - f[5]
  if (d > 0 && d == batch[tid]) { inf += d; for (w = 1; w <= 2; w++) infwin[w] += win[w, tid] }
  else if (d < 0 && -d == batch[tid]) { def += -d; for (w = 1; w <= 2; w++) defwin[w] += win[w, tid] }
  else unres += batch[tid]
  batch[tid] = 0; win[1, tid] = 0; win[2, tid] = 0
}
ev == "ram_block_discard_range" && prev[tid] == "virtio_balloon_handle_output" { applied++ }
{ prev[tid] = ev }
END {
  for (t in batch) unres += batch[t]
  printf "%d %d %d %d", inf, def, applied, unres
  for (w = 1; w <= 2; w++) printf " %d %d %d", infwin[w], defwin[w], distinct[w]
  printf "\n"
}
"""
MARKERS = (
    "loadvm_postcopy_handle_listen",
    "postcopy_ram_listen_thread_exit",
    "loadvm_postcopy_ram_handle_discard",
    "loadvm_state_cleanup",
)


def markers(path) -> dict[str, list[str]]:
    """Timestamps (``SEC.USEC`` text) of the window markers, in trace order."""
    out = subprocess.run(
        f"zcat '{path}' | grep -E -- ':({'|'.join(MARKERS)}) '",
        shell=True, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    got: dict[str, list[str]] = {m: [] for m in MARKERS}
    for line in out.splitlines():
        ts, rest = line.split("@", 1)[1].split(":", 1)
        got[rest.split(" ", 1)[0]].append(ts)
    return got


def awk_figures(path, windows) -> tuple[dict[str, int], ...]:
    """Whole-trace figures, then per window (in_window, deflate_in_window, distinct_in_window)."""
    # string constants: a number would print back through CONVFMT ("%.6g")
    bounds = [f'lo[{i + 1}] = "{lo}"; hi[{i + 1}] = "{hi}"' for i, (lo, hi) in enumerate(windows)]
    prog = "BEGIN { " + "; ".join(bounds) + " }\n" + AWK
    zcat = subprocess.Popen(["zcat", str(path)], stdout=subprocess.PIPE)
    out = subprocess.run(
        ["awk", prog], stdin=zcat.stdout, capture_output=True, text=True, check=True
    ).stdout
    zcat.wait()
    n = list(map(int, out.split()))
    whole = dict(zip(("inflate", "deflate", "applied", "unresolved"), n[:4], strict=True))
    per = [
        dict(
            zip(
                ("in_window", "deflate_in_window", "distinct_in_window"),
                n[4 + 3 * i : 7 + 3 * i],
                strict=True,
            )
        )
        for i in range(2)
    ]
    return whole, *per


@pytest.fixture(scope="module", params=list(MANIFEST))
def capture(request):
    """One replay per capture, with the independent figures."""
    import tracetool

    name = request.param
    path = shared_trace(name, "dst.trace.log.gz")
    m = markers(path)
    # LISTEN..END (no-inhibit, defer, conflicts) and DISCARD..STATE_END (inhibit-discard,
    # the widest window): the in-window figures must not depend on which.
    whole, narrow, wide = awk_figures(
        path,
        [
            (m["loadvm_postcopy_handle_listen"][0], m["postcopy_ram_listen_thread_exit"][0]),
            (m["loadvm_postcopy_ram_handle_discard"][0], m["loadvm_state_cleanup"][-1]),
        ],
    )
    summary = tracetool.load(path).replay("all").summary
    return name, summary, {**whole, **narrow}, wide


def test_independent_figures_agree(capture):
    """The awk pass and the MANIFEST say the same (so a failure below is the engine's)."""
    name, _, narrow, wide = capture
    m = MANIFEST[name]
    assert {k: narrow[k] for k in wide} == wide
    got = {k: narrow[k] for k in ("inflate", "deflate", "in_window", "applied")}
    assert got == m
    assert (narrow["unresolved"], narrow["deflate_in_window"]) == (0, 0)


def test_directions(capture):
    name, s, _, _ = capture
    m = MANIFEST[name]
    for p in POLICIES:
        v = s["policies"][p]
        assert (v["inflate_pages"], v["deflate_pages"]) == (m["inflate"], m["deflate"]), p
    assert s["unresolved_direction_pages"] == 0
    assert s["balloon_pages"] == m["inflate"] + m["deflate"]
    assert s["unmapped_balloon_pages"] == 0


def test_in_window_inflates(capture):
    name, s, _, _ = capture
    for p in POLICIES:
        assert s["policies"][p]["inflate_pages_in_window"] == MANIFEST[name]["in_window"], p
        assert s["policies"][p]["deflate_pages_in_window"] == 0, p


@pytest.mark.parametrize("policy", ["inhibit", "inhibit-discard"])
def test_inhibit_policies_drop_exactly_the_in_window_inflates(capture, policy):
    name, s, _, _ = capture
    m = MANIFEST[name]
    v = s["policies"][policy]
    assert (v["dropped_pages"], v["applied_pages"]) == (
        m["in_window"],
        m["inflate"] - m["in_window"],
    )
    assert (v["deferred_pages"], v["cancelled_pages"]) == (0, 0)
    assert v["conflicts"] == dict.fromkeys(v["conflicts"], 0)


def test_no_inhibit_applies_everything(capture):
    name, s, _, _ = capture
    m = MANIFEST[name]
    v = s["policies"]["no-inhibit"]
    assert (v["applied_pages"], v["dropped_pages"], v["deferred_pages"]) == (m["inflate"], 0, 0)
    # only the in-window inflates can conflict, on at most as many host pages
    assert sum(v["conflicts"].values()) <= m["in_window"]
    if m["in_window"] == 0:
        assert v["conflict_pages"] == 0


def test_defer_queues_the_in_window_inflates(capture):
    """Queued: the in-window inflates; applied once per distinct page at END; the rest of the
    queue cancelled (no deflates inside the window)."""
    name, s, narrow, _ = capture
    m = MANIFEST[name]
    v = s["policies"]["defer"]
    distinct = narrow["distinct_in_window"]
    assert v["deferred_pages"] == m["in_window"]
    assert v["applied_at_end_pages"] == distinct
    assert v["applied_pages"] == m["inflate"] - m["in_window"] + distinct
    assert v["cancelled_pages"] == m["in_window"] - distinct
    assert v["dropped_pages"] == 0
    assert v["conflicts"] == dict.fromkeys(v["conflicts"], 0)


def test_observed_outcome_and_fidelity(capture):
    """QEMU 7.2 drops in-window inflates (inhibit-discard) and logs a discard for the others:
    fidelity of the qemu policy is 100%."""
    name, s, _, _ = capture
    m = MANIFEST[name]
    obs = s["observed"]
    assert (obs["applied_pages"], obs["dropped_pages"], obs["unknown_pages"]) == (
        m["applied"],
        m["inflate"] - m["applied"],
        0,
    )
    f = obs["fidelity"]
    assert (f["policy"], f["agree"], f["disagree"]) == ("inhibit-discard", m["inflate"], 0)
    assert s["qemu_policy"]["why"].startswith("QEMU 7.2.22")


def test_source_trace_replays_with_every_inflate_applied():
    """b's source ran the balloon before migrating (MANIFEST: 512 MiB inflate, 131072 pages,
    all discarded; 768 MiB deflate, 65536 pages); a source has no incoming window."""
    import tracetool

    path = shared_trace("b-balloon-no-overlap", "src.trace.log.gz")
    s = tracetool.load(path).replay("all").summary
    for p in POLICIES:
        v = s["policies"][p]
        assert (v["inflate_pages"], v["deflate_pages"]) == (131072, 65536), p
        assert (v["applied_pages"], v["dropped_pages"]) == (131072, 0), p
        assert sum(v["conflicts"].values()) == 0, p
    assert s["observed"]["applied_pages"] == 131072
