"""Scenario parameters of ``tracetool synth`` and the QEMU eras it can write.

A :class:`Scenario` is plain data with defaults (every field is a CLI option); an :class:`Era`
is what a QEMU release prints and does: its line shape, its policy for balloon inflates during
an incoming postcopy migration, and which trace events it has (taken from the bundled catalog
variant whose ``#@ versions:`` range covers the era's version).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from tracetool.errors import UsageError

KIB4 = 4096
MIB = 1 << 20
GIB = 1 << 30
HUGE = 2 * MIB


@dataclass(frozen=True)
class Era:
    """A QEMU release family and what its destination prints and does."""

    name: str
    version: tuple[int, int, int]
    #: line prefix of the log backend: "pid" (``PID@SEC.USEC:``, <= 3.1), "tid"
    #: (``TID@SEC.USEC:``, 4.0-5.2 always, 6.x-10.0 with -msg timestamp=on) or "iso"
    #: (``YYYY-MM-DDTHH:MM:SS.ffffffZ `` from qemu_log, >= 10.1)
    shape: str
    #: the destination's balloon rule during incoming postcopy: "inhibit" (2.5-5.0, LISTEN ..
    #: cleanup) or "inhibit-discard" (>= 5.1, first DISCARD .. postcopy state END)
    policy: str
    #: the wall clock of the trace start (s since the epoch): when such a QEMU was current
    epoch: int
    libvirt: str

    @property
    def v2(self) -> tuple[int, int]:
        return self.version[:2]

    def at_least(self, major: int, minor: int) -> bool:
        return self.v2 >= (major, minor)

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


ERAS: dict[str, Era] = {
    "2.5": Era("2.5", (2, 5, 0), "pid", "inhibit", 1454328000, "1.3.1"),  # 2016-02-01
    "2.10": Era("2.10", (2, 10, 0), "pid", "inhibit", 1504267200, "3.7.0"),  # 2017-09-01
    "4.x": Era("4.x", (4, 2, 0), "tid", "inhibit", 1580731200, "6.0.0"),  # 2020-02-03
    "7.2": Era("7.2", (7, 2, 0), "tid", "inhibit-discard", 1685966400, "9.0.0"),  # 2023-06-05
    "10.1": Era("10.1", (10, 1, 0), "iso", "inhibit-discard", 1756728000, "11.6.0"),  # 2025-09-01
}

FORMATS = ("log", "simpletrace", "jsonl", "csv", "parquet")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB]|%)?\s*$")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int, whole: int | None = None) -> int:
    """Bytes of ``64M``, ``2G``, ``4096``, ``1.5GiB`` or ``5%`` (of ``whole``)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"bad size {text!r}; expected e.g. 4096, 64M, 2G or 5%")
    num, unit = float(m.group(1)), (m.group(2) or "")
    if unit == "%":
        if whole is None:
            raise UsageError(f"size {text!r}: a percentage needs a whole to be a share of")
        return int(whole * num / 100)
    return int(num * _UNITS[unit[:1].lower()])


