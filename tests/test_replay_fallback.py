"""Without numba the replay scans run as plain Python and must give the same answers."""

from __future__ import annotations

import numpy as np
import pytest

import tracetool
from tests.conftest import DST_EXCERPT
from tracetool.replay import kernels


def test_python_scans_equal_compiled_scans():
    if not hasattr(kernels.replay, "py_func"):
        pytest.skip("numba unavailable: the scans already are plain Python")
    res = tracetool.load(DST_EXCERPT).replay("no-inhibit")
    pe = res.page_events
    compiled = kernels.next_place(pe.page, pe.kind)
    plain = kernels.next_place.py_func(pe.page, pe.kind)
    assert np.array_equal(compiled, plain)
    run = res.runs["no-inhibit"]
    lo, hi = res.conf_bounds
    adv = np.array([w.ord["advise"] for w in res.windows], np.int64)
    mig = np.searchsorted(adv, pe.order, side="right") - 1
    nip = kernels.next_is_place(pe.page, pe.kind)
    assert np.array_equal(nip, kernels.next_is_place.py_func(pe.page, pe.kind))
    args = (
        pe.page,
        pe.order,
        pe.kind,
        pe.req,
        pe.ts,
        mig,
        lo,
        hi,
        run.decision,
        compiled,
        nip,
        1,
        0,
        len(run.decision),
    )
    got = kernels.replay.py_func(*args)
    want = kernels.replay(*args)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
    assert int((run.cclass > 0).sum()) == int((got[0] > 0).sum()) > 0
