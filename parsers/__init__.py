"""Input formats: one module per format, found by name in a small registry.

Each format module has ``name``, ``description`` and ``parse(inp, options) -> Iterator[Chunk]``
yielding canonical Arrow record batches (:mod:`parsers.base`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tracetool.errors import InputError, UsageError
from tracetool.inputs import Input

#: format name -> module implementing it
FORMATS: dict[str, str] = {
    "qemu-log": "parsers.qemu_log",
}


def get(name: str) -> ModuleType:
    """The module of format ``name``; :class:`UsageError` listing the known ones otherwise."""
    try:
        return importlib.import_module(FORMATS[name])
    except KeyError:
        known = ", ".join(["auto", *FORMATS])
        raise UsageError(f"unknown input format {name!r}; expected one of: {known}") from None


def _binary_offset(head: bytes) -> int | None:
    """Offset of the first byte that cannot be in a text trace, if the head looks binary."""
    nul = head.find(b"\0")
    if nul >= 0:
        return nul
    if not head:
        return None
    ctrl = sum(1 for b in head if b < 9 or 13 < b < 32)
    if ctrl > len(head) // 10:
        return next(i for i, b in enumerate(head) if b < 9 or 13 < b < 32)
    return None


def detect(inp: Input) -> str:
    """Recognise the format of an opened input from its first bytes."""
    head = _peek(inp, 4096)
    off = _binary_offset(head)
    if off is not None:
        raise InputError(
            "binary data, expected QEMU trace text lines ('[ID@SEC.USEC:]name args')",
            path=inp.name,
            offset=off,
        )
    return "qemu-log"


def _peek(inp: Input, n: int) -> bytes:
    stream = inp.stream
    if not hasattr(stream, "peek"):
        import io

        stream = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
        inp.stream = stream

    try:
        return stream.peek(n)[:n]
    except Exception as exc:  # noqa: BLE001 - decoder errors surface here first
        what = f"corrupt {inp.compression} data" if inp.compression else "read error"
        raise InputError(f"{what}: {exc}", path=inp.name, offset=0) from None
