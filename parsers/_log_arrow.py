"""Pure-pyarrow engine of the QEMU text-log parser (the rules are in :mod:`parsers._log_common`).

:func:`decode_block_arrow` turns one block of whole lines into a :class:`~parsers.base.Chunk`
using only vectorised ``pyarrow.compute`` (RE2 regexes, casts) and numpy. Python loops run over
distinct event names and format variants, and over lines that are not valid UTF-8; never over
every line. It is used for small inputs and as the independent reference of the compiled engine,
so it favours plain, checkable steps over speed.

Steps: split the block into lines (numpy on the raw bytes, dropping ``\\n`` and one trailing
``\\r``); reject lines that are not UTF-8 or hold a NUL; one anchored regex reads the prefix, the
event name and the argument text of every other line; the prefix decides whether the line is a
trace record (``ID@SEC.USEC:`` always, ISO or none only for accepted names); records of
catalogued events are matched against each format variant's regex in catalog order and their
arguments decoded into typed columns; what matches no variant is rejected.

Numbers: ``%d``/``%i`` must fit int64 and ``%u``/``%x``/``%o``/``%p`` uint64, otherwise the variant
does not match; the 64-bit pattern is then wrapped to the argument's declared C type with
:func:`~parsers._log_common.wrap_int`. ``SEC`` and ``USEC`` of an ``ID@SEC.USEC:`` prefix are
not range-checked: ``SEC*10**9 + USEC*10**3`` is computed modulo 2**64, like C unsigned
arithmetic. The fields of an ISO-8601 prefix are only checked for their digit shape (no month or
hour range check) and converted with the proleptic Gregorian calendar.
"""

from __future__ import annotations

import codecs
from collections import Counter
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers._log_common import (
    REASON_BAD_TID,
    REASON_BAD_UTF8,
    REASON_NO_NAME,
    REASON_NUL,
    SHAPE_ID,
    SHAPE_ISO,
    SHAPE_NAMES,
    SHAPE_NONE,
    LogContext,
    reason_no_match,
    wrap_int,
)
from parsers.base import Chunk, typed_schema
from tracetool.catalog import ArgKind, Column, Conv, EventDef, FormatPlan, Token, plan_to_regex
from tracetool.catalog.ctypes import ARROW_TYPES
from tracetool.catalog.fmt import FLAG_ALT
from tracetool.errors import FormatError
from tracetool.schema import EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

__all__ = ["decode_block_arrow", "parse_radix_u64", "split_lines"]

# ---------------------------------------------------------------------------------------------
# Line shapes

_ID_PREFIX = r"(?P<id>[0-9]+)@(?P<sec>[0-9]+)\.(?P<usec>[0-9]+):"
_ISO_PREFIX = (
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?P<tz>Z|[+-][0-9]{2}:?[0-9]{2}) "
)
_NAME_ARGS = r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?: (?P<args>.*))?"
#: Every trace-record-looking line: optional prefix, a name, then a space and the arguments or
#: the end of the line. A prefix always starts with a digit and a name never does, so the
#: optional prefix group cannot be skipped to match the same line another way.
LINE_REGEX = f"^(?:{_ID_PREFIX}|{_ISO_PREFIX})?{_NAME_ARGS}$"
#: An ``ID@SEC.USEC:`` prefix alone (to tell rejected records from other lines).
ID_PREFIX_REGEX = f"^{_ID_PREFIX}"

_U64_MAX = (1 << 64) - 1
_INT32_MAX = (1 << 31) - 1

# ---------------------------------------------------------------------------------------------
# Small Arrow/numpy helpers


def _bool_np(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as a numpy bool array (nulls -> False)."""
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _offsets_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets of the n+1 value boundaries, uint8 data buffer) of a (large) string array."""
    n = len(arr)
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8)
    otype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    bufs = arr.buffers()
    width = np.dtype(otype).itemsize
    off = np.frombuffer(bufs[1], otype, count=n + 1, offset=arr.offset * width).astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off, data


