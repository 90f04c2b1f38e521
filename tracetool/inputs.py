"""Open trace inputs (plain, .gz, .xz, .bz2, .zst, or standard input) and read them in blocks."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from tracetool.errors import InputError

MAGICS = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"BZh": "bz2",
    b"\x28\xb5\x2f\xfd": "zstd",
}
MAX_LINE = 64 << 20  # a "line" longer than this is not a QEMU trace line
_DECODE_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


@dataclass
class Input:
    """An opened input: a binary stream of decompressed bytes plus what we know about it."""

    name: str  # what to call it in messages ("-" is "<stdin>")
    stream: BinaryIO
    compression: str | None
    raw: BinaryIO  # the underlying file, for progress (compressed bytes read)
    size: int | None  # size of the underlying file, if known
    #: A compressed stream that broke off (truncated or corrupt) after some data: what was
    #: decompressed before it is read; the parse then raises this (strict) or reports it.
    damage: InputError | None = None

    def raw_position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        for f in (self.stream, self.raw):
            with contextlib.suppress(Exception):  # closing must never hide the real error
                f.close()


def sniff_compression(head: bytes) -> str | None:
    for magic, name in MAGICS.items():
        if head.startswith(magic):
            return name
    return None


def open_input(path: str | os.PathLike) -> Input:
    """Open ``path`` (``-`` for standard input), decompressing by magic bytes."""
    name = str(path)
    try:
        if name == "-":
            raw: BinaryIO = io.BufferedReader(sys.stdin.buffer.raw, 1 << 20)  # type: ignore[arg-type]
            size = None
            display = "<stdin>"
        else:
            raw = open(name, "rb", buffering=1 << 20)  # noqa: SIM115
            size = os.fstat(raw.fileno()).st_size
            display = name
    except FileNotFoundError:
        raise InputError("no such file", path=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a trace file", path=name) from None
    except PermissionError:
        raise InputError("permission denied", path=name) from None
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=name) from None
    head = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    kind = sniff_compression(head)
    stream: BinaryIO
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    elif kind == "xz":
        stream = lzma.LZMAFile(raw)  # type: ignore[assignment]  # noqa: SIM115
    elif kind == "bz2":
        stream = bz2.BZ2File(raw)  # type: ignore[assignment]
    elif kind == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[assignment]
    else:
        stream = raw
    return Input(display, stream, kind, raw, size)


def read_some(inp: Input, n: int, offset: int) -> bytes:
    """Read up to ``n`` decompressed bytes, turning decoder failures into :class:`InputError`."""
    try:
        return inp.stream.read(n)
    except _DECODE_ERRORS as exc:
        what = f"corrupt {inp.compression} data" if inp.compression else "read error"
        raise InputError(f"{what} near decompressed byte {offset}: {exc}", path=inp.name) from None


#: Decompressed bytes asked of a compressed stream per call: a decoder that fails loses what it
#: had decompressed in that call, so at most this much before the damage is lost.
PIECE = 64 << 10


def _read_into(inp: Input, view: memoryview, offset: int) -> int:
    """Read into ``view``; 0 at the end of the input. A compressed stream that breaks off
    ends the input there and leaves :attr:`Input.damage` set (the bytes before are kept)."""
    if inp.damage is not None:
        return 0
    if inp.compression:
        view = view[:PIECE]
    try:
        readinto = getattr(inp.stream, "readinto", None)
        if readinto is not None:
            return readinto(view) or 0
        data = inp.stream.read(len(view))
        view[: len(data)] = data
        return len(data)
    except _DECODE_ERRORS as exc:
        if not inp.compression:
            raise InputError(f"read error at byte {offset}: {exc}", path=inp.name) from None
        inp.damage = InputError(
            f"corrupt or truncated {inp.compression} data after decompressed byte {offset} "
            f"(what came before it was read): {exc}",
            path=inp.name,
        )
        return 0


def iter_line_blocks(inp: Input, block_size: int) -> Iterator[tuple[memoryview, int]]:
    """Yield ``(block, byte_offset)``: blocks of whole lines of about ``block_size`` bytes.

    The buffer is reused: a block is valid until the next one is requested (copy what you
    keep). The last block may end without a newline (an unterminated last line).
    """
    carry = b""
    offset = 0  # decompressed offset of the start of the next yielded block
    eof = False
    buf = bytearray(block_size)
    while not eof:
        if len(buf) < len(carry) + block_size:
            buf = bytearray(len(carry) + block_size)
        view = memoryview(buf)
        view[: len(carry)] = carry
        filled = len(carry)
        while filled < len(buf):  # fill the whole block (streams may return short reads)
            n = _read_into(inp, view[filled:], offset + filled)
            if n == 0:
                eof = True
                break
            filled += n
        cut = filled if eof else buf.rfind(b"\n", 0, filled) + 1
        if cut == 0:
            if filled > MAX_LINE:
                raise InputError(
                    f"no newline in {filled} bytes from byte {offset}: not a text trace",
                    path=inp.name,
                    offset=offset,
                )
            carry = bytes(view[:filled])
            block_size = max(block_size, filled)  # grow until the long line fits
            continue
        carry = bytes(view[cut:filled])
        yield view[:cut], offset
        offset += cut
