"""numpy columns of a trace, converted once per replay.

A table column is a pyarrow ``ChunkedArray`` (one chunk per parsed block), so every
``to_numpy()`` concatenates a fresh copy; the replay's steps read the same columns (the events'
``line``, ``tid``, ``ts_ns``; the typed tables' addresses) several times and share them here.
The arrays are read-only views for the callers: nobody writes into them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracetool.trace import Trace


class Columns:
    """Cache of numpy columns of ``trace.events`` (``name=None``) and of its typed tables."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self._cache: dict[tuple, object] = {}

    def _table(self, name: str | None) -> pa.Table:
        return self.trace.events if name is None else self.trace.table(name)

    def get(self, name: str | None, col: str) -> np.ndarray:
        """``table[col].to_numpy()`` (nulls as NaN, like pyarrow)."""
        key = ("np", name, col)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = self._table(name)[col].to_numpy(zero_copy_only=False)
        return got

    def i64(self, name: str | None, col: str) -> np.ndarray:
        """An integer column as int64 (uint64 reinterpreted, as ``astype`` would wrap it)."""
        key = ("i64", name, col)
        got = self._cache.get(key)
        if got is None:
            a = self.get(name, col)
            got = a.view(np.int64) if a.dtype == np.uint64 else a.astype(np.int64, copy=False)
            self._cache[key] = got
        return got

    def lines_increasing(self) -> bool:
        """Whether the events' line numbers increase row by row (a log read in order)."""
        got = self._cache.get("increasing")
        if got is None:
            chunks = self.chunks(None, "line")
            got = all(bool(np.all(c[1:] > c[:-1])) for c in chunks) and all(
                a[-1] < b[0] for a, b in zip(chunks, chunks[1:], strict=False)
            )
            self._cache["increasing"] = got
        return got

    def chunks(self, name: str | None, col: str) -> list[np.ndarray]:
        """A column as one numpy array per non-empty chunk (no copy when it has no nulls)."""
        key = ("chunks", name, col)
        got = self._cache.get(key)
        if got is None:
            arr = self._table(name)[col]
            got = [c.to_numpy(zero_copy_only=False) for c in arr.chunks if len(c)]
            self._cache[key] = got
        return got

    def thread(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``trace.events`` on thread ``tid`` (-1: no thread id) and their lines,
        found chunk by chunk (no whole-column copy)."""
        key = ("thread", tid)
        got = self._cache.get(key)
        if got is None:
            rows, lines, start = [], [], 0
            ev = self._table(None)
            tids, line = ev["tid"], ev["line"]
            if tids.num_chunks != line.num_chunks or any(
                len(a) != len(b) for a, b in zip(tids.chunks, line.chunks, strict=True)
            ):
                tids = pa.chunked_array([tids.combine_chunks()], tids.type)
                line = pa.chunked_array([line.combine_chunks()], line.type)
            for t, ln in zip(tids.chunks, line.chunks, strict=True):
                if not len(t):
                    continue
                t = (t.fill_null(-1) if t.null_count else t).to_numpy()
                r = np.flatnonzero(t == tid)
                rows.append(r + start)
                lines.append(ln.to_numpy()[r])
                start += len(t)
            if not rows:
                got = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            else:
                got = (np.concatenate(rows), np.concatenate(lines))
            self._cache[key] = got
        return got

    def i64_chunks(self, name: str | None, col: str) -> list[np.ndarray]:
        """An integer column as int64, one array per chunk without copying when no chunk has
        nulls (else the whole column as one array)."""
        arr = self._table(name)[col]
        if arr.null_count or not pa.types.is_integer(arr.type) or arr.type.bit_width != 64:
            return [self.i64(name, col)]
        return [c.to_numpy().view(np.int64) for c in arr.chunks if len(c)]

    def take(self, name: str | None, col: str, rows: np.ndarray) -> np.ndarray:
        """``table[col].to_numpy()[rows]`` without converting the whole column."""
        got = self._cache.get(("np", name, col))
        if got is not None:
            return got[rows]
        return self._table(name)[col].take(pa.array(rows)).to_numpy(zero_copy_only=False)

    def tid(self, name: str | None = None) -> np.ndarray:
        """Thread ids as int64, -1 where null."""
        key = ("tid", name)
        got = self._cache.get(key)
        if got is None:
            col = self._table(name)["tid"]
            if col.null_count:
                col = col.fill_null(-1)
            got = self._cache[key] = col.to_numpy().astype(np.int64)
        return got

    def names(self, name: str, col: str) -> tuple[list, np.ndarray | None]:
        """A string column as (distinct values, codes into them; None when there is a single
        value and no null). Values are in order of first appearance (``dictionary_encode``'s)."""
        key = ("names", name, col)
        got = self._cache.get(key)
        if got is None:
            arr = self._table(name)[col]
            if arr.null_count == 0:
                uniq = pc.unique(arr)
                if len(uniq) <= 1:
                    got = self._cache[key] = (uniq.to_pylist(), None)
                    return got
            enc = pc.dictionary_encode(pc.cast(arr, "string"))
            if hasattr(enc, "combine_chunks"):
                enc = enc.combine_chunks()
            values = enc.dictionary.to_pylist()
            idx = enc.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)
            got = self._cache[key] = (values, idx)
        return got
