"""simpletrace binaries: writer -> reader round trips, damage, printf rendering, the real capture.

The oracle tests read the shared QEMU 7.2 capture ``d-simpletrace-balloon-during-postcopy`` (both
the simple and the log backend were compiled in, so every event is in both files) and skip when
it is not laid out.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import gzip
import io
import re
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracetool
from parsers import simpletrace as ST
from parsers._log_common import LogContext, wrap_int
from parsers.base import ParseOptions
from tests.conftest import shared_trace
from tracetool.catalog import ArgKind, Catalog, Conv, parse_trace_events
from tracetool.catalog.render import format_specs, render_args
from tracetool.errors import FormatError, InputError, TracetoolError
from tracetool.inputs import Input
from tracetool.simpletrace_write import DROPPED_EVENT_ID, SimpletraceWriter

CAPTURE = "d-simpletrace-balloon-during-postcopy"

EVENTS_TEXT = """\
postcopy_place_page(void *host_addr) "host=%p"
virtio_balloon_handle_output(const char *name, uint64_t gpa) "section name: %s gpa: 0x%" PRIx64
ram_load_postcopy_loop(int channel, uint64_t addr, int flags) "chan=%d addr=0x%" PRIx64 " flags=0x%x"
runstate_set(int current_state, const char *current_state_str, int new_state, const char *new_state_str) "current_run_state %d (%s) new_state %d (%s)"
disable vm_stop_flush_all(int ret) "ret %d"
migrate_set_state(const char *new_state) "new state %s"
balloon_event(void *opaque, unsigned long addr) "opaque %p addr %lu"
postcopy_ram_enable_notify(void) ""
"""


def catalog() -> Catalog:
    return Catalog(parse_trace_events(EVENTS_TEXT, "test.trace-events"))


ENGINES = ["arrow", "numba"]


def _engine_ok(engine: str) -> None:
    if engine == "numba":
        from parsers import _numba_setup

        if not _numba_setup.available():
            pytest.skip(f"numba unavailable: {_numba_setup.UNAVAILABLE}")


def parse_bytes(data: bytes, *, engine="arrow", strict=False, cat=None, block_size=16 << 20):
    inp = Input("<mem>", io.BytesIO(data), None, io.BytesIO(data), len(data))
    opts = ParseOptions(
        catalog=cat or catalog(), strict=strict, engine=engine, block_size=block_size
    )
    return list(ST.parse(inp, opts))


def tables(chunks):
    ev = pa.Table.from_batches([c.events for c in chunks]).unify_dictionaries()
    other = pa.Table.from_batches([c.other for c in chunks])
    rej = pa.Table.from_batches([c.rejected for c in chunks])
    typed = defaultdict(list)
    for c in chunks:
        for k, b in c.typed.items():
            typed[k[0]].extend(b.to_pylist())
        assert c.lines == c.events.num_rows + c.other.num_rows + c.rejected.num_rows
    return ev, other, rej, typed


def ids_for(version: int, names: list[str]) -> dict[str, int]:
    """Event ids: v4 any (mapping records); v2/v3 the position in the trace-events file."""
    order = catalog().order
    if version < 4:
        return {n: order.index(n) for n in names}
    return {n: 100 + 7 * i for i, n in enumerate(names)}


def sample_file(version: int, byteorder: str) -> tuple[bytes, list[tuple[str, str]]]:
    """A small trace with strings, a NULL string, a mid-file mapping, a dropped record."""
    names = [
        "postcopy_place_page",
        "virtio_balloon_handle_output",
        "ram_load_postcopy_loop",
        "runstate_set",
        "balloon_event",
        "postcopy_ram_enable_notify",
    ]
    ids = ids_for(version, names)
    out = io.BytesIO()
    w = SimpletraceWriter(out, version=version, byteorder=byteorder, pid=4242)
    w.header()
    if version >= 4:
        for n in names[:4]:
            w.mapping(ids[n], n)
    w.record(ids["postcopy_place_page"], 1000, [0x7F0000001000])
    w.record(ids["virtio_balloon_handle_output"], 1010, [b"pc.ram", 0x3D7BC000])
    w.record(ids["ram_load_postcopy_loop"], 1020, [0, 0x1FF7F000, 0x22])
    w.record(ids["ram_load_postcopy_loop"], 1021, [-1, 2**64 - 1, -1])
    w.records(
        ids["virtio_balloon_handle_output"],
        np.arange(1030, 1034),
        [np.array([b"pc.ram", None, "vga.vram", b"x" * 600], object), np.arange(4) * 4096],
    )
    w.dropped(1040, 17)
    w.record(ids["runstate_set"], 1050, [6, "prelaunch", 9, "running"], pid=0)
    if version >= 4:
        w.mapping(ids["balloon_event"], "balloon_event")  # a module loaded late
        w.mapping(ids["postcopy_ram_enable_notify"], "postcopy_ram_enable_notify")
    w.record(ids["balloon_event"], 1060, [0, 1234567])
    w.records(ids["postcopy_ram_enable_notify"], [1070, 1071], [])
    w.records(ids["postcopy_place_page"], [1080, 1081], [np.array([0, 0x1000], np.uint64)])
    expected = [
        ("postcopy_place_page", "host=0x7f0000001000"),
        ("virtio_balloon_handle_output", "section name: pc.ram gpa: 0x3d7bc000"),
        ("ram_load_postcopy_loop", "chan=0 addr=0x1ff7f000 flags=0x22"),
        ("ram_load_postcopy_loop", "chan=-1 addr=0xffffffffffffffff flags=0xffffffff"),
        ("virtio_balloon_handle_output", "section name: pc.ram gpa: 0x0"),
        ("virtio_balloon_handle_output", "section name: (null) gpa: 0x1000"),
        ("virtio_balloon_handle_output", "section name: vga.vram gpa: 0x2000"),
        ("virtio_balloon_handle_output", f"section name: {'x' * 512} gpa: 0x3000"),
        ("dropped", "num_events_dropped=17"),
        ("runstate_set", "current_run_state 6 (prelaunch) new_state 9 (running)"),
        ("balloon_event", "opaque (nil) addr 1234567"),
        ("postcopy_ram_enable_notify", ""),
        ("postcopy_ram_enable_notify", ""),
        ("postcopy_place_page", "host=(nil)"),
        ("postcopy_place_page", "host=0x1000"),
    ]
    return out.getvalue(), expected


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("version", [2, 3, 4])
def test_round_trip(version, byteorder, engine):
    _engine_ok(engine)
    data, expected = sample_file(version, byteorder)
    for block_size in (16 << 20, 100):  # one block, and records split across many blocks
        chunks = parse_bytes(data, engine=engine, block_size=block_size)
        ev, other, rej, typed = tables(chunks)
        assert rej.num_rows == 0
        got = list(zip(ev["event"].to_pylist(), ev["args"].to_pylist(), strict=True))
        assert got == expected
        nmap = 6 if version >= 4 else 0
        assert other.num_rows == 1 + nmap
        assert other["text"][0].as_py() == f"header: simpletrace v{version}, {byteorder}-endian"
        if version >= 4:
            assert "mapping 100 = postcopy_place_page" in other["text"].to_pylist()
        # line = record number, every record counted (header = 1)
        lines = sorted(ev["line"].to_pylist() + other["line"].to_pylist())
        assert lines == list(range(1, len(lines) + 1))
        assert ev["ts_ns"].to_pylist() == [
            1000, 1010, 1020, 1021, 1030, 1031, 1032, 1033, 1040, 1050, 1060, 1070, 1071,
            1080, 1081,
        ]  # fmt: skip
        tids = ev["tid"].to_pylist()
        if version == 2:
            assert tids == [None] * len(tids)  # v2 has no pid field
        else:
            assert tids[0] == 4242 and tids[9] == 0
        assert sum(getattr(c, "dropped_events", 0) for c in chunks) == 17
        assert typed["dropped"] == [
            {"ts_ns": 1040, "tid": None if version == 2 else 4242, "line": typed["dropped"][0]["line"],
             "num_events_dropped": 17}
        ]  # fmt: skip
        loop = typed["ram_load_postcopy_loop"]
        assert [(r["channel"], r["addr"], r["flags"]) for r in loop] == [
            (0, 0x1FF7F000, 0x22),
            (-1, 2**64 - 1, -1),
        ]
        names = [r["name"] for r in typed["virtio_balloon_handle_output"]]
        assert names == ["pc.ram", "pc.ram", None, "vga.vram", "x" * 512]
        assert typed["runstate_set"][0]["new_state_str"] == "running"


def test_engines_agree_on_the_sample():
    _engine_ok("numba")
    data, _ = sample_file(4, "big")
    a = tables(parse_bytes(data, engine="arrow"))
    b = tables(parse_bytes(data, engine="numba"))
    for x, y in zip(a[:3], b[:3], strict=True):
        assert x.equals(y)
    assert a[3] == b[3]


ODD_EVENTS = """\
pad_event(const char *name, int x) "[%10s] %d"
postcopy_place_page(void *host_addr) "host=%p"
virtio_balloon_handle_output(const char *name, uint64_t gpa) "section name: %s gpa: 0x%" PRIx64
"""


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("block_size", [97, 16 << 20])
def test_compiled_walk_rows_it_cannot_print(byteorder, block_size):
    """The numba engine's one-pass kernel leaves formats it cannot print (``%10s``) and strings
    that are not UTF-8 to render_args, rejects what fits no layout, and keeps record order:
    the same tables as the numpy engine, across blocks and byte orders."""
    _engine_ok("numba")
    cat = Catalog(parse_trace_events(ODD_EVENTS, "odd.trace-events"))
    out = io.BytesIO()
    w = SimpletraceWriter(out, byteorder=byteorder, pid=7)
    w.header()
    for i, n in enumerate(["pad_event", "postcopy_place_page", "virtio_balloon_handle_output"]):
        w.mapping(10 + i, n)
    w.record(10, 1, [b"pc.ram", 5])
    w.record(11, 2, [0x1000])
    w.record(10, 3, [b"\xff\xfe", -3])  # not UTF-8
    w.record(12, 4, [b"\xff", 0x2000])  # not UTF-8, kernel-printed format
    w.record(12, 5, ["é".encode(), 0x3000])  # UTF-8, not ASCII
    w.record(10, 6, [None, 1])  # NULL string
    w.record(11, 7, [1, 2])  # two arguments: fits no layout of postcopy_place_page
    w.record(12, 8, [b"ram", 0x4000])
    data = out.getvalue()
    a = tables(parse_bytes(data, engine="arrow", cat=cat, block_size=block_size))
    b = tables(parse_bytes(data, engine="numba", cat=cat, block_size=block_size))
    for x, y in zip(a[:3], b[:3], strict=True):
        assert x.equals(y)
    assert a[3] == b[3]
    args = b[0].column("args").to_pylist()
    assert len(args) == 7 and b[2].num_rows == 1
    assert args[0] == "[%10s] %d" % ("pc.ram", 5)  # noqa: UP031 - C printf's meaning
    assert args[1] == "host=0x1000"
    assert "\ufffd" in args[2] and "\ufffd" in args[3]
    assert args[4] == "section name: é gpa: 0x3000"
    assert args[6] == "section name: ram gpa: 0x4000"
    assert b[1].num_rows == 4  # header + 3 mappings
    assert b[3]["pad_event"][1]["name"] == "\ufffd\ufffd"


def test_sniff():
    data, _ = sample_file(4, "little")
    assert ST.sniff(data[:64])
    assert ST.sniff(sample_file(3, "big")[0][:24])
    assert ST.sniff(sample_file(2, "little")[0][:24])
    assert not ST.sniff(b"\xff" * 24)
    assert not ST.sniff(data[:23])
    assert not ST.sniff(b"postcopy_place_page host=0x1\n" * 3)


def test_load_detects_simpletrace(tmp_path):
    data, expected = sample_file(4, "little")
    path = tmp_path / "trace-1234"
    path.write_bytes(gzip.compress(data))
    trace = tracetool.load(path)  # bundled catalog: these events are all catalogued
    assert trace.stats.format == "simpletrace"
    assert trace.stats.balanced
    assert trace.events.num_rows == len(expected)
    t = trace.table("ram_load_postcopy_loop")
    assert t["addr"].to_pylist() == [0x1FF7F000, 2**64 - 1]


def test_v3_needs_the_builds_trace_events(tmp_path):
    """v2/v3 ids are positions in a trace-events file: the bundled catalog has none."""
    data, expected = sample_file(3, "little")
    chunks = parse_bytes(data, cat=Catalog.bundled())
    ev, _, rej, _ = tables(chunks)
    assert ev["event"].to_pylist() == ["dropped"]
    assert rej.num_rows == len(expected) - 1
    assert "--trace-events" in rej["reason"][0].as_py()
    te = tmp_path / "trace-events-all"
    te.write_text(EVENTS_TEXT)
    path = tmp_path / "t.simple"
    path.write_bytes(data)
    trace = tracetool.load(path, trace_events=te)
    assert trace.rejected.num_rows == 0
    assert trace.events["args"].to_pylist() == [a for _, a in expected]


def test_variant_chosen_by_payload_layout():
    """Several definitions of one event: the newest whose argument layout fits the payload."""
    text = (
        "#@ versions: 2.11-\n"
        'migrate_set_state(const char *new_state) "new state %s"\n'
        "#@ versions: 2.5-2.10\n"
        'migrate_set_state(int new_state) "new state %d"\n'
    )
    cat = Catalog(parse_trace_events(text, "t"))
    out = io.BytesIO()
    w = SimpletraceWriter(out)
    w.header()
    w.mapping(1, "migrate_set_state")
    w.record(1, 10, ["active"])
    w.record(1, 11, [5])
    w.record(1, 12, [1, 2])  # fits no definition
    chunks = parse_bytes(out.getvalue(), cat=cat)
    ev, _, rej, _ = tables(chunks)
    assert ev["args"].to_pylist() == ["new state active", "new state 5"]
    assert set().union(*[set(c.typed) for c in chunks]) == {
        ("migrate_set_state", 0),
        ("migrate_set_state", 1),
    }
    assert rej["line"].to_pylist() == [5]
    assert "16-byte payload does not fit" in rej["reason"][0].as_py()


def test_unknown_ids_and_uncatalogued_events():
    out = io.BytesIO()
    w = SimpletraceWriter(out)
    w.header()
    w.record(5, 1, [1])  # no mapping yet: rejected
    w.mapping(5, "postcopy_place_page")
    w.record(5, 2, [1])
    w.mapping(6, "not_in_the_catalog")
    w.record(6, 3, [1, 2, b"x"])  # kept, arguments unknown
    chunks = parse_bytes(out.getvalue())
    ev, other, rej, _ = tables(chunks)
    assert ev["event"].to_pylist() == ["postcopy_place_page", "not_in_the_catalog"]
    assert ev["args"].to_pylist() == ["host=0x1", None]
    assert rej["line"].to_pylist() == [2]
    assert rej["reason"][0].as_py().startswith("unknown event id 5")
    with pytest.raises(FormatError, match="unknown event id 5") as info:
        parse_bytes(out.getvalue(), strict=True)
    assert info.value.offset == 24


# -- damage --------------------------------------------------------------------------------


def record_bounds(data: bytes, version: int) -> list[int]:
    """Byte offsets where records end (header included), computed independently."""
    big = False
    q = "<Q"
    i = "<I"
    import struct

    bounds = [24]
    pos = 24
    while pos < len(data):
        if version >= 4:
            typ = struct.unpack_from(q, data, pos)[0]
            if typ == 0:
                pos += 20 + struct.unpack_from(i, data, pos + 16)[0]
            else:
                pos += 8 + struct.unpack_from(i, data, pos + 24)[0]
        else:
            pos += struct.unpack_from(i, data, pos + 16)[0]
        bounds.append(pos)
    assert not big
    return bounds


@pytest.mark.parametrize("version", [3, 4])
def test_truncation_at_every_byte(version):
    data, expected = sample_file(version, "little")
    bounds = record_bounds(data, version)
    full = tables(parse_bytes(data))
    full_lines = full[0]["line"].to_pylist()
    cuts = range(len(data) + 1)
    if version == 3:  # v4 tries every byte; v3 the record boundaries and their neighbours
        cuts = sorted(
            {c for b in [0, *bounds] for c in (b - 1, b, b + 1, b + 9) if 0 <= c <= len(data)}
        )
    for cut in cuts:
        part = data[:cut]
        if cut < 24:
            with pytest.raises(InputError, match="header"):
                parse_bytes(part)
            continue
        chunks = parse_bytes(part)
        ev, other, rej, _ = tables(chunks)
        whole = sum(1 for b in bounds if b <= cut)  # records complete before the cut
        assert ev.num_rows + other.num_rows == whole
        assert ev["line"].to_pylist() == full_lines[: ev.num_rows]
        assert ev["args"].to_pylist() == full[0]["args"].to_pylist()[: ev.num_rows]
        if cut in bounds:
            assert rej.num_rows == 0
            parse_bytes(part, strict=True)
        else:
            assert rej.num_rows == 1
            reason = rej["reason"][0].as_py()
            at = max(b for b in bounds if b <= cut)
            assert reason.startswith(f"byte {at}: file ends inside a")
            assert rej["line"][0].as_py() == whole + 1
            with pytest.raises(FormatError) as info:
                parse_bytes(part, strict=True)
            assert info.value.offset == at


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_length_fields(engine):
    _engine_ok(engine)
    out = io.BytesIO()
    w = SimpletraceWriter(out)
    w.header()
    w.mapping(1, "postcopy_place_page")
    w.record(1, 10, [0x1000])
    good = len(out.getvalue())
    w.raw_record(1, 11, b"\0" * 8, length=0xFFFFFFF0)  # 4 GiB record
    w.record(1, 12, [0x2000])
    data = out.getvalue()
    ev, _, rej, _ = tables(parse_bytes(data, engine=engine))
    assert ev["args"].to_pylist() == ["host=0x1000"]
    assert rej.num_rows == 1
    assert rej["reason"][0].as_py() == (
        f"byte {good}: record length 4294967280 is above 65536 bytes "
        "(QEMU records are under 5.2 KiB): damaged file"
    )
    with pytest.raises(FormatError, match="record length 4294967280") as info:
        parse_bytes(data, engine=engine, strict=True)
    assert info.value.offset == good

    for damage, message in [
        (b"\x07" + b"\0" * 40, "record type is not 0 (mapping) or 1 (event)"),
        (b"\0" * 16 + b"\xff\xff\xff\x7f" + b"x" * 20, "mapping name length 2147483647"),
        (b"\0" * 16 + b"\0\0\0\0", "mapping name length 0"),
        (b"\x01" + b"\0" * 23 + b"\x05\0\0\0" + b"\0" * 8, "record length 5 is below 24"),
    ]:
        ev, _, rej, _ = tables(parse_bytes(data[:good] + damage, engine=engine))
        assert ev.num_rows == 1
        assert rej["reason"][0].as_py().startswith(f"byte {good}: {message}")


def test_wrong_payload_length_is_one_rejected_record():
    out = io.BytesIO()
    w = SimpletraceWriter(out)
    w.header()
    w.mapping(1, "virtio_balloon_handle_output")
    w.raw_record(1, 10, b"\x10\0\0\0pc.ram")  # string length says 16, 6 bytes follow
    w.record(1, 11, ["pc.ram", 1])
    ev, _, rej, _ = tables(parse_bytes(out.getvalue()))
    assert ev["args"].to_pylist() == ["section name: pc.ram gpa: 0x1"]
    assert rej["line"].to_pylist() == [3]
    assert "10-byte payload does not fit the arguments of virtio_balloon_handle_output(" in (
        rej["reason"][0].as_py()
    )
    assert rej["text"][0].as_py().startswith("01 00 00 00 00 00 00 00 01")


def test_dropped_record_with_a_bad_payload():
    out = io.BytesIO()
    w = SimpletraceWriter(out)
    w.header()
    w.raw_record(DROPPED_EVENT_ID, 5, b"\0" * 4)
    w.dropped(6, 3)
    chunks = parse_bytes(out.getvalue())
    ev, _, rej, _ = tables(chunks)
    assert ev["args"].to_pylist() == ["num_events_dropped=3"]
    assert "dropped-events record with a 4-byte payload" in rej["reason"][0].as_py()
    assert sum(c.dropped_events for c in chunks) == 3


def test_bad_header_and_version():
    with pytest.raises(InputError, match="not a simpletrace header"):
        parse_bytes(b"\xff" * 8 + b"\0" * 16)
    head = b"\xff" * 8 + (0xF2B177CB0AA429B4).to_bytes(8, "little")
    with pytest.raises(InputError, match="version 0 is not supported"):
        parse_bytes(head + (0).to_bytes(8, "little"))
    chunks = parse_bytes(head + (4).to_bytes(8, "little"))  # header only: one other row
    assert sum(c.lines for c in chunks) == 1


# -- rendering -----------------------------------------------------------------------------

_LIBC = ctypes.util.find_library("c")


def c_printf(fmt: str, value, is64: bool) -> str:
    libc = ctypes.CDLL(_LIBC)
    buf = ctypes.create_string_buffer(1024)
    if isinstance(value, float):
        arg = ctypes.c_double(value)
    elif value is None or isinstance(value, bytes):
        arg = ctypes.c_char_p(value)
    elif is64:
        arg = ctypes.c_ulonglong(value & (2**64 - 1))
    else:
        arg = ctypes.c_uint(value & (2**32 - 1))
    libc.snprintf(buf, 1024, fmt.encode(), arg)
    return buf.value.decode("utf-8", "replace")


INT_SPECS = [
    "%d", "%u", "%x", "%X", "%#x", "%08x", "%lld", "%llu", "%llx", "%#llx", "%016llx", "%p",
    "%5d", "%-5d|", "%05d", "%+d", "% d", "%.3d", "%.0d", "%hhd", "%hu", "%hx", "%o", "%#o",
    "%2.2x", "%.8x", "%zx", "%lu", "%ld", "%lli", "%llX", "%#llX", "%10p", "%-10p|", "%#5x",
    "%#05x", "%08.3d", "%#.0x",
]  # fmt: skip
FLOAT_SPECS = ["%f", "%g", "%e", "%.2f", "%10.3f", "%G", "%.3g", "%-8.2f|", "%08.2f", "%+g"]


@pytest.mark.skipif(_LIBC is None, reason="no C library to compare with")
def test_render_matches_glibc_printf():
    rng = np.random.default_rng(7)
    edge = [0, 1, -1, 15, 16, 255, 256, -128, 2**31 - 1, -(2**31), 2**32 - 1, 2**32, 2**63 - 1]
    edge += [-(2**63), 2**60, 2**60 - 1, 2**56 - 1]
    vals = np.concatenate([np.array(edge, np.int64), rng.integers(-(2**63), 2**63 - 1, 60)])
    for spec in INT_SPECS:
        ev = parse_trace_events(f'e(int64_t a) "{spec}"')[0]
        got = render_args(ev, [vals]).to_pylist()
        is64 = any(c in spec for c in "lzp")
        want = [c_printf(spec, int(v), is64) for v in vals]
        assert got == want, spec
    chars = np.arange(32, 127)
    ev = parse_trace_events('e(char c, char d) "[%c|%3c]"')[0]
    assert render_args(ev, [chars, chars]).to_pylist() == [
        c_printf("[%c|", int(c), False) + c_printf("%3c]", int(c), False) for c in chars
    ]
    floats = np.concatenate(
        [rng.normal(0, 1e3, 40), [0.0, -0.0, 0.5, 2.5, 1e6, 999999.5, 1e-5, 1e20]]
    )
    floats = np.concatenate([floats, [np.inf, -np.inf, np.nan]])
    for spec in FLOAT_SPECS:
        ev = parse_trace_events(f'e(double a) "{spec}"')[0]
        got = render_args(ev, [floats]).to_pylist()
        assert got == [c_printf(spec, float(v), False) for v in floats], spec
    ev = parse_trace_events('e(char *a, char *b, char *c, char *d) "%s|%5s|%-4s|%.2s"')[0]
    strs = ["pc.ram", None, "", "ab", "é"]
    got = render_args(ev, [pa.array(strs), pa.array(strs[::-1]), pa.array(strs), pa.array(strs)])
    libc = ctypes.CDLL(_LIBC)
    for a, b, text in zip(strs, strs[::-1], got.to_pylist(), strict=True):
        buf = ctypes.create_string_buffer(256)
        enc = [None if v is None else v.encode() for v in (a, b, a, a)]
        libc.snprintf(buf, 256, b"%s|%5s|%-4s|%.2s", *map(ctypes.c_char_p, enc))
        assert text == buf.value.decode()


def test_render_c_semantics_of_declared_types():
    ev = parse_trace_events('e(uint32_t a, int b, bool c, uint8_t d) "%d %x %d %hhd"')[0]
    got = render_args(ev, [np.array([0xFFFFFFFF]), np.array([-1]), np.array([True]), [200]])
    assert got.to_pylist() == ["-1 ffffffff 1 -56"]
    ev = parse_trace_events('e(void *p) "%p"')[0]
    assert render_args(ev, [pa.array([0, None], pa.uint64())]).to_pylist() == ["(nil)", None]


def _roundtrip_formats() -> list:
    """Bundled definitions whose text can be read back unambiguously: every %s is followed
    by a literal holding a non-alphanumeric byte (or ends the format), no padded strings."""
    out = []
    for name in Catalog.bundled():
        for ev in Catalog.bundled().variants(name):
            if ev.plan is None or any(c.kind is ArgKind.FLOAT for c in ev.columns()):
                continue
            specs = format_specs(ev.plan.fmt)
            ok = True
            for i, piece in enumerate(specs):
                if isinstance(piece, bytes) or piece.conv != "s":
                    if not isinstance(piece, bytes) and "-" in piece.flags:
                        ok = False
                    continue
                nxt = specs[i + 1] if i + 1 < len(specs) else None
                if piece.width or (nxt is not None and not isinstance(nxt, bytes)):
                    ok = False
            if ok:
                out.append(ev)
    return out


ROUNDTRIP = _roundtrip_formats()


def test_roundtrip_set_is_large():
    assert len(ROUNDTRIP) > 300


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."


def _column_values(draw, col, spec, n, literal_chars="", after=None):
    """Random values of one column; strings avoid the format's literal characters (so the
    literal after a %s is found where the string ends), and are null only where ``(null)``
    cannot hide that literal."""
    if col.kind is ArgKind.STRING:
        alphabet = "".join(c for c in _ALPHABET if c not in literal_chars)
        text = st.text(alphabet, max_size=12) if alphabet else st.just("")
        null_ok = after is None or ("(null)" + after).find(after) == 6
        value = st.none() | text if null_ok else text
        return pa.array(draw(st.lists(value, min_size=n, max_size=n)), pa.string())
    if col.kind is ArgKind.BOOL:
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if col.conv is Conv.CHAR:
        return np.array(draw(st.lists(st.integers(33, 126), min_size=n, max_size=n)))
    bits = min(col.bits, spec.bits)
    if col.kind is ArgKind.SIGNED:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), np.int64)
    vals = draw(st.lists(st.integers(0, 2**bits - 1), min_size=n, max_size=n))
    return np.array(vals, np.uint64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_render_round_trips_through_the_log_parser(data):
    """Rendered text, parsed by the log parser with the event's plan, gives the values back."""
    from parsers._log_arrow import decode_block_arrow

    ev = data.draw(st.sampled_from(ROUNDTRIP))
    n = data.draw(st.integers(1, 6))
    pieces = format_specs(ev.plan.fmt)
    lits = "".join(p.decode() for p in pieces if isinstance(p, bytes))
    specs, after = [], []
    for i, p in enumerate(pieces):
        if not isinstance(p, bytes):
            specs.append(p)
            nxt = pieces[i + 1] if i + 1 < len(pieces) else None
            after.append(nxt.decode() if isinstance(nxt, bytes) else None)
    cols = [
        _column_values(data.draw, c, s, n, lits, a)
        for c, s, a in zip(ev.columns(), specs, after, strict=True)
    ]
    text = render_args(ev, cols, n)
    lines = "".join(f"{ev.name} {t}\n" for t in text.to_pylist())
    ctx = LogContext(ParseOptions(catalog=Catalog([ev]), engine="arrow"), "<render>")
    chunk = decode_block_arrow(lines.encode(), 1, ctx)
    assert chunk.rejected.num_rows == 0, (ev.fmt, lines, chunk.rejected.to_pylist())
    (batch,) = chunk.typed.values()
    for col, given_vals in zip(ev.columns(), cols, strict=True):
        got = batch.column(col.name).to_pylist()
        if col.kind is ArgKind.STRING:
            assert got == given_vals.to_pylist()
        elif col.kind is ArgKind.BOOL:
            assert got == [bool(v) for v in given_vals]
        else:
            want = wrap_int(
                np.asarray(given_vals).astype(np.uint64).view(np.int64), col.kind, col.bits
            )
            assert got == want.tolist(), (ev.fmt, lines)


