"""Page-event files: hand-written (or generated) what-if scenarios for the replay engine.

A CSV file (header line) or JSON Lines file with one row per page event::

    # ramblock=pc.ram size=1G
    time,kind,ramblock,offset,gpa,length
    1.0,advise,,,,
    3.0,listen,,,,
    4.0,place,pc.ram,0x5000,,
    5.0,inflate,pc.ram,,0x5000,
    9.0,end,,,,

Each row is translated into the QEMU 7.2 trace lines the replay engine reads (the ``kind``
table in ``docs/synthetic.md``): ``advise`` becomes ``loadvm_postcopy_handle_advise`` plus a
``postcopy_init_range`` per RAM block, ``place`` a ``postcopy_place_page host=0x...`` of the
block's HVA, ``inflate`` a ``virtio_balloon_handle_output`` and the guest's
``virtio_balloon_set_config``, and so on. Those lines go through the log parser's block decoder
(:class:`parsers.synthetic_parquet.RecordDecoder`), so the tables are exactly what a QEMU 7.2
log of the same events gives and ``tracetool.load(file).replay()`` works unchanged.

Line numbers: a row's main event has the row's line in the file (errors and conflicts point
back to it); the other lines a row makes (helper lines) are numbered after the file's last
line, in the order they are made (row by row, each row's lines in the order of the table).
``lines`` = the file's lines + the helper lines = events + other + rejected.

Order: with a ``time`` or ``ts_ns`` column, every row needs a time and the replay orders events
by time, then line (a row's helper lines come after every row of the same time). Without one,
``ts_ns`` is null and the replay takes the events in the order of the file (helper lines right
after their row).

The whole file is read before translating (RAM blocks are announced at ADVISE, and a row may
name a block that is declared further down): memory grows with the file, not with a block.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from parsers._log_arrow import parse_radix_u64
from parsers.base import Chunk, ParseOptions
from parsers.synthetic_csv import read_rows
from parsers.synthetic_jsonl import json_objects, read_json_block
from parsers.synthetic_parquet import (
    RecordDecoder,
    Rejects,
    choose_engine,
    int_strings,
    other_batch,
    reject_binary,
    text_lines,
)
from tracetool.errors import FormatError
from tracetool.inputs import Input, iter_line_blocks

name = "page-events"
description = (
    "page-event what-if file (CSV or JSON Lines: time, kind, ramblock, offset/gpa, length)"
)
CLOCK = "the file's time (seconds) or ts_ns column, in ns; null without one (file order)"

__all__ = ["KINDS", "choose_engine", "parse", "sniff"]

#: kind -> what it stands for (see docs/synthetic.md for the lines each becomes)
KINDS: dict[str, str] = {
    "advise": "postcopy ADVISE: a new incoming migration; RAM blocks announced",
    "discard": "one discard command of the source's bitmap: a range of a block",
    "listen": "LISTEN: the postcopy window opens, the listen thread starts",
    "run": "RUN: the guest runs on the destination",
    "end": "END: the listen thread exits, incoming cleanup starts",
    "cleanup": "CLEANUP done and migration completed",
    "state_end": "STATE_END: the listen thread's last line",
    "load": "precopy page load",
    "fault": "page fault request of the destination",
    "receive": "a postcopy page arrives (in transit until its placement)",
    "place": "postcopy page placement",
    "place_zero": "postcopy zero-page placement",
    "inflate": "balloon inflate (the guest gives pages to the host)",
    "deflate": "balloon deflate (the guest takes pages back)",
}
KIND_NAMES = list(KINDS)
K = {k: i for i, k in enumerate(KIND_NAMES)}
PAGE_KINDS = ("load", "fault", "receive", "place", "place_zero")
BALLOON_KINDS = ("inflate", "deflate")
RANGE_KINDS = (*PAGE_KINDS, *BALLOON_KINDS, "discard")

COLUMNS = ("time", "ts_ns", "kind", "ramblock", "offset", "gpa", "length", "ram_size", "hva_base")

KIB4 = 4096
GIB = 1 << 30
GIB4 = 1 << 32
DEFAULT_RAM = GIB
DEFAULT_HVA = 0x7F0000000000
#: Thread ids of the synthesised lines.
MAIN, MON = 1000, 1001  # main thread (ADVISE, discards, loads, LISTEN, RUN); monitor
LISTEN0, FAULT0 = 2000, 2001  # listen and fault threads of migration m: + 10 * m
BALLOON0 = 100_000  # balloon row j: its own vCPU thread BALLOON0 + j

_NUMBER = (
    r"^\s*(?:0[xX](?P<hex>[0-9a-fA-F]+)|(?P<dec>[0-9]+))\s*(?P<unit>[kKmMgGtT](?:i?[bB])?)?\s*$"
)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = r"^\s*(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?\s*$"


# ---------------------------------------------------------------------------------------------
# Detection


def _first_lines(head: bytes) -> list[str]:
    text = head.decode("utf-8", "replace")
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _header(line: str) -> list[str]:
    row = next(csv.reader([line.lstrip("\ufeff")]), [])
    return [c.strip().lower() for c in row]


def sniff(head: bytes) -> bool:
    """A CSV header (after ``#`` lines) or first JSON object with a ``kind`` column, no
    ``event`` column, and either another page-event column (time, ts_ns, offset, gpa,
    ramblock, length) or only page-event columns (a JSON object: a known ``kind`` value)."""
    if b"\0" in head[:4096]:
        return False
    lines = _first_lines(head)
    if not lines:
        return False
    first = lines[0].strip()
    known_kind = False
    if first.startswith("{"):
        try:
            obj = json.loads(first)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        keys = {str(k).lower() for k in obj}
        kind = obj.get("kind")
        known_kind = isinstance(kind, str) and kind.strip().lower().replace("-", "_") in KINDS
    else:
        keys = set(_header(first))
    if "kind" not in keys or "event" in keys:
        return False
    others = {"time", "ts_ns", "offset", "gpa", "ramblock", "length"}
    return bool(keys & others) or keys <= set(COLUMNS) or known_kind


# ---------------------------------------------------------------------------------------------
# Numbers and text


def _bool(arr) -> np.ndarray:
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def parse_sizes(s: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte counts/addresses: decimal, ``0x`` hex, optional K/M/G/T (KiB/KB...) suffix ->
    (int64 values, present, bad). Values must stay below 2**63."""
    s = s.cast(pa.string())
    present = _bool(pc.and_(pc.is_valid(s), pc.not_equal(pc.utf8_trim_whitespace(s), "")))
    m = pc.extract_regex(s, _NUMBER)
    ok = _bool(m.is_valid())
    hexd = pc.fill_null(m.field("hex"), "")
    decd = pc.fill_null(m.field("dec"), "")
    hv, hover = parse_radix_u64(hexd, 16)
    dv, dover = parse_radix_u64(decd, 10)
    is_hex = _bool(pc.not_equal(hexd, ""))
    val = np.where(is_hex, hv, dv)
    over = np.where(is_hex, hover, dover)
    unit = pc.utf8_lower(pc.utf8_slice_codeunits(pc.fill_null(m.field("unit"), ""), 0, 1))
    mult = np.ones(len(s), np.uint64)
    for u, f in _UNITS.items():
        if f > 1:
            mult[_bool(pc.equal(unit, u))] = np.uint64(f)
    limit = np.uint64((1 << 63) - 1)
    over |= val > limit // np.maximum(mult, np.uint64(1))
    val = np.where(over, np.uint64(0), val * mult)
    bad = present & (~ok | over)
    return np.where(bad | ~present, 0, val).astype(np.int64), present & ~bad, bad


def parse_seconds(s: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds (``12``, ``1.000005``, ``-0.5``, ``1e-3``) -> (int64 ns, present, bad). Decimal
    text is converted exactly (digits past the 9th are dropped); exponent forms via float."""
    s = s.cast(pa.string())
    s = pc.utf8_trim_whitespace(s)
    present = _bool(pc.and_(pc.is_valid(s), pc.not_equal(s, "")))
    m = pc.extract_regex(s, _SECONDS)
    ok = _bool(m.is_valid())
    ip = pc.fill_null(m.field("int"), "")
    fp = pc.fill_null(m.field("frac"), "")
    ok &= _bool(pc.or_(pc.not_equal(ip, ""), pc.not_equal(fp, "")))
    iv, iover = parse_radix_u64(pc.if_else(pa.array(ok), ip, ""), 10)
    frac9 = pc.utf8_slice_codeunits(pc.utf8_rpad(fp, 9, "0"), 0, 9)
    fv, _ = parse_radix_u64(pc.if_else(pa.array(ok), frac9, ""), 10)
    iover |= iv > np.uint64(9_000_000_000)
    ns = (np.where(iover, 0, iv) * np.uint64(1_000_000_000) + fv).astype(np.int64)
    neg = _bool(pc.equal(pc.fill_null(m.field("sign"), ""), "-"))
    ns = np.where(neg, -ns, ns)
    good = ok & ~iover
    # exponent forms (1e-05 from JSON numbers): float
    rest = np.flatnonzero(present & ~good)
    bad = present & ~good
    if len(rest):
        sub = s.take(pa.array(rest))
        isnum = _bool(pc.match_substring_regex(sub, r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$"))
        if isnum.any():
            f = pc.cast(sub.filter(pa.array(isnum)), pa.float64()).to_numpy(zero_copy_only=False)
            fine = np.isfinite(f) & (np.abs(f) < 9e9)
            idx = rest[isnum][fine]
            ns[idx] = np.round(f[fine] * 1e9).astype(np.int64)
            bad[idx] = False
    return np.where(present & ~bad, ns, 0), present & ~bad, bad


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _digits_array(digits: np.ndarray, ndig: np.ndarray, prefix: bytes = b"") -> pa.Array:
    """Rows of a (n, w) digit-character matrix (right-aligned), keeping the last ``ndig`` of
    each row, as a string array, each value preceded by ``prefix``."""
    n, w = digits.shape
    keep = np.arange(w)[None, :] >= (w - ndig)[:, None]
    if prefix:
        pre = np.frombuffer(prefix, np.uint8)
        digits = np.concatenate([np.broadcast_to(pre, (n, len(pre))), digits], axis=1)
        keep = np.concatenate([np.ones((n, len(pre)), bool), keep], axis=1)
    data = digits[keep]
    lengths = ndig + len(prefix)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def fmt_hex(values: np.ndarray, prefix: str = "0x") -> pa.Array:
    """uint64 values as ``0x``-prefixed lower-case hex (like ``%#lx``; ``0x0`` for zero)."""
    v = np.asarray(values).astype(np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nib = ((v[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.intp)
    nz = nib != 0
    ndig = np.where(nz.any(axis=1), 16 - np.argmax(nz, axis=1), 1)
    return _digits_array(_HEX[nib], ndig, prefix.encode())


def fmt_dec(values: np.ndarray) -> pa.Array:
    """Non-negative integers as decimal text."""
    v = np.asarray(values).astype(np.uint64)
    pw = np.array([10**k for k in range(19, -1, -1)], np.uint64)
    dig = ((v[:, None] // pw[None, :]) % np.uint64(10)).astype(np.uint8)
    nz = dig != 0
    ndig = np.where(nz.any(axis=1), 20 - np.argmax(nz, axis=1), 1)
    return _digits_array(dig + ord("0"), ndig)


def join(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and Python strings."""
    arrays = [p if isinstance(p, pa.Array) else pa.scalar(p, pa.string()) for p in parts]
    return pc.binary_join_element_wise(*arrays, pa.scalar("", pa.string()))


# ---------------------------------------------------------------------------------------------
# Reading the rows


def _read_json_rows(lines: pa.Array, wanted: set[str]) -> tuple[dict, np.ndarray, list[str]]:
    """JSON-object lines -> ({column: text array}, good mask, reasons of bad lines).

    Values may be numbers or text (``"0x5000"``); every column is returned as text."""
    n = len(lines)
    table = read_json_block(lines, pajson.ParseOptions(newlines_in_values=False))
    if table is not None:
        cols = {}
        lower = {c.lower(): c for c in table.column_names}
        simple = True
        for key in wanted & set(lower):
            col = table.column(lower[key]).combine_chunks()
            t = col.type
            if pa.types.is_null(t):
                col = pa.nulls(n, pa.string())
            elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)):
                simple = False
                break
            cols[key] = col.cast(pa.string())
        if simple:
            return cols, np.ones(n, bool), []
    values: dict[str, list] = {k: [] for k in wanted}
    good = np.ones(n, bool)
    reasons: list[str] = []
    for i, obj, why in json_objects(lines):
        if obj is None:
            good[i] = False
            reasons.append(why)
            for key in wanted:
                values[key].append(None)
            continue
        obj = {str(k).lower(): v for k, v in obj.items()}
        row = {}
        reason = None
        for key in wanted:
            v = obj.get(key)
            if v is None or isinstance(v, str):
                row[key] = v
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                reason = f"column {key}: expected a number or text, got {json.dumps(v)[:40]}"
                break
            else:
                row[key] = repr(v) if isinstance(v, float) else str(v)
        if reason is not None:
            good[i] = False
            reasons.append(reason)
            row = {}
        for key in wanted:
            values[key].append(row.get(key))
    present = {k for k in wanted if any(v is not None for v in values[k])}
    cols = {k: pa.array(values[k], pa.string()) for k in present}
    return cols, good, reasons


@dataclass
class Directives:
    """``#`` header lines: RAM blocks, page size, QEMU version."""

    blocks: dict[str, dict] = field(default_factory=dict)  # name -> {size, hva, line}
    page_size: int = KIB4
    qemu_version: tuple[int, int, int] | None = None


def _size(text: str) -> int:
    v, ok, bad = parse_sizes(pa.array([text]))
    if not ok[0]:
        raise ValueError(f"{text!r} is not a size (decimal, 0x hex, optional K/M/G/T)")
    return int(v[0])


DIRECTIVE_KEYS = ("ramblock", "ram_size", "page_size", "qemu_version")


def _directive(text: str, d: Directives, line: int) -> str | None:
    """Apply one ``#`` line; None if it is a plain comment, '' if applied, else a reason."""
    body = text.lstrip()[1:].strip()
    tokens = body.split()
    if not tokens or re.split(r"[=:]", tokens[0], maxsplit=1)[0].lower() not in DIRECTIVE_KEYS:
        return None
    kv: dict[str, str] = {}
    for tok in tokens:
        if "=" not in tok:
            return f"directive: expected key=value, got {tok!r}"
        k, v = tok.split("=", 1)
        kv[k.lower()] = v
    try:
        if "ram_size" in kv:
            kv = {"ramblock": "pc.ram", "size": kv.pop("ram_size"), **kv}
        if "ramblock" in kv:
            bname = kv.pop("ramblock")
            if not bname or re.search(r"\s", bname):
                return f"directive: bad RAM block name {bname!r}"
            entry = {
                "size": _size(kv.pop("size")) if "size" in kv else None,
                "hva": _size(kv.pop("hva")) if "hva" in kv else None,
                "line": line,
            }
            if entry["size"] is not None and (entry["size"] <= 0 or entry["size"] % KIB4):
                return "directive: a RAM block size is a positive multiple of 4 KiB"
            old = d.blocks.get(bname)
            if old is not None and any(
                entry[k] is not None and old[k] is not None and entry[k] != old[k]
                for k in ("size", "hva")
            ):
                return f"directive: {bname} was declared differently on line {old['line']}"
            if old is not None:
                for k in ("size", "hva"):
                    old[k] = old[k] if entry[k] is None else entry[k]
            else:
                d.blocks[bname] = entry
        if "page_size" in kv:
            ps = _size(kv.pop("page_size"))
            if ps < KIB4 or ps & (ps - 1):
                return "directive: page_size is a power of two of at least 4 KiB"
            d.page_size = ps
        if "qemu_version" in kv:
            m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", kv.pop("qemu_version"))
            if not m:
                return "directive: qemu_version is MAJOR.MINOR[.MICRO]"
            d.qemu_version = (int(m[1]), int(m[2]), int(m[3] or 0))
    except ValueError as exc:
        return f"directive: {exc}"
    if kv:
        return f"directive: unknown key {sorted(kv)[0]!r} (known: {', '.join(DIRECTIVE_KEYS)}, size, hva)"
    return ""


# ---------------------------------------------------------------------------------------------
# Translation


@dataclass
class _Lines:
    """Synthesised log lines under construction (one entry per group of lines)."""

    row: list[np.ndarray] = field(default_factory=list)  # index of the row that made it
    sub: list[np.ndarray] = field(default_factory=list)  # its position among that row's lines
    main: list[np.ndarray] = field(default_factory=list)  # the row's main event?
    event: list[pa.Array] = field(default_factory=list)
    args: list[pa.Array] = field(default_factory=list)
    tid: list[np.ndarray] = field(default_factory=list)

    def add(self, row, sub, event: str, args, tid, main: bool = False) -> None:
        row = np.asarray(row, np.int64)
        n = len(row)
        if not n:
            return
        self.row.append(row)
        self.sub.append(np.broadcast_to(np.asarray(sub, np.int64), (n,)).copy())
        self.main.append(np.full(n, main))
        self.event.append(pa.repeat(pa.scalar(event), n))
        if isinstance(args, str):
            args = pa.repeat(pa.scalar(args), n)
        self.args.append(args.cast(pa.string()))
        self.tid.append(np.broadcast_to(np.asarray(tid, np.int64), (n,)).astype(np.int32))


def parse(inp: Input, options: ParseOptions) -> Iterator[Chunk]:
    """Read the whole file, translate every row, yield the chunks of the decoded lines."""
    data = b"".join(bytes(b) for b, _ in iter_line_blocks(inp, options.block_size))
    dec = RecordDecoder(options, inp.name, len(data) * 4, "page events")
    text, ok = text_lines(data)
    n_lines = len(text)
    lineno = np.arange(1, n_lines + 1, dtype=np.int64)
    rejects = Rejects()
    reject_binary(text, ok, lineno, rejects)
    blank = ok & ~_bool(pc.match_substring_regex(text, r"\S"))
    comment = ok & _bool(pc.match_substring_regex(text, r"^\s*#"))

    # Directives (a loop over the # lines only).
    d = Directives()
    other = blank | comment
    for i in np.flatnonzero(comment):
        reason = _directive(text[int(i)].as_py(), d, int(lineno[i]))
        if reason:
            other[i] = False
            rejects.add(lineno[[i]], reason, text.take(pa.array([i])))

    # Rows.
    cand = np.flatnonzero(ok & ~blank & ~comment)
    if not len(cand):
        yield dec.chunk(
            pa.array([], pa.string()), pa.array([], pa.string()), pa.array([], pa.int64()),
            pa.array([], pa.int32()), np.zeros(0, np.int64), rejects=rejects,
            other=other_batch(lineno[other], text.filter(pa.array(other))), nbytes=len(data),
        )  # fmt: skip
        return
    first_text = text[int(cand[0])].as_py().strip()
    is_json = first_text.startswith("{")
    if is_json:
        rows = cand
        row_text = text.take(pa.array(rows))
        cols, good, reasons = _read_json_rows(row_text, set(COLUMNS))
    else:
        other[cand[0]] = True  # the CSV header
        names = _header(first_text)
        rows = cand[1:]
        row_text = text.take(pa.array(rows))
        wanted = [c for c in COLUMNS if c in names]
        if "kind" not in names:
            raise FormatError(
                f"page-event header without a 'kind' column: {first_text!r}",
                path=inp.name,
                line=int(lineno[cand[0]]),
            )
        raw_names = next(csv.reader([text[int(cand[0])].as_py().lstrip("\ufeff")]), [])
        raw_wanted = [raw_names[names.index(c)] for c in wanted]
        try:
            if len(rows):
                table, bad = read_rows(row_text, raw_names, raw_wanted)
            else:
                table, bad = pa.table({c: pa.array([], pa.string()) for c in raw_wanted}), []
        except FormatError as exc:
            exc.path, exc.line = inp.name, int(lineno[rows[0]]) if len(rows) else None
            raise
        cols = {
            c: table.column(rc).combine_chunks() for c, rc in zip(wanted, raw_wanted, strict=True)
        }
        good = np.ones(len(rows), bool)
        reasons = []
        if bad:
            idx = np.array([i for i, _ in bad], np.int64)
            good[idx] = False
            reasons = [r for _, r in sorted(bad)]
            full = {}
            for c in wanted:  # re-align: read_rows dropped the bad rows
                col = np.full(len(rows), None, object)
                col[good] = np.asarray(cols[c].to_pylist(), object)
                full[c] = pa.array(col.tolist(), pa.string())
            cols = full
    rowno = np.arange(1, len(rows) + 1, dtype=np.int64)  # data row numbers
    if (~good).any():
        rejects.add(
            lineno[rows[~good]],
            [f"row {r}: {why}" for r, why in zip(rowno[~good], reasons, strict=True)],
            row_text.filter(pa.array(~good)),
        )
    nrow = len(rows)
    bad = ~good
    why: list[tuple[np.ndarray, list[str] | str]] = []

    def fail(mask: np.ndarray, reason) -> None:
        """Reject the rows of ``mask`` not rejected yet; ``reason``: text or f(rows)->texts."""
        m = mask & ~bad
        if m.any():
            why.append((m.copy(), reason))
            bad[m] = True

    def col(name_: str) -> pa.Array:
        return cols.get(name_, pa.nulls(nrow, pa.string()))

    # kind
    kind_txt = pc.replace_substring(pc.utf8_lower(pc.utf8_trim_whitespace(col("kind"))), "-", "_")
    kind = (
        pc.index_in(kind_txt, value_set=pa.array(KIND_NAMES))
        .fill_null(-1)
        .to_numpy(zero_copy_only=False)
    )
    kinds_list = ", ".join(KIND_NAMES)
    fail(kind < 0, lambda r: [
        f"column kind: {'missing' if not v else repr(v) + ' is not a page-event kind'}"
        f" (expected one of {kinds_list})" for v in kind_txt.take(pa.array(r)).to_pylist()
    ])  # fmt: skip

    # time
    has_time = "time" in cols or "ts_ns" in cols
    ts = np.zeros(nrow, np.int64)
    if has_time:
        tv, tp, tb = int_strings(col("ts_ns"))
        sv, sp, sb = parse_seconds(col("time"))
        fail(tb, "column ts_ns: not an integer (nanoseconds)")
        fail(sb & ~tp, "column time: not a number of seconds")
        fail(
            ~tp & ~sp,
            "column time (or ts_ns): missing (every row needs a time when the file has times)",
        )
        ts = np.where(tp, tv, sv)

    # block, numbers
    rb = pc.fill_null(pc.utf8_trim_whitespace(col("ramblock")), "")
    rb = pc.if_else(pc.equal(rb, ""), "pc.ram", rb)
    fail(_bool(pc.match_substring_regex(rb, r"\s")) & np.isin(kind, [K[k] for k in RANGE_KINDS]),
         "column ramblock: a RAM block name has no white space")  # fmt: skip
    nums = {}
    for c in ("offset", "gpa", "length", "ram_size", "hva_base"):
        v, p, b = parse_sizes(col(c))
        fail(b, f"column {c}: not a number (decimal or 0x hex, optional K/M/G/T suffix)")
        nums[c] = (v, p)
    off_v, off_p = nums["offset"]
    gpa_v, gpa_p = nums["gpa"]
    len_v, len_p = nums["length"]
    needs_addr = np.isin(kind, [K[k] for k in RANGE_KINDS])
    fail(needs_addr & off_p & gpa_p, "columns offset and gpa: give one, not both")
    fail(needs_addr & ~off_p & ~gpa_p, lambda r: [
        f"column offset (or gpa): required for {KIND_NAMES[kind[i]]}" for i in r
    ])  # fmt: skip

    # RAM blocks: directives first, then the first row value of each block, then defaults.
    page = d.page_size
    rb_enc = pc.dictionary_encode(rb)
    rb_names = rb_enc.dictionary.to_pylist()
    rb_id = rb_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    used = needs_addr & ~bad
    order = list(d.blocks)

    def first_rows(mask: np.ndarray) -> dict[str, int]:
        """Block name -> first row of ``mask`` naming it (in file order)."""
        r = np.flatnonzero(mask)
        ids, first = np.unique(rb_id[r], return_index=True)
        return {rb_names[i]: int(r[f]) for i, f in zip(ids, first, strict=True)}

    first_use = first_rows(used)
    for bname in sorted(first_use, key=first_use.get):
        if bname not in d.blocks:
            order.append(bname)
            d.blocks[bname] = {"size": None, "hva": None, "line": 0}
    for key, field_ in (("ram_size", "size"), ("hva_base", "hva")):
        v, p = nums[key]
        for bname, r in first_rows(p & ~bad).items():
            e = d.blocks.get(bname)
            if e is not None and e[field_] is None:
                e[field_] = int(v[r])
    for bname in order:
        e = d.blocks[bname]
        if e["size"] is None:
            e["size"] = DEFAULT_RAM
    cursor = max(
        [DEFAULT_HVA]
        + [
            -(-(e["hva"] + e["size"]) // GIB) * GIB
            for e in d.blocks.values()
            if e["hva"] is not None
        ]
    )
    ram_addr = 0
    for bname in order:
        e = d.blocks[bname]
        if e["hva"] is None:
            e["hva"] = cursor
            cursor += -(-e["size"] // GIB) * GIB
        e["ram_addr"] = ram_addr
        ram_addr += e["size"]
    bsize = np.array([d.blocks.get(nm, {"size": 0})["size"] for nm in rb_names] or [0], np.int64)
    bhva = np.array([d.blocks.get(nm, {"hva": 0})["hva"] for nm in rb_names] or [0], np.int64)
    for key, arr in (("ram_size", bsize), ("hva_base", bhva)):
        v, p = nums[key]
        fail(p & (v != arr[rb_id]), lambda r, key=key, arr=arr, v=v: [
            f"column {key}: {hex(int(v[i]))} disagrees with {rb_names[rb_id[i]]}'s "
            f"{hex(int(arr[rb_id[i]]))} (declared in a '#' line or on an earlier row)" for i in r
        ])  # fmt: skip

    # Addresses: offset <-> gpa (x86 pc.ram rule, identity for other blocks).
    is_pcram = np.array([nm == "pc.ram" for nm in rb_names] or [False])[rb_id]
    size = bsize[rb_id]
    low = np.where(is_pcram, np.where(size < 0xB0000000, size, 0x80000000), size)
    high_end = GIB4 + (size - low)
    offset = off_v.copy()
    g_low = gpa_p & (gpa_v < low)
    g_high = gpa_p & is_pcram & (size > low) & (gpa_v >= GIB4) & (gpa_v < high_end)
    offset[g_low] = gpa_v[g_low]
    offset[g_high] = gpa_v[g_high] - GIB4 + low[g_high]

    def gpa_map(i: int) -> str:
        if not is_pcram[i]:
            return f"GPA = block offset, below {hex(int(size[i]))}"
        text = f"x86 map of a {size[i] >> 20} MiB pc.ram: 0x0-{hex(int(low[i]))}"
        return text + (f", 0x100000000-{hex(int(high_end[i]))}" if size[i] > low[i] else "")

    fail(needs_addr & gpa_p & ~g_low & ~g_high, lambda r: [
        f"column gpa: {hex(int(gpa_v[i]))} is outside {rb_names[rb_id[i]]} ({gpa_map(i)})"
        for i in r
    ])  # fmt: skip
    is_balloon = np.isin(kind, [K["inflate"], K["deflate"]])
    is_page = np.isin(kind, [K[k] for k in PAGE_KINDS])
    unit = np.where(is_balloon, KIB4, page)
    length = np.where(len_p, len_v, unit)
    fail(needs_addr & len_p & (len_v <= 0), "column length: must be positive")
    fail((is_balloon | is_page) & (length % unit != 0), lambda r: [
        f"column length: {hex(int(length[i]))} is not a multiple of "
        f"{'4 KiB (a balloon request)' if is_balloon[i] else f'the page size {hex(page)}'}" for i in r
    ])  # fmt: skip
    fail((is_balloon | is_page) & (offset % unit != 0), lambda r: [
        f"column {'gpa' if gpa_p[i] else 'offset'}: {hex(int(gpa_v[i] if gpa_p[i] else offset[i]))}"
        f" is not aligned to {'4 KiB' if is_balloon[i] else hex(page)}" for i in r
    ])  # fmt: skip
    fail((kind == K["receive"]) & (length != page), "column length: a receive is one page")
    fail(needs_addr & (offset + length > size), lambda r: [
        f"column {'gpa' if gpa_p[i] else 'offset'}: {hex(int(offset[i]))} + length "
        f"{hex(int(length[i]))} is beyond the end of {rb_names[rb_id[i]]} (size {hex(int(size[i]))};"
        f" declare it with '# ramblock={rb_names[rb_id[i]]} size=...' or a ram_size column)" for i in r
    ])  # fmt: skip

    for mask, reason in why:
        r = np.flatnonzero(mask)
        texts = reason if isinstance(reason, str) else reason(r)
        if isinstance(texts, str):
            texts = [texts] * len(r)
        rejects.add(
            lineno[rows[r]],
            [f"row {int(rowno[i])}: {t}" for i, t in zip(r, texts, strict=True)],
            row_text.take(pa.array(r)),
        )

    # ---- synthesise the lines of the good rows -------------------------------------------
    good_rows = np.flatnonzero(~bad)
    L = _Lines()
    gk = kind[good_rows]
    is_advise = kind == K["advise"]
    mig = np.maximum(np.cumsum(is_advise & ~bad) - 1, 0)
    lt = LISTEN0 + 10 * mig
    ft = FAULT0 + 10 * mig

    def rows_of(k: str) -> np.ndarray:
        return good_rows[gk == K[k]]

    def names_of(r: np.ndarray) -> pa.Array:
        return rb.take(pa.array(r))

    for k, event, args, tidsrc in (
        ("advise", "loadvm_postcopy_handle_advise", "", "main"),
        ("listen", "loadvm_postcopy_handle_listen", "enter", "main"),
        ("run", "loadvm_postcopy_handle_run", "", "main"),
        ("end", "postcopy_ram_listen_thread_exit", "", "lt"),
        ("cleanup", "postcopy_ram_incoming_cleanup_exit", "", "lt"),
        ("state_end", "loadvm_state_cleanup", "", "lt"),
        ("discard", "loadvm_postcopy_ram_handle_discard", "", "main"),
    ):
        r = rows_of(k)
        L.add(r, 0, event, args, MAIN if tidsrc == "main" else lt[r], main=True)
    r = rows_of("listen")
    L.add(r, 1, "postcopy_ram_listen_thread_start", "", lt[r])
    L.add(r, 2, "migrate_set_state", "new state postcopy-active", lt[r])
    r = rows_of("end")
    L.add(r, 1, "postcopy_ram_incoming_cleanup_entry", "", lt[r])
    r = rows_of("cleanup")
    L.add(r, 1, "migrate_set_state", "new state completed", lt[r])
    r = rows_of("discard")
    L.add(r, 1, "ram_discard_range",
          join(names_of(r), ": start: ", fmt_hex(offset[r], ""), " ", fmt_hex(length[r], "")), MAIN)  # fmt: skip

    # Balloon rows: a vCPU thread each (BALLOON0 + j), so that the set_config after a row's
    # requests is the next one on their thread whatever the line numbers.
    brow = good_rows[np.isin(gk, [K["inflate"], K["deflate"]])]
    btid = np.full(nrow, -1, np.int64)
    btid[brow] = BALLOON0 + np.arange(len(brow))

    # Page rows: one line per page (the first is the row's main event).
    for k, event in (
        ("load", "ram_load_loop"),
        ("fault", "postcopy_ram_fault_thread_request"),
        ("receive", "ram_load_postcopy_loop"),
        ("place", "postcopy_place_page"),
        ("place_zero", "postcopy_place_page_zero"),
        ("inflate", "virtio_balloon_handle_output"),
        ("deflate", "virtio_balloon_handle_output"),
    ):
        r = rows_of(k)
        if not len(r):
            continue
        u = unit[r]
        npg = length[r] // u
        rr = np.repeat(r, npg)
        kk = np.arange(len(rr)) - np.repeat(np.cumsum(npg) - npg, npg)
        off = offset[rr] + kk * unit[rr]
        hva = bhva[rb_id[rr]] + off
        nm = names_of(rr)
        if k == "load":
            args = join(nm, ": addr: ", fmt_hex(off), " flags: 0x8 host: ", fmt_hex(hva))
            tid = MAIN
        elif k == "fault":
            args = join(
                "Request for HVA=", fmt_hex(hva), " rb=", nm, " offset=", fmt_hex(off), " pid=0"
            )
            tid = ft[rr]
        elif k == "receive":
            args = join("chan=0 addr=", fmt_hex(off), " flags=0x8")
            tid = lt[rr]
        elif k in ("place", "place_zero"):
            args = join("host=", fmt_hex(hva))
            tid = lt[rr]
        else:
            g = np.where(is_pcram[rr] & (off >= low[rr]), off - low[rr] + GIB4, off)
            args = join("section name: ", nm, " gpa: ", fmt_hex(g))
            tid = btid[rr]
        main = kk == 0
        tid = np.broadcast_to(np.asarray(tid, np.int64), (len(rr),))
        for flag in (True, False):
            sel = np.flatnonzero(main == flag)
            L.add(rr[sel], kk[sel], event, args.take(pa.array(sel)), tid[sel], main=flag)

    # Balloon rows: after their requests, the guest's set_config moving `actual` by the row's
    # page count (the direction evidence the replay reads); `actual` starts at the number of
    # deflated pages of the file so that it never goes below 0.
    if len(brow):
        sign = np.where(kind[brow] == K["inflate"], 1, -1)
        pages = length[brow] // KIB4
        delta = sign * pages
        after = int(pages[sign < 0].sum()) + np.cumsum(delta)
        before = after - delta
        L.add(brow, pages, "virtio_balloon_set_config",
              join("actual: ", fmt_dec(after), " oldactual: ", fmt_dec(before)), btid[brow])  # fmt: skip

    # RAM blocks announced at every ADVISE (at the first row if there is none); the QEMU
    # version of a '# qemu_version=' line with the first row.
    announce = rows_of("advise")
    if not len(announce) and len(good_rows):
        announce = good_rows[:1]
    big = np.int64(1) << np.int64(40)
    for j, bname in enumerate(order):
        e = d.blocks[bname]
        a = f"{bname}: {e['hva']:#x} offset={e['ram_addr']:#x} length={e['size']:#x}"
        L.add(announce, big + j, "postcopy_init_range", a, MAIN)
    if d.qemu_version is not None and len(good_rows):
        ma, mi, mc = d.qemu_version
        reply = f'{{"qemu": {{"micro": {mc}, "minor": {mi}, "major": {ma}}}, "package": ""}} 1'
        L.add(good_rows[:1], 2 * big, "qmp_exit_query_version", reply, MON)

    # Emission order, line numbers, times.
    if L.row:
        row_i = np.concatenate(L.row)
        sub = np.concatenate(L.sub)
        main = np.concatenate(L.main)
        srt = np.lexsort((sub, row_i))
        row_i, main = row_i[srt], main[srt]
        take = pa.array(srt)
        events = pa.concat_arrays(L.event).take(take)
        args = pa.concat_arrays(L.args).take(take)
        tids = np.concatenate(L.tid)[srt]
        helper = ~main
        line = np.where(main, lineno[rows[row_i]], 0)
        line[helper] = n_lines + 1 + np.arange(int(helper.sum()))
        ts_a = pa.array(ts[row_i], pa.int64()) if has_time else pa.nulls(len(row_i), pa.int64())
        texts = pc.binary_join_element_wise(events, args, " ")
    else:
        events = args = texts = pa.array([], pa.string())
        tids = np.zeros(0, np.int32)
        line = np.zeros(0, np.int64)
        ts_a = pa.array([], pa.int64())
    yield dec.chunk(
        events,
        args,
        ts_a,
        pa.array(tids, pa.int32()),
        line,
        texts=texts,
        rejects=rejects,
        other=other_batch(lineno[other], text.filter(pa.array(other))),
        nbytes=len(data),
    )
