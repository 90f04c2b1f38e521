"""Enumerations of the replay engine: policies, page-event kinds, page states, conflicts."""

from __future__ import annotations

import enum


class Policy(str, enum.Enum):
    """What the destination does with a balloon inflate during incoming postcopy."""

    NO_INHIBIT = "no-inhibit"  # QEMU <= 2.4: always applied
    INHIBIT = "inhibit"  # QEMU 2.5-5.0 (the seed commit): dropped from LISTEN to cleanup done
    INHIBIT_DISCARD = "inhibit-discard"  # QEMU >= 5.1: dropped from first DISCARD to STATE_END
    DEFER = "defer"  # queued from LISTEN to END, reconciled per page at END
    QEMU = "qemu"  # the rule of the QEMU version that wrote the trace

    @classmethod
    def parse(cls, text: str) -> Policy:
        try:
            return cls(text)
        except ValueError:
            from tracetool.errors import UsageError

            names = ", ".join(p.value for p in cls)
            raise UsageError(f"unknown policy {text!r}; expected one of: {names}, all") from None


#: The policies ``--policy all`` reports.
ALL_POLICIES = (Policy.NO_INHIBIT, Policy.INHIBIT, Policy.INHIBIT_DISCARD, Policy.DEFER)


class ConflictClass(str, enum.Enum):
    DISCARD_AFTER_PLACE = "discard-after-place"
    DISCARD_IN_FLIGHT = "discard-in-flight"
    DISCARD_BEFORE_ARRIVAL = "discard-before-arrival"


#: Conflict classes in kernel code order (1, 2, 3; 0 = no conflict).
CONFLICT_CODES = (None, *ConflictClass)


class Kind(enum.IntEnum):
    """Normalised page events (``page_events.kind``), in tie-break order at equal time/line."""

    RESET = 0  # ADVISE: every page of the migration starts missing (or unknown)
    MIG_DISCARD = 1  # ram_discard_range: migration drops the page
    LOAD = 2  # ram_load_loop: precopy copy -> present
    FAULT = 3  # postcopy_ram_fault_thread_request / postcopy_page_req_add: requested
    RECEIVE = 4  # ram_load_postcopy_loop: on the wire / being assembled
    PLACE = 5  # postcopy_place_page(_zero): present
    INFLATE = 6  # balloon request, direction inflate
    DEFLATE = 7  # balloon request, direction deflate
    BALLOON_UNKNOWN = 8  # balloon request whose direction could not be resolved


class State(enum.IntEnum):
    UNKNOWN = 0
    ABSENT = 1
    REQUESTED = 2
    IN_TRANSIT = 3
    PRESENT = 4


class Outcome(enum.IntEnum):
    """What happened to one inflate request under a policy (or in QEMU, observed)."""

    APPLIED = 0
    DROPPED = 1
    DEFERRED_APPLIED = 2  # queued, applied once at END
    CANCELLED = 3  # queued, cancelled at END (a later deflate, or applied once already)
    UNKNOWN = 4
