"""The compiled and pure-pyarrow engines give identical tables on real and damaged traces."""

from __future__ import annotations

import gzip

import pytest

import tracetool
from tests.conftest import DST_EXCERPT, MIXED, SRC_EXCERPT, shared_trace


def _both(path, **kw):
    from parsers import _numba_setup

    if not _numba_setup.available():
        pytest.skip(_numba_setup.UNAVAILABLE)
    return tracetool.load(path, engine="numba", **kw), tracetool.load(path, engine="arrow", **kw)


def _assert_same(a: tracetool.Trace, b: tracetool.Trace) -> None:
    assert a.stats.lines == b.stats.lines
    assert a.events.equals(b.events), "events differ"
    assert a.other.equals(b.other)
    assert a.rejected.equals(b.rejected)
    assert a.event_names() == b.event_names()
    for name in a.event_names():
        assert a.table(name).equals(b.table(name)), name
    assert a.stats.shapes == b.stats.shapes


@pytest.mark.parametrize("path", [DST_EXCERPT, SRC_EXCERPT, MIXED])
def test_samples(path):
    _assert_same(*_both(path))


def test_damaged_copy_of_a_real_trace(tmp_path):
    """Cut lines in half, flip bytes, add garbage: both engines reject the same lines."""
    lines = gzip.decompress(DST_EXCERPT.read_bytes()).split(b"\n")[:3000]
    for i in range(5, len(lines), 97):
        lines[i] = lines[i][: len(lines[i]) // 2]
    for i in range(11, len(lines), 131):
        lines[i] = lines[i].replace(b"0x", b"0y", 1)
    lines[40] = b"\xff\xfe not utf8"
    lines[41] = b"nul\x00byte"
    path = tmp_path / "damaged.log"
    path.write_bytes(b"\n".join(lines))
    a, b = _both(path)
    _assert_same(a, b)
    assert a.stats.rejected_lines >= 15  # cut lines often still match (e.g. a shorter hex)
    assert a.stats.balanced


def test_real_source_trace_with_its_build_trace_events():
    src = shared_trace("d-simpletrace-balloon-during-postcopy", "src.trace.log.gz")
    te = shared_trace("d-simpletrace-balloon-during-postcopy", "trace-events-all")
    a, b = _both(src, trace_events=te)
    _assert_same(a, b)
    assert a.stats.rejected_lines == 0 and a.stats.other_lines == 0
