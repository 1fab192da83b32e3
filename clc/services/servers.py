"""Taking servers out of the cloud and asking machines for their status now: drain a node controller (its cluster
places nothing new on it), forget a server (its record removed and its key revoked) once nothing depends on it, and
refresh (a server, or a classroom PC's node controller, publishes its status at once)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from clc.services import authz, enrolment
from clc.services.commands import CommandError, controller_client, online_controllers, send_node_command
from clc.services.hosts import MachineError, node_of, own_node_problem
from clc.services.status import as_datetime, host_key, server_key
from luhyaapi import reporting
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key
from luhyadb.choices import InstanceStateChoices, KeyStateChoices, LivenessChoices, RoleChoices
from luhyadb.models import Host, HostCredential, Instance, Server

logger = logging.getLogger(__name__)

REPORT_OP = "status/report"
# An instance in one of these states holds its node's resources (or is about to); a persistent one also holds its
# disk there while stopped or failed.
HOLDING_STATES = (InstanceStateChoices.SCHEDULED, InstanceStateChoices.PREPARING, InstanceStateChoices.BOOTING,
                  InstanceStateChoices.RUNNING, InstanceStateChoices.STOPPING, InstanceStateChoices.SUBMITTING,
                  InstanceStateChoices.DELETING)


def _cc_call(server: Server, method: str, path: str, body: dict | None = None) -> dict | None:
    """Call the online CC of ``server``'s cluster; None if the CC does not know the node (404). MachineError 409
    without an online CC, 502 when it fails, and the CC's own refusal (409) passed on with its reason."""
    controllers = online_controllers(server.cluster)
    if not controllers:
        raise MachineError(409, f"cluster {server.cluster!r} of {server} has no online cluster controller to ask")
    client = controller_client(controllers[0])
    try:
        if method == "DELETE":
            return client.request("DELETE", path)
        return client.post(path, body or {})
    except RemoteError as exc:
        if exc.status == 404:
            return None
        if exc.status == 409:
            raise MachineError(409, f"cluster controller {controllers[0].name} refused: {exc.detail}") from exc
        logger.warning("servers: %s %s on cc %s failed: %s", method, path, controllers[0].name, exc)
        raise MachineError(502, f"cluster controller {controllers[0].name} did not answer: {exc.detail}") from exc


def drain_server(server: Server, draining: bool = True) -> Server:
    """Drain a node controller: its cluster controller places no new instance on it (what it runs goes on), the
    first step of removing it; ``draining`` false takes it back. MachineError 409 for another role or a cluster
    without an online CC, 502 when the CC fails. The CC is told first, so the record never says draining while the
    scheduler still places there."""
    if server.role != RoleChoices.NC:
        raise MachineError(409, f"{server} runs no instances: only node controllers are drained")
    _cc_call(server, "POST", f"/cc/api/1.0/nodes/{server.name}/drain/", {"draining": draining})
    Server.objects.filter(pk=server.pk).update(draining=draining)
    server.draining = draining
    logger.warning("servers: %s %s", server, "draining" if draining else "no longer draining")
    return server


def instances_on(server: Server) -> list[str]:
    """The instances that still need node controller ``server``: running there (or on their way), or persistent
    with their disk there."""
    held = (Instance.objects.filter(cluster=server.cluster, node=server.name)
            .filter(Q(state__in=HOLDING_STATES) | Q(persistent=True))
            .exclude(state__in=(InstanceStateChoices.DEFINED, InstanceStateChoices.DELETED)))
    return list(held.order_by("instance_id").values_list("instance_id", flat=True))


def _forget_problem(server: Server) -> str:
    """Why ``server`` may not be forgotten now, or ""."""
    if server.role == RoleChoices.CLC and server.name == settings.EDUCLOUD.name:
        return "it is this cloud controller"
    if server.role == RoleChoices.NC:
        if not server.draining:
            return "it is not draining: drain it first, so that nothing new is placed on it"
        held = instances_on(server)
        if held:
            return f"instances {', '.join(held)} still run or keep their disk there: stop and delete them first"
        return ""
    if server.state == LivenessChoices.ONLINE:
        return "it is online: stop its service first (it would come back with its next heartbeat)"
    if server.role == RoleChoices.CC and not Server.objects.filter(role=RoleChoices.CC, cluster=server.cluster) \
            .exclude(pk=server.pk).exists():
        nodes = list(Server.objects.filter(role__in=(RoleChoices.NC, RoleChoices.SC), cluster=server.cluster)
                     .order_by("name").values_list("name", flat=True))
        if nodes:
            return f"it is the only controller of cluster {server.cluster}, which still has {', '.join(nodes)}"
    return ""


