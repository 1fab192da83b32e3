"""The names of every queue eduCloud uses; nothing else spells a queue name."""

from __future__ import annotations

from luhyaapi.validators import NAME_RE, validate_name

CLC_STATUS = "clc.status"
CC_STATUS_PREFIX = "cc.status."
NODE_COMMANDS_PREFIX = "cmd."
JOBS_PREFIX = "jobs."
# Metric samples for the watch role (issue 17), on the cloud's bus: every host's own, and its nodes' relayed by a CC.
WATCH_METRICS = "watch.metrics"
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


# The most a queue holds (bytes of messages waiting) before its oldest messages are dropped, for the queues whose
# messages lose their worth with time: metrics waiting for a watch host that is down, or that the cloud does not
# have, must not fill the broker's memory and disk (at 256 MiB, some hours of a cloud of 10,000 instances).
MAX_BYTES = {WATCH_METRICS: 256 * 2**20}


def max_bytes(queue: str) -> int | None:
    """``MAX_BYTES`` of ``queue``: None for a queue that keeps everything until it is consumed."""
    return MAX_BYTES.get(queue)


def kind_of(queue: str) -> tuple[str, str]:
    """Which of the queues above ``queue`` is, and whose: ``(CLC_STATUS, "")``, ``(WATCH_METRICS, "")``,
    ``(CC_STATUS_PREFIX, cluster)`` or ``(NODE_COMMANDS_PREFIX, node)``; ValueError for a name this module does not
    make."""
    if queue in (CLC_STATUS, WATCH_METRICS):
        return queue, ""
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
