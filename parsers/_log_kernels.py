"""Compiled (numba) kernels of the QEMU text-log parser: one pass per line, no Python per line.

Positions are int64 offsets into the block's uint8 buffer. Plans are flat tables built by
``parsers._log_numba`` from :class:`tracetool.catalog.FormatPlan` (op rows: kind, literal offset,
literal length, flags).
"""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit  # noqa: E402  (imported after the cache folder is configured)
from numba.core import types
from numba.extending import intrinsic

from parsers._numba_bits import trailing_zeros
from parsers._numba_setup import CACHE
from tracetool.catalog.fmt import FLAG_ALT, FLAG_PAD, Conv

K_LIT = int(Conv.LITERAL)
K_SIGNED = int(Conv.SIGNED)
K_UNSIGNED = int(Conv.UNSIGNED)
K_HEX = int(Conv.HEX)
K_PTR = int(Conv.PTR)
K_STRING = int(Conv.STRING)
K_CHAR = int(Conv.CHAR)
K_FLOAT = int(Conv.FLOAT)
K_OCT = int(Conv.OCT)
F_PAD = FLAG_PAD
F_ALT = FLAG_ALT

ST_EVENT = 0  # a name was found after the prefix
ST_NO_NAME = 1  # no valid name: rejected after an ID@ prefix, other line otherwise
ST_BAD_TID = 2  # ID@ prefix whose id does not fit in int32


@intrinsic
def _load8(typingctx, src, si):
    """The 8 bytes src[si : si + 8] as a native-order uint64 (one unaligned load)."""
    sig = types.uint64(src, si)

    def codegen(context, builder, signature, args):
        s, six = args
        sa = context.make_array(signature.args[0])(context, builder, s)
        sp = builder.bitcast(builder.gep(sa.data, [six]), ir.IntType(64).as_pointer())
        return builder.load(sp, align=1)

    return sig, codegen


@intrinsic
def _store8(typingctx, dst, di, value):
    """Write the uint64 ``value`` to dst[di : di + 8] (one unaligned store)."""
    sig = types.void(dst, di, value)

    def codegen(context, builder, signature, args):
        d, dix, v = args
        da = context.make_array(signature.args[0])(context, builder, d)
        dp = builder.bitcast(builder.gep(da.data, [dix]), ir.IntType(64).as_pointer())
        builder.store(v, dp, align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=CACHE, nogil=True, inline="always")
def _copy(dst, o, src, a, b):
    """Copy src[a:b] to dst[o:]: 8 bytes at a time, then the tail (reads stay inside [a, b))."""
    while a + 8 <= b:
        _store8(dst, o, _load8(src, a))
        a += 8
        o += 8
    while a < b:
        dst[o] = src[a]
        a += 1
        o += 1


_DAYS_BEFORE_MONTH = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], np.int64)


@njit(cache=CACHE, nogil=True)
def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=CACHE, nogil=True)
def _digits(buf, pos, end, n):
    """Value of exactly n decimal digits at pos, or -1."""
    if pos + n > end:
        return -1
    v = 0
    for k in range(n):
        c = buf[pos + k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=CACHE, nogil=True)
