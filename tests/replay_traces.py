"""Hand-made QEMU 7.2 destination traces for the replay tests.

A tiny builder: each call appends the lines QEMU 7.2 prints for one step of an incoming postcopy
migration or of a balloon request, in the log backend's ``TID@SEC.USEC:name args`` shape with the
exact 7.2 format strings (``tracetool/catalog/data/*.trace-events``). Times are seconds from an
arbitrary epoch; ``ns(t)`` is what tracetool reads for them. Lines are written sorted by time;
lines with the same time keep the order of the calls (the replay breaks time ties by trace order).

    T().advise(t=1.0).discard(t=2.0).listen(t=3.0).run(t=3.1).place(t=4.0, offset=0x5000)
       .inflate(t=5.0, gpa=0x5000).end(t=9.0).write(path)

Threads: the main thread (ADVISE, discards, precopy loads, LISTEN, RUN), the listen thread of each
migration (postcopy stream: receives, places, state changes, END, cleanup), the fault thread, a
vCPU (balloon requests, each batch followed by its ``virtio_balloon_set_config``) and a monitor
thread (``qmp_exit_query_version``).
"""

from __future__ import annotations

from pathlib import Path

EPOCH = 1_700_000_000  # seconds: the trace clock of t = 0
MAIN, MON, VCPU = 1000, 1001, 1002
LISTEN0, FAULT0 = 2000, 2001  # + 10 per migration
KIB4 = 4096
GIB = 1 << 30
HVA = 0x7F0000000000  # default HVA base of pc.ram
RAM = GIB  # default pc.ram size: 1 GiB, so GPA = offset
PC_RAM = ("pc.ram", HVA, RAM)


def us(t: float) -> int:
    """Microseconds since the epoch of a builder time (what the trace line prints)."""
    return EPOCH * 1_000_000 + round(t * 1_000_000)


def ns(t: float) -> int:
    """``ts_ns`` tracetool reads for a line written at builder time ``t``."""
    return us(t) * 1000