# -- the real capture ----------------------------------------------------------------------


def _log_events(side: str):
    log = tracetool.load(shared_trace(CAPTURE, f"{side}.trace.log.gz"),
                         trace_events=shared_trace(CAPTURE, "trace-events-all"))  # fmt: skip
    return log


def _simple(side: str):
    name = "src.trace.simple" if side == "src" else "dst.trace.simple.gz"
    return tracetool.load(
        shared_trace(CAPTURE, name), trace_events=shared_trace(CAPTURE, "trace-events-all")
    )


#: records written before the log file was opened (simpletrace-check.md): pid 0, first records
BEFORE_LOG = {
    "src": ["qmp_enter_set_action", "qmp_exit_set_action"],
    "dst": ["runstate_set", "qmp_enter_set_action", "qmp_exit_set_action"],
}


def _truncated_pair(simple: str, log: str) -> bool:
    """``simple`` is ``log`` with the tail of one string cut (QEMU keeps 512 string bytes)."""
    p = 0
    while p < min(len(simple), len(log)) and simple[p] == log[p]:
        p += 1
    s = 0
    while s < min(len(simple), len(log)) - p and simple[-1 - s] == log[-1 - s]:
        s += 1
    return len(simple) - p - s == 0 and len(log) - p - s > 0 and len(simple[:p].encode()) >= 512


