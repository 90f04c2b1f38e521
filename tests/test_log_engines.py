"""Both engines of the QEMU text-log parser (pure pyarrow and numba) on the same cases."""

from __future__ import annotations

import datetime as dt
import gzip
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from parsers._log_arrow import decode_block_arrow, parse_radix_u64, split_lines
from parsers._log_common import (
    REASON_BAD_TID,
    REASON_BAD_UTF8,
    REASON_NO_NAME,
    REASON_NUL,
    LogContext,
    reason_no_match,
)
from parsers.base import ParseOptions, typed_schema
from tracetool.catalog import ArgKind, Catalog, Conv, parse_trace_events, plan_to_regex
from tracetool.errors import FormatError
from tracetool.schema import EVENTS_SCHEMA, OTHER_SCHEMA, REJECTED_SCHEMA

# Definitions copied from QEMU 7.2's trace-events-all (plus a few made up for odd conversions).
TRACE_EVENTS = r"""
postcopy_place_page(void *host_addr) "host=%p"
virtio_balloon_handle_output(const char *name, uint64_t gpa) "section name: %s gpa: 0x%"PRIx64
virtio_balloon_get_config(uint32_t num_pages, uint32_t actual) "num_pages: %d actual: %d"
ram_block_discard_range(const char *rbname, void *hva, size_t length, bool need_madvise, bool need_fallocate, int ret) "%s@%p + 0x%zx: madvise: %d fallocate: %d ret: %d"
migrate_set_state(const char *new_state) "new state %s"
postcopy_ram_fault_thread_request(uint64_t hostaddr, const char *ramblock, size_t offset, uint32_t pid) "Request for HVA=0x%" PRIx64 " rb=%s offset=0x%zx pid=%u"
migrate_handle_rp_req_pages(const char *rbname, size_t start, size_t len) "in %s at 0x%zx len 0x%zx"
migration_set_outgoing_channel(void *ioc, const char *ioctype, const char *hostname, void *err)  "ioc=%p ioctype=%s hostname=%s err=%p"
loadvm_state_setup(void) ""
migration_socket_incoming_accepted(void) ""
vmstate_load_state_field(const char *name, const char *field) "%s:%s"
qemu_loadvm_state_section(unsigned int section_type) "%d"
test_signed(int64_t v) "v=%" PRId64
test_unsigned(uint64_t v) "v=%" PRIu64
test_int_as_u(int v) "v=%u"
test_alt(uint32_t v) "v=%#x"
test_pad(int v, uint8_t w) "[%5d|%3u]"
test_oct(unsigned v) "mode=%o"
test_float(double a, float b) "a=%f b=%g"
test_char(char c, int n) "c=%c n=%d"
test_two(int a, int b) "a=%d b=%d"
test_two(int a) "a=%d"
test_two(const char *s) "a=%s"
test_star(int w, int v) "v=%*d"
"""


@pytest.fixture(autouse=True, params=["arrow", "numba"])
def _engine(request, monkeypatch):
    """Every test runs against both engines: they implement the same rules."""
    if request.param == "numba":
        from parsers import _numba_setup

        if not _numba_setup.available():
            pytest.skip(_numba_setup.UNAVAILABLE)
        from parsers._log_numba import decode_block_numba

        monkeypatch.setitem(globals(), "decode_block_arrow", decode_block_numba)
    return request.param


def catalog() -> Catalog:
    return Catalog(parse_trace_events(TRACE_EVENTS, "test.trace-events"))


def ctx(strict: bool = False) -> LogContext:
    return LogContext(ParseOptions(catalog=catalog(), strict=strict), path="t.log")


def decode(data: bytes, first_line: int = 1, **kw):
    return decode_block_arrow(data, first_line, ctx(**kw))


def events(chunk) -> list[dict]:
    rows = chunk.events.to_pylist()
    return rows


def typed_rows(chunk, name: str, variant: int = 0) -> list[dict]:
    return chunk.typed[(name, variant)].to_pylist()


