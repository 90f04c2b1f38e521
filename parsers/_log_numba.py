"""Compiled engine of the QEMU text-log parser: numpy + numba kernels, one pass per block.

Per block: line bounds (numpy), one kernel for prefixes and names (names are looked up in an
open-addressing table kept for the whole parse, so a name is decoded and classified once per
trace, not once per line), one kernel that runs every line's format plans, a counting sort that
groups the records of each event variant, and gathers that build Arrow string columns.
"""

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

MAX_VARIANTS = 16  # variants of one event a block can hold apart (group key = name * 16 + variant)


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


class _Names:
    """Every distinct name seen in the parse: hash table for the kernel, and per-name facts
    (accepted without prefix, plan group, registry id) as arrays indexed by name id."""

    def __init__(self, ctx: LogContext) -> None:
        self.ctx = ctx
        self.cap = 256
        self.slot_hash = np.zeros(self.cap, np.uint64)
        self.slot_id = np.full(self.cap, -1, np.int64)
        self.hashes: list[int] = []
        self.names: list[str] = []
        self.pool = bytearray()
        self.offsets = [0]
        self.name_off = np.zeros(1, np.int64)
        self.name_pool = np.zeros(1, np.uint8)
        self.accept = np.zeros(0, bool)
        self.group = np.zeros(0, np.int64)
        self.reg = np.zeros(0, np.int64)
        # plan tables (one group per name with usable formats)
        self.groups: list[tuple[str, list[tuple[int, EventDef]]]] = []
        self.grp_off: list[int] = []
        self.grp_n: list[int] = []
        self.var_plans: list[int] = []
        self.plan_off: list[int] = []
        self.plan_n: list[int] = []
        self.ops_rows: list[np.ndarray] = []
        self.lits = bytearray()
        self.ncols = 1
        self._freeze()

    @property
    def mask(self) -> np.uint64:
        return np.uint64(self.cap - 1)

    def _insert(self, h: int, nid: int) -> None:
        i = h & (self.cap - 1)
        while self.slot_id[i] >= 0:
            i = (i + 1) & (self.cap - 1)
        self.slot_hash[i] = h
        self.slot_id[i] = nid

    def add(self, name: str, h: int) -> None:
        nid = len(self.names)
        self.names.append(name)
        self.hashes.append(h)
        self.pool += name.encode("ascii")
        self.offsets.append(len(self.pool))
        if 2 * len(self.names) > self.cap:
            self.cap *= 4
            self.slot_hash = np.zeros(self.cap, np.uint64)
            self.slot_id = np.full(self.cap, -1, np.int64)
            for j, hh in enumerate(self.hashes):
                self._insert(hh, j)
        else:
            self._insert(h, nid)
        self.accept = np.append(self.accept, self.ctx.accepts_unprefixed(name))
        self.reg = np.append(self.reg, -1)
        self.group = np.append(self.group, self._add_group(name))

    def _add_group(self, name: str) -> int:
        variants = []
        for vi, ev in enumerate(self.ctx.options.catalog.variants(name)):
            if ev.plan is not None and len(variants) < MAX_VARIANTS:
                variants.append((vi, ev))
        if not variants:
            return -1
        self.grp_off.append(len(self.var_plans))
        self.grp_n.append(len(variants))
        for _vi, ev in variants:
            self.var_plans.append(len(self.plan_off))
            self.plan_off.append(sum(len(r) for r in self.ops_rows))
            fixed = []
            for tok in ev.plan.tokens:  # literal offsets are absolute in the shared pool
                fixed.append((int(tok.kind), len(self.lits), len(tok.literal), tok.flags))
                self.lits += tok.literal
            self.plan_n.append(len(fixed))
            self.ops_rows.append(np.array(fixed, np.int64).reshape(-1, 4))
            self.ncols = max(self.ncols, ev.plan.nconv)
        self.groups.append((name, variants))
        return len(self.groups) - 1

    def _freeze(self) -> None:
        """Refresh the arrays the kernels read."""
        self.name_off = np.array(self.offsets, np.int64)
        self.name_pool = np.frombuffer(bytes(self.pool) or b"\0", np.uint8)
        self.t_grp_off = np.array(self.grp_off or [0], np.int64)
        self.t_grp_n = np.array(self.grp_n or [0], np.int64)
        self.t_var_plans = np.array(self.var_plans or [0], np.int64)
        self.t_plan_off = np.array(self.plan_off or [0], np.int64)
        self.t_plan_n = np.array(self.plan_n or [0], np.int64)
        self.t_ops = np.concatenate(self.ops_rows) if self.ops_rows else np.zeros((1, 4), np.int64)
        self.t_lits = np.frombuffer(bytes(self.lits) or b"\0", np.uint8)

    def scan(self, buf, starts, ends):
        return K.scan_lines(
            buf,
            starts,
            ends,
            self.slot_hash,
            self.slot_id,
            self.name_off,
            self.name_pool,
            self.mask,
        )

    def learn(self, buf, nid, h, ns, ne) -> bool:
        """Add the names of lines whose id is -1; True if any was added."""
        new = np.flatnonzero(nid == -1)
        if not len(new):
            return False
        seen: set[str] = set()
        for i in new[np.unique(h[new], return_index=True)[1]]:
            name = buf[ns[i] : ne[i]].tobytes().decode("ascii")
            if name not in seen:
                seen.add(name)
                self.add(name, int(h[i]))
        self._freeze()
        return True