@pytest.mark.parametrize("side", ["src", "dst"])
def test_capture_matches_the_log_backend(side):
    simple = _simple(side)
    log = _log_events(side)
    assert simple.stats.format == "simpletrace"
    assert simple.rejected.num_rows == 0 and simple.stats.balanced
    names = simple.events["event"].to_pylist()
    args = simple.events["args"].to_pylist()
    tids = simple.events["tid"].to_pylist()
    k = len(BEFORE_LOG[side])
    assert names[:k] == BEFORE_LOG[side] and set(tids[:k]) == {0} and 0 not in tids[k:]
    ours = list(zip(names[k:], args[k:], strict=True))
    theirs = list(zip(log.events["event"].to_pylist(), log.events["args"].to_pylist(), strict=True))
    assert len(ours) == len(theirs)
    # per event name, the same argument texts in the same order (threads interleave differently
    # in the two backends' buffers, so the merged order differs in a few places)
    by_ours, by_theirs = defaultdict(list), defaultdict(list)
    for n, a in ours:
        by_ours[n].append(a)
    for n, a in theirs:
        by_theirs[n].append(a)
    assert by_ours.keys() == by_theirs.keys()
    cut = 0
    for n in by_ours:
        assert len(by_ours[n]) == len(by_theirs[n]), n
        for a, b in zip(by_ours[n], by_theirs[n], strict=True):
            if a != b:
                assert _truncated_pair(a, b), (n, a[:80], b[:80])
                cut += 1
    assert cut < 100  # only the long QMP JSON replies
    # and the merged order differs only locally
    moved = sum(1 for x, y in zip(ours, theirs, strict=True) if x != y)
    assert moved < len(ours) // 100


