"""Address maps learned from a trace: RAMBlock HVA bases, host page sizes, GPA -> offset.

Evidence, best first: ``postcopy_init_range``/``_nhp_range``/``_cleanup_range`` (name, HVA base,
length), ``postcopy_ram_fault_thread_request`` (HVA and block offset), ``ram_load_loop``
(offset and HVA). Guest-physical addresses of balloon requests map to block offsets with the x86
``pc.ram`` rule (RAM below the low-memory boundary at its own address, the rest from 4 GiB), a
user ``--memory-map``, or pairs of a balloon request and the 4 KiB discard that applied it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from tracetool.errors import UsageError
from tracetool.replay import _rows
from tracetool.replay.columns import Columns
from tracetool.trace import Trace

KIB4 = 4096
GIB4 = 1 << 32
RANGE_EVENTS = ("postcopy_init_range", "postcopy_nhp_range", "postcopy_cleanup_range")
HUGE_SIZES = (1 << 30, 2 << 20)


@dataclass
class Block:
    name: str
    id: int
    hva: int | None = None  # HVA of offset 0
    length: int | None = None  # used length in bytes
    ram_addr: int | None = None  # global ram_addr offset
    page_size: int = KIB4
    page_size_evidence: str = "default 4 KiB"
    hva_evidence: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "hva": None if self.hva is None else hex(self.hva),
            "length": self.length,
            "ram_addr": None if self.ram_addr is None else hex(self.ram_addr),
            "host_page_size": self.page_size,
            "host_page_size_evidence": self.page_size_evidence,
            "hva_evidence": self.hva_evidence,
        }


@dataclass
class GpaRange:
    start: int
    end: int
    block: str
    offset: int  # block offset of ``start``


@dataclass
class AddressMap:
    blocks: dict[str, Block] = field(default_factory=dict)
    gpa_ranges: list[GpaRange] = field(default_factory=list)
    gpa_evidence: str = ""
    notes: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    #: migration -> block name -> HVA base, from that migration's range events (a trace may hold
    #: several destination processes, each with its own mapping)
    mig_hva: dict[int, dict[str, int]] = field(default_factory=dict)
    mig_of: object = None  # callable: line numbers -> migration index

    def block(self, name: str) -> Block:
        b = self.blocks.get(name)
        if b is None:
            b = self.blocks[name] = Block(name, len(self.blocks))
        return b

    def names(self) -> list[str]:
        return sorted(self.blocks, key=lambda n: self.blocks[n].id)

    def page_sizes(self) -> np.ndarray:
        return np.array([self.blocks[n].page_size for n in self.names()], np.int64)

    def block_ids(self, names) -> np.ndarray:
        """Block id of each name of a string array (registering new names); -1 for nulls."""
        enc = pc.dictionary_encode(pc.cast(names, "string"))
        if hasattr(enc, "combine_chunks"):
            enc = enc.combine_chunks()
        ids = np.array([self.block(v).id for v in enc.dictionary.to_pylist()] + [-1], np.int64)
        idx = enc.indices.fill_null(len(ids) - 1).to_numpy(zero_copy_only=False)
        return ids[idx]

    def per_migration(self) -> bool:
        """Whether migrations of this trace map some block at different addresses."""
        seen: dict[str, set[int]] = {}
        for bases in self.mig_hva.values():
            for name, hva in bases.items():
                seen.setdefault(name, set()).add(hva)
        return any(len(v) > 1 for v in seen.values())

    def base_of(self, name: str, mig: int) -> int | None:
        """HVA base of a block in one migration (its own range events, else the trace's)."""
        if mig < 0 and self.per_migration():
            return None  # before the first ADVISE: another process, whose addresses we do not know
        got = self.mig_hva.get(mig, {}).get(name)
        return got if got is not None else self.blocks[name].hva if name in self.blocks else None

    def bases(self, mig: np.ndarray) -> np.ndarray:
        """(rows, blocks) HVA bases for rows of the given migrations (0 when unknown)."""
        names = self.names()
        table = {m: [self.base_of(n, int(m)) or 0 for n in names] for m in np.unique(mig)}
        out = np.zeros((len(mig), max(len(names), 1)), np.int64)
        for m, row in table.items():
            out[mig == m, : len(names)] = row
        return out

    def hva_to_block(
        self, hva: np.ndarray, lines: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(block id or -1, offset) of host virtual addresses (of trace ``lines``, when the
        migrations map RAM at different addresses)."""
        if lines is not None and self.mig_of is not None and self.per_migration():
            mig = self.mig_of(lines)
            block = np.full(len(hva), -1, np.int64)
            offset = np.zeros(len(hva), np.int64)
            for m in np.unique(mig):
                sel = mig == m
                block[sel], offset[sel] = self._hva_to_block(hva[sel], int(m))
            return block, offset
        return self._hva_to_block(hva, None)

    def _hva_to_block(self, hva: np.ndarray, mig: int | None) -> tuple[np.ndarray, np.ndarray]:
        known = []
        for b in self.blocks.values():
            base = b.hva if mig is None else self.base_of(b.name, mig)
            if base is not None and b.length:
                known.append((base, b))
        block = np.full(len(hva), -1, np.int64)
        offset = np.zeros(len(hva), np.int64)
        if not known:
            return block, offset
        known.sort(key=lambda kb: kb[0])
        starts = np.array([k for k, _ in known], np.uint64)
        ends = starts + np.array([b.length for _, b in known], np.uint64)
        ids = np.array([b.id for _, b in known], np.int64)
        h = hva.astype(np.uint64)
        i = np.searchsorted(starts, h, side="right") - 1
        ok = (i >= 0) & (h < ends[np.maximum(i, 0)])
        block[ok] = ids[i[ok]]
        offset[ok] = (h[ok] - starts[i[ok]]).astype(np.int64)
        return block, offset

    def gpa_to_offset(self, block_ids: np.ndarray, gpa: np.ndarray) -> np.ndarray:
        """Block offset of guest-physical addresses (in the named block); -1 if unmapped."""
        out = np.full(len(gpa), -1, np.int64)
        g = gpa.astype(np.int64)
        for r in self.gpa_ranges:
            bid = self.block(r.block).id
            m = (block_ids == bid) & (g >= r.start) & (g < r.end)
            out[m] = g[m] - r.start + r.offset
        return out

    def to_dict(self) -> dict:
        return {
            "blocks": [self.blocks[n].to_dict() for n in self.names()],
            "gpa_map": [
                {
                    "gpa_start": hex(r.start),
                    "gpa_end": hex(r.end),
                    "block": r.block,
                    "offset": hex(r.offset),
                }
                for r in self.gpa_ranges
            ],
            "gpa_map_evidence": self.gpa_evidence,
            "notes": self.notes,
            "disagreements": self.disagreements,
        }


_RANGE = re.compile(r"^\s*(\w+)\s*-\s*(\w+)\s*=\s*([^+\s]+)\s*(?:\+\s*(\w+))?\s*$")


def parse_memory_map(spec: str) -> list[GpaRange]:
    """``GPA_START-GPA_END=BLOCK[+OFFSET],...`` (numbers in decimal or 0x hex)."""
    ranges = []
    for part in spec.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(
                f"bad --memory-map entry {part!r}; expected GPA_START-GPA_END=BLOCK[+OFFSET]"
            )
        try:
            start, end = int(m.group(1), 0), int(m.group(2), 0)
            off = int(m.group(4), 0) if m.group(4) else 0
        except ValueError:
            raise UsageError(f"bad number in --memory-map entry {part!r}") from None
        if end <= start:
            raise UsageError(f"empty range in --memory-map entry {part!r}")
        ranges.append(GpaRange(start, end, m.group(3), off))
    return ranges


def x86_pc_ram_map(ram_size: int) -> tuple[list[GpaRange], str]:
    """QEMU's x86 split of ``pc.ram``: below the low-memory boundary at its own address, the
    rest from 4 GiB. q35 puts the boundary at 2 GiB when RAM >= 2.75 GiB, i440fx at 3 GiB when
    RAM >= 3.5 GiB; both keep all RAM low below that, so the map is certain only up to 2 GiB."""
    if ram_size <= 0x80000000:
        return [
            GpaRange(0, ram_size, "pc.ram", 0)
        ], "x86 pc.ram rule: all RAM below 2 GiB, GPA = offset"
    low = 0x80000000 if ram_size >= 0xB0000000 else ram_size
    ranges = [GpaRange(0, low, "pc.ram", 0)]
    if ram_size > low:
        ranges.append(GpaRange(GIB4, GIB4 + ram_size - low, "pc.ram", low))
    return ranges, (
        f"x86 q35 pc.ram rule with {ram_size >> 20} MiB: low memory ends at {hex(low)} "
        "(i440fx differs above 2 GiB: give --memory-map if this is not q35)"
    )


def _col(t, name):
    return t[name].to_numpy(zero_copy_only=False) if name in t.column_names else None


def learn(
    trace: Trace,
    memory_map: str | None = None,
    host_page_size: int | None = None,
    mig_of=None,
    cols: Columns | None = None,
) -> AddressMap:
    """Build the address map of a trace (see the module docstring)."""
    cols = cols or Columns(trace)
    amap = AddressMap(mig_of=mig_of)
    # 1. Block ranges.
    for ev in RANGE_EVENTS:
        if ev not in trace:
            continue
        t = trace.table(ev)
        if "host_addr" not in t.column_names:
            continue
        migs = (
            mig_of(t["line"].to_numpy()) if mig_of is not None else np.zeros(t.num_rows, np.int64)
        )
        for name, hva, off, length, m in zip(
            t["ramblock"].to_pylist(), t["host_addr"].to_pylist(), t["offset"].to_pylist(),
            t["length"].to_pylist(), migs.tolist(), strict=True,
        ):  # fmt: skip
            b = amap.block(name)
            mine = amap.mig_hva.setdefault(int(m), {})
            if b.hva is None:
                b.hva, b.length, b.ram_addr, b.hva_evidence = hva, length, off, ev
            if name not in mine:
                mine[name] = hva
            elif mine[name] != hva or (b.length or 0) != length:
                amap.disagreements.append(
                    f"{ev}: {name} at {hex(hva)}+{hex(length)} in migration {m}, earlier "
                    f"{hex(mine[name])}+{hex(b.length or 0)}"
                )
    if amap.per_migration():
        amap.notes.append(
            "the migrations map RAM at different host addresses: one map per migration"
        )
    # 2. Host page sizes.
    for b in amap.blocks.values():
        if host_page_size:
            b.page_size, b.page_size_evidence = host_page_size, "--host-page-size"
    if not host_page_size:
        _detect_page_sizes(trace, amap)
    # 3. Bases from faults and precopy loads (checks, or learning when no range event).
    _check_bases(
        trace, cols, amap, "postcopy_ram_fault_thread_request", "ramblock", "hostaddr", "offset"
    )
    _check_bases(trace, cols, amap, "ram_load_loop", "rbname", "host", "addr")
    # 4. Guest-physical map.
    if memory_map:
        amap.gpa_ranges = parse_memory_map(memory_map)
        amap.gpa_evidence = "--memory-map"
        for r in amap.gpa_ranges:
            amap.block(r.block)
    elif "pc.ram" in amap.blocks and amap.blocks["pc.ram"].length:
        amap.gpa_ranges, amap.gpa_evidence = x86_pc_ram_map(amap.blocks["pc.ram"].length)
    else:
        amap.gpa_evidence = "none: give --memory-map to place balloon pages"
    return amap


def _detect_page_sizes(trace: Trace, amap: AddressMap) -> None:
    if "postcopy_place_page" not in trace:
        return
    t = trace.table("postcopy_place_page")
    hva = _col(t, "host_addr")
    if hva is None or not len(hva):
        return
    block, offset = amap.hva_to_block(hva, _col(t, "line"))
    for b in amap.blocks.values():
        offs = offset[block == b.id]
        if len(offs) < 8:
            continue
        for size in HUGE_SIZES:
            if not np.any(offs % size):
                b.page_size = size
                b.page_size_evidence = f"all {len(offs)} placements aligned to {size >> 10} KiB"
                break
        else:
            b.page_size_evidence = f"placements not all huge-page aligned ({len(offs)} seen)"


def _check_bases(
    trace: Trace,
    cols: Columns,
    amap: AddressMap,
    ev: str,
    name_col: str,
    hva_col: str,
    off_col: str,
) -> None:
    if ev not in trace:
        return
    t = trace.table(ev)
    if not {name_col, hva_col, off_col} <= set(t.column_names) or t.num_rows == 0:
        return
    values, codes = cols.names(ev, name_col)
    one = codes is None and not (amap.mig_of is not None and amap.per_migration())
    # HVA - offset, wrapping like uint64 arithmetic (one block, one base: a compiled pass per
    # parsed block, on the table's own buffers)
    if one:
        diff = None
        hva, off = cols.i64_chunks(ev, hva_col), cols.i64_chunks(ev, off_col)
        if [len(h) for h in hva] != [len(o) for o in off]:
            hva, off = [cols.i64(ev, hva_col)], [cols.i64(ev, off_col)]
    else:
        diff = (cols.i64(ev, hva_col) - cols.i64(ev, off_col)).view(np.uint64)
    for code, name in enumerate(values):
        if name is None:
            continue
        b = amap.block(name)
        mask = None if codes is None else codes == code
        d = diff if mask is None else diff[mask]
        base = _rows.base_check(hva, off) if one else int(d.min())
        base -= base % b.page_size
        if b.hva is None:
            b.hva, b.hva_evidence = base, f"{ev} (HVA - offset)"
            amap.notes.append(f"{name}: HVA base {hex(base)} learned from {ev}")
            continue
        ps = np.uint64(b.page_size)
        if amap.mig_of is not None and amap.per_migration():
            lines = cols.get(ev, "line")
            mig = amap.mig_of(lines if mask is None else lines[mask])
            expect = np.full(len(d), b.hva, np.int64)
            for m in np.unique(mig):
                expect[mig == m] = amap.base_of(name, int(m)) or b.hva
            e = expect.astype(np.uint64)
            bad = int(np.count_nonzero((d < e) | (d >= e + ps)))
        elif b.hva < (1 << 64) - b.page_size and one:
            bad = _rows.outside(hva, off, b.hva, b.page_size)
        elif b.hva < (1 << 64) - b.page_size:  # one base: d - e wraps below e
            bad = int(np.count_nonzero((d - np.uint64(b.hva)) >= ps))
        else:
            if d is None:
                d = (cols.i64(ev, hva_col) - cols.i64(ev, off_col)).view(np.uint64)
            e = np.uint64(b.hva)
            bad = int(np.count_nonzero((d < e) | (d >= e + ps)))
        if bad:
            amap.disagreements.append(
                f"{ev}: {bad} of {t.num_rows if d is None else len(d)} records of {name} put its base "
                f"elsewhere than {hex(b.hva)}"
            )
