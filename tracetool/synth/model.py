"""The scenario model: QEMU processes on one host, their incoming postcopy migrations, the guest's
balloon, and the sources of trace rows that follow from them.

Layout of a trace (a libvirt domain log style file: every QEMU process of the guest on this host
appends to it)::

    P0   boot process: guest runs; "before" balloon phase of migration 1; migrates out (source)
    P1   destination of migration 1: ADVISE, precopy loads, discard bitmap, LISTEN, RUN,
         postcopy stream + faults, guest balloon "during" (RUN .. END), END, cleanup;
         "after" phase; then, if another migration follows, the "before" phase of it and
         the outgoing migration (source lines)
    P2   destination of migration 2 ...

Times are integer microseconds since the epoch (what the log prints). Everything random comes
from ``numpy.random.SeedSequence(seed)`` children, one per component, so the same scenario
gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracetool.errors import UsageError
from tracetool.synth.events import MIG_CMD, MIG_STATUS, era_events
from tracetool.synth.rows import (
    R_ADVISE,
    R_CL_ENTRY,
    R_CL_EXIT,
    R_COMPLETED,
    R_DAMAGED,
    R_LISTEN,
    R_LT_EXIT,
    R_LT_START,
    R_MIG_DISCARD,
    R_OTHER,
    R_RUN,
    Script,
    Source,
)
from tracetool.synth.scenario import KIB4, MIB, Scenario
from tracetool.synth.sources import (
    Balloon,
    Discards,
    Faults,
    Loads,
    RamBlock,
    Stream,
    place_times,
)

S = 1_000_000  # µs per second
GIB4 = 1 << 32
LOW_RESERVED = MIB  # the guest never balloons its first MiB
MIN_HUGE_PLACES = 8  # hugetlbfs pc.ram: at least this many host pages go through postcopy
PHASES = ("before", "during", "after", "tail")
CLASS_CODES = {"after-place": 1, "in-flight": 2, "before-arrival": 3, "tail": 4}


@dataclass
class Proc:
    """One QEMU process: its ids, its RAM layout and where its rows go."""

    index: int
    pid: int
    start: int
    blocks: list[RamBlock]
    script: Script
    vdev: int

    @property
    def vq(self) -> int:  # the inflate virtqueue (the deflate one follows it)
        return self.vdev + 0x2A0

    @property
    def main(self) -> int:
        return self.pid

    @property
    def vcpu(self) -> int:
        return self.pid + 7

    @property
    def fault(self) -> int:
        return self.pid + 40

    @property
    def listen(self) -> int:
        return self.pid + 41

    @property
    def migthread(self) -> int:
        return self.pid + 45


@dataclass
class Mig:
    """One incoming postcopy migration (its destination process and marker times)."""

    index: int
    proc: Proc
    t: dict[str, int] = field(default_factory=dict)  # marker -> µs
    info: dict = field(default_factory=dict)  # counts for the truth file
    planted: dict[str, int] = field(default_factory=dict)
    real_window: tuple[int, int] = (0, 0)  # µs: the era's real balloon inhibit


class Requests:
    """Every balloon request of the trace (one 4 KiB page), built phase by phase."""

    COLS = ("t", "gpa", "offset", "inflate", "batch", "phase", "mig", "proc", "planted",
            "applied", "discard")  # fmt: skip

    def __init__(self) -> None:
        self.parts: list[dict] = []
        self.batches: list[dict] = []
        self.n = 0
        self.nb = 0

    def add_batches(self, proc: int, t_get, t_req_lists, offsets_lists, gpa_fn, inflate,
                    actual0, phase, mig, planted_lists=None) -> int:  # fmt: skip
        """Append batches; returns the balloon's ``actual`` after them. The guest reads the
        phase's target (``num_pages``) before each batch."""
        actual = actual0
        total = sum(len(o) for o in offsets_lists)
        target = actual0 + total if inflate else actual0 - total
        for b, (treq, offs) in enumerate(zip(t_req_lists, offsets_lists, strict=True)):
            n = len(offs)
            self.batches.append({
                "proc": proc, "t_get": int(t_get[b]), "t_notify": int(treq[0]) - 1,
                "t_set": int(treq[-1]) + 3, "first": self.n, "n": n, "inflate": inflate,
                "actual": actual, "target": target,
            })  # fmt: skip
            self.parts.append({
                "t": np.asarray(treq, np.int64), "offset": np.asarray(offs, np.int64),
                "gpa": gpa_fn(np.asarray(offs, np.int64)), "inflate": np.full(n, inflate),
                "batch": np.full(n, self.nb), "phase": np.full(n, PHASES.index(phase)),
                "mig": np.full(n, mig), "proc": np.full(n, proc),
                "planted": (np.zeros(n, np.int64) if planted_lists is None
                            else np.asarray(planted_lists[b], np.int64)),
            })  # fmt: skip
            self.n += n
            self.nb += 1
            actual = actual + n if inflate else actual - n
        return actual

    def finish(self) -> None:
        keys = ("t", "offset", "gpa", "inflate", "batch", "phase", "mig", "proc", "planted")
        self.cols = {
            k: (np.concatenate([p[k] for p in self.parts]) if self.parts else np.zeros(0, np.int64))
            for k in keys
        }
        self.cols["inflate"] = self.cols["inflate"].astype(bool)
        self.bt = {k: np.array([b[k] for b in self.batches], np.int64) for k in
                   ("proc", "t_get", "t_notify", "t_set", "first", "n", "actual", "target")}  # fmt: skip
        self.bt["inflate"] = np.array([b["inflate"] for b in self.batches], bool)
        self.cols["applied"] = np.zeros(self.n, bool)
        self.cols["discard"] = np.zeros(self.n, bool)
        self.cols["index"] = np.arange(self.n, dtype=np.int64)