def _names(ctx: LogContext) -> _Names:
    got = getattr(ctx, "_numba_names", None)
    if got is None:
        got = ctx._numba_names = _Names(ctx)  # type: ignore[attr-defined]
    return got


def _scratch(ctx: LogContext, n: int, ncols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Argument buffers reused across blocks (no fresh pages per block): values, string
    starts, string ends. A column is either a number or a text range, so values and starts
    share one array (one block's argument scratch is a third smaller)."""
    got = getattr(ctx, "_numba_scratch", None)
    if got is None or got[0].shape[0] < n or got[0].shape[1] < ncols:
        rows = max(n, got[0].shape[0] if got else 0)
        vals = np.empty((rows, ncols), np.int64)
        got = (vals, vals, np.empty((rows, ncols), np.int64))
        ctx._numba_scratch = got  # type: ignore[attr-defined]
    return got


def _line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts, ends, _odd = K.line_bounds(buf)
    return starts, ends


def _flag_lines(buf, starts, ends) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Lines holding a NUL byte, and lines that are not valid UTF-8 (None when there are none);
    only called for blocks that hold a NUL or non-ASCII byte."""
    nul, bad = K.flag_lines(buf, starts, ends)
    return (nul if nul.any() else None), (bad if bad.any() else None)


def decode_block_numba(data, first_line: int, ctx: LogContext) -> Chunk:
    """Decode one block of whole lines (any bytes-like object) into a :class:`Chunk`."""
    buf = np.frombuffer(data, np.uint8)
    starts, ends, odd = K.line_bounds(buf)
    n = len(starts)
    names = _names(ctx)
    shape, status, tid, ts, ns, ne, bs, h, nid = names.scan(buf, starts, ends)
    if names.learn(buf, nid, h, ns, ne):
        shape, status, tid, ts, ns, ne, bs, h, nid = names.scan(buf, starts, ends)
    nul, bad_utf8 = _flag_lines(buf, starts, ends) if odd else (None, None)

    # Reasons: 0 none, 1 no name after ID@, 2 bad tid, 3 NUL, 4 UTF-8, 5 + name id: no format match
    reason = np.zeros(n, np.int64)
    reason[(status == K.ST_NO_NAME) & (shape == SHAPE_ID)] = 1
    reason[status == K.ST_BAD_TID] = 2
    if bad_utf8 is not None:
        reason[bad_utf8] = 4
    if nul is not None:
        reason[nul] = 3
    named = (status == K.ST_EVENT) & (reason == 0)
    safe_nid = np.maximum(nid, 0)
    known = len(names.names) > 0
    is_event = named & ((shape == SHAPE_ID) | (names.accept[safe_nid] if known else False))

    # Arguments of catalogued events: every event line whose name has a plan group.
    grp = np.where(is_event, names.group[safe_nid], -1) if known else np.full(n, -1, np.int64)
    typed: dict[tuple[str, int], pa.RecordBatch] = {}
    if (grp >= 0).any():
        vals, sst, sen = _scratch(ctx, n, names.ncols)
        variant = K.decode_args(
            buf, bs, ends, grp, names.t_grp_off, names.t_grp_n, names.t_var_plans,
            names.t_plan_off, names.t_plan_n, names.t_ops, names.t_lits, vals, sst, sen,
        )  # fmt: skip
        nomatch = variant == -1
        if nomatch.any():
            reason[nomatch] = 5 + nid[nomatch]
            is_event &= ~nomatch
        rows = np.flatnonzero(variant >= 0)
        if len(rows):
            keys = grp[rows] * MAX_VARIANTS + variant[rows]
            perm, offs = K.group_rows(keys, len(names.groups) * MAX_VARIANTS)
            for key in np.flatnonzero(offs[1:] - offs[:-1]):
                part = rows[perm[offs[key] : offs[key + 1]]]
                g, k = divmod(int(key), MAX_VARIANTS)
                name, variants = names.groups[g]
                vi, ev = variants[k]
                typed[(name, vi)] = _typed_batch(
                    ev, buf, part, vals, sst, sen, ts, tid, shape, first_line
                )

    ev_idx = np.flatnonzero(is_event)
    all_events = len(ev_idx) == n
    ev_nid = nid if all_events else nid[ev_idx]
    if len(ev_idx) and (names.reg[ev_nid] < 0).any():
        # Register names in the order of their first event line (rejected/other don't count).
        fresh = np.flatnonzero(names.reg[ev_nid] < 0)
        u, first = np.unique(ev_nid[fresh], return_index=True)
        for j in u[np.argsort(first)]:
            names.reg[j] = ctx.registry.id(names.names[j])
    ts_o, tid_o, ts_null, tid_null, code, offsets, data_o = K.gather_events(
        buf, ev_idx, ts, tid, shape, bs, ends, names.reg, nid
    )
    events = pa.RecordBatch.from_arrays(
        [
            _masked(ts_o, pa.int64(), ts_null),
            _masked(tid_o, pa.int32(), tid_null),
            pa.DictionaryArray.from_arrays(pa.array(code), ctx.registry.dictionary()),
            pa.array(ev_idx + first_line),
            pa.StringArray.from_buffers(len(ev_idx), pa.py_buffer(offsets), pa.py_buffer(data_o)),
        ],
        schema=EVENTS_SCHEMA,
    )
    ev_shape = shape[ev_idx] if not all_events else shape
    if all_events:
        other = pa.RecordBatch.from_arrays(
            [pa.array([], pa.int64()), pa.array([], pa.string())], schema=OTHER_SCHEMA
        )
        rejected = pa.RecordBatch.from_arrays(
            [pa.array([], pa.int64()), pa.array([], pa.string()), pa.array([], pa.string())],
            schema=REJECTED_SCHEMA,
        )
    else:
        other, rejected = _other_and_rejected(
            buf, starts, ends, is_event, reason, bad_utf8, names, first_line, ctx
        )
    counts = np.bincount(ev_shape, minlength=3) if len(ev_idx) else np.zeros(3, np.int64)
    shapes = Counter({SHAPE_NAMES[s]: int(c) for s, c in enumerate(counts) if c})
    return Chunk(events, other, rejected, typed, lines=n, nbytes=len(buf), shapes=shapes)


def _other_and_rejected(buf, starts, ends, is_event, reason, bad_utf8, names, first_line, ctx):
    rej_idx = np.flatnonzero(reason > 0)
    oth_mask = ~is_event
    oth_mask[rej_idx] = False
    oth_idx = np.flatnonzero(oth_mask)
    other = pa.RecordBatch.from_arrays(
        [pa.array(oth_idx + first_line, pa.int64()), _text(buf, starts, ends, oth_idx, bad_utf8)],
        schema=OTHER_SCHEMA,
    )
    codes = reason[rej_idx]
    texts = {1: REASON_NO_NAME, 2: REASON_BAD_TID, 3: REASON_NUL, 4: REASON_BAD_UTF8}
    for c in np.unique(codes[codes >= 5]):
        name = names.names[int(c) - 5]
        texts[int(c)] = reason_no_match(
            name, [ev for _, ev in names.groups[names.group[int(c) - 5]][1]]
        )
    uniq, inv = (
        np.unique(codes, return_inverse=True) if len(codes) else (np.zeros(0, np.int64), codes)
    )
    rej_reason = pa.DictionaryArray.from_arrays(
        pa.array(inv.astype(np.int32)), pa.array([texts[int(c)] for c in uniq], pa.string())
    ).cast(pa.string())
    rejected = pa.RecordBatch.from_arrays(
        [
            pa.array(rej_idx + first_line, pa.int64()),
            rej_reason,
            _text(buf, starts, ends, rej_idx, bad_utf8),
        ],
        schema=REJECTED_SCHEMA,
    )
    if ctx.options.strict and len(rej_idx):
        first = int(rej_idx[0])
        raise FormatError(texts[int(reason[first])], path=ctx.path, line=first + first_line)
    return other, rejected


def _text(buf, starts, ends, idx, bad_utf8) -> pa.Array:
    if bad_utf8 is None or not bad_utf8[idx].any():
        return _string_array(buf, starts[idx], ends[idx])
    # rare: decode with replacement characters, in Python
    texts = [buf[starts[i] : ends[i]].tobytes().decode("utf-8", "replace") for i in idx]
    return pa.array(texts, pa.string())


def _masked(values: np.ndarray, typ: pa.DataType, null: np.ndarray) -> pa.Array:
    """A primitive array, with a validity bitmap only when some value is null."""
    return pa.array(values, typ, mask=null) if null.any() else pa.array(values, typ)


def _typed_batch(ev, buf, lines, vals, sst, sen, ts, tid, shape, first_line) -> pa.RecordBatch:
    schema = typed_schema(ev)
    sh = shape[lines]
    arrays = [
        _masked(ts[lines], pa.int64(), sh == 0),
        _masked(tid[lines].astype(np.int32), pa.int32(), sh != SHAPE_ID),
        pa.array(lines + first_line, pa.int64()),
    ]
    for c, col in enumerate(ev.columns()):
        if col.kind is ArgKind.STRING:
            arrays.append(_string_array(buf, sst[lines, c], sen[lines, c], nullable=True))
        elif col.conv is Conv.FLOAT:
            arr = pc.cast(_string_array(buf, sst[lines, c], sen[lines, c]), pa.float64())
            if col.kind is ArgKind.FLOAT:
                arrays.append(arr)
            else:
                arrays.append(
                    pa.array(
                        wrap_int(np.trunc(arr.to_numpy()).astype(np.int64), col.kind, col.bits)
                    )
                )
        elif col.kind is ArgKind.FLOAT:
            arrays.append(pa.array(vals[lines, c].astype(np.float64)))
        else:
            arrays.append(
                pa.array(wrap_int(vals[lines, c], col.kind, col.bits), schema.field(3 + c).type)
            )
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
