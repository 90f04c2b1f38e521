"""What every benchmark shares: run one measurement in its own process pinned to one CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pinned(
    argv: list[str], cpu: int, env: dict | None = None, stdout=None, what: str = "failed"
) -> tuple[float, float, str, str]:
    """Run ``argv`` on one ``cpu`` with one numba/OpenMP thread: (wall seconds, peak RSS MB of
    that process from ``wait4``, stdout, stderr). A failing run stops the benchmark with its
    stderr. ``stdout``: a file to send the output to instead (then "" is returned for it)."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        p = subprocess.Popen(
            argv, stdout=stdout or out, stderr=err, env=env, cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )  # fmt: skip
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        if code:
            sys.exit(f"{what} ({code}): {' '.join(map(str, argv))}\n{err.read()}")
        return wall, usage.ru_maxrss / 1024, out.read(), err.read()
