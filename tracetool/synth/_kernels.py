"""A compiled byte-run copy for the simpletrace writer (numba; plain numpy without it)."""

from __future__ import annotations

import numpy as np

from parsers import _numba_setup

if _numba_setup.available():
    from numba import njit

    @njit(cache=_numba_setup.CACHE, nogil=True)
    def _copy(out, src, starts, lengths):  # pragma: no cover - compiled
        pos = 0
        for i in range(starts.shape[0]):
            s = starts[i]
            n = lengths[i]
            out[pos : pos + n] = src[s : s + n]
            pos += n

    def copy_runs(out, src, starts, lengths) -> None:
        """``out`` = the runs ``src[starts[i] : starts[i] + lengths[i]]`` one after another."""
        _copy(out, src, starts, lengths)

else:

    def copy_runs(out, src, starts, lengths) -> None:
        """``out`` = the runs ``src[starts[i] : starts[i] + lengths[i]]`` one after another."""
        if not len(starts):
            return
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        out[:] = src[idx + np.arange(len(idx))]
