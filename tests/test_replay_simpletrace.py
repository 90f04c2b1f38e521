"""The replay reads a simpletrace binary like the log of the same run (QEMU 7.2 capture d)."""

from __future__ import annotations

import tracetool
from tests.conftest import shared_trace


def test_simpletrace_replay_matches_the_log_backend_of_the_same_run():
    folder = "d-simpletrace-balloon-during-postcopy"
    te = shared_trace(folder, "trace-events-all")
    simple = tracetool.load(shared_trace(folder, "dst.trace.simple.gz"), trace_events=te).replay()
    log = tracetool.load(shared_trace(folder, "dst.trace.log.gz")).replay()
    s, g = simple.summary, log.summary
    for key in ("inflate_pages", "deflate_pages", "inflate_pages_in_window", "dropped_pages"):
        assert s["policies"]["inhibit-discard"][key] == g["policies"]["inhibit-discard"][key], key
    assert s["observed"]["applied_pages"] == g["observed"]["applied_pages"] == 65536
    assert s["observed"]["dropped_pages"] == g["observed"]["dropped_pages"] == 65536
    # simpletrace has process ids only: STATE_END falls back to 'completed', and QEMU's rule
    # still predicts every inflate
    assert (
        s["observed"]["fidelity"]["agree"] == 131072 and s["observed"]["fidelity"]["disagree"] == 0
    )
    assert any("state_end" in i for i in s["windows"][0]["inferred"])