def check_invariants(chunk, data: bytes) -> None:
    assert chunk.events.schema == EVENTS_SCHEMA
    assert chunk.other.schema == OTHER_SCHEMA
    assert chunk.rejected.schema == REJECTED_SCHEMA
    n = chunk.events.num_rows + chunk.other.num_rows + chunk.rejected.num_rows
    assert chunk.lines == n
    assert chunk.nbytes == len(data)
    assert sum(chunk.shapes.values()) == chunk.events.num_rows
    lines = (
        chunk.events.column("line").to_pylist()
        + chunk.other.column("line").to_pylist()
        + chunk.rejected.column("line").to_pylist()
    )
    assert sorted(lines) == list(range(lines and min(lines) or 1, (lines and min(lines) or 1) + n))
    for name, batch in [("events", chunk.events), ("other", chunk.other), ("rej", chunk.rejected)]:
        col = batch.column("line").to_pylist()
        assert col == sorted(col), name
    for (name, vi), batch in chunk.typed.items():
        assert batch.schema == typed_schema(catalog().variants(name)[vi])


def ns(text: str) -> int:
    """UTC ns since the epoch of an ISO-8601 text, independently of the engine."""
    frac = re.search(r"\.(\d+)", text)
    base = re.sub(r"\.\d+", "", text).replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", base):
        base = base[:-2] + ":" + base[-2:]
    sec = int(dt.datetime.fromisoformat(base).timestamp())
    return sec * 10**9 + (int(frac.group(1).ljust(9, "0")) if frac else 0)


# ---------------------------------------------------------------------------------------------
# Line shapes


def test_no_prefix_line():
    data = b"migrate_set_state new state active\n"
    c = decode(data)
    check_invariants(c, data)
    assert events(c) == [
        {
            "ts_ns": None,
            "tid": None,
            "event": "migrate_set_state",
            "line": 1,
            "args": "new state active",
        }
    ]
    assert c.shapes == {"no prefix": 1}
    assert typed_rows(c, "migrate_set_state") == [
        {"ts_ns": None, "tid": None, "line": 1, "new_state": "active"}
    ]


def test_id_prefix_line():
    data = b"1234@1700000000.123456:postcopy_place_page host=0x7f1248e00000\n"
    c = decode(data, first_line=7)
    check_invariants(c, data)
    (ev,) = events(c)
    assert ev == {
        "ts_ns": 1700000000_123456000,
        "tid": 1234,
        "event": "postcopy_place_page",
        "line": 7,
        "args": "host=0x7f1248e00000",
    }
    assert c.shapes == {"ID@SEC.USEC:": 1}
    assert typed_rows(c, "postcopy_place_page") == [
        {"ts_ns": 1700000000_123456000, "tid": 1234, "line": 7, "host_addr": 0x7F1248E00000}
    ]


def test_id_prefix_short_usec_is_the_integer_printed():
    c = decode(b"5@10.42:migrate_set_state new state x\n")
    assert events(c)[0]["ts_ns"] == 10 * 10**9 + 42 * 1000


@pytest.mark.parametrize(
    "stamp",
    [
        "2025-09-01T12:00:00Z",
        "2025-09-01T12:00:00.123456Z",
        "2025-09-01T12:00:00.1Z",
        "2025-09-01T12:00:00.123456789Z",
        "2025-09-01T14:00:00.5+02:00",
        "2025-09-01T14:00:00+0200",
        "2025-09-01T06:30:00-05:30",
        "1969-12-31T23:59:59.999Z",
        "2024-02-29T23:59:59Z",
        "2000-03-01T00:00:00Z",
    ],
)
def test_iso_prefix(stamp):
    data = (
        f"{stamp} ram_block_discard_range pc.ram@0x1000 + 0x1000: madvise: 1 fallocate: 0 ret: 0\n"
    )
    c = decode(data.encode())
    check_invariants(c, data.encode())
    (ev,) = events(c)
    assert ev["ts_ns"] == ns(stamp)
    assert ev["tid"] is None
    assert ev["event"] == "ram_block_discard_range"
    assert c.shapes == {"ISO-8601": 1}
    (row,) = typed_rows(c, "ram_block_discard_range")
    assert row["ts_ns"] == ns(stamp) and row["tid"] is None


