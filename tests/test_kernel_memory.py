"""Memory safety of the compiled kernels' word-at-a-time helpers and of the reused read buffers.

The 8-byte loads/copies of the kernels have no bounds check: these tests put every range at
the very end of a buffer that is a slice of a larger array whose bytes past the slice would
change the result if read (newlines, NULs, 0xFF), for lengths 0..17 and around multiples of 8.
The block parsers read into one reused buffer: every chunk's tables must stay as they were
when the chunk was yielded (no Arrow array may reference the buffer without a copy).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from parsers import qemu_log
from parsers import simpletrace as ST
from parsers.base import ParseOptions
from tests.conftest import DST_EXCERPT, SRC_EXCERPT
from tests.test_simpletrace import catalog as st_catalog
from tests.test_simpletrace import ids_for, sample_file
from tracetool.catalog import Catalog
from tracetool.inputs import Input, open_input
from tracetool.simpletrace_write import SimpletraceWriter

SIZES = sorted({*range(18), *(8 * k + d for k in range(1, 5) for d in (-1, 0, 1))})


def _numba():
    from parsers import _numba_setup

    if not _numba_setup.available():
        pytest.skip(f"numba unavailable: {_numba_setup.UNAVAILABLE}")


def _poisoned(data: bytes, stale: int) -> np.ndarray:
    """``data`` as the first bytes of a larger array (the rest ``stale``), sliced to its size."""
    big = np.full(len(data) + 64, stale, np.uint8)
    big[: len(data)] = np.frombuffer(data, np.uint8)
    return big[: len(data)]


def _bounds_reference(data: bytes) -> tuple[list[int], list[int], bool]:
    starts, ends, s = [], [], 0
    for i, c in enumerate(data):
        if c == 10:
            starts.append(s)
            ends.append(i - 1 if i > s and data[i - 1] == 13 else i)
            s = i + 1
    if data and data[-1] != 10:
        starts.append(s)
        ends.append(len(data) - 1 if data[-1] == 13 else len(data))
    return starts, ends, any(c == 0 or c >= 128 for c in data)


def _texts(rng: np.random.Generator, size: int) -> list[bytes]:
    alphabet = np.frombuffer(b"ab\n\r\x00\xc3\xa9 xyz\n", np.uint8)
    return [
        b"a" * size,
        b"\n" * size,
        rng.choice(alphabet, size).tobytes(),
        (b"\n" + b"b" * size)[:size],
        (b"c" * size + b"\n")[-size:] if size else b"",
    ]


@pytest.mark.parametrize("stale", [10, 0, 0xFF, 13])
def test_line_bounds_never_reads_past_the_block(stale):
    _numba()
    from parsers import _log_kernels as K

    rng = np.random.default_rng(stale)
    for size in SIZES:
        for data in _texts(rng, size):
            starts, ends, odd = K.line_bounds(_poisoned(data, stale))
            want = _bounds_reference(data)
            assert (starts.tolist(), ends.tolist(), bool(odd)) == want, (size, data)


def test_line_bounds_byte_path_of_big_endian_hosts(monkeypatch):
    """Without the little-endian word scan (``_SWAR`` off) the byte loops give the same."""
    _numba()
    from parsers import _log_kernels as K

    monkeypatch.setattr(K, "_SWAR", False)
    rng = np.random.default_rng(7)
    for size in SIZES:
        for data in _texts(rng, size):
            starts, ends, odd = K.line_bounds.py_func(_poisoned(data, 10))
            assert (starts.tolist(), ends.tolist(), bool(odd)) == _bounds_reference(data)


def test_gathers_copy_exact_ranges_at_the_end_of_the_buffer():
    _numba()
    from parsers import _log_kernels as K

    data = bytes(range(33, 33 + 40))
    buf = _poisoned(data, 0xFF)
    n = len(data)
    for length in range(18):
        starts = np.array([n - length, 0, n - length], np.int64)
        ends = np.array([n, length, n], np.int64)
        want = [data[a:b] for a, b in zip(starts, ends, strict=True)]
        offsets, out = K.gather(buf, starts, ends)
        got = [out[offsets[i] : offsets[i + 1]].tobytes() for i in range(3)]
        assert got == want
        offsets, out, null = K.gather_nullable(buf, starts, ends)
        assert not null.any()
        assert [out[offsets[i] : offsets[i + 1]].tobytes() for i in range(3)] == want


def test_portable_bit_counts_match_numbas():
    _numba()
    from numba import njit

    from parsers import _numba_bits as B

    @njit
    def counts(a):
        out = np.empty((a.shape[0], 4), np.uint64)
        for i in range(a.shape[0]):
            out[i, 0] = B.clz64(a[i])
            out[i, 1] = B.ctz64(a[i])
            out[i, 2] = B.leading_zeros(a[i])
            out[i, 3] = B.trailing_zeros(a[i])
        return out

    rng = np.random.default_rng(3)
    vals = np.concatenate(
        [
            np.array([0, 1, 3, 2**63, 2**64 - 1], np.uint64),
            np.uint64(1) << np.arange(64, dtype=np.uint64),
            rng.integers(0, 2**63, 500, dtype=np.uint64)
            >> rng.integers(0, 63, 500).astype(np.uint64),
        ]
    )
    c = counts(vals)
    py = [
        (64 - int(v).bit_length(), (int(v) & -int(v)).bit_length() - 1 if v else 64) for v in vals
    ]
    assert c[:, 0].tolist() == [a for a, _ in py]
    assert c[:, 1].tolist() == [b for _, b in py]
    assert (c[:, 0] == c[:, 2]).all() and (c[:, 1] == c[:, 3]).all()


def test_bit_counts_fall_back_when_numba_drops_its_private_module(monkeypatch):
    _numba()
    import parsers._numba_bits as B

    monkeypatch.setitem(sys.modules, "numba.cpython.unsafe.numbers", None)  # import fails
    spec = importlib.util.spec_from_file_location("_bits_probe", B.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.leading_zeros is mod.clz64 and mod.trailing_zeros is mod.ctz64


# -- reused read buffers ------------------------------------------------------------------------


def _snapshot(chunk) -> tuple:
    return (
        chunk.events.to_pylist(),
        chunk.other.to_pylist(),
        chunk.rejected.to_pylist(),
        {k: b.to_pylist() for k, b in chunk.typed.items()},
    )


def _kept_chunks_unchanged(chunks) -> int:
    """Consume the parse, snapshotting each chunk as it comes; then compare with the end state."""
    kept = [(c, _snapshot(c)) for c in chunks]
    for c, snap in kept:
        assert _snapshot(c) == snap
    return len(kept)


@pytest.mark.parametrize("engine", ["numba", "arrow"])
@pytest.mark.parametrize("sample", [DST_EXCERPT, SRC_EXCERPT])
def test_log_chunks_survive_the_next_blocks(tmp_path, engine, sample):
    if engine == "numba":
        _numba()
    text = gzip.decompress(Path(sample).read_bytes())
    lines = text.splitlines(keepends=True)
    # a long block then shorter ones: later reads overwrite only a prefix of the buffer
    data = b"".join(lines[:200]) + b"".join(lines[200:260])[:-3]
    path = tmp_path / "t.log"
    path.write_bytes(data)
    inp = open_input(path)
    try:
        opts = ParseOptions(catalog=Catalog.bundled(), engine=engine, block_size=4096)
        assert _kept_chunks_unchanged(qemu_log.parse(inp, opts)) > 3
    finally:
        inp.close()


def _strings_file(version: int, byteorder: str) -> bytes:
    """Records whose string arguments have every length 0..40, the last one ending the file."""
    ids = ids_for(version, ["migrate_set_state", "virtio_balloon_handle_output"])
    out = io.BytesIO()
    w = SimpletraceWriter(out, version=version, byteorder=byteorder, pid=7)
    w.header()
    if version >= 4:
        for n, i in ids.items():
            w.mapping(i, n)
    for k in range(41):
        w.record(ids["virtio_balloon_handle_output"], 10 + k, [b"r" * (40 - k), 4096 * k])
        w.record(ids["migrate_set_state"], 100 + k, [bytes([97 + k % 26]) * k])
    return out.getvalue()


def _strings_texts() -> list[str]:
    """The argument text of ``_strings_file``'s records (an empty string is a NULL one)."""
    out = []
    for k in range(41):
        out.append(f"section name: {'r' * (40 - k) or '(null)'} gpa: {hex(4096 * k)}")
        out.append(f"new state {chr(97 + k % 26) * k or '(null)'}")
    return out


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_simpletrace_chunks_survive_the_next_blocks(tmp_path, byteorder):
    _numba()
    for data in (sample_file(4, byteorder)[0], _strings_file(4, byteorder)):
        path = tmp_path / "t.simple"
        path.write_bytes(data)
        for block in (61, 64, 97, 256):
            inp = open_input(path)
            try:
                opts = ParseOptions(catalog=st_catalog(), engine="numba", block_size=block)
                assert _kept_chunks_unchanged(ST.parse(inp, opts)) > 1
            finally:
                inp.close()


@pytest.mark.parametrize("version", [2, 4])
def test_simpletrace_strings_at_the_end_of_every_block_agree(version):
    """Strings of every length 0..40 ending blocks and the file (the byte-copy fallback of the
    word copies) print the same with both engines, for block sizes around multiples of 8."""
    _numba()
    data = _strings_file(version, "little")
    want = None
    for engine in ("arrow", "numba"):
        for block in (16 << 20, 63, 64, 65, 128):
            inp = io.BytesIO(data)
            opts = ParseOptions(catalog=st_catalog(), engine=engine, block_size=block)
            chunks = list(ST.parse(Input("<mem>", inp, None, inp, len(data)), opts))
            got = [r for c in chunks for r in c.events.select(["event", "args"]).to_pylist()]
            want = want or got
            assert got == want, (engine, block)
    assert [r["args"] for r in want] == _strings_texts()
