"""Shared fixtures: paths of the bundled samples and (when present) the shared real captures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_traces"
SHARED = ROOT.parent / "shared" / "traces" / "qemu-7.2"
DST_EXCERPT = SAMPLES / "qemu-7.2" / "a-dst-excerpt.trace.log.gz"
SRC_EXCERPT = SAMPLES / "qemu-7.2" / "a-src-excerpt.trace.log.gz"
MIXED = SAMPLES / "synthetic" / "mixed-shapes.log"


@pytest.fixture(params=["numba", "arrow"])
def engine(request) -> str:
    """Run a test once per parser engine: both must give the same tables."""
    if request.param == "numba":
        from parsers import _numba_setup

        if not _numba_setup.available():
            pytest.skip(f"numba unavailable: {_numba_setup.UNAVAILABLE}")
    return request.param


def shared_trace(*parts: str) -> Path:
    """A file of the shared real captures; skips the test where they are not laid out."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared capture not available: {path}")
    return path


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``tracetool ARGS`` in-process through the real entry point: (exit code, out, err)."""
    import sys

    from tracetool.cli import main

    monkeypatch.setattr(sys, "argv", ["tracetool", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err
