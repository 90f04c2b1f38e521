"""tracetool: QEMU trace output as Arrow tables, and balloon x postcopy replay.

>>> import tracetool
>>> trace = tracetool.load("sample_traces/qemu-7.2/a-dst-excerpt.trace.log.gz")  # doctest: +SKIP
>>> trace.table("postcopy_place_page")  # typed columns  # doctest: +SKIP
>>> trace.analyses.postcopy_faults()  # a DataFrame  # doctest: +SKIP
>>> trace.plot.timeline()  # a matplotlib Figure  # doctest: +SKIP
>>> trace.replay()  # a ReplayResult, rich HTML in Jupyter  # doctest: +SKIP
>>> tracetool.write_report(trace, "report.html")  # doctest: +SKIP

Public surface: :func:`load` -> :class:`Trace` (``.events``, ``.table(name)``, ``.replay()``,
``.analyses``, ``.plot``); :class:`ReplayResult`; :class:`AnalysisResult` and
:class:`Analyses` (``trace.analyses``); :class:`Plots` (``trace.plot``), :func:`write_plots`,
:func:`write_report`; the errors, all :class:`TracetoolError`. The replay, analysis and plotting
names are imported on first use so ``import tracetool`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tracetool.errors import (
    CatalogError,
    FormatError,
    InputError,
    MissingEventError,
    TracetoolError,
    UsageError,
)
from tracetool.trace import Trace, load

__version__ = "0.1.0"

#: Names imported on first access: name -> module.
_LAZY = {
    "ReplayResult": "tracetool.replay",
    "Analyses": "analyses",
    "AnalysisResult": "analyses.base",
    "MissingAnalysisEvents": "analyses.base",
    "Plots": "tracetool.plots",
    "PlotKind": "tracetool.plots",
    "write_plots": "tracetool.plots",
    "write_report": "tracetool.report",
}

__all__ = [
    "CatalogError",
    "FormatError",
    "InputError",
    "MissingEventError",
    "Trace",
    "TracetoolError",
    "UsageError",
    "__version__",
    "load",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tracetool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
