"""The Celery workers of this cluster's nodes, as Celery's own inspection finds them on the cluster's broker: which
answer, what each runs now, how many slots it has and how many tasks it has run since it started."""

from __future__ import annotations

import logging

import kombu.exceptions

from cc.models import ClusterNode, CommandTask
from luhyaapi.bus import BusUnavailable
from luhyaapi.commands import WORKER_PREFIX, op_of_task, worker_name

logger = logging.getLogger(__name__)

INSPECT_SECONDS = 1.5


def cluster_workers(broker_url: str, timeout: float = INSPECT_SECONDS) -> list[dict]:
    """One row per node controller of the cluster, and per worker that answered for a node the cluster does not know:
    ``node``, ``worker``, ``online`` (it answered), ``slots``, ``processed`` (tasks run since it started) and
    ``active`` (each running task's ``task_id``, ``op`` and ``tid`` as the CC sent it)."""
    from educloud.celery import app

    nodes = list(ClusterNode.objects.filter(role="nc").values_list("name", flat=True))
    try:
        with app.connection_for_write(broker_url) as connection:
            # Addressed to the known workers, so the answer comes as soon as every one of them replied.
            inspector = app.control.inspect(timeout=timeout, connection=connection,
                                            destination=[worker_name(node) for node in nodes] or None,
                                            limit=len(nodes) or None)
            stats = inspector.stats() or {}
            active = inspector.active() or {}
    except (kombu.exceptions.OperationalError, OSError) as exc:
        raise BusUnavailable(f"the cluster's broker did not answer: {exc}") from exc
    rows = {node: _row(node, worker_name(node), stats, active) for node in nodes}
    for worker in sorted(set(stats) | set(active)):
        node = worker.removeprefix(WORKER_PREFIX)
        if node not in rows:
            rows[node] = _row(node, worker, stats, active) | {"unknown_node": True}
    _name_tasks(rows.values())
    return sorted(rows.values(), key=lambda row: row["node"])


def _row(node: str, worker: str, stats: dict, active: dict) -> dict:
    worker_stats = stats.get(worker, {})
    running = [{"task_id": task.get("id", ""), "op": op_of_task(task.get("name", "")) or task.get("name", ""),
                "started": task.get("time_start")} for task in active.get(worker, [])]
    return {"node": node, "worker": worker, "online": worker in stats or worker in active,
            "slots": (worker_stats.get("pool") or {}).get("max-concurrency", 0),
            "processed": sum((worker_stats.get("total") or {}).values()), "active": running,
            "unknown_node": False}


def _name_tasks(rows) -> None:
    """Each running task with the CLC task it belongs to, from the CC's record of what it sent."""
    ids = [task["task_id"] for row in rows for task in row["active"]]
    tids = dict(CommandTask.objects.filter(task_id__in=ids).values_list("task_id", "tid"))
    for row in rows:
        for task in row["active"]:
            task["tid"] = tids.get(task["task_id"], "")
