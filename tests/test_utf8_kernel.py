"""The compiled UTF-8/NUL line check agrees with Python's strict decoder on arbitrary bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers import _numba_setup

if not _numba_setup.available():
    pytest.skip(f"numba unavailable: {_numba_setup.UNAVAILABLE}", allow_module_level=True)

from parsers._log_kernels import flag_lines, line_bounds  # noqa: E402

UTF8_SAMPLES = [
    "plain", "é", "日本", "😀", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff",
]  # fmt: skip


def _python_flags(data: bytes) -> tuple[list[bool], list[bool]]:
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines = lines[:-1]
    nul, bad = [], []
    for ln in lines:
        ln = ln[:-1] if ln.endswith(b"\r") else ln
        nul.append(b"\0" in ln)
        try:
            ln.decode("utf-8")
            bad.append(False)
        except UnicodeDecodeError:
            bad.append(True)
    return nul, bad


def _kernel_flags(data: bytes) -> tuple[list[bool], list[bool]]:
    buf = np.frombuffer(data, np.uint8)
    starts, ends, _odd = line_bounds(buf)
    nul, bad = flag_lines(buf, starts, ends)
    return nul.tolist(), bad.tolist()


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(max_size=12), st.sampled_from(UTF8_SAMPLES).map(str.encode)),
        max_size=12,
    )
)
def test_utf8_and_nul_flags_match_python(parts):
    data = b"\n".join(parts) + b"\n"
    assert _kernel_flags(data) == _python_flags(data)


def test_known_invalid_sequences():
    for raw in (b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff", b"\x80"):
        assert _kernel_flags(raw + b"\n")[1] == [True], raw
    assert _kernel_flags("ok é 😀\n".encode())[1] == [False]


def test_a_nul_that_breaks_a_sequence_is_seen():
    """Found by hypothesis: the NUL in an incomplete 3-byte sequence was skipped with it."""
    for raw in (b"\xe0\xa0\x00", b"\xf0\x90\x00\x80", b"\xf0\x90\x80\x00"):
        assert _kernel_flags(raw + b"\n") == ([True], [True]), raw