def test_iso_prefix_needs_one_space_and_a_valid_shape():
    data = (
        b"2025-09-01T12:00:00Z  migrate_set_state new state a\n"  # two spaces
        b"2025-09-01T12:00:00.1234567890Z migrate_set_state new state a\n"  # 10 digits
        b"2025-09-01T12:00:00 migrate_set_state new state a\n"  # no zone
        b"2025-09-01 12:00:00Z migrate_set_state new state a\n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert c.events.num_rows == 0
    assert c.other.num_rows == 4


def test_empty_format_events():
    data = (
        b"loadvm_state_setup \n"
        b"loadvm_state_setup\n"
        b"15155@1795630436.998321:migration_socket_incoming_accepted \n"
        b"2025-09-01T12:00:00Z loadvm_state_setup \n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert [e["args"] for e in events(c)] == ["", "", "", ""]
    assert [e["event"] for e in events(c)] == [
        "loadvm_state_setup",
        "loadvm_state_setup",
        "migration_socket_incoming_accepted",
        "loadvm_state_setup",
    ]
    assert [r["line"] for r in typed_rows(c, "loadvm_state_setup")] == [1, 2, 4]
    assert c.typed[("loadvm_state_setup", 0)].num_columns == 3
    assert c.rejected.num_rows == 0


def test_empty_format_with_arguments_is_rejected():
    c = decode(b"loadvm_state_setup x\n")
    assert c.rejected.to_pylist() == [
        {
            "line": 1,
            "reason": reason_no_match(
                "loadvm_state_setup", catalog().variants("loadvm_state_setup")
            ),
            "text": "loadvm_state_setup x",
        }
    ]


def test_other_lines_mixed_in():
    data = (
        b"qemu-system-x86_64: warning: foo\n"
        b"15155@1795630436.998382:migrate_set_state new state active\n"
        b"Hello world\n"
        b"\n"
        b"2025-09-01T12:00:00Z qemu-system-x86_64: warning: bar\n"
        b"2025-09-01T12:00:00Z Hello world\n"
        b"\r\n"
        b"12ab@3.4:x\n"
        b"   indented_event x\n"
        b"migrate_set_state new state done\n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert c.other.to_pylist() == [
        {"line": 1, "text": "qemu-system-x86_64: warning: foo"},
        {"line": 3, "text": "Hello world"},
        {"line": 4, "text": ""},
        {"line": 5, "text": "2025-09-01T12:00:00Z qemu-system-x86_64: warning: bar"},
        {"line": 6, "text": "2025-09-01T12:00:00Z Hello world"},
        {"line": 7, "text": ""},
        {"line": 8, "text": "12ab@3.4:x"},
        {"line": 9, "text": "   indented_event x"},
    ]
    assert [e["line"] for e in events(c)] == [2, 10]


def test_unprefixed_names_need_catalog_or_qemu_look():
    data = (
        b"some_event x=1\n"  # looks like a QEMU event: kept, untyped
        b"Hello world\n"  # does not: other
        b"nounderscore x\n"  # no '_': other
        b"1@2.3:Hello world\n"  # after ID@ any name is a record
    )
    c = decode(data)
    check_invariants(c, data)
    assert [(e["event"], e["args"]) for e in events(c)] == [
        ("some_event", "x=1"),
        ("Hello", "world"),
    ]
    assert [r["line"] for r in c.other.to_pylist()] == [2, 3]
    assert c.typed == {}


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"1234@1700000000.123456:", REASON_NO_NAME),
        (b"1234@1700000000.123456:-garbage here", REASON_NO_NAME),
        (b"1234@1700000000.123456: migrate_set_state new state a", REASON_NO_NAME),
        (b"1234@1700000000.123456:foo-bar baz", REASON_NO_NAME),
        (b"1234@1700000000.123456:9lives x", REASON_NO_NAME),
        (b"2147483648@1700000000.123456:migrate_set_state new state a", REASON_BAD_TID),
        (b"99999999999999999999999@1.2:migrate_set_state new state a", REASON_BAD_TID),
        (b"99999999999@1.2:", REASON_BAD_TID),
    ],
)
def test_prefix_with_garbage_is_rejected(line, reason):
    data = line + b"\n"
    c = decode(data)
    check_invariants(c, data)
    assert c.rejected.to_pylist() == [{"line": 1, "reason": reason, "text": line.decode()}]


