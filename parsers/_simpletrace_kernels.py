"""Compiled (numba) kernels of the simpletrace reader: record scan, payload decode, printf.

Imported only by the numba engine of :mod:`parsers.simpletrace`. ``render`` prints integer,
pointer, char and plain ``%s`` conversions exactly like :func:`tracetool.catalog.render.render_args`
(``tests/test_simpletrace.py`` checks they agree); formats it cannot print (floats, ``%s`` with
a width or precision) go through ``render_args``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit  # noqa: E402  (imported after the cache folder is configured)
from numba.core import types
from numba.extending import intrinsic

from parsers._numba_bits import leading_zeros
from parsers._numba_setup import CACHE


@intrinsic
def _copy8(typingctx, dst, di, src, si):
    """Copy the 8 bytes src[si : si + 8] to dst[di : di + 8] (one unaligned load and store; a
    copy, so the host's byte order does not matter). No bounds check: callers check both ends."""
    sig = types.void(dst, di, src, si)

    def codegen(context, builder, signature, args):
        d, dix, s, six = args
        da = context.make_array(signature.args[0])(context, builder, d)
        sa = context.make_array(signature.args[2])(context, builder, s)
        p64 = ir.IntType(64).as_pointer()
        dp = builder.bitcast(builder.gep(da.data, [dix]), p64)
        sp = builder.bitcast(builder.gep(sa.data, [six]), p64)
        builder.store(builder.load(sp, align=1), dp, align=1)
        return context.get_dummy_value()

    return sig, codegen


# render op kinds
OP_LIT, OP_INT, OP_PTR, OP_STR, OP_CHAR = 0, 1, 2, 3, 4
# flags
F_MINUS, F_PLUS, F_SPACE, F_ALT, F_ZERO = 1, 2, 4, 8, 16
# declared kinds (tracetool.catalog.ArgKind values)
D_SIGNED, D_UNSIGNED, D_POINTER, D_BOOL = 0, 1, 2, 4

_DIGITS_LO = np.frombuffer(b"0123456789abcdef", np.uint8).copy()
_DIGITS_UP = np.frombuffer(b"0123456789ABCDEF", np.uint8).copy()


@njit(cache=CACHE, nogil=True, inline="always")
def _rd32(buf, p, big):
    b0 = np.int64(buf[p])
    b1 = np.int64(buf[p + 1])
    b2 = np.int64(buf[p + 2])
    b3 = np.int64(buf[p + 3])
    if big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=CACHE, nogil=True, inline="always")
def _rd64(buf, p, big):
    v = np.uint64(0)
    for k in range(8):
        b = np.uint64(buf[p + k]) if big else np.uint64(buf[p + 7 - k])
        v = (v << np.uint64(8)) | b
    return v


@njit(cache=CACHE, nogil=True, inline="always")
def _ld32(u32v, p, big):
    """The u32 at byte p through a native-order view at every byte offset (one load)."""
    x = np.int64(u32v[p])
    if big:
        x = ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | ((x >> 24) & 0xFF)
    return x


@njit(cache=CACHE, nogil=True, inline="always")
def _ld64(u64v, p, big):
    """The u64 at byte p through a native-order view at every byte offset (one load)."""
    x = u64v[p]
    if big:
        m8 = np.uint64(0x00FF00FF00FF00FF)
        m16 = np.uint64(0x0000FFFF0000FFFF)
        x = ((x >> np.uint64(8)) & m8) | ((x & m8) << np.uint64(8))
        x = ((x >> np.uint64(16)) & m16) | ((x & m16) << np.uint64(16))
        x = (x >> np.uint64(32)) | (x << np.uint64(32))
    return x