def forget_server(server: Server, actor: authz.Actor) -> dict:
    """Remove a server from the cloud: a node controller once drained and holding no instance (its CC forgets it
    too), another role once offline (a CC once its cluster has no node left or another CC). Its record and cached
    status go; its key is revoked unless another role of the same host still uses it. MachineError 409 naming why
    not (the instances a node still holds), 502 when the node's CC fails. Returns what was done."""
    problem = _forget_problem(server)
    if problem:
        raise MachineError(409, f"{server} cannot be forgotten: {problem}")
    cc_forgot = None
    if server.role == RoleChoices.NC:
        # A cluster without an online CC cannot be asked; the revoked key keeps the node out when the CC is back.
        cc_forgot = bool(online_controllers(server.cluster)) and \
            _cc_call(server, "DELETE", f"/cc/api/1.0/nodes/{server.name}/") is not None
    revoked = False
    with transaction.atomic():
        server.delete()
        still_used = (Server.objects.filter(name=server.name).exists()
                      or Host.objects.filter(name=server.name).exists())
        credential = HostCredential.objects.filter(name=server.name).first()
        if credential is not None and not still_used and credential.state != KeyStateChoices.REVOKED:
            enrolment.revoke(credential, actor)
            revoked = True
    cache.delete(server_key(server.role, server.name))
    logger.warning("servers: %s forgotten by %s (key revoked: %s)", server, actor.username, revoked)
    return {"role": server.role, "name": server.name, "key_revoked": revoked, "cc_forgot": cc_forgot}


def with_reported_times(machines: list[Server] | list[Host]) -> None:
    """Set each server's or PC's ``last_seen`` to its newest report: the status cache's (every heartbeat, a
    refresh's answer too) when newer than the record's (written at most every ``db_touch_seconds`` while nothing
    changes)."""
    keys = {(server_key(m.role, m.name) if isinstance(m, Server) else host_key(m.mac)): m for m in machines}
    for key, report in cache.get_many(list(keys)).items():
        reported = report.get("last_seen") if isinstance(report, dict) else None
        machine = keys[key]
        if isinstance(reported, int | float) and (machine.last_seen is None
                                                   or reported > machine.last_seen.timestamp()):
            machine.last_seen = as_datetime(reported)


def _ask_report(node: Server, what: str) -> dict:
    with_reported_times([node])
    try:
        answer = send_node_command(node.name, REPORT_OP)
    except CommandError as exc:
        raise MachineError(exc.status, f"{what} was not asked for its status: {exc}") from exc
    logger.info("servers: %s asked for its status (command %s)", what, answer.get("msg_id"))
    return {"node": node.name, "msg_id": answer.get("msg_id", ""), "op": REPORT_OP,
            "last_seen": node.last_seen.isoformat() if node.last_seen else None}


def refresh_server(server: Server) -> dict:
    """Ask a server to publish its status at once; the new report arrives as every heartbeat does and moves
    ``last_seen``. A node controller gets ``status/report`` through its CC (409/502 as ``send_node_command``); this
    CLC wakes its own heartbeat; other roles are asked with a signed ``POST /<role>/api/1.0/status/report/`` at
    their address (MachineError 409 without an address or when its heartbeat runs in another process, 502 when it
    cannot be reached)."""
    if server.role == RoleChoices.NC:
        return _ask_report(server, str(server))
    with_reported_times([server])
    asked = {"node": server.name, "msg_id": "", "op": REPORT_OP,
             "last_seen": server.last_seen.isoformat() if server.last_seen else None}
    if server.role == RoleChoices.CLC and server.name == settings.EDUCLOUD.name:
        if not reporting.report_now(RoleChoices.CLC):
            raise MachineError(409, f"{server} runs no heartbeat in this process; it reports by itself every "
                                    f"{server.heartbeat_seconds:g} s")
        return asked
    if not server.api_url:
        raise MachineError(409, f"{server} registered no address to ask; it reports by itself every "
                                f"{server.heartbeat_seconds:g} s")
    try:
        RoleClient(server.api_url, own_key()).post(f"/{server.role}/api/1.0/status/report/", {})
    except RemoteError as exc:
        if exc.status == 409:
            raise MachineError(409, f"{server} was not asked for its status: {exc.detail}") from exc
        logger.warning("servers: asking %s for its status failed: %s", server, exc)
        raise MachineError(502, f"{server} was not asked for its status: {exc.detail}") from exc
    logger.info("servers: %s asked for its status", server)
    return asked


def refresh_host(host: Host) -> dict:
    """Ask a classroom PC for its status now, through the node controller it runs (its heartbeat carries the PC's).
    MachineError 409 if it runs none of its own (``own_node_problem``); 409/502 as ``send_node_command``."""
    node = node_of(host)
    problem = own_node_problem(host, node)
    if problem:
        raise MachineError(409, f"host {host.name} cannot be asked for its status: {problem}")
    return _ask_report(node, f"host {host.name}")


def admin_actions(server: Server) -> dict[str, bool]:
    """Which of refresh, drain, undrain and forget the servers page offers for ``server`` (each checks again when
    asked)."""
    node = server.role == RoleChoices.NC
    this_clc = server.role == RoleChoices.CLC and server.name == settings.EDUCLOUD.name
    return {"refresh": True, "drain": node and not server.draining, "undrain": node and server.draining,
            "forget": not this_clc}