def _parse_iso(buf, s, e):
    """Parse 'YYYY-MM-DDTHH:MM:SS[.f](Z|+HH:MM|+HHMM) ' at s; return (ts_ns, next_pos) or (0, -1)."""
    y = _digits(buf, s, e, 4)
    if y < 0 or s + 19 > e or buf[s + 4] != 45 or buf[s + 7] != 45 or buf[s + 10] != 84:
        return 0, -1
    if buf[s + 13] != 58 or buf[s + 16] != 58:
        return 0, -1
    mo = _digits(buf, s + 5, e, 2)
    d = _digits(buf, s + 8, e, 2)
    hh = _digits(buf, s + 11, e, 2)
    mi = _digits(buf, s + 14, e, 2)
    ss = _digits(buf, s + 17, e, 2)
    if mo < 0 or d < 0 or hh < 0 or mi < 0 or ss < 0:  # digit shape only, like the regex
        return 0, -1
    p = s + 19
    frac = 0
    if p < e and buf[p] == 46:
        p += 1
        nd = 0
        while p < e and 48 <= buf[p] <= 57:
            frac = frac * 10 + (buf[p] - 48)
            nd += 1
            p += 1
        if nd == 0 or nd > 9:
            return 0, -1
        while nd < 9:
            frac *= 10
            nd += 1
    off = 0
    if p < e and buf[p] == 90:  # Z
        p += 1
    elif p < e and (buf[p] == 43 or buf[p] == 45):
        sign = 1 if buf[p] == 43 else -1
        oh = _digits(buf, p + 1, e, 2)
        if oh < 0:
            return 0, -1
        p += 3
        if p < e and buf[p] == 58:
            p += 1
        om = _digits(buf, p, e, 2)
        if om < 0:
            return 0, -1
        p += 2
        off = sign * (oh * 3600 + om * 60)
    else:
        return 0, -1
    if p >= e or buf[p] != 32:
        return 0, -1
    days = _days_from_civil(y, mo, d)
    secs = days * 86400 + hh * 3600 + mi * 60 + ss - off
    return secs * 1000000000 + frac, p + 1


