"""Memory the replay holds: RSS after loading a trace, after ``Trace.replay()`` and after its
summary, and the page-event count.

Run from the repository with the project's interpreter::

    .venv/bin/python benchmarks/mem_replay.py TRACE

"retained" is the RSS at that point (``VmRSS`` of ``/proc/self/status``), "peak" the process's
``ru_maxrss`` so far (both MiB). The replay's cost is the retained RSS after the summary minus
the RSS after the load; divided by the page events it is the bytes held per page event.
"""

from __future__ import annotations

import argparse
import gc
import resource

import tracetool


def rss_mib() -> tuple[float, float]:
    """(current VmRSS, peak ru_maxrss) in MiB."""
    with open("/proc/self/status") as f:
        cur = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
    return cur / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", help="a trace tracetool reads (e.g. dst.trace.log.gz)")
    args = ap.parse_args()
    t = tracetool.load(args.trace)
    gc.collect()
    base, peak = rss_mib()
    print(f"after load:    retained {base:7.1f} MiB  peak {peak:7.1f} MiB")
    r = t.replay()
    gc.collect()
    cur, peak = rss_mib()
    print(f"after replay:  retained {cur:7.1f} MiB  peak {peak:7.1f} MiB")
    s = r.summary
    gc.collect()
    cur, peak = rss_mib()
    print(f"after summary: retained {cur:7.1f} MiB  peak {peak:7.1f} MiB")
    n = s["page_events"]
    held = (cur - base) * 2**20
    print(
        f"page events:   {n:,}  replay holds {held / 2**20:.1f} MiB = {held / max(n, 1):.0f} B/event"
    )


if __name__ == "__main__":
    main()
