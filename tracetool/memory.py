"""Memory behaviour shared by the hot paths (parsers and replay)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def small_pages(enabled: bool = True) -> Iterator[None]:
    """Turn off numpy's transparent-huge-page hint for big arrays while the block runs.

    On VMs each huge-page fault (compaction, zeroing 2 MB) costs more than the 4 KiB faults it
    saves for short-lived per-block arrays (measured: about 10% of parse time; system time of
    bench_replay's first replay 0.39-0.55 s with the hint, 0.14-0.18 s without)."""
    core = getattr(np, "_core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if not enabled or setter is None:
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)


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
