"""One exception root for everything tracetool reports to a user.

Every error names *where* (file, and line or byte offset when known) and *what was expected*,
so the CLI can print it as a single line instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TracetoolError(Exception):
    """Root of all tracetool errors: ``file:line: message`` (or ``file: byte N: message``)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        elif self.offset is not None:
            where = f"{where}: byte {self.offset}" if where else f"byte {self.offset}"
        return f"{where}: {self.message}" if where else self.message


class InputError(TracetoolError):
    """The input cannot be read at all (missing file, binary garbage, bad compression)."""


class FormatError(TracetoolError):
    """A record does not have the shape its format requires (raised at once in strict mode)."""


class CatalogError(TracetoolError):
    """A trace-events definition or printf format could not be compiled."""


class UsageError(TracetoolError):
    """The user asked for something that does not exist (unknown format, output type...)."""


class CheckError(TracetoolError):
    """``tracetool check`` cannot compare: a baseline is missing or unreadable, or a limit's data
    is not in the results."""


class MissingEventError(TracetoolError, KeyError):
    """An event the caller asked for is not in the trace; suggests the closest name."""

    def __init__(self, name: str, available: Iterable[str], *, path: str | None = None) -> None:
        names = sorted(set(available))
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        enable = f" (enable it in QEMU with -trace enable={name})"
        super().__init__(f"event {name!r} is not in this trace{enable}{hint}", path=path)
        self.name = name
        self.suggestions = close

    __str__ = TracetoolError.__str__
