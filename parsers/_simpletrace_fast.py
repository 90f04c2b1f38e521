"""The numba engine's block decoder for simpletrace: one compiled walk over the records.

:func:`parsers._simpletrace_kernels.decode_block` picks each record's definition variant,
decodes its payload and writes, in one go, the ``events`` columns with the argument text and
the typed columns grouped by variant. What stays in Python is per block or per variant: the
mapping records, the id -> name lookup, Arrow arrays over the kernel's buffers, and the rare
rows the kernel leaves out (rejected records; formats its printer cannot print and strings that
are not UTF-8, which :func:`tracetool.catalog.render.render_args` prints instead). The numpy
engine (``parsers.simpletrace._decode_block``) follows the same rules.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers import _simpletrace_kernels as K
from parsers._log_common import wrap_int
from parsers.base import Chunk, typed_schema
from tracetool.catalog import ArgKind, EventDef
from tracetool.catalog.render import render_args
from tracetool.schema import EVENT_KEY_FIELDS, EVENTS_SCHEMA

#: the op rows of the dropped-events text ``num_events_dropped=%lu``
_DROPPED_LIT = b"num_events_dropped="
_DROPPED_OPS = [
    [K.OP_LIT, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, len(_DROPPED_LIT)],
    [K.OP_INT, 0, 10, 0, 0, -1, 64, 0, 0, int(ArgKind.UNSIGNED), 64, 0, 0],
]
_DROPPED_SCHEMA = pa.schema([*EVENT_KEY_FIELDS, pa.field("num_events_dropped", pa.uint64())])


@dataclass
class Candidate:
    """One way to decode the records of a name code: a catalog variant (or none)."""

    code: int
    mode: int  # K.M_NULL | K.M_KERNEL | K.M_PYTHON | K.M_ANY
    layout: tuple[bool, ...] = ()
    ev: EventDef | None = None
    key: tuple[str, int] | None = None  # typed-batch key; None: no typed rows
    ops: np.ndarray | None = None
    lits: bytes = b""


@dataclass
class Program:
    """Every candidate of the name codes seen so far, as the arrays the kernel reads."""

    cands: list[Candidate] = field(default_factory=list)
    code_lo: list[int] = field(default_factory=list)
    code_n: list[int] = field(default_factory=list)
    arrays: tuple | None = None

    def add(self, cand: Candidate) -> None:
        self.cands.append(cand)
        self.arrays = None

    def ensure(self, ctx) -> tuple:
        """Add the candidates of every name code that has none yet; the kernel's arrays."""
        from parsers.simpletrace import render_ops

        while len(self.code_lo) < len(ctx.names):
            c = len(self.code_lo)
            self.code_lo.append(len(self.cands))
            dec = ctx.decoder(c)
            if not dec.known:
                self.add(Candidate(c, K.M_ANY))
            for vi, ev, layout in dec.candidates:
                ops = render_ops(ev) if ev.plan is not None else None
                mode = K.M_NULL if ev.plan is None else K.M_KERNEL if ops else K.M_PYTHON
                key = (dec.name, vi) if ev.plan is not None else None
                op, lit = ops if ops else (None, b"")
                self.add(Candidate(c, mode, layout, ev, key, op, bytes(lit)))
            self.code_n.append(len(self.cands) - self.code_lo[-1])
        if self.arrays is None:
            self.arrays = self._arrays()
        return self.arrays

    def _arrays(self) -> tuple:
        nv = len(self.cands)
        layout = np.zeros((nv, K.MAX_ARGS), np.int8)
        nargs = np.zeros(nv, np.int64)
        mode = np.zeros(nv, np.int8)
        ops_lo = np.zeros(nv, np.int64)
        ops_n = np.zeros(nv, np.int64)
        textfix = np.zeros(nv, np.int64)
        rows, lits = [], bytearray()
        for v, c in enumerate(self.cands):
            layout[v, : len(c.layout)] = c.layout
            nargs[v] = len(c.layout)
            mode[v] = c.mode
            if c.ops is not None:
                op = c.ops.copy()
                op[op[:, 0] == K.OP_LIT, 11] += len(lits)
                ops_lo[v], ops_n[v] = sum(len(r) for r in rows), len(op)
                rows.append(op)
                lits += c.lits
                textfix[v] = int(op[:, 12].sum()) + 140 * len(op)
        ops = np.concatenate(rows) if rows else np.zeros((0, 13), np.int64)
        return (
            np.array(self.code_lo, np.int64),
            np.array(self.code_n, np.int64),
            layout,
            nargs,
            mode,
            ops_lo,
            ops_n,
            textfix,
            np.ascontiguousarray(ops, np.int64),
            np.frombuffer(bytes(lits) + bytes(8), np.uint8).copy(),  # 8 spare: word copies
        )


