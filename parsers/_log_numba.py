"""Compiled engine of the QEMU text-log parser: numpy + numba kernels, one pass per block."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers import _log_kernels as K
from parsers._log_common import (
    REASON_BAD_TID,
    REASON_BAD_UTF8,
    REASON_NO_NAME,
    REASON_NUL,
    SHAPE_ID,
    SHAPE_NAMES,
    LogContext,
    reason_no_match,
    wrap_int,
)
from parsers.base import Chunk, typed_schema
from tracetool.catalog import ArgKind, Conv, EventDef
from tracetool.errors import FormatError
from tracetool.schema import EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA


def _string_array(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, nullable=False
) -> pa.Array:
    """An Arrow string array of byte ranges of ``buf``; with ``nullable``, ``(null)`` is null."""
    null = None
    if nullable:
        offsets, data, null = K.gather_nullable(buf, starts, ends)
        nulls = int(null.sum())
    else:
        offsets, data = K.gather(buf, starts, ends)
        nulls = 0
    validity = pa.array(~null, pa.bool_()).buffers()[1] if nulls else None
    return pa.StringArray.from_buffers(
        len(starts), pa.py_buffer(offsets), pa.py_buffer(data), validity, nulls
    )


class _Plans:
    """Flat plan tables for the kernel, built once per event name and cached on the context."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[tuple[int, EventDef, np.ndarray, bytes]]] = {}

    def get(self, ctx: LogContext, name: str) -> list[tuple[int, EventDef, np.ndarray, bytes]]:
        got = self.by_name.get(name)
        if got is None:
            got = []
            for vi, ev in enumerate(ctx.options.catalog.variants(name)):
                if ev.plan is None:
                    continue
                rows, lits = [], bytearray()
                for tok in ev.plan.tokens:
                    rows.append((int(tok.kind), len(lits), len(tok.literal), tok.flags))
                    lits += tok.literal
                got.append((vi, ev, np.array(rows, np.int64).reshape(-1, 4), bytes(lits)))
            self.by_name[name] = got
        return got


def _plans(ctx: LogContext) -> _Plans:
    p = getattr(ctx, "_numba_plans", None)
    if p is None:
        p = _Plans()
        ctx._numba_plans = p  # type: ignore[attr-defined]
    return p


def _line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nl = np.flatnonzero(buf == 10)
    n = len(nl) + (1 if len(buf) and buf[-1] != 10 else 0)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    if n:
        starts[0] = 0
        starts[1:] = nl[: n - 1] + 1
        ends[: len(nl)] = nl
        if n > len(nl):
            ends[-1] = len(buf)
        cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
        ends -= cr
    return starts, ends


