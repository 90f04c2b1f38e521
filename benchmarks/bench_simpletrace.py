"""Throughput and memory of tracetool's simpletrace reader, beside QEMU's ``simpletrace.py``.

Run from the repository with the project's interpreter::

    .venv/bin/python benchmarks/bench_simpletrace.py                     # 5M records, temp dir
    .venv/bin/python benchmarks/bench_simpletrace.py --records 2000000 --keep --json st.json
    .venv/bin/python benchmarks/bench_simpletrace.py --simpletrace-py ~/qemu/scripts/simpletrace.py

Input: a simpletrace v4 little-endian file of ``--records`` event records written with
:class:`tracetool.simpletrace_write.SimpletraceWriter` (header, one mapping record per event,
then the records), deterministic for a ``--seed``. The event mix is the destination side of
the real capture ``shared/traces/qemu-7.2/d-simpletrace-balloon-during-postcopy`` (record
counts from its ``simpletrace-check.md``), arguments typed by the bundled catalog's QEMU 7.2
definitions (strings ``pc.ram``, page addresses, host pointers, small flags), records shuffled
in bursts. The trace-events file written beside it holds those 7.2 definitions (what
``simpletrace.py`` and ``--trace-events`` need). ``--keep`` writes both to ``bench-data/``
(git-ignored) and reuses them next time.

Every measurement is its own subprocess pinned to one CPU (``NUMBA_NUM_THREADS=1``), so
"peak RSS" is that run's ``ru_maxrss``:

* ``tracetool``: ``tracetool.load(path, trace_events=...)`` (numba engine), the events table and
  every typed table; "load s" is the time of that call, after the compiled kernels were loaded
  (their load time is reported as "warm s").
* ``simpletrace.py``: ``python3 SIMPLETRACE_PY TRACE_EVENTS FILE > /dev/null`` (QEMU's own
  pretty-printer: one text line per record), wall time of the process. It needs QEMU's
  ``scripts/tracetool`` package beside it (QEMU 7.2's ``scripts/simpletrace.py`` with
  ``tracetool/__init__.py``, ``vcpu.py``, ``backend/simple.py`` and the ``backend`` and
  ``format`` package files); it is not part of this repository, so without ``--simpletrace-py``
  only tracetool's figure is printed, beside the figure measured here before.

events/s = event records / seconds. The target is 20x ``simpletrace.py`` on the same file:
met, 27.5x on 2026-11-26 (``--repeat 3`` medians, 2-CPU VM, load average 0.9: tracetool 0.72 s
= 6.92M events/s, QEMU 7.2's script, which prints the text of the capture
``d-simpletrace-balloon-during-postcopy`` byte for byte, 19.87 s = 0.25M events/s);
``docs/performance.md`` has the figures of record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pinned import run_pinned  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_SPEEDUP = 20.0
QEMU_SIMPLETRACE_EV_S = 0.25e6  # QEMU 7.2 scripts/simpletrace.py, measured here side by side

#: records per event on the destination side of the real capture (simpletrace-check.md)
MIX = {
    "virtio_balloon_handle_output": 262144,
    "ram_load_loop": 146947,
    "ram_block_discard_range": 65702,
    "ram_load_postcopy_loop": 18838,
    "mark_postcopy_blocktime_end": 18484,
    "postcopy_place_page": 18475,
    "vmstate_load_state_field": 10941,
    "vmstate_load_state_end": 2667,
    "vmstate_load_state": 2667,
    "virtio_balloon_set_config": 1024,
    "virtio_balloon_get_config": 1024,
    "qemu_loadvm_state_section": 488,
    "vmstate_load": 464,
    "ram_load_complete": 433,
    "qemu_loadvm_state_section_partend": 432,
    "mark_postcopy_blocktime_begin": 410,
    "postcopy_ram_fault_thread_request": 410,
    "migrate_send_rp_message": 407,
    "postcopy_page_req_del": 402,
    "postcopy_page_req_add": 402,
    "ram_discard_range": 166,
    "qmp_exit_query_balloon": 26,
    "qmp_enter_query_balloon": 26,
    "postcopy_place_page_zero": 9,
}
STRINGS = {
    "json": ["{}"],
    "result": ['{"actual": 536870912}'],
    "name": ["timer", "cpu", "apic", "cpu_common", "fpreg_tmp", "virtio-balloon"],
    "field": ["cpu_ticks_offset", "env.eip", "unused", "halted"],
    "idstr": ["ram", "0000:00:02.0/virtio-balloon", "timer"],
}
HOST = 0x7F4200000000
DD = 0x563769D5D6E0


def definitions() -> dict:
    """The QEMU 7.2 definition of every event of the mix (bundled catalog)."""
    from tracetool.catalog import Catalog

    cat = Catalog.bundled()
    out = {}
    for name in MIX:
        out[name] = next(
            v
            for v in cat.variants(name)
            if v.plan is not None
            and (v.versions[0] or (0, 0)) <= (7, 2) <= (v.versions[1] or (99, 0))
        )
    return out


def trace_events_text(defs: dict) -> str:
    lines = []
    for ev in defs.values():
        args = ", ".join(f"{a.ctype.decl} {a.name}" for a in ev.args) or "void"
        fmt = ev.fmt.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{ev.name}({args}) "{fmt}"')
    return "\n".join(lines) + "\n"


def _column(rng, arg, n: int, pages: np.ndarray):
    from tracetool.catalog import ArgKind

    kind, name = arg.ctype.kind, arg.name
    if kind is ArgKind.STRING:
        choices = STRINGS.get(name, ["pc.ram"])
        return np.asarray(choices, dtype=object)[rng.integers(0, len(choices), n)]
    if kind is ArgKind.POINTER:
        return (
            (HOST + pages)
            if name in ("host", "hva", "host_addr", "haddr", "addr")
            else (np.full(n, DD, np.uint64))
        )
    if kind is ArgKind.BOOL:
        return rng.integers(0, 2, n)
    if name in ("addr", "gpa", "offset", "start", "rb_offset", "offs"):
        return pages
    if name in ("length", "len", "size"):
        return np.full(n, 0x1000, np.uint64)
    if name == "flags":
        return np.asarray([0x8, 0x22, 0x28])[rng.integers(0, 3, n)]
    return rng.integers(0, 9000, n)


def generate(path: Path, records: int, seed: int, batch: int = 250_000) -> None:
    """Write the benchmark file: header, mappings, then shuffled bursts of the real mix."""
    from tracetool.simpletrace_write import SimpletraceWriter

    defs = definitions()
    names = list(MIX)
    share = np.array([MIX[n] for n in names], float)
    share /= share.sum()
    rng = np.random.default_rng(seed)
    ts0 = 4_000_000_000_000
    with open(path, "wb") as f:
        w = SimpletraceWriter(f, pid=3961)
        w.header()
        for i, n in enumerate(names):
            w.mapping(100 + i, n)
        done = 0
        while done < records:
            size = min(batch, records - done)
            counts = rng.multinomial(size, share)
            parts, lens = [], []
            for i, n in enumerate(names):
                c = int(counts[i])
                if not c:
                    continue
                pages = (rng.integers(0, 1 << 17, c) << 12).astype(np.uint64)
                cols = [_column(rng, a, c, pages) for a in defs[n].args]
                data = w.records_bytes(100 + i, np.zeros(c, np.int64), cols)
                parts.append(np.frombuffer(data, np.uint8))
                lens.append(_record_lengths(data, c))
            buf = np.concatenate(parts)
            ln = np.concatenate(lens)
            st = np.zeros(len(ln), np.int64)
            np.cumsum(ln[:-1], out=st[1:])
            # shuffle in bursts: runs of one event of geometric length (mean 8)
            run = np.cumsum(rng.random(len(ln)) < 1 / 8)
            rank = rng.permutation(int(run[-1]) + 1)
            order = np.argsort(rank[run], kind="stable")
            out_len = ln[order]
            out_st = np.zeros(len(order), np.int64)
            np.cumsum(out_len[:-1], out=out_st[1:])
            idx = np.repeat(st[order] - out_st, out_len) + np.arange(int(out_len.sum()))
            out = buf[idx]
            ts = ts0 + np.cumsum(rng.integers(1, 40_000, len(order)))
            ts0 = int(ts[-1])
            tsv = np.ndarray((len(out) - 7,), "<u8", buffer=out, strides=(1,))
            tsv[out_st + 16] = ts
            f.write(out.tobytes())
            done += size
            w.records_written += size


def _record_lengths(data: bytes, n: int) -> np.ndarray:
    """Lengths of the n consecutive v4 records of ``data`` (8 + their length field)."""
    buf = np.frombuffer(data, np.uint8)
    u32 = np.ndarray((len(buf) - 3,), "<u4", buffer=buf, strides=(1,))
    lens = np.empty(n, np.int64)
    pos = 0
    first = int(u32[24]) + 8
    if len(data) == first * n:  # fixed-size records
        return np.full(n, first, np.int64)
    for i in range(n):  # string events: walk the length fields
        ln = int(u32[pos + 24]) + 8
        lens[i] = ln
        pos += ln
    return lens


# -- measurements, each in its own subprocess ----------------------------------------------
def child(path: str, trace_events: str) -> None:
    import tracetool
    from tracetool.simpletrace_write import SimpletraceWriter

    small = Path(tempfile.mkdtemp()) / "warm.simple"
    with SimpletraceWriter(small) as w:  # load the compiled kernels before timing
        w.header()
        w.mapping(1, "postcopy_place_page")
        w.mapping(2, "virtio_balloon_handle_output")
        w.record(1, 1, [1])
        w.record(2, 2, [b"pc.ram", 4096])
        w.dropped(3, 1)
    t0 = time.perf_counter()
    tracetool.load(small, engine="numba")
    warm = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    trace = tracetool.load(path, trace_events=trace_events, engine="numba")
    load_s = time.perf_counter() - start
    for name in trace.event_counts():
        trace.table(name)
    s = trace.stats
    print(
        json.dumps(
            {
                "events": s.events,
                "lines": s.lines,
                "rejected": s.rejected_lines,
                "bytes": s.bytes,
                "load_s": load_s,
                "with_tables_s": time.perf_counter() - start,
                "warm_s": warm,
                "import_rss_mb": rss0 / 1024,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run(argv: list[str], cpu: int, stdout=None) -> tuple[float, float, str]:
    """Run argv pinned to one cpu: wall seconds, peak RSS MB of that process, stdout."""
    return run_pinned(argv, cpu, stdout=stdout)[:3]


def _runs(xs: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the file in bench-data/")
    ap.add_argument("--simpletrace-py", help="QEMU's scripts/simpletrace.py, to compare with")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each (median reported)")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    folder = ROOT / "bench-data" if a.keep else Path(tempfile.mkdtemp(prefix="bench-st-"))
    folder.mkdir(exist_ok=True)
    path = folder / f"bench-{a.records}-{a.seed}.trace.simple"
    te = folder / "bench.trace-events"
    te.write_text(trace_events_text(definitions()))
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, a.records, a.seed)
        print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    cpu = sorted(os.sched_getaffinity(0))[-1]
    res: dict = {"records": a.records, "file_mb": path.stat().st_size / 2**20,
                 "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}"}  # fmt: skip
    ours = []
    for _ in range(a.repeat):
        wall, rss, out = run([sys.executable, __file__, "--child", str(path), str(te)], cpu)
        r = json.loads(out.strip().splitlines()[-1])
        r["process_s"], r["process_rss_mb"] = wall, rss
        ours.append(r)
    r = sorted(ours, key=lambda x: x["load_s"])[len(ours) // 2]
    r["events_per_s"] = r["events"] / r["load_s"]
    r["runs_load_s"] = sorted(x["load_s"] for x in ours)
    res["tracetool"] = r
    print(f"\n{a.records:,} records, {res['file_mb']:.0f} MB, {res['machine']}")
    print(f"{'reader':16} {'events':>10} {'seconds':>8} {'events/s':>10} {'peak RSS':>9}")
    print(f"{'tracetool':16} {r['events']:>10,} {r['load_s']:>8.2f} "
          f"{r['events_per_s'] / 1e6:>9.2f}M {r['process_rss_mb']:>7.0f}MB"
          f"   (process {r['process_s']:.2f} s incl. start-up, kernels {r['warm_s']:.2f} s;"
          f" + all typed tables {r['with_tables_s']:.2f} s)")  # fmt: skip
    if a.simpletrace_py:
        runs = []
        for _ in range(a.repeat):
            with open(os.devnull, "w") as null:
                runs.append(run(["python3", a.simpletrace_py, str(te), str(path)], cpu, null))
        wall, rss, _ = sorted(runs)[len(runs) // 2]
        q = {"seconds": wall, "events_per_s": r["events"] / wall, "peak_rss_mb": rss,
             "runs_s": sorted(x[0] for x in runs)}  # fmt: skip
        res["simpletrace_py"] = q
        speedup = r["events_per_s"] / q["events_per_s"]
        res["speedup"] = speedup
        print(f"{'simpletrace.py':16} {r['events']:>10,} {wall:>8.2f} "
              f"{q['events_per_s'] / 1e6:>9.2f}M {rss:>7.0f}MB")  # fmt: skip
        if a.repeat > 1:
            print(f"runs (s): tracetool {_runs(r['runs_load_s'])}, "
                  f"simpletrace.py {_runs(q['runs_s'])}; medians above")  # fmt: skip
        print(f"speed-up {speedup:.1f}x (target {TARGET_SPEEDUP:.0f}x): "
              f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}")  # fmt: skip
    else:
        ref = r["events_per_s"] / QEMU_SIMPLETRACE_EV_S
        print(f"simpletrace.py not run (give --simpletrace-py PATH; QEMU's script is not part "
              f"of this repository). Against its figure measured here earlier "
              f"({QEMU_SIMPLETRACE_EV_S / 1e6:.2f}M events/s): {ref:.1f}x "
              f"(target {TARGET_SPEEDUP:.0f}x)")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
