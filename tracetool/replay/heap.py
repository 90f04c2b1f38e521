"""Give the replay's freed temporaries back to the OS."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the OS: the replay's and the summary's temporaries
    (hundreds of MB on a large trace) leave holes in glibc's heap that it otherwise keeps
    resident. A no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
