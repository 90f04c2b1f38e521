"""Opening inputs: every compression, standard input, unreadable and binary files."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
import zlib

import pytest
import zstandard

import tracetool
from tests.conftest import MIXED
from tracetool.errors import InputError, TracetoolError
from tracetool.inputs import iter_line_blocks, open_input

TEXT = MIXED.read_bytes()


@pytest.mark.parametrize(
    "suffix, compress",
    [
        ("", lambda b: b),
        (".gz", gzip.compress),
        (".xz", lzma.compress),
        (".bz2", bz2.compress),
        (".zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_every_compression_gives_the_same_tables(tmp_path, suffix, compress):
    path = tmp_path / f"t.log{suffix}"
    path.write_bytes(compress(TEXT))
    t = tracetool.load(path)
    ref = tracetool.load(MIXED)
    assert (
        t.stats.compression
        == ({"": None, ".gz": "gzip", ".xz": "xz", ".bz2": "bz2", ".zst": "zstd"}[suffix])
    )
    assert t.events.equals(ref.events)
    assert t.stats.lines == TEXT.count(b"\n")


def test_compression_is_detected_by_magic_not_name(tmp_path):
    path = tmp_path / "trace.txt"  # gzip data behind a misleading name
    path.write_bytes(gzip.compress(TEXT))
    assert tracetool.load(path).stats.events == tracetool.load(MIXED).stats.events


@pytest.mark.parametrize("block", [7, 64, 200, 4096])
def test_blocks_split_only_at_line_ends(tmp_path, block):
    path = tmp_path / "t.log"
    path.write_bytes(TEXT + b"last line without newline")
    inp = open_input(path)
    blocks = [bytes(b) for b, _ in iter_line_blocks(inp, block)]
    inp.close()
    assert b"".join(blocks) == TEXT + b"last line without newline"
    assert all(b.endswith(b"\n") for b in blocks[:-1])


@pytest.mark.parametrize("block", [64, 333, 1 << 20])
def test_block_size_does_not_change_the_tables(block, engine):
    from tracetool.ingest import make_options

    opts = make_options(engine=engine)
    opts.block_size = block
    small = tracetool.load(MIXED, options=opts)
    ref = tracetool.load(MIXED, engine=engine)
    assert small.events.to_pylist() == ref.events.to_pylist()
    assert small.rejected.to_pylist() == ref.rejected.to_pylist()
    assert (
        small.table("postcopy_place_page").to_pylist()
        == ref.table("postcopy_place_page").to_pylist()
    )


def test_unterminated_last_line_is_counted(tmp_path):
    path = tmp_path / "t.log"
    path.write_bytes(
        b"1@1.000001:postcopy_place_page host=0x1000\n2@1.000002:postcopy_place_page host=0x2000"
    )
    t = tracetool.load(path)
    assert t.stats.lines == 2 and t.stats.events == 2
    assert t.table("postcopy_place_page")["host_addr"].to_pylist() == [0x1000, 0x2000]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file") as exc:
        tracetool.load(tmp_path / "nope.log")
    assert str(tmp_path / "nope.log") in str(exc.value)


def test_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="directory"):
        tracetool.load(tmp_path)


def test_binary_garbage_names_the_byte_offset(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"12@1.000001:postcopy_place_page host=0x1\n" + bytes(range(256)) * 8)
    with pytest.raises(InputError) as exc:
        tracetool.load(path)
    msg = str(exc.value)
    assert f"{path}: byte 41: binary data" in msg


def _available_lines(damaged: bytes) -> int:
    """Whole lines zlib can decompress from a damaged gzip file before it fails."""
    d = zlib.decompressobj(wbits=31)
    out = b""
    for i in range(0, len(damaged), 1024):
        try:
            out += d.decompress(damaged[i : i + 1024])
        except zlib.error:
            break
    return out.count(b"\n")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_keeps_what_came_before(tmp_path, damage):
    """A .gz that breaks off (copied while written, or damaged): lenient mode keeps the lines
    before the damage and reports it (counts still add up); --strict makes it an error."""
    text = TEXT * 3000
    data = gzip.compress(text)
    half = len(data) // 2
    bad = data[:half] if damage == "truncated" else data[:half] + b"\xff" * 64 + data[half:]
    path = tmp_path / "t.log.gz"
    path.write_bytes(bad)
    avail = _available_lines(bad)
    t = tracetool.load(path)
    s = t.stats
    assert s.input_damage and str(path) in s.input_damage and "gzip" in s.input_damage
    assert s.balanced and 0 < s.lines < text.count(b"\n")
    # at most one read piece (64 KiB of ~70-byte lines) before the damage is lost
    assert avail - (64 << 10) // 40 <= s.lines <= avail + 1
    with pytest.raises(TracetoolError) as exc:
        tracetool.load(path, strict=True)
    assert str(path) in str(exc.value)


def test_damaged_gzip_on_the_command_line(tmp_path):
    data = gzip.compress(TEXT * 3000)
    path = tmp_path / "t.log.gz"
    path.write_bytes(data[: len(data) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "tracetool.cli", "analyze", str(path), "--json", "--no-replay"],
        capture_output=True,
    )
    assert proc.returncode == 0
    assert "warning:" in proc.stderr.decode() and "truncated gzip" in proc.stderr.decode()
    s = json.loads(proc.stdout)
    assert "truncated gzip" in s["input_damage"] and s["lines"] > 0


def test_gzip_damaged_in_its_first_bytes_is_an_input_error(tmp_path):
    data = gzip.compress(TEXT * 50)
    path = tmp_path / "t.log.gz"
    path.write_bytes(data[:12] + b"\x00" * 64 + data[12:])
    with pytest.raises(InputError, match="gzip") as exc:
        tracetool.load(path)
    assert str(path) in str(exc.value)


def test_standard_input():
    proc = subprocess.run(
        [sys.executable, "-m", "tracetool.cli", "analyze", "-", "--json"],
        input=gzip.compress(TEXT),
        capture_output=True,
        check=True,
    )
    import json

    summary = json.loads(proc.stdout)
    assert summary["path"] == "-"
    assert summary["compression"] == "gzip"
    assert summary["lines"] == TEXT.count(b"\n")