_TXT_ARG = re.compile(r" (\w+)=(0x[0-9a-f]+|b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\")")


@pytest.mark.parametrize("side", ["src", "dst"])
def test_capture_matches_qemu_simpletrace_py(side):
    """Every record, value by value, as QEMU 7.2's simpletrace.py printed it."""
    simple = _simple(side)
    path = shared_trace(CAPTURE, f"{side}.trace.simple.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        txt = f.read().splitlines()
    ev = simple.events
    assert len(txt) == ev.num_rows
    names = ev["event"].to_pylist()
    ts = ev["ts_ns"].to_numpy()
    pids = ev["tid"].to_pylist()
    lines = ev["line"].to_numpy()
    # expected values per event, in record order
    want: dict[str, list[list]] = defaultdict(list)
    for i, line in enumerate(txt):
        head, _, rest = line.partition(" pid=")
        name, delta = head.split(" ")
        pid, _, rest = rest.partition(" ")
        assert name == names[i] and int(pid) == pids[i], i
        prev = ts[i - 1] if i else ts[0]
        assert delta == "%0.3f" % ((ts[i] - prev) / 1000.0), i
        vals = []
        for _key, v in _TXT_ARG.findall(" " + rest):
            vals.append(int(v, 16) if v.startswith("0x") else ast.literal_eval(v))
        want[name].append(vals)
    for name, rows in want.items():
        table = simple.table(name)
        assert table["line"].to_numpy().tolist() == sorted(table["line"].to_numpy().tolist())
        ev_def = simple.catalog.variants(name)[0]
        cols = []
        for col in ev_def.columns():
            vals = table[col.name].to_pylist()
            if col.kind is ArgKind.STRING:
                cols.append(
                    [b"" if v is None else v.encode("utf-8", "surrogateescape") for v in vals]
                )
            else:
                cols.append([int(v) & (2**64 - 1) for v in vals])
        got = [list(r) for r in zip(*cols, strict=True)] if cols else [[] for _ in rows]
        assert got == rows, name
    assert len(lines) == len(set(lines.tolist()))


def test_capture_cli_analyze(monkeypatch, capsys):
    from tests.conftest import run_cli

    path = shared_trace(CAPTURE, "src.trace.simple")
    code, out, err = run_cli(monkeypatch, capsys, "analyze", path, "--no-replay")
    assert code == 0, err
    assert "format simpletrace" in out
    assert "82,471 events" in out


def test_no_traceback_on_random_damage():
    """Flipped bytes anywhere: a table or a TracetoolError, never another exception."""
    data, _ = sample_file(4, "little")
    rng = np.random.default_rng(3)
    for _ in range(300):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), 3):
            b[pos] = int(rng.integers(0, 256))
        try:
            chunks = parse_bytes(bytes(b))
        except TracetoolError:
            continue
        tables(chunks)
    assert Counter() == Counter()


