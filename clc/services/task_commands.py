"""What the nodes do for one task, as Celery shows it: the commands its cluster's CC sent for the task and the live
state of each (queued, received, started, progress, retrying, done, failed; the worker, the retries, the reason),
asked of the cluster's online CC over a signed call (``GET /cc/api/1.0/tasks/?tid=``)."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from clc.services.commands import controller_client, online_controllers
from clc.services.hosts import MachineError
from luhyaapi.client import RemoteError
from luhyadb.models import Instance, TaskTransaction

logger = logging.getLogger(__name__)

TASKS_PATH = "/cc/api/1.0/tasks/"


def cluster_of(task: TaskTransaction) -> str:
    """The cluster the task's instance is placed in ("" when it is placed nowhere yet)."""
    return Instance.objects.filter(instance_id=task.instance_id).values_list("cluster", flat=True).first() or ""


def task_commands(task: TaskTransaction) -> dict:
    """``{"cluster", "controller", "commands": [...]}``, the newest command first. MachineError 409 when the task's
    instance is placed in no cluster or its cluster has no online CC, 502 when the CC does not answer."""
    cluster = cluster_of(task)
    if not cluster:
        raise MachineError(409, "the task's instance is not placed in a cluster: no node has a command of it")
    controllers = online_controllers(cluster)
    if not controllers:
        raise MachineError(409, f"cluster {cluster!r} has no online cluster controller to ask for the task's commands")
    controller = controllers[0]
    try:
        answer = controller_client(controller).get(f"{TASKS_PATH}?{urlencode({'tid': task.tid})}")
    except RemoteError as exc:
        logger.warning("task commands: cc %s did not answer for %s: %s", controller.name, task.tid, exc)
        raise MachineError(502, f"cluster controller {controller.name} did not report the task's commands: "
                                f"{exc.detail}") from exc
    return {"cluster": cluster, "controller": controller.name, "commands": answer.get("results", [])}
