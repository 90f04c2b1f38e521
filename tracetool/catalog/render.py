"""Print an event's arguments the way QEMU's log backend does: its C printf format, vectorised.

:func:`render_args` takes one typed column per conversion of the event's format (the columns of
:meth:`EventDef.columns`, as numpy arrays or Arrow arrays) and returns the argument text of every
row as an Arrow string array, exactly as glibc's ``printf`` would print the format with those
values (the text after ``name␠`` in a log line). Each conversion is rendered for the whole column
at once (numpy digit tables, pyarrow casts and pads), then the pieces are joined with
``binary_join_element_wise``; there is no Python loop per row.

C semantics: the value of the declared C type is converted to the conversion's type
(``hh`` 8 bits, ``h`` 16, none 32, ``l``/``ll``/``j``/``z``/``t``/``q`` 64; signed for ``%d %i``,
unsigned for ``%u %x %X %o``), as if cast: ``%d`` of a ``uint32_t`` 0xffffffff prints ``-1``,
``%x`` of an ``int`` -1 prints ``ffffffff``. Flags ``-+ #0``, field width and precision follow
C99 (``%#x`` of 0 prints ``0``, ``%.0d`` of 0 prints nothing, ``0`` is ignored with ``-`` or a
precision). ``%p`` prints ``0x...`` or ``(nil)`` (glibc); ``%s`` of a null prints ``(null)``;
``%c`` of a byte above 0x7f prints U+FFFD (the column is UTF-8 text); ``%f %e %g`` are close to
glibc (exact for ``%f`` of values below 2**53 / 10**precision, ``%g``/``%e`` rounded from a
double, so the last digit may differ in rare ties). A null number in a numeric column makes the
whole row null. Formats with ``*`` widths cannot be rendered (``EventDef.plan`` is ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracetool.catalog.ctypes import ArgKind
from tracetool.catalog.fmt import split_format
from tracetool.catalog.grammar import Column, EventDef
from tracetool.errors import CatalogError

__all__ = ["Spec", "render_args", "format_specs"]

_BITS = {"hh": 8, "h": 16, None: 32, "l": 64, "ll": 64, "q": 64, "j": 64, "z": 64, "Z": 64}
_BITS["t"] = 64
_BITS["L"] = 64


@dataclass(frozen=True)
class Spec:
    """One printf conversion: ``%[flags][width][.prec][len]conv``."""

    conv: str
    flags: str = ""
    width: int = 0
    prec: int | None = None
    length: str | None = None

    @property
    def bits(self) -> int:
        if self.conv == "p":
            return 64
        if self.conv == "c":
            return 8
        return _BITS.get(self.length, 64)


def format_specs(fmt: str) -> list[bytes | Spec]:
    """The format as literal byte strings and :class:`Spec` conversions, in order (the same
    tokenisation as :func:`tracetool.catalog.fmt.compile_format`)."""
    out: list[bytes | Spec] = []
    try:
        pieces = split_format(fmt)
    except CatalogError as exc:
        raise ValueError(exc.message) from None
    for m in pieces:
        if isinstance(m, bytes):
            out.append(m)
            continue
        width, prec = m.group("width"), m.group("prec")
        if width == "*" or prec == "*":
            raise ValueError(f"'*' width/precision cannot be rendered: {fmt!r}")
        out.append(
            Spec(
                m.group("conv"),
                m.group("flags"),
                int(width) if width else 0,
                None if prec is None else int(prec or 0),
                m.group("len"),
            )
        )
    return out


# -- building blocks -----------------------------------------------------------------------

_HEX_LO = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_UP = np.frombuffer(b"0123456789ABCDEF", np.uint8)


def _pair_table(digits: np.ndarray) -> np.ndarray:
    """uint16 table: byte value -> its two hex digits, laid out high digit first in memory."""
    hi = digits[np.arange(256) >> 4].astype(np.uint16)
    lo = digits[np.arange(256) & 15].astype(np.uint16)
    return hi | (lo << 8) if np.little_endian else (hi << 8) | lo


_PAIRS_LO = _pair_table(_HEX_LO)
_PAIRS_UP = _pair_table(_HEX_UP)
_POW16 = np.array([1 << (4 * k) for k in range(16)], np.uint64)


def _strings(offsets: np.ndarray, data: np.ndarray, n: int) -> pa.Array:
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))
    )


def _right_aligned(mat: np.ndarray, nd: np.ndarray) -> pa.Array:
    """String array of the last ``nd[i]`` bytes of each row of the byte matrix ``mat``."""
    n, w = mat.shape
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(nd, out=offsets[1:])
    mask = np.arange(w) >= (w - nd)[:, None]
    return _strings(offsets, mat[mask], n)


def _hex_digits(u: np.ndarray, upper: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n, 16) matrix of hex digits of uint64 ``u`` and the number of significant digits."""
    n = len(u)
    be = u.astype(">u8", copy=False).view(np.uint8).reshape(n, 8)
    mat = (_PAIRS_UP if upper else _PAIRS_LO)[be].view(np.uint8).reshape(n, 16)
    # bit length from the exponent of the nearest double, corrected where it rounded up
    exp = np.frexp(u.astype(np.float64))[1]
    nd = np.clip((exp + 3) // 4, 1, 16).astype(np.int64)
    nd -= (nd > 1) & (u < _POW16[np.minimum(nd - 1, 15)])
    return mat, nd


def _oct_digits(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(u)
    mat = np.empty((n, 22), np.uint8)
    v = u.copy()
    for k in range(21, -1, -1):
        mat[:, k] = (v & np.uint64(7)).astype(np.uint8) + 48
        v >>= np.uint64(3)
    nz = mat != 48
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), 21)
    return mat, (22 - first).astype(np.int64)


