"""``tracetool check``: the committed baselines pass, an altered trace or baseline fails naming the
field, errors exit 2, limits, and the JUnit XML report."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import DST_EXCERPT, SAMPLES, SRC_EXCERPT, run_cli
from tracetool.check import Change, Limit, LimitKind, baseline_name, diff, golden
from tracetool.errors import CheckError

EXPECTED = SAMPLES / "expected"
D_CUT = SAMPLES / "qemu-7.2" / "d-dst-excerpt.trace.simple.gz"
CLASSES_SAMPLE = SAMPLES / "synthetic" / "conflict-classes.log.gz"
CLASSES_TRUTH = SAMPLES / "synthetic" / "conflict-classes.truth.json"


def check(monkeypatch, capsys, *args):
    code, out, err = run_cli(monkeypatch, capsys, "check", *args)
    return code, out, err


def check_json(monkeypatch, capsys, *args):
    code, out, err = check(monkeypatch, capsys, *args, "--json")
    return code, json.loads(out), err


# -- comparison ---------------------------------------------------------------------------------


def test_diff_names_fields_by_dotted_path():
    base = {"a": 1, "b": {"c": [1, 2, {"d": "x"}], "e": True}, "gone": 0, "f": 0.1}
    cur = {"a": 1, "b": {"c": [1, 3, {"d": "y"}, 4], "e": 1}, "new": 5, "f": 0.1 + 1e-12}
    got = {c.field: (c.baseline, c.current) for c in diff(base, cur)}
    assert set(got) == {"b.c[1]", "b.c[2].d", "b.c[3]", "b.e", "gone", "new"}
    assert got["b.c[1]"] == (2, 3) and got["b.e"] == (True, 1)  # a bool is not an int
    assert Change("x.y", 1, 2).text() == "x.y: 1 -> 2"
    assert "(absent)" in next(c for c in diff(base, cur) if c.field == "new").text()


def test_long_strings_are_shown_around_their_first_difference():
    """A reworded long message (e.g. a missing-event hint) shows the words that changed."""
    head = "analysis 'postcopy_faults' needs " + "postcopy_page_req_add or " * 8
    b, c = Change("m", head + "(a) and b", head + "(a) or b").shown()
    assert "and b" in b and "or b" in c and b.startswith('"...') and len(b) <= 130
    assert Change("m", "x" * 300, "x" * 300 + "y").shown()[1].endswith('y"')


def test_golden_leaves_out_volatile_values_at_any_depth():
    doc = {"path": "p", "engine": "arrow", "x": [{"parse_seconds": 1, "y": 2}], "z": 3}
    assert golden(doc) == {"x": [{"y": 2}], "z": 3}


def test_baseline_name_drops_the_compression_suffix_only():
    assert baseline_name("d/a.trace.log.gz") == "a.trace.log.json"
    assert baseline_name("t.simple") == "t.simple.json"


# -- the committed baselines --------------------------------------------------------------------


def test_check_passes_on_committed_baselines(monkeypatch, capsys):
    traces = [DST_EXCERPT, D_CUT, CLASSES_SAMPLE]
    code, res, _ = check_json(monkeypatch, capsys, *traces, "--baseline", EXPECTED)
    assert code == 0
    assert [t["status"] for t in res["traces"]] == ["ok"] * 3


def test_altered_trace_fails_naming_the_field(monkeypatch, capsys, tmp_path):
    """One balloon request line removed from a copy of the excerpt (same name)."""
    lines = gzip.decompress(DST_EXCERPT.read_bytes()).decode().splitlines(keepends=True)
    i = next(i for i, s in enumerate(lines) if ":virtio_balloon_handle_output " in s)
    n = sum(":virtio_balloon_handle_output " in s for s in lines)
    altered = tmp_path / DST_EXCERPT.name
    altered.write_bytes(gzip.compress("".join(lines[:i] + lines[i + 1 :]).encode()))
    code, res, _ = check_json(monkeypatch, capsys, altered, "--baseline", EXPECTED)
    assert code == 1
    changes = {c["field"]: (c["baseline"], c["current"]) for c in res["traces"][0]["changes"]}
    assert changes["event_counts.virtio_balloon_handle_output"] == (n, n - 1)
    assert changes["lines"] == (len(lines), len(lines) - 1)
    code, out, _ = check(monkeypatch, capsys, altered, "--baseline", EXPECTED)
    assert code == 1 and "event_counts.virtio_balloon_handle_output" in out


def test_altered_baseline_fails_naming_the_field(monkeypatch, capsys, tmp_path):
    name = baseline_name(D_CUT)
    doc = json.loads((EXPECTED / name).read_text())
    was = doc["replay"]["policies"]["inhibit"]["dropped_pages"]
    doc["replay"]["policies"]["inhibit"]["dropped_pages"] = was + 7
    (tmp_path / name).write_text(json.dumps(doc))
    code, res, _ = check_json(monkeypatch, capsys, D_CUT, "--baseline", tmp_path)
    assert code == 1
    assert res["traces"][0]["changes"] == [
        {"field": "replay.policies.inhibit.dropped_pages", "baseline": was + 7, "current": was}
    ]


def test_update_writes_baselines_that_then_pass(monkeypatch, capsys, tmp_path):
    code, _, _ = check(monkeypatch, capsys, D_CUT, "--baseline", tmp_path, "--update")
    assert code == 0
    written = tmp_path / "d-dst-excerpt.trace.simple.json"
    assert json.loads(written.read_text()) == json.loads((EXPECTED / written.name).read_text())
    code, _, _ = check(monkeypatch, capsys, D_CUT, "--baseline", tmp_path)
    assert code == 0


def test_python_api_without_the_cli(tmp_path):
    """run_check computes analyze --json itself: the committed baseline passes, a changed copy of
    it fails naming the field, and limits come back per trace."""
    from tracetool.check import exit_code, run_check

    reports = run_check([str(D_CUT)], str(EXPECTED), limits=[Limit.parse_fail_on("conflicts")])
    assert (
        exit_code(reports) == 0
        and reports[0].changes == []
        and reports[0].limits[0].status.value == "ok"
    )
    doc = json.loads((EXPECTED / baseline_name(D_CUT)).read_text())
    doc["events"] -= 1
    (tmp_path / baseline_name(D_CUT)).write_text(json.dumps(doc))
    (rep,) = run_check([D_CUT], tmp_path)
    assert [c.field for c in rep.changes] == ["events"] and exit_code([rep]) == 1


# -- errors (exit 2) ----------------------------------------------------------------------------


def test_missing_baseline_names_the_expected_path(monkeypatch, capsys, tmp_path):
    junit = tmp_path / "junit.xml"
    code, _, err = check(monkeypatch, capsys, D_CUT, "--baseline", tmp_path, "--junit", junit)
    assert code == 2
    want = f"{tmp_path / 'd-dst-excerpt.trace.simple.json'}: no baseline"
    assert want in err and err.count("\n") == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    (case,) = suite.findall("testcase")
    assert want in case.find("error").get("message")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"


def test_unreadable_trace_is_an_error_naming_it(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    shutil.copy(EXPECTED / baseline_name(D_CUT), tmp_path)
    code, res, err = check_json(monkeypatch, capsys, bad, D_CUT, "--baseline", tmp_path)
    assert code == 2
    assert [t["status"] for t in res["traces"]] == ["error", "ok"]  # the others still checked
    assert str(bad) in err and err.count("\n") == 1


def test_two_traces_for_one_baseline_is_a_usage_error(monkeypatch, capsys, tmp_path):
    other = tmp_path / DST_EXCERPT.name
    shutil.copy(DST_EXCERPT, other)
    code, _, err = check(monkeypatch, capsys, DST_EXCERPT, other, "--baseline", EXPECTED)
    assert code == 2 and "would share the baseline" in err


# -- limits -------------------------------------------------------------------------------------


def test_fail_on_conflicts_follows_the_planted_truth(monkeypatch, capsys):
    truth = json.loads(CLASSES_TRUTH.read_text())["replay"]["policies"]
    qemu = json.loads(CLASSES_TRUTH.read_text())["replay"]["qemu_policy"]
    for policy in ("no-inhibit", "inhibit", "defer", "qemu"):
        want = 1 if sum(truth[qemu if policy == "qemu" else policy]["conflicts"].values()) else 0
        code, res, _ = check_json(monkeypatch, capsys, CLASSES_SAMPLE, "--baseline", EXPECTED,
                                  "--fail-on", f"conflicts:{policy}")  # fmt: skip
        assert code == want, policy
        assert res["traces"][0]["limits"][0]["status"] == ("changed" if want else "ok")
    assert sum(truth["no-inhibit"]["conflicts"].values()) > 0  # both outcomes were exercised
    assert sum(truth["inhibit"]["conflicts"].values()) == 0


def test_fail_on_unknown_policy_or_kind(monkeypatch, capsys):
    code, _, err = check(monkeypatch, capsys, D_CUT, "--baseline", EXPECTED,
                         "--fail-on", "conflicts:nope")  # fmt: skip
    assert code == 2 and "unknown policy 'nope'" in err
    code, _, err = check(monkeypatch, capsys, D_CUT, "--baseline", EXPECTED, "--fail-on", "bugs")
    assert code == 2 and "--fail-on takes conflicts" in err


@pytest.mark.parametrize("ms", ["0", "-3", "nan", "inf"])
def test_latency_limit_must_be_positive(monkeypatch, capsys, ms):
    code, _, err = check(monkeypatch, capsys, D_CUT, "--baseline", EXPECTED,
                         "--max-latency-p99", ms)  # fmt: skip
    assert code == 2 and "--max-latency-p99 takes a positive number" in err


def test_latency_limit_reads_postcopy_faults_p99():
    lim = Limit(LimitKind.LATENCY_P99, max_ms=1.0)
    assert lim.evaluate({"postcopy_faults": {"p99_us": 1000}}) is None
    assert "1.5 ms > 1 ms" in lim.evaluate({"postcopy_faults": {"p99_us": 1500}})
    for lacking in ({}, {"postcopy_faults": {"p99_us": None}}):
        with pytest.raises(CheckError, match=r"postcopy_faults\.p99_us"):
            lim.evaluate(lacking)


def _req_latencies_ms(path) -> list[float]:
    """Page request -> resolved latencies, paired by address from the raw lines."""
    text = gzip.decompress(path.read_bytes()).decode()
    pat = r"^\d+@(\d+\.\d+):postcopy_page_req_(add|del) \w+ page req (0x[0-9a-f]+)"
    opened, out = {}, []
    for ts, kind, addr in re.findall(pat, text, flags=re.M):
        if kind == "add":
            opened[addr] = float(ts)
        elif addr in opened:
            out.append((float(ts) - opened.pop(addr)) * 1000)
    return out


def test_latency_limit_on_a_sample(monkeypatch, capsys):
    """Exit 1 under the fastest request's latency, 0 over the slowest (the p99 lies between)."""
    lat = _req_latencies_ms(DST_EXCERPT)
    assert len(lat) >= 10
    for ms, want in ((min(lat) * 0.9, 1), (max(lat) + 1, 0)):
        code, res, _ = check_json(monkeypatch, capsys, DST_EXCERPT, "--baseline", EXPECTED,
                                  "--max-latency-p99", f"{ms:.3f}")  # fmt: skip
        assert code == want, (ms, res)
        assert res["traces"][0]["limits"][0]["status"] == ("changed" if want else "ok")


