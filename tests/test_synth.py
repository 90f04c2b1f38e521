"""``tracetool synth``: determinism, loading every era's log, round trips between output forms,
and the replay of generated traces against the generator's own ground truth.

The truth file is computed by the generator from its model (what it planted and where each
row landed), never by the replay engine; so ``replay == truth`` checks both. Scenarios are
small by default (64-256 MiB guests, well under a second each). The scale check writes about
200K events; set ``TRACETOOL_SYNTH_SCALE=20000000`` (events) to run it at tens of millions.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import numpy as np
import pyarrow.compute as pc
import pytest

import tracetool
from tests.conftest import run_cli
from tracetool.errors import UsageError
from tracetool.synth import ERAS, Scenario, generate, truth_path_for

ALL_ERAS = list(ERAS)
#: a small scenario whose postcopy window is long enough for every planted class
SMALL = dict(ram="128M", bandwidth="32M", precopy_s=1.0, migrations=2)
POLICY_KEYS = (
    "inflate_pages", "deflate_pages", "inflate_pages_in_window", "deflate_pages_in_window",
    "applied_pages", "dropped_pages", "deferred_pages", "cancelled_pages", "applied_at_end_pages",
    "refilled_pages", "conflicts", "conflict_pages", "refault_expected",
    "reclaimed_bytes_end_of_window", "reclaimed_bytes_end_of_trace",
)  # fmt: skip


def synth(tmp_path, fmt="log", name=None, **kw):
    sc = Scenario(**{**SMALL, **kw})
    out = tmp_path / (name or f"dst.{fmt}")
    return generate(sc, out, fmt)


def differences(res, truth: dict, *, anomalies: bool = True) -> list[str]:
    """Every figure of the replay summary that the truth file gives, where they differ."""
    s, tr = res.summary, truth["replay"]
    out = []
    for pol, want in tr["policies"].items():
        got = s["policies"][pol]
        out += [
            f"{pol}.{k}: truth {want[k]} replay {got[k]}" for k in POLICY_KEYS if want[k] != got[k]
        ]
    keys = ["balloon_pages", "unresolved_direction_pages", "direction_evidence",
            "unmapped_balloon_pages"] + (["anomalies"] if anomalies else [])  # fmt: skip
    out += [f"{k}: truth {tr[k]} replay {s[k]}" for k in keys if tr[k] != s[k]]
    ob, ot = dict(s["observed"]), dict(tr["observed"])
    fb, ft = ob.pop("fidelity"), ot.pop("fidelity")
    if ob != ot or (fb["policy"], fb["agree"], fb["disagree"]) != (
        ft["policy"],
        ft["agree"],
        ft["disagree"],
    ):
        out.append(f"observed: truth {tr['observed']} replay {s['observed']}")
    if s["qemu_policy"]["policy"] != tr["qemu_policy"]:
        out.append(f"qemu policy: truth {tr['qemu_policy']} replay {s['qemu_policy']}")
    if len(s["windows"]) != len(tr["windows"]):
        out.append(f"windows: truth {len(tr['windows'])} replay {len(s['windows'])}")
    for wt, we in zip(tr["windows"], s["windows"], strict=False):
        out += [f"window {wt['migration']} {k}: truth {v} replay {we.get(k)}"
                for k, v in wt.items() if k.endswith("_ns") and we.get(k) != v]  # fmt: skip
    if s["address_map"]["disagreements"]:
        out.append(f"address map: {s['address_map']['disagreements'][:2]}")
    return out


# -- the scenario ------------------------------------------------------------------------------


def test_scenario_validation_names_the_option():
    with pytest.raises(UsageError, match="era"):
        Scenario(era="3.0").validate()
    with pytest.raises(UsageError, match="hugepages"):
        Scenario(era="2.5", host_page="2M").validate()
    with pytest.raises(UsageError, match="host-page"):
        Scenario(host_page="64K").validate()
    with pytest.raises(UsageError, match="size"):
        Scenario(inflate_during="lots").validate()
    with pytest.raises(UsageError, match="too short"):
        generate(Scenario(ram="64M", bandwidth="1G", inflate_during="20%"), "/dev/null")


def test_truth_path_beside_the_trace(tmp_path):
    assert truth_path_for(tmp_path / "dst.log") == tmp_path / "dst.truth.json"
    assert truth_path_for(tmp_path / "dst.trace.log.gz") == tmp_path / "dst.trace.truth.json"
    assert truth_path_for(tmp_path / "trace-1234") == tmp_path / "trace-1234.truth.json"


# -- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["log", "simpletrace", "parquet"])
def test_same_seed_same_bytes(tmp_path, fmt):
    a = synth(tmp_path, fmt, name=f"a.{fmt}", seed=7, era="10.1")
    b = synth(tmp_path, fmt, name=f"b.{fmt}", seed=7, era="10.1")
    assert a.path.read_bytes() == b.path.read_bytes()
    ta, tb = (json.loads(r.truth_path.read_text()) for r in (a, b))
    ta["trace"].pop("path"), tb["trace"].pop("path")
    assert ta == tb


def test_different_seed_different_trace(tmp_path):
    a = synth(tmp_path, name="a.log", seed=1)
    b = synth(tmp_path, name="b.log", seed=2)
    assert a.path.read_bytes() != b.path.read_bytes()
    assert a.truth["replay"]["policies"] != b.truth["replay"]["policies"]


# -- every era's log ---------------------------------------------------------------------------


@pytest.mark.parametrize("era", ALL_ERAS)
def test_log_of_every_era_loads_with_only_the_planted_damage_rejected(tmp_path, era):
    r = synth(tmp_path, era=era, seed=11, other_lines=7, damaged_lines=3)
    t = tracetool.load(r.path)
    lines = r.truth["lines"]
    assert (t.stats.lines, t.stats.events, t.stats.other_lines, t.stats.rejected_lines) == (
        lines["lines"],
        lines["events"],
        lines["other"],
        lines["rejected"],
    )
    assert lines["rejected"] == 3 and lines["lines"] == lines["events"] + lines["other"] + 3
    assert all("do not match its format" in x for x in t.rejected["reason"].to_pylist())
    assert t.event_counts() == r.truth["event_counts"]
    assert t.stats.line_shape == {"pid": "ID@SEC.USEC:", "tid": "ID@SEC.USEC:",
                                  "iso": "ISO-8601"}[ERAS[era].shape]  # fmt: skip
    # the era's own formats: what the catalog says that QEMU printed
    head = r.path.read_text()
    if era == "2.5":
        assert "setion name: pc.ram gpa: " in head and "acutal: " in head
        assert "ram_load_loop" not in head and "migrate_set_state new state 6" in head
        assert "ram_block_discard_range" not in head  # no discard tracing before 2.12
    if era == "4.x":
        assert "pid=0" in head and "ram_load_postcopy_loop @" in head
    if era == "10.1":
        assert "Z postcopy_place_page host=0x7f" in head
        assert "vmstate_downtime_checkpoint dst-postcopy-bh-enter" in head


def test_eras_apply_their_own_inhibit(tmp_path):
    """What each QEMU did with inflates during postcopy (its discard lines) is its policy."""
    for era, policy in (("4.x", "inhibit"), ("7.2", "inhibit-discard")):
        r = synth(tmp_path, name=f"{era}.log", era=era, migrations=1)
        q = r.truth["qemu"]
        assert q["policy"] == policy
        assert q["discards_traced"] == q["inflate_pages_applied"] > 0
        obs = r.truth["replay"]["observed"]
        # the era's policy predicts every traced outcome (tails are inside the real window)
        assert obs["fidelity"]["disagree"] == 0 and obs["fidelity"]["policy"] == policy
        t = tracetool.load(r.path)
        assert t.replay().summary["observed"]["fidelity"]["disagree"] == 0


# -- round trips between the output forms --------------------------------------------------


def _load_all(tmp_path, era, forms):
    sc = dict(era=era, seed=5, other_lines=0, damaged_lines=0, ram="64M", bandwidth="64M")
    out = {}
    for fmt in forms:
        r = synth(tmp_path, fmt, **sc)
        out[fmt] = (tracetool.load(r.path), r)
    return out


@pytest.mark.parametrize("era", ALL_ERAS)
def test_round_trip_log_and_synthetic_forms_give_the_same_events(tmp_path, era):
    got = _load_all(tmp_path, era, ["log", "jsonl", "csv", "parquet"])
    ref = got["log"][0].events
    for fmt in ("jsonl", "csv", "parquet"):
        e = got[fmt][0].events
        assert e.num_rows == ref.num_rows == got[fmt][1].truth["lines"]["events"]
        assert pc.cast(e["event"], "string").equals(pc.cast(ref["event"], "string")), fmt
        for col in ("ts_ns", "tid", "args"):
            assert e[col].equals(ref[col]), (fmt, col)
        # the synthetic forms number their records 1..N (no libvirt header lines)
        assert e["line"].to_pylist() == list(range(1, e.num_rows + 1))


@pytest.mark.parametrize("era", ["7.2", "10.1"])
def test_round_trip_simpletrace_gives_the_same_events_as_the_log(tmp_path, era):
    got = _load_all(tmp_path, era, ["log", "simpletrace"])
    ref, st = got["log"][0].events, got["simpletrace"][0].events
    assert pc.cast(st["event"], "string").equals(pc.cast(ref["event"], "string"))
    assert st["args"].equals(ref["args"])
    a, b = st["ts_ns"].to_numpy(), ref["ts_ns"].to_numpy()
    assert np.array_equal(a - a[0], b - b[0])  # monotonic clock: same intervals
    off = got["simpletrace"][1].truth["trace"]["clock_offset_ns"]
    assert np.array_equal(a, b + off)
    # simpletrace keeps the process id only: every thread's records carry its pid
    pids = set(st["tid"].to_pylist())
    assert len(pids) == 3  # the boot process and the two destinations


def test_round_trip_simpletrace_4x_numeric_commands(tmp_path):
    got = _load_all(tmp_path, "4.x", ["log", "simpletrace"])
    assert got["simpletrace"][0].events["args"].equals(got["log"][0].events["args"])


# -- replay against the truth --------------------------------------------------------------


REPLAY_CASES = [(era, fmt) for era in ALL_ERAS for fmt in ("log", "simpletrace", "jsonl")]


@pytest.mark.parametrize(("era", "fmt"), REPLAY_CASES)
def test_replay_matches_the_truth(tmp_path, era, fmt):
    r = synth(tmp_path, fmt, era=era, seed=3, balloon_thread="vcpu" if fmt == "jsonl" else "main")
    res = tracetool.load(r.path).replay()
    assert differences(res, r.truth) == []
    # the planted conflicts make every class appear under no-inhibit, and only there
    pol = r.truth["replay"]["policies"]
    assert all(v > 0 for v in pol["no-inhibit"]["conflicts"].values()), pol["no-inhibit"]
    assert pol["no-inhibit"]["refault_expected"] > 0
    for name in ("inhibit", "inhibit-discard", "defer"):
        assert sum(pol[name]["conflicts"].values()) == 0
    assert pol["defer"]["cancelled_pages"] > 0 and pol["defer"]["applied_at_end_pages"] > 0
    assert r.truth["replay"]["anomalies"]["observed-refault"] == 4  # 2 planted per migration


@pytest.mark.parametrize("era", ["4.x", "7.2", "10.1"])
def test_replay_matches_the_truth_with_hugepages(tmp_path, era):
    r = synth(tmp_path, era=era, seed=4, host_page="2M", ram="256M", bandwidth="64M")
    res = tracetool.load(r.path).replay()
    assert differences(res, r.truth, anomalies=False) == []
    blocks = {b["name"]: b["host_page_size"] for b in res.summary["address_map"]["blocks"]}
    assert blocks == {"pc.ram": 2 << 20, "vga.vram": 4096, "pc.bios": 4096}
    assert res.summary["anomalies"]["observed-refault"] == 4
    # QEMU >= 4.0 never discards a 4 KiB inflate of a 2 MiB page: no discard, all "dropped"
    assert r.truth["qemu"]["discards_traced"] == 0


def test_hugetlbfs_zero_pages_are_not_double_places(tmp_path):
    r = synth(tmp_path, era="7.2", seed=4, host_page="2M", ram="256M", bandwidth="64M")
    assert r.truth["qemu"]["hugetlb_zero_place_pairs"] > 0
    res = tracetool.load(r.path).replay()
    assert res.summary["anomalies"] == r.truth["replay"]["anomalies"]


def test_replay_of_migrations_in_processes_with_their_own_addresses(tmp_path):
    r = synth(tmp_path, seed=3, aslr=True)
    assert differences(tracetool.load(r.path).replay(), r.truth) == []


def test_truth_windows_follow_what_the_trace_shows(tmp_path):
    """STATE_END is the listen thread's last line only when the trace has thread ids."""
    for era, fmt, state_end in (("7.2", "log", "listen_thread_last_line_ns"),
                                ("10.1", "log", None), ("7.2", "simpletrace", None)):  # fmt: skip
        r = synth(tmp_path, fmt, name=f"w{era}.{fmt}", era=era, migrations=1)
        w = r.truth["replay"]["windows"][0]
        real = r.truth["qemu"]["real_windows"][0]
        off = r.truth["trace"]["clock_offset_ns"]
        if state_end:
            assert w["state_end_ns"] == real[state_end] + off
        else:  # no listen-thread id: the contract's fallback, D's "completed"
            assert w["state_end_ns"] < real["listen_thread_last_line_ns"] + off
            # ... so the tail inflate planted after "completed" is a fidelity miss
            assert r.truth["replay"]["observed"]["fidelity"]["disagree"] == 1


