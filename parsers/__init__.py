"""Input formats: one module per format, found by name in a small registry.

Each format module has ``name``, ``description``, ``sniff(head: bytes) -> bool`` (does this
input, whose first bytes after decompression are ``head``, look like this format?) and
``parse(inp, options) -> Iterator[Chunk]`` yielding canonical Arrow record batches
(:mod:`parsers.base`). :func:`detect` asks the modules in :data:`DETECT_ORDER`, most specific
first; QEMU log text is the fallback for text.
"""

from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

from tracetool.errors import InputError, UsageError
from tracetool.inputs import Input

#: format name -> module implementing it
FORMATS: dict[str, str] = {
    "simpletrace": "parsers.simpletrace",
    "ftrace": "parsers.ftrace",
    "synthetic-parquet": "parsers.synthetic_parquet",
    "synthetic-jsonl": "parsers.synthetic_jsonl",
    "synthetic-csv": "parsers.synthetic_csv",
    "page-events": "parsers.page_events",
    "qemu-log": "parsers.qemu_log",
}

#: Detection order: binary magics first, then text formats with a recognisable first line.
DETECT_ORDER = [
    "simpletrace",
    "synthetic-parquet",
    "page-events",
    "synthetic-jsonl",
    "synthetic-csv",
    "ftrace",
]
HEAD = 64 << 10


def _module(name: str) -> ModuleType | None:
    """The module of a format, or None while it is not part of this build."""
    path = FORMATS[name]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name == path:
            return None
        raise


def available() -> list[str]:
    return [n for n in FORMATS if _module(n) is not None]


def get(name: str) -> ModuleType:
    """The module of format ``name``; :class:`UsageError` listing the known ones otherwise."""
    module = _module(name) if name in FORMATS else None
    if module is None:
        known = ", ".join(["auto", *available()])
        raise UsageError(f"unknown input format {name!r}; expected one of: {known}")
    return module


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
    head = peek(inp, HEAD)
    for name in DETECT_ORDER:
        module = _module(name)
        if module is not None and module.sniff(head):
            return name
    off = _binary_offset(head[:4096])
    if off is not None:
        raise InputError(
            "binary data, expected a QEMU trace: log text lines ('[ID@SEC.USEC:]name args'), "
            f"or one of the formats {', '.join(available())}",
            path=inp.name,
            offset=off,
        )
    return "qemu-log"


def check_format(name: str, inp: Input) -> None:
    """A format given with ``--format`` must match the input (when the module can tell)."""
    module = get(name)
    sniff = getattr(module, "sniff", None)
    if name == "qemu-log" or sniff is None:
        return
    head = peek(inp, HEAD)
    if not sniff(head):
        guess = None
        with contextlib.suppress(InputError):
            guess = detect(inp)
        hint = f"; it looks like {guess} (try --format auto)" if guess else ""
        raise UsageError(f"this input is not {name}{hint}", path=inp.name)


def peek(inp: Input, n: int) -> bytes:
    """The first ``n`` decompressed bytes of ``inp``, without consuming them."""
    stream = inp.stream
    if not hasattr(stream, "peek"):
        import io

        stream = io.BufferedReader(stream, max(n, 1 << 20))  # type: ignore[arg-type]
        inp.stream = stream
    try:
        return stream.peek(n)[:n]  # may be shorter than n (one buffer): enough to sniff
    except Exception as exc:  # noqa: BLE001 - decoder errors surface here first
        what = f"corrupt {inp.compression} data" if inp.compression else "read error"
        raise InputError(f"{what}: {exc}", path=inp.name, offset=0) from None