def test_compiled_printer_agrees_with_render_args():
    """The numba engine's printer gives render_args' text for every kind of conversion."""
    _engine_ok("numba")
    from parsers.simpletrace import SimpleContext, _render, _typed_columns, render_ops

    rng = np.random.default_rng(11)
    events = [parse_trace_events(f'e(int64_t a) "<{s}>"')[0] for s in INT_SPECS]
    events += [parse_trace_events(f'e(uint8_t a) "<{s}>"')[0] for s in INT_SPECS]
    events += [parse_trace_events('e(bool a, char c) "%d %c"')[0]]
    events += ROUNDTRIP
    words = [b"", b"pc.ram", b"0000:00:02.0/virtio-balloon", "é".encode(), b"x" * 40]
    n = 50
    compiled_seen = 0
    for ev in events:
        k = len(ev.args)
        vals = rng.integers(0, 2**64 - 1, (n, k), dtype=np.uint64)
        vals[:5] = 0
        vals[5:10] = 2**64 - 1
        pool = b"".join(words)
        starts = np.cumsum([0] + [len(w) for w in words])[:-1]
        pick = rng.integers(0, len(words), (n, k))
        sst = starts[pick].astype(np.int64)
        slen = np.array([len(w) for w in words])[pick].astype(np.int64)
        buf = np.frombuffer(pool, np.uint8)
        for j, a in enumerate(ev.args):
            if not a.ctype.is_string:
                slen[:, j] = 0
        cols = _typed_columns(ev, buf, vals, sst, slen)
        ctx = SimpleContext(ParseOptions(), "<t>")
        ctx.compiled = True
        offsets, data, _ = _render(ev, ctx, buf, vals, sst, slen, cols, n)
        got = [bytes(data[offsets[i] : offsets[i + 1]]).decode() for i in range(n)]
        filled = [c if c is not None else pa.nulls(n, pa.string()) for c in cols]
        assert got == render_args(ev, filled, n).to_pylist(), ev.fmt
        compiled_seen += render_ops(ev) is not None
    assert compiled_seen > len(events) * 0.9