def test_latency_limit_without_faults_is_an_error(monkeypatch, capsys, tmp_path):
    """A destination trace recorded without the fault request events has no fault latencies:
    the limit is an error (exit 2) naming the trace and the key, not a pass."""
    lines = gzip.decompress(DST_EXCERPT.read_bytes()).decode().splitlines(keepends=True)
    dropped = (":postcopy_ram_fault_thread_request ", ":postcopy_page_req_add ")
    kept = [s for s in lines if not any(d in s for d in dropped)]
    assert len(kept) < len(lines)
    trace = tmp_path / DST_EXCERPT.name
    trace.write_bytes(gzip.compress("".join(kept).encode()))
    check(monkeypatch, capsys, trace, "--baseline", tmp_path, "--update")
    code, res, err = check_json(monkeypatch, capsys, trace, "--baseline", tmp_path,
                                "--max-latency-p99", "100")  # fmt: skip
    assert code == 2 and "postcopy_faults.p99_us" in err and str(trace) in err
    assert res["traces"][0]["limits"][0]["status"] == "error"


def test_limits_are_skipped_on_a_source_side_trace(monkeypatch, capsys, tmp_path):
    """The source excerpt has no replay window and no fault latencies: every limit is reported as
    skipped (exit 0, a JUnit <skipped>), neither passed silently nor an error that fails a CI job
    checking both sides of a migration."""
    junit = tmp_path / "junit.xml"
    code, res, _ = check_json(monkeypatch, capsys, SRC_EXCERPT, DST_EXCERPT, "--baseline",
                              EXPECTED, "--fail-on", "conflicts:qemu", "--max-latency-p99",
                              "1000", "--junit", junit)  # fmt: skip
    assert code == 0
    src, dst = res["traces"]
    assert [lim["status"] for lim in src["limits"]] == ["skipped", "skipped"]
    assert all("source-side" in lim["skipped"] for lim in src["limits"])
    assert [lim["status"] for lim in dst["limits"]] == ["ok", "ok"]
    suite = ET.parse(junit).getroot().find("testsuite")
    skipped = [c.get("name") for c in suite.findall("testcase") if c.find("skipped") is not None]
    assert skipped == [f"{SRC_EXCERPT.name} [conflicts:qemu]",
                       f"{SRC_EXCERPT.name} [max-latency-p99 1000 ms]"]  # fmt: skip
    assert suite.get("skipped") == "2" and suite.get("failures") == suite.get("errors") == "0"
    code, out, _ = check(monkeypatch, capsys, SRC_EXCERPT, "--baseline", EXPECTED,
                         "--fail-on", "conflicts")  # fmt: skip
    assert code == 0 and "skipped: source-side trace" in out