@dataclass
class Scenario:
    """What to generate. Sizes are strings (``64M``, ``5%`` of the guest RAM) or bytes.

    The balloon schedule is per incoming migration and relative to its postcopy window:
    ``before`` runs in the QEMU process that had the guest before this migration (the boot
    process for the first one, the previous destination otherwise), ``during`` while the guest
    runs on the destination in postcopy (RUN .. END), ``after`` once the migration completed.
    Inflates come first in each phase, then deflates (which return the most recently ballooned
    pages, like Linux's driver).
    """

    era: str = "7.2"
    seed: int = 0
    ram: str | int = "1G"  # guest RAM (the pc.ram block)
    host_page: str | int = "4K"  # pc.ram host page size: 4K or 2M (hugetlbfs)
    precopy_s: float = 1.0  # precopy duration before the switch to postcopy
    bandwidth: str | int = "1G"  # bytes/s of the migration stream (precopy and postcopy)
    dirty: float = 0.05  # share of precopy-sent host pages dirtied again (sent in postcopy)
    fault_rate: float = 2000.0  # destination page faults per second of postcopy
    fault_latency_us: int = 300  # fault -> requested page placed (round trip)
    zero_pages: float = 0.2  # share of postcopy host pages that are all zero
    inflate_before: str | int = "4%"
    deflate_before: str | int = "1%"
    inflate_during: str | int = "2%"
    deflate_during: str | int = "0.5%"
    inflate_after: str | int = "2%"
    deflate_after: str | int = "1%"
    plant: int = 4  # planted conflicts per class (after-place, in-flight, before-arrival)
    tail: bool = True  # planted inflates between END and the end of the listen thread
    refault_races: int = 2  # benign fault-after-place races per migration (observed refaults)
    migrations: int = 1  # incoming migrations in one trace (one destination process each)
    other_lines: int = 20  # non-trace lines scattered in log output (besides process headers)
    damaged_lines: int = 4  # damaged trace lines in log output (rejected by a parser)
    balloon_thread: str = "main"  # thread of the balloon handler: main (ioeventfd) or vcpu
    aslr: bool = False  # each process maps its RAM at its own HVA (ASLR on)

    # -- resolved values ------------------------------------------------------------------
    @property
    def era_info(self) -> Era:
        return ERAS[self.era]

    def ram_bytes(self) -> int:
        return parse_size(self.ram)

    def host_page_bytes(self) -> int:
        return parse_size(self.host_page)

    def bandwidth_bytes(self) -> int:
        return parse_size(self.bandwidth)

    def balloon_pages(self, which: str) -> int:
        """4 KiB pages of a schedule entry (``inflate_before`` ...)."""
        return parse_size(getattr(self, which), self.ram_bytes()) // KIB4

    def validate(self) -> Scenario:
        """Check the values; raises :class:`UsageError` naming the option."""
        if self.era not in ERAS:
            raise UsageError(f"unknown era {self.era!r}; expected one of {', '.join(ERAS)}")
        ram, hp = self.ram_bytes(), self.host_page_bytes()
        if hp not in (KIB4, HUGE):
            raise UsageError(f"--host-page {self.host_page!r}: use 4K or 2M")
        if hp == HUGE and not self.era_info.at_least(2, 9):
            raise UsageError(
                "QEMU 2.5 postcopy does not support hugepages (hugetlbfs postcopy arrived in 2.9)"
            )
        if ram < 32 * MIB or ram % hp:
            raise UsageError(f"--ram {self.ram!r}: at least 32M and a multiple of the host page")
        if ram > 1 << 40:
            raise UsageError(f"--ram {self.ram!r}: at most 1T")
        if self.bandwidth_bytes() < MIB:
            raise UsageError("--bandwidth: at least 1M (bytes/s)")
        for name in ("dirty", "zero_pages"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')}: a share between 0 and 1")
        if self.precopy_s <= 0 or self.fault_rate < 0 or self.fault_latency_us < 10:
            raise UsageError("--precopy-s > 0, --fault-rate >= 0, --fault-latency-us >= 10")
        if self.migrations < 1 or self.migrations > 64:
            raise UsageError("--migrations: 1 to 64")
        if min(self.plant, self.refault_races, self.other_lines, self.damaged_lines) < 0:
            raise UsageError("counts (--plant, --refault-races, noise lines) cannot be negative")
        if self.balloon_thread not in ("main", "vcpu"):
            raise UsageError("--balloon-thread: main or vcpu")
        for which in SCHEDULE:
            self.balloon_pages(which)  # parses
        return self

    def to_dict(self) -> dict:
        return asdict(self)


SCHEDULE = tuple(f"{d}_{p}" for p in ("before", "during", "after") for d in ("inflate", "deflate"))

#: Help text of every field (the CLI options and docs/synth.md use it).
HELP: dict[str, str] = {
    "era": "QEMU era: 2.5, 2.10, 4.x, 7.2 or 10.1 (line shape, formats, events, balloon policy).",
    "seed": "Random seed: the same seed and options give the same bytes.",
    "ram": "Guest RAM (the pc.ram block), e.g. 1G.",
    "host_page": "Host page size of pc.ram: 4K, or 2M (hugetlbfs).",
    "precopy_s": "Precopy duration in seconds before the switch to postcopy.",
    "bandwidth": "Migration stream bandwidth in bytes/s (precopy and postcopy), e.g. 1G.",
    "dirty": "Share of precopy-sent host pages dirtied again (discarded, sent in postcopy).",
    "fault_rate": "Destination page faults per second of postcopy (vCPUs touching missing pages).",
    "fault_latency_us": "Microseconds from a fault to the requested page arriving.",
    "zero_pages": "Share of postcopy host pages that are all zero (placed with place_page_zero).",
    "inflate_before": "Balloon inflate before the window (in the previous process), size or %.",
    "deflate_before": "Balloon deflate before the window, size or % of RAM.",
    "inflate_during": "Balloon inflate while the guest runs in postcopy (RUN .. END).",
    "deflate_during": "Balloon deflate during postcopy (returns the newest balloon pages).",
    "inflate_after": "Balloon inflate after the migration completed.",
    "deflate_after": "Balloon deflate after the migration completed.",
    "plant": "Planted inflates per conflict class per migration (after-place, in-flight, before-arrival).",
    "tail": "Plant inflates between END, cleanup and the end of the listen thread.",
    "refault_races": "Benign fault-after-place races per migration (observed refaults).",
    "migrations": "Incoming postcopy migrations in the trace (one destination process each).",
    "other_lines": "Non-trace lines scattered in log output (besides libvirt process headers).",
    "damaged_lines": "Damaged trace lines in log output (a parser rejects them).",
    "balloon_thread": "Thread of the balloon virtqueue handler: main (ioeventfd) or vcpu.",
    "aslr": "Map each process's RAM at its own HVA (the replay engine assumes one map per trace).",
}

assert {f.name for f in fields(Scenario)} == set(HELP), "every scenario field needs help"