def _flag_lines(buf, starts, ends, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Lines holding a NUL byte, and lines that are not valid UTF-8."""
    n = len(starts)
    nul = np.zeros(n, bool)
    bad = np.zeros(n, bool)
    zpos = np.flatnonzero(buf == 0)
    if len(zpos):
        nul[np.searchsorted(starts, zpos, "right") - 1] = True
    hpos = np.flatnonzero(buf >= 0x80)
    if len(hpos):
        for li in np.unique(np.searchsorted(starts, hpos, "right") - 1):
            try:
                buf[starts[li] : ends[li]].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                bad[li] = True
    return nul, bad


def decode_block_numba(data, first_line: int, ctx: LogContext) -> Chunk:
    """Decode one block of whole lines (any bytes-like object) into a :class:`Chunk`."""
    buf = np.frombuffer(data, np.uint8)
    starts, ends = _line_bounds(buf)
    n = len(starts)
    shape, status, tid, ts, ns, ne, bs, h = K.scan_lines(buf, starts, ends)
    nul, bad_utf8 = _flag_lines(buf, starts, ends, data)
    reason_code = np.zeros(n, np.int32)  # 0 none; 1 no name; 2 bad tid; 3 nul; 4 utf8; 5+ no match
    reason_code[(status == K.ST_NO_NAME) & (shape == SHAPE_ID)] = 1
    reason_code[status == K.ST_BAD_TID] = 2
    reason_code[bad_utf8] = 4
    reason_code[nul] = 3

    cand = np.flatnonzero((status == K.ST_EVENT) & (reason_code == 0))
    is_event = np.zeros(n, bool)
    gid = np.full(n, -1, np.int32)
    names: list[str] = []
    inv = np.zeros(0, np.int64)
    if len(cand):
        uh, first, inv = np.unique(h[cand], return_index=True, return_inverse=True)
        rep = cand[first]
        if K.names_equal(buf, ns[cand], ne[cand], ns[rep], ne[rep], inv):
            raise AssertionError("event name hash collision")  # astronomically unlikely
        names = [buf[ns[r] : ne[r]].tobytes().decode("ascii") for r in rep]
        accept = np.array([ctx.accepts_unprefixed(nm) for nm in names], bool)
        ok = (shape[cand] == SHAPE_ID) | accept[inv]
        is_event[cand[ok]] = True
        u_of_line = np.full(n, -1, np.int64)
        u_of_line[cand] = inv

    # Arguments of catalogued events.
    typed: dict[tuple[str, int], pa.RecordBatch] = {}
    reasons = ["", REASON_NO_NAME, REASON_BAD_TID, REASON_NUL, REASON_BAD_UTF8]
    if names:
        plans = _plans(ctx)
        ev_lines = cand[is_event[cand]]
        ev_u = inv[is_event[cand]]
        grp_of_u = np.full(len(names), -1, np.int64)
        grp_off, grp_n, var_plans, plan_off, plan_n = [], [], [], [], []
        ops_rows, lits = [], bytearray()
        grp_meta: list[tuple[str, list[tuple[int, EventDef]]]] = []
        ncols = 1
        for u, nm in enumerate(names):
            variants = plans.get(ctx, nm)
            if not variants:
                continue
            grp_of_u[u] = len(grp_meta)
            grp_off.append(len(var_plans))
            grp_n.append(len(variants))
            for _vi, ev, rows, lit in variants:
                var_plans.append(len(plan_off))
                plan_off.append(sum(len(r) for r in ops_rows))
                plan_n.append(len(rows))
                shifted = rows.copy()
                shifted[:, 1] += len(lits)
                ops_rows.append(shifted)
                lits += lit
                ncols = max(ncols, ev.plan.nconv)
            grp_meta.append((nm, [(vi, ev) for vi, ev, _, _ in variants]))
        if grp_meta:
            sel = grp_of_u[ev_u] >= 0
            dl = ev_lines[sel]
            grp = grp_of_u[ev_u[sel]]
            ops = np.concatenate(ops_rows) if ops_rows else np.zeros((0, 4), np.int64)
            lit_arr = np.frombuffer(bytes(lits) or b"\0", np.uint8)
            variant, vals, sst, sen, _fail = K.decode_args(
                buf, bs[dl], ends[dl], grp,
                np.array(grp_off, np.int64), np.array(grp_n, np.int64),
                np.array(var_plans, np.int64), np.array(plan_off, np.int64),
                np.array(plan_n, np.int64), ops, lit_arr, ncols,
            )  # fmt: skip
            nomatch = variant < 0
            if nomatch.any():
                for g in np.unique(grp[nomatch]):
                    nm, vs = grp_meta[g]
                    code = len(reasons)
                    reasons.append(reason_no_match(nm, [ev for _, ev in vs]))
                    lines_g = dl[nomatch & (grp == g)]
                    reason_code[lines_g] = code
                    is_event[lines_g] = False
            key = grp.astype(np.int64) * 1024 + variant
            ok_rows = np.flatnonzero(~nomatch)
            order = ok_rows[np.argsort(key[ok_rows], kind="stable")]
            if len(order):
                ks = key[order]
                cuts = np.flatnonzero(np.diff(ks)) + 1
                for part in np.split(order, cuts):
                    g = int(grp[part[0]])
                    k = int(variant[part[0]])
                    nm, vs = grp_meta[g]
                    vi, ev = vs[k]
                    typed[(nm, vi)] = _typed_batch(
                        ev, buf, dl[part], vals[part], sst[part], sen[part],
                        ts, tid, shape, first_line,
                    )  # fmt: skip

    ev_idx = np.flatnonzero(is_event)
    if len(ev_idx):
        # Register names in the order of their first event line (rejected/other lines don't count).
        u_ev = u_of_line[ev_idx]
        seen_u, first_at = np.unique(u_ev, return_index=True)
        gid_u = np.full(len(names), -1, np.int32)
        for u in seen_u[np.argsort(first_at)]:
            gid_u[u] = ctx.registry.id(names[u])
        gid[ev_idx] = gid_u[u_ev]
    has_prefix_ts = shape[ev_idx] != 0
    has_tid = shape[ev_idx] == SHAPE_ID
    events = pa.RecordBatch.from_arrays(
        [
            pa.array(ts[ev_idx], pa.int64(), mask=~has_prefix_ts),
            pa.array(tid[ev_idx].astype(np.int32), pa.int32(), mask=~has_tid),
            pa.DictionaryArray.from_arrays(
                pa.array(gid[ev_idx], pa.int32()), ctx.registry.dictionary()
            ),
            pa.array(ev_idx + first_line, pa.int64()),
            _string_array(buf, bs[ev_idx], np.maximum(ends[ev_idx], bs[ev_idx])),
        ],
        schema=EVENTS_SCHEMA,
    )
    rej_idx = np.flatnonzero(reason_code > 0)
    oth_mask = ~is_event
    oth_mask[rej_idx] = False
    oth_idx = np.flatnonzero(oth_mask)
    other = pa.RecordBatch.from_arrays(
        [
            pa.array(oth_idx + first_line, pa.int64()),
            _text(data, buf, starts, ends, oth_idx, bad_utf8),
        ],
        schema=OTHER_SCHEMA,
    )
    rej_reason = pa.DictionaryArray.from_arrays(
        pa.array(reason_code[rej_idx], pa.int32()), pa.array(reasons, pa.string())
    ).cast(pa.string())
    rejected = pa.RecordBatch.from_arrays(
        [
            pa.array(rej_idx + first_line, pa.int64()),
            rej_reason,
            _text(data, buf, starts, ends, rej_idx, bad_utf8),
        ],
        schema=REJECTED_SCHEMA,
    )
    if ctx.options.strict and len(rej_idx):
        first = int(rej_idx[0])
        raise FormatError(reasons[reason_code[first]], path=ctx.path, line=first + first_line)
    shapes = Counter()
    if len(ev_idx):
        counts = np.bincount(shape[ev_idx], minlength=3)
        shapes = Counter({SHAPE_NAMES[s]: int(c) for s, c in enumerate(counts) if c})
    return Chunk(events, other, rejected, typed, lines=n, nbytes=len(data), shapes=shapes)


def _text(data, buf, starts, ends, idx, bad_utf8) -> pa.Array:
    arr = _string_array(buf, starts[idx], ends[idx])
    fix = np.flatnonzero(bad_utf8[idx])
    if len(fix):  # rare: decode with replacement characters, in Python
        texts = arr.to_pylist() if False else [None] * len(idx)
        for j in range(len(idx)):
            i = idx[j]
            texts[j] = buf[starts[i] : ends[i]].tobytes().decode("utf-8", "replace")
        arr = pa.array(texts, pa.string())
    return arr


def _typed_batch(ev, buf, lines, vals, sst, sen, ts, tid, shape, first_line) -> pa.RecordBatch:
    schema = typed_schema(ev)
    has_ts = shape[lines] != 0
    arrays = [
        pa.array(ts[lines], pa.int64(), mask=~has_ts),
        pa.array(tid[lines].astype(np.int32), pa.int32(), mask=shape[lines] != SHAPE_ID),
        pa.array(lines + first_line, pa.int64()),
    ]
    for c, col in enumerate(ev.columns()):
        if col.kind is ArgKind.STRING:
            arrays.append(_string_array(buf, sst[:, c], sen[:, c], nullable=True))
        elif col.conv is Conv.FLOAT:
            txt = _string_array(buf, sst[:, c], sen[:, c])
            arr = pc.cast(txt, pa.float64())
            if col.kind is ArgKind.FLOAT:
                arrays.append(arr)
            else:
                arrays.append(
                    pa.array(
                        wrap_int(np.trunc(arr.to_numpy()).astype(np.int64), col.kind, col.bits)
                    )
                )
        elif col.kind is ArgKind.FLOAT:
            arrays.append(pa.array(vals[:, c].astype(np.float64)))
        else:
            arrays.append(
                pa.array(wrap_int(vals[:, c], col.kind, col.bits), schema.field(3 + c).type)
            )
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
