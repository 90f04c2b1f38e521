"""Replay of balloon and postcopy page events under inhibit policies (see docs/replay.md)."""

from tracetool.replay.engine import ReplayOptions, replay
from tracetool.replay.model import ALL_POLICIES, ConflictClass, Kind, Outcome, Policy, State
from tracetool.replay.result import CONFLICTS_SCHEMA, ReplayResult

__all__ = [
    "ALL_POLICIES",
    "CONFLICTS_SCHEMA",
    "ConflictClass",
    "Kind",
    "Outcome",
    "Policy",
    "ReplayOptions",
    "ReplayResult",
    "State",
    "replay",
]