def test_largest_tid_fits():
    c = decode(b"2147483647@1.000002:migrate_set_state new state a\n")
    assert events(c)[0]["tid"] == 2147483647
    assert events(c)[0]["ts_ns"] == 1_000_002_000


def test_catalogued_event_with_wrong_args_is_rejected():
    data = (
        b"1@2.3:postcopy_place_page host=nothex\n"
        b"1@2.3:virtio_balloon_get_config num_pages: 1\n"
        b"1@2.3:postcopy_place_page host=0x10\n"
    )
    c = decode(data)
    check_invariants(c, data)
    rej = c.rejected.to_pylist()
    assert [r["line"] for r in rej] == [1, 2]
    assert "postcopy_place_page" in rej[0]["reason"] and "'host=%p'" in rej[0]["reason"]
    assert rej[1]["reason"] == reason_no_match(
        "virtio_balloon_get_config", catalog().variants("virtio_balloon_get_config")
    )
    assert rej[1]["text"] == "1@2.3:virtio_balloon_get_config num_pages: 1"
    assert [e["line"] for e in events(c)] == [3]
    # Names of rejected lines are not registered.
    assert c.events.column("event").dictionary.to_pylist() == ["postcopy_place_page"]


def test_invalid_utf8_and_nul_are_rejected():
    data = (
        b"1@2.3:migrate_set_state new state \xff\xfe\n"
        b"1@2.3:migrate_set_state new state a\x00b\n"
        b"migrate_set_state new state \xe2\x82\n"  # truncated sequence at the end of the line
        b"\xac migrate_set_state ok\n"  # ... whose continuation byte starts the next line
        b"1@2.3:migrate_set_state new state \xe2\x82\xac\n"  # valid: euro sign
        b"bin \x00 and \xff\n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert c.rejected.to_pylist() == [
        {
            "line": 1,
            "reason": REASON_BAD_UTF8,
            "text": "1@2.3:migrate_set_state new state \ufffd\ufffd",
        },
        {"line": 2, "reason": REASON_NUL, "text": "1@2.3:migrate_set_state new state a\x00b"},
        {"line": 3, "reason": REASON_BAD_UTF8, "text": "migrate_set_state new state \ufffd"},
        {"line": 4, "reason": REASON_BAD_UTF8, "text": "\ufffd migrate_set_state ok"},
        {"line": 6, "reason": REASON_NUL, "text": "bin \x00 and \ufffd"},
    ]
    assert typed_rows(c, "migrate_set_state") == [
        {"ts_ns": 2_000_003_000, "tid": 1, "line": 5, "new_state": "\u20ac"}
    ]


def test_many_invalid_lines():
    lines = [b"ok_line %d" % i if i % 3 else b"bad \xc0 %d" % i for i in range(3000)]
    data = b"\n".join(lines) + b"\n"
    c = decode(data)
    check_invariants(c, data)
    assert c.rejected.column("line").to_pylist() == [i + 1 for i in range(0, 3000, 3)]
    assert set(c.rejected.column("reason").to_pylist()) == {REASON_BAD_UTF8}


def test_crlf_and_last_line_without_newline():
    data = b"migrate_set_state new state a\r\nmigrate_set_state new state b\r"
    c = decode(data)
    check_invariants(c, data)
    assert [r["new_state"] for r in typed_rows(c, "migrate_set_state")] == ["a", "b"]
    assert c.lines == 2


def test_empty_block():
    c = decode(b"")
    check_invariants(c, b"")
    assert c.lines == 0 and c.events.num_rows == 0 and c.typed == {}


