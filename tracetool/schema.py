"""The canonical Arrow schemas every parser produces.

``events``: one row per trace record; ``other``: lines that were not trace records;
``rejected``: lines that looked like trace records but could not be decoded. Typed per-event
tables have :data:`EVENT_KEY_FIELDS` followed by one column per trace-events argument.
"""

from __future__ import annotations

import pyarrow as pa

#: Dictionary-encoded event name (int32 indices; names are few, rows are many).
EVENT_NAME_TYPE = pa.dictionary(pa.int32(), pa.string())

EVENTS_SCHEMA = pa.schema(
    [
        pa.field(
            "ts_ns", pa.int64(), nullable=True
        ),  # ns since the epoch (text) / monotonic (binary)
        pa.field(
            "tid", pa.int32(), nullable=True
        ),  # thread (or process) id, null if the format has none
        pa.field("event", EVENT_NAME_TYPE, nullable=False),
        pa.field(
            "line", pa.int64(), nullable=False
        ),  # 1-based line number, or record index (binary)
        pa.field("args", pa.string(), nullable=True),  # the raw argument text after "name "
    ]
)

#: Leading columns of every typed per-event table (``trace.table(name)``).
EVENT_KEY_FIELDS = [
    pa.field("ts_ns", pa.int64(), nullable=True),
    pa.field("tid", pa.int32(), nullable=True),
    pa.field("line", pa.int64(), nullable=False),
]

OTHER_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("text", pa.string(), nullable=True),
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=True),
    ]
)
