"""The replay normalisation's fast paths give what their general (or brute-force) versions give:
the unstable sort of distinct keys, the bitmap page universe, per-thread "next line" look-ups,
the compiled row passes and their numpy versions, line -> order by subtraction."""

from __future__ import annotations

import numpy as np
import pytest

import tracetool
from tests.conftest import DST_EXCERPT
from tests.replay_traces import postcopy
from tracetool.replay import _rows, balloon, windows
from tracetool.replay.columns import Columns
from tracetool.replay.pages import PAGE_SHIFT, _Universe, argsort_keys


@pytest.mark.parametrize("dups", [False, True])
def test_argsort_keys_is_the_stable_argsort(dups):
    rng = np.random.default_rng(1)
    keys = rng.permutation(50_000).astype(np.int64)
    if dups:
        keys[::7] = 3  # equal keys: their relative order must be kept
    assert np.array_equal(argsort_keys(keys), np.argsort(keys, kind="stable"))


def _universes(block, pidx):
    fast = _Universe(block, pidx)
    old, _Universe.MAX_BITS = _Universe.MAX_BITS, -1  # force the sorted-array version
    try:
        slow = _Universe(block, pidx)
    finally:
        _Universe.MAX_BITS = old
    return fast, slow


def test_bitmap_universe_equals_sorted_universe():
    rng = np.random.default_rng(2)
    block = rng.integers(0, 3, 5_000)
    pidx = rng.integers(0, 4_000, 5_000)
    fast, slow = _universes(block, pidx)
    assert fast.bitmap is not None and slow.bitmap is None
    expect = np.unique(block * PAGE_SHIFT + pidx)
    assert np.array_equal(fast.keys, expect) and np.array_equal(slow.keys, expect)
    qb = rng.integers(-1, 5, 20_000)  # unknown blocks and pages beyond or below any block
    qp = rng.integers(-10, 5_000, 20_000)
    member = np.isin(qb * PAGE_SHIFT + qp, expect) & (qb >= 0) & (qp >= 0)
    assert np.array_equal(fast.contains(qb, qp), member)
    assert np.array_equal(slow.contains(qb, qp), member)
    for b in (-1, 0, 2, 7):  # one block for every row
        one = np.isin(b * PAGE_SHIFT + qp, expect) & (b >= 0) & (qp >= 0)
        assert np.array_equal(fast.contains(b, qp), one)
    kb, kp = expect // PAGE_SHIFT, expect % PAGE_SHIFT
    assert np.array_equal(fast.rank(kb, kp), np.arange(len(expect)))
    assert np.array_equal(slow.rank(kb, kp), np.arange(len(expect)))


def test_next_row_per_thread_equals_brute_force():
    trace = tracetool.load(DST_EXCERPT)
    cols = Columns(trace)
    threads = balloon.ThreadOrder(trace, cols)
    assert threads._increasing  # a log: the per-thread look-up is the one tested first
    tid = trace.events["tid"].fill_null(-1).to_numpy().astype(np.int64)
    line = trace.events["line"].to_numpy()
    rng = np.random.default_rng(3)
    q = rng.choice(len(line), 300, replace=False)
    q_tid, q_line = tid[q], line[q]
    expect = np.array(
        [
            (np.flatnonzero((tid == t) & (line > ln))[:1].tolist() or [-1])[0]
            for t, ln in zip(q_tid.tolist(), q_line.tolist(), strict=True)
        ]
    )
    assert np.array_equal(threads.next_row(q_tid, q_line), expect)
    old, balloon.ThreadOrder.MAX_THREADS = balloon.ThreadOrder.MAX_THREADS, 0  # the full sort
    try:
        assert np.array_equal(threads.next_row(q_tid, q_line), expect)
    finally:
        balloon.ThreadOrder.MAX_THREADS = old
    rows = np.array([-1, 0, len(line) - 1])
    assert np.array_equal(threads.lines_of(rows), line[rows])


@pytest.mark.parametrize("in_order", [True, False])
def test_order_of_lines_equals_its_table(in_order, tmp_path):
    # a hand-made log in time order (lines without gaps: of_lines subtracts), and the excerpt
    # (timestamps not in line order: sorted, looked up in the line -> order table)
    trace = postcopy().load(tmp_path) if in_order else tracetool.load(DST_EXCERPT)
    order = windows.Order(trace)
    assert order._contiguous is in_order
    lines = trace.events["line"].to_numpy()
    ts = trace.events["ts_ns"].to_numpy()
    rank = np.lexsort((lines, ts))  # time, then line
    expect = np.empty(len(lines), np.int64)
    expect[rank] = np.arange(len(lines))
    assert np.array_equal(order.of_lines(lines), expect)
    assert np.array_equal(order.lines_sorted[expect], lines)


def test_row_passes_equal_numpy():
    rng = np.random.default_rng(4)
    off = [rng.integers(-(1 << 20), 1 << 34, 3_000) for _ in range(3)]
    bitmap = rng.random(1 << 19) < 0.3
    bitmap[-1] = False
    rows, offs = _rows.tracked(off, 12, (1 << 19) - 1 - 100, 100, bitmap)
    every = np.concatenate(off)
    p = every >> 12
    keep = (p >= 0) & (p < (1 << 19) - 101)
    keep[keep] = bitmap[100 + p[keep]]
    assert np.array_equal(rows, np.flatnonzero(keep)) and np.array_equal(offs, every[keep])
    hva = [o + (1 << 40) + rng.integers(0, 8192, len(o)) for o in off]
    diff = (np.concatenate(hva) - every).view(np.uint64)
    assert _rows.base_check(hva, off) == int(diff.min())
    base, size = 1 << 40, 4096
    assert _rows.outside(hva, off, base, size) == int(
        np.count_nonzero(diff - np.uint64(base) >= size)
    )
