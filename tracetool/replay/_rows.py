"""Compiled single passes over a table's rows for the normalisation (numba), each with the
numpy expression it replaces, used without numba (``TRACETOOL_NO_NUMBA=1``).

A pass writes no per-row temporary: on the precopy loads (most of a trace's lines) the numpy
expressions cost more in fresh pages for their temporaries than in arithmetic.
"""

from __future__ import annotations

import numpy as np

from parsers import _numba_setup

COMPILED = _numba_setup.available()
if COMPILED:
    from numba import njit  # after _numba_setup chose the cache folder

    @njit(cache=_numba_setup.CACHE, nogil=True)
    def _tracked(off, shift, limit, base, bitmap):  # pragma: no cover - compiled
        n = off.shape[0]
        rows = np.empty(n, np.int64)
        k = 0
        for i in range(n):
            p = off[i] >> shift
            if p >= 0 and p < limit and bitmap[base + p]:
                rows[k] = i
                k += 1
        return rows[:k].copy()

    @njit(cache=_numba_setup.CACHE, nogil=True)
    def _diff_min(hva, off):  # pragma: no cover - compiled
        m = np.uint64(0xFFFFFFFFFFFFFFFF)
        for i in range(hva.shape[0]):
            d = np.uint64(hva[i]) - np.uint64(off[i])
            if d < m:
                m = d
        return m

    @njit(cache=_numba_setup.CACHE, nogil=True)
    def _outside(hva, off, base, size):  # pragma: no cover - compiled
        bad = 0
        for i in range(hva.shape[0]):
            if np.uint64(hva[i]) - np.uint64(off[i]) - base >= size:
                bad += 1
        return bad


def tracked(
    chunks: list[np.ndarray], shift: int, limit: int, base: int, bitmap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (over the concatenated ``chunks`` of block offsets) whose page ``off >> shift`` is
    set in ``bitmap[base : base + limit]``, and their offsets."""
    rows, offs, start = [], [], 0
    for off in chunks:  # per parsed block
        if COMPILED:
            r = _tracked(off, np.int64(shift), np.int64(limit), np.int64(base), bitmap)
        else:
            pidx = off >> shift
            r = np.flatnonzero(pidx.view(np.uint64) < np.uint64(limit))  # negative: not a page
            r = r[bitmap[base + pidx[r]]]
        rows.append(r + start)
        offs.append(off[r])
        start += len(off)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(offs)


def base_check(hva: list[np.ndarray], off: list[np.ndarray]) -> int:
    """min(hva - off) over chunks, uint64 arithmetic."""
    if COMPILED:
        return min(int(_diff_min(h, o)) for h, o in zip(hva, off, strict=True))
    return min(int((h - o).view(np.uint64).min()) for h, o in zip(hva, off, strict=True))


def outside(hva: list[np.ndarray], off: list[np.ndarray], base: int, size: int) -> int:
    """Rows whose ``hva - off`` is not in ``[base, base + size)`` (``base + size < 2**64``)."""
    if COMPILED:
        b, s = np.uint64(base), np.uint64(size)
        return sum(int(_outside(h, o, b, s)) for h, o in zip(hva, off, strict=True))
    return sum(
        int(np.count_nonzero((h - o).view(np.uint64) - np.uint64(base) >= np.uint64(size)))
        for h, o in zip(hva, off, strict=True)
    )
