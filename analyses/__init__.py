"""Analyses: one module per analysis, each a pure function of a Trace's tables.

Every analysis module defines ``NAME``, ``NEEDS`` (events it reads; ``[]`` if it works on any
trace) and ``run(trace) -> dict``. :func:`get` finds them by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tracetool.errors import UsageError

ANALYSES: dict[str, str] = {
    "summary": "analyses.summary",
    "qemu_version": "analyses.qemu_version",
}


def get(name: str) -> ModuleType:
    try:
        return importlib.import_module(ANALYSES[name])
    except KeyError:
        raise UsageError(
            f"unknown analysis {name!r}; expected one of: {', '.join(ANALYSES)}"
        ) from None
