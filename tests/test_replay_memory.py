"""What the replay result keeps: shared equal arrays, narrow columns with int64 fallbacks, and
the per-replay caches it lets go of, all without changing an answer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import tracetool
from tests.conftest import DST_EXCERPT
from tracetool import memory
from tracetool.replay.engine import _share_identical
from tracetool.replay.model import Kind, Policy
from tracetool.replay.pages import PageEvents, _Builder
from tracetool.replay.result import PolicyRun
from tracetool.replay.windows import Order


def _run(cclass: list[int], refill: list[int]) -> PolicyRun:
    n = len(cclass)
    z = np.zeros(n, np.int8)
    return PolicyRun(
        Policy.INHIBIT, Policy.INHIBIT, np.zeros(n, bool), z.copy(), z.copy(),
        np.array(cclass, np.int8), np.full(n, -1, np.int32), np.zeros(n, bool),
        np.array(refill, np.int64),
    )  # fmt: skip


def test_equal_arrays_are_shared_and_different_ones_kept():
    a, b, c = _run([0, 1, 0], [5, 7, 9]), _run([0, 1, 0], [5, 7, 8]), _run([1, 1, 0], [5, 7, 9])
    _share_identical([a, b, c])
    assert b.cclass is a.cclass and c.refill_at is a.refill_at
    assert c.cclass is not a.cclass and list(c.cclass) == [1, 1, 0]
    assert b.refill_at is not a.refill_at and list(b.refill_at) == [5, 7, 8]


def test_builder_narrows_only_what_fits():
    b = _Builder()
    b.add(Kind.PLACE, 0, np.array([3, 1]), np.array([0, 1]), np.array([10, 2**31]), [0, 0])
    b.add(Kind.INFLATE, 0, np.array([2]), np.array([2]), np.array([7]), [0], req=np.array([0]))
    assert not b.fits_int32("line") and b.fits_int32("req")
    to = np.array([2, 0, 1])
    line = b.scatter("line", to, np.int64)
    req = b.scatter("req", to, np.int32)
    assert line.dtype == np.int64 and list(line) == [2**31, 7, 10]
    assert req.dtype == np.int32 and list(req) == [-1, 0, -1]


def test_page_event_ts_from_order_clipped_or_zero():
    order = np.array([2, 0, 5], np.int32)
    args = dict(page=order, order=order, kind=order, req=order, line=order, offset=order, hva=order)
    ts = PageEvents(ts_sorted=np.array([10, 20, 30], np.int64), **args).ts
    assert ts.dtype == np.int64 and list(ts) == [30, 10, 30]  # order 5: the last timestamp
    assert list(PageEvents(ts_sorted=None, **args).ts) == [0, 0, 0]


def test_result_keeps_no_columns_cache_and_tables_stay_int64():
    t = tracetool.load(DST_EXCERPT)
    res = t.replay()
    fresh = Order(t)  # built without the replay: the reference line -> order map
    lines = t.events["line"].to_numpy()
    assert res.order._cols is None and res.order._rank_rows is None
    assert np.array_equal(res.order.of_lines(lines), fresh.of_lines(lines))
    assert res.order.line_of(5) == fresh.line_of(5)
    pe = res.page_events
    assert pe.order.dtype == pe.req.dtype == pe.line.dtype == np.int32
    assert np.array_equal(pe.ts, fresh.ts_sorted[pe.order])
    table = res.page_events_table()
    assert table.schema.field("line").type == pa.int64()
    assert np.array_equal(table["line"].to_numpy(), pe.line)
    assert res.conflicts.schema.field("related_line").type == pa.int64()
    assert len(res.conflicts) > 0


def test_trim_heap_calls_malloc_trim_only_where_it_exists(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: calls.append)
    memory.trim_heap()
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # not glibc
    memory.trim_heap()
    assert calls == [0]