def sample_unique(rng: np.random.Generator, lo: int, hi: int, k: int, bad=None) -> np.ndarray:
    """``k`` distinct integers of ``[lo, hi)`` in random order, none with ``bad[x]`` set."""
    out = np.zeros(0, np.int64)
    if k <= 0:
        return out
    taken = set()
    for _ in range(64):
        need = k - len(out)
        cand = rng.integers(lo, hi, size=int(need * 1.3) + 16)
        if bad is not None:
            cand = cand[~bad[cand]]
        _, first = np.unique(cand, return_index=True)
        cand = cand[np.sort(first)]
        if taken:
            cand = cand[~np.isin(cand, out)]
        out = np.concatenate([out, cand[:need]])
        taken = True
        if len(out) >= k:
            return out[:k]
    raise UsageError(f"could not find {k} free guest pages for the balloon: the RAM is too full")


class Model:
    """Everything the scenario generates, as sources of rows plus the facts behind them."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc.validate()
        self.era = sc.era_info
        self.ev = era_events(self.era.v2)
        ss = np.random.SeedSequence(sc.seed)
        (self.r_layout, self.r_pages, self.r_faults, self.r_balloon, self.r_noise,
         self.r_misc) = (np.random.default_rng(s) for s in ss.spawn(6))  # fmt: skip
        self.ram, self.hp, self.bw = sc.ram_bytes(), sc.host_page_bytes(), sc.bandwidth_bytes()
        self.npages4 = self.ram // KIB4
        self.in_balloon = np.zeros(self.npages4, bool)
        self.stack = np.zeros(self.npages4, np.int32 if self.npages4 < 2**31 else np.int64)
        # (pc.ram 4 KiB page numbers in the balloon, LIFO)
        self.depth = 0
        self.actual = 0
        self.reqs = Requests()
        self.procs: list[Proc] = []
        self.migs: list[Mig] = []
        self.sources: list[Source] = []
        self.notes: list[str] = []
        self._prio = 0
        self._build()

    # -- helpers ---------------------------------------------------------------------------
    def prio(self) -> int:
        self._prio += 1
        return self._prio

    def gpa(self, offset: np.ndarray) -> np.ndarray:
        """Guest-physical address of pc.ram offsets (x86 q35: RAM above the low-memory
        boundary is mapped from 4 GiB)."""
        low = self.ram if self.ram < 0xB0000000 else 0x80000000
        offset = np.asarray(offset, np.int64)
        return np.where(offset < low, offset, offset - low + GIB4)

    def _layout(self) -> list[RamBlock]:
        r = self.r_layout
        pc = 0x7F0000000000 + int(r.integers(0x100, 0x800)) * (1 << 30)
        vram = 0x7F0000000000 + int(r.integers(0x10, 0xF0)) * (1 << 28) + 0x1000000
        bios = 0x7F0000000000 + int(r.integers(0x1, 0xF)) * (1 << 32) + 0x2400000
        return [
            RamBlock(0, "pc.ram", self.ram, self.hp, pc, 0),
            RamBlock(1, "vga.vram", 16 * MIB, KIB4, vram, self.ram + 0x200000),
            RamBlock(2, "pc.bios", 256 << 10, KIB4, bios, self.ram),
        ]

    def _state(self, name: str) -> dict:
        ev = self.ev["migrate_set_state"]
        string = ev.columns()[0].kind.name == "STRING"
        return {"new_state": name if string else MIG_STATUS[name]}

    def _command(self, name: str, length: int) -> dict:
        return {"com": MIG_CMD[name], "s": name, "len": length}

    # -- building --------------------------------------------------------------------------
    def _build(self) -> None:
        sc, era = self.sc, self.era
        t = era.epoch * S + int(self.r_misc.integers(0, 3600)) * S
        blocks = self._layout()
        pid = 1000 + int(self.r_misc.integers(0, 2000))
        for k in range(sc.migrations + 1):
            if k and sc.aslr:
                blocks = self._layout()
            proc = Proc(
                k,
                pid,
                t,
                [RamBlock(**b.__dict__) for b in blocks],
                Script(self.prio()),
                0x55D000000000 + 0x1000 * int(self.r_misc.integers(0x100, 0xFFF)),
            )
            self.procs.append(proc)
            self.sources.append(proc.script)
            self._process_start(proc)
            if k == 0:
                t = self._guest_runs(proc, t + 3 * S, mig=0, phases=("before",))
            else:
                mig = Mig(k - 1, proc)
                self.migs.append(mig)
                t = self._incoming(mig, t + 200_000)
                t = self._guest_runs(proc, t + S, mig=k - 1, phases=("after",))
                if k < sc.migrations:
                    t = self._guest_runs(proc, t + S // 2, mig=k, phases=("before",))
            if k < sc.migrations:
                t = self._outgoing(proc, t + S // 2)
                proc.script.text(t + 20_000, proc.main, proc.pid, self._libvirt(t + 20_000,
                                 "shutting down, reason=migrated"), R_OTHER, 0)  # fmt: skip
                t += 3 * S
                pid += 1500 + int(self.r_misc.integers(0, 1000))
        self.t_end = t
        self.reqs.finish()
        self._real_outcomes()
        self._balloon_sources()
        self._noise()
        for p in self.procs:
            p.script.finish()

    def _libvirt(self, t_us: int, what: str) -> str:
        import datetime as dt

        stamp = dt.datetime.fromtimestamp(t_us / S, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"{stamp}.{(t_us // 1000) % 1000:03d}+0000: {what}"

    def _process_start(self, p: Proc) -> None:
        era = self.era
        s = p.script
        s.text(p.start, p.main, p.pid, self._libvirt(p.start, (
            f"starting up libvirt version: {era.libvirt}, qemu version: {era.version_text}, "
            "kernel: 6.1.0-21-amd64, hostname: host-a")), R_OTHER, 0)  # fmt: skip
        inc = " -incoming defer" if p.index else ""
        s.text(p.start + 1, p.main, p.pid, (
            "LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin "
            f"HOME=/var/lib/libvirt/qemu/domain-{p.index + 1}-guest1 /usr/bin/qemu-system-x86_64 "
            f"-name guest=guest1 -machine pc-q35-{era.v2[0]}.{era.v2[1]} -m {self.ram >> 20} "
            "-device virtio-balloon-pci,id=balloon0 -trace events=/etc/qemu/trace-events"
            + (" -msg timestamp=on" if era.v2 >= (6, 0) else "") + inc), R_OTHER, 0)  # fmt: skip
        s.text(p.start + 2, p.main, p.pid, "char device redirected to /dev/pts/3 (label charserial0)",
               R_OTHER, 0)  # fmt: skip
        if self.ev.has("qmp_exit_query_version"):
            v = era.version
            reply = (f'{{"qemu": {{"micro": {v[2]}, "minor": {v[1]}, "major": {v[0]}}}, '
                     f'"package": "synth"}}')  # fmt: skip
            s.add(p.start + 50_000, p.main, p.pid, "qmp_enter_query_version", json="{}")
            s.add(p.start + 50_010, p.main, p.pid, "qmp_exit_query_version", result=reply,
                  succeeded=1)  # fmt: skip

    # -- the incoming migration ------------------------------------------------------------
    def _incoming(self, mig: Mig, a0: int) -> int:
        sc, era, ev, p = self.sc, self.era, self.ev, mig.proc
        s, M, blocks = p.script, p.main, p.blocks
        T = mig.t
        if era.at_least(2, 6):
            s.add(a0, M, p.pid, "migrate_set_state", **self._state("active"))
        s.add(a0 + 100, M, p.pid, "loadvm_process_command", **self._command("OPEN_RETURN_PATH", 0))
        T["advise"] = adv = a0 + 200
        s.add(adv - 1, M, p.pid, "loadvm_process_command", **self._command("POSTCOPY_ADVISE", 16))
        s.add(adv, M, p.pid, "loadvm_postcopy_handle_advise", R_ADVISE)
        t = adv + 2
        for b in blocks:
            s.add(t, M, p.pid, "postcopy_init_range", ramblock=b.name, host_addr=b.hva,
                  offset=b.ram_addr, length=b.length)  # fmt: skip
            if era.at_least(2, 9):
                s.add(t + 1, M, p.pid, "ram_discard_range", R_MIG_DISCARD,
                      {"blk": b.id, "p0": 0, "p1": b.pages}, rbname=b.name, start=0, len=b.length)  # fmt: skip
            else:
                s.add(t + 1, M, p.pid, "postcopy_ram_discard_range", start=b.hva, length=b.length)
            if era.at_least(2, 12):
                s.add(t + 1, M, p.pid, "ram_block_discard_range", rbname=b.name, hva=b.hva, length=b.length, need_madvise=1,
                      need_fallocate=int(b.page > KIB4), ret=0)  # fmt: skip
            t += 3
        # precopy: target pages in block order, as many as the bandwidth allows
        total4 = sum(b.length // KIB4 for b in blocks)
        n_loads = min(total4, int(self.bw * sc.precopy_s) // KIB4)
        p0 = adv + 1000
        dur = max(1, int(sc.precopy_s * S))
        if era.at_least(2, 10) and n_loads:
            self.sources.append(Loads(self.prio(), blocks, n_loads, p0, dur, M, p.pid))
        mig.info["precopy_loads"] = n_loads if era.at_least(2, 10) else 0
        mig.info["precopy_pages_sent"] = n_loads
        # the postcopy set: host pages not (fully) sent, or dirtied after being sent
        sent4 = np.minimum(np.maximum(n_loads - np.cumsum([0] + [b.length // KIB4 for b in blocks])[:-1], 0),
                           [b.length // KIB4 for b in blocks])  # fmt: skip
        post = []
        for b, ns in zip(blocks, sent4, strict=True):
            full_sent = int(ns) * KIB4 // b.page  # host pages whose every target page was sent
            dirty = (
                np.flatnonzero(self.r_pages.random(full_sent) < sc.dirty)
                if full_sent
                else np.zeros(0, np.int64)
            )
            unsent = np.arange(full_sent, b.pages, dtype=np.int64)
            if b.page > KIB4 and len(dirty) + len(unsent) < MIN_HUGE_PLACES:
                # a running guest always dirties a few pages; and the replay learns a huge
                # page size from at least 8 placements (docs/replay.md), so make them
                extra = self.r_pages.permutation(np.setdiff1d(np.arange(full_sent), dirty))
                dirty = np.sort(np.concatenate(
                    [dirty, extra[: MIN_HUGE_PLACES - len(dirty) - len(unsent)]]))  # fmt: skip
            post.append(np.concatenate([dirty, unsent]).astype(np.int64))
        # discard bitmap: runs of consecutive host pages, per block
        ranges = []
        for b, pages in zip(blocks, post, strict=True):
            if not len(pages):
                continue
            brk = np.flatnonzero(np.diff(pages) != 1) + 1
            st = pages[np.concatenate([[0], brk])]
            en = pages[np.concatenate([brk - 1, [len(pages) - 1]])] + 1
            ranges.append(np.stack([np.full(len(st), b.id), st, en - st], axis=1))
        ranges = np.concatenate(ranges) if ranges else np.zeros((0, 3), np.int64)
        sw = p0 + dur + 500
        disc = Discards(self.prio(), blocks, ranges, sw, M, p.pid, era,
                        self._command("POSTCOPY_RAM_DISCARD", 0))  # fmt: skip
        if disc.n_commands:
            self.sources.append(disc)
            T["discard"] = int(disc.c_t[0]) + 1
            for i, b in enumerate(blocks):  # first command: postcopy_ram_prepare_discard
                s.add(T["discard"] + 1 + i, M, p.pid, "postcopy_nhp_range", ramblock=b.name,
                      host_addr=b.hva, offset=b.ram_addr, length=b.length)  # fmt: skip
        t = disc.end + 50
        s.add(t, M, p.pid, "loadvm_process_command", **self._command("PING", 4))
        s.add(t + 1, M, p.pid, "loadvm_process_command_ping", val=2)
        mig.info.update(discard_commands=disc.n_commands, discard_ranges=len(ranges))
        # LISTEN (inside the PACKAGED command)
        L = t + 200
        s.add(L - 20, M, p.pid, "loadvm_process_command", **self._command("PACKAGED", 4))
        s.add(
            L - 19,
            M,
            p.pid,
            "loadvm_handle_cmd_packaged",
            length=180_000 + int(self.r_misc.integers(0, 9999)),
        )
        s.add(L - 2, M, p.pid, "loadvm_handle_cmd_packaged_received", ret=0)
        s.add(L - 1, M, p.pid, "loadvm_process_command", **self._command("POSTCOPY_LISTEN", 0))
        T["listen"] = L
        s.add(L, M, p.pid, "loadvm_postcopy_handle_listen", R_LISTEN, str="enter")
        if not disc.n_commands:
            T["discard"] = L
            for i, b in enumerate(blocks):
                s.add(L + 1 + i, M, p.pid, "postcopy_nhp_range", ramblock=b.name,
                      host_addr=b.hva, offset=b.ram_addr, length=b.length)  # fmt: skip
            if era.at_least(7, 0):
                s.add(L + 5, M, p.pid, "loadvm_postcopy_handle_listen", str="after discard")
        s.add(L + 30, p.fault, p.pid, "postcopy_ram_fault_thread_entry")
        s.add(L + 40, M, p.pid, "postcopy_ram_enable_notify")
        if era.at_least(7, 0):
            s.add(L + 41, M, p.pid, "loadvm_postcopy_handle_listen", str="after uffd")
        s.add(L + 60, p.listen, p.pid, "postcopy_ram_listen_thread_start", R_LT_START)
        if era.at_least(2, 6):
            s.add(L + 61, p.listen, p.pid, "migrate_set_state", **self._state("postcopy-active"))
        if era.at_least(7, 0):
            s.add(L + 70, M, p.pid, "loadvm_postcopy_handle_listen", str="return")
        # RUN (the device state loads in between)
        R = T["run"] = L + 1000
        s.add(R - 1, M, p.pid, "loadvm_process_command", **self._command("POSTCOPY_RUN", 0))
        s.add(R, M, p.pid, "loadvm_postcopy_handle_run", R_RUN)
        s.add(R + 10, M, p.pid, "loadvm_handle_cmd_packaged_main", ret=0)
        s.add(R + 20, M, p.pid, "process_incoming_migration_co_end", ret=0, ps=4)
        s.add(R + 21, M, p.pid, "process_incoming_migration_co_postcopy_end_main")
        bh = []
        if ev.has("loadvm_postcopy_handle_run_cpu_sync"):
            bh = [
                ("loadvm_postcopy_handle_run_cpu_sync", {}),
                ("loadvm_postcopy_handle_run_vmstart", {}),
            ]
        elif ev.has("loadvm_postcopy_handle_run_bh"):
            bh = [("loadvm_postcopy_handle_run_bh", {"str": x}) for x in
                  ("enter", "after cpu sync", "after runstate")]  # fmt: skip
        elif ev.has("vmstate_downtime_checkpoint"):
            bh = [("vmstate_downtime_checkpoint", {"checkpoint": f"dst-postcopy-bh-{x}"}) for x in
                  ("enter", "announced", "cpu-synced", "vm-started")]  # fmt: skip
        for i, (name, f) in enumerate(bh):
            s.add(R + 200 + 30 * i, M, p.pid, name, **f)
        G = T["guest"] = R + 300
        # the postcopy stream, faults, and the guest's balloon while it runs in postcopy
        S0 = L + 100
        order, tau = self._background(blocks, post)
        span = float(tau.sum())
        E = T["end"] = int(max(np.ceil(S0 + span) + 100, G + 200))
        during = self._during_schedule(mig, G, E)
        self._stream_and_faults(mig, blocks, order, tau, S0, G, E, during)
        self._end_of_window(mig, E)
        mig.info["postcopy_host_pages"] = int(sum(len(x) for x in post))
        return E + 1000

    def _background(self, blocks, post) -> tuple[np.ndarray, np.ndarray]:
        """Send order of the postcopy set: pc.ram from where the scan stands, then the rest."""
        parts = []
        for b, pages in zip(blocks, post, strict=True):
            if b.id == 0 and len(pages):
                cut = int(self.r_pages.integers(0, len(pages)))
                pages = np.concatenate([pages[cut:], pages[:cut]])
            parts.append(np.stack([np.full(len(pages), b.id), pages], axis=1))
        order = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        psz = np.array([b.page for b in blocks], np.float64)
        tau = psz[order[:, 0]] * S / self.bw
        return order, tau

    def _during_schedule(self, mig: Mig, G: int, E: int) -> dict:
        """Times of the guest's balloon requests while it runs in postcopy: inflate batches,
        then deflate batches, inside ``[G, E)``; which inflates are planted conflicts."""
        sc = self.sc
        n_inf = sc.balloon_pages("inflate_during")
        n_def = sc.balloon_pages("deflate_during")
        avail = (E - G) - 300
        out = {"inflate": [], "deflate": [], "t_get": {}, "plant": {}}
        if n_inf + n_def == 0:
            return out
        sizes_i = [min(256, n_inf - i) for i in range(0, n_inf, 256)]
        sizes_d = [min(256, n_def - i) for i in range(0, n_def, 256)]
        nb = len(sizes_i) + len(sizes_d)
        for spacing in (2, 1):
            busy = (n_inf + n_def) * spacing + nb * 10 + 500
            if busy <= avail:
                break
        else:
            raise UsageError(
                f"migration {mig.index + 1}: the guest runs only {avail / 1000:.1f} ms in postcopy, "
                f"too short for {n_inf + n_def} balloon requests during the window (at least "
                f"{(n_inf + n_def + nb * 10 + 300) / 1000:.1f} ms): lower --bandwidth, raise "
                "--dirty or --ram, or shrink --inflate-during/--deflate-during"
            )
        gap = int(min(20_000, max(5, (avail - busy) // max(nb + 1, 1))))
        t = G + 100
        for kind, sizes in (("inflate", sizes_i), ("deflate", sizes_d)):
            t += 100  # room for the new target (QMP balloon, to_target) on the main thread
            for n in sizes:
                tg = t
                treq = tg + 6 + spacing * np.arange(n, dtype=np.int64)
                out[kind].append(treq)
                out["t_get"].setdefault(kind, []).append(tg)
                t = int(treq[-1]) + 3 + gap
        # planted slots among the inflates: in-flight and before-arrival early, after-place late
        flat = np.concatenate(out["inflate"]) if out["inflate"] else np.zeros(0, np.int64)
        n = len(flat)
        k = min(sc.plant, n // 6)
        if k:
            early = np.linspace(n // 20, max(n // 20, int(n * 0.4)), 2 * k, dtype=np.int64)
            late = np.linspace(int(n * 0.5), n - 1, k, dtype=np.int64)
            out["plant"] = {"in-flight": early[0::2], "before-arrival": early[1::2],
                            "after-place": late}  # fmt: skip
        out["flat"] = flat
        return out

    def _stream_and_faults(self, mig, blocks, order, tau, S0, G, E, during) -> None:
        sc, era, p, rng = self.sc, self.era, mig.proc, self.r_faults
        n_pc = int(np.count_nonzero(order[:, 0] == 0))
        cum = S0 + np.concatenate([[0.0], np.cumsum(tau)])  # start of each page, no requests
        tau_pc = blocks[0].page * S / self.bw
        lat = sc.fault_latency_us
        end_pc = cum[n_pc] if n_pc else S0
        # fault times: random (vCPUs touching missing pages) and planted (in-flight inflates)
        lo, hi = G + 50, int(end_pc) - lat - 50
        n_rand = int(rng.poisson(sc.fault_rate * max(hi - lo, 0) / S)) if hi > lo else 0
        t_rand = np.sort(rng.integers(lo, hi, n_rand)) if n_rand else np.zeros(0, np.int64)
        plant = during.get("plant", {})
        flat = during.get("flat", np.zeros(0, np.int64))
        t_pl = flat[plant["in-flight"]] - 3 if "in-flight" in plant else np.zeros(0, np.int64)
        tf = np.concatenate([t_rand, t_pl]).astype(np.int64)
        is_pl = np.concatenate([np.zeros(len(t_rand), bool), np.ones(len(t_pl), bool)])
        srt = np.argsort(tf, kind="stable")
        tf, is_pl = tf[srt], is_pl[srt]
        # each fault takes a pc.ram page the background scan has not reached yet
        chosen = np.full(len(tf), -1, np.int64)
        used = np.zeros(len(order), bool)
        if self.hp == KIB4:  # the guest does not touch its ballooned pages
            used[:n_pc] = self.in_balloon[order[:n_pc, 1]]
        pos = np.searchsorted(cum, tf + lat, side="right")
        for i in range(len(tf)):
            a = int(pos[i]) + 1
            if a >= n_pc:
                continue
            for _ in range(8):
                c = int(rng.integers(a, n_pc))
                if not used[c]:
                    used[c], chosen[i] = True, c
                    break
        ok = chosen >= 0
        tf, is_pl, chosen = tf[ok], is_pl[ok], chosen[ok]
        # the final send order: requested pages jump the queue when their request arrives
        while True:
            keep = np.ones(len(order), bool)
            keep[chosen] = False
            bg = np.flatnonzero(keep)
            cumb = S0 + np.concatenate([[0.0], np.cumsum(tau[bg])])
            kk = np.arange(len(tf))
            j = np.searchsorted(cumb[:-1], tf + lat - kk * tau_pc, side="left")
            j = np.maximum.accumulate(j) if len(j) else j
            ok = j < len(bg)
            if ok.all():
                break
            tf, is_pl, chosen = tf[ok], is_pl[ok], chosen[ok]
        u_start = cumb[j] + kk * tau_pc
        shift = np.searchsorted(j, np.arange(len(bg)), side="right") * tau_pc
        b_start = cumb[:-1] + shift
        seq = np.insert(bg, j, chosen) if len(bg) else chosen
        start = np.insert(b_start, j, u_start) if len(bg) else u_start
        urgent = np.insert(np.zeros(len(bg), bool), j, True)
        zero = self.r_pages.random(len(seq)) < sc.zero_pages
        taus = np.array([b.page * S / self.bw for b in blocks], np.float64)
        place = place_times(start, taus[order[seq, 0]])
        del keep, bg, cumb, b_start, shift, u_start, cum
        # refault races: a vCPU faulted on a page just before it was placed; the fault thread
        # reads the message after the placement (a request for a present page)
        n_races = min(sc.refault_races, len(seq))
        race_pages = (
            np.sort(rng.choice(len(seq), n_races, replace=False))
            if n_races
            else np.zeros(0, np.int64)
        )
        t_race = place[race_pages].astype(np.int64) + 1
        # page request bookkeeping (>= 5.2): outstanding requests after each add / del
        t_del = place[urgent].astype(np.int64)
        evt = np.concatenate([tf + 1, t_del])
        typ = np.concatenate([np.ones(len(tf), np.int64), -np.ones(len(t_del), np.int64)])
        o = np.lexsort((-typ, evt))
        run = np.cumsum(typ[o])
        cnt = np.empty(len(evt), np.int64)
        cnt[o] = run
        add_count, del_count_u = cnt[: len(tf)], cnt[len(tf) :]
        del_count = np.zeros(len(seq), np.int32)
        del_count[urgent] = del_count_u
        blk, hpi = order[seq, 0], order[seq, 1]
        self.sources.append(
            Stream(self.prio(), blocks, blk, hpi, start, taus, zero, urgent, del_count,
                   p.listen, p.pid, self.era)
        )  # fmt: skip
        # faults: requested pages (exact HVA inside the host page) and races
        f_blk = np.concatenate([order[chosen, 0], blk[race_pages]])
        f_hpi = np.concatenate([order[chosen, 1], hpi[race_pages]])
        psz = np.array([b.page for b in blocks], np.int64)[f_blk]
        base = np.array([b.hva for b in blocks], np.int64)[f_blk]
        inner = (rng.integers(0, psz // 8) * 8) if len(psz) else np.zeros(0, np.int64)
        f_t = np.concatenate([tf, t_race]).astype(np.int64)
        race = np.concatenate([np.zeros(len(tf), bool), np.ones(len(t_race), bool)])
        if len(f_t):
            self.sources.append(
                Faults(self.prio(), blocks, f_t, f_blk, f_hpi, base + f_hpi * psz + inner, race,
                       np.concatenate([add_count, np.zeros(len(t_race), np.int64)]), p.fault,
                       p.pid, era)
            )  # fmt: skip
        mig.info.update(
            postcopy_placed=len(seq), zero_pages=int(zero.sum()),
            hugetlb_zero_pages=int((zero & (blk == 0)).sum()) if self.hp > KIB4 else 0,
            faults=int(len(tf)), requested_pages=int(urgent.sum()), refault_races=n_races,
            stream_start_us=int(S0), stream_end_us=int(S0 + tau.sum()),
        )  # fmt: skip
        # the balloon requests of the window, now that placements are known
        self._during_requests(mig, during, seq, order, start, place, urgent, chosen, is_pl, tf, E)

    def _during_requests(self, mig, during, seq, order, start, place, urgent, chosen, is_pl,
                         tf, E) -> None:  # fmt: skip
        p, hp = mig.proc, self.hp
        pc = order[seq, 0] == 0
        planted = np.zeros(len(during.get("flat", [])), np.int64)
        offsets = np.full(len(planted), -1, np.int64)
        pick = self.r_balloon
        used4 = set()

        def off4(hpi: int) -> int:
            """A 4 KiB page of a pc.ram host page that is free in the guest."""
            for _ in range(16):
                o = hpi * hp + (int(pick.integers(0, hp // KIB4)) * KIB4 if hp > KIB4 else 0)
                if o >= LOW_RESERVED and not self.in_balloon[o // KIB4] and o not in used4:
                    return o
            return -1

        def plant(cls: str, slots, cand_fn):
            got = 0
            for s in slots:
                t = int(during["flat"][s])
                cand = cand_fn(t)
                if not len(cand):
                    continue
                for c in pick.permutation(cand)[:16]:
                    o = off4(int(order[seq[c], 1]))
                    if o >= 0:
                        offsets[s], planted[s] = o, CLASS_CODES[cls]
                        used4.add(o)
                        got += 1
                        break
            mig.planted[cls] = got

        pl = during.get("plant", {})
        seq_of = np.full(len(order), -1, np.int64)  # background index -> send position
        seq_of[seq] = np.arange(len(seq))
        if "in-flight" in pl:  # the page of the planted fault just before the inflate
            # (a planted fault's time -> its page's background index)
            pf = {int(t): int(c) for t, c, x in zip(tf, chosen, is_pl, strict=True) if x}
            plant("in-flight", pl["in-flight"],
                  lambda t: np.array([seq_of[pf[t - 3]]] if (t - 3) in pf else [], np.int64))  # fmt: skip
        if "before-arrival" in pl:  # a pc.ram page not received nor requested yet
            plant("before-arrival", pl["before-arrival"],
                  lambda t: np.flatnonzero(pc & ~urgent & (np.floor(start) > t + 1))[:4096])  # fmt: skip
        if "after-place" in pl:  # a pc.ram page placed before the inflate
            plant("after-place", pl["after-place"],
                  lambda t: np.flatnonzero(pc & (place < t - 1))[-4096:])  # fmt: skip
        # the other inflates: free guest pages, not the ones the guest faults on
        rest = np.flatnonzero(offsets < 0)
        bad = self.in_balloon.copy()
        bad[: LOW_RESERVED // KIB4] = True
        for o in used4:
            bad[o // KIB4] = True
        if hp == KIB4 and len(chosen):
            bad[order[chosen, 1]] = True
        offsets[rest] = sample_unique(pick, 0, self.npages4, len(rest), bad) * KIB4
        # emit inflate batches, then deflates (LIFO)
        i = 0
        if during["inflate"]:
            self._target(p, during["t_get"]["inflate"][0] - 5, self.actual + len(planted))
            ts_lists, off_lists, pl_lists = [], [], []
            for treq in during["inflate"]:
                ts_lists.append(treq)
                off_lists.append(offsets[i : i + len(treq)])
                pl_lists.append(planted[i : i + len(treq)])
                i += len(treq)
            self._push_batches(p, mig.index, "during", during["t_get"]["inflate"], ts_lists,
                               off_lists, True, pl_lists)  # fmt: skip
        n_def = 0
        if during["deflate"] and self.depth:
            n_def = min(sum(len(x) for x in during["deflate"]), self.depth)
            self._target(p, during["t_get"]["deflate"][0] - 5, self.actual - n_def)
            self._pop_batches(p, mig.index, "during", during["t_get"]["deflate"],
                              during["deflate"])  # fmt: skip
        mig.info["during_inflate"] = int(len(planted))
        mig.info["during_deflate"] = int(n_def)

    def _end_of_window(self, mig: Mig, E: int) -> None:
        era, p, T = self.era, mig.proc, mig.t
        s, LT = p.script, p.listen
        s.add(E, LT, p.pid, "postcopy_ram_listen_thread_exit", R_LT_EXIT)
        s.add(E + 40, LT, p.pid, "postcopy_ram_incoming_cleanup_entry", R_CL_ENTRY)
        s.add(E + 50, p.fault, p.pid, "postcopy_ram_fault_thread_quit")
        s.add(E + 60, p.fault, p.pid, "postcopy_ram_fault_thread_exit")
        s.add(E + 80, LT, p.pid, "postcopy_ram_incoming_cleanup_join")
        for i, b in enumerate(p.blocks):
            s.add(E + 100 + 5 * i, LT, p.pid, "postcopy_cleanup_range", ramblock=b.name,
                  host_addr=b.hva, offset=b.ram_addr, length=b.length)  # fmt: skip
        s.add(E + 150, LT, p.pid, "postcopy_ram_incoming_cleanup_closeuf")
        T["cleanup"] = E + 160
        s.add(E + 160, LT, p.pid, "postcopy_ram_incoming_cleanup_exit", R_CL_EXIT)
        last = E + 160
        if era.at_least(2, 6):
            T["completed"] = E + 300
            s.add(E + 300, LT, p.pid, "migrate_set_state", R_COMPLETED, **self._state("completed"))
            last = E + 300
        if self.ev.has("loadvm_state_cleanup"):
            s.add(E + 400, LT, p.pid, "loadvm_state_cleanup")
            last = E + 400
        T["lt_last"] = last
        # the era's real balloon inhibit on this destination
        if era.policy == "inhibit":
            mig.real_window = (T["listen"], T["cleanup"])
        else:
            mig.real_window = (T["discard"], T["lt_last"])
        # planted tail inflates: [END, cleanup), [cleanup, completed), [completed, last line)
        if self.sc.tail:
            slots = [E + 20, E + 220] + ([E + 350] if last == E + 400 else [])
            offs = sample_unique(self.r_balloon, LOW_RESERVED // KIB4, self.npages4, len(slots),
                                 self.in_balloon) * KIB4  # fmt: skip
            for t, o in zip(slots, offs, strict=True):
                self._push_batches(p, mig.index, "tail", [t - 4], [np.array([t])], [np.array([o])],
                                   True, [np.array([CLASS_CODES["tail"]])])  # fmt: skip
            mig.planted["tail"] = len(slots)

    # -- the guest's balloon -----------------------------------------------------------------
    def _push_batches(self, p, mig, phase, t_get, ts_lists, off_lists, inflate, pl_lists=None):
        for offs in off_lists:
            pages = np.asarray(offs, np.int64) // KIB4
            self.in_balloon[pages] = True
            self.stack[self.depth : self.depth + len(pages)] = pages
            self.depth += len(pages)
        self.actual = self.reqs.add_batches(p.index, t_get, ts_lists, off_lists, self.gpa,
                                            inflate, self.actual, phase, mig, pl_lists)  # fmt: skip

    def _pop_batches(self, p, mig, phase, t_get, ts_lists) -> None:
        off_lists = []
        for treq in ts_lists:
            n = min(len(treq), self.depth)
            pages = self.stack[self.depth - n : self.depth][::-1].astype(np.int64)
            self.depth -= n
            self.in_balloon[pages] = False
            off_lists.append(pages * KIB4)
        ts_lists = [t[: len(o)] for t, o in zip(ts_lists, off_lists, strict=True)]
        keep = [i for i, o in enumerate(off_lists) if len(o)]
        self.actual = self.reqs.add_batches(
            p.index, [t_get[i] for i in keep], [ts_lists[i] for i in keep],
            [off_lists[i] for i in keep], self.gpa, False, self.actual, phase, mig,
        )  # fmt: skip

    def _target(self, p: Proc, t: int, pages: int) -> None:
        s = p.script
        if self.ev.has("qmp_enter_balloon"):
            value = self.ram - pages * KIB4
            s.add(t - 40, p.main, p.pid, "qmp_enter_balloon", json=f'{{"value": {value}}}')
            s.add(t - 20, p.main, p.pid, "qmp_exit_balloon", result="{}", succeeded=1)
        s.add(t - 10, p.main, p.pid, "balloon_event", opaque=p.vdev - 0x2000,
              addr=self.ram - pages * KIB4)  # fmt: skip
        s.add(t, p.main, p.pid, "virtio_balloon_to_target", target=self.ram - pages * KIB4,
              num_pages=pages)  # fmt: skip

    def _guest_runs(self, p: Proc, t: int, mig: int, phases) -> int:
        """Balloon activity outside any window: inflate then deflate, 256 pages a batch."""
        for phase in phases:
            for kind in ("inflate", "deflate"):
                n = self.sc.balloon_pages(f"{kind}_{phase}")
                if kind == "deflate":
                    n = min(n, self.depth)
                if not n:
                    continue
                target = self.actual + n if kind == "inflate" else self.actual - n
                self._target(p, t, target)
                t += 2000
                sizes = [min(256, n - i) for i in range(0, n, 256)]
                t_get, ts = [], []
                for sz in sizes:
                    t_get.append(t)
                    ts.append(t + 6 + 2 * np.arange(sz, dtype=np.int64))
                    t = int(ts[-1][-1]) + 3 + 500
                if kind == "inflate":
                    bad = self.in_balloon.copy()
                    bad[: LOW_RESERVED // KIB4] = True
                    offs = sample_unique(self.r_balloon, 0, self.npages4, n, bad) * KIB4
                    cuts = np.cumsum(sizes)[:-1]
                    self._push_batches(p, mig, phase, t_get, ts, np.split(offs, cuts), True)
                else:
                    self._pop_batches(p, mig, phase, t_get, ts)
                t += 20_000
        return t

    def _outgoing(self, p: Proc, t: int) -> int:
        """The process migrates the guest away (source side lines, on its migration thread)."""
        s, X = p.script, p.migthread
        s.add(t, X, p.pid, "migrate_set_state", **self._state("setup"))
        s.add(t + 100, X, p.pid, "qemu_savevm_send_postcopy_advise")
        s.add(t + 101, X, p.pid, "savevm_command_send", command=3, len=16)
        s.add(t + 200, X, p.pid, "migrate_set_state", **self._state("active"))
        t2 = t + 200 + int(self.sc.precopy_s * S)
        s.add(t2, X, p.pid, "postcopy_start")
        s.add(t2 + 10, X, p.pid, "migrate_set_state", **self._state("postcopy-active"))
        s.add(t2 + 20, X, p.pid, "ram_postcopy_send_discard_bitmap")
        s.add(t2 + 30, X, p.pid, "postcopy_discard_send_finish", ramblock="pc.ram",
              nwords=int(self.r_misc.integers(10, 5000)), ncmds=int(self.r_misc.integers(1, 400)))  # fmt: skip
        s.add(t2 + 100, X, p.pid, "savevm_send_postcopy_listen")
        s.add(t2 + 101, X, p.pid, "savevm_send_postcopy_run")
        s.add(t2 + 102, X, p.pid, "postcopy_start_set_run")
        t3 = t2 + 50_000
        s.add(t3, X, p.pid, "migrate_set_state", R_COMPLETED, **self._state("completed"))
        return t3

    # -- what QEMU really did, and the balloon rows ------------------------------------------
    def _real_outcomes(self) -> None:
        """Whether the era's QEMU applied each inflate (outside its inhibit window), and whether
        it traced that discard (>= 4.0, 4 KiB host pages only: on hugetlbfs a 4 KiB inflate
        never completes a host page within one request, so QEMU discards nothing)."""
        c = self.reqs.cols
        if not self.reqs.n:
            return
        inside = np.zeros(self.reqs.n, bool)
        for m in self.migs:
            lo, hi = m.real_window
            inside |= (c["t"] >= lo) & (c["t"] < hi)
        c["applied"] = c["inflate"] & ~inside
        c["discard"] = c["applied"] & self.era.at_least(4, 0) & (self.hp == KIB4)

    def _balloon_sources(self) -> None:
        c, bt = self.reqs.cols, self.reqs.bt
        for p in self.procs:
            bsel = np.flatnonzero(bt["proc"] == p.index) if self.reqs.nb else np.zeros(0, np.int64)
            if not len(bsel):
                continue
            r0 = int(bt["first"][bsel[0]])
            r1 = int(bt["first"][bsel[-1]] + bt["n"][bsel[-1]])
            reqs = {k: c[k][r0:r1] for k in ("t", "gpa", "offset", "discard", "index")}
            batches = {k: v[bsel] for k, v in bt.items()}
            batches["first"] = batches["first"] - r0
            handler = p.main if self.sc.balloon_thread == "main" else p.vcpu
            self.sources.append(
                Balloon(self.prio(), batches, reqs, handler, p.vcpu, p.pid, p.vdev, p.vq,
                        p.blocks[0].hva)
            )  # fmt: skip

    def _noise(self) -> None:
        """Scattered non-trace lines and damaged trace lines (log output only)."""
        sc, rng = self.sc, self.r_noise
        t0, t1 = self.procs[0].start + 10, self.t_end
        warn = [
            "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]",
            "main-loop: WARNING: I/O thread spun for 1000 iterations",
            "qemu-system-x86_64: terminating on signal 15 from pid 1234 (/usr/sbin/libvirtd)",
            "(qemu-system-x86_64:4242): GLib-WARNING **: 12:00:00.000: g_main_context_prepare() called recursively",
        ]  # fmt: skip
        iso = self.era.v2 >= (6, 0)  # -msg timestamp=on stamps error_report lines too
        for t in np.sort(rng.integers(t0, t1, sc.other_lines)):
            p = self._proc_at(int(t))
            text = warn[int(rng.integers(0, len(warn)))]
            p.script.text(int(t), p.main, p.pid, text, R_OTHER, 2 if iso else 0)
        for t in np.sort(rng.integers(t0, t1, sc.damaged_lines)):
            p = self._proc_at(int(t))
            n = int(rng.integers(0, 1 << 20))
            kind = int(rng.integers(0, 2))
            text = (f"virtio_balloon_get_config num_pages: {n} ac" if kind == 0
                    else "loadvm_process_command com=0x2 len=4\x00postcopy_place_page host=0x7f")  # fmt: skip
            p.script.text(int(t), p.main, p.pid, text, R_DAMAGED, 1)

    def _proc_at(self, t: int) -> Proc:
        starts = [p.start for p in self.procs]
        return self.procs[max(0, int(np.searchsorted(starts, t, side="right")) - 1)]
