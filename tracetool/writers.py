"""Streaming table writers chosen by output file extension: Parquet, Arrow IPC, CSV."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from tracetool.errors import UsageError

EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "arrow",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow-stream",
    ".csv": "csv",
}


def kind_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        known = ", ".join(EXTENSIONS)
        raise UsageError(
            f"cannot tell the output format from {suffix or 'no extension'!r}; use one of {known}",
            path=str(path),
        ) from None


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary columns decoded to plain strings (for writers that need one fixed schema)."""
    cols = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


class TableWriter:
    """Write record batches one at a time; memory stays flat whatever the input size."""

    def __init__(self, path: str | Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.kind = kind_for(path)
        self.rows = 0
        self._decode = self.kind == "csv"
        fields = [
            pa.field(f.name, pa.string(), f.nullable)
            if self._decode and pa.types.is_dictionary(f.type)
            else f
            for f in schema
        ]
        self.schema = pa.schema(fields)
        try:
            if self.kind == "parquet":
                self._w = pq.ParquetWriter(self.path, self.schema, compression="zstd")
            elif self.kind == "arrow":
                opts = ipc.IpcWriteOptions(emit_dictionary_deltas=True)
                self._w = ipc.new_file(self.path, self.schema, options=opts)
            elif self.kind == "arrow-stream":
                opts = ipc.IpcWriteOptions(emit_dictionary_deltas=True)
                self._w = ipc.new_stream(self.path, self.schema, options=opts)
            else:
                self._w = pacsv.CSVWriter(self.path, self.schema)
        except OSError as exc:
            raise UsageError(f"cannot write: {exc.strerror or exc}", path=str(path)) from None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._decode:
            batch = _plain(batch)
        self._w.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
