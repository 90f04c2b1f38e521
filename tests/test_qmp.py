"""QMP cross-check: log parsing (list, one object per line, errors naming the file), the
comparison arithmetic, and analyze --qmp-log on the real captures."""

from __future__ import annotations

import json

import pytest

from analyses import qmp
from tests.conftest import DST_EXCERPT, run_cli, shared_trace


def _qm(side, ret, seq=1):
    return {"side": side, "kind": "command", "execute": "query-migrate", "seq": seq,
            "reply": {"return": ret, "id": f"{side}-{seq}"}}  # fmt: skip


def test_list_and_json_lines_give_the_same_records(tmp_path):
    recs = [_qm("dst", {"status": "active"}, 1), _qm("dst", {"status": "completed"}, 2)]
    a = tmp_path / "a.json"
    a.write_text(json.dumps(recs))
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    assert qmp.load(a) == qmp.load(b) == recs
    assert qmp.last_query_migrate(recs) == {"dst": {"status": "completed"}}


@pytest.mark.parametrize(
    ("text", "where"),
    [('[{"side": "dst"}, ', "bad.json:1"), ('{"a": 1}\n{oops}\n', "bad.json:2"),
     ("42", "bad.json"), ('[{"side": "dst"}, 3]', "bad.json")],
)  # fmt: skip
def test_bad_logs_name_the_file(tmp_path, text, where):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(qmp.QmpLogError) as exc:
        qmp.load(p)
    assert str(exc.value).startswith(str(tmp_path / where))
    assert "\n" not in str(exc.value)


def test_comparison_rows_arithmetic():
    replies = {
        "dst": {"status": "completed", "postcopy-blocktime": 200, "postcopy-vcpu-blocktime": [120, 80],
                "postcopy-latency": 5_000_000, "postcopy-latency-dist": [0, 2, 3]},
        "src": {"status": "completed", "ram": {"postcopy-requests": 10}},
    }  # fmt: skip
    faults = {"all_vcpus_blocked_ms": 190.0, "per_cpu_blocktime_ms": {"0": 126.0, "1": 80.0},
              "mean_us": 4500.0, "latency_dist": [1, 2, 3], "requests": 9}  # fmt: skip
    phases = {"per_migration": [{"side": "destination", "final_state": "completed"}]}
    rows = {
        (r["figure"], r["side"]): r for r in qmp.compare(replies, faults, phases, "destination")
    }
    bt = rows[("postcopy-blocktime (ms)", "dst")]
    assert (bt["qemu"], bt["ours"], bt["diff"], bt["diff_pct"]) == (200, 190.0, -10.0, -5.0)
    assert rows[("postcopy-vcpu-blocktime[0] (ms)", "dst")]["diff_pct"] == 5.0
    assert rows[("postcopy-latency (ns)", "dst")]["ours"] == 4_500_000
    assert rows[("postcopy-latency-dist (faults)", "dst")]["diff"] == 1
    assert rows[("ram.postcopy-requests", "src")]["diff_pct"] == -10.0
    assert rows[("status", "dst")]["ours"] == "completed"
    assert rows[("status", "src")]["ours"] is None  # the trace is the destination's


@pytest.mark.parametrize(
    "capture",
    ["a-balloon-during-postcopy", "b-balloon-no-overlap", "d-simpletrace-balloon-during-postcopy"],
)
def test_analyze_qmp_log_on_captures(monkeypatch, capsys, capture):
    log = shared_trace(capture, "qmp-log.json")
    code, out, _ = run_cli(monkeypatch, capsys, "analyze", "--json", "--no-replay", "-q",
                           shared_trace(capture, "dst.trace.log.gz"), "--qmp-log", log)  # fmt: skip
    assert code == 0
    rows = {(r["figure"], r["side"]): r for r in json.loads(out)["qmp_check"]["rows"]}
    recs = json.loads(log.read_text())
    last = {s: [r for r in recs if r.get("execute") == "query-migrate" and r["side"] == s][-1]
            for s in ("src", "dst")}  # fmt: skip
    req = rows[("ram.postcopy-requests", "src")]
    assert req["qemu"] == last["src"]["reply"]["return"]["ram"]["postcopy-requests"]
    assert req["diff"] == 0
    dst = last["dst"]["reply"]["return"]
    if "postcopy-blocktime" in dst:
        bt = rows[("postcopy-blocktime (ms)", "dst")]
        assert bt["qemu"] == dst["postcopy-blocktime"]
        assert abs(bt["diff_pct"]) < 0.1
    else:
        assert ("postcopy-blocktime (ms)", "dst") not in rows
    assert rows[("status", "dst")]["ours"] == dst["status"]


def test_analyze_text_prints_the_table(monkeypatch, capsys, tmp_path):
    log = tmp_path / "q.json"
    log.write_text(json.dumps([_qm("dst", {"status": "completed", "postcopy-blocktime": 91694,
                                           "postcopy-vcpu-blocktime": [91694]})]))  # fmt: skip
    code, out, _ = run_cli(monkeypatch, capsys, "analyze", "--no-replay", "-q", DST_EXCERPT,
                           "--qmp-log", log)  # fmt: skip
    assert code == 0
    assert "Postcopy fault latency" in out and "QMP query-migrate vs this trace" in out
    assert "postcopy-blocktime (ms)" in out


def test_analyze_bad_qmp_log_is_one_error_line(monkeypatch, capsys, tmp_path):
    log = tmp_path / "broken.json"
    log.write_text("{not json")
    code, out, err = run_cli(monkeypatch, capsys, "analyze", "--no-replay", "-q", DST_EXCERPT,
                             "--qmp-log", log)  # fmt: skip
    assert code == 2
    assert str(log) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