def program(ctx) -> Program:
    """The parse's program, created with the dropped-events candidate (index 0)."""
    prog = ctx.program
    if prog is None:
        prog = ctx.program = Program()
        ops = np.array(_DROPPED_OPS, np.int64)
        prog.add(
            Candidate(ctx.code("dropped"), K.M_KERNEL, (False,), None, None, ops, _DROPPED_LIT)
        )
    return prog


def decode_block(buf, starts, ends, kinds, offset, ctx, order, pending_other) -> Chunk:
    """The chunk of one block of whole records (``parsers.simpletrace._decode_block``'s)."""
    from parsers import simpletrace as ST

    n = len(starts)
    lines = np.arange(ctx.line, ctx.line + n, dtype=np.int64)
    ctx.line += n
    other_lines, other_text, map_idx, m_ids, m_codes = ST._mappings(
        buf, starts, ends, kinds, lines, ctx, pending_other
    )
    ev_idx = np.flatnonzero(kinds != ST.K_MAPPING)
    hsize = 8 if ctx.version >= 4 else 0
    ev_start, ev_end = starts[ev_idx], ends[ev_idx]
    swap = ctx.big != (sys.byteorder == "big")
    views = K.byte_views(buf)
    ids = K.ids_at(views[0], ev_start, hsize, swap)
    code = ST._event_codes(ids, ev_idx, m_ids, m_codes, map_idx, ctx, order)
    prog = program(ctx)
    arrays = prog.ensure(ctx)
    ev_lines = lines[ev_idx]
    (grp, cnt, gbase, vbase, obase, scol, g_vals, g_ts, g_tid, g_line, s_offs, s_data,
     ev_ts, ev_tid, ev_ln, ev_cand, first, a_off, a_data, nonascii) = K.decode_block(
        buf, *views, ev_start, ev_end, ev_lines, code, hsize, swap, *arrays, 0
    )  # fmt: skip
    v2 = ctx.version == 2
    typed: dict = {}
    fixes: list[tuple[np.ndarray, pa.Array]] = []
    dropped_total = 0
    for v in np.flatnonzero(cnt).tolist():
        cand = prog.cands[v]
        if cand.mode == K.M_ANY or (cand.key is None and v != 0):
            continue
        m = int(cnt[v])
        g0, vb = int(gbase[v]), int(vbase[v])
        vals = g_vals[vb : vb + m * len(cand.layout)].reshape(len(cand.layout), m)
        rows = slice(g0, g0 + m)
        tid = g_tid[rows]
        tid_null = (tid < 0) | v2
        lns = g_line[rows]
        if v == 0:
            cnt_col = vals[0]
            dropped_total += int(cnt_col.sum())
            typed[("dropped", 0)] = ST._typed_batch(
                _DROPPED_SCHEMA, g_ts[rows], tid, tid_null, lns, [cnt_col]
            )
            continue
        cols, bad_utf8 = _columns(
            cand, vals, s_offs, s_data, int(obase[v]), scol[v], m, nonascii[v]
        )
        typed[cand.key] = ST._typed_batch(
            typed_schema(cand.ev), g_ts[rows], tid, tid_null, lns, cols
        )
        if cand.mode == K.M_PYTHON or bad_utf8:
            filled = [x if x is not None else pa.nulls(m, pa.string()) for x in cols]
            fixes.append((np.flatnonzero(ev_cand == v), render_args(cand.ev, filled, m)))
    ctx.dropped_events += dropped_total

    args = _args_column(prog, ev_cand, a_off, a_data, fixes)
    tid_null = (ev_tid < 0) | v2
    events = pa.RecordBatch.from_arrays(
        [
            pa.array(ev_ts, pa.int64()),
            pa.array(ev_tid, pa.int32(), mask=tid_null if tid_null.any() else None),
            _name_column(prog, ev_cand, first, ctx),
            pa.array(ev_ln, pa.int64()),
            args,
        ],
        schema=EVENTS_SCHEMA,
    )
    rej_rows, rej_reasons = _rejections(grp, code, ids, ev_start, ev_end, hsize, offset, ctx, order)
    rejected = ST._rejected(rej_rows, rej_reasons, buf, ev_start, ev_end, ev_lines, ctx, offset)
    return ST._chunk(
        events, other_lines, other_text, rejected, typed, n + len(pending_other), ctx, dropped_total
    )


