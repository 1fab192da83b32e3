"""The names of every queue eduCloud uses; nothing else spells a queue name."""

from __future__ import annotations

from luhyaapi.validators import NAME_RE, validate_name

CLC_STATUS = "clc.status"
CC_STATUS_PREFIX = "cc.status."
NODE_COMMANDS_PREFIX = "cmd."
JOBS_PREFIX = "jobs."
DEAD_SUFFIX = ".dead"


def cc_status(cluster: str) -> str:
    """Status of a cluster's NCs and SCs, consumed by its CC (which forwards it to CLC_STATUS)."""
    return CC_STATUS_PREFIX + validate_name(cluster, "cluster")


def node_commands(node: str) -> str:
    """Commands for one NC; only that NC consumes it."""
    return NODE_COMMANDS_PREFIX + validate_name(node, "node")


def jobs_queue(role: str) -> str:
    """The periodic jobs of a role (``luhyaapi.jobs``), sent by Celery beat; a host of the role runs each."""
    return JOBS_PREFIX + validate_name(role, "role")


def kind_of(queue: str) -> tuple[str, str]:
    """Which of the queues above ``queue`` is, and whose: ``(CLC_STATUS, "")``, ``(CC_STATUS_PREFIX, cluster)`` or
    ``(NODE_COMMANDS_PREFIX, node)``; ValueError for a name this module does not make."""
    if queue == CLC_STATUS:
        return CLC_STATUS, ""
    for prefix in (CC_STATUS_PREFIX, NODE_COMMANDS_PREFIX):
        subject = queue.removeprefix(prefix)
        if subject != queue and NAME_RE.fullmatch(subject):
            return prefix, subject
    raise ValueError(f"{queue!r} is not a queue of eduCloud")


def dead_letters(queue: str) -> str:
    """Where messages that failed on ``queue`` are parked with their reason."""
    return queue + DEAD_SUFFIX


def boss_status_queue(role: str, cluster: str) -> str:
    """The queue a role heartbeats to: nc and sc report to their CC, every other role to the CLC."""
    return cc_status(cluster) if role in ("nc", "sc") else CLC_STATUS
