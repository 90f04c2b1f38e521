"""Regenerate the generated samples of ``sample_traces/`` (byte for byte; see README.md there).

    .venv/bin/python sample_traces/make_samples.py            # synthetic samples and truth files
    .venv/bin/python sample_traces/make_samples.py --real     # also the simpletrace cuts of the
                                                              # shared capture d (needs ../shared)

Then regenerate the golden results and read their diff before committing:

    .venv/bin/tracetool check --update --baseline sample_traces/expected $(python sample_traces/make_samples.py --list)
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SYNTH = HERE / "synthetic"
REAL = HERE / "qemu-7.2"
CAPTURE_D = ROOT.parent / "shared/traces/qemu-7.2/d-simpletrace-balloon-during-postcopy"

#: A 32 MiB guest whose pages mostly arrive in precopy: a postcopy window of ~0.1 s, still long
#: enough for every planted conflict class, and a trace of ~20K lines (~200 KB gzipped).
SMALL = dict(ram="32M", bandwidth="32M", precopy_s=0.9, dirty=0.02, seed=6)

#: name -> (Scenario options beyond SMALL, what the sample shows)
RECIPES: dict[str, tuple[dict, str]] = {
    "era-2.5-stderr": (
        dict(era="2.5"),
        "QEMU 2.5 stderr backend `PID@SEC.USEC:` lines (`setion`, bare hex, numeric source "
        "states); no `ram_load_loop`, so precopy pages are in an unknown state",
    ),
    "era-2.10-log": (
        dict(era="2.10"),
        "QEMU 2.10 log backend: `PID@` prefix, `0x` formats, numeric `migrate_set_state` on the "
        "destination, `ram_load_loop` but no `ram_block_discard_range`",
    ),
    "era-4.x-tid": (dict(era="4.x"), "QEMU 4.2 `TID@SEC.USEC:` lines, fault requests with `pid=`"),
    "era-7.2-timestamp": (
        dict(era="7.2"),
        "QEMU 7.2 with `-msg timestamp=on`: `TID@` lines, ISO-stamped warnings, QMP "
        "`query-version`",
    ),
    "era-10.1-iso": (dict(era="10.1"), "QEMU 10.1 ISO-8601 UTC prefix, no thread ids"),
    "conflict-classes": (
        dict(era="7.2", plant=8, inflate_during="1%", deflate_during="0.2%"),
        "8 planted conflicts of each class (after-place, in-flight, before-arrival) plus the "
        "tail inflates between END, cleanup and the listen thread's end",
    ),
    "defer-cancel": (
        dict(era="7.2", inflate_during="3%", deflate_during="2%"),
        "many deflates during postcopy: the `defer` policy cancels deferred inflates",
    ),
    "two-migrations": (
        dict(era="7.2", migrations=2, aslr=True),
        "two incoming migrations (two destination processes) with their own RAM addresses",
    ),
    "hugepages-2M": (
        dict(era="7.2", host_page="2M"),
        "hugetlbfs `pc.ram` (2 MiB host pages): 4 KiB inflates never discard, zero pages "
        "placed as `_zero` then `postcopy_place_page`",
    ),
    "malformed-lines": (
        dict(era="10.1", damaged_lines=40, other_lines=60),
        "40 damaged trace lines (cut short, glued) and 60 non-trace lines among the events",
    ),
}

#: Record ranges [start, end) of capture d's dst.trace.simple (record 0 = first after the
#: header; 0..4068 are the mapping records): setup and ADVISE, the discard commands and LISTEN,
#: RUN, the balloon target and the start of the inflate during postcopy, the end of postcopy and
#: cleanup, and an applied inflate (4 KiB discards) after the migration.
D_DST_RANGES = [
    (0, 4300),
    (151300, 152300),
    (168250, 168400),
    (169950, 170100),
    (170950, 174500),
    (293400, 293700),
    (359600, 360200),
]
#: Record ranges of capture d's src.trace.simple: setup, query-version and the postcopy ADVISE;
#: the switch to postcopy (discard bitmap ranges, LISTEN, RUN) and the first page requests served
#: from the return path; the last requests and completion.
D_SRC_RANGES = [(0, 4200), (65700, 67000), (86400, 86540)]


def synth_path(name: str) -> Path:
    return SYNTH / f"{name}.log.gz"


def make_synthetic() -> None:
    from tracetool.synth import Scenario, generate

    for name, (opts, _what) in RECIPES.items():
        out = synth_path(name).relative_to(ROOT)  # relative: the truth file records the path
        res = generate(Scenario(**{**SMALL, **opts}), out, "log")
        _gzip9(out, gzip.decompress(out.read_bytes()))
        print(res.summary())


def _gzip9(path: Path, data: bytes) -> None:
    """Compress smaller than synth's fast level, without a name or time in the header."""
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
        f.write(data)


def _records(buf: bytes) -> list[tuple[int, int]]:
    """(offset, end) of every simpletrace v4 record after the 24-byte header."""
    out, off = [], 24
    while off < len(buf):
        typ, _eid = struct.unpack_from("<QQ", buf, off)
        if typ == 0:  # mapping: type, id, u32 length, name
            (n,) = struct.unpack_from("<I", buf, off + 16)
            end = off + 20 + n
        else:  # event: type, id, ts, u32 length (from the id on), pid, payload
            (n,) = struct.unpack_from("<I", buf, off + 24)
            end = off + 8 + n
        out.append((off, end))
        off = end
    return out


def cut_simpletrace(src: Path, dst: Path, ranges: list[tuple[int, int]]) -> int:
    """Write the header and the records in ``ranges`` of ``src`` to ``dst`` (gzip, no mtime)."""
    buf = gzip.decompress(src.read_bytes()) if src.suffix == ".gz" else src.read_bytes()
    recs = _records(buf)
    parts = [buf[:24]] + [buf[recs[a][0] : recs[min(b, len(recs)) - 1][1]] for a, b in ranges]
    with open(dst, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as f:
        for p in parts:
            f.write(p)
    return sum(min(b, len(recs)) - a for a, b in ranges)


def make_real() -> None:
    for side, src, ranges in (("dst", "dst.trace.simple.gz", D_DST_RANGES),
                              ("src", "src.trace.simple", D_SRC_RANGES)):  # fmt: skip
        out = REAL / f"d-{side}-excerpt.trace.simple.gz"
        n = cut_simpletrace(CAPTURE_D / src, out, ranges)
        print(f"wrote {out.relative_to(ROOT)}: {n:,} records, {out.stat().st_size:,} bytes")


def samples() -> list[Path]:
    """Every bundled trace (what sample_traces/expected/ holds a golden result for)."""
    return sorted(
        p
        for d in (REAL, SYNTH)
        for p in d.iterdir()
        if p.is_file() and not p.name.endswith((".truth.json", ".md", ".py"))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", action="store_true", help="also cut the shared capture d")
    ap.add_argument("--list", action="store_true", help="print the sample traces and exit")
    args = ap.parse_args()
    if args.list:
        print(" ".join(str(p.relative_to(ROOT)) for p in samples()))
        return
    import os

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    make_synthetic()
    if args.real:
        make_real()


if __name__ == "__main__":
    main()