def _digits(mag: np.ndarray, base: int, upper: bool) -> pa.Array:
    """Digits of the uint64 magnitudes ``mag`` in ``base`` (no sign, no prefix)."""
    if base == 10:
        return pc.cast(pa.array(mag, pa.uint64()), pa.string())
    if base == 16:
        return _right_aligned(*_hex_digits(mag, upper))
    return _right_aligned(*_oct_digits(mag))


def _const(text: str, n: int) -> pa.Array:
    return pa.array(np.full(n, text, dtype=object), pa.string()) if n else pa.array([], pa.string())


def _join(parts: list[pa.Array | str], n: int) -> pa.Array:
    parts = [p for p in parts if not (isinstance(p, str) and p == "")]
    if not parts:
        return _const("", n)
    if len(parts) == 1:
        p = parts[0]
        return _const(p, n) if isinstance(p, str) else p
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    if all(isinstance(p, str) for p in parts):
        return _const("".join(parts), n)  # type: ignore[arg-type]
    return pc.binary_join_element_wise(*args, "")


def _pad(arr: pa.Array, width: int, left_justify: bool, fill: str = " ") -> pa.Array:
    if width <= 0:
        return arr
    if left_justify:
        return pc.utf8_rpad(arr, width=width, padding=fill)
    return pc.utf8_lpad(arr, width=width, padding=fill)


# -- conversions ---------------------------------------------------------------------------


def _int_pattern(
    values: np.ndarray | pa.Array, col: Column
) -> tuple[np.ndarray, np.ndarray | None]:
    """The 64-bit two's-complement pattern of a numeric column (uint64) and its null mask."""
    null = None
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count:
            null = values.is_null().to_numpy(zero_copy_only=False)
            values = values.fill_null(0)
        values = values.to_numpy(zero_copy_only=False)
    a = np.asarray(values)
    if a.dtype == np.bool_:
        return a.astype(np.uint64), null
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            t = np.trunc(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0))
        big = t >= 2.0**63
        out = np.where(big, t - 2.0**64, t).clip(-(2.0**63), 2.0**63 - 1024)
        return out.astype(np.int64).view(np.uint64), null
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False), null
    if a.dtype.kind == "i":
        return a.astype(np.int64, copy=False).view(np.uint64), null
    return np.asarray(a, np.int64).view(np.uint64), null


