"""Throughput and memory of tracetool's QEMU log parser, against a plain-Python baseline.

Run from the repository with the project's interpreter::

    .venv/bin/python benchmarks/bench_parse.py                # 400 MB synthetic trace, temp dir
    .venv/bin/python benchmarks/bench_parse.py --size-mb 200 --keep --json bench.json
    .venv/bin/python benchmarks/bench_parse.py --input dst.trace.log.gz --baseline-mb 20

Input: ``--input PATH`` (anything tracetool reads), or a synthetic QEMU 7.2 destination log
(``TID@SEC.USEC:name args``) of ``--size-mb`` MB, deterministic for a ``--seed``. Its event mix,
bursts, thread ids and argument text follow the real capture
``shared/traces/qemu-7.2/a-balloon-during-postcopy/dst.trace.log.gz``; lines are printed with the
QEMU 7.2 format strings of the bundled catalog (so every line decodes), plus 0.1% non-trace
lines. ``--keep`` writes it to ``bench-data/`` (git-ignored) and reuses it next time.

Every measurement is its own subprocess pinned to one CPU (``os.sched_setaffinity`` in the child
before it starts Python, ``NUMBA_NUM_THREADS=1``), so "peak RSS" is that run's ``ru_maxrss``:

* ``baseline``: a plain-Python parser written below (a prefix regex per line, then the event's
  regex from ``plan_to_regex`` of the bundled catalog, ``int()`` per group, Python lists, Arrow
  tables at the end), on the first ``--baseline-mb`` MB of the input (it is slow).
* ``arrow`` and ``numba (same MB)``: ``tracetool.load(engine=...)`` on those same MB.
* ``numba (whole input)``: ``tracetool.load(path, engine="numba")``, then ``trace.table()`` of
  the biggest event. Its time includes importing numba and loading the cached kernels; the cache
  is filled first by throwaway runs, and the JIT compile (empty cache) and warm start-up (tiny
  file) are reported on their own. "out MB" is the events table plus the typed tables (Arrow
  ``nbytes``); the memory target compares the peak RSS with it.
* ``convert``: ``python -m tracetool.cli convert INPUT -o OUT.parquet`` on the whole input and on
  its first half (wall time of the command; flat memory means the same peak RSS for both).
* ``analyze``: ``python -m tracetool.cli analyze`` of the bundled 10K-line sample: the median
  wall time of 3 runs after a warm-up run, interpreter start-up included.

MB means 2**20 bytes of (decompressed) input; MB/s is input MB over the run's wall seconds.
With ``--repeat N`` the tables show the median run and every run is printed below them.

Latest figures (2026-11-26 04:22, ``--size-mb 400 --repeat 3``, 2-CPU EPYC VM, load 0.8-1.0):
numba whole input 274 MB/s median (runs 274, 270, 311): the 250 MB/s target is met; peak RSS
746.6 MB for 499.5 MB of output tables = 1.495x: the 1.5x target is met, by 3 MB (225 MB of
it is the interpreter, pyarrow, pandas and numba). 18x the baseline. docs/performance.md has
the whole table and what changed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pinned import run_pinned  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_traces" / "qemu-7.2" / "a-dst-excerpt.trace.log.gz"
MB = 1 << 20
TARGET_MB_S, TARGET_SPEEDUP, TARGET_RSS_RATIO, TARGET_ANALYZE_S = 250.0, 10.0, 1.5, 1.5

# -- a synthetic QEMU 7.2 destination trace ------------------------------------------------
HOST, DD, PAGES = 0x7F1248E00000, 0x557ABD310400, 1 << 18  # host base of pc.ram, 1 GiB guest
MAIN, VCPU, FAULT, LISTEN = 15155, 15158, 15643, 15644  # thread ids of the real capture
MIGRATE = (
    '{"status": "postcopy-active", "socket-address": '
    '[{"port": "56087", "ipv4": true, "host": "127.0.0.1", "type": "inet"}]}'
)
OTHER = [
    "qemu-system-x86_64: warning: TSC frequency mismatch between VM (2894561 kHz) and host",
    "char device redirected to /dev/pts/3 (label serial0)",
    "qemu-system-x86_64: terminating on signal 15 from pid 15100 (python3)",
]
HEADER = (
    f"{MAIN}@1795630414.629875:qmp_enter_query_version {{}}\n{MAIN}@1795630414.629899:"
    'qmp_exit_query_version {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": '
    '"Debian 1:7.2+dfsg-7+deb12u18+b3"} 1\n'
)


def _pick(rng, n, options):
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), n)]


#: argument generators: (rng, page addresses of the lines) -> values; other words are constants
ARGS = {
    "ram": lambda r, p: ["pc.ram"] * len(p),
    "gpa": lambda r, p: p,
    "hva": lambda r, p: p + HOST,
    "dd": lambda r, p: [DD] * len(p),
    "flags": lambda r, p: _pick(r, len(p), [0x8, 0x22, 0x28]),
    "len": lambda r, p: _pick(r, len(p), [0x1000] * 7 + [0x3000]),
    "time": lambda r, p: r.integers(0, 9000, len(p)),
    "actual": lambda r, p: r.integers(1, 512, len(p)) << 8,
    "vmsd": lambda r, p: _pick(r, len(p), ["timer", "cpu", "apic", "cpu_common", "fpreg_tmp"]),
    "field": lambda r, p: _pick(r, len(p), ["cpu_ticks_offset", "env.eip", "unused", "halted"]),
    "migrate": lambda r, p: [MIGRATE] * len(p),
    "balloon": lambda r, p: ['{"actual": 1073741824}'] * len(p),
    "other": lambda r, p: _pick(r, len(p), OTHER),
}
#: (event, thread, share of the lines of the real trace, mean burst length, its arguments)
EVENTS = [
    ("virtio_balloon_handle_output", VCPU, 0.4716, 256, "ram gpa"),
    ("ram_load_loop", MAIN, 0.2308, 64, "ram gpa flags hva"),
    ("ram_block_discard_range", VCPU, 0.1180, 16, "ram hva len 1 0 0"),
    ("ram_load_postcopy_loop", LISTEN, 0.0507, 1, "0 gpa flags"),
    ("mark_postcopy_blocktime_end", LISTEN, 0.0497, 1, "hva dd time 0"),
    ("postcopy_place_page", LISTEN, 0.0491, 1, "hva"),
    ("vmstate_load_state_field", MAIN, 0.0098, 8, "vmsd field"),
    ("virtio_balloon_get_config", VCPU, 0.0018, 1, "131072 actual"),
    ("virtio_balloon_set_config", VCPU, 0.0018, 1, "actual actual"),
    ("postcopy_ram_fault_thread_request", FAULT, 0.0013, 1, f"hva ram gpa {MAIN}"),
    ("postcopy_page_req_add", FAULT, 0.0013, 1, "hva 1"),
    ("postcopy_page_req_del", LISTEN, 0.0013, 1, "hva 0"),
    ("mark_postcopy_blocktime_begin", FAULT, 0.0013, 1, "hva dd time 0 0"),
    ("postcopy_place_page_zero", LISTEN, 0.0006, 1, "hva"),
    ("qmp_enter_query_migrate", MAIN, 0.0001, 1, "{}"),
    ("qmp_exit_query_migrate", MAIN, 0.0001, 1, "migrate 1"),
    ("qmp_exit_query_balloon", MAIN, 0.0001, 1, "balloon 1"),
    (None, 0, 0.0010, 1, "other"),  # non-trace lines
]
_C_SPEC = re.compile(r"%([-+ #0']*\d*(?:\.\d+)?)(?:hh|h|ll|l|L|q|j|z|Z|t)?([diouxXcspfFeEgG%])")


def line_format(name: str | None, tid: int) -> str:
    """Python %-format of a whole line: prefix, then the catalog's QEMU 7.2 format string."""
    if name is None:
        return "%.0s%.0s%s\n"  # a non-trace line: swallow sec and usec, print the text
    from tracetool.catalog import Catalog

    ev = next(
        v
        for v in Catalog.bundled().variants(name)
        if v.plan is not None and (v.versions[0] or (0, 0)) <= (7, 2) <= (v.versions[1] or (99, 0))
    )

    def conv(m: re.Match) -> str:  # %llx -> %x, %u -> %d, %p -> 0x%x (no NULL pointers here)
        flags, c = m.groups()
        return {"%": "%%", "p": f"0x%{flags}x"}.get(c, f"%{flags}{'d' if c in 'iu' else c}")

    args = _C_SPEC.sub(conv, ev.fmt)
    return f"{tid}@%d.%06d:{name}" + (f" {args}\n" if args else "\n")


