"""Bit counts of the compiled kernels: numba's intrinsics, or portable loops without them.

``leading_zeros``/``trailing_zeros`` live in ``numba.cpython.unsafe.numbers``, a private module:
a numba release that moves them must not break the import of the kernels (the parsers would
then fail instead of running), so the portable versions stand in (same results, uint64).
"""

from __future__ import annotations

import numpy as np
from numba import njit  # noqa: E402  (imported after the cache folder is configured)

from parsers._numba_setup import CACHE


@njit(cache=CACHE, nogil=True, inline="always")
def clz64(x):
    """Leading zero bits of a 64-bit value (64 for 0), as uint64."""
    x = np.uint64(x)
    if x == np.uint64(0):
        return np.uint64(64)
    n = np.uint64(0)
    s = np.uint64(32)
    while s:
        if (x >> (np.uint64(64) - s)) == np.uint64(0):
            n += s
            x = x << s
        s = s >> np.uint64(1)
    return n


@njit(cache=CACHE, nogil=True, inline="always")
def ctz64(x):
    """Trailing zero bits of a 64-bit value (64 for 0), as uint64."""
    x = np.uint64(x)
    if x == np.uint64(0):
        return np.uint64(64)
    return np.uint64(63) - clz64(x & (~x + np.uint64(1)))


try:
    from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
except ImportError:  # pragma: no cover - depends on the numba release
    leading_zeros, trailing_zeros = clz64, ctz64
