"""Compiled scans of the replay: one pass over page events sorted by (page, order, kind)."""

from __future__ import annotations

import numpy as np

from parsers import _numba_setup
from tracetool.replay.model import Kind, State

CACHE = _numba_setup.CACHE
if _numba_setup.available():
    from numba import njit  # after _numba_setup chose the cache folder
else:  # no numba: the same scans run as plain Python (slow, but correct)

    def njit(*args, **kwargs):
        return (lambda f: f) if not args or not callable(args[0]) else args[0]


K_RESET, K_MIG_DISCARD, K_LOAD, K_FAULT = (
    int(Kind.RESET),
    int(Kind.MIG_DISCARD),
    int(Kind.LOAD),
    int(Kind.FAULT),
)
K_RECEIVE, K_PLACE, K_INFLATE, K_DEFLATE = (
    int(Kind.RECEIVE),
    int(Kind.PLACE),
    int(Kind.INFLATE),
    int(Kind.DEFLATE),
)
S_UNKNOWN, S_ABSENT, S_REQUESTED = int(State.UNKNOWN), int(State.ABSENT), int(State.REQUESTED)
S_IN_TRANSIT, S_PRESENT = int(State.IN_TRANSIT), int(State.PRESENT)
D_APPLY, D_DROP, D_DEFER = 0, 1, 2
BIG = np.int64(1) << np.int64(62)


@njit(cache=CACHE, nogil=True)
def next_place(page, kind):
    """Index of the next PLACE event of the same page after each event (-1 if none)."""
    n = page.shape[0]
    out = np.full(n, -1, np.int64)
    nxt = -1
    for i in range(n - 1, -1, -1):
        if i + 1 < n and page[i + 1] != page[i]:
            nxt = -1
        out[i] = nxt
        if kind[i] == K_PLACE:
            nxt = i
    return out


@njit(cache=CACHE, nogil=True)
def next_is_place(page, kind):
    """Whether the next migration event (not a balloon request) of the same page is a PLACE:
    QEMU only places missing pages, so the page is missing until then whatever we believed."""
    n = page.shape[0]
    out = np.zeros(n, np.bool_)
    nxt_kind = -1
    for i in range(n - 1, -1, -1):
        if i + 1 < n and page[i + 1] != page[i]:
            nxt_kind = -1
        out[i] = nxt_kind == K_PLACE
        if kind[i] <= K_PLACE:
            nxt_kind = kind[i]
    return out


@njit(cache=CACHE, nogil=True)
def anomalies(page, kind, reset_state):
    """Observed refaults and double places, on the migration's own page state."""
    refault = np.zeros(page.shape[0], np.bool_)
    double = np.zeros(page.shape[0], np.bool_)
    state = S_UNKNOWN
    for i in range(page.shape[0]):
        if i == 0 or page[i] != page[i - 1]:
            state = S_UNKNOWN
        k = kind[i]
        if k == K_RESET:
            state = reset_state
        elif k == K_MIG_DISCARD:
            state = S_ABSENT
        elif k == K_LOAD:
            state = S_PRESENT
        elif k == K_FAULT:
            if state == S_PRESENT:
                refault[i] = True
            else:
                state = S_REQUESTED
        elif k == K_RECEIVE:
            if state != S_PRESENT:
                state = S_IN_TRANSIT
        elif k == K_PLACE:
            if state == S_PRESENT:
                double[i] = True
            state = S_PRESENT
    return refault, double


@njit(cache=CACHE, nogil=True)
def replay(
    page,
    order,
    kind,
    req,
    ts,
    mig,
    conf_lo,
    conf_hi,
    decision,
    nxt_place,
    nxt_is_place,
    reset_state,
    race_ns,
    n_req,
):
    """Replay one policy. ``decision[r]`` is apply/drop/defer for inflate request ``r``; only
    applied inflates change the page (to ABSENT) and only they can conflict.

    Returns per request: conflict class (0 none, 1 after-place, 2 in-flight, 3 before-arrival),
    the related event index (what made the page present/requested, or the later placement),
    refault_expected, and the order of the placement that refilled the host page (or BIG).
    """
    cclass = np.zeros(n_req, np.int8)
    related = np.full(n_req, -1, np.int64)
    refault = np.zeros(n_req, np.bool_)
    refill_at = np.full(n_req, BIG, np.int64)
    state = S_UNKNOWN
    last_state_ev = -1
    after_place_req = -1  # last discard-after-place conflict of this page in the current window
    after_place_mig = -1
    for i in range(page.shape[0]):
        if i == 0 or page[i] != page[i - 1]:
            state = S_UNKNOWN
            last_state_ev = -1
            after_place_req = -1
            after_place_mig = -1
        k = kind[i]
        m = mig[i]
        in_conf = m >= 0 and order[i] >= conf_lo[m] and order[i] < conf_hi[m]
        if k == K_RESET:
            state = reset_state
            last_state_ev = i
        elif k == K_MIG_DISCARD:
            state = S_ABSENT
            last_state_ev = i
        elif k == K_LOAD:
            state = S_PRESENT
            last_state_ev = i
        elif k == K_FAULT:
            if state != S_PRESENT:
                state = S_REQUESTED
                last_state_ev = i
        elif k == K_RECEIVE:
            if state != S_PRESENT:
                state = S_IN_TRANSIT
                last_state_ev = i
        elif k == K_PLACE:
            state = S_PRESENT
            last_state_ev = i
        elif k == K_INFLATE and req[i] >= 0 and decision[req[i]] == D_APPLY:
            r = req[i]
            np_i = nxt_place[i]
            if np_i >= 0:
                refill_at[r] = order[np_i]
            if in_conf:
                c = 0
                rel = last_state_ev
                if nxt_is_place[i] and (state == S_PRESENT or state == S_UNKNOWN):
                    state = S_ABSENT  # the next thing QEMU does to the page is place it
                if state == S_PRESENT:
                    c = 1
                elif state == S_REQUESTED or state == S_IN_TRANSIT:
                    c = 2
                elif np_i >= 0 and order[np_i] < conf_hi[m]:
                    rel = np_i
                    c = 2 if race_ns >= 0 and ts[np_i] - ts[i] <= race_ns else 3
                cclass[r] = c
                related[r] = rel
                if c == 1:
                    after_place_req = r
                    after_place_mig = m
            state = S_ABSENT
            last_state_ev = i
        elif k == K_DEFLATE:
            if after_place_req >= 0 and after_place_mig == m and in_conf:
                refault[after_place_req] = True
                after_place_req = -1
    return cclass, related, refault, refill_at