# -- the truth file ------------------------------------------------------------------------


def test_truth_file_schema(tmp_path):
    r = synth(tmp_path, era="7.2", seed=9)
    t = json.loads(r.truth_path.read_text())
    assert {"tracetool_synth", "trace", "scenario", "lines", "event_counts", "replay", "qemu",
            "balloon"} <= set(t)  # fmt: skip
    assert t["scenario"]["seed"] == 9 and t["trace"]["qemu_version"] == "7.2.0"
    ln = t["lines"]
    assert ln["lines"] == ln["events"] + ln["other"] + ln["rejected"]
    assert sum(t["event_counts"].values()) == ln["events"]
    rp = t["replay"]
    assert set(rp["policies"]) == {"no-inhibit", "inhibit", "inhibit-discard", "defer"}
    for p in rp["policies"].values():
        assert p["applied_pages"] + p["dropped_pages"] + p["cancelled_pages"] == p["inflate_pages"]
    ph = t["balloon"]["phases"]
    assert sum(v["inflate"] for v in ph.values()) == rp["policies"]["inhibit"]["inflate_pages"]
    assert t["balloon"]["planted"]["tail"] == 6  # 3 per migration in >= 7.2
    assert len(t["qemu"]["migrations"]) == 2 == len(rp["windows"])


