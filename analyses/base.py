"""What every analysis shares: the events it needs, its result, and the missing-event error.

An analysis is a module in ``analyses/`` that defines

* ``NAME`` - its registry name (``trace.analyses.<NAME>()``, ``--json`` key);
* ``NEEDS`` - a :class:`Needs`: events that must all be present, and groups of which one
  must be present (alternatives, e.g. ``postcopy_page_req_add`` or the fault thread's
  ``postcopy_ram_fault_thread_request``);
* ``run(trace, **options) -> AnalysisResult`` - a pure function of the trace's tables (and,
  where the analysis is about policies, of ``trace.replay()``).

``run`` starts with ``NEEDS.check(trace, NAME)``, which raises :class:`MissingAnalysisEvents`
naming what is missing, the ``-trace enable=...`` that would record it, and the closest event
names the trace does have.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tracetool.errors import MissingEventError, TracetoolError

if TYPE_CHECKING:
    import pandas as pd

    from tracetool.trace import Trace


class MissingAnalysisEvents(MissingEventError):
    """An analysis cannot run: events it needs are not in the trace."""

    def __init__(
        self, analysis: str, missing: list[str], available: list[str], *, path: str | None
    ) -> None:
        names = sorted(set(available))
        hints = []
        for m in missing:
            for alt in m.split(" or "):
                hints += difflib.get_close_matches(alt, names, n=2, cutoff=0.75)
        # QEMU takes one pattern per -trace option (a comma starts the next suboption).
        enable = " ".join(
            f"-trace enable={a}" for a in dict.fromkeys(a for m in missing for a in m.split(" or "))
        )
        groups = [f"({m})" if " or " in m and len(missing) > 1 else m for m in missing]
        hint = f"; closest in the trace: {', '.join(dict.fromkeys(hints))}" if hints else ""
        msg = (
            f"analysis {analysis!r} needs {' and '.join(groups)}, not in this trace "
            f"(record with QEMU {enable}){hint}"
        )
        TracetoolError.__init__(self, msg, path=path)
        self.name = missing[0]
        self.analysis = analysis
        self.missing = missing
        self.suggestions = list(dict.fromkeys(hints))

    __str__ = TracetoolError.__str__


@dataclass(frozen=True)
class Needs:
    """Events an analysis reads: ``all_of`` must be present, and one of each ``any_of`` group."""

    all_of: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()

    def missing(self, trace: Trace) -> list[str]:
        """What is missing, as event names (``a or b`` for an unmet group)."""
        out = [n for n in self.all_of if n not in trace]
        out += [" or ".join(g) for g in self.any_of if not any(n in trace for n in g)]
        return out

    def check(self, trace: Trace, analysis: str) -> None:
        missing = self.missing(trace)
        if missing:
            raise MissingAnalysisEvents(
                analysis, missing, list(trace.event_counts()), path=trace.stats.path
            )

    def events(self) -> list[str]:
        return [*self.all_of, *(n for g in self.any_of for n in g)]


@dataclass
class AnalysisResult:
    """An analysis' output: headline figures (JSON-able) and named Arrow tables.

    ``summary`` is what ``tracetool analyze --json`` prints under the analysis' name; ``tables``
    holds the rows behind it, the first one being the main table (what
    ``trace.analyses.<name>()`` returns as a DataFrame).
    """

    name: str
    summary: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def table(self) -> pa.Table:
        """The main table."""
        return next(iter(self.tables.values())) if self.tables else pa.table({})

    def to_pandas(self, name: str | None = None) -> pd.DataFrame:
        """A table (the main one by default) as a DataFrame; ``.attrs`` carries the summary."""
        t = self.table if name is None else self.tables[name]
        df = t.to_pandas()
        df.attrs = {"analysis": self.name, "summary": self.summary, "notes": list(self.notes)}
        return df

    def _repr_html_(self) -> str:
        from tracetool.display import result_html

        return result_html(self)
