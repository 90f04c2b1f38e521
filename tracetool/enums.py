"""Numeric QEMU enumerations that older trace formats print as numbers (reference section 2.6)."""

from __future__ import annotations

#: MigrationStatus as printed by ``migrate_set_state new state %d`` (QEMU <= 2.10).
MIGRATION_STATUS = {
    0: "none",
    1: "setup",
    2: "cancelling",
    3: "cancelled",
    4: "active",
    5: "postcopy-active",
    6: "completed",
    7: "failed",
    8: "colo",
}

#: PostcopyState (destination), unchanged 2.5 -> 10.2.
POSTCOPY_STATE = {0: "none", 1: "advise", 2: "discard", 3: "listening", 4: "running", 5: "end"}

#: MIG_CMD values of ``savevm_command_send`` / numeric ``loadvm_process_command`` (<= 6.2).
MIG_CMD = {
    0: "INVALID",
    1: "OPEN_RETURN_PATH",
    2: "PING",
    3: "POSTCOPY_ADVISE",
    4: "POSTCOPY_LISTEN",
    5: "POSTCOPY_RUN",
    6: "POSTCOPY_RAM_DISCARD",
    7: "PACKAGED",
    8: "ENABLE_COLO",
    9: "POSTCOPY_RESUME",
    10: "RECV_BITMAP",
    11: "SWITCHOVER_START",
}

#: MIG_RP_MSG values of ``migrate_send_rp_message``.
MIG_RP_MSG = {
    0: "INVALID",
    1: "SHUT",
    2: "PONG",
    3: "REQ_PAGES_ID",
    4: "REQ_PAGES",
    5: "RECV_BITMAP",
    6: "RESUME_ACK",
    7: "SWITCHOVER_ACK",
}


def migration_state(value: object) -> str:
    """A ``migrate_set_state`` value as a state name, whatever era printed it."""
    text = str(value)
    if text.isdigit():
        return MIGRATION_STATUS.get(int(text), text)
    return text