def generate(path: Path, size_mb: int, seed: int, batch: int = 200_000) -> None:
    """Write about size_mb MB of trace, a batch of lines at a time (memory stays bounded)."""
    rng = np.random.default_rng(seed)
    formats = [line_format(name, tid) for name, tid, *_ in EVENTS]
    share = np.array([e[2] for e in EVENTS])
    burst = np.array([e[3] for e in EVENTS], dtype=float)
    p_burst = share / burst / (share / burst).sum()  # so that lines follow `share`
    t_us, written, target = 1795630445 * 10**6, 0, size_mb * MB
    with open(path, "wb") as f:
        f.write(HEADER.encode())
        while written < target:
            ev = np.empty(0, np.int64)
            while len(ev) < batch:  # bursts of one event with geometric lengths
                kinds = rng.choice(len(EVENTS), size=batch // 8, p=p_burst)
                ev = np.concatenate([ev, np.repeat(kinds, rng.geometric(1 / burst[kinds]))])
            ev = ev[:batch]
            ts = t_us + np.cumsum(rng.integers(1, 40, batch))  # microseconds
            t_us = int(ts[-1])
            sec, usec = np.divmod(ts, 10**6)
            out = np.empty(batch, dtype=object)
            for e, fmt in enumerate(formats):
                idx = np.flatnonzero(ev == e)
                pages = rng.integers(0, PAGES, idx.size) << 12
                cols = [sec[idx], usec[idx]] + [
                    ARGS[w](rng, pages) if w in ARGS else [int(w) if w.isdigit() else w] * idx.size
                    for w in EVENTS[e][4].split()
                ]
                cols = [c.tolist() if isinstance(c, np.ndarray) else c for c in cols]
                out[idx] = list(map(fmt.__mod__, zip(*cols, strict=True)))
            data = "".join(out.tolist()).encode()
            if written + len(data) > target:  # stop at the first line end past the target
                data = data[: data.find(b"\n", target - written - 1) + 1 or len(data)]
            f.write(data)
            written += len(data)


# -- the plain-Python baseline --------------------------------------------------------------
def baseline_parse(path: str) -> dict:
    """A regex per line into Python lists, Arrow tables at the end: a straightforward parser."""
    import pyarrow as pa

    from tracetool.catalog import ArgKind, Catalog, Conv, plan_to_regex
    from tracetool.catalog.ctypes import ARROW_TYPES

    def converter(col):
        if col.kind is ArgKind.STRING:
            return lambda s: None if s == "(null)" else s
        if col.kind is ArgKind.FLOAT:
            return float
        base = 16 if col.conv in (Conv.HEX, Conv.PTR) else 8 if col.conv is Conv.OCT else 10
        mask, half = (1 << col.bits) - 1, 1 << (col.bits - 1)
        if col.kind is ArgKind.BOOL:
            return lambda s: int(s, base) != 0
        if col.kind is ArgKind.SIGNED:
            return lambda s: ((int(s, base) + half) & mask) - half
        return lambda s: 0 if s == "(nil)" else int(s, base) & mask

    catalog = Catalog.bundled()
    prefix = re.compile(r"(\d+)@(\d+)\.(\d+):([A-Za-z_][A-Za-z0-9_]*)(?: (.*))?\Z")
    plans: dict[str, list] = {}
    events: list[list] = [[], [], [], [], []]  # ts_ns, tid, event, line, args
    typed: dict[tuple[str, int], list] = {}
    other = rejected = lineno = 0
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for lineno, line in enumerate(f, 1):
            m = prefix.match(line.rstrip("\n"))
            if m is None:
                other += 1
                continue
            tid, sec, usec, name, args = m.groups()
            variants = plans.get(name)
            if variants is None:
                variants = plans[name] = [
                    (vi, re.compile(plan_to_regex(ev.plan)), [converter(c) for c in ev.columns()])
                    for vi, ev in enumerate(catalog.variants(name))
                    if ev.plan is not None
                ]
            key = [int(sec) * 1_000_000_000 + int(usec) * 1000, int(tid), lineno]
            for vi, rx, convs in variants:
                a = rx.match(args or "")
                if a is not None:
                    values = [cv(g) for cv, g in zip(convs, a.groups(), strict=True)]
                    typed.setdefault((name, vi), []).append(key + values)
                    break
            else:
                if variants:  # catalogued, but no variant matches: rejected
                    rejected += 1
                    continue
            for col, value in zip(events, (key[0], key[1], name, lineno, args), strict=True):
                col.append(value)
    types = [pa.int64(), pa.int32(), pa.string(), pa.int64(), pa.string()]
    names = ["ts_ns", "tid", "event", "line", "args"]
    table = pa.table([pa.array(c, t) for c, t in zip(events, types, strict=True)], names=names)
    table = table.set_column(2, "event", table["event"].dictionary_encode())
    out_bytes = table.nbytes
    for (name, vi), rows in typed.items():
        cols = catalog.variants(name)[vi].columns()
        types = [pa.int64(), pa.int32(), pa.int64()] + [ARROW_TYPES[c.kind] for c in cols]
        arrays = [pa.array(c, t) for c, t in zip(zip(*rows, strict=True), types, strict=True)]
        out_bytes += sum(a.nbytes for a in arrays)
    return {"bytes": os.path.getsize(path), "lines": lineno, "events": table.num_rows,
            "other": other, "rejected": rejected, "out_bytes": out_bytes}  # fmt: skip


# -- measurements, each in its own pinned subprocess ---------------------------------------
def child(kind: str, path: str) -> None:
    """Run one measurement in this process; print its figures as one JSON line."""
    import tracetool

    warm_s = 0.0
    if kind != "baseline":  # load the compiled kernels (numba cache) before timing: reported apart
        t0 = time.perf_counter()
        tracetool.load(SAMPLE, engine=kind)
        warm_s = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if kind == "baseline":
        res = baseline_parse(path)
        res["seconds"] = time.perf_counter() - start
    else:
        trace = tracetool.load(path, engine=kind)
        counts = trace.event_counts()
        if counts:
            trace.table(next(iter(counts)))  # the biggest event's typed table, really built
        seconds = time.perf_counter() - start  # measuring the output is not part of the parse
        typed = sum(b.nbytes for bs in trace._typed.values() for b in bs)
        s = trace.stats
        res = {"bytes": s.bytes, "lines": s.lines, "events": s.events, "other": s.other_lines,
               "rejected": s.rejected_lines, "out_bytes": trace.events.nbytes + typed,
               "seconds": seconds}  # fmt: skip
    res["warm_s"] = warm_s
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["import_rss_mb"] = rss0 / 1024
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    res["rss_end_mb"] = pages * os.sysconf("SC_PAGE_SIZE") / MB
    res["cpus"] = len(os.sched_getaffinity(0))
    print(json.dumps(res))


def run(argv: list[str], cpu: int, env: dict | None = None) -> tuple[float, float, str, str]:
    """Run argv pinned to one cpu: wall seconds, peak RSS MB of that process, stdout, stderr."""
    return run_pinned(argv, cpu, env)


def measure(kind: str, path: Path, cpu: int, env: dict | None = None, repeat: int = 1) -> dict:
    """The figures of the median (by time) of `repeat` child runs of one measurement."""
    argv = [sys.executable, __file__, "--child", kind, "--input", str(path)]
    runs = [json.loads(run(argv, cpu, env)[2].strip().splitlines()[-1]) for _ in range(repeat)]
    median = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {**median, "runs": [(r["seconds"], r["maxrss_mb"]) for r in runs]}


def convert(src: Path, out: Path, cpu: int, repeat: int) -> dict:
    """`tracetool convert src -o out.parquet`, the median of `repeat` runs."""
    argv = [sys.executable, "-m", "tracetool.cli", "convert", str(src), "-o", str(out), "-q"]
    size, runs = decompressed_size(src), []
    for _ in range(repeat):
        wall, rss, _, err = run(argv, cpu)
        n = int(re.search(r"wrote ([\d,]+) rows", err).group(1).replace(",", ""))
        runs.append({"bytes": size, "seconds": wall, "maxrss_mb": rss, "events": n})
        out.unlink(missing_ok=True)
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def head(src: Path, dst: Path, nbytes: int) -> None:
    """Copy the first nbytes (decompressed) of src to dst, up to the end of that line."""
    from tracetool.inputs import open_input

    inp = open_input(src)
    try:
        with open(dst, "wb") as out:
            while nbytes > 0 and (block := inp.stream.read(min(nbytes, 8 * MB))):
                out.write(block)
                nbytes -= len(block)
            while nbytes <= 0 and (block := inp.stream.read(4096)):
                out.write(block[: block.find(b"\n") + 1 or len(block)])
                if b"\n" in block:
                    break
    finally:
        inp.close()


def decompressed_size(path: Path) -> int:
    """Bytes of the decompressed input (reading it also warms the page cache)."""
    from tracetool.inputs import open_input

    inp, total = open_input(path), 0
    try:
        while block := inp.stream.read(8 * MB):
            total += len(block)
    finally:
        inp.close()
    return total


def row(name: str, r: dict, base_mb_s: float | None) -> dict:
    """One line of the table; speed-up relative to base_mb_s (None: this is the baseline)."""
    mb, s = r["bytes"] / MB, r["seconds"]
    return {"run": name, "input_mb": mb, "seconds": s, "mb_s": mb / s, "events_s": r["events"] / s,
            "peak_rss_mb": r["maxrss_mb"], "out_mb": r.get("out_bytes", 0) / MB,
            "speedup": mb / s / (base_mb_s or mb / s)}  # fmt: skip


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    versions = {m: version(m) for m in ("numpy", "pyarrow", "numba")}
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), **versions}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=400, help="size of the synthetic trace")
    ap.add_argument("--input", type=Path, help="benchmark this trace instead")
    ap.add_argument("--baseline-mb", type=int, default=40, help="MB for baseline and arrow runs")
    ap.add_argument("--keep", action="store_true", help="keep data in bench-data/ and reuse it")
    ap.add_argument("--seed", type=int, default=72, help="seed of the synthetic trace")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="core to use")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement (the median)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, str(a.input))

    tmp = tempfile.TemporaryDirectory(prefix="tracetool-bench-")
    work = ROOT / "bench-data" if a.keep else Path(tmp.name)
    work.mkdir(exist_ok=True)
    load0 = os.getloadavg()
    src = a.input.resolve() if a.input else None  # children run in the repository folder
    if src is None:
        src = work / f"synthetic-qemu72-{a.size_mb}mb-seed{a.seed}.trace.log"
        if not src.exists():
            t = time.perf_counter()
            generate(src, a.size_mb, a.seed)
            print(f"generated {src} in {time.perf_counter() - t:.1f} s")
    total = decompressed_size(src)
    part, half = work / "head.trace.log", work / "half.trace.log"
    head(src, part, min(a.baseline_mb * MB, total))
    head(src, half, total // 2)
    os.sync()  # no writeback of the files just written during the measurements
    print(f"input {src}: {total / MB:.0f} MB; cpu {a.cpu}; load average {load0[0]:.2f}", flush=True)

    with tempfile.TemporaryDirectory() as empty:  # numba JIT compile into an empty cache
        jit = measure("numba", SAMPLE, a.cpu, {"TRACETOOL_CACHE_DIR": empty})
    measure("numba", SAMPLE, a.cpu)  # fill the user's cache (a throwaway run)
    warm = measure("numba", SAMPLE, a.cpu)
    base = measure("baseline", part, a.cpu, repeat=a.repeat)
    arrow = measure("arrow", part, a.cpu, repeat=a.repeat)
    if (base["events"], base["rejected"]) != (arrow["events"], arrow["rejected"]):
        print(f"warning: baseline and tracetool disagree: {base} {arrow}")
    bmbs = base["bytes"] / MB / base["seconds"]
    rows = [row(f"baseline (first {base['bytes'] / MB:.0f} MB)", base, None)]
    rows.append(row("tracetool arrow (same MB)", arrow, bmbs))
    same = measure("numba", part, a.cpu, repeat=a.repeat)
    rows.append(row("tracetool numba (same MB)", same, bmbs))
    full = measure("numba", src, a.cpu, repeat=a.repeat)
    rows.append(row("tracetool numba (whole input)", full, bmbs))
    for name, path in (("whole", src), ("half", half)):
        conv = convert(path, work / "out.parquet", a.cpu, a.repeat)
        rows.append(row(f"convert -> parquet ({name} input)", conv, bmbs))
    analyze_argv = [sys.executable, "-m", "tracetool.cli", "analyze", str(SAMPLE), "-q"]
    analyze = [run(analyze_argv, a.cpu)[:2] for _ in range(4)][1:]  # after a warm-up run
    tmp.cleanup()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "argv": sys.argv[1:],
        "machine": machine(),
        "cpu": a.cpu,
        "loadavg": [load0[0], os.getloadavg()[0]],
        "input": str(src),
        "input_bytes": total,
        "rows": rows,
        "analyze": {
            "mb": decompressed_size(SAMPLE) / MB,
            "seconds": [w for w, _ in analyze],
            "peak_rss_mb": max(r for _, r in analyze),
        },
        "jit_empty_cache_s": jit["warm_s"],
        "warm_start_s": warm["warm_s"],
        "baseline": base,
        "numba_whole": full,
        "runs": {
            r["run"]: m.get("runs") for r, m in zip(rows[1:4], (arrow, same, full), strict=True)
        },
    }
    results["checks"] = checks(results)
    report(results)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


