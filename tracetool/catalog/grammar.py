"""Parse QEMU trace-events files (``[props] name(type arg, ...) "format"``) into definitions.

Bundled catalog files add one annotation QEMU ignores (it is a comment):
``#@ versions: 2.5-2.9`` before a definition gives the QEMU releases that printed that variant
(inclusive; ``7.0-`` open-ended, ``-2.9`` from the beginning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tracetool.catalog.ctypes import ArgKind, CType, parse_ctype
from tracetool.catalog.fmt import Conv, FormatPlan, compile_format
from tracetool.errors import CatalogError

#: Key columns of every typed table (tracetool.schema.EVENT_KEY_FIELDS); no argument may shadow one.
KEY_NAMES = frozenset({"ts_ns", "tid", "line"})

_LINE = re.compile(
    r"^((?P<props>[\w\s-]+?)\s+)?(?P<name>\w+)\((?P<args>[^)]*)\)\s*(?P<fmt>\".*)?\s*$"
)
_FMT_PART = re.compile(r'\s*(?:"(?P<lit>(?:[^"\\]|\\.)*)"|(?P<macro>\w+)|(?P<comma>,))')
_PRI = re.compile(r"^PRI([diouxX])(8|16|32|64|PTR|MAX|LEAST\d+|FAST\d+)$")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r", "0": "\0"}
_VERSIONS = re.compile(r"^#@\s*versions:\s*(?P<lo>[\d.]*)\s*-\s*(?P<hi>[\d.]*)\s*$")

Version = tuple[int, int]


@dataclass(frozen=True)
class Arg:
    ctype: CType
    name: str


@dataclass(frozen=True)
class Column:
    """One typed column: argument name, storage kind, integer width, conversion that reads it."""

    name: str
    kind: ArgKind
    bits: int
    conv: Conv


@dataclass
class EventDef:
    """One definition (variant) of a trace event."""

    name: str
    args: tuple[Arg, ...]
    fmt: str | None
    properties: frozenset[str] = frozenset()
    source: str = ""  # file:line it came from
    versions: tuple[Version | None, Version | None] = (None, None)
    plan: FormatPlan | None = field(default=None, repr=False)
    plan_error: str | None = None

    @property
    def typed_args(self) -> tuple[Arg, ...]:
        """The arguments the format prints, in order (what a typed table holds)."""
        if self.plan is None:
            return ()
        return self.args[: self.plan.nconv]

    def columns(self) -> list[Column]:
        """Typed columns, one per conversion; a ``%s`` is a string, a char* printed otherwise
        is its pointer value; an argument named ``ts_ns``, ``tid`` or ``line`` is ``arg_<name>``."""
        cached = self.__dict__.get("_columns")
        if cached is not None:
            return cached
        if self.plan is None:
            return []
        cols = []
        for arg, tok in zip(self.args, self.plan.conversions, strict=False):
            kind, bits = arg.ctype.kind, arg.ctype.bits
            if tok.kind is Conv.STRING:
                kind = ArgKind.STRING
            elif kind is ArgKind.STRING:
                kind, bits = ArgKind.POINTER, 64
            # an argument named like a key column (postcopy_blocktime_tid_cpu_map's tid) is
            # renamed arg_<name> so the typed table keeps one ts_ns/tid/line
            name = f"arg_{arg.name}" if arg.name in KEY_NAMES else arg.name
            cols.append(Column(name, kind, bits, tok.kind))
        self.__dict__["_columns"] = cols
        return cols

    def signature(self) -> str:
        args = ", ".join(f"{a.ctype.decl} {a.name}" for a in self.args) or "void"
        return f"{self.name}({args})"


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text)


def parse_format(text: str, where: str) -> list[str]:
    """Concatenate adjacent C string literals, expanding ``PRIx64``-style macros.

    Returns one string per comma-separated format (two for QEMU <= 6.2 ``tcg`` events).
    """
    formats: list[str] = [""]
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _FMT_PART.match(text, pos)
        if not m or m.end() == pos:
            raise CatalogError(f"cannot read format at {text[pos : pos + 20]!r}", path=where)
        pos = m.end()
        if m.group("comma"):
            formats.append("")
        elif m.group("lit") is not None:
            formats[-1] += _unescape(m.group("lit"))
        else:
            pri = _PRI.match(m.group("macro"))
            if not pri:
                raise CatalogError(f"unknown macro {m.group('macro')!r} in format", path=where)
            formats[-1] += "ll" + pri.group(1)
    return formats


def _parse_args(text: str, where: str) -> tuple[Arg, ...]:
    text = text.strip()
    if text in ("", "void"):
        return ()
    args = []
    for part in text.split(","):
        part = part.strip()
        star = part.rfind("*")
        space = part.rfind(" ")
        cut = max(star, space)
        if cut <= 0:
            raise CatalogError(f"argument {part!r} has no type", path=where)
        ctype, name = part[: cut + 1].strip(), part[cut + 1 :].strip()
        if not re.fullmatch(r"\w+", name):
            raise CatalogError(f"bad argument name in {part!r}", path=where)
        args.append(Arg(parse_ctype(ctype), name))
    return tuple(args)


def _version(text: str) -> Version | None:
    if not text:
        return None
    major, _, minor = text.partition(".")
    return (int(major), int(minor or 0))


def parse_trace_events(text: str, source: str = "<string>") -> list[EventDef]:
    """Parse the text of a trace-events file; raises :class:`CatalogError` naming file:line."""
    defs: list[EventDef] = []
    versions: tuple[Version | None, Version | None] = (None, None)
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{lineno}"
        if not line:
            continue
        if line.startswith("#"):
            vm = _VERSIONS.match(line)
            if vm:
                versions = (_version(vm.group("lo")), _version(vm.group("hi")))
            continue
        m = _LINE.match(line)
        if not m:
            raise CatalogError(
                "expected '[props] name(type arg, ...) \"format\"'", path=source, line=lineno
            )
        props = frozenset((m.group("props") or "").split())
        name = m.group("name")
        try:
            args = _parse_args(m.group("args"), where)
            formats = parse_format(m.group("fmt"), where) if m.group("fmt") else []
        except CatalogError as exc:
            raise CatalogError(exc.message, path=source, line=lineno) from None
        if "vcpu" in props:
            args = (Arg(parse_ctype("void *"), "__cpu"), *args)
            formats = ["cpu=%p " + f for f in formats]
        if "tcg" in props:
            # QEMU <= 6.2: two events, <name>_trans and <name>_exec; kept untyped.
            for suffix in ("_trans", "_exec"):
                defs.append(EventDef(name + suffix, args, None, props, where, versions))
            versions = (None, None)
            continue
        fmt = formats[-1] if formats else None
        ev = EventDef(name, args, fmt, props, where, versions)
        if fmt is not None:
            try:
                ev.plan = compile_format(fmt, len(args))
            except CatalogError as exc:
                ev.plan_error = f"{where}: {exc.message}"
        defs.append(ev)
        versions = (None, None)
    return defs


def read_trace_events(path: str | Path) -> list[EventDef]:
    """Read a trace-events(-all) file from disk."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CatalogError(f"cannot read trace-events file: {exc.strerror}", path=str(p)) from None
    return parse_trace_events(text, str(p))