def _string_array(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A string array from value offsets and bytes (not validated: the caller knows)."""
    n = len(offsets) - 1
    if len(data) > _INT32_MAX:
        raise ValueError("a block of the text-log parser must hold less than 2 GiB of text")
    off = offsets.astype(np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(off), pa.py_buffer(data)])


def _as_string(arr: pa.Array) -> pa.Array:
    return arr if arr.type == pa.string() else arr.cast(pa.string())


def _digit_values() -> np.ndarray:
    lut = np.full(256, 255, np.uint64)  # 255: not a digit
    for i, c in enumerate(b"0123456789abcdef"):
        lut[c] = i
    for i, c in enumerate(b"ABCDEF"):
        lut[c] = 10 + i
    return lut


_DIGIT = _digit_values()


@cache
def _radix_tables(base: int) -> tuple[np.ndarray, int, int, int]:
    """(base**k mod 2**64 for k < 64, digits of 2**64-1, divmod(2**64-1, base))."""
    powers = np.array([pow(base, k, 1 << 64) for k in range(64)], np.uint64)
    ndig, v = 0, _U64_MAX
    while v:
        v //= base
        ndig += 1
    q, r = divmod(_U64_MAX, base)
    return powers, ndig, q, r


def parse_radix_u64(arr: pa.Array, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit strings (base 8, 10 or 16; no sign, no ``0x``) -> (value mod 2**64, bad).

    Vectorised over the array's offsets and data buffers: every byte gets its digit value and
    its position from the end of its string; ``np.add.reduceat`` sums ``digit * base**pos`` per
    string (uint64 arithmetic wraps, so the sum is the value modulo 2**64). ``bad`` is set where
    the exact value is 2**64 or more (more significant digits than 2**64-1 has, or as many and
    the value without its last digit, exact then, and that digit exceed 2**64-1) and where a
    character is not a digit of ``base`` (it counts as 0 in the value). Empty strings read as 0.
    """
    n = len(arr)
    vals = np.zeros(n, np.uint64)
    bad = np.zeros(n, bool)
    if n == 0:
        return vals, bad
    off, data = _offsets_data(arr)
    lo, hi = int(off[0]), int(off[-1])
    if hi == lo:
        return vals, bad
    powers, ndig, q, r = _radix_tables(base)
    lengths = np.diff(off)
    nonempty = lengths > 0
    seg_starts = (off[:-1] - lo)[nonempty]
    row = np.repeat(np.arange(n), lengths)
    pos = (off[1:] - 1)[row] - np.arange(lo, hi)  # 0 = last digit of its string
    dig = _DIGIT[data[lo:hi]]
    invalid = dig >= np.uint64(base)
    if invalid.any():
        bad[nonempty] |= np.logical_or.reduceat(invalid, seg_starts)
        dig = np.where(invalid, np.uint64(0), dig)
    zero = np.uint64(0)
    weight = np.where(pos < 64, powers[np.minimum(pos, 63)], zero)
    vals[nonempty] = np.add.reduceat(dig * weight, seg_starts)
    # Significant digits: position (+1) of the leftmost nonzero digit.
    sig = np.zeros(n, np.int64)
    sig[nonempty] = np.maximum.reduceat(np.where(dig != 0, pos + 1, 0), seg_starts)
    edge = np.flatnonzero(sig == ndig)
    if len(edge):
        # The value without its last digit (exact: fewer digits than 2**64-1 has).
        hpos = pos - 1
        hweight = np.where((hpos >= 0) & (hpos < 64), powers[np.clip(hpos, 0, 63)], zero)
        head = np.zeros(n, np.uint64)
        head[nonempty] = np.add.reduceat(dig * hweight, seg_starts)
        last = np.zeros(n, np.uint64)
        last[nonempty] = dig[(off[1:] - 1 - lo)[nonempty]]
        h, la = head[edge], last[edge]
        bad[edge] |= (h > np.uint64(q)) | ((h == np.uint64(q)) & (la > np.uint64(r)))
    bad |= sig > ndig
    return vals, bad


def _parse_decimal(s: pa.Array, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decimal strings (``-?[0-9]+`` / ``[0-9]+``) -> (int64 bit patterns, overflow).

    ``%d`` must fit int64 and ``%u`` uint64. Overflowing rows are found by comparing the digits
    (without sign and leading zeros) with the limit as text; the others are cast by Arrow.
    """
    if signed:
        neg = pc.starts_with(s, "-")
        mag = pc.if_else(neg, pc.utf8_slice_codeunits(s, 1), s)
        limit = pc.if_else(neg, "9223372036854775808", "9223372036854775807")
        nlim = 19
    else:
        mag = s
        limit = pa.scalar("18446744073709551615")
        nlim = 20
    digits = pc.utf8_ltrim(mag, characters="0")
    length = pc.binary_length(digits)
    over = pc.or_(
        pc.greater(length, nlim),
        pc.and_(pc.equal(length, nlim), pc.greater(digits, limit)),
    )
    over_np = _bool_np(over)
    safe = pc.if_else(over, "0", s) if over_np.any() else s
    vals = pc.cast(safe, pa.int64() if signed else pa.uint64()).to_numpy(zero_copy_only=False)
    return vals.view(np.int64), over_np


def _parse_int_token(s: pa.Array, tok: Token) -> tuple[np.ndarray, np.ndarray]:
    """Text of one integer conversion -> (int64 bit patterns, overflow)."""
    kind = tok.kind
    if kind is Conv.SIGNED:
        return _parse_decimal(s, True)
    if kind is Conv.UNSIGNED:
        return _parse_decimal(s, False)
    if kind is Conv.OCT:
        vals, over = parse_radix_u64(s, 8)
        return vals.view(np.int64), over
    if kind is Conv.HEX:
        if tok.flags & FLAG_ALT:
            s = pc.replace_substring_regex(s, "^0[xX]", "")
        vals, over = parse_radix_u64(s, 16)
        return vals.view(np.int64), over
    if kind is Conv.PTR:
        nil = pc.equal(s, "(nil)")
        digits = pc.if_else(nil, "0", pc.utf8_slice_codeunits(s, 2))
        vals, over = parse_radix_u64(digits, 16)
        return vals.view(np.int64), over
    if kind is Conv.CHAR:
        off, data = _offsets_data(s)
        lengths = np.diff(off)
        first = np.zeros(len(s), np.int64)
        first[lengths > 0] = data[off[:-1][lengths > 0]]
        return first, np.zeros(len(s), bool)
    raise AssertionError(f"not an integer conversion: {kind!r}")


def _column_values(s: pa.Array, tok: Token, col: Column) -> tuple[pa.Array, np.ndarray]:
    """Text of one conversion -> (typed column, rows that do not match after all)."""
    n = len(s)
    kind = col.kind
    if tok.kind is Conv.STRING or kind is ArgKind.STRING:
        s = _as_string(s)
        return pc.if_else(pc.equal(s, "(null)"), pa.scalar(None, pa.string()), s), np.zeros(n, bool)
    if tok.kind is Conv.FLOAT:
        f = pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)
        if kind is ArgKind.FLOAT:
            return pa.array(f, pa.float64()), np.zeros(n, bool)
        # A float printed into an integer column: truncated; not finite or beyond 64 bits
        # is an overflow like any other number.
        t = np.trunc(np.where(np.isfinite(f), f, 0.0))
        over = ~np.isfinite(f) | (t < -(2.0**63)) | (t >= 2.0**64)
        t = np.where(over, 0.0, t)
        neg = t < 0
        vals = np.empty(n, np.int64)
        vals[neg] = t[neg].astype(np.int64)
        vals[~neg] = t[~neg].astype(np.uint64).view(np.int64)
        return _wrap(vals, col), over
    vals, over = _parse_int_token(s, tok)
    if kind is ArgKind.FLOAT:
        signed = tok.kind is Conv.SIGNED
        f = vals.astype(np.float64) if signed else vals.view(np.uint64).astype(np.float64)
        return pa.array(f, pa.float64()), over
    return _wrap(vals, col), over


def _wrap(vals: np.ndarray, col: Column) -> pa.Array:
    return pa.array(wrap_int(vals, col.kind, col.bits), ARROW_TYPES[col.kind])


@cache
def _plan_regex(plan: FormatPlan) -> str:
    return plan_to_regex(plan)


def _match_variant(args: pa.Array, ev: EventDef) -> tuple[np.ndarray, list[pa.Array]]:
    """Match argument texts against one variant: (matched mask, typed columns of matched rows)."""
    plan = ev.plan
    assert plan is not None
    ex = pc.extract_regex(args, _plan_regex(plan))
    ok = _bool_np(ex.is_valid())
    hit = np.flatnonzero(ok)
    if len(hit) == 0:
        return ok, []
    sub = ex.take(pa.array(hit))
    bad = np.zeros(len(hit), bool)
    cols = []
    for col, tok in zip(ev.columns(), plan.conversions, strict=False):
        values, over = _column_values(sub.field(f"a{tok.arg}"), tok, col)
        cols.append(values)
        bad |= over
    if bad.any():
        ok[hit[bad]] = False
        keep = pa.array(~bad)
        cols = [c.filter(keep) for c in cols]
    return ok, cols


# ---------------------------------------------------------------------------------------------
# Lines


def split_lines(data: bytes) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Split a block into lines: (start offsets, end offsets, text array).

    A line ends at ``\\n`` (the last one may have none); the text drops the ``\\n`` and one
    trailing ``\\r``. ``ends`` are the text ends (exclusive) in ``data``. The text array is built
    from a copy of the block without those bytes and is not validated as UTF-8.
    """
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    ends = nl if (len(buf) == 0 or buf[-1] == 10) else np.append(nl, len(buf))
    starts = np.concatenate(([0], nl + 1))[: len(ends)].astype(np.int64)
    ends = ends.astype(np.int64)
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if len(buf) else ends > starts
    keep = np.ones(len(buf), bool)
    keep[nl] = False
    keep[ends[cr] - 1] = False
    ends = ends - cr
    body = buf[keep]
    offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    return starts, ends, _string_array(offsets, body)


def _invalid_utf8_lines(data: bytes, starts: np.ndarray) -> np.ndarray:
    """Indices of the lines that are not valid UTF-8 (loops over the bad lines only)."""
    bad: list[int] = []
    view = memoryview(data).cast("B")
    pos = 0
    while pos < len(view):
        try:
            codecs.utf_8_decode(view[pos:], "strict", True)
            break
        except UnicodeDecodeError as exc:
            at = pos + exc.start
            i = int(np.searchsorted(starts, at, side="right")) - 1
            bad.append(i)
            pos = int(starts[i + 1]) if i + 1 < len(starts) else len(view)
    return np.array(bad, np.int64)


# ---------------------------------------------------------------------------------------------
# Timestamps


def _ints(arr: pa.Array) -> np.ndarray:
    return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = np.where(m > 2, m - 3, m + 9)
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _iso_ns(f: pa.StructArray) -> np.ndarray:
    """UTC nanoseconds of the ISO-8601 prefix fields of a struct of extracted groups."""
    days = _days_from_civil(_ints(f.field("y")), _ints(f.field("mo")), _ints(f.field("d")))
    secs = days * 86400 + _ints(f.field("h")) * 3600 + _ints(f.field("mi")) * 60
    secs = secs + _ints(f.field("s"))
    frac = f.field("frac")
    flen = pc.binary_length(frac).to_numpy(zero_copy_only=False).astype(np.int64)
    fval = _ints(pc.if_else(pc.equal(flen, 0), "0", frac))
    ns = fval * (10 ** (9 - flen))
    tz = f.field("tz")
    hhmm = pc.if_else(pc.equal(tz, "Z"), "+0000", pc.replace_substring(tz, ":", ""))
    sign = np.where(_bool_np(pc.starts_with(hhmm, "-")), -1, 1)
    off = _ints(pc.utf8_slice_codeunits(hhmm, 1, 3)) * 3600
    off = off + _ints(pc.utf8_slice_codeunits(hhmm, 3, 5)) * 60
    return (secs - sign * off) * 1_000_000_000 + ns


# ---------------------------------------------------------------------------------------------
# The engine


def _nullable(values: np.ndarray, valid: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.array(values, typ, mask=~valid)


def decode_block_arrow(data: bytes, first_line: int, ctx: LogContext) -> Chunk:
    """Decode a block of whole lines (``first_line`` is the 1-based number of its first line)."""
    starts, ends, text_all = split_lines(data)
    n = len(starts)
    lineno = first_line + np.arange(n, dtype=np.int64)

    # Rejected lines, as (block row indices, reason per group, text array) groups.
    rej_rows: list[np.ndarray] = []
    rej_reasons: list[pa.Array] = []
    rej_texts: list[pa.Array] = []

    def reject(rows: np.ndarray, reason: str, texts: pa.Array) -> None:
        if len(rows):
            rej_rows.append(rows)
            rej_reasons.append(pa.repeat(pa.scalar(reason), len(rows)))
            rej_texts.append(_as_string(texts))

    # 1. Lines that hold a NUL byte, or are not UTF-8 text (a NUL line is rejected as NUL even
    # when it is not UTF-8 either).
    buf = np.frombuffer(data, np.uint8)
    nul = np.unique(np.searchsorted(starts, np.flatnonzero(buf == 0), side="right") - 1)
    bad_utf8 = np.setdiff1d(_invalid_utf8_lines(data, starts), nul)
    good = np.ones(n, bool)
    good[bad_utf8] = False
    good[nul] = False
    if len(nul):
        nul_text = [bytes(data[starts[i] : ends[i]]).decode("utf-8", "replace") for i in nul]
        reject(nul, REASON_NUL, pa.array(nul_text, pa.string()))
    if len(bad_utf8):
        texts = [bytes(data[starts[i] : ends[i]]).decode("utf-8", "replace") for i in bad_utf8]
        reject(bad_utf8, REASON_BAD_UTF8, pa.array(texts, pa.string()))
    rows = np.flatnonzero(good)  # block row of each text row
    text = text_all if len(rows) == n else text_all.filter(pa.array(good))

    # 2. Prefix, name, arguments.
    m = pc.extract_regex(text, LINE_REGEX)
    matched = _bool_np(m.is_valid())
    has_id = matched & _bool_np(pc.not_equal(m.field("id"), ""))
    is_id = has_id.copy()
    is_iso = matched & _bool_np(pc.not_equal(m.field("y"), ""))
    name = m.field("name")

    # Lines with an ID@ prefix but no "name" or "name args" after it.
    loose = np.flatnonzero(~matched)
    id_only = np.zeros(len(text), bool)
    if len(loose):
        lt = text.take(pa.array(loose))
        idm = pc.extract_regex(lt, ID_PREFIX_REGEX)
        hit = _bool_np(idm.is_valid())
        id_only[loose[hit]] = True
        tid_bad = np.zeros(len(loose), bool)
        if hit.any():
            ids = idm.field("id").filter(pa.array(hit))
            v, over = parse_radix_u64(ids, 10)
            tid_bad[hit] = over | (v > np.uint64(_INT32_MAX))
        reject(rows[loose[tid_bad]], REASON_BAD_TID, lt.filter(pa.array(tid_bad)))
        no_name = hit & ~tid_bad
        reject(rows[loose[no_name]], REASON_NO_NAME, lt.filter(pa.array(no_name)))

    # ts_ns / tid of every text row.
    ts = np.zeros(len(text), np.int64)
    tid = np.zeros(len(text), np.int32)
    id_rows = np.flatnonzero(is_id)
    if len(id_rows):
        f = m.take(pa.array(id_rows))
        t, over = parse_radix_u64(f.field("id"), 10)
        tid_bad = over | (t > np.uint64(_INT32_MAX))
        reject(rows[id_rows[tid_bad]], REASON_BAD_TID, text.take(pa.array(id_rows[tid_bad])))
        is_id[id_rows[tid_bad]] = False
        tid[id_rows] = np.where(tid_bad, 0, t).astype(np.int32)
        sec, _ = parse_radix_u64(f.field("sec"), 10)
        usec, _ = parse_radix_u64(f.field("usec"), 10)
        ts[id_rows] = (sec * np.uint64(1_000_000_000) + usec * np.uint64(1000)).view(np.int64)
    iso_rows = np.flatnonzero(is_iso)
    if len(iso_rows):
        ts[iso_rows] = _iso_ns(m.take(pa.array(iso_rows)))

    # 3. Which lines are trace records.
    unprefixed = matched & ~has_id
    accepted_names = [
        nm
        for nm in pc.unique(name.filter(pa.array(unprefixed))).to_pylist()
        if ctx.accepts_unprefixed(nm)
    ]
    accepted = unprefixed & _bool_np(pc.is_in(name, pa.array(accepted_names, pa.string())))
    record = is_id | accepted
    other = ~has_id & ~id_only & ~accepted  # ID lines are records or rejected, never other

    # 4. Catalogued events: match format variants, decode typed columns.
    catalog = ctx.options.catalog
    args = m.field("args")
    cand = np.flatnonzero(record)
    enc = pc.dictionary_encode(name.take(pa.array(cand)))
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = enc.dictionary.to_pylist()
    is_event = np.ones(len(cand), bool)
    typed_parts: list[tuple[tuple[str, int], np.ndarray, list[pa.Array], EventDef]] = []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    for k, nm in enumerate(names):
        variants = catalog.variants(nm)
        planned = [(vi, v) for vi, v in enumerate(variants) if v.plan is not None]
        if not planned:
            continue
        members = order[bounds[k] : bounds[k + 1]]  # positions in cand, ascending
        remaining = members
        for vi, v in planned:
            if not len(remaining):
                break
            ok, cols = _match_variant(args.take(pa.array(cand[remaining])), v)
            if ok.any():
                typed_parts.append(((nm, vi), cand[remaining[ok]], cols, v))
            remaining = remaining[~ok]
        if len(remaining):
            is_event[remaining] = False
            bad_rows = cand[remaining]
            reject(rows[bad_rows], reason_no_match(nm, variants), text.take(pa.array(bad_rows)))

    # 5. Assemble the tables.
    ev_pos = np.flatnonzero(is_event)
    ev = cand[ev_pos]
    ev_codes = codes[ev_pos]
    registry = ctx.registry
    lut = np.zeros(len(names), np.int32)
    present, first = np.unique(ev_codes, return_index=True)
    for code in present[np.argsort(first)]:
        lut[code] = registry.id(names[code])
    ts_valid = is_id | is_iso

    def keys(r: np.ndarray) -> list[pa.Array]:
        return [
            _nullable(ts[r], ts_valid[r], pa.int64()),
            _nullable(tid[r], is_id[r], pa.int32()),
            pa.array(lineno[rows[r]], pa.int64()),
        ]

    ts_a, tid_a, line_a = keys(ev)
    events = pa.RecordBatch.from_arrays(
        [
            ts_a,
            tid_a,
            pa.DictionaryArray.from_arrays(
                pa.array(lut[ev_codes], pa.int32()), registry.dictionary()
            ),
            line_a,
            _as_string(args.take(pa.array(ev))),
        ],
        schema=EVENTS_SCHEMA,
    )
    shape = np.where(is_id[ev], SHAPE_ID, np.where(is_iso[ev], SHAPE_ISO, SHAPE_NONE))
    shapes = Counter(
        {SHAPE_NAMES[s]: int(c) for s, c in zip(*np.unique(shape, return_counts=True), strict=True)}
    )

    typed: dict[tuple[str, int], pa.RecordBatch] = {}
    for key, r, cols, v in typed_parts:
        typed[key] = pa.RecordBatch.from_arrays(keys(r) + cols, schema=typed_schema(v))

    oth = np.flatnonzero(other)
    other_b = pa.RecordBatch.from_arrays(
        [pa.array(lineno[rows[oth]], pa.int64()), _as_string(text.take(pa.array(oth)))],
        schema=OTHER_SCHEMA,
    )

    if rej_rows:
        rr = np.concatenate(rej_rows)
        srt = pa.array(np.argsort(rr, kind="stable"))
        rejected = pa.RecordBatch.from_arrays(
            [
                pa.array(lineno[rr], pa.int64()).take(srt),
                pa.concat_arrays(rej_reasons).take(srt),
                pa.concat_arrays(rej_texts).take(srt),
            ],
            schema=REJECTED_SCHEMA,
        )
    else:
        rejected = pa.RecordBatch.from_arrays(
            [pa.array([], f.type) for f in REJECTED_SCHEMA], schema=REJECTED_SCHEMA
        )

    if ctx.options.strict and rejected.num_rows:
        raise FormatError(
            rejected.column(1)[0].as_py(), path=ctx.path, line=rejected.column(0)[0].as_py()
        )

    return Chunk(
        events=events,
        other=other_b,
        rejected=rejected,
        typed=typed,
        lines=n,
        nbytes=len(data),
        shapes=shapes,
    )