def test_split_lines():
    starts, ends, text = split_lines(b"a\r\n\nbc\rd\nlast\r")
    assert starts.tolist() == [0, 3, 4, 9]
    assert ends.tolist() == [1, 3, 8, 13]
    assert text.to_pylist() == ["a", "", "bc\rd", "last"]


# ---------------------------------------------------------------------------------------------
# Typed values


REAL_LINES = b"""\
15644@1795630445.408728:postcopy_place_page host=0x7f1248e00000
15158@1795630447.904169:virtio_balloon_handle_output section name: pc.ram gpa: 0x10dcb000
15155@1795630436.999079:ram_block_discard_range pc.ram@0x7f1247e00000 + 0x40000000: madvise: 1 fallocate: 0 ret: 0
15155@1795630436.999128:ram_block_discard_range /rom@etc/acpi/tables@0x7f12d5600000 + 0x20000: madvise: 1 fallocate: 0 ret: 0
15155@1795630436.998382:migrate_set_state new state active
15644@1795630445.408501:migrate_set_state new state postcopy-active
15643@1795630445.443935:postcopy_ram_fault_thread_request Request for HVA=0x7f1287d5b000 rb=pc.ram offset=0x3ff5b000 pid=15155
15556@1795630445.486585:migrate_handle_rp_req_pages in (null) at 0x3ff55000 len 0x1000
15165@1795630436.998502:migration_set_outgoing_channel ioc=0x561f4ca03e00 ioctype=qio-channel-socket hostname=127.0.0.1 err=(nil)
15155@1795630436.998803:vmstate_load_state_field configuration:name
"""


def test_real_lines_typed_values():
    c = decode(REAL_LINES)
    check_invariants(c, REAL_LINES)
    assert c.rejected.num_rows == 0 and c.other.num_rows == 0
    assert typed_rows(c, "postcopy_place_page") == [
        {"ts_ns": 1795630445_408728000, "tid": 15644, "line": 1, "host_addr": 0x7F1248E00000}
    ]
    assert typed_rows(c, "virtio_balloon_handle_output") == [
        {
            "ts_ns": 1795630447_904169000,
            "tid": 15158,
            "line": 2,
            "name": "pc.ram",
            "gpa": 0x10DCB000,
        }
    ]
    rbd = typed_rows(c, "ram_block_discard_range")
    assert rbd[0] == {
        "ts_ns": 1795630436_999079000,
        "tid": 15155,
        "line": 3,
        "rbname": "pc.ram",
        "hva": 0x7F1247E00000,
        "length": 0x40000000,
        "need_madvise": True,
        "need_fallocate": False,
        "ret": 0,
    }
    # %s followed by the literal '@' that also occurs inside the string: shortest match that
    # lets the rest of the format match.
    assert rbd[1]["rbname"] == "/rom@etc/acpi/tables"
    assert rbd[1]["hva"] == 0x7F12D5600000 and rbd[1]["length"] == 0x20000
    batch = c.typed[("ram_block_discard_range", 0)]
    assert batch.schema.field("need_madvise").type == pa.bool_()
    assert batch.schema.field("hva").type == pa.uint64()
    assert batch.schema.field("ret").type == pa.int64()
    assert [r["new_state"] for r in typed_rows(c, "migrate_set_state")] == [
        "active",
        "postcopy-active",
    ]
    assert typed_rows(c, "postcopy_ram_fault_thread_request") == [
        {
            "ts_ns": 1795630445_443935000,
            "tid": 15643,
            "line": 7,
            "hostaddr": 0x7F1287D5B000,
            "ramblock": "pc.ram",
            "offset": 0x3FF5B000,
            "pid": 15155,
        }
    ]
    (rp,) = typed_rows(c, "migrate_handle_rp_req_pages")
    assert rp["rbname"] is None  # "(null)"
    assert rp["start"] == 0x3FF55000 and rp["len"] == 0x1000
    (ch,) = typed_rows(c, "migration_set_outgoing_channel")
    assert ch["err"] == 0  # "(nil)"
    assert ch["ioc"] == 0x561F4CA03E00 and ch["hostname"] == "127.0.0.1"
    assert typed_rows(c, "vmstate_load_state_field")[0]["field"] == "name"
    assert events(c)[0]["args"] == "host=0x7f1248e00000"


