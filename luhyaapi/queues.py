"""The names of every queue eduCloud uses; nothing else spells a queue name."""

from __future__ import annotations

from luhyaapi.validators import validate_name

CLC_STATUS = "clc.status"
DEAD_SUFFIX = ".dead"


def cc_status(cluster: str) -> str:
    """Status of a cluster's NCs and SCs, consumed by its CC (which forwards it to CLC_STATUS)."""
    return f"cc.status.{validate_name(cluster, 'cluster')}"


def node_commands(node: str) -> str:
    """Commands for one NC; only that NC consumes it."""
    return f"cmd.{validate_name(node, 'node')}"


def dead_letters(queue: str) -> str:
    """Where messages that failed on ``queue`` are parked with their reason."""
    return queue + DEAD_SUFFIX


def boss_status_queue(role: str, cluster: str) -> str:
    """The queue a role heartbeats to: nc and sc report to their CC, every other role to the CLC."""
    return cc_status(cluster) if role in ("nc", "sc") else CLC_STATUS
