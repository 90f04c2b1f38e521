"""C argument types of trace-events declarations, and the Arrow type each one decodes to."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import pyarrow as pa


class ArgKind(enum.IntEnum):
    """How an argument is stored in typed tables."""

    SIGNED = 0  # int64 column
    UNSIGNED = 1  # uint64 column
    POINTER = 2  # uint64 column (NULL -> 0)
    STRING = 3  # string column ((null) -> null)
    BOOL = 4  # bool column
    FLOAT = 5  # float64 column


ARROW_TYPES = {
    ArgKind.SIGNED: pa.int64(),
    ArgKind.UNSIGNED: pa.uint64(),
    ArgKind.POINTER: pa.uint64(),
    ArgKind.STRING: pa.string(),
    ArgKind.BOOL: pa.bool_(),
    ArgKind.FLOAT: pa.float64(),
}

# (signed, bits) of the integer types that appear in QEMU trace-events files.
_INTEGERS: dict[str, tuple[bool, int]] = {
    "char": (True, 8),
    "signed char": (True, 8),
    "unsigned char": (False, 8),
    "short": (True, 16),
    "short int": (True, 16),
    "unsigned short": (False, 16),
    "unsigned short int": (False, 16),
    "int": (True, 32),
    "signed": (True, 32),
    "signed int": (True, 32),
    "unsigned": (False, 32),
    "unsigned int": (False, 32),
    "long": (True, 64),
    "long int": (True, 64),
    "unsigned long": (False, 64),
    "unsigned long int": (False, 64),
    "long long": (True, 64),
    "unsigned long long": (False, 64),
    "size_t": (False, 64),
    "ssize_t": (True, 64),
    "off_t": (True, 64),
    "uintptr_t": (False, 64),
    "intptr_t": (True, 64),
    "hwaddr": (False, 64),
    "ram_addr_t": (False, 64),
    "vaddr": (False, 64),
    "target_ulong": (False, 64),
    "target_long": (True, 64),
    "dma_addr_t": (False, 64),
    "pid_t": (True, 32),
    "uid_t": (False, 32),
    "gid_t": (False, 32),
}
for _bits in (8, 16, 32, 64):
    _INTEGERS[f"int{_bits}_t"] = (True, _bits)
    _INTEGERS[f"uint{_bits}_t"] = (False, _bits)

_QUALIFIERS = re.compile(r"\b(const|volatile|struct|enum|union)\b")


@dataclass(frozen=True)
class CType:
    """A declared C type reduced to what decoding needs."""

    decl: str
    kind: ArgKind
    bits: int = 64  # integer width used to wrap values printed with another signedness

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]

    @property
    def is_string(self) -> bool:
        return self.kind is ArgKind.STRING


def parse_ctype(decl: str) -> CType:
    """Classify a C type declaration (``const char *``, ``uint64_t``, ``void *``, ``bool``...)."""
    text = " ".join(decl.replace("*", " * ").split())
    if "*" in text:
        base = _QUALIFIERS.sub("", text.replace("*", "")).strip()
        if base == "char" and text.count("*") == 1:
            return CType(decl, ArgKind.STRING)
        return CType(decl, ArgKind.POINTER)
    base = " ".join(_QUALIFIERS.sub("", text).split())
    if base in ("bool", "_Bool"):
        return CType(decl, ArgKind.BOOL, 8)
    if base in ("float", "double", "long double"):
        return CType(decl, ArgKind.FLOAT)
    if base in _INTEGERS:
        signed, bits = _INTEGERS[base]
        return CType(decl, ArgKind.SIGNED if signed else ArgKind.UNSIGNED, bits)
    # Enums and unknown typedefs: QEMU passes them as plain ints.
    return CType(decl, ArgKind.SIGNED, 64)
