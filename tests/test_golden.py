"""Golden results: ``analyze --json`` of every bundled sample, field by field, against
``sample_traces/expected/``; and the golden files against independent sources (the synth truth
files, raw line and record counts of the real excerpts).

``TRACETOOL_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` (or ``tracetool check --update``)
rewrites the golden files; read their diff before committing.
"""

from __future__ import annotations

import collections
import gzip
import importlib.util
import json
import os
import re

import pytest

import tracetool
from tests.conftest import SAMPLES
from tracetool.check import VOLATILE_KEYS, baseline_name, diff, dumps, golden
from tracetool.cli import analysis_json

EXPECTED = SAMPLES / "expected"
_spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
make_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_samples)
TRACES = make_samples.samples()
SYNTH = [p for p in TRACES if (p.parent / f"{p.name.split('.log')[0]}.truth.json").exists()]


def _ids(paths):
    return [p.name for p in paths]


def _golden(path):
    return json.loads((EXPECTED / baseline_name(path)).read_text())


def test_every_sample_has_one_golden_file():
    assert len(TRACES) >= 14
    assert {baseline_name(p) for p in TRACES} == {p.name for p in EXPECTED.glob("*.json")}


@pytest.mark.parametrize("trace", TRACES, ids=_ids(TRACES))
def test_analysis_matches_golden(trace):
    current = golden(analysis_json(tracetool.load(trace)))
    path = EXPECTED / baseline_name(trace)
    if os.environ.get("TRACETOOL_UPDATE_GOLDEN") == "1":
        path.write_text(dumps(current), encoding="utf-8")
    changes = diff(json.loads(path.read_text()), current)
    assert not changes, f"{trace.name} differs from {path} (baseline -> current):\n" + "\n".join(
        c.text() for c in changes
    )


def test_golden_files_hold_no_volatile_values():
    def keys(doc):
        if isinstance(doc, dict):
            for k, v in doc.items():
                yield k
                yield from keys(v)
        elif isinstance(doc, list):
            for v in doc:
                yield from keys(v)

    for p in EXPECTED.glob("*.json"):
        assert not VOLATILE_KEYS & set(keys(json.loads(p.read_text()))), p.name


@pytest.mark.parametrize("trace", SYNTH, ids=_ids(SYNTH))
def test_synth_golden_agrees_with_truth(trace):
    """Conflicts per class under every policy, and the line accounting, as the generator planted."""
    truth = json.loads((trace.parent / f"{trace.name.split('.log')[0]}.truth.json").read_text())
    g = _golden(trace)
    for policy, want in truth["replay"]["policies"].items():
        assert g["replay"]["policies"][policy]["conflicts"] == want["conflicts"], policy
    lines = truth["lines"]
    got = (g["lines"], g["events"], g["other_lines"], g["rejected_lines"])
    assert got == (lines["lines"], lines["events"], lines["other"], lines["rejected"])
    assert len(g["replay"]["windows"]) == truth["scenario"]["migrations"]


def test_the_synth_samples_cover_every_era_and_conflict_class():
    """What the issue asks the library to hold, read from the truth files and golden results."""
    eras, pages, migrations = set(), set(), set()
    classes = collections.Counter()
    cancelled = rejected = 0
    no_precopy_loads = []
    for trace in SYNTH:
        truth = json.loads((trace.parent / f"{trace.name.split('.log')[0]}.truth.json").read_text())
        eras.add(truth["trace"]["era"])
        classes.update(truth["replay"]["policies"]["no-inhibit"]["conflicts"])
        pages.add(truth["scenario"]["host_page"])
        migrations.add(truth["scenario"]["migrations"])
        cancelled = max(cancelled, truth["replay"]["policies"]["defer"]["cancelled_pages"])
        rejected = max(rejected, _golden(trace)["rejected_lines"])
        if "ram_load_loop" not in _golden(trace)["event_counts"]:  # precopy pages: state unknown
            no_precopy_loads.append(trace.name)
    assert eras == {"2.5", "2.10", "4.x", "7.2", "10.1"}
    assert all(classes[c] > 0 for c in ("discard-after-place", "discard-in-flight",
                                         "discard-before-arrival"))  # fmt: skip
    assert {"4K", "2M"} <= pages and 2 in migrations
    assert cancelled > 0 and rejected >= 40 and no_precopy_loads == ["era-2.5-stderr.log.gz"]


@pytest.mark.parametrize("name", ["a-dst-excerpt.trace.log.gz", "a-src-excerpt.trace.log.gz"])
def test_real_log_golden_counts_match_raw_lines(name):
    """Event counts of the log excerpts, counted from the raw text (``TID@SEC.USEC:name ``)."""
    raw = gzip.decompress((SAMPLES / "qemu-7.2" / name).read_bytes()).decode()
    counts = collections.Counter(re.findall(r"^\d+@\d+\.\d+:(\w+)", raw, flags=re.M))
    g = _golden(SAMPLES / "qemu-7.2" / name)
    assert g["event_counts"] == dict(counts)
    assert g["lines"] == raw.count("\n")


@pytest.mark.parametrize("side", ["dst", "src"])
def test_simpletrace_cut_golden_counts_match_records(side):
    """Event counts of the simpletrace cuts, from their records and mapping records."""
    path = SAMPLES / "qemu-7.2" / f"d-{side}-excerpt.trace.simple.gz"
    buf = gzip.decompress(path.read_bytes())
    names, ids = {}, collections.Counter()
    for off, end in make_samples._records(buf):
        typ, eid = int.from_bytes(buf[off : off + 8], "little"), buf[off + 8 : off + 16]
        if typ == 0:
            names[eid] = buf[off + 20 : end].decode()
        else:
            ids[eid] += 1
    g = _golden(path)
    assert g["event_counts"] == {names[k]: n for k, n in ids.items()}
    assert g["format"] == "simpletrace"
    assert g["side"] == {"dst": "destination", "src": "source"}[side]
    if side == "dst":  # the balloon inflate during postcopy is in the cut, and QEMU 7.2 dropped it
        assert g["replay"]["policies"]["inhibit-discard"]["dropped_pages"] > 0
    else:  # the source's half of the switch to postcopy, in QEMU's order
        states = [p["state"] for p in g["phases"]]
        assert states.index("postcopy listen sent (S)") < states.index("postcopy run sent (S)")
        assert states[-1] == "completed"
