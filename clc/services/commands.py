"""Sending commands down to nodes: the CLC asks the node's cluster controller, which queues it for the node."""

from __future__ import annotations

import logging

from django.db.models import QuerySet

from luhyaapi import trust
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import Server

logger = logging.getLogger(__name__)


# The ops the API's ``nodes/<name>/commands/`` passes on as they are: those that change no record. Every other op
# has an API of its own that keeps the CLC's records in step with the node (a stop sent past the instance's record
# would leave it "running" on the console).
DIRECT_OPS = frozenset({"status/report"})
OWN_API = {"instance/": "instances/<id>/run/, stop/, DELETE instances/<id>/ or PATCH its monitoring",
           "image/": "images/<id>/prepare/", "host/": "hosts/<mac>/poweroff/ or servers/nc/<name>/poweroff/"}


class CommandError(Exception):
    """A command could not be sent; ``status`` is the HTTP status that says why, ``field`` the request field at
    fault if any."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def online_servers(role: str, cluster: str = "") -> QuerySet:
    """The online servers of ``role`` that can be called (an API address known), of ``cluster`` if given."""
    servers = Server.objects.filter(role=role, state=LivenessChoices.ONLINE).exclude(api_url="")
    return servers.filter(cluster=cluster) if cluster else servers


def online_controllers(cluster: str = "") -> list[Server]:
    """The online cluster controllers that can be called (of ``cluster`` if given), most recently heard first."""
    return list(online_servers(RoleChoices.CC, cluster).order_by("-last_seen", "name"))


def controller_client(controller: Server) -> RoleClient:
    """A signed client for one cluster controller."""
    return RoleClient(controller.api_url, own_key())


def send_node_command(node_name: str, op: str, paras: dict | None = None, tid: str = "") -> dict:
    """Queue command ``op`` for NC ``node_name`` through its cluster's CC; return the CC's answer (``msg_id``).
    CommandError 404 for an unknown node, 409 for one whose key is not trusted (revoked: it is sent nothing) or whose
    cluster has no online CC, 502 when the CC does not take it."""
    node = Server.objects.filter(role=RoleChoices.NC, name=node_name).first()
    if node is None:
        raise CommandError(404, f"no node controller named {node_name!r}")
    if trust.peer(node_name) is None:
        raise CommandError(409, f"node controller {node_name!r} is not trusted (its key is not active): it is sent "
                                "no commands")
    controllers = online_controllers(node.cluster)
    if not controllers:
        raise CommandError(409, f"cluster {node.cluster!r} of node {node_name!r} has no online cluster controller")
    controller = controllers[0]
    client = controller_client(controller)
    try:
        answer = client.post(f"/cc/api/1.0/nodes/{node_name}/commands/", {"op": op, "tid": tid, "paras": paras or {}})
    except RemoteError as exc:
        logger.warning("commands: %s for %s via cc %s failed: %s", op, node_name, controller.name, exc)
        raise CommandError(502, f"cluster controller {controller.name} did not take the command: {exc.detail}") from exc
    logger.info("commands: %s queued for %s via cc %s (%s)", op, node_name, controller.name, answer.get("msg_id"))
    return answer


def send_direct_command(node_name: str, op: str, paras: dict) -> dict:
    """``send_node_command`` for the API's callers: only the ``DIRECT_OPS`` (a 400 naming where the others go)."""
    if op not in DIRECT_OPS:
        where = next((api for prefix, api in OWN_API.items() if op.startswith(prefix)), "")
        raise CommandError(400, f"{op} is not sent directly" + (f": use {where}" if where else "")
                           + f"; direct ops: {', '.join(sorted(DIRECT_OPS))}", field="op")
    return send_node_command(node_name, op, paras)