# -- CLI -----------------------------------------------------------------------------------


def test_cli_synth_writes_trace_and_truth(monkeypatch, capsys, tmp_path):
    out = tmp_path / "dst.log.gz"
    code, stdout, _ = run_cli(monkeypatch, capsys, "synth", "-o", out, "--era", "4.x",
                              "--ram", "64M", "--bandwidth", "32M", "--seed", "2",
                              "--migrations", "1", "--no-tail", "--quiet")  # fmt: skip
    assert code == 0
    assert len(stdout.strip().splitlines()) == 1
    truth = tmp_path / "dst.truth.json"
    assert str(out) in stdout and str(truth) in stdout and "M lines/s" in stdout
    t = json.loads(truth.read_text())
    assert t["scenario"]["era"] == "4.x" and t["scenario"]["tail"] is False
    with gzip.open(out, "rt") as f:
        assert sum(1 for _ in f) == t["lines"]["lines"]
    code, stdout, _ = run_cli(monkeypatch, capsys, "replay", out, "--json")
    assert code == 0
    assert (
        json.loads(stdout)["policies"]["no-inhibit"]["conflicts"]
        == (t["replay"]["policies"]["no-inhibit"]["conflicts"])
    )


def test_cli_synth_rejects_bad_options(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "synth", "-o", tmp_path / "x", "--era", "9.0")
    assert code == 2 and "unknown era" in err
    code, _, err = run_cli(monkeypatch, capsys, "synth", "-o", tmp_path / "x", "-f", "xml")
    assert code == 2 and "unknown output format" in err


# -- scale ---------------------------------------------------------------------------------


def test_scale_smoke(tmp_path):
    """About 200K events by default; TRACETOOL_SYNTH_SCALE=N asks for about N events."""
    want = int(os.environ.get("TRACETOOL_SYNTH_SCALE", "200000"))
    gib = max(1, round(want / 320_000))  # ~320K events per GiB of guest with these options
    bw = max(1, gib // 4)  # precopy sends all RAM; postcopy (2% dirty) long enough for the balloon
    sc = Scenario(
        ram=f"{gib}G" if want > 200_000 else "512M", bandwidth=f"{bw}G", precopy_s=gib / bw,
        dirty=0.02, inflate_during="0.2%", deflate_during="0.05%", seed=1,
    )  # fmt: skip
    out = tmp_path / "scale.log"
    start = time.perf_counter()
    r = generate(sc, out, "log", chunk_rows=500_000)
    seconds = time.perf_counter() - start
    assert r.events >= want * 0.5
    with open(out, "rb") as f:
        assert sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) == r.lines
    print(f"\n{r.summary()}\n{r.lines / seconds / 1e6:.2f} M lines/s")
    out.unlink()
