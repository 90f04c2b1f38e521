"""Import numba with a cache folder we chose and checked, or report why it is unavailable.

numba's ``cache=True`` crashes at import when it finds no writable folder; we pick
``$TRACETOOL_CACHE_DIR`` or ``~/.cache/tracetool/numba`` (then a temp folder), check that we can
write there, and compile uncached otherwise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_DIR: str | None = None
UNAVAILABLE: str | None = None


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _choose_cache_dir() -> str | None:
    env = os.environ.get("TRACETOOL_CACHE_DIR")
    candidates = [Path(env) / "numba"] if env else []
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    candidates += [
        Path(xdg) / "tracetool" / "numba",
        Path(tempfile.gettempdir()) / "tracetool-numba",
    ]
    for c in candidates:
        if _writable(c):
            return str(c)
    return None


if os.environ.get("TRACETOOL_NO_NUMBA"):
    UNAVAILABLE = "disabled by TRACETOOL_NO_NUMBA"
else:
    CACHE_DIR = _choose_cache_dir()
    if CACHE_DIR:
        os.environ.setdefault("NUMBA_CACHE_DIR", CACHE_DIR)
    try:
        import numba  # noqa: F401

        if CACHE_DIR:
            numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    except Exception as exc:  # noqa: BLE001 - any import failure means "use the arrow engine"
        UNAVAILABLE = f"numba could not be imported: {exc}"

CACHE = CACHE_DIR is not None


def available() -> bool:
    return UNAVAILABLE is None
