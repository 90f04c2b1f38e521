"""Analyses: one module per analysis, each a pure function of a Trace's tables.

Every analysis module defines ``NAME``, ``NEEDS`` (a :class:`analyses.base.Needs`) and
``run(trace, **options) -> AnalysisResult`` (``summary`` and ``qemu_version`` are older and
return plain dicts). :func:`get` finds a module by name, :func:`run` runs it, and
``trace.analyses`` (an :class:`Analyses`) exposes each one as a method returning a DataFrame.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from analyses.base import AnalysisResult, MissingAnalysisEvents, Needs
from tracetool.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from tracetool.trace import Trace

ANALYSES: dict[str, str] = {
    "summary": "analyses.summary",
    "qemu_version": "analyses.qemu_version",
    "phases": "analyses.phases",
    "postcopy_faults": "analyses.postcopy_faults",
    "balloon": "analyses.balloon",
    "policies": "analyses.policies",
    "conflicts_map": "analyses.conflicts_map",
}
#: Analyses returning an :class:`AnalysisResult` (the others return a dict).
TABLE_ANALYSES = ("phases", "postcopy_faults", "balloon", "policies", "conflicts_map")

__all__ = ["ANALYSES", "AnalysisResult", "Analyses", "MissingAnalysisEvents", "Needs", "get", "run"]


def get(name: str) -> ModuleType:
    """The analysis module called ``name``; an unknown name suggests the closest."""
    try:
        return importlib.import_module(ANALYSES[name])
    except KeyError:
        close = difflib.get_close_matches(name, list(ANALYSES), n=2)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(
            f"unknown analysis {name!r}{hint} (expected one of: {', '.join(ANALYSES)})"
        ) from None


def run(name: str, trace: Trace, **options: Any) -> AnalysisResult:
    """Run one analysis on ``trace`` (once per trace and options: the result is cached on the
    trace); raises :class:`MissingAnalysisEvents` if it cannot."""
    return trace.analyses.result(name, **options)


def runnable(trace: Trace) -> dict[str, list[str]]:
    """For each table analysis, the events it is missing in ``trace`` (empty list: runnable)."""
    return {n: get(n).NEEDS.missing(trace) for n in TABLE_ANALYSES}


class Analyses:
    """``trace.analyses``: each analysis as a method returning its main table as a DataFrame
    (``df.attrs["summary"]`` holds the headline figures); :meth:`result` gives the whole
    :class:`AnalysisResult`."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self._cache: dict[tuple, AnalysisResult] = {}

    def result(self, name: str, **options: Any) -> AnalysisResult:
        key = (name, tuple(sorted(options.items())))
        if key not in self._cache:
            self._cache[key] = get(name).run(self._trace, **options)
        return self._cache[key]

    def __getattr__(self, name: str):
        if name not in TABLE_ANALYSES:
            close = difflib.get_close_matches(name, TABLE_ANALYSES, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise AttributeError(f"no analysis {name!r}{hint}")

        def method(**options: Any) -> pd.DataFrame:
            return self.result(name, **options).to_pandas()

        method.__name__ = name
        method.__doc__ = get(name).__doc__
        return method

    def __dir__(self) -> list[str]:
        return [*TABLE_ANALYSES, "result"]

    def __repr__(self) -> str:
        return f"<analyses: {', '.join(TABLE_ANALYSES)}>"
