"""Throughput and peak memory of tracetool's balloon x postcopy replay, against a plain-Python
per-event baseline measured in the same run.

Run from the repository with the project's interpreter::

    .venv/bin/python benchmarks/bench_replay.py                    # about 2M page events
    .venv/bin/python benchmarks/bench_replay.py --pages 500000 --guest-gib 4 --json bench.json
    .venv/bin/python benchmarks/bench_replay.py --input dst.trace.log.gz --profile 25

Input: ``--input TRACE`` (anything ``tracetool.load`` reads), else a synthetic QEMU 7.2
destination log generated with a fixed ``--seed``: ``pc.ram`` of ``--guest-gib`` GiB (default 16)
at HVA 0x7f0000000000, QMP query-version 7.2, ADVISE with ``postcopy_init_range`` and the
whole-block ``ram_discard_range``, ``ram_load_loop`` precopy loads of most pages (all but the
never-sent and free-page-hinted ones), the discard commands (``loadvm_postcopy_ram_handle_discard``
then ``ram_discard_range`` + ``ram_block_discard_range`` per range), LISTEN/RUN and the listen
thread, the postcopy stream (``ram_load_postcopy_loop`` + ``postcopy_place_page(_zero)`` of every
discarded page, ``postcopy_ram_fault_thread_request`` for some), then listen-thread exit, cleanup
and ``completed``. Balloon batches of 256 ``virtio_balloon_handle_output`` on a vCPU thread, each
closed by ``virtio_balloon_set_config`` with ``actual - oldactual`` = +-256, come before, inside
and after the window; inflates outside the window are followed by their 4 KiB
``ram_block_discard_range`` (QEMU 7.2 drops the ones inside). Inside the window the inflates hit
present, discarded-not-yet-placed, requested, in-transit and never-sent pages, so every conflict
class occurs. Every line is printed with the QEMU 7.2 format of the bundled catalog. The size is
set by ``--pages``, the approximate number of page events the replay normalises (the trace has
more lines: the precopy loads of pages no balloon or postcopy event touches are not page events).

Every measurement is its own subprocess pinned to one CPU (``--cpu``; ``os.sched_setaffinity`` in
the child before it execs Python; ``NUMBA_NUM_THREADS=OMP_NUM_THREADS=1``) and reports JSON,
including ``ru_maxrss``. Each runs ``--repeat`` times (default 3) and the median run is shown
(the run whose time is the median; the fastest and every run are printed too, other work on the
machine only slows a run down); the JSON keeps every run's time. Within the
replay child the peak is reset between stages (``/proc/self/clear_refs``), so a stage's "peak
RSS" is the process high-water mark during that stage (the loaded trace included; "RSS after
load" shows what the trace alone holds). What the figures mean:

* ``numba``: a throwaway run (load + replay of a small synthetic trace) fills the numba cache
  first; "JIT compile" is that replay with an empty cache. Not part of any figure below.
* ``load``: ``tracetool.load(TRACE)``, for context (MB/s of decompressed input).
* ``replay``: ``Trace.replay()`` (all four policies) in a fresh process, after an in-process
  warm-up replay of the small trace (so the numba kernels are already loaded from the cache).
  It is timed by wrapping the functions ``engine.replay`` calls (the engine is not modified):
  ``normalisation`` is everything before the policy loop (order, windows, addresses, balloon
  resolution, ``pages.build``; "of which Trace.table" is the lazy typed-table build inside them);
  ``scans`` are the compiled passes: every function of ``tracetool.replay.kernels`` (the
  per-page look-ups such as ``next_place``, ``anomalies``, and ``kernels.replay`` once per
  policy); the rest of the policy loop is vectorised accounting and the QEMU version
  detection; ``summary`` is ``ReplayResult.summary``. ``whole replay`` is ``Trace.replay()`` +
  ``summary``.
* ``baseline``: a plain-Python replay written below, in its own process: the engine's sorted
  page events (saved by the replay child) converted with ``.tolist()`` (not timed), a reverse
  pass with dicts for each event's next placement and next migration event, then a forward
  pass with a per-page dict state machine implementing ``kernels.replay``'s transitions for
  one policy (``no-inhibit``). Its conflict counts are checked against the engine's
  (OK/MISMATCH), and every per-request output too. ``one-policy scan`` is the engine's
  equivalent work (the per-page look-ups ``kernels.replay`` takes + one ``kernels.replay``),
  the like-for-like comparison.

"page events" is ``len(result.page_events)``; page events/s is that count over a stage's seconds
(the scans pass over them several times: one pass runs faster than the rate shown). The project
target is >= 10M page events/s on one core for the replay itself, checked for the scans alone and
for the whole replay including normalisation; the anchors measured earlier were 1.1M/s (plain
Python) and 2.5M/s (simple numpy). ``--profile N`` prints the top N cProfile entries of the
normalisation (a separate run: profiling slows it down).

Measured 2026-11-26 04:33 UTC (2-CPU VM, load average 0.78-0.93) with
``.venv/bin/python benchmarks/bench_replay.py --keep --repeat 3 --cpu 0``, medians of 3:
1,998,324 page events; normalisation 0.51 s, scans 0.046 s (43.0M page events/s: target met),
summary 0.105 s, whole replay 0.69 s = 2.89M page events/s (target of 10M/s **not** met; it was
2.29 s = 0.87M/s before the normalisation work of that day). With ``--input
a-balloon-during-postcopy/dst.trace.log.gz``: whole replay 0.33 s = 3.79M page events/s (was
0.51 s). Details: ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pinned import run_pinned  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
GIB = 1 << 30
PAGE = 4096
HVA_BASE = 0x7F0000000000
MAIN, VCPU, FAULT, LISTEN = 15155, 15158, 15643, 15644  # thread ids of the real capture
TARGET = 10e6
ANCHORS = (("plain Python", 1.1e6), ("simple numpy", 2.5e6))
POST_SHARE, BALLOON_SHARE = 0.057, 0.283  # of --pages: postcopy pages, balloon requests
VERSION = (
    '{"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}'
)

# -- a synthetic QEMU 7.2 destination trace ------------------------------------------------
#: line kinds: (event, thread, arguments); "a0".."a2" are per-line values, the rest constants
LINES = {
    "enter_version": ("qmp_enter_query_version", MAIN, ("{}",)),
    "exit_version": ("qmp_exit_query_version", MAIN, (VERSION, 1)),
    "state_active": ("migrate_set_state", MAIN, ("active",)),
    "advise": ("loadvm_postcopy_handle_advise", MAIN, ()),
    "init_range": ("postcopy_init_range", MAIN, ("pc.ram", "a0", 0, "a1")),
    "mig_discard": ("ram_discard_range", MAIN, ("pc.ram", "a0", "a1")),
    "main_discard": ("ram_block_discard_range", MAIN, ("pc.ram", "a0", "a1", 1, 0, 0)),
    "load": ("ram_load_loop", MAIN, ("pc.ram", "a0", "a1", "a2")),
    "discard_cmd": ("loadvm_postcopy_ram_handle_discard", MAIN, ()),
    "listen": ("loadvm_postcopy_handle_listen", MAIN, ("enter",)),
    "state_postcopy": ("migrate_set_state", LISTEN, ("postcopy-active",)),
    "lt_start": ("postcopy_ram_listen_thread_start", LISTEN, ()),
    "listen_return": ("loadvm_postcopy_handle_listen", MAIN, ("return",)),
    "run": ("loadvm_postcopy_handle_run", MAIN, ()),
    "receive": ("ram_load_postcopy_loop", LISTEN, (0, "a0", "a1")),
    "place": ("postcopy_place_page", LISTEN, ("a0",)),
    "place_zero": ("postcopy_place_page_zero", LISTEN, ("a0",)),
    "fault": ("postcopy_ram_fault_thread_request", FAULT, ("a0", "pc.ram", "a1", MAIN)),
    "balloon": ("virtio_balloon_handle_output", VCPU, ("pc.ram", "a0")),
    "balloon_discard": ("ram_block_discard_range", VCPU, ("pc.ram", "a0", PAGE, 1, 0, 0)),
    "set_config": ("virtio_balloon_set_config", VCPU, ("a0", "a1")),
    "lt_exit": ("postcopy_ram_listen_thread_exit", LISTEN, ()),
    "cleanup_entry": ("postcopy_ram_incoming_cleanup_entry", LISTEN, ()),
    "cleanup_range": ("postcopy_cleanup_range", LISTEN, ("pc.ram", "a0", 0, "a1")),
    "cleanup_exit": ("postcopy_ram_incoming_cleanup_exit", LISTEN, ()),
    "state_completed": ("migrate_set_state", LISTEN, ("completed",)),
}
CODE = {k: i for i, k in enumerate(LINES)}
_C_SPEC = re.compile(r"%([-+ #0']*\d*(?:\.\d+)?)(?:hh|h|ll|l|L|q|j|z|Z|t)?([diouxXcspfFeEgG%])")


def line_format(name: str, tid: int, args: tuple) -> tuple[str, list[int]]:
    """Python %-format of a whole line (``TID@SEC.USEC:name fmt``, QEMU's log backend) from the
    bundled catalog's QEMU 7.2 format, constants filled in; and which of a0..a2 it takes."""
    from tracetool.catalog import Catalog

    ev = next(
        v
        for v in Catalog.bundled().variants(name)
        if v.plan is not None and (v.versions[0] or (0, 0)) <= (7, 2) <= (v.versions[1] or (99, 0))
    )
    specs = [m for m in _C_SPEC.finditer(ev.fmt) if m.group(2) != "%"]
    if len(specs) != len(args):
        raise ValueError(f"{name}: {len(args)} arguments for format {ev.fmt!r}")
    out, pos, cols, k = [], 0, [], 0
    for m in _C_SPEC.finditer(ev.fmt):
        out.append(ev.fmt[pos : m.start()].replace("%", "%%"))
        pos = m.end()
        flags, c = m.groups()
        if c == "%":
            out.append("%%")
            continue
        py = "0x%" + flags + "x" if c == "p" else f"%{flags}{'d' if c in 'iu' else c}"
        arg = args[k]
        k += 1
        if isinstance(arg, str) and re.fullmatch(r"a[0-2]", arg):
            out.append(py)
            cols.append(int(arg[1]))
        else:
            out.append((py % arg).replace("%", "%%"))
    out.append(ev.fmt[pos:].replace("%", "%%"))
    return f"{tid}@%d.%06d:{name} " + "".join(out) + "\n", cols


class Records:
    """Trace lines as columns: a sort key (slot), the line kind and up to three values."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, slot, kind: str, a0=0, a1=0, a2=0) -> None:
        slot = np.atleast_1d(np.asarray(slot, np.float64))
        n = len(slot)
        cols = [np.broadcast_to(np.asarray(a, np.int64), (n,)) for a in (a0, a1, a2)]
        self.parts.append((slot, np.full(n, CODE[kind], np.int8), *cols))

    def columns(self):
        return [np.concatenate([p[i] for p in self.parts]) for i in range(5)]


def gpa_of(off: np.ndarray, ram: int) -> np.ndarray:
    """Guest-physical address of pc.ram offsets: x86 q35 rule (low RAM up to 2 GiB)."""
    low = 0x80000000 if ram >= 0xB0000000 else ram
    return np.where(off < low, off, off - low + (1 << 32))


def _pick(rng, pg: np.ndarray, m: np.ndarray, lo: int, top: int, pages: np.ndarray):
    """Replace pg[m] by random pages[lo:top]; the mask used (empty if lo:top is)."""
    m = m & (lo < top)
    if m.any():
        pg[m] = pages[rng.integers(lo, top, m.sum())]
    return m


def generate(path: Path, pages: int, guest_gib: int, seed: int) -> dict:
    """Write a synthetic QEMU 7.2 destination trace of about ``pages`` page events."""
    rng = np.random.default_rng(seed)
    ram = guest_gib * GIB
    n_guest = ram // PAGE
    rec = Records()
    for i, kind in enumerate(("enter_version", "exit_version", "state_active", "advise")):
        rec.add(i, kind)
    rec.add(4, "init_range", HVA_BASE, ram)
    rec.add(5, "mig_discard", 0, ram)
    rec.add(6, "main_discard", HVA_BASE, ram)

    # Page sets: postcopy pages (runs of consecutive pages; 30% of them never sent in
    # precopy), free-page-hinted pages (never sent at all), the rest loaded in precopy.
    n_runs = max(40, int(POST_SHARE * pages / 1.67))
    starts = rng.integers(0, n_guest - 8, n_runs)
    lens = rng.geometric(0.6, n_runs)
    post = np.unique(
        np.repeat(starts, lens) + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    )
    post = post[post < n_guest]
    in_post = np.zeros(n_guest, bool)
    in_post[post] = True
    hinted = rng.choice(n_guest, n_guest // 200, replace=False)
    hinted = hinted[~in_post[hinted]]
    loaded = np.ones(n_guest, bool)
    loaded[hinted] = False
    loaded[post[rng.random(len(post)) < 0.3]] = False
    others = np.flatnonzero(loaded & ~in_post)  # present after precopy, never discarded

    # Precopy: one load per loaded page, in address order.
    lp = np.flatnonzero(loaded)
    flags = rng.choice(np.array([0x8, 0x28, 0x2, 0x22]), len(lp), p=[0.05, 0.55, 0.05, 0.35])
    t_load = 10
    rec.add(t_load + np.arange(len(lp)), "load", lp * PAGE, flags, HVA_BASE + lp * PAGE)

    # Discard commands: the runs of postcopy pages, 12 ranges per command.
    brk = np.flatnonzero(np.diff(post) != 1) + 1
    r_start = post[np.r_[0, brk]]
    r_len = np.diff(np.r_[0, brk, len(post)])
    r = np.arange(len(r_start))
    t_disc = t_load + len(lp) + 10
    cmd = np.unique(r // 12)
    rec.add(t_disc + cmd * 25, "discard_cmd")
    slot = t_disc + (r // 12) * 25 + 1 + 2 * (r % 12)
    rec.add(slot, "mig_discard", r_start * PAGE, r_len * PAGE)
    rec.add(slot + 1, "main_discard", HVA_BASE + r_start * PAGE, r_len * PAGE)

    # LISTEN, the listen thread, RUN.
    t_listen = t_disc + len(cmd) * 25 + 5
    for i, kind in enumerate(("listen", "state_postcopy", "lt_start", "listen_return")):
        rec.add(t_listen + i, kind)
    w0 = t_listen + 10
    n_post = len(post)
    rec.add(w0 + 2 * min(40, n_post - 1) + 0.9, "run")

    # Postcopy: page i of the stream is received at w0 + 2i and placed at w0 + 2i + 1; the
    # background stream goes up the address space, faulted pages (15%) come out of order.
    faulted = rng.random(n_post) < 0.15
    key = np.where(faulted, rng.random(n_post) * n_post, np.arange(n_post))
    stream = post[np.argsort(key, kind="stable")]
    place_slot = np.empty(n_guest, np.float64)  # by page, for postcopy pages
    place_slot[stream] = w0 + 2 * np.arange(n_post) + 1
    zero = rng.random(n_post) < 0.03
    pflags = np.where(zero, 0x2, rng.choice(np.array([0x8, 0x28]), n_post))
    rec.add(place_slot[stream] - 1, "receive", stream * PAGE, pflags)
    rec.add(place_slot[stream][~zero], "place", HVA_BASE + stream[~zero] * PAGE)
    rec.add(place_slot[stream][zero], "place_zero", HVA_BASE + stream[zero] * PAGE)
    fp = post[faulted]
    f_slot = np.maximum(place_slot[fp] - rng.integers(3, 60, len(fp)) + 0.5, w0 - 0.5)
    rec.add(f_slot, "fault", HVA_BASE + fp * PAGE, fp * PAGE)

    t_end = w0 + 2 * n_post + 5
    rec.add(t_end, "lt_exit")
    rec.add(t_end + 1, "cleanup_entry")
    rec.add(t_end + 2, "cleanup_range", HVA_BASE, ram)
    rec.add(t_end + 3, "cleanup_exit")
    rec.add(t_end + 4, "state_completed")

    # Balloon batches: 30% during precopy, 45% inside the window, the rest after it.
    n_b = max(12, round(BALLOON_SHARE * pages / 256))
    n_pre, n_win = int(0.3 * n_b), min(int(0.45 * n_b), len(post))
    n_aft = n_b - n_pre - n_win
    b_slot = np.concatenate(
        [
            t_load + np.sort(rng.choice(len(lp), n_pre, replace=False)),
            w0 + 2 * np.sort(rng.choice(n_post, n_win, replace=False)),
            t_end + 10 + 2 * np.arange(n_aft),
        ]
    )
    b_slot = b_slot + 0.37  # between two lines of the other threads, one batch a slot
    dirs = (["I", "I", "D"] * n_pre)[:n_pre] + (["I", "I", "I", "D"] * n_win)[:n_win]
    dirs += (["D", "I"] * n_aft)[:n_aft]
    pool: list[np.ndarray] = []  # the guest's balloon, one array per inflate batch
    actual = 0
    j = np.arange(256)
    for b, (s, d) in enumerate(zip(b_slot, dirs, strict=True)):
        window = n_pre <= b < n_pre + n_win
        if d == "D" and pool:
            pg = pool.pop()
        else:
            d = "I"
            if not window:
                pg = rng.choice(others, 256)
            else:
                i = int(round((s - 0.37 - w0) / 2))  # stream page i is in transit now
                cat = rng.choice(5, 256, p=[0.35, 0.25, 0.10, 0.20, 0.10])
                pg = rng.choice(others, 256)  # (0) present since precopy: after-place
                hi = n_post - 1
                # (1) discarded, placed later: before-arrival
                _pick(rng, pg, cat == 1, i + 1, hi + 1, stream)
                # (2) requested now (a fault just before the batch), placed soon: in-flight
                m = _pick(rng, pg, cat == 2, i + 1, min(i + 40, hi) + 1, stream)
                rec.add(s - 0.2 + j[m] * 1e-4, "fault", HVA_BASE + pg[m] * PAGE, pg[m] * PAGE)
                _pick(rng, pg, cat == 3, 0, i, stream)  # (3) placed already: after-place
                # (4) never sent (free page hint), never placed: no conflict
                _pick(rng, pg, cat == 4, 0, len(hinted), hinted)
                pg[0] = stream[min(i, hi)]  # (5) received, not placed yet: in-flight
            pool.append(pg)
        rec.add(s + j * 1e-3, "balloon", gpa_of(pg * PAGE, ram))
        if d == "I" and not window:  # QEMU 7.2 applies inflates outside the window
            rec.add(s + j * 1e-3 + 5e-4, "balloon_discard", HVA_BASE + pg * PAGE)
        old, actual = actual, actual + (256 if d == "I" else -256)
        rec.add(s + 0.3, "set_config", actual, old)

    slot, kind, a0, a1, a2 = rec.columns()
    srt = np.argsort(slot, kind="stable")
    kind, a0, a1, a2 = kind[srt], a0[srt], a1[srt], a2[srt]
    del slot, srt
    ts = 1795630436_000000 + np.cumsum(rng.integers(1, 4, len(kind)))  # microseconds
    fmts = [line_format(*v) for v in LINES.values()]
    nbytes = 0
    with open(path, "wb") as f:
        for lo in range(0, len(kind), 1_000_000):
            sl = slice(lo, lo + 1_000_000)
            k, sec, usec = kind[sl], *np.divmod(ts[sl], 1_000_000)
            vals = (a0[sl], a1[sl], a2[sl])
            out = np.empty(len(k), dtype=object)
            for code in np.unique(k):
                idx = np.flatnonzero(k == code)
                fmt, cols = fmts[code]
                args = [sec[idx].tolist(), usec[idx].tolist()]
                args += [vals[c][idx].tolist() for c in cols]
                out[idx] = list(map(fmt.__mod__, zip(*args, strict=True)))
            data = "".join(out.tolist()).encode()
            f.write(data)
            nbytes += len(data)
    return {"lines": len(kind), "bytes": nbytes, "balloon_requests": 256 * n_b,
            "postcopy_pages": n_post, "guest_gib": guest_gib}  # fmt: skip


# -- the plain-Python baseline --------------------------------------------------------------
def baseline_replay(page, order, kind, req, ts, mig, conf_lo, conf_hi, decision, reset_state,
                    race_ns, n_req, **_):  # fmt: skip
    """One policy, event by event, on Python lists: the transitions of ``kernels.replay``
    (with the ``next_place`` and ``next_is_place`` look-ups it needs done here too)."""
    from tracetool.replay.model import Kind, State

    k_reset, k_disc, k_load, k_fault, k_recv, k_place, k_infl, k_defl = (
        int(k) for k in (Kind.RESET, Kind.MIG_DISCARD, Kind.LOAD, Kind.FAULT, Kind.RECEIVE,
                         Kind.PLACE, Kind.INFLATE, Kind.DEFLATE)
    )  # fmt: skip
    unknown, absent, requested, in_transit, present = (
        int(x) for x in (State.UNKNOWN, State.ABSENT, State.REQUESTED, State.IN_TRANSIT,
                         State.PRESENT)
    )  # fmt: skip
    n = len(page)
    # Backwards: the next placement of the same page, and whether the page's next migration
    # event (not a balloon request) is a placement.
    nxt, nxt_is_place = [-1] * n, [False] * n
    next_place: dict[int, int] = {}
    next_kind: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        p, k = page[i], kind[i]
        nxt[i] = next_place.get(p, -1)
        nxt_is_place[i] = next_kind.get(p) == k_place
        if k == k_place:
            next_place[p] = i
        if k <= k_place:
            next_kind[p] = k
    # Forwards: a state machine per page.
    cclass, related = [0] * n_req, [-1] * n_req
    refault, refill_at = [False] * n_req, [1 << 62] * n_req
    pages: dict[int, list] = {}  # page -> [state, last state event, after-place req, its mig]
    for i in range(n):
        st = pages.get(page[i])
        if st is None:
            st = pages[page[i]] = [unknown, -1, -1, -1]
        k, m, o = kind[i], mig[i], order[i]
        in_conf = m >= 0 and conf_lo[m] <= o < conf_hi[m]
        if k == k_reset:
            st[0], st[1] = reset_state, i
        elif k == k_disc:
            st[0], st[1] = absent, i
        elif k in (k_load, k_place):
            st[0], st[1] = present, i
        elif k == k_fault:
            if st[0] != present:
                st[0], st[1] = requested, i
        elif k == k_recv:
            if st[0] != present:
                st[0], st[1] = in_transit, i
        elif k == k_infl:
            r = req[i]
            if r < 0 or decision[r] != 0:
                continue
            np_i = nxt[i]
            if np_i >= 0:
                refill_at[r] = order[np_i]
            if in_conf:
                c, rel, s = 0, st[1], st[0]
                if nxt_is_place[i] and s in (present, unknown):
                    s = absent  # QEMU only places missing pages
                if s == present:
                    c = 1
                elif s in (requested, in_transit):
                    c = 2
                elif np_i >= 0 and order[np_i] < conf_hi[m]:
                    rel = np_i
                    c = 2 if ts[np_i] - ts[i] <= race_ns else 3
                cclass[r], related[r] = c, rel
                if c == 1:
                    st[2], st[3] = r, m
            st[0], st[1] = absent, i
        elif k == k_defl and st[2] >= 0 and st[3] == m and in_conf:
            refault[st[2]] = True
            st[2] = -1
    return cclass, related, refault, refill_at


# -- measurements, each in its own pinned subprocess ---------------------------------------
def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _is_scan(obj) -> bool:
    """A scan of ``tracetool.replay.kernels`` (compiled, or plain without numba): a function
    whose first parameter is ``page``."""
    fn = getattr(obj, "py_func", obj)
    if not inspect.isfunction(fn):
        return False
    return next(iter(inspect.signature(fn).parameters), None) == "page"


class Instrument:
    """Time the functions ``engine.replay`` calls, by wrapping them (``undo`` restores them).

    Every compiled function of ``tracetool.replay.kernels`` is wrapped; the first call to one
    ends the normalisation. Each ``kernels.replay`` call is labelled with the policy of the
    ``PolicyRun`` the engine builds from it right after.
    """

    STAGES = (
        ("windows", "Order", "windows.Order"),
        ("windows", "find_windows", "windows.find_windows"),
        ("addresses", "learn", "addresses.learn"),
        ("balloon", "ThreadOrder", "balloon.ThreadOrder"),
        ("balloon", "resolve", "balloon.resolve"),
        ("pages", "build", "pages.build"),
        ("engine", "qemu_policy", "qemu version detection"),
        ("engine", "_outcomes", "engine._outcomes"),
    )
    NORMALISATION = tuple(label for _, _, label in STAGES[:6])

    def __init__(self, on_first_scan=None) -> None:
        from tracetool.replay import addresses, balloon, engine, kernels, pages, windows
        from tracetool.trace import Trace

        mods = {"windows": windows, "addresses": addresses, "balloon": balloon,
                "pages": pages, "engine": engine}  # fmt: skip
        self.t: dict[str, float] = defaultdict(float)
        self.policy_scans: list[dict] = []  # per kernels.replay call: policy, seconds, args, out
        self.first_scan: float | None = None
        self.norm_peak_mb: float | None = None
        self.saved: list[tuple] = []
        self.on_first_scan = on_first_scan
        self.signature = inspect.signature(getattr(kernels.replay, "py_func", kernels.replay))
        for mod, attr, label in self.STAGES:
            self._wrap(mods[mod], attr, label)
        self.kernels = sorted(k for k, v in vars(kernels).items() if _is_scan(v))
        for name in self.kernels:
            self._wrap(kernels, name, f"kernels.{name}")
        self._wrap(Trace, "table", "Trace.table")
        self._wrap(Trace, "event_counts", "Trace.event_counts")
        self._wrap(engine, "PolicyRun", "PolicyRun")

    def _wrap(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)
        self.saved.append((owner, attr, fn))

        def timed(*args, **kwargs):
            if label.startswith("kernels.") and self.first_scan is None:
                if self.on_first_scan:
                    self.on_first_scan()
                self.first_scan = time.perf_counter()
                self.norm_peak_mb = _maxrss_mb()
                _reset_peak()
            if label == "PolicyRun" and self.policy_scans:
                self.policy_scans[-1]["policy"] = args[0].value
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            dt = time.perf_counter() - start
            self.t[label] += dt
            if label == "kernels.replay":
                bound = self.signature.bind(*args, **kwargs).arguments
                self.policy_scans.append({"policy": "?", "seconds": dt, "args": bound, "out": out})
            return out

        setattr(owner, attr, timed)

    def undo(self) -> None:
        for owner, attr, fn in reversed(self.saved):
            setattr(owner, attr, fn)


def child_generate(a) -> dict:
    start = time.perf_counter()
    res = generate(Path(a.input), a.pages, a.guest_gib, a.seed)
    res["seconds"] = time.perf_counter() - start
    return res


def child_load(a) -> dict:
    import tracetool

    start = time.perf_counter()
    trace = tracetool.load(a.input)
    s = trace.stats
    return {"seconds": time.perf_counter() - start, "bytes": s.bytes, "lines": s.lines,
            "events": s.events, "other": s.other_lines, "rejected": s.rejected_lines,
            "names": len(trace.event_counts())}  # fmt: skip


def child_warm(a) -> dict:
    import tracetool

    trace = tracetool.load(a.input)
    start = time.perf_counter()
    res = trace.replay()
    _ = res.summary
    return {"replay_seconds": time.perf_counter() - start}


def child_replay(a) -> dict:
    """Warm-up replay of the small trace, load, then the instrumented replay and summary."""
    import tracetool

    start = time.perf_counter()
    warm = tracetool.load(a.warm)
    _ = warm.replay().summary
    warm_s = time.perf_counter() - start
    del warm
    start = time.perf_counter()
    trace = tracetool.load(a.input)
    load_s = time.perf_counter() - start
    rss_load, peak_load = _rss_mb(), _maxrss_mb()
    peaks_reset = _reset_peak()
    ins = Instrument()
    t0 = time.perf_counter()
    result = trace.replay()
    t1 = time.perf_counter()
    replay_peak = _maxrss_mb()
    _reset_peak()
    summary = result.summary
    t2 = time.perf_counter()
    summary_peak = _maxrss_mb()
    ins.undo()
    n = len(result.page_events)
    norm = (ins.first_scan or t1) - t0
    t = dict(ins.t)
    per_policy = {c["policy"]: c["seconds"] for c in ins.policy_scans}
    out = {
        "page_events": n, "balloon_requests": summary["balloon_pages"], "load_seconds": load_s,
        "warm_seconds": warm_s, "rss_after_load_mb": rss_load, "peak_after_load_mb": peak_load,
        "peaks_reset": peaks_reset, "replay_seconds": t1 - t0, "normalisation_seconds": norm,
        "summary_seconds": t2 - t1, "stage_seconds": t, "kernel_replay_seconds": per_policy,
        "kernels": ins.kernels, "normalisation_stages": ins.NORMALISATION,
        "norm_peak_mb": ins.norm_peak_mb, "policy_loop_peak_mb": replay_peak,
        "summary_peak_mb": summary_peak, "trace_events": trace.events.num_rows,
        "conflicts": {p: v["conflicts"] for p, v in summary["policies"].items()},
        "refault_expected": {p: v["refault_expected"] for p, v in summary["policies"].items()},
        "anomalies": summary["anomalies"], "direction_evidence": summary["direction_evidence"],
        "fidelity": summary["observed"]["fidelity"], "qemu_policy": summary["qemu_policy"],
        "inferred": [w["inferred"] for w in summary["windows"]],
    }  # fmt: skip
    if a.npz:  # the no-inhibit scan's inputs and outputs, for the baseline
        scan = next(c for c in ins.policy_scans if c["policy"] == "no-inhibit")
        arrays = {k: v for k, v in scan["args"].items() if isinstance(v, np.ndarray)}
        scalars = {k: int(v) for k, v in scan["args"].items() if not isinstance(v, np.ndarray)}
        outs = dict(zip(("cclass", "related", "refault", "refill_at"), scan["out"], strict=True))
        np.savez(a.npz, **arrays, **{f"out_{k}": v for k, v in outs.items()},
                 scalars=json.dumps(scalars))  # fmt: skip
    return out


def child_profile(a) -> dict:
    """cProfile of the normalisation: ``Trace.replay()`` up to its first compiled scan."""
    import cProfile
    import io
    import pstats

    import tracetool

    _ = tracetool.load(a.warm).replay().summary
    trace = tracetool.load(a.input)
    prof = cProfile.Profile()
    ins = Instrument(on_first_scan=prof.disable)
    prof.enable()
    trace.replay()
    prof.disable()
    ins.undo()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats("tottime").print_stats(a.profile)
    st.sort_stats("cumulative").print_stats(a.profile)
    return {"profile": buf.getvalue()}


def child_baseline(a) -> dict:
    import tracetool.replay.model  # noqa: F401  (imports the package: not part of the timing)

    d = np.load(a.npz)
    scalars = json.loads(str(d["scalars"]))
    start = time.perf_counter()
    wanted = inspect.signature(baseline_replay).parameters  # the engine's look-ups are not used
    cols = {k: d[k].tolist() for k in d.files if k in wanted and k not in scalars}
    tolist_s = time.perf_counter() - start
    start = time.perf_counter()
    got = baseline_replay(**cols, **scalars)
    seconds = time.perf_counter() - start
    names = ("cclass", "related", "refault", "refill_at")
    same = all(
        np.array_equal(np.asarray(g).astype(d[f"out_{k}"].dtype), d[f"out_{k}"])
        for k, g in zip(names, got, strict=True)
    )
    return {"seconds": seconds, "tolist_seconds": tolist_s, "page_events": len(cols["page"]),
            "conflicts": np.bincount(np.asarray(got[0], np.int64), minlength=4)[1:].tolist(),
            "engine_conflicts": np.bincount(d["out_cclass"].astype(np.int64), minlength=4)[1:].tolist(),
            "refault_expected": sum(got[2]), "engine_refault_expected": int(d["out_refault"].sum()),
            "identical": bool(same)}  # fmt: skip


CHILDREN = {"generate": child_generate, "load": child_load, "warm": child_warm,
            "replay": child_replay, "baseline": child_baseline, "profile": child_profile}  # fmt: skip


def run_child(kind: str, cpu: int, env: dict | None = None, **opts) -> dict:
    """Run one measurement in a fresh interpreter pinned to one cpu; its JSON, plus its own
    ``ru_maxrss`` (from ``wait4``) and wall time."""
    argv = [sys.executable, __file__, "--child", kind]
    for k, v in opts.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    wall, peak, out, _ = run_pinned(argv, cpu, env, what=f"{kind} failed")
    res = json.loads(out.strip().splitlines()[-1])
    res["wall_seconds"], res["peak_rss_mb"] = wall, peak
    return res


def median_run(runs: list[dict], seconds) -> dict:
    """The run whose time is the median (the lower middle one for an even count)."""
    return sorted(runs, key=seconds)[(len(runs) - 1) // 2]


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")]
    versions = {m: version(m) for m in ("numpy", "pyarrow", "numba")}
    return {"nproc": os.cpu_count(), "cpu": models[0] if models else platform.processor(),
            "python": platform.python_version(), "kernel": platform.release(), **versions}  # fmt: skip


def rate(n: int, s: float) -> str:
    return f"{n / s / 1e6:.2f} M" if s > 0 else "-"


def report(res: dict) -> None:
    rp, bl, ld = res["replay"], res["baseline"], res["load"]
    n, st = rp["page_events"], rp["stage_seconds"]
    kern = [f"kernels.{k}" for k in rp["kernels"]]
    scans = sum(st.get(k, 0.0) for k in kern)
    loop_rest = rp["replay_seconds"] - rp["normalisation_seconds"] - scans
    whole = rp["replay_seconds"] + rp["summary_seconds"]
    helpers = [k for k in kern if k not in ("kernels.replay", "kernels.anomalies")]
    # the engine's work for one policy: the per-page look-ups kernels.replay takes, one replay
    one = sum(st.get(k, 0.0) for k in helpers) + rp["kernel_replay_seconds"].get("no-inhibit", 0.0)
    norm_named = rp["normalisation_stages"]
    mb = ld["bytes"] / MB
    pk = (lambda v: f"{v:.0f}") if rp["peaks_reset"] else (lambda v: f"{v:.0f}*")
    n_pol = len(rp["kernel_replay_seconds"])
    rows = [
        ("load (context): tracetool.load", ld["seconds"], f"{mb / ld['seconds']:.0f} MB/s",
         f"{ld['peak_rss_mb']:.0f}"),
        ("replay: normalisation", rp["normalisation_seconds"], rate(n, rp["normalisation_seconds"]),
         pk(rp["norm_peak_mb"])),
        *[(f"  {k}", st.get(k, 0.0), rate(n, st.get(k, 0.0)), "") for k in norm_named],
        ("  other (masks, window bounds)", rp["normalisation_seconds"]
         - sum(st.get(k, 0.0) for k in norm_named), "", ""),
        ("  of which Trace.table + event_counts (lazy typed tables)", st.get("Trace.table", 0.0)
         + st.get("Trace.event_counts", 0.0), "", ""),
        (f"replay: scans ({len(kern) - 1} per-page passes + {n_pol} x kernels.replay)", scans,
         rate(n, scans), pk(rp["policy_loop_peak_mb"])),
        *[(f"  {k}", st.get(k, 0.0), rate(n, st.get(k, 0.0)), "") for k in kern
          if k != "kernels.replay"],
        *[(f"  kernels.replay {p}", s, rate(n, s), "") for p, s in rp["kernel_replay_seconds"].items()],
        ("replay: rest of the policy loop", loop_rest, rate(n, loop_rest), ""),
        ("  of which qemu version detection", st.get("qemu version detection", 0.0), "", ""),
        ("  of which engine._outcomes", st.get("engine._outcomes", 0.0), "", ""),
        ("Trace.replay() total", rp["replay_seconds"], rate(n, rp["replay_seconds"]),
         pk(max(rp["norm_peak_mb"] or 0, rp["policy_loop_peak_mb"]))),
        ("summary (ReplayResult.summary)", rp["summary_seconds"], rate(n, rp["summary_seconds"]),
         pk(rp["summary_peak_mb"])),
        ("whole replay (Trace.replay + summary)", whole, rate(n, whole),
         pk(max(rp["norm_peak_mb"] or 0, rp["policy_loop_peak_mb"], rp["summary_peak_mb"]))),
        (f"engine one-policy scan ({' + '.join(k[8:] for k in helpers)} + replay no-inhibit)",
         one, rate(n, one), ""),
        ("baseline: plain Python, one policy (no-inhibit)", bl["seconds"],
         rate(bl["page_events"], bl["seconds"]), f"{bl['peak_rss_mb']:.0f}"),
    ]  # fmt: skip
    print("\n| stage | seconds | page events/s | peak RSS MB |\n|---|---:|---:|---:|")
    for name, s, r, p in rows:
        print(f"| {name} | {s:.3f} | {r} | {p} |")
    g = res.get("generate")
    src = (f"synthetic QEMU 7.2 trace, guest {g['guest_gib']} GiB, seed {res['seed']} "
           f"(generated in {g['seconds']:.1f} s)" if g else res["input"])  # fmt: skip
    print(
        f"\ninput: {src}; {mb:.0f} MB, {ld['lines']:,} lines = {ld['events']:,} events + "
        f"{ld['other']:,} other + {ld['rejected']:,} rejected; {n:,} page events from "
        f"{rp['balloon_requests']:,} balloon requests."
    )
    print(
        f"memory: RSS after load {rp['rss_after_load_mb']:.0f} MB (load peak "
        f"{rp['peak_after_load_mb']:.0f} MB); stage peaks are the process high-water mark during "
        "the stage"
        + ("" if rp["peaks_reset"] else " (* clear_refs not allowed: cumulative since start)")
        + "."
    )
    print(
        f"numba: JIT compile of the small replay into an empty cache "
        f"{res['jit']['replay_seconds']:.1f} s; warm-up run (user cache) "
        f"{res['warm']['replay_seconds']:.2f} s; in-process warm-up replay of the small trace "
        f"before timing {rp['warm_seconds']:.2f} s (not in the figures)."
    )
    summ = list(rp["conflicts"]["no-inhibit"].values())
    ok = bl["conflicts"] == bl["engine_conflicts"] == summ
    print(
        f"baseline check (no-inhibit): conflicts {bl['conflicts']} vs engine {summ} "
        f"(after-place, in-flight, before-arrival) -> {'OK' if ok else 'MISMATCH'}; refault_expected "
        f"{bl['refault_expected']} vs {bl['engine_refault_expected']}; per-request outputs "
        f"{'identical' if bl['identical'] else 'DIFFER'}; .tolist() of the arrays took "
        f"{bl['tolist_seconds']:.2f} s (not timed)."
    )
    b_rate = bl["page_events"] / bl["seconds"]
    print(
        f"speed-up vs the baseline: one-policy scan {n / one / b_rate:.0f}x "
        f"({rate(n, one)} vs {rate(bl['page_events'], bl['seconds'])} page events/s); "
        f"whole replay of {n_pol} policies incl. normalisation and summary "
        f"{n / whole / b_rate:.1f}x the baseline's one policy."
    )
    runs = ", ".join(f"{x:.2f}" for x in res["replay_runs_s"])
    b_runs = ", ".join(f"{x:.2f}" for x in res["baseline_runs_s"])
    print(
        f"runs: each measurement ran {len(res['replay_runs_s'])} time(s), the median run is shown "
        f"(whole replay {runs} s; baseline {b_runs} s)."
    )
    m = res["machine"]
    print(
        f"machine: {m['nproc']} cpus, {m['cpu']}; Linux {m['kernel']}; python {m['python']}, "
        f"numpy {m['numpy']}, pyarrow {m['pyarrow']}, numba {m['numba']}; load average "
        f"{res['loadavg'][0]:.2f} before, {res['loadavg'][1]:.2f} after. Every measurement ran "
        f"in its own subprocess pinned to cpu {res['cpu']} (os.sched_setaffinity), "
        "NUMBA_NUM_THREADS=OMP_NUM_THREADS=1."
    )
    anchors = "; ".join(f"{k} {v / 1e6:.1f}M/s" for k, v in ANCHORS)
    print(f"\n| target: >= {TARGET / 1e6:.0f}M page events/s on one core | measured | |")
    print("|---|---:|---|")
    for name, s in (("scans only", scans), ("whole replay incl. normalisation", whole)):
        got = n / s
        print(f"| {name} | {got / 1e6:.2f} M/s | {'met' if got >= TARGET else 'NOT met'} |")
    print(f"(anchors measured earlier: {anchors})")
    if res.get("profile"):
        print("\ncProfile of the normalisation (Trace.replay() up to the first scan, own run):")
        print(res["profile"]["profile"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=2_000_000, help="page events to generate (about)")
    ap.add_argument("--input", type=Path, help="benchmark this trace instead")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--guest-gib", type=int, default=16, help="guest RAM of the synthetic trace")
    ap.add_argument("--seed", type=int, default=72, help="seed of the synthetic trace")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="core to use")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement (the median is shown)"
    )
    ap.add_argument("--keep", action="store_true", help="keep data in bench-data/ and reuse it")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="print the top N cProfile entries of the normalisation")  # fmt: skip
    ap.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    ap.add_argument("--warm", help=argparse.SUPPRESS)
    ap.add_argument("--npz", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        res = CHILDREN[a.child](a)
        res["child_peak_rss_mb"], res["cpus"] = _maxrss_mb(), len(os.sched_getaffinity(0))
        print(json.dumps(res))
        return

    tmp = tempfile.TemporaryDirectory(prefix="tracetool-bench-replay-")
    work = ROOT / "bench-data" if a.keep else Path(tmp.name)
    work.mkdir(exist_ok=True)
    load0 = os.getloadavg()
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:], "cpu": a.cpu,
                 "seed": a.seed, "machine": machine()}  # fmt: skip
    warm = work / f"synthetic-replay-warmup-seed{a.seed}.trace.log"
    if not warm.exists():
        run_child("generate", a.cpu, input=warm, pages=20_000, guest_gib=1, seed=a.seed)
    src = a.input
    if src is None:
        src = work / f"synthetic-replay-{a.pages}-{a.guest_gib}gib-seed{a.seed}.trace.log"
        if not src.exists():
            res["generate"] = run_child(
                "generate", a.cpu, input=src, pages=a.pages, guest_gib=a.guest_gib, seed=a.seed
            )
            print(f"generated {src} in {res['generate']['seconds']:.1f} s", flush=True)
    res["input"] = str(src)
    print(f"input {src}; cpu {a.cpu}; load average {load0[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as empty:  # numba JIT compile into an empty cache
        res["jit"] = run_child("warm", a.cpu, {"TRACETOOL_CACHE_DIR": empty}, input=warm)
    res["warm"] = run_child("warm", a.cpu, input=warm)  # fills the user's cache (throwaway)
    n = max(1, a.repeat)
    runs = [run_child("load", a.cpu, input=src) for _ in range(n)]
    res["load"] = median_run(runs, lambda r: r["seconds"])
    npz = work / "page-events.npz"
    runs = [run_child("replay", a.cpu, input=src, warm=warm, npz=npz) for _ in range(n)]
    res["replay"] = median_run(runs, lambda r: r["replay_seconds"] + r["summary_seconds"])
    res["replay_runs_s"] = [r["replay_seconds"] + r["summary_seconds"] for r in runs]
    runs = [run_child("baseline", a.cpu, npz=npz) for _ in range(n)]
    res["baseline"] = median_run(runs, lambda r: r["seconds"])
    res["baseline_runs_s"] = [r["seconds"] for r in runs]
    npz.unlink(missing_ok=True)
    if a.profile:
        res["profile"] = run_child("profile", a.cpu, input=src, warm=warm, profile=a.profile)
    res["loadavg"] = [load0[0], os.getloadavg()[0]]
    report(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