def byte_views(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native-order u64 and u32 views of ``buf`` starting at every byte (index = offset)."""
    n64, n32 = max(len(buf) - 7, 0), max(len(buf) - 3, 0)
    if not n64:  # the views need 8 bytes; a shorter block has no event record to read
        return np.zeros(1, np.uint64), np.zeros(1, np.uint32)
    u64 = np.ndarray((n64,), np.uint64, buffer=buf, strides=(1,))
    u32 = np.ndarray((n32,), np.uint32, buffer=buf, strides=(1,))
    return u64, u32


@njit(cache=CACHE, nogil=True)
def ids_at(u64v, ev_start, hsize, big):
    """The event id (u64 at ``start + hsize``) of every event record."""
    ids = np.empty(ev_start.shape[0], np.uint64)
    for i in range(ev_start.shape[0]):
        ids[i] = _ld64(u64v, ev_start[i] + hsize, big)
    return ids


@njit(cache=CACHE, nogil=True)
def scan(buf, pos, end, v4, big, max_record, max_name, starts, ends, kinds):
    """Record boundaries of buf[pos:end]: the rules of ``parsers.simpletrace._scan_struct``.

    Returns (records found, position reached, status, offending value)."""
    n = 0
    cap = starts.shape[0]
    while n < cap:
        left = end - pos
        if left == 0:
            return n, pos, 0, 0
        hsize = 0
        if v4:
            if left < 8:
                return n, pos, 1, 0
            typ = _rd64(buf, pos, big)
            if typ > np.uint64(1):
                return n, pos, 2, pos
            if typ == np.uint64(0):
                if left < 20:
                    return n, pos, 1, 0
                nlen = _rd32(buf, pos + 16, big)
                if nlen == 0 or nlen > max_name:
                    return n, pos, 5, nlen
                if left < 20 + nlen:
                    return n, pos, 1, 0
                starts[n] = pos
                ends[n] = pos + 20 + nlen
                kinds[n] = 0
                pos += 20 + nlen
                n += 1
                continue
            hsize = 8
        if left < hsize + 24:
            return n, pos, 1, 0
        length = _rd32(buf, pos + hsize + 16, big)
        if length < 24:
            return n, pos, 3, length
        if length > max_record:
            return n, pos, 4, length
        if left < hsize + length:
            return n, pos, 1, 0
        starts[n] = pos
        ends[n] = pos + hsize + length
        kinds[n] = 1
        pos += hsize + length
        n += 1
    return n, pos, 1 if pos < end else 0, 0


@njit(cache=CACHE, nogil=True)
def decode(buf, pst, pen, layout, big):
    """Payloads buf[pst:pen] read with ``layout`` (1 = string argument, 0 = u64).

    Returns (ok, u64 values (n, k), string starts (n, k), string lengths (n, k))."""
    n = pst.shape[0]
    k = layout.shape[0]
    ok = np.zeros(n, np.bool_)
    vals = np.zeros((n, k), np.uint64)
    sst = np.zeros((n, k), np.int64)
    slen = np.zeros((n, k), np.int64)
    for i in range(n):
        cur = pst[i]
        e = pen[i]
        good = True
        for j in range(k):
            if layout[j]:
                if cur + 4 > e:
                    good = False
                    break
                ln = _rd32(buf, cur, big)
                if cur + 4 + ln > e:
                    good = False
                    break
                sst[i, j] = cur + 4
                slen[i, j] = ln
                cur += 4 + ln
            else:
                if cur + 8 > e:
                    good = False
                    break
                vals[i, j] = _rd64(buf, cur, big)
                cur += 8
        if good and cur == e:
            ok[i] = True
        else:
            for j in range(k):
                slen[i, j] = 0
    return ok, vals, sst, slen


@njit(cache=CACHE, nogil=True, inline="always")
def _pattern(r, dkind, dbits):
    """The declared C type's value as a 64-bit pattern (wrap_int semantics)."""
    if dkind == D_BOOL:
        return np.uint64(1) if r != np.uint64(0) else np.uint64(0)
    if dbits >= 64:
        return r
    mask = (np.uint64(1) << np.uint64(dbits)) - np.uint64(1)
    v = r & mask
    if dkind == D_SIGNED and (v >> np.uint64(dbits - 1)) & np.uint64(1):
        v = v | ~mask
    return v


_POW10 = np.array([10**k for k in range(20)], np.uint64)


@njit(cache=CACHE, nogil=True, inline="always")
def _render_row(buf, vals, sst, slen, ops, lo, nops, lits, out, pos, tmp, dg):
    """Print one record's arguments (``vals``/``sst``/``slen`` of its arguments) with the
    ops rows ``lo .. lo + nops`` into ``out`` at ``pos``; returns the new position.
    ``tmp`` (128 bytes) and ``dg`` (64 bytes) are scratch."""
    for o in range(lo, lo + nops):
        kind = ops[o, 0]
        a = ops[o, 1]
        if kind == OP_LIT:
            lp = ops[o, 11]
            ll = ops[o, 12]
            if lp + ll + 8 <= lits.shape[0] and pos + ll + 8 <= out.shape[0]:
                for t in range(0, ll, 8):
                    _copy8(out, pos + t, lits, lp + t)
            else:
                for t in range(ll):
                    out[pos + t] = lits[lp + t]
            pos += ll
            continue
        if kind == OP_STR:
            ln = slen[a]
            if ln == 0:  # NULL
                for c in (40, 110, 117, 108, 108, 41):  # (null)
                    out[pos] = c
                    pos += 1
            else:
                s = sst[a]
                if s + ln + 8 <= buf.shape[0] and pos + ln + 8 <= out.shape[0]:
                    for t in range(0, ln, 8):
                        _copy8(out, pos + t, buf, s + t)
                else:
                    for t in range(ln):
                        out[pos + t] = buf[s + t]
                pos += ln
            continue
        flags = ops[o, 3]
        width = ops[o, 4]
        prec = ops[o, 5]
        if flags == 0 and width == 0 and prec < 0 and kind != OP_CHAR:
            # the common plain conversion (%lx, %u, %p...): digits straight into out
            p = _pattern(vals[a], ops[o, 9], ops[o, 10])
            if kind == OP_PTR:
                if p == np.uint64(0):
                    for c in (40, 110, 105, 108, 41):  # (nil)
                        out[pos] = c
                        pos += 1
                    continue
                out[pos] = 48
                out[pos + 1] = 120
                pos += 2
                mag = p
            else:
                cbits = ops[o, 6]
                signed = ops[o, 7] != 0
                if cbits < 64:
                    m = (np.uint64(1) << np.uint64(cbits)) - np.uint64(1)
                    p = p & m
                    if signed and (p >> np.uint64(cbits - 1)) & np.uint64(1):
                        p = p | ~m
                mag = p
                if signed and (p >> np.uint64(63)) & np.uint64(1):
                    out[pos] = 45  # -
                    pos += 1
                    mag = ~p + np.uint64(1)
            base = ops[o, 2]
            if base == 16:
                digs = _DIGITS_UP if ops[o, 8] else _DIGITS_LO
                nd = (64 - int(leading_zeros(mag)) + 3) >> 2
                if nd == 0:
                    nd = 1
                for t in range(nd - 1, -1, -1):
                    out[pos + t] = digs[mag & np.uint64(15)]
                    mag = mag >> np.uint64(4)
                pos = pos + nd
                continue
            if base == 10:
                nd = 1
                while nd < 20 and mag >= _POW10[nd]:
                    nd += 1
                for t in range(nd - 1, -1, -1):
                    q = mag // np.uint64(10)
                    out[pos + t] = 48 + np.uint8(mag - q * np.uint64(10))
                    mag = q
                pos = pos + nd
                continue
            nd = (64 - int(leading_zeros(mag)) + 2) // 3  # octal
            if nd == 0:
                nd = 1
            for t in range(nd - 1, -1, -1):
                out[pos + t] = 48 + np.uint8(mag & np.uint64(7))
                mag = mag >> np.uint64(3)
            pos = pos + nd
            continue
        p = _pattern(vals[a], ops[o, 9], ops[o, 10])
        nb = 0  # body bytes in tmp (in order)
        if kind == OP_CHAR:
            b = p & np.uint64(0xFF)
            if b < np.uint64(0x80):
                tmp[0] = np.uint8(b)
                nb = 1
            else:
                tmp[0] = 0xEF
                tmp[1] = 0xBF
                tmp[2] = 0xBD
                nb = 3
            blen = 1  # printf counts the one byte
        elif kind == OP_PTR and p == np.uint64(0):
            for c in (40, 110, 105, 108, 41):  # (nil)
                tmp[nb] = c
                nb += 1
            blen = nb
        else:
            cbits = ops[o, 6]
            signed = ops[o, 7] != 0
            neg = False
            if kind == OP_PTR:
                mag = p
            else:
                if cbits < 64:
                    m = (np.uint64(1) << np.uint64(cbits)) - np.uint64(1)
                    p = p & m
                    if signed and (p >> np.uint64(cbits - 1)) & np.uint64(1):
                        p = p | ~m
                mag = p
                if signed and (p >> np.uint64(63)) & np.uint64(1):
                    neg = True
                    mag = ~p + np.uint64(1)
            base = np.uint64(ops[o, 2])
            digs = _DIGITS_UP if ops[o, 8] else _DIGITS_LO
            # digits, last first, into dg
            nd = 0
            v = mag
            if base == np.uint64(16):
                while v != np.uint64(0):
                    dg[nd] = digs[v & np.uint64(15)]
                    v = v >> np.uint64(4)
                    nd += 1
            elif base == np.uint64(10):
                while v != np.uint64(0):
                    q = v // np.uint64(10)
                    dg[nd] = 48 + np.uint8(v - q * np.uint64(10))
                    v = q
                    nd += 1
            else:
                while v != np.uint64(0):
                    dg[nd] = 48 + np.uint8(v & np.uint64(7))
                    v = v >> np.uint64(3)
                    nd += 1
            if prec < 0 and nd == 0:
                dg[0] = 48
                nd = 1
            while nd < prec:
                dg[nd] = 48
                nd += 1
            # prefix and sign
            pre0 = 0
            pre1 = 0
            npre = 0
            if kind == OP_PTR:
                pre0, pre1, npre = 48, 120, 2
            elif flags & F_ALT and base == np.uint64(16) and mag != np.uint64(0):
                pre0, pre1, npre = 48, 88 if ops[o, 8] else 120, 2
            elif flags & F_ALT and base == np.uint64(8) and (nd == 0 or dg[nd - 1] != 48):
                pre0, npre = 48, 1
            sign = 0
            if signed:
                if neg:
                    sign = 45
                elif flags & F_PLUS:
                    sign = 43
                elif flags & F_SPACE:
                    sign = 32
            zeros = 0
            head = (1 if sign else 0) + npre
            zero_pad = flags & F_ZERO and not flags & F_MINUS and prec < 0
            if zero_pad and kind != OP_PTR and width > head + nd:
                zeros = width - head - nd
            if sign:
                tmp[nb] = sign
                nb += 1
            if npre >= 1:
                tmp[nb] = pre0
                nb += 1
            if npre == 2:
                tmp[nb] = pre1
                nb += 1
            for _ in range(zeros):
                tmp[nb] = 48
                nb += 1
            for t in range(nd):
                tmp[nb] = dg[nd - 1 - t]
                nb += 1
            blen = nb
        pad = width - blen if width > blen else 0
        if pad and not flags & F_MINUS:
            for _ in range(pad):
                out[pos] = 32
                pos += 1
        for t in range(nb):
            out[pos] = tmp[t]
            pos += 1
        if pad and flags & F_MINUS:
            for _ in range(pad):
                out[pos] = 32
                pos += 1
    return pos


@njit(cache=CACHE, nogil=True)
def render(buf, vals, sst, slen, ops, lits, out):
    """Print every row's arguments into ``out`` (big enough: see ``bound``).

    ``ops`` rows: kind, arg, base, flags, width, prec (-1: none), conversion bits, signed
    conversion, upper case, declared kind, declared bits, literal offset, literal length.
    Returns the Arrow offsets (int64, n + 1) of the rows in ``out``."""
    n = vals.shape[0]
    nops = ops.shape[0]
    offs = np.empty(n + 1, np.int64)
    tmp = np.empty(128, np.uint8)  # the printed conversion (width and precision <= 60)
    dg = np.empty(64, np.uint8)  # its digits, last first
    pos = 0
    for i in range(n):
        offs[i] = pos
        pos = _render_row(buf, vals[i], sst[i], slen[i], ops, 0, nops, lits, out, pos, tmp, dg)
    offs[n] = pos
    return offs


@njit(cache=CACHE, nogil=True)
def gather(data, starts, ends, total):
    """Concatenate data[starts[i]:ends[i]]: (int32 offsets, bytes) of an Arrow string array."""
    n = starts.shape[0]
    offsets = np.empty(n + 1, np.int32)
    out = np.empty(total, np.uint8)
    o = 0
    for i in range(n):
        offsets[i] = o
        a = starts[i]
        ln = ends[i] - a
        if ln <= 32:
            for t in range(ln):
                out[o + t] = data[a + t]
        else:
            out[o : o + ln] = data[a : a + ln]
        o += ln
    offsets[n] = o
    return offsets, out


# candidate modes of the block kernel (parsers._simpletrace_fast.Program)
M_NULL, M_KERNEL, M_PYTHON, M_ANY = 0, 1, 2, 3
MAX_ARGS = 10


@njit(cache=CACHE, nogil=True)
def decode_block(buf, u64v, u32v, ev_start, ev_end, ev_line, code, hsize, big, code_lo, code_n, layout, nargs,
                 mode, ops_lo, ops_n, textfix, ops, lits, dropped_cand):  # fmt: skip
    """Every event record of a block in one compiled walk (two passes over the records).

    Pass 1 picks each record's candidate (the first of its name code's candidates whose layout
    fits; -1 unknown id, -3 no layout fits, -4 bad dropped-events record) and counts rows and
    string bytes per candidate. Pass 2 writes, in record order, the events columns and the
    argument text (ops of ``M_KERNEL`` candidates; empty for the others), and, grouped by
    candidate, the typed key columns, the u64 arguments (column-major per candidate) and the
    string arguments (one Arrow offsets run of count + 1 per string column, int32, absolute
    into ``s_data``). See ``parsers._simpletrace_fast`` for the layout of every output."""
    ne = ev_start.shape[0]
    nv = layout.shape[0]
    grp = np.empty(ne, np.int32)
    cnt = np.zeros(nv, np.int64)
    sbytes = np.zeros((nv, MAX_ARGS), np.int64)
    tbound = 0
    nkept = 0
    fixed = np.full(nv, -1, np.int64)  # payload size of a candidate without strings
    for v in range(nv):
        if mode[v] != M_ANY:
            f = 0
            for j in range(nargs[v]):
                if layout[v, j]:
                    f = -1
                    break
                f += 8
            fixed[v] = f
    sacc = np.zeros(MAX_ARGS, np.int64)
    for i in range(ne):
        pst = ev_start[i] + hsize + 24
        pen = ev_end[i]
        c = code[i]
        g = -1
        if c == -2:
            g = dropped_cand if pen - pst == 8 else -4
        elif c >= 0:
            g = -3
            for v in range(code_lo[c], code_lo[c] + code_n[c]):
                if mode[v] == M_ANY:
                    g = v
                    break
                fv = fixed[v]
                if fv >= 0:
                    if pen - pst == fv:
                        g = v
                        break
                    continue
                # a layout with strings: walk it (no NUL inside a string)
                cur = pst
                ok = True
                for j in range(nargs[v]):
                    if layout[v, j]:
                        if cur + 4 > pen:
                            ok = False
                            break
                        ln = _ld32(u32v, cur, big)
                        if cur + 4 + ln > pen:
                            ok = False
                            break
                        for t in range(cur + 4, cur + 4 + ln):
                            if buf[t] == 0:
                                ok = False
                                break
                        if not ok:
                            break
                        sacc[j] = ln
                        cur += 4 + ln
                    else:
                        if cur + 8 > pen:
                            ok = False
                            break
                        cur += 8
                if ok and cur == pen:
                    for j in range(nargs[v]):
                        if layout[v, j]:
                            sbytes[v, j] += sacc[j]
                    g = v
                    break
        grp[i] = g
        if g >= 0:
            cnt[g] += 1
            nkept += 1
            tbound += pen - pst + textfix[g]
    # group bases
    gbase = np.zeros(nv + 1, np.int64)
    vbase = np.zeros(nv + 1, np.int64)
    nstr = np.zeros(nv, np.int64)
    scol = np.full((nv, MAX_ARGS), -1, np.int64)  # string column ordinal of each argument
    obase = np.zeros(nv + 1, np.int64)
    for v in range(nv):
        gbase[v + 1] = gbase[v] + cnt[v]
        vbase[v + 1] = vbase[v] + cnt[v] * nargs[v]
        if mode[v] != M_ANY:
            for j in range(nargs[v]):
                if layout[v, j]:
                    scol[v, j] = nstr[v]
                    nstr[v] += 1
        obase[v + 1] = obase[v] + (cnt[v] + 1) * nstr[v] if cnt[v] else obase[v]
    sdbase = np.zeros((nv, MAX_ARGS), np.int64)
    total_s = 0
    for v in range(nv):
        for j in range(nargs[v]):
            if scol[v, j] >= 0:
                sdbase[v, j] = total_s
                total_s += sbytes[v, j]
    g_vals = np.empty(vbase[nv], np.uint64)
    g_ts = np.empty(nkept, np.int64)
    g_tid = np.empty(nkept, np.int32)
    g_line = np.empty(nkept, np.int64)
    s_offs = np.empty(obase[nv], np.int32)
    s_data = np.empty(total_s, np.uint8)
    ev_ts = np.empty(nkept, np.int64)
    ev_tid = np.empty(nkept, np.int32)
    ev_ln = np.empty(nkept, np.int64)
    first = np.full(nv, -1, np.int64)
    ev_cand = np.empty(nkept, np.int32)
    a_off = np.empty(nkept + 1, np.int32)
    a_data = np.empty(tbound, np.uint8)
    nonascii = np.zeros(nv, np.bool_)
    cur = np.zeros(nv, np.int64)
    spos = sdbase.copy()
    vals = np.zeros(MAX_ARGS, np.uint64)
    sst = np.zeros(MAX_ARGS, np.int64)
    slen = np.zeros(MAX_ARGS, np.int64)
    tmp = np.empty(128, np.uint8)
    dg = np.empty(64, np.uint8)
    r = 0
    pos = 0
    for i in range(ne):
        g = grp[i]
        if g < 0:
            continue
        s = ev_start[i] + hsize
        ts = np.int64(_ld64(u64v, s + 8, big))
        pid = np.int32(_ld32(u32v, s + 20, big))  # the pid (tid column), as C's int32
        ln_no = ev_line[i]
        k = cur[g]
        cur[g] = k + 1
        row = gbase[g] + k
        g_ts[row] = ts
        g_tid[row] = pid
        g_line[row] = ln_no
        ev_ts[r] = ts
        ev_tid[r] = pid
        ev_ln[r] = ln_no
        if k == 0:
            first[g] = r
        ev_cand[r] = g
        a_off[r] = pos
        r += 1
        if mode[g] == M_ANY:
            continue
        na = nargs[g]
        cnt_g = cnt[g]
        p = s + 24
        for j in range(na):
            if layout[g, j]:
                ln = _ld32(u32v, p, big)
                vals[j] = 0
                sst[j] = p + 4
                slen[j] = ln
                o = obase[g] + scol[g, j] * (cnt_g + 1) + k
                d = spos[g, j]
                s_offs[o] = d
                acc = 0
                for t in range(ln):
                    b = buf[p + 4 + t]
                    s_data[d + t] = b
                    acc |= b
                if acc >= 0x80:
                    nonascii[g] = True
                spos[g, j] = d + ln
                p += 4 + ln
            else:
                x = _ld64(u64v, p, big)
                vals[j] = x
                slen[j] = 0
                g_vals[vbase[g] + j * cnt_g + k] = x
                p += 8
        if mode[g] == M_KERNEL:
            pos = _render_row(buf, vals, sst, slen, ops, ops_lo[g], ops_n[g], lits, a_data, pos,
                              tmp, dg)  # fmt: skip
    a_off[nkept] = pos
    for v in range(nv):  # close every string column's offsets
        if cnt[v]:
            for j in range(nargs[v]):
                if scol[v, j] >= 0:
                    s_offs[obase[v] + scol[v, j] * (cnt[v] + 1) + cnt[v]] = spos[v, j]
    return (grp, cnt, gbase, vbase, obase, scol, g_vals, g_ts, g_tid, g_line, s_offs, s_data,
            ev_ts, ev_tid, ev_ln, ev_cand, first, a_off, a_data[:pos], nonascii)  # fmt: skip