def _columns(cand: Candidate, vals, s_offs, s_data, ob: int, scol, m: int, nonascii: bool):
    """The typed columns of one candidate's rows, and whether a string was not UTF-8 (then
    decoded with replacement, like the numpy engine)."""
    cols: list = []
    bad = False
    ev = cand.ev
    for j, col in enumerate(ev.columns()):
        is_str = cand.layout[j]
        if col.kind is ArgKind.STRING:
            if not is_str:
                cols.append(None)
                continue
            o = ob + int(scol[j]) * (m + 1)
            offs = s_offs[o : o + m + 1]
            empty = offs[1:] == offs[:-1]
            nulls = int(empty.sum())
            validity = pa.array(~empty, pa.bool_()).buffers()[1] if nulls else None
            arr = pa.StringArray.from_buffers(
                m, pa.py_buffer(offs), pa.py_buffer(s_data), validity, nulls
            )
            if nonascii:
                try:
                    arr.validate(full=True)
                except pa.ArrowInvalid:
                    bad = True
                    raw = arr.view(pa.binary()).to_pylist()
                    arr = pa.array(
                        [None if b is None else b.decode("utf-8", "replace") for b in raw],
                        pa.string(),
                    )
            cols.append(arr)
        elif is_str:  # a char * printed as a number: the pointer is not in the file
            cols.append(pa.nulls(m, pa.uint64()))
        elif col.kind is ArgKind.FLOAT:
            cols.append(vals[j].view(np.int64).astype(np.float64))
        else:
            cols.append(wrap_int(vals[j].view(np.int64), col.kind, col.bits))
    return cols, bad


def _name_column(prog: Program, ev_cand, first, ctx) -> pa.DictionaryArray:
    """The ``event`` column: registry ids given in first-seen order, as the numpy engine."""
    seen = np.flatnonzero(first >= 0)
    for v in seen[np.argsort(first[seen], kind="stable")].tolist():
        c = prog.cands[v].code
        if c not in ctx.reg_ids:
            ctx.reg_ids[c] = ctx.registry.id(ctx.names[c])
    lut = np.array([ctx.reg_ids.get(c.code, 0) for c in prog.cands] or [0], np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(lut[ev_cand]), ctx.registry.dictionary())


def _args_column(prog: Program, ev_cand, a_off, a_data, fixes) -> pa.Array:
    """The kernel's argument text, null for candidates without text, with the rows printed
    in Python put in place."""
    n = len(ev_cand)
    null_cand = np.array([c.mode in (K.M_NULL, K.M_ANY) for c in prog.cands], bool)
    nullrow = null_cand[ev_cand]
    nulls = int(nullrow.sum())
    validity = pa.array(~nullrow, pa.bool_()).buffers()[1] if nulls else None
    args = pa.StringArray.from_buffers(
        n, pa.py_buffer(a_off), pa.py_buffer(a_data), validity, nulls
    )
    if not fixes:
        return args
    pos = np.concatenate([p for p, _ in fixes])
    texts = pa.concat_arrays([t.combine_chunks() if isinstance(t, pa.ChunkedArray) else t
                              for _, t in fixes])  # fmt: skip
    mask = np.zeros(n, bool)
    mask[pos] = True
    return pc.replace_with_mask(args, pa.array(mask), texts.take(pa.array(np.argsort(pos))))


def _rejections(grp, code, ids, ev_start, ev_end, hsize, offset, ctx, order):
    """(event record indices, reasons) of the records the kernel rejected, per kind."""
    from parsers import simpletrace as ST

    bad = np.flatnonzero(grp < 0)
    if not len(bad):
        return [], []
    rows_out, reasons = [], []
    plen = ev_end - (ev_start + hsize + 24)
    g = grp[bad]
    unknown = bad[g == -1]
    if len(unknown):
        rows_out.append(unknown)
        reasons.append(ST._unknown_reasons(ids[unknown], offset, ev_start[unknown], ctx, order))
    dropped = bad[g == -4]
    if len(dropped):
        rows_out.append(dropped)
        reasons.append(
            pc.binary_join_element_wise(
                "dropped-events record with a ",
                pc.cast(pa.array(plen[dropped]), pa.string()),
                "-byte payload (expected one 8-byte count)",
                "",
            )
        )
    misfit = bad[g == -3]
    for c in np.unique(code[misfit]).tolist():
        rows = misfit[code[misfit] == c]
        rows_out.append(rows)
        reasons.append(ST._layout_reasons(ctx.decoder(c), plen[rows], offset, ev_start[rows]))
    return rows_out, reasons