@njit(cache=CACHE, nogil=True)
def _is_name_start(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@njit(cache=CACHE, nogil=True)
def _is_name_char(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or (48 <= c <= 57)


_LO7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NL8 = np.uint64(0x0A0A0A0A0A0A0A0A)
_ONES = np.uint64(0x0101010101010101)
_HI8 = np.uint64(0x8080808080808080)
#: The word scan of ``line_bounds`` takes byte k of a word as its bits 8k..8k+7 (a little-endian
#: host); elsewhere every byte goes through its byte loop (same results, slower).
_SWAR = sys.byteorder == "little"


@njit(cache=CACHE, nogil=True, inline="always")
def _zero_bytes(x):
    """The high bit of each byte of x that is 0 (exact: no false positives)."""
    return ~(((x & _LO7) + _LO7) | x | _LO7)


@njit(cache=CACHE, nogil=True)
def line_bounds(buf):
    """Start and end (without the newline and a trailing CR) of every line of ``buf``, and
    whether any byte is NUL or non-ASCII; the last line may lack its newline. Two passes,
    8 bytes at a time: count the newlines, then fill (no temporary arrays)."""
    size = buf.shape[0]
    words = size // 8 if _SWAR else 0
    n = 0
    odd = np.uint64(0)  # high bits: a non-ASCII byte or a NUL byte somewhere
    for w in range(words):
        x = _load8(buf, w * 8)
        nl = _zero_bytes(x ^ _NL8)
        odd |= x | _zero_bytes(x)
        n += ((nl >> np.uint64(7)) * _ONES) >> np.uint64(56)
    for i in range(words * 8, size):
        c = buf[i]
        n += c == 10
        if c == 0 or c >= 128:
            odd |= np.uint64(128)
    if size and buf[size - 1] != 10:
        n += 1
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    j = 0
    s = 0
    for w in range(words):
        nl = _zero_bytes(_load8(buf, w * 8) ^ _NL8)
        while nl:
            i = w * 8 + (trailing_zeros(nl) >> 3)
            nl &= nl - np.uint64(1)
            starts[j] = s
            e = i
            if e > s and buf[e - 1] == 13:
                e -= 1
            ends[j] = e
            j += 1
            s = i + 1
    for i in range(words * 8, size):
        if buf[i] == 10:
            starts[j] = s
            e = i
            if e > s and buf[e - 1] == 13:
                e -= 1
            ends[j] = e
            j += 1
            s = i + 1
    if j < n:
        starts[j] = s
        e = size
        if e > s and buf[e - 1] == 13:
            e -= 1
        ends[j] = e
    return starts, ends, (odd & _HI8) != 0


@njit(cache=CACHE, nogil=True)
def flag_lines(buf, starts, ends):
    """Per line: holds a NUL byte; is not well-formed UTF-8 (Unicode table 3-7, as Python's
    strict decoder: no overlongs, no surrogates, nothing above U+10FFFF). A line's bytes
    end at ``ends`` (the newline and a trailing CR are not part of it)."""
    n = starts.shape[0]
    nul = np.zeros(n, np.bool_)
    bad = np.zeros(n, np.bool_)
    for li in range(n):
        p = starts[li]
        e = ends[li]
        while p < e:
            c = buf[p]
            if c < 0x80:
                if c == 0:
                    nul[li] = True
                p += 1
                continue
            if 0xC2 <= c <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif c == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif 0xE1 <= c <= 0xEC or c == 0xEE or c == 0xEF:
                need, lo, hi = 2, 0x80, 0xBF
            elif c == 0xED:
                need, lo, hi = 2, 0x80, 0x9F
            elif c == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= c <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif c == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                bad[li] = True
                p += 1
                continue
            if p + need >= e + 1 or not (lo <= buf[p + 1] <= hi):
                bad[li] = True
                p += 1
                continue
            step = need + 1
            for k in range(2, need + 1):
                if not (0x80 <= buf[p + k] <= 0xBF):
                    step = k  # the byte that breaks the sequence is looked at again (a NUL)
                    break
            if step <= need:
                bad[li] = True
            p += step
    return nul, bad


@njit(cache=CACHE, nogil=True)
def lookup_name(buf, a, b, h, slot_hash, slot_id, name_off, name_pool, mask):
    """Id of the name buf[a:b] (hash h) in the open-addressing name table, or -1."""
    i = h & mask
    while True:
        sid = slot_id[i]
        if sid < 0:
            return -1
        if slot_hash[i] == h:
            o0 = name_off[sid]
            if name_off[sid + 1] - o0 == b - a:
                eq = True
                for k in range(b - a):
                    if name_pool[o0 + k] != buf[a + k]:
                        eq = False
                        break
                if eq:
                    return sid
        i = (i + np.uint64(1)) & mask


@njit(cache=CACHE, nogil=True)
def scan_lines(buf, starts, ends, slot_hash, slot_id, name_off, name_pool, mask):
    """Prefix and name of every line.

    Returns shape, status, tid, ts_ns, name start/end, body start, name hash (FNV-1a) and
    name id in the table (-1: a name not in the table yet; -2: no name).
    """
    n = starts.shape[0]
    shape = np.zeros(n, np.int8)
    status = np.zeros(n, np.int8)
    tid = np.zeros(n, np.int64)
    ts = np.zeros(n, np.int64)
    ns = np.zeros(n, np.int64)
    ne = np.zeros(n, np.int64)
    bs = np.zeros(n, np.int64)
    h = np.zeros(n, np.uint64)
    nid = np.full(n, -2, np.int64)
    for i in range(n):
        s = starts[i]
        e = ends[i]
        p = s
        # ID@SEC.USEC: (any number of digits; an id over 32 bits is a bad tid)
        idv = 0
        nd = 0
        while p < e and 48 <= buf[p] <= 57:
            idv = idv * 10 + (buf[p] - 48)
            p += 1
            nd += 1
        found = False
        if nd > 0 and p < e and buf[p] == 64:
            q = p + 1
            sec = 0
            nsd = 0
            while q < e and 48 <= buf[q] <= 57:
                sec = sec * 10 + (buf[q] - 48)
                q += 1
                nsd += 1
            if nsd > 0 and q < e and buf[q] == 46:
                q += 1
                us = 0
                nud = 0
                while q < e and 48 <= buf[q] <= 57:
                    us = us * 10 + (buf[q] - 48)
                    q += 1
                    nud += 1
                if nud > 0 and q < e and buf[q] == 58:
                    found = True
                    shape[i] = 1
                    tid[i] = idv
                    ts[i] = sec * 1000000000 + us * 1000
                    p = q + 1
                    if nd > 10 or idv > 2147483647:
                        status[i] = ST_BAD_TID
                        continue
        if not found:
            p = s
            if e - s >= 21 and 48 <= buf[s] <= 57:
                t, q = _parse_iso(buf, s, e)
                if q >= 0:
                    shape[i] = 2
                    ts[i] = t
                    p = q
        # name
        if p < e and _is_name_start(buf[p]):
            q = p
            hv = np.uint64(14695981039346656037)
            while q < e and _is_name_char(buf[q]):
                hv = (hv ^ np.uint64(buf[q])) * np.uint64(1099511628211)
                q += 1
            if q == e or buf[q] == 32:
                ns[i] = p
                ne[i] = q
                bs[i] = q + 1 if q < e else q
                h[i] = hv
                nid[i] = lookup_name(buf, p, q, hv, slot_hash, slot_id, name_off, name_pool, mask)
                continue
        status[i] = ST_NO_NAME
    return shape, status, tid, ts, ns, ne, bs, h, nid


@njit(cache=CACHE, nogil=True)
def gather(buf, starts, ends):
    """Concatenate byte ranges: (int32 offsets, data) of an Arrow string array."""
    n = starts.shape[0]
    offsets = np.empty(n + 1, np.int32)
    total = 0
    offsets[0] = 0
    for i in range(n):
        total += ends[i] - starts[i]
        offsets[i + 1] = total
    data = np.empty(total, np.uint8)
    for i in range(n):
        _copy(data, offsets[i], buf, starts[i], ends[i])
    return offsets, data


@njit(cache=CACHE, nogil=True)
def gather_events(buf, idx, ts, tid, shape, bs, ends, code_of_nid, nid):
    """The ``events`` columns of lines ``idx`` in one pass: ts, tid, their null masks, the
    event code, and the raw argument text as Arrow string offsets + data."""
    n = idx.shape[0]
    ts_o = np.empty(n, np.int64)
    tid_o = np.empty(n, np.int32)
    code = np.empty(n, np.int32)
    ts_null = np.zeros(n, np.bool_)
    tid_null = np.zeros(n, np.bool_)
    offsets = np.empty(n + 1, np.int32)
    offsets[0] = 0
    total = 0
    for j in range(n):
        i = idx[j]
        ts_o[j] = ts[i]
        tid_o[j] = tid[i]
        ts_null[j] = shape[i] == 0
        tid_null[j] = shape[i] != 1
        code[j] = code_of_nid[nid[i]]
        if ends[i] > bs[i]:
            total += ends[i] - bs[i]
        offsets[j + 1] = total
    data = np.empty(total, np.uint8)
    for j in range(n):
        i = idx[j]
        _copy(data, offsets[j], buf, bs[i], ends[i])
    return ts_o, tid_o, ts_null, tid_null, code, offsets, data


@njit(cache=CACHE, nogil=True)
def gather_nullable(buf, starts, ends):
    """Like :func:`gather`, with the ranges that read exactly ``(null)`` left out as nulls."""
    n = starts.shape[0]
    null = np.zeros(n, np.bool_)
    for i in range(n):
        a = starts[i]
        if (
            ends[i] - a == 6
            and buf[a] == 40
            and buf[a + 1] == 110
            and buf[a + 2] == 117
            and buf[a + 3] == 108
            and buf[a + 4] == 108
            and buf[a + 5] == 41
        ):
            null[i] = True
    offsets = np.empty(n + 1, np.int32)
    total = 0
    offsets[0] = 0
    for i in range(n):
        if not null[i]:
            total += ends[i] - starts[i]
        offsets[i + 1] = total
    data = np.empty(total, np.uint8)
    for i in range(n):
        if not null[i]:
            _copy(data, offsets[i], buf, starts[i], ends[i])
    return offsets, data, null


_HEX = np.full(256, -1, np.int64)
_HEX[48:58] = np.arange(10)
_HEX[97:103] = np.arange(10, 16)
_HEX[65:71] = np.arange(10, 16)


@njit(cache=CACHE, nogil=True)
def _hexval(c):
    return _HEX[c]  # a table lookup: no branches in the digit loops


@njit(cache=CACHE, nogil=True)
def _lit_at(buf, pos, end, lits, lo, ll):
    if pos + ll > end:
        return False
    for k in range(ll):
        if buf[pos + k] != lits[lo + k]:
            return False
    return True


@njit(cache=CACHE, nogil=True)
def _find_lit(buf, pos, end, lits, lo, ll):
    last = end - ll
    c0 = lits[lo]
    j = pos
    while j <= last:
        if buf[j] == c0 and _lit_at(buf, j, end, lits, lo, ll):
            return j
        j += 1
    return -1


@njit(cache=CACHE, nogil=True)
def _match(buf, s, e, ops, o0, on, lits, vals, sst, sen, row):
    """Run one plan over buf[s:e]; fill row of vals/sst/sen. Returns 0 ok or 1 + failing op."""
    pos = s
    op = 0
    col = 0
    bt_op = -1
    bt_col = 0
    bt_start = 0
    bt_next = 0
    while True:
        fail = False
        if op == on:
            if pos == e:
                return 0
            fail = True
        else:
            kind = ops[o0 + op, 0]
            flags = ops[o0 + op, 3]
            if kind == K_LIT:
                lo = ops[o0 + op, 1]
                ll = ops[o0 + op, 2]
                if _lit_at(buf, pos, e, lits, lo, ll):
                    pos += ll
                    op += 1
                    continue
                fail = True
            elif kind == K_STRING:
                start = pos
                if op + 1 == on:
                    end_s = e
                elif ops[o0 + op + 1, 0] == K_LIT:
                    end_s = _find_lit(buf, pos, e, lits, ops[o0 + op + 1, 1], ops[o0 + op + 1, 2])
                else:
                    end_s = pos
                if end_s < 0:
                    fail = True
                else:
                    sst[row, col] = start
                    sen[row, col] = end_s
                    if op + 1 < on:
                        bt_op = op
                        bt_col = col
                        bt_start = start
                        bt_next = end_s + 1
                    pos = end_s
                    col += 1
                    op += 1
                    continue
            else:
                if flags & F_PAD:
                    while pos < e and buf[pos] == 32:
                        pos += 1
                start = pos
                if kind == K_SIGNED or kind == K_UNSIGNED:
                    neg = False
                    if kind == K_SIGNED and pos < e and buf[pos] == 45:
                        neg = True
                        pos += 1
                    v = np.uint64(0)
                    nd = 0
                    ok = True
                    while pos < e and 48 <= buf[pos] <= 57 and nd < 19:  # 19 digits never overflow
                        v = v * np.uint64(10) + np.uint64(buf[pos] - 48)
                        pos += 1
                        nd += 1
                    while pos < e and 48 <= buf[pos] <= 57:  # the 20th digit and beyond: checked
                        dgt = np.uint64(buf[pos] - 48)
                        if v > np.uint64(1844674407370955161) or (
                            v == np.uint64(1844674407370955161) and dgt > np.uint64(5)
                        ):
                            ok = False
                        v = v * np.uint64(10) + dgt
                        pos += 1
                        nd += 1
                    if nd == 0 or not ok:
                        fail = True
                    elif kind == K_SIGNED:
                        lim = (
                            np.uint64(9223372036854775808)
                            if neg
                            else np.uint64(9223372036854775807)
                        )
                        if v > lim:
                            fail = True
                        elif neg:
                            vals[row, col] = np.int64(np.uint64(0) - v)
                        else:
                            vals[row, col] = np.int64(v)
                    else:
                        vals[row, col] = np.int64(v)
                elif kind == K_HEX or kind == K_PTR or kind == K_OCT:
                    if kind == K_PTR and _nil_at(buf, pos, e):
                        vals[row, col] = 0
                        pos += 5
                    else:
                        if kind == K_PTR:
                            if pos + 1 < e and buf[pos] == 48 and buf[pos + 1] == 120:
                                pos += 2
                            else:
                                fail = True
                        elif (flags & F_ALT) and kind == K_HEX:
                            if (
                                pos + 2 < e
                                and buf[pos] == 48
                                and (buf[pos + 1] == 120 or buf[pos + 1] == 88)
                                and _hexval(buf[pos + 2]) >= 0
                            ):
                                pos += 2
                        if not fail:
                            v = np.uint64(0)
                            nd = 0
                            sig = 0
                            base = 8 if kind == K_OCT else 16
                            while pos < e:
                                hv = _hexval(buf[pos])
                                if hv < 0 or hv >= base:
                                    break
                                if v != np.uint64(0) or hv != 0:
                                    sig += 1
                                v = v * np.uint64(base) + np.uint64(hv)
                                pos += 1
                                nd += 1
                            if nd == 0 or (base == 16 and sig > 16) or (base == 8 and sig > 22):
                                fail = True
                            else:
                                vals[row, col] = np.int64(v)
                elif kind == K_CHAR:
                    if pos < e:
                        vals[row, col] = buf[pos]
                        pos += 1
                    else:
                        fail = True
                else:  # K_FLOAT: record the text, converted later
                    q = pos
                    if q < e and (buf[q] == 45 or buf[q] == 43):
                        q += 1
                    nd = 0
                    while q < e and (48 <= buf[q] <= 57 or buf[q] == 46):
                        q += 1
                        nd += 1
                    if nd > 0 and q < e and (buf[q] == 101 or buf[q] == 69):
                        r = q + 1
                        if r < e and (buf[r] == 45 or buf[r] == 43):
                            r += 1
                        ne_ = 0
                        while r < e and 48 <= buf[r] <= 57:
                            r += 1
                            ne_ += 1
                        if ne_ > 0:
                            q = r
                    if nd == 0:
                        if q + 3 <= e and (
                            (buf[q] == 105 and buf[q + 1] == 110 and buf[q + 2] == 102)
                            or (buf[q] == 110 and buf[q + 1] == 97 and buf[q + 2] == 110)
                        ):
                            q += 3
                            nd = 3
                    if nd == 0:
                        fail = True
                    else:
                        sst[row, col] = start
                        sen[row, col] = q
                        pos = q
                if not fail:
                    col += 1
                    op += 1
                    continue
        # failure: backtrack the most recent string, if any
        if bt_op >= 0 and fail:
            nxt = ops[o0 + bt_op + 1, 0]
            if nxt == K_LIT:
                j = _find_lit(buf, bt_next, e, lits, ops[o0 + bt_op + 1, 1], ops[o0 + bt_op + 1, 2])
            else:
                j = bt_next if bt_next <= e else -1
            if j >= 0:
                sst[row, bt_col] = bt_start
                sen[row, bt_col] = j
                bt_next = j + 1
                pos = j
                op = bt_op + 1
                col = bt_col + 1
                continue
        return 1 + op


@njit(cache=CACHE, nogil=True)
def _nil_at(buf, pos, e):
    return (
        pos + 5 <= e
        and buf[pos] == 40
        and buf[pos + 1] == 110
        and buf[pos + 2] == 105
        and buf[pos + 3] == 108
        and buf[pos + 4] == 41
    )


@njit(cache=CACHE, nogil=True)
def decode_args(
    buf, bs, be, grp, grp_off, grp_n, var_plans, plan_off, plan_n, ops, lits, vals, sst, sen
):
    """Match each line's arguments against its plan group's variants (first match wins).

    ``grp[i]`` < 0 skips line i. Fills row i of vals/sst/sen; returns the variant index per
    line (-1 no variant matched, -2 skipped).
    """
    n = bs.shape[0]
    variant = np.full(n, -2, np.int32)
    for i in range(n):
        g = grp[i]
        if g < 0:
            continue
        variant[i] = -1
        for k in range(grp_n[g]):
            p = var_plans[grp_off[g] + k]
            r = _match(buf, bs[i], be[i], ops, plan_off[p], plan_n[p], lits, vals, sst, sen, i)
            if r == 0:
                variant[i] = k
                break
    return variant


@njit(cache=CACHE, nogil=True)
def group_rows(keys, nkeys):
    """Counting sort: rows of each key in order, as (permutation, start offset per key)."""
    counts = np.zeros(nkeys + 1, np.int64)
    for i in range(keys.shape[0]):
        counts[keys[i] + 1] += 1
    for k in range(nkeys):
        counts[k + 1] += counts[k]
    perm = np.empty(keys.shape[0], np.int64)
    fill = counts[:-1].copy()
    for i in range(keys.shape[0]):
        k = keys[i]
        perm[fill[k]] = i
        fill[k] += 1
    return perm, counts