def test_d_of_uint32_wraps():
    c = decode(b"virtio_balloon_get_config num_pages: -1 actual: 262144\n")
    (row,) = typed_rows(c, "virtio_balloon_get_config")
    assert row["num_pages"] == 4294967295 and row["actual"] == 262144
    assert c.typed[("virtio_balloon_get_config", 0)].schema.field(3).type == pa.uint64()


def test_u_of_int_wraps_and_64_bit_limits():
    data = (
        b"test_int_as_u v=4294967295\n"
        b"test_signed v=-9223372036854775808\n"
        b"test_signed v=9223372036854775807\n"
        b"test_signed v=-0\n"
        b"test_unsigned v=18446744073709551615\n"
        b"test_unsigned v=000000000000000000000000042\n"
        b"test_signed v=9223372036854775808\n"  # overflows int64: mismatch
        b"test_signed v=-9223372036854775809\n"
        b"test_unsigned v=18446744073709551616\n"
        b"test_unsigned v=-1\n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert typed_rows(c, "test_int_as_u")[0]["v"] == -1
    assert [r["v"] for r in typed_rows(c, "test_signed")] == [-(2**63), 2**63 - 1, 0]
    assert [r["v"] for r in typed_rows(c, "test_unsigned")] == [2**64 - 1, 42]
    assert c.rejected.column("line").to_pylist() == [7, 8, 9, 10]


def test_hex_overflow_is_a_mismatch():
    data = (
        b"postcopy_place_page host=0xffffffffffffffff\n"
        b"postcopy_place_page host=0x00000ffffffffffffffff\n"  # leading zeros don't count
        b"postcopy_place_page host=0x10000000000000000\n"  # 17 significant digits
        b"postcopy_place_page host=0XFF\n"  # %p prints 0x
    )
    c = decode(data)
    check_invariants(c, data)
    assert [r["host_addr"] for r in typed_rows(c, "postcopy_place_page")] == [2**64 - 1] * 2
    assert c.rejected.column("line").to_pylist() == [3, 4]


def test_alt_hex_pad_and_octal():
    data = (
        b"test_alt v=0x1f\n"
        b"test_alt v=0\n"
        b"test_alt v=0XfF\n"
        b"test_pad [   -5|  7]\n"
        b"test_pad [12345|255]\n"
        b"test_pad [-12345|256]\n"  # 256 wraps to uint8 0
        b"test_oct mode=0755\n"
        b"test_oct mode=37777777777\n"  # 2**32-1 in octal
        b"test_oct mode=8\n"
    )
    c = decode(data)
    check_invariants(c, data)
    assert [r["v"] for r in typed_rows(c, "test_alt")] == [0x1F, 0, 0xFF]
    assert [(r["v"], r["w"]) for r in typed_rows(c, "test_pad")] == [
        (-5, 7),
        (12345, 255),
        (-12345, 0),
    ]
    assert [r["v"] for r in typed_rows(c, "test_oct")] == [0o755, 2**32 - 1]
    assert c.rejected.column("line").to_pylist() == [9]


def test_float_and_char():
    data = (
        b"test_float a=1.500000 b=2e-05\n"
        b"test_float a=-inf b=nan\n"
        b"test_char c=A n=1\n"
        b"test_char c=  n=2\n"
        b"test_char c=AB n=3\n"
    )
    c = decode(data)
    check_invariants(c, data)
    fl = typed_rows(c, "test_float")
    assert fl[0]["a"] == 1.5 and fl[0]["b"] == 2e-05
    assert fl[1]["a"] == float("-inf") and np.isnan(fl[1]["b"])
    assert [(r["c"], r["n"]) for r in typed_rows(c, "test_char")] == [(65, 1), (32, 2)]
    assert c.rejected.column("line").to_pylist() == [5]


def test_variants_tried_in_catalog_order():
    data = b"test_two a=1 b=2\ntest_two a=3\ntest_two a=x\ntest_two b=1\n"
    c = decode(data)
    check_invariants(c, data)
    assert typed_rows(c, "test_two", 0) == [{"ts_ns": None, "tid": None, "line": 1, "a": 1, "b": 2}]
    assert typed_rows(c, "test_two", 1) == [{"ts_ns": None, "tid": None, "line": 2, "a": 3}]
    # "a=1 b=2" would also match variant 2 ("a=%s"): the first full match wins.
    assert typed_rows(c, "test_two", 2) == [{"ts_ns": None, "tid": None, "line": 3, "s": "x"}]
    (rej,) = c.rejected.to_pylist()
    assert rej["line"] == 4
    assert (
        rej["reason"]
        == "arguments of test_two do not match its format 'a=%d b=%d' or 'a=%d' or 'a=%s'"
    )


def test_event_without_usable_format_keeps_raw_args():
    assert catalog().variants("test_star")[0].plan is None
    data = b"test_star v=  5\n1@2.3:test_star anything at all\n"
    c = decode(data)
    check_invariants(c, data)
    assert [e["args"] for e in events(c)] == ["v=  5", "anything at all"]
    assert c.typed == {} and c.rejected.num_rows == 0


def test_strict_mode_raises_with_line_number():
    data = b"migrate_set_state new state a\n1@2.3:postcopy_place_page host=zz\n1@2.3:\n"
    c = decode(data, first_line=41)
    assert c.rejected.column("line").to_pylist() == [42, 43]
    with pytest.raises(FormatError) as exc:
        decode(data, first_line=41, strict=True)
    assert exc.value.line == 42
    assert exc.value.path == "t.log"
    assert "postcopy_place_page" in exc.value.message
    assert str(exc.value).startswith("t.log:42: arguments of postcopy_place_page")
    decode(b"migrate_set_state new state a\n", strict=True)  # nothing rejected: no error


def test_registry_is_shared_across_blocks():
    cx = ctx()
    a = decode_block_arrow(b"zz_b x\nHello there\nyy_a y\n", 1, cx)
    b = decode_block_arrow(b"xx_c z\nyy_a w\nzz_b v\n", 4, cx)
    assert a.events.column("event").dictionary.to_pylist() == ["zz_b", "yy_a"]
    assert b.events.column("event").dictionary.to_pylist() == ["zz_b", "yy_a", "xx_c"]
    assert b.events.column("event").indices.to_pylist() == [2, 1, 0]
    assert [e["event"] for e in events(b)] == ["xx_c", "yy_a", "zz_b"]
    assert b.events.column("line").to_pylist() == [4, 5, 6]


def test_registry_order_is_first_event_line():
    # The first postcopy_place_page line is rejected: its name is registered at line 3 only.
    c = decode(b"postcopy_place_page host=zz\nzz_b x\npostcopy_place_page host=0x1\n")
    assert c.events.column("event").dictionary.to_pylist() == ["zz_b", "postcopy_place_page"]
    assert c.events.column("event").indices.to_pylist() == [0, 1]


# ---------------------------------------------------------------------------------------------
# Number helper


def test_parse_radix_u64_against_python():
    rng = random.Random(7)
    cases: list[tuple[str, int]] = []
    for base, fmt in ((16, "x"), (8, "o"), (10, "d")):
        for _ in range(400):
            v = rng.choice([rng.getrandbits(rng.randint(1, 70)), 2**64 - 1, 2**64, 0])
            text = format(v, fmt)
            text = "0" * rng.choice([0, 0, 3, 30]) + text
            cases.append((text, v))
        texts = [t for t, _ in cases]
        vals, over = parse_radix_u64(pa.array(texts).slice(0), base)
        for (text, _), got, o in zip(cases, vals.tolist(), over.tolist(), strict=True):
            want = int(text, base)
            assert o == (want >= 2**64), text
            assert got == want % 2**64, text
        cases.clear()
    vals, over = parse_radix_u64(pa.array(["", "12", "", "F"]).slice(1), 16)
    assert vals.tolist() == [0x12, 0, 0xF] and not over.any()
    _, bad = parse_radix_u64(pa.array(["0x1f", "19", "(nil)", "ffffffffffffffffg", "7"]), 8)
    assert bad.tolist() == [True, True, True, True, False]


# ---------------------------------------------------------------------------------------------
# Against a plain-Python decoding of real lines

SAMPLE = Path("/work/shared/traces/qemu-7.2/a-balloon-during-postcopy/dst.trace.log.gz")
TRACE_EVENTS_ALL = Path(
    "/work/shared/traces/qemu-7.2/d-simpletrace-balloon-during-postcopy/trace-events-all"
)


def _py_value(text: str | None, conv: Conv, kind: ArgKind, bits: int):
    """One argument the slow, obvious way (Python ints)."""
    if kind is ArgKind.STRING:
        return None if text == "(null)" else text
    text = text.lstrip(" ")
    if conv is Conv.PTR:
        v = 0 if text == "(nil)" else int(text[2:], 16)
    elif conv is Conv.HEX:
        v = int(text[2:] if text[:2] in ("0x", "0X") else text, 16)
    elif conv is Conv.OCT:
        v = int(text, 8)
    elif conv is Conv.CHAR:
        v = text.encode()[0]
    else:
        v = int(text)
    v %= 2**64
    if kind is ArgKind.BOOL:
        return v != 0
    v %= 2**bits
    if kind is ArgKind.SIGNED and v >= 2 ** (bits - 1):
        v -= 2**bits
    return v


@pytest.mark.skipif(not (SAMPLE.exists() and TRACE_EVENTS_ALL.exists()), reason="no sample")
def test_real_trace_sample_against_python():
    defs = parse_trace_events(TRACE_EVENTS_ALL.read_text(), "trace-events-all")
    cat = Catalog(defs)
    with gzip.open(SAMPLE) as f:
        raw = b"".join(f.readline() for _ in range(3000))
    # Pick some lines from further on too (balloon and postcopy events).
    with gzip.open(SAMPLE) as f:
        tail = f.read(40 << 20)
    tail_lines = tail.splitlines(keepends=True)[:-1]
    for word in (b"balloon", b"postcopy"):
        raw += b"".join([ln for ln in tail_lines if word in ln][:2000])
    c = decode_block_arrow(raw, 1, LogContext(ParseOptions(catalog=cat), path="s.log"))
    check_invariants_with(c, raw, cat)
    lines = raw.decode().splitlines()
    assert c.events.num_rows == len(lines) and c.rejected.num_rows == 0
    seen = set()
    for (name, vi), batch in c.typed.items():
        ev = cat.variants(name)[vi]
        rx = re.compile(plan_to_regex(ev.plan))
        for row in batch.to_pylist():
            text = lines[row["line"] - 1]
            m = re.fullmatch(r"(\d+)@(\d+)\.(\d+):(\w+)(?: (.*))?", text)
            assert row["tid"] == int(m.group(1))
            assert row["ts_ns"] == int(m.group(2)) * 10**9 + int(m.group(3)) * 1000
            assert m.group(4) == name
            am = rx.match(m.group(5) or "")
            assert am is not None
            for i, col in enumerate(ev.columns()):
                want = _py_value(am.group(f"a{i}"), col.conv, col.kind, col.bits)
                assert row[col.name] == want, (text, col)
            seen.add(name)
    assert {
        "virtio_balloon_handle_output",
        "ram_block_discard_range",
        "migrate_set_state",
        "postcopy_place_page",
    } <= seen


def check_invariants_with(chunk, data: bytes, cat: Catalog) -> None:
    n = chunk.events.num_rows + chunk.other.num_rows + chunk.rejected.num_rows
    assert chunk.lines == n == data.count(b"\n")
    for (name, vi), batch in chunk.typed.items():
        assert batch.schema == typed_schema(cat.variants(name)[vi])
    assert sum(b.num_rows for b in chunk.typed.values()) <= chunk.events.num_rows
