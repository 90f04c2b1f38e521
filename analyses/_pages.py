"""Vectorised page-key helpers shared by the fault and blocktime analyses.

A page key is ``(migration, page-aligned HVA)``. :func:`group_first` collapses records to the
first one per key; :func:`next_after` finds, for each query record, the first record of another
set with the same key on a later trace line (a placement after a request, an end after a begin).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tracetool.trace import Trace

_KEY = np.dtype([("m", "<i8"), ("h", "<u8")])


def col(t: pa.Table, name: str, dtype, fill=0) -> np.ndarray:
    """A column as numpy (nulls filled)."""
    c = t[name]
    if c.null_count:
        c = c.fill_null(fill)
    return c.to_numpy().astype(dtype, copy=False)


def ts_col(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``ts_ns`` as int64 (0 where null) and the mask of rows that have one."""
    c = t["ts_ns"]
    have = c.is_valid().to_numpy(zero_copy_only=False)
    return col(t, "ts_ns", np.int64), have


def concat(trace: Trace, names: tuple[str, ...], columns: tuple[str, ...]) -> pa.Table | None:
    """The records of several events with the same columns, in trace order; None if none."""
    parts = [trace.table(n).select(["ts_ns", "tid", "line", *columns]) for n in names if n in trace]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    t = pa.concat_tables(parts, promote_options="permissive")
    return t.take(np.argsort(col(t, "line", np.int64), kind="stable"))


def keys(mig: np.ndarray, hva: np.ndarray) -> np.ndarray:
    k = np.empty(len(mig), _KEY)
    k["m"], k["h"] = mig, hva
    return k


def lookup(sorted_keys: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each of ``k`` in the sorted unique ``sorted_keys``, and whether it is there."""
    if len(sorted_keys) == 0:
        return np.zeros(len(k), np.int64), np.zeros(len(k), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, k), len(sorted_keys) - 1)
    return pos, sorted_keys[pos] == k


def group_first(k: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first record (by line) of each distinct key, and each key's record count."""
    order = np.lexsort((line, k["h"], k["m"]))
    ks = k[order]
    new = np.ones(len(ks), bool)
    new[1:] = ks[1:] != ks[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(ks)))
    return order[starts], counts


def next_after(qk: np.ndarray, qline: np.ndarray, pk: np.ndarray, pline: np.ndarray) -> np.ndarray:
    """For each query, the index into ``pk`` of the first record with the same key and a later
    line; -1 where there is none."""
    if len(qk) == 0 or len(pk) == 0:
        return np.full(len(qk), -1, np.int64)
    uniq, inv = np.unique(np.concatenate([qk, pk]), return_inverse=True)
    inv = inv.reshape(-1)
    qd, pd = inv[: len(qk)].astype(np.int64), inv[len(qk) :].astype(np.int64)
    span = int(max(qline.max(), pline.max())) + 2
    pc = pd * span + pline
    order = np.argsort(pc, kind="stable")
    pcs = pc[order]
    i = np.searchsorted(pcs, qd * span + qline, side="right")
    ok = i < len(pcs)
    ok[ok] = pcs[i[ok]] // span == qd[ok]
    out = np.full(len(qk), -1, np.int64)
    out[ok] = order[i[ok]]
    return out
