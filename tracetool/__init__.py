"""tracetool: QEMU trace output as Arrow tables, and balloon x postcopy replay.

>>> import tracetool
>>> trace = tracetool.load("sample_traces/qemu-7.2/a-dst.trace.log.gz")  # doctest: +SKIP
>>> trace.table("postcopy_place_page")  # doctest: +SKIP
"""

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
]
