"""Opening inputs: every compression, standard input, unreadable and binary files."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys

import pytest
import zstandard

import tracetool
from tests.conftest import MIXED
from tracetool.errors import InputError
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


def test_corrupt_gzip_is_an_input_error(tmp_path):
    data = gzip.compress(TEXT * 50)
    path = tmp_path / "t.log.gz"
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2 :])
    with pytest.raises(InputError, match="corrupt gzip data") as exc:
        tracetool.load(path)
    assert str(path) in str(exc.value)


def test_truncated_gzip_is_an_input_error(tmp_path):
    data = gzip.compress(TEXT * 50)
    path = tmp_path / "t.log.gz"
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(InputError, match="corrupt gzip data"):
        tracetool.load(path)


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
