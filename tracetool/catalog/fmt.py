"""Compile a C printf format (as QEMU's trace backends expand it) into a parse plan.

A plan is a tuple of :class:`Token`: literal text to match byte for byte, or one conversion
that reads one argument. Plans are run by the compiled kernel (``parsers._log_kernel``) and by
the pure-pyarrow path (via :func:`plan_to_regex`); both must accept exactly the same text.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tracetool.errors import CatalogError


class Conv(enum.IntEnum):
    """What one token of a plan matches."""

    LITERAL = 0  # the token's literal bytes
    SIGNED = 1  # %d %i: -?[0-9]+
    UNSIGNED = 2  # %u: [0-9]+
    HEX = 3  # %x %X: [0-9a-fA-F]+ (with optional 0x when the # flag is given)
    PTR = 4  # %p: 0x[0-9a-f]+ or (nil)
    STRING = 5  # %s: shortest text up to the next literal (to end of line if last), (null) -> null
    CHAR = 6  # %c: one byte
    FLOAT = 7  # %f %g %e: decimal float, inf, nan
    OCT = 8  # %o: [0-7]+


#: Token flags.
FLAG_PAD = 1  # a field width was given: leading spaces may precede the number
FLAG_ALT = 2  # '#' flag: %#x prints 0x (but not for zero), %#o prints a leading 0


@dataclass(frozen=True)
class Token:
    kind: Conv
    literal: bytes = b""
    arg: int = -1  # index of the argument this conversion reads
    flags: int = 0


@dataclass(frozen=True)
class FormatPlan:
    """A compiled format: tokens, and how many arguments the conversions read."""

    fmt: str
    tokens: tuple[Token, ...]
    nconv: int

    @property
    def conversions(self) -> tuple[Token, ...]:
        return tuple(t for t in self.tokens if t.kind is not Conv.LITERAL)


_SPEC = re.compile(
    r"%(?P<flags>[-+ #0']*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?"
    r"(?P<len>hh|h|ll|l|L|q|j|z|Z|t)?(?P<conv>[diouxXcspfFeEgGaA%])"
)
_CONV = {
    "d": Conv.SIGNED,
    "i": Conv.SIGNED,
    "u": Conv.UNSIGNED,
    "x": Conv.HEX,
    "X": Conv.HEX,
    "o": Conv.OCT,
    "p": Conv.PTR,
    "s": Conv.STRING,
    "c": Conv.CHAR,
}


def split_format(fmt: str) -> list[bytes | re.Match]:
    """A C format as literal byte strings (``%%`` folded in) and conversion-spec matches
    (groups flags, width, prec, len, conv), in order. Raises :class:`CatalogError` naming the
    column of a conversion tracetool cannot read."""
    out: list[bytes | re.Match] = []
    lit = bytearray()
    pos = 0
    while True:
        pct = fmt.find("%", pos)
        if pct < 0:
            lit += fmt[pos:].encode("utf-8")
            break
        lit += fmt[pos:pct].encode("utf-8")
        m = _SPEC.match(fmt, pct)
        if not m:
            raise CatalogError(f"unsupported conversion at column {pct + 1} of format {fmt!r}")
        pos = m.end()
        if m.group("conv") == "%":
            lit += b"%"
            continue
        if lit:
            out.append(bytes(lit))
            lit.clear()
        out.append(m)
    if lit:
        out.append(bytes(lit))
    return out


def compile_format(fmt: str, nargs: int | None = None) -> FormatPlan:
    """Compile an already-concatenated C format string (PRI macros expanded) into a plan.

    Raises :class:`CatalogError` for conversions tracetool cannot read back reliably
    (``*`` widths or precisions, ``%n``, ``%m``) or for more conversions than ``nargs``.
    """
    tokens: list[Token] = []
    nconv = 0
    for piece in split_format(fmt):
        if isinstance(piece, bytes):
            tokens.append(Token(Conv.LITERAL, piece))
            continue
        if piece.group("width") == "*" or piece.group("prec") == "*":
            raise CatalogError(f"'*' width/precision is not supported in format {fmt!r}")
        flags = 0
        if piece.group("width"):
            flags |= FLAG_PAD
        if "#" in piece.group("flags"):
            flags |= FLAG_ALT
        tokens.append(Token(_CONV.get(piece.group("conv"), Conv.FLOAT), b"", nconv, flags))
        nconv += 1
    if nargs is not None and nconv > nargs:
        raise CatalogError(f"format {fmt!r} has {nconv} conversions but only {nargs} arguments")
    return FormatPlan(fmt, tuple(tokens), nconv)


_REGEX_FOR = {
    Conv.SIGNED: r"-?[0-9]+",
    Conv.UNSIGNED: r"[0-9]+",
    Conv.HEX: r"[0-9a-fA-F]+",
    Conv.OCT: r"[0-7]+",
    Conv.PTR: r"0x[0-9a-fA-F]+|\(nil\)",
    Conv.CHAR: r"(?s:.)",
    Conv.FLOAT: r"[-+]?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|inf|nan|INF|NAN)",
}


def plan_to_regex(plan: FormatPlan) -> str:
    """An RE2/Python regex, anchored at both ends, with one group ``a<N>`` per conversion."""
    parts = ["^"]
    for tok in plan.tokens:
        if tok.kind is Conv.LITERAL:
            parts.append(re.escape(tok.literal.decode("utf-8")))
            continue
        if tok.kind is Conv.STRING:
            body = r".*?"
        elif tok.kind is Conv.HEX and tok.flags & FLAG_ALT:
            body = r"(?:0[xX])?[0-9a-fA-F]+"
        else:
            body = _REGEX_FOR[tok.kind]
        pad = r" *" if tok.flags & FLAG_PAD and tok.kind is not Conv.STRING else ""
        parts.append(f"{pad}(?P<a{tok.arg}>{body})")
    parts.append("$")
    return "".join(parts)
