"""The nodes' Celery workers of every cluster, as each cluster's CC finds them on its broker by Celery's inspection
(``GET /cc/api/1.0/workers/``, signed): online or not, slots, tasks run, what each runs now."""

from __future__ import annotations

import logging

from clc.services.commands import controller_client, online_controllers
from luhyaapi.client import RemoteError
from luhyadb.choices import RoleChoices
from luhyadb.models import Server

logger = logging.getLogger(__name__)

WORKERS_PATH = "/cc/api/1.0/workers/"


def clusters_workers() -> list[dict]:
    """One entry per cluster that has node controllers: ``cluster``, ``controller`` (the CC asked, "" if none is
    online), ``workers`` (rows as the CC answers them) and ``problem`` (why there are none to show)."""
    clusters = sorted(set(Server.objects.filter(role=RoleChoices.NC).values_list("cluster", flat=True)))
    return [_cluster_workers(cluster) for cluster in clusters]


def _cluster_workers(cluster: str) -> dict:
    controllers = online_controllers(cluster)
    if not controllers:
        return {"cluster": cluster, "controller": "", "workers": [],
                "problem": f"cluster {cluster!r} has no online cluster controller to ask for its workers"}
    controller = controllers[0]
    try:
        answer = controller_client(controller).get(WORKERS_PATH)
    except RemoteError as exc:
        logger.warning("workers: cc %s did not report its workers: %s", controller.name, exc)
        return {"cluster": cluster, "controller": controller.name, "workers": [],
                "problem": f"cluster controller {controller.name} did not report its workers: {exc.detail}"}
    return {"cluster": cluster, "controller": controller.name, "workers": answer.get("workers", []), "problem": ""}
