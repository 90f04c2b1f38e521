"""Rules shared by the two engines of the QEMU text-log parser (compiled and pure pyarrow).

Both engines implement exactly these rules; ``tests/test_log_engines.py`` checks they agree.

A line is the bytes before ``\\n`` (a trailing ``\\r`` is dropped). Its prefix is one of
``ID@SEC.USEC:`` (PID in QEMU <= 3.1, TID later; ``ts_ns = SEC*1e9 + USEC*1e3``), an ISO-8601
timestamp ``YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM|±HHMM)`` (1-9 fraction digits) followed by one space (QEMU >= 10.1), or none.
After the prefix: an event name ``[A-Za-z_][A-Za-z0-9_]*`` then a space (the rest is the argument
text) or the end of the line (empty arguments).

* ``ID@SEC.USEC:`` prefix: always a trace record; no valid name after it -> rejected; an ID
  above 2**31-1 (the int32 ``tid`` column) -> rejected.
* ISO or no prefix: a trace record if the name is catalogued or looks like a QEMU event name
  (``[a-z][a-z0-9]*(_[a-z0-9]+)+``); otherwise an other line.
* A record of a catalogued event must match one of the event's format variants (tried in
  catalog order); if none matches, the line is rejected. Events with no usable format are
  kept with their raw argument text only.
* A line that is not valid UTF-8, or holds a NUL byte, is rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from parsers.base import NameRegistry, ParseOptions
from tracetool.catalog import ArgKind, EventDef

SHAPE_NONE, SHAPE_ID, SHAPE_ISO = 0, 1, 2
SHAPE_NAMES = {SHAPE_NONE: "no prefix", SHAPE_ID: "ID@SEC.USEC:", SHAPE_ISO: "ISO-8601"}

LIKELY_EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")

REASON_NO_NAME = "expected an event name after the 'ID@SEC.USEC:' prefix"
REASON_BAD_UTF8 = "line is not valid UTF-8 text"
REASON_NUL = "line holds a NUL byte (binary data)"
REASON_BAD_TID = "thread id in the 'ID@SEC.USEC:' prefix is above 2147483647 (int32)"


def reason_no_match(ev_name: str, variants: list[EventDef]) -> str:
    fmts = " or ".join(repr(v.fmt) for v in variants if v.plan is not None)
    return f"arguments of {ev_name} do not match its format {fmts}"


def wrap_int(values: np.ndarray, kind: ArgKind, bits: int) -> np.ndarray:
    """Reinterpret parsed 64-bit patterns as the declared C type (``%d`` of a uint32_t, ...)."""
    v = values.astype(np.int64, copy=False)
    if kind is ArgKind.SIGNED:
        if bits < 64:
            shift = 64 - bits
            v = (v << shift) >> shift
        return v
    if kind in (ArgKind.UNSIGNED, ArgKind.POINTER):
        u = v.view(np.uint64)
        if bits < 64:
            u = u & np.uint64((1 << bits) - 1)
        return u
    if kind is ArgKind.BOOL:
        return v != 0
    return v


@dataclass
class LogContext:
    """Per-parse state shared by all blocks: options, names seen, catalog lookups."""

    options: ParseOptions
    path: str
    registry: NameRegistry = field(default_factory=NameRegistry)

    def accepts_unprefixed(self, name: str) -> bool:
        return name in self.options.catalog or LIKELY_EVENT_NAME.fullmatch(name) is not None