def _narrow(u: np.ndarray, bits: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude (uint64) and negative mask of pattern ``u`` read as a ``bits``-wide C integer."""
    if bits < 64:
        u = u & np.uint64((1 << bits) - 1)
        if signed:
            shift = np.uint64(64 - bits)
            s = (u << shift).view(np.int64) >> np.int64(64 - bits)
            u = s.view(np.uint64)
    if not signed:
        return u, np.zeros(len(u), bool)
    s = u.view(np.int64)
    neg = s < 0
    mag = np.where(neg, (~u) + np.uint64(1), u)
    return mag, neg


def _render_int(spec: Spec, u: np.ndarray) -> pa.Array:
    n = len(u)
    conv = spec.conv
    signed = conv in "di"
    if conv == "p":
        mag, neg = u, np.zeros(n, bool)
    else:
        mag, neg = _narrow(u, spec.bits, signed)
    base = 16 if conv in "xXp" else 8 if conv == "o" else 10
    flags = spec.flags
    # fast path: plain %d %u %x %X (the vast majority of QEMU conversions)
    plain = not flags and spec.width == 0 and spec.prec is None
    if plain and conv in ("d", "i", "u"):
        if signed:
            return pc.cast(pa.array(_signed_values(mag, neg)), pa.string())
        return _digits(mag, base, False)
    digits = _digits(mag, base, conv == "X")
    if spec.prec is not None:
        digits = pc.utf8_lpad(digits, width=spec.prec, padding="0") if spec.prec > 1 else digits
        if spec.prec == 0:  # %.0d of 0 prints no digits
            digits = pc.if_else(pa.array(mag == 0), pa.scalar("", pa.string()), digits)
    prefix: pa.Array | str = ""
    if conv == "p":
        prefix = "0x"
    elif "#" in flags and conv in "xX":
        prefix = pc.if_else(pa.array(mag == 0), "", "0x" if conv == "x" else "0X")
    elif "#" in flags and conv == "o":
        starts0 = pc.starts_with(digits, "0")
        prefix = pc.if_else(starts0, "", "0")
    sign: pa.Array | str = ""
    if signed:
        pos = "+" if "+" in flags else " " if " " in flags else ""
        sign = pc.if_else(pa.array(neg), "-", pos) if neg.any() or pos else ""
    zero = "0" in flags and "-" not in flags and spec.prec is None and conv != "p"
    if zero and spec.width:
        used = np.zeros(n, np.int64)
        for part in (sign, prefix):
            if isinstance(part, str):
                used += len(part)
            else:
                used += pc.utf8_length(part).to_numpy(zero_copy_only=False)
        used_np = used
        padded = digits
        for k in np.unique(used_np):
            w = spec.width - int(k)
            if w > 1:
                cand = pc.utf8_lpad(digits, width=w, padding="0")
                padded = pc.if_else(pa.array(used_np == k), cand, padded)
        digits = padded
    out = _join([sign, prefix, digits], n)
    if conv == "p":
        out = pc.if_else(pa.array(u == 0), "(nil)", out)
    return _pad(out, spec.width, "-" in flags)


def _signed_values(mag: np.ndarray, neg: np.ndarray) -> np.ndarray:
    return np.where(neg, (~mag + np.uint64(1)).view(np.int64), mag.view(np.int64))


def _render_char(spec: Spec, u: np.ndarray) -> pa.Array:
    b = (u & np.uint64(0xFF)).astype(np.uint8)
    n = len(b)
    if (b < 0x80).all():
        out = _strings(np.arange(n + 1), b, n)
    else:  # a lone byte above 0x7f is not UTF-8: U+FFFD (3 bytes) instead
        wide = b >= 0x80
        nd = np.where(wide, 3, 1)
        mat = np.zeros((n, 3), np.uint8)
        mat[:, 2] = b
        mat[wide] = np.frombuffer("\ufffd".encode(), np.uint8)
        out = _right_aligned(mat, nd)
    return _pad(out, spec.width, "-" in spec.flags)


def _render_string(spec: Spec, values) -> pa.Array:
    if isinstance(values, np.ndarray):
        arr = pa.array(values.tolist() if values.dtype.kind in "OSU" else values)
    else:
        arr = values
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        try:
            arr = arr.cast(pa.string())
        except pa.ArrowInvalid:
            arr = pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in arr.to_pylist()],
                pa.string(),
            )
    elif not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    if spec.prec is not None:
        arr = pc.utf8_slice_codeunits(arr, 0, spec.prec)
        nulltext = "(null)"[: spec.prec] if spec.prec >= 6 else ""  # glibc prints "" then
        arr = arr.fill_null(nulltext)
    else:
        arr = arr.fill_null("(null)")
    if spec.width <= 0:
        return arr
    # printf counts bytes, utf8_lpad code points: narrow by the multi-byte excess per row
    excess = pc.subtract(pc.binary_length(arr), pc.utf8_length(arr)).to_numpy(zero_copy_only=False)
    left = "-" in spec.flags
    return _by_value(excess, lambda k: _pad(arr, spec.width - k, left), arr)


def _render_float(spec: Spec, values) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy(zero_copy_only=False)
    x = np.asarray(values, np.float64)
    conv = spec.conv.lower()
    prec = 6 if spec.prec is None else spec.prec
    n = len(x)
    neg = np.signbit(x)
    ax = np.abs(x)
    finite = np.isfinite(ax)
    safe = np.where(finite, ax, 0.0)
    if conv == "f":
        body = _fixed(safe, np.full(n, prec), strip=False, alt="#" in spec.flags)
    elif conv == "e":
        body = _expo(safe, prec, strip=False, upper=spec.conv == "E")
    elif conv in "ga":
        p = max(prec, 1)
        exp = np.floor(np.log10(np.where(safe > 0, safe, 1.0))).astype(np.int64)
        # the exponent after rounding to p significant digits
        rounded = np.round(safe / 10.0 ** exp.astype(np.float64), p - 1)
        exp = exp + (rounded >= 10)
        use_fixed = (exp >= -4) & (exp < p)
        strip = "#" not in spec.flags
        fixed = _fixed(safe, np.clip(p - 1 - exp, 0, 340), strip=strip, alt=False)
        expo = _expo(safe, p - 1, strip=strip, upper=spec.conv == "G")
        body = pc.if_else(pa.array(use_fixed), fixed, expo)
    else:
        body = pc.cast(pa.array(safe), pa.string())
    special = np.where(np.isnan(ax), "nan", "inf")
    if spec.conv.isupper():
        special = np.char.upper(special)
    body = pc.if_else(pa.array(finite), body, pa.array(special.astype(object), pa.string()))
    plus = "+" if "+" in spec.flags else " " if " " in spec.flags else ""
    sign = pc.if_else(pa.array(neg), "-", plus) if neg.any() or plus else ""
    if "0" in spec.flags and "-" not in spec.flags and spec.width:
        signed_row = neg | bool(plus)
        padded = _by_value(
            signed_row.astype(np.int64),
            lambda k: pc.utf8_lpad(body, width=spec.width - k, padding="0"),
            body,
        )
        body = pc.if_else(pa.array(finite), padded, body)
    return _pad(_join([sign, body], n), spec.width, "-" in spec.flags)


_P10 = np.array([10**k for k in range(19)], np.uint64)


def _by_value(keys: np.ndarray, make, base: pa.Array) -> pa.Array:
    """``base`` with the rows of each distinct key replaced by ``make(key)`` (few keys)."""
    out = base
    for k in np.unique(keys):
        out = pc.if_else(pa.array(keys == k), make(int(k)), out)
    return out


def _fixed(ax: np.ndarray, decimals: np.ndarray, strip: bool, alt: bool) -> pa.Array:
    """``%.Nf`` of non-negative finite doubles, per-row N: the integer part is exact below
    2**63 (above: 17 significant digits then zeros), the fraction is rounded from
    ``frac * 10**N`` (N above 18 gets zeros appended)."""
    n = len(ax)
    decimals = np.asarray(decimals, np.int64)
    d = np.clip(decimals, 0, 18)
    big = ax >= 2.0**63
    small = np.where(big, 0.0, ax)
    ip = np.floor(small)
    p10 = _P10[d]
    fp = np.round((small - ip) * p10.astype(np.float64))
    carry = fp >= p10.astype(np.float64)
    ip = ip + carry
    fp = np.where(carry, 0.0, fp)
    ip_u = np.where(ip >= 2.0**63, 2.0**63 - 1024, ip).astype(np.uint64)
    ip_u = np.where(ip >= 2.0**63, np.uint64(1) << np.uint64(63), ip_u)
    ip_txt = pc.cast(pa.array(ip_u), pa.string())
    if big.any():
        e = np.floor(np.log10(np.where(big, ax, 1.0))).astype(np.int64)
        m = np.round(np.where(big, ax, 0.0) / 10.0 ** (e - 16).astype(np.float64))
        m_txt = pc.cast(pa.array(m.astype(np.uint64)), pa.string())
        ip_txt = pc.if_else(
            pa.array(big),
            _by_value(
                np.where(big, e, 16), lambda k: pc.utf8_rpad(m_txt, width=k + 1, padding="0"), m_txt
            ),
            ip_txt,
        )
    fp_txt = pc.cast(pa.array(fp.astype(np.uint64)), pa.string())
    frac = _by_value(d, lambda k: pc.utf8_lpad(fp_txt, width=k, padding="0"), fp_txt)
    extra = decimals - d
    if (extra > 0).any():
        frac = _by_value(extra, lambda k: pc.utf8_rpad(frac, width=18 + k, padding="0"), frac)
    if strip:
        frac = pc.utf8_rtrim(frac, characters="0")
    zero_digits = pa.array(decimals <= 0)
    frac = pc.if_else(zero_digits, "", frac)
    has_frac = pc.greater(pc.utf8_length(frac), 0)
    dot = pc.if_else(has_frac, ".", "." if alt else "")
    out = pc.binary_join_element_wise(ip_txt, dot, frac, "")
    assert len(out) == n
    return out


def _expo(ax: np.ndarray, prec: int, strip: bool, upper: bool) -> pa.Array:
    n = len(ax)
    exp = np.floor(np.log10(np.where(ax > 0, ax, 1.0))).astype(np.int64)
    mant = ax / 10.0 ** exp.astype(np.float64)
    bump = np.round(mant, prec) >= 10
    exp = exp + bump
    mant = np.where(bump, mant / 10, mant)
    mant = np.where(ax > 0, mant, 0.0)
    exp = np.where(ax > 0, exp, 0)
    body = _fixed(mant, np.full(n, prec), strip=strip, alt=False)
    esign = pc.if_else(pa.array(exp < 0), "-", "+")
    edig = pc.utf8_lpad(pc.cast(pa.array(np.abs(exp)), pa.string()), width=2, padding="0")
    return pc.binary_join_element_wise(body, "E" if upper else "e", esign, edig, "")


# -- public ---------------------------------------------------------------------------------

_RENDER_CACHE: dict[int, tuple[str, list[bytes | Spec]]] = {}


def _specs(ev: EventDef) -> list[bytes | Spec]:
    if ev.plan is None:
        raise ValueError(f"{ev.name}: no usable format to render ({ev.plan_error or 'none'})")
    got = _RENDER_CACHE.get(id(ev))
    if got is None or got[0] != ev.plan.fmt:
        got = _RENDER_CACHE[id(ev)] = (ev.plan.fmt, format_specs(ev.plan.fmt))
    return got[1]


def render_args(ev: EventDef, columns: list, length: int | None = None) -> pa.StringArray:
    """The argument text of every row, as QEMU's log backend prints ``ev``'s format.

    ``columns``: one array per entry of ``ev.columns()`` (numpy arrays or Arrow arrays; strings
    as Arrow string/binary arrays or numpy object arrays, null -> ``(null)``), all the same
    length. ``length`` gives the number of rows when there are no columns (an event whose
    format reads no argument). Raises ``ValueError`` when the event has no renderable format or
    the column count is wrong.
    """
    specs = _specs(ev)
    cols = ev.columns()
    if len(columns) != len(cols):
        raise ValueError(f"{ev.name}: {len(columns)} columns given, the format reads {len(cols)}")
    n = len(columns[0]) if columns else (length or 0)
    parts: list[pa.Array | str] = []
    row_null: np.ndarray | None = None
    k = 0
    for piece in specs:
        if isinstance(piece, bytes):
            parts.append(piece.decode("utf-8", "replace"))
            continue
        col, values = cols[k], columns[k]
        k += 1
        if len(values) != n:
            raise ValueError(f"{ev.name}: columns have different lengths")
        if piece.conv == "s":
            parts.append(_render_string(piece, values))
            continue
        if col.kind is ArgKind.STRING and not isinstance(values, np.ndarray):
            values = pa.array(values) if not isinstance(values, pa.Array) else values
            if pa.types.is_string(values.type) or pa.types.is_binary(values.type):
                values = pa.array(np.zeros(len(values), np.uint64))  # no pointer value known
        if piece.conv in "fFeEgGaA":
            if isinstance(values, (pa.Array, pa.ChunkedArray)) and values.null_count:
                nm = values.is_null().to_numpy(zero_copy_only=False)
                row_null = nm if row_null is None else row_null | nm
                values = values.fill_null(0)
            parts.append(_render_float(piece, values))
            continue
        u, nm = _int_pattern(values, col)
        if nm is not None:
            row_null = nm if row_null is None else row_null | nm
        if piece.conv == "c":
            parts.append(_render_char(piece, u))
        else:
            parts.append(_render_int(piece, u))
    out = _join(parts, n)
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
    if row_null is not None and row_null.any():
        out = pc.if_else(pa.array(row_null), pa.scalar(None, pa.string()), out)
    return out