def checks(res: dict) -> list[dict]:
    """The project's targets (and convert's flat memory), each met or not."""
    rows, full = res["rows"], res["numba_whole"]
    analyze_s = statistics.median(res["analyze"]["seconds"])
    ratio = full["maxrss_mb"] / (full["out_bytes"] / MB)
    whole, half = rows[4]["peak_rss_mb"], rows[5]["peak_rss_mb"]
    speedup = f"{rows[2]['speedup']:.1f}x ({rows[3]['speedup']:.1f}x)"
    growth = (full["maxrss_mb"] - full["import_rss_mb"]) / (full["out_bytes"] / MB)
    rss = (
        f"{full['maxrss_mb']:.0f} / {full['out_bytes'] / MB:.0f} MB = {ratio:.2f}x "
        f"(growth over the {full['import_rss_mb']:.0f} MB of interpreter and libraries: {growth:.2f}x)"
    )
    return [
        {"target": f">= {TARGET_MB_S:.0f} MB/s on one core, end to end (numba, whole input)",
         "measured": f"{rows[3]['mb_s']:.0f} MB/s", "met": rows[3]["mb_s"] >= TARGET_MB_S},
        {"target": f">= {TARGET_SPEEDUP:.0f}x the baseline (numba same MB; whole input)",
         "measured": speedup, "met": rows[2]["speedup"] >= TARGET_SPEEDUP},
        {"target": f"peak RSS < {TARGET_RSS_RATIO}x the output tables (numba, whole input)",
         "measured": rss, "met": ratio < TARGET_RSS_RATIO},
        {"target": f"analyze of the 10K-line sample < {TARGET_ANALYZE_S} s",
         "measured": f"{analyze_s:.2f} s", "met": analyze_s < TARGET_ANALYZE_S},
        {"target": "convert memory flat: whole vs half input within 10%",
         "measured": f"{whole:.0f} vs {half:.0f} MB", "met": whole <= 1.1 * half},
    ]  # fmt: skip


