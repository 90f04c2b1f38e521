"""What the balloon, policies and conflicts_map analyses share: one cached replay per trace and
options, the origin of ``t_rel_s`` and readable time bins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from analyses import qemu_version
from tracetool.errors import UsageError
from tracetool.replay import ReplayResult
from tracetool.trace import Trace

#: The options these analyses pass on to ``trace.replay()``.
REPLAY_OPTIONS = ("race_window_ns", "memory_map", "host_page_size", "qemu_version")
#: Readable bin widths: 1, 2 and 5 times a power of ten (ns, or replay orders).
_WIDTHS = [m * 10**e for e in range(19) for m in (1, 2, 5)]
#: Narrowest time bin: log timestamps have microseconds.
MIN_NS = 1000


def replay(trace: Trace, analysis: str, **options: Any) -> ReplayResult:
    """``trace.replay()`` of every policy, plus ``qemu`` when the QEMU version is known (given
    or detected); the same call for the three analyses, so the trace's cache serves them all."""
    unknown = sorted(set(options) - set(REPLAY_OPTIONS))
    if unknown:
        raise UsageError(
            f"analysis {analysis!r}: unknown option(s) {', '.join(unknown)} "
            f"(expected: {', '.join(REPLAY_OPTIONS)})"
        )
    v = qemu_version.run(trace)
    known = options.get("qemu_version") or v["exact"] or v["min"]
    return trace.replay(["all", "qemu"] if known else "all", **options)


def has_time(res: ReplayResult) -> bool:
    """Whether the trace has timestamps (else x positions are replay orders)."""
    return res.order.ts_sorted is not None


def origin_ns(res: ReplayResult) -> int | None:
    """Time origin of ``t_rel_s``, the same for every analysis: the start of the first
    migration as the ``phases`` analysis sees it, else ADVISE of the first replay window,
    else the first event of the trace."""
    if not has_time(res):
        return None
    from analyses import phases

    if not phases.NEEDS.missing(res.trace):
        start = res.trace.analyses.result("phases").summary["start_ns"]
        if start is not None:
            return int(start)
    for w in res.windows:
        if w.ns.get("advise") is not None:
            return int(w.ns["advise"])
    return int(res.order.ts_sorted[0]) if res.order.n else None


def ts_of_orders(res: ReplayResult, orders: np.ndarray) -> np.ndarray | None:
    """Timestamps (ns) of replay orders; None without timestamps."""
    if not has_time(res):
        return None
    return res.order.ts_sorted[np.clip(orders, 0, max(res.order.n - 1, 0))]


def t_rel_s(ts: np.ndarray | None, origin: int | None, n: int) -> pa.Array:
    """Seconds since ``origin`` (nulls without timestamps)."""
    if ts is None or origin is None:
        return pa.nulls(n, pa.float64())
    return pa.array((np.asarray(ts, np.int64) - origin) / 1e9, pa.float64())


@dataclass(frozen=True)
class Bins:
    """Equal bins of ``width`` over x (ns, or replay orders), aligned on ``origin``: bin ``i``
    starts at ``origin + (k0 + i) * width``."""

    origin: int
    width: int
    k0: int
    n: int

    @classmethod
    def over(cls, lo: int, hi: int, origin: int, max_bins: int, min_width: int = 1) -> Bins:
        """The narrowest readable width (1/2/5 x 10^k, at least ``min_width``) that covers
        ``[lo, hi]`` in at most ``max_bins`` bins."""
        for w in (w for w in _WIDTHS if w >= min_width):
            k0, k1 = (lo - origin) // w, (hi - origin) // w
            if k1 - k0 + 1 <= max_bins:
                return cls(origin, w, int(k0), int(k1 - k0 + 1))
        raise ValueError("span too large to bin")  # pragma: no cover

    def index(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.int64) - self.origin) // self.width - self.k0

    def starts(self) -> np.ndarray:
        return self.origin + (self.k0 + np.arange(self.n, dtype=np.int64)) * self.width