# -- JUnit --------------------------------------------------------------------------------------


def test_junit_xml_structure(monkeypatch, capsys, tmp_path):
    for p in (DST_EXCERPT, D_CUT):
        shutil.copy(EXPECTED / baseline_name(p), tmp_path)
    name = tmp_path / baseline_name(DST_EXCERPT)
    doc = json.loads(name.read_text())
    doc["lines"] += 1
    name.write_text(json.dumps(doc))
    junit = tmp_path / "out" / "check.xml"
    junit.parent.mkdir()
    code, _, _ = check(monkeypatch, capsys, DST_EXCERPT, D_CUT, "--baseline", tmp_path,
                       "--fail-on", "conflicts:inhibit", "--junit", junit)  # fmt: skip
    assert code == 1
    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 4  # 2 traces x (baseline + 1 limit)
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) == 1
    assert int(suite.get("errors")) == 0
    assert failures[0].get("name") == DST_EXCERPT.name
    f = failures[0].find("failure")
    assert "1 field(s) differ" in f.get("message") and f.text.startswith("lines: ")
    assert all(c.get("classname") and c.get("name") for c in cases)


# -- docs/ci.md's events file ----------------------------------------------------------------------


def test_events_file_enables_every_event_tracetool_reads():
    """Every catalogued event named in the analyses or the replay, and every NEEDS event, matches
    a pattern of docs/tracetool-events.txt (what docs/ci.md tells users to enable)."""
    import fnmatch
    from pathlib import Path

    import analyses
    from tracetool.catalog.catalog import Catalog

    root = SAMPLES.parent
    lines = (root / "docs" / "tracetool-events.txt").read_text().splitlines()
    patterns = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    catalog = set(Catalog.bundled().names())
    used = set()
    for p in [*(root / "tracetool" / "replay").glob("*.py"), *(root / "analyses").glob("*.py")]:
        used |= set(re.findall(r'"([a-z][a-z0-9_]+)"', Path(p).read_text())) & catalog
    for name in analyses.TABLE_ANALYSES:
        used |= set(analyses.get(name).NEEDS.events())
    assert {"virtio_balloon_handle_output", "postcopy_place_page", "ram_load_loop"} <= used
    missing = sorted(n for n in used if not any(fnmatch.fnmatchcase(n, p) for p in patterns))
    assert not missing, f"not enabled by docs/tracetool-events.txt: {missing}"


def test_unwritable_junit_is_an_error_naming_it(monkeypatch, capsys, tmp_path):
    where = tmp_path / "missing-folder" / "junit.xml"
    code, _, err = check(monkeypatch, capsys, D_CUT, "--baseline", EXPECTED, "--junit", where)
    assert code == 2 and f"{where}: cannot write the JUnit report" in err