def report(res: dict) -> None:
    """Print the results as Markdown tables and notes (what docs/performance.md shows)."""
    print("\n| run | input MB | s | MB/s | events/s | peak RSS MB | out MB | vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        out = f"{r['out_mb']:.0f}" if r["out_mb"] else "-"
        print(
            f"| {r['run']} | {r['input_mb']:.0f} | {r['seconds']:.2f} | {r['mb_s']:.1f} | "
            f"{r['events_s'] / 1e6:.2f} M | {r['peak_rss_mb']:.0f} | {out} | {r['speedup']:.1f}x |"
        )
    an = res["analyze"]
    print(
        f"| analyze 10K-line sample (median of 3) | {an['mb']:.1f} | "
        f"{statistics.median(an['seconds']):.2f} | | | {an['peak_rss_mb']:.0f} | | |"
    )
    full, m = res["numba_whole"], res["machine"]
    print(
        f"\nnumba start-up: JIT compile into an empty cache {res['jit_empty_cache_s']:.1f} s; "
        f"with the warm cache a 10K-line file loads in {res['warm_start_s']:.2f} s "
        "(import numba, load the kernels, parse). Timed runs load that file first, untimed "
        f"({full['warm_s']:.2f} s in the whole-input run), so MB/s is the steady-state rate."
    )
    print(
        f"numba whole input: {full['lines']:,} lines = {full['events']:,} events + "
        f"{full['other']:,} other + {full['rejected']:,} rejected; RSS after imports "
        f"{full['import_rss_mb']:.0f} MB, peak {full['maxrss_mb']:.0f} MB, at the end "
        f"{full['rss_end_mb']:.0f} MB; the run saw {full['cpus']} cpu."
    )
    for r in res["rows"][1:4]:
        runs = res["runs"].get(r["run"])
        if runs and len(runs) > 1:
            each = ", ".join(f"{r['input_mb'] / sec:.0f} MB/s ({rss:.0f} MB)" for sec, rss in runs)
            print(f"every run of {r['run']}: {each}")
    print(
        f"machine: {m['nproc']} cpus, {m['cpu']}; python {m['python']}, numpy {m['numpy']}, "
        f"pyarrow {m['pyarrow']}, numba {m['numba']}; load average {res['loadavg'][0]:.2f} "
        f"before, {res['loadavg'][1]:.2f} after; every run pinned to cpu {res['cpu']}, "
        "NUMBA_NUM_THREADS=1."
    )
    print("\n| target | measured | |\n|---|---:|---|")
    for c in res["checks"]:
        print(f"| {c['target']} | {c['measured']} | {'met' if c['met'] else 'NOT met'} |")


if __name__ == "__main__":
    main()
