"""Catalog of QEMU trace events: trace-events grammar, printf plans, bundled definitions."""

from tracetool.catalog.catalog import Catalog
from tracetool.catalog.ctypes import ArgKind, CType, parse_ctype
from tracetool.catalog.fmt import Conv, FormatPlan, Token, compile_format, plan_to_regex
from tracetool.catalog.grammar import Arg, Column, EventDef, parse_trace_events, read_trace_events

__all__ = [
    "Arg",
    "ArgKind",
    "CType",
    "Column",
    "Catalog",
    "Conv",
    "EventDef",
    "FormatPlan",
    "Token",
    "compile_format",
    "parse_ctype",
    "parse_trace_events",
    "plan_to_regex",
    "read_trace_events",
]
