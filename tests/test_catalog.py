"""Catalog: trace-events grammar, printf plans, C type classification, bundled definitions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracetool.catalog import (
    ArgKind,
    Catalog,
    Conv,
    compile_format,
    parse_ctype,
    parse_trace_events,
    plan_to_regex,
    read_trace_events,
)
from tracetool.catalog.fmt import FLAG_ALT, FLAG_PAD
from tracetool.errors import CatalogError

TRACE_EVENTS_72 = (
    Path(__file__).resolve().parents[2]
    / "shared/traces/qemu-7.2/d-simpletrace-balloon-during-postcopy/trace-events-all"
)
V72 = (7, 2)


def one(text: str):
    defs = parse_trace_events(text, "t.trace-events")
    assert len(defs) == 1
    return defs[0]


def covers(ev, version) -> bool:
    lo, hi = ev.versions
    return (lo is None or lo <= version) and (hi is None or version <= hi)


# --------------------------------------------------------------------------- grammar


def test_plain_definition():
    ev = one(
        'ram_discard_range(const char *rbname, uint64_t start, size_t len) "%s: start: %" PRIx64 " %zx"'
    )
    assert ev.name == "ram_discard_range"
    assert [a.name for a in ev.args] == ["rbname", "start", "len"]
    assert [a.ctype.decl for a in ev.args] == ["const char *", "uint64_t", "size_t"]
    assert ev.fmt == "%s: start: %llx %zx"
    assert ev.properties == frozenset()
    assert ev.plan is not None and ev.plan.nconv == 3
    assert ev.plan_error is None
    assert ev.source == "t.trace-events:1"


def test_properties():
    ev = one('disable foo_bar(int x) "x %d"')
    assert ev.name == "foo_bar"
    assert ev.properties == frozenset({"disable"})
    assert [a.name for a in ev.args] == ["x"]


def test_vcpu_adds_implicit_cpu_argument_and_prefix():
    ev = one('vcpu guest_thing(uint32_t n) "n=%u"')
    assert ev.properties == frozenset({"vcpu"})
    assert [a.name for a in ev.args] == ["__cpu", "n"]
    assert ev.args[0].ctype.kind is ArgKind.POINTER
    assert ev.fmt == "cpu=%p n=%u"
    assert [c.name for c in ev.columns()] == ["__cpu", "n"]
    assert [c.kind for c in ev.columns()] == [ArgKind.POINTER, ArgKind.UNSIGNED]


def test_vcpu_without_format():
    ev = one("vcpu guest_cpu_enter(void)")
    assert [a.name for a in ev.args] == ["__cpu"]
    assert ev.fmt is None
    assert ev.plan is None
    assert ev.columns() == []


def test_tcg_event_gives_trans_and_exec_untyped():
    defs = parse_trace_events(
        'vcpu tcg guest_mem_before(uint64_t vaddr, uint8_t info) "info=%d", '
        '"vaddr=0x%016"PRIx64" info=%d"',
        "t",
    )
    assert [d.name for d in defs] == ["guest_mem_before_trans", "guest_mem_before_exec"]
    for d in defs:
        assert d.fmt is None and d.plan is None
        assert d.properties == frozenset({"vcpu", "tcg"})
        assert [a.name for a in d.args] == ["__cpu", "vaddr", "info"]


def test_void_arguments():
    ev = one('postcopy_ram_enable_notify(void) ""')
    assert ev.args == ()
    assert ev.fmt == ""
    assert ev.plan is not None and ev.plan.nconv == 0 and ev.plan.tokens == ()
    assert ev.signature() == "postcopy_ram_enable_notify(void)"


def test_empty_argument_list():
    assert one('foo() ""').args == ()


def test_pri_macros_are_concatenated():
    ev = one(
        "blk(uint64_t a, uint32_t b, uint8_t c, uintptr_t p) "
        '"a=0x%" PRIx64 " b=%"PRIu32" c=%" PRIu8 " p=%" PRIxPTR'
    )
    assert ev.fmt == "a=0x%llx b=%llu c=%llu p=%llx"
    assert [t.kind for t in ev.plan.conversions] == [
        Conv.HEX,
        Conv.UNSIGNED,
        Conv.UNSIGNED,
        Conv.HEX,
    ]


def test_adjacent_literals_and_trailing_empty_literal():
    ev = one(
        'virtio_balloon_handle_output(const char *name, uint64_t gpa) "setion name: %s gpa: %"PRIx64""'
    )
    assert ev.fmt == "setion name: %s gpa: %llx"


def test_escapes():
    ev = one(
        r'vmstate_load_field_error(const char *field, int ret) "field \"%s\" load failed,\tret = %d \\ end"'
    )
    assert ev.fmt == 'field "%s" load failed,\tret = %d \\ end'
    assert ev.plan.nconv == 2


def test_pointer_and_spacing_in_arguments():
    ev = one('x(const char  *a,  void*b, char **c, unsigned long long d) "%s %p %p %llu"')
    assert [(a.ctype.decl, a.name) for a in ev.args] == [
        ("const char  *", "a"),
        ("void*", "b"),
        ("char **", "c"),
        ("unsigned long long", "d"),
    ]
    assert [a.ctype.kind for a in ev.args] == [
        ArgKind.STRING,
        ArgKind.POINTER,
        ArgKind.POINTER,
        ArgKind.UNSIGNED,
    ]


def test_comments_and_blank_lines_are_skipped():
    defs = parse_trace_events('# a comment\n\n   \n# savevm.c\nfoo(int a) "%d"\n', "t")
    assert [d.name for d in defs] == ["foo"]
    assert defs[0].source == "t:5"


def test_version_annotation_applies_to_next_definition_only():
    defs = parse_trace_events(
        '#@ versions: 2.5-2.10\nfoo(int a) "%d"\nbar(int a) "%d"\n'
        '#@ versions: 10.1-\nbaz(void) ""\n#@ versions: -2.9\nqux(void) ""\n',
        "t",
    )
    got = {d.name: d.versions for d in defs}
    assert got == {
        "foo": ((2, 5), (2, 10)),
        "bar": (None, None),
        "baz": ((10, 1), None),
        "qux": (None, (2, 9)),
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('ok(int a) "%d"\nthis is not an event\n', 2),
        ('ok(int a) "%d"\n\nbad(a) "%d"\n', 3),
        ('bad(int a) "%d" PRIfoo\n', 1),
        ('ok(void) ""\n# c\nbad(int a) "%d" garbage "x"\n', 3),
    ],
)
def test_bad_line_raises_catalog_error_with_file_and_line(text, line):
    with pytest.raises(CatalogError) as info:
        parse_trace_events(text, "events/x.trace-events")
    assert info.value.path == "events/x.trace-events"
    assert info.value.line == line
    assert str(info.value).startswith(f"events/x.trace-events:{line}: ")


def test_unreadable_file_raises_catalog_error(tmp_path):
    with pytest.raises(CatalogError) as info:
        read_trace_events(tmp_path / "missing.trace-events")
    assert "missing.trace-events" in str(info.value)


def test_plan_error_is_recorded_not_raised():
    ev = one('foo(int a) "%d %d"')
    assert ev.plan is None
    assert ev.plan_error is not None and ev.plan_error.startswith("t.trace-events:1: ")


# --------------------------------------------------------------------------- format compiler


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("%d", Conv.SIGNED),
        ("%i", Conv.SIGNED),
        ("%lld", Conv.SIGNED),
        ("%zd", Conv.SIGNED),
        ("%u", Conv.UNSIGNED),
        ("%lu", Conv.UNSIGNED),
        ("%hhu", Conv.UNSIGNED),
        ("%x", Conv.HEX),
        ("%X", Conv.HEX),
        ("%zx", Conv.HEX),
        ("%o", Conv.OCT),
        ("%p", Conv.PTR),
        ("%s", Conv.STRING),
        ("%c", Conv.CHAR),
        ("%f", Conv.FLOAT),
        ("%g", Conv.FLOAT),
        ("%e", Conv.FLOAT),
    ],
)
def test_each_conversion_kind(spec, kind):
    plan = compile_format(f"v={spec};", 1)
    assert [t.kind for t in plan.tokens] == [Conv.LITERAL, kind, Conv.LITERAL]
    assert plan.tokens[0].literal == b"v="
    assert plan.tokens[2].literal == b";"
    assert plan.tokens[1].arg == 0
    assert plan.tokens[1].flags == 0
    assert plan.nconv == 1


def test_percent_percent_is_literal():
    plan = compile_format("100%% of %d%%", 1)
    assert [t.kind for t in plan.tokens] == [Conv.LITERAL, Conv.SIGNED, Conv.LITERAL]
    assert plan.tokens[0].literal == b"100% of "
    assert plan.tokens[2].literal == b"%"
    assert re.fullmatch(plan_to_regex(plan), "100% of 7%")


def test_argument_indices_follow_conversions():
    plan = compile_format("%s:%lx/%lx", 3)
    assert [t.arg for t in plan.conversions] == [0, 1, 2]
    assert plan.conversions == tuple(t for t in plan.tokens if t.kind is not Conv.LITERAL)


def test_width_sets_pad_flag():
    plan = compile_format("[%5d] [%08x] [%d]", 3)
    flags = [t.flags for t in plan.conversions]
    assert flags == [FLAG_PAD, FLAG_PAD, 0]
    rx = plan_to_regex(plan)
    m = re.fullmatch(rx, "[   42] [0000beef] [-3]")
    assert m and m.group("a0") == "42" and m.group("a1") == "0000beef" and m.group("a2") == "-3"


def test_alt_flag_allows_0x():
    plan = compile_format("v=%#x", 1)
    assert plan.conversions[0].flags == FLAG_ALT
    rx = plan_to_regex(plan)
    assert re.fullmatch(rx, "v=0x1f").group("a0") == "0x1f"
    assert re.fullmatch(rx, "v=0").group("a0") == "0"
    assert not re.fullmatch(plan_to_regex(compile_format("v=%x", 1)), "v=0x1f")


def test_star_width_or_precision_rejected():
    with pytest.raises(CatalogError, match=r"\*"):
        compile_format("%*d", 2)
    with pytest.raises(CatalogError, match=r"\*"):
        compile_format("%.*s", 2)


def test_more_conversions_than_arguments_rejected():
    with pytest.raises(CatalogError, match="2 conversions but only 1 arguments"):
        compile_format("%d %d", 1)
    assert compile_format("%d %d", 2).nconv == 2
    assert compile_format("%d %d").nconv == 2  # no argument count: not checked


@pytest.mark.parametrize("fmt", ["%m", "%n", "abc %", "%y"])
def test_unsupported_conversion_rejected(fmt):
    with pytest.raises(CatalogError):
        compile_format(fmt, 1)


def test_regex_specifics():
    rx = plan_to_regex(compile_format("p=%p s=%s c=%c g=%g o=%o", 5))
    m = re.fullmatch(rx, "p=(nil) s=a b c=  g=-1.5e+20 o=755")
    assert m is not None
    assert m.group("a0") == "(nil)"
    assert m.group("a1") == "a b"
    assert m.group("a2") == " "
    assert m.group("a3") == "-1.5e+20"
    assert m.group("a4") == "755"
    assert re.fullmatch(rx, "p=0x7f00dead s= c=x g=inf o=0").group("a0") == "0x7f00dead"
    assert not re.fullmatch(rx, "p=123 s= c=x g=1 o=0")
    assert not re.fullmatch(rx, "p=(nil) s= c=x g=1 o=8")
    assert re.fullmatch(plan_to_regex(compile_format("%u", 1)), "-1") is None


def test_string_is_shortest_match_and_reaches_end_when_last():
    rx = plan_to_regex(compile_format("%s: %s", 2))
    m = re.fullmatch(rx, "a: b: c")
    assert m.group("a0") == "a" and m.group("a1") == "b: c"


# --------------------------------------------------------------------------- C types


@pytest.mark.parametrize(
    ("decl", "kind", "bits"),
    [
        ("const char *", ArgKind.STRING, 64),
        ("char *", ArgKind.STRING, 64),
        ("const char **", ArgKind.POINTER, 64),
        ("void *", ArgKind.POINTER, 64),
        ("const void *", ArgKind.POINTER, 64),
        ("CPUState *", ArgKind.POINTER, 64),
        ("const uint8_t *", ArgKind.POINTER, 64),
        ("uint32_t", ArgKind.UNSIGNED, 32),
        ("uint8_t", ArgKind.UNSIGNED, 8),
        ("uint64_t", ArgKind.UNSIGNED, 64),
        ("int", ArgKind.SIGNED, 32),
        ("int64_t", ArgKind.SIGNED, 64),
        ("unsigned", ArgKind.UNSIGNED, 32),
        ("unsigned int", ArgKind.UNSIGNED, 32),
        ("unsigned long", ArgKind.UNSIGNED, 64),
        ("long", ArgKind.SIGNED, 64),
        ("const int", ArgKind.SIGNED, 32),
        ("bool", ArgKind.BOOL, 8),
        ("size_t", ArgKind.UNSIGNED, 64),
        ("ssize_t", ArgKind.SIGNED, 64),
        ("hwaddr", ArgKind.UNSIGNED, 64),
        ("double", ArgKind.FLOAT, 64),
        ("MigrationStatus", ArgKind.SIGNED, 64),
        ("enum RunState", ArgKind.SIGNED, 64),
    ],
)
def test_ctype_classification(decl, kind, bits):
    ct = parse_ctype(decl)
    assert ct.decl == decl
    assert ct.kind is kind
    assert ct.bits == bits
    assert ct.is_string is (kind is ArgKind.STRING)


def test_columns_follow_conversions():
    ev = one('x(const char *name, const char *raw, uint32_t n, bool b) "%s %p %u %d"')
    cols = ev.columns()
    assert [(c.name, c.kind, c.bits, c.conv) for c in cols] == [
        ("name", ArgKind.STRING, 64, Conv.STRING),
        ("raw", ArgKind.POINTER, 64, Conv.PTR),
        ("n", ArgKind.UNSIGNED, 32, Conv.UNSIGNED),
        ("b", ArgKind.BOOL, 8, Conv.SIGNED),
    ]


# --------------------------------------------------------------------------- regex round trip

_LITERAL = st.text(alphabet=" :=,;|/()[]<>@#!%", min_size=1, max_size=4)
_VALUE_TEXT = st.text(alphabet="abcXYZ019_.-", max_size=8)
_CONVERSIONS = {
    "%d": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "%u": st.integers(min_value=0, max_value=2**64 - 1),
    "%x": st.integers(min_value=0, max_value=2**64 - 1),
    "%s": _VALUE_TEXT,
}


@st.composite
def _format_and_values(draw):
    n = draw(st.integers(min_value=0, max_value=5))
    specs = [draw(st.sampled_from(sorted(_CONVERSIONS))) for _ in range(n)]
    maybe_literal = st.one_of(st.just(""), _LITERAL)
    lead = draw(maybe_literal)
    # between two conversions a literal is needed to tell them apart; the last may be empty
    after = [draw(_LITERAL) for _ in range(n - 1)] + [draw(maybe_literal)] if n else []
    fmt = lead.replace("%", "%%")
    for spec, lit in zip(specs, after, strict=True):
        fmt += spec + lit.replace("%", "%%")
    values = [draw(_CONVERSIONS[s]) for s in specs]
    return fmt, specs, values


@settings(max_examples=300, deadline=None)
@given(_format_and_values())
def test_plan_to_regex_recovers_printed_values(case):
    fmt, specs, values = case
    text = fmt % tuple(values)
    plan = compile_format(fmt, len(specs))
    assert plan.nconv == len(specs)
    m = re.fullmatch(plan_to_regex(plan), text)
    assert m is not None, (fmt, text)
    for i, (spec, value) in enumerate(zip(specs, values, strict=True)):
        got = m.group(f"a{i}")
        if spec == "%x":
            assert int(got, 16) == value
        elif spec == "%s":
            assert got == value
        else:
            assert int(got) == value


# --------------------------------------------------------------------------- bundled catalog


@pytest.fixture(scope="module")
def bundled() -> Catalog:
    return Catalog.bundled()


def test_bundled_loads_without_plan_errors(bundled):
    assert len(bundled) > 300
    assert bundled.plan_errors() == []
    assert Catalog.bundled() is bundled  # cached


def test_bundled_files_exist_and_have_headers():
    from importlib import resources

    data = resources.files("tracetool.catalog") / "data"
    names = sorted(p.name for p in data.iterdir() if p.name.endswith(".trace-events"))
    assert names == [
        "balloon.trace-events",
        "migration.trace-events",
        "postcopy.trace-events",
        "qmp.trace-events",
        "ram.trace-events",
        "savevm.trace-events",
    ]
    for name in names:
        text = (data / name).read_text(encoding="utf-8")
        assert text.startswith("# tracetool bundled catalog:"), name


def test_every_bundled_definition_is_typed_and_annotated(bundled):
    for name in bundled:
        for ev in bundled.variants(name):
            assert ev.versions != (None, None), ev.source
            assert ev.versions[0] is not None, ev.source
            assert ev.plan is not None, ev.source
            assert ev.plan.nconv == len(ev.args), ev.source
            assert ev.source.startswith("bundled:")


def _by_version(variants):
    return sorted(variants, key=lambda v: v.versions[0], reverse=True)


def test_variant_ranges_do_not_overlap(bundled):
    for name in bundled:
        newest_first = _by_version(bundled.variants(name))
        for a, b in zip(newest_first, newest_first[1:], strict=False):
            a_lo, _ = a.versions
            _, b_hi = b.versions
            assert b_hi is not None, (name, b.source)
            assert b_hi < a_lo, (name, a.source, b.source)


def _first_match(bundled, name, text):
    for ev in bundled.variants(name):
        if re.fullmatch(plan_to_regex(ev.plan), text):
            return ev
    return None


@pytest.mark.parametrize(
    ("name", "text", "versions"),
    [
        ("migrate_set_state", "new state 4", ((2, 5), (2, 10))),
        ("migrate_set_state", "new state postcopy-active", ((2, 11), None)),
        ("loadvm_process_command", "com=0x3 len=0", ((2, 5), (6, 2))),
        ("loadvm_process_command", "com=POSTCOPY_ADVISE len=16", ((7, 0), None)),
        ("savevm_send_ping", "0x3", ((2, 10), None)),
        ("savevm_send_ping", "3", ((2, 5), (2, 9))),
        ("virtio_balloon_handle_output", "section name: pc.ram gpa: 0x1000", ((2, 10), None)),
        ("virtio_balloon_handle_output", "section name: pc.ram gpa: 1000", ((2, 6), (2, 9))),
        ("virtio_balloon_handle_output", "setion name: pc.ram gpa: 1000", ((2, 3), (2, 5))),
        ("process_incoming_migration_co_end", "ret=0", ((10, 1), None)),
        ("process_incoming_migration_co_end", "ret=0 postcopy-state=5", ((2, 5), (10, 0))),
        (
            "postcopy_ram_fault_thread_request",
            "Request for HVA=0x7f0000001000 rb=pc.ram offset=0x1000 pid=4242",
            ((3, 0), None),
        ),
        (
            "postcopy_ram_fault_thread_request",
            "Request for HVA=7f0000001000 rb=pc.ram offset=1000",
            ((2, 5), (2, 9)),
        ),
    ],
)
def test_decoder_order_picks_the_variant_that_printed_the_line(bundled, name, text, versions):
    ev = _first_match(bundled, name, text)
    assert ev is not None and ev.versions == versions


def _variant(bundled, name, versions):
    matches = [v for v in bundled.variants(name) if v.versions == versions]
    assert len(matches) == 1, (name, versions, [v.versions for v in bundled.variants(name)])
    return matches[0]


def test_migrate_set_state_int_then_string(bundled):
    new, old = _by_version(bundled.variants("migrate_set_state"))
    assert new.versions == ((2, 11), None)
    assert [c.kind for c in new.columns()] == [ArgKind.STRING]
    assert old.versions == ((2, 5), (2, 10))
    assert [c.kind for c in old.columns()] == [ArgKind.SIGNED]
    assert old.fmt == "new state %d" and new.fmt == "new state %s"


def test_fault_thread_request_gains_pid_in_3_0(bundled):
    variants = _by_version(bundled.variants("postcopy_ram_fault_thread_request"))
    assert [v.versions for v in variants] == [((3, 0), None), ((2, 10), (2, 12)), ((2, 5), (2, 9))]
    assert [len(v.args) for v in variants] == [4, 3, 3]
    assert variants[0].args[3].name == "pid"
    assert "0x%" in variants[1].fmt and "0x%" not in variants[2].fmt


def test_2_5_balloon_typos_keep_column_names(bundled):
    for name in ("virtio_balloon_get_config", "virtio_balloon_set_config"):
        new = _variant(bundled, name, ((2, 6), None))
        old = _variant(bundled, name, ((2, 3), (2, 5)))
        assert "acutal" in old.fmt and "acutal" not in new.fmt
        assert [(c.name, c.kind, c.bits) for c in old.columns()] == [
            (c.name, c.kind, c.bits) for c in new.columns()
        ]
    old = _variant(bundled, "virtio_balloon_handle_output", ((2, 3), (2, 5)))
    assert old.fmt.startswith("setion name: ")
    new = _variant(bundled, "virtio_balloon_handle_output", ((2, 10), None))
    assert new.fmt == "section name: %s gpa: 0x%llx"


@pytest.mark.parametrize(
    ("name", "versions", "nargs"),
    [
        ("loadvm_process_command", ((2, 5), (6, 2)), 2),
        ("loadvm_process_command", ((7, 0), None), 2),
        ("loadvm_postcopy_handle_listen", ((2, 5), (6, 2)), 0),
        ("loadvm_postcopy_handle_listen", ((7, 0), None), 1),
        ("loadvm_postcopy_handle_run_cpu_sync", ((2, 5), (6, 2)), 0),
        ("loadvm_postcopy_handle_run_bh", ((7, 0), (8, 1)), 1),
        ("vmstate_downtime_checkpoint", ((8, 2), None), 1),
        ("ram_load_postcopy_loop", ((2, 5), (7, 0)), 2),
        ("ram_load_postcopy_loop", ((7, 1), None), 3),
        ("get_queued_page", ((2, 5), (2, 9)), 3),
        ("get_queued_page_not_dirty", ((2, 5), (2, 9)), 4),
        ("get_queued_page_not_dirty", ((2, 10), (4, 1)), 4),
        ("get_queued_page_not_dirty", ((4, 2), None), 3),
        ("process_incoming_migration_co_end", ((2, 5), (10, 0)), 2),
        ("process_incoming_migration_co_end", ((10, 1), None), 1),
        ("mark_postcopy_blocktime_begin", ((3, 0), (10, 0)), 5),
        ("postcopy_blocktime_begin", ((10, 1), None), 4),
        ("get_mem_fault_cpu_index", ((3, 0), (10, 0)), 2),
        ("postcopy_blocktime_tid_cpu_map", ((10, 1), None), 2),
        ("postcopy_ram_discard_range", ((2, 5), (2, 8)), 2),
        ("ram_discard_range", ((2, 9), None), 3),
        ("ram_block_discard_range", ((2, 12), None), 6),
        ("savevm_send_ping", ((2, 5), (2, 9)), 1),
        ("savevm_send_ping", ((2, 10), None), 1),
        ("qmp_enter_query_balloon", ((7, 0), None), 1),
        ("qmp_exit_migrate_start_postcopy", ((7, 0), None), 2),
    ],
)
def test_version_history(bundled, name, versions, nargs):
    assert len(_variant(bundled, name, versions).args) == nargs


def test_loadvm_process_command_numeric_then_named(bundled):
    new = _variant(bundled, "loadvm_process_command", ((7, 0), None))
    old = _variant(bundled, "loadvm_process_command", ((2, 5), (6, 2)))
    assert old.fmt == "com=0x%x len=%d"
    # the column type follows the C type (uint16_t), the conversion is kept beside it
    assert [(c.kind, c.bits, c.conv) for c in old.columns()] == [
        (ArgKind.UNSIGNED, 16, Conv.HEX),
        (ArgKind.UNSIGNED, 16, Conv.SIGNED),
    ]
    assert new.fmt == "com=%s len=%d"
    assert [c.kind for c in new.columns()] == [ArgKind.STRING, ArgKind.UNSIGNED]


def test_qmp_events_for_a_migration_test(bundled):
    commands = [
        "query_migrate",
        "query_balloon",
        "balloon",
        "migrate",
        "migrate_incoming",
        "migrate_start_postcopy",
        "migrate_set_capabilities",
        "migrate_set_parameters",
        "query_status",
        "query_version",
        "quit",
        "trace_event_set_state",
        "query_migrate_capabilities",
        "query_migrate_parameters",
        "qmp_capabilities",
    ]
    for cmd in commands:
        (enter,) = bundled.variants(f"qmp_enter_{cmd}")
        (leave,) = bundled.variants(f"qmp_exit_{cmd}")
        assert enter.fmt == "%s" and [c.kind for c in enter.columns()] == [ArgKind.STRING]
        assert leave.fmt == "%s %d"
        assert [c.kind for c in leave.columns()] == [ArgKind.STRING, ArgKind.BOOL]


# --------------------------------------------------------------------------- against QEMU 7.2


@pytest.fixture(scope="module")
def qemu72():
    if not TRACE_EVENTS_72.is_file():
        pytest.skip(f"{TRACE_EVENTS_72} not available")
    defs = read_trace_events(TRACE_EVENTS_72)
    by_name = {d.name: d for d in defs}
    assert len(by_name) == len(defs)  # names are unique in one build
    return by_name


def _shape(ev):
    return (ev.name, tuple(a.ctype.decl for a in ev.args), tuple(a.name for a in ev.args), ev.fmt)


def test_7_2_definitions_identical_to_the_7_2_build(bundled, qemu72):
    compared = 0
    for name in bundled:
        for ev in bundled.variants(name):
            if not covers(ev, V72):
                continue
            assert name in qemu72, f"{ev.source}: {name} covers 7.2 but is not in the 7.2 build"
            assert _shape(ev) == _shape(qemu72[name]), ev.source
            compared += 1
    assert compared > 300


def test_only_one_variant_per_release(bundled):
    releases = [(2, 5), (2, 9), (2, 10), (4, 1), (6, 2), (7, 0), (7, 2), (8, 2), (10, 0), (10, 1)]
    for version in releases:
        for name in bundled:
            live = [ev for ev in bundled.variants(name) if covers(ev, version)]
            assert len(live) <= 1, (name, version)


def test_7_2_subsystems_fully_bundled(bundled, qemu72):
    prefixes = (
        "virtio_balloon_", "postcopy_", "mark_postcopy_", "savevm_", "qemu_savevm_", "loadvm_",
        "qemu_loadvm_", "vmstate_", "ram_", "get_queued_page", "migrate_", "migration_",
        "source_return_path_", "process_incoming_migration", "multifd_", "qemu_rdma_",
        "dirty_bitmap_",
    )  # fmt: skip
    wanted = {n for n in qemu72 if n.startswith(prefixes)}
    wanted |= {"balloon_event", "virtio_queue_notify", "runstate_set", "vm_state_notify"}
    wanted |= {"get_mem_fault_cpu_index", "await_return_path_close_on_source_close"}
    missing = sorted(n for n in wanted if not any(covers(v, V72) for v in bundled.variants(n)))
    assert missing == []


def test_an_argument_named_like_a_key_column_is_renamed(tmp_path):
    """postcopy_blocktime_tid_cpu_map(int cpu, uint32_t tid): the typed table keeps one
    ``tid`` (the thread that wrote the line) and the argument becomes ``arg_tid``."""
    import tracetool
    from tracetool.catalog.grammar import KEY_NAMES
    from tracetool.schema import EVENT_KEY_FIELDS

    assert {f.name for f in EVENT_KEY_FIELDS} == KEY_NAMES
    p = tmp_path / "t.log"
    p.write_text("4242@1760000000.000001:postcopy_blocktime_tid_cpu_map cpu: 0, tid: 777\n")
    t = tracetool.load(p).table("postcopy_blocktime_tid_cpu_map")
    assert t.column_names == ["ts_ns", "tid", "line", "cpu", "arg_tid"]
    assert t.to_pylist()[0]["tid"] == 4242
    assert t.to_pylist()[0]["arg_tid"] == 777
