"""Where and when the balloon and postcopy collide: the replay's conflicts per guest-physical
region and per time bin, for every policy (an empty conflict set is a valid, empty map)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyses import _replayed
from analyses.base import AnalysisResult, Needs
from tracetool.replay import CONFLICTS_SCHEMA, ReplayResult
from tracetool.trace import Trace

NAME = "conflicts_map"
NEEDS = Needs(
    all_of=("virtio_balloon_handle_output",),
    any_of=(("postcopy_place_page", "postcopy_place_page_zero"),),
)
MAX_REGIONS = 256
MIN_REGION = 2 << 20  # 2 MiB
MAX_BINS = 500

CONFLICTS_MAP_SCHEMA = CONFLICTS_SCHEMA.append(pa.field("t_rel_s", pa.float64()))
BY_REGION_SCHEMA = pa.schema(
    [("gpa_lo", pa.uint64()), ("gpa_hi", pa.uint64()), ("policy", pa.string()),
     ("class", pa.string()), ("pages", pa.int64())]
)  # fmt: skip
BY_TIME_SCHEMA = pa.schema(
    [("ts_ns", pa.int64()), ("t_rel_s", pa.float64()), ("policy", pa.string()),
     ("class", pa.string()), ("pages", pa.int64())]
)  # fmt: skip


def region_size(lo: int, hi: int) -> int:
    """The smallest power of two >= 2 MiB that cuts ``[lo, hi]`` into <= MAX_REGIONS regions."""
    size = MIN_REGION
    while hi // size - lo // size + 1 > MAX_REGIONS:
        size <<= 1
    return size


def _count(t: pa.Table, keys: list[str]) -> pa.Table:
    """Rows per key combination, as ``pages`` (one conflict row is one 4 KiB inflate)."""
    g = t.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    return g.rename_columns(["pages" if n == "count_all" else n for n in g.column_names])


def _by_region(conf: pa.Table, size: int) -> pa.Table:
    if not conf.num_rows:
        return BY_REGION_SCHEMA.empty_table()
    lo = pc.multiply(pc.divide(conf["gpa"], pa.scalar(size, pa.uint64())), size)
    g = _count(conf.select(["policy", "class"]).append_column("gpa_lo", lo),
               ["gpa_lo", "policy", "class"])  # fmt: skip
    g = g.append_column("gpa_hi", pc.add(g["gpa_lo"], pa.scalar(size, pa.uint64())))
    return (
        g.select(BY_REGION_SCHEMA.names)
        .cast(BY_REGION_SCHEMA)
        .sort_by([("policy", "ascending"), ("gpa_lo", "ascending"), ("class", "ascending")])
    )


def _by_time(conf: pa.Table, res: ReplayResult, origin: int | None) -> tuple[pa.Table, int | None]:
    ts = conf["ts_ns"]
    if not conf.num_rows or ts.null_count or origin is None:
        return BY_TIME_SCHEMA.empty_table(), None
    lo, hi = int(res.order.ts_sorted[0]), int(res.order.ts_sorted[-1])
    bins = _replayed.Bins.over(lo, hi, origin, MAX_BINS, _replayed.MIN_NS)
    start = bins.starts()[bins.index(ts.to_numpy())]
    g = _count(conf.select(["policy", "class"]).append_column("ts_ns", pa.array(start)),
               ["ts_ns", "policy", "class"])  # fmt: skip
    g = g.append_column("t_rel_s", _replayed.t_rel_s(g["ts_ns"].to_numpy(), origin, g.num_rows))
    out = g.select(BY_TIME_SCHEMA.names).cast(BY_TIME_SCHEMA)
    return out.sort_by([("policy", "ascending"), ("ts_ns", "ascending")]), bins.width


def _summary(conf: pa.Table, regions: pa.Table, origin: int | None) -> dict[str, dict]:
    out = {}
    for policy in pc.unique(conf["policy"]).to_pylist():  # one per policy
        c = conf.filter(pc.equal(conf["policy"], policy))
        r = regions.filter(pc.equal(regions["policy"], policy))
        sums = r.group_by(["gpa_lo", "gpa_hi"], use_threads=False).aggregate([("pages", "sum")])
        top = int(np.argmax(sums["pages_sum"].to_numpy()))
        mm = pc.min_max(c["ts_ns"])
        first, last = mm["min"].as_py(), mm["max"].as_py()
        out[policy] = {
            "conflicts": c.num_rows,
            "pages": len(pc.unique(c["gpa"])),
            "by_class": dict(
                zip(
                    *_count(c, ["class"]).select(["class", "pages"]).to_pydict().values(),
                    strict=True,
                )
            ),  # fmt: skip
            "densest_region": {
                "gpa_lo": sums["gpa_lo"][top].as_py(),
                "gpa_hi": sums["gpa_hi"][top].as_py(),
                "pages": sums["pages_sum"][top].as_py(),
            },
            "first_ts_ns": first,
            "last_ts_ns": last,
            "first_t_rel_s": None if first is None or origin is None else (first - origin) / 1e9,
            "last_t_rel_s": None if last is None or origin is None else (last - origin) / 1e9,
        }
    return out


def run(trace: Trace, **options: Any) -> AnalysisResult:
    """The replay's conflicts with ``t_rel_s``, per GPA region and per time bin, for every
    policy (options: those of ``trace.replay()``)."""
    NEEDS.check(trace, NAME)
    res = _replayed.replay(trace, NAME, **options)
    origin = _replayed.origin_ns(res)
    conf = res.conflicts
    conf = conf.append_column(
        "t_rel_s",
        _replayed.t_rel_s(conf["ts_ns"].to_numpy(zero_copy_only=False), origin, conf.num_rows)
        if conf.num_rows and not conf["ts_ns"].null_count
        else pa.nulls(conf.num_rows, pa.float64()),
    )
    r = res.requests
    gpas = r.gpa if r is not None and len(r) else np.zeros(1, np.int64)
    size = region_size(int(gpas.min()), int(gpas.max()))
    regions = _by_region(conf, size)
    by_time, width = _by_time(conf, res, origin)
    summary = {
        "policies": _summary(conf, regions, origin),
        "region_bytes": size,
        "bin_width_ns": width,
        "conflicts": conf.num_rows,
    }
    return AnalysisResult(
        NAME, summary, {"conflicts": conf, "by_region": regions, "by_time": by_time}
    )
