"""Memory behaviour shared by the hot paths (parsers and replay)."""

from __future__ import annotations

import contextlib
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