class T:
    """A destination trace under construction (see the module docstring)."""

    def __init__(self, actual: int = 0) -> None:
        self._lines: list[tuple[int, int, str]] = []
        self.blocks: dict[str, tuple[int, int]] = {}  # name -> (HVA base, length)
        self.actual = actual  # pages in the balloon, as the guest reports them in set_config
        self.migration = -1
        self.listen_tid = LISTEN0
        self.fault_tid = FAULT0

    # -- output ------------------------------------------------------------------------------
    def raw(self, t: float, tid: int, name: str, args: str = "") -> T:
        """One line ``TID@SEC.USEC:name args`` (empty args print as ``name `` like QEMU)."""
        u = us(t)
        self._lines.append(
            (u, len(self._lines), f"{tid}@{u // 1_000_000}.{u % 1_000_000:06d}:{name} {args}")
        )
        return self

    def text(self) -> str:
        return "".join(line + "\n" for _, _, line in sorted(self._lines))

    def lines(self) -> list[str]:
        """The lines as written; ``lines().index(...) + 1`` is a line number of the trace."""
        return self.text().splitlines()

    def line_of(self, needle: str, nth: int = 0) -> int:
        """1-based line number of the ``nth`` line containing ``needle``."""
        hits = [i + 1 for i, line in enumerate(self.lines()) if needle in line]
        return hits[nth]

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.text())
        return path

    def load(self, directory: str | Path, name: str = "dst.trace.log"):
        """Write the trace into ``directory`` and load it with tracetool."""
        import tracetool

        return tracetool.load(self.write(Path(directory) / name))

    # -- addresses ---------------------------------------------------------------------------
    def hva(self, offset: int, block: str = "pc.ram") -> int:
        return self.blocks[block][0] + offset

    def offset_of_gpa(self, gpa: int) -> int:
        """pc.ram offset of a GPA by QEMU's q35 split (the builder's own arithmetic)."""
        length = self.blocks.get("pc.ram", (HVA, RAM))[1]
        low = length if length < 0xB0000000 else 0x80000000
        return gpa if gpa < low else gpa - (1 << 32) + low

    # -- migration markers (destination) -----------------------------------------------------
    def version(self, t: float, major: int, minor: int, micro: int = 0) -> T:
        """The QMP ``query-version`` reply that fixes the QEMU version."""
        reply = (
            f'{{"qemu": {{"micro": {micro}, "minor": {minor}, "major": {major}}}, "package": ""}} 1'
        )
        return self.raw(t, MON, "qmp_exit_query_version", reply)

    def advise(self, t: float, blocks=(PC_RAM,), block_discard: bool = False) -> T:
        """ADVISE: one ``postcopy_init_range`` (HVA base) and a whole-block discard per block;
        ``block_discard`` adds the ``ram_block_discard_range`` QEMU >= 2.12 logs for it."""
        self.migration += 1
        self.listen_tid = LISTEN0 + 10 * self.migration
        self.fault_tid = FAULT0 + 10 * self.migration
        self.raw(t, MAIN, "loadvm_postcopy_handle_advise")
        ram_addr = 0
        for name, hva, length in blocks:
            self.blocks[name] = (hva, length)
            self.raw(
                t,
                MAIN,
                "postcopy_init_range",
                f"{name}: 0x{hva:x} offset=0x{ram_addr:x} length=0x{length:x}",
            )
            self.raw(t, MAIN, "ram_discard_range", f"{name}: start: 0 {length:x}")
            if block_discard:
                self.raw(
                    t,
                    MAIN,
                    "ram_block_discard_range",
                    f"{name}@0x{hva:x} + 0x{length:x}: madvise: 1 fallocate: 0 ret: 0",
                )
            ram_addr += length
        return self

    def load_page(self, t: float, offset: int, block: str = "pc.ram") -> T:
        """A precopy page load (``ram_load_loop``)."""
        return self.raw(
            t,
            MAIN,
            "ram_load_loop",
            f"{block}: addr: 0x{offset:x} flags: 0x8 host: 0x{self.hva(offset, block):x}",
        )

    def discard(self, t: float, ranges=(), block: str = "pc.ram") -> T:
        """One discard command of the source's bitmap: ``(offset, length)`` ranges."""
        self.raw(t, MAIN, "loadvm_postcopy_ram_handle_discard")
        for start, length in ranges:
            self.raw(t, MAIN, "ram_discard_range", f"{block}: start: {start:x} {length:x}")
        return self

    def listen(self, t: float) -> T:
        self.raw(t, MAIN, "loadvm_postcopy_handle_listen", "enter")
        self.raw(t, self.listen_tid, "postcopy_ram_listen_thread_start")
        return self.raw(t, self.listen_tid, "migrate_set_state", "new state postcopy-active")

    def run(self, t: float) -> T:
        return self.raw(t, MAIN, "loadvm_postcopy_handle_run")

    def fault(self, t: float, offset: int, block: str = "pc.ram") -> T:
        return self.raw(
            t,
            self.fault_tid,
            "postcopy_ram_fault_thread_request",
            f"Request for HVA=0x{self.hva(offset, block):x} rb={block} offset=0x{offset:x} pid=0",
        )

    def receive(self, t: float, offset: int) -> T:
        """A target page of the postcopy stream (``ram_load_postcopy_loop``; no block name)."""
        return self.raw(
            t, self.listen_tid, "ram_load_postcopy_loop", f"chan=0 addr=0x{offset:x} flags=0x8"
        )

    def place(self, t: float, offset: int, block: str = "pc.ram", zero: bool = False) -> T:
        name = "postcopy_place_page_zero" if zero else "postcopy_place_page"
        return self.raw(t, self.listen_tid, name, f"host=0x{self.hva(offset, block):x}")

    def end(self, t: float, cleanup: float | None = None, state_end: float | None = None) -> T:
        """END at ``t`` (listen thread exit, cleanup entry); cleanup done and ``completed`` at
        ``cleanup`` (default ``t``); the listen thread's last line (STATE_END) at ``state_end``
        (default ``cleanup``), as QEMU 7.2 orders them."""
        cleanup = t if cleanup is None else cleanup
        state_end = cleanup if state_end is None else state_end
        lt = self.listen_tid
        self.raw(t, lt, "postcopy_ram_listen_thread_exit")
        self.raw(t, lt, "postcopy_ram_incoming_cleanup_entry")
        self.raw(cleanup, lt, "postcopy_ram_incoming_cleanup_exit")
        self.raw(cleanup, lt, "migrate_set_state", "new state completed")
        return self.raw(state_end, lt, "loadvm_state_cleanup")

    # -- balloon -----------------------------------------------------------------------------
    def _batch(
        self,
        t: float,
        gpas,
        sign: int,
        discard,
        queue: int | None,
        set_config: bool,
        tid: int,
    ) -> T:
        if queue is not None:
            self.raw(t, tid, "virtio_queue_notify", f"vdev 0x55d0 n {queue} vq 0x55e0")
        for gpa in gpas:
            self.raw(t, tid, "virtio_balloon_handle_output", f"section name: pc.ram gpa: 0x{gpa:x}")
            if discard is True or (discard and gpa in discard):
                hva = self.hva(self.offset_of_gpa(gpa))
                self.raw(
                    t,
                    tid,
                    "ram_block_discard_range",
                    f"pc.ram@0x{hva:x} + 0x1000: madvise: 1 fallocate: 0 ret: 0",
                )
        if set_config:
            old = self.actual
            self.actual += sign * len(gpas)
            self.raw(t, tid, "virtio_balloon_set_config", f"actual: {self.actual} oldactual: {old}")
        return self

    def inflate(
        self,
        t: float,
        gpa: int | None = None,
        gpas=(),
        discard=False,
        queue: int | None = None,
        set_config: bool = True,
        tid: int = VCPU,
    ) -> T:
        """A batch of inflate requests (one ``handle_output`` per 4 KiB page) and the guest's
        ``set_config`` (actual grows by the batch size). ``discard``: True (every page) or the
        GPAs QEMU applied, each followed by its 4 KiB ``ram_block_discard_range``. ``queue``:
        a ``virtio_queue_notify`` with that queue index before the batch."""
        gpas = [gpa] if gpa is not None else list(gpas)
        return self._batch(t, gpas, +1, discard, queue, set_config, tid)

    def deflate(
        self,
        t: float,
        gpa: int | None = None,
        gpas=(),
        queue: int | None = None,
        set_config: bool = True,
        tid: int = VCPU,
    ) -> T:
        """A batch of deflate requests; ``set_config`` shrinks actual by the batch size."""
        gpas = [gpa] if gpa is not None else list(gpas)
        return self._batch(t, gpas, -1, False, queue, set_config, tid)

    def get_config(self, t: float, num_pages: int, actual: int, tid: int = VCPU) -> T:
        return self.raw(
            t, tid, "virtio_balloon_get_config", f"num_pages: {num_pages} actual: {actual}"
        )


def postcopy(**kw) -> T:
    """The usual skeleton up to RUN: ADVISE 1.0, DISCARD 2.0, LISTEN 3.0, RUN 3.1 (END is the
    test's: call ``.end(t=9.0)`` after the page events)."""
    return T(**kw).advise(t=1.0).discard(t=2.0).listen(t=3.0).run(t=3.1)
