"""Classroom PCs and servers as machines: finding them, changing and deleting a PC's record, waking them (their
cluster controller sends the magic packet on its LAN) and powering them off (their node controller does it)."""

from __future__ import annotations

import ipaddress
import logging
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet

from clc.services import authz
from clc.services.commands import CommandError, controller_client, online_controllers, send_node_command
from clc.services.status import host_key, server_key
from luhyaapi.client import RemoteError
from luhyaapi.validators import InvalidValue, validate_ip, validate_mac, validate_name
from luhyaapi.wol import validate_nic_mac, validate_wake_target
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import ClusterNetwork, Host, Instance, OwnerGroup, Server

logger = logging.getLogger(__name__)

WAKE_PATH = "/cc/api/1.0/hosts/wake/"
POWEROFF_OP = "host/poweroff"
# The servers that sit on a cluster's LAN, where its CC can reach them with a magic packet.
WAKEABLE_ROLES = (RoleChoices.NC, RoleChoices.SC)
EDITABLE_HOST_FIELDS = ("location", "owner_group", "auto_sync", "auto_poweroff", "offline_enabled", "is_pad")


class RunningDesktops(NamedTuple):
    """The desktops a PC runs: those the person may read, and how many others."""

    shown: list[Instance]
    others: int


class MachineError(Exception):
    """A wake or power-off was refused or failed; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def find_hosts(query: str = "", state: str = "") -> QuerySet[Host]:
    """Classroom PCs whose name, MAC, IP, location or cluster contain ``query``, in ``state`` if given."""
    hosts = Host.objects.select_related("owner_group")
    if query:
        hosts = hosts.filter(Q(name__icontains=query) | Q(mac__icontains=query) | Q(ip__icontains=query)
                             | Q(location__icontains=query) | Q(cluster__icontains=query))
    if state:
        hosts = hosts.filter(state=state)
    return hosts


def find_servers(query: str = "", role: str = "", state: str = "") -> QuerySet[Server]:
    """Servers whose name, MAC, IP or cluster contain ``query``, of ``role`` and in ``state`` if given."""
    servers = Server.objects.all()
    if query:
        servers = servers.filter(Q(name__icontains=query) | Q(mac__icontains=query) | Q(ip__icontains=query)
                                 | Q(cluster__icontains=query))
    if role:
        servers = servers.filter(role=role)
    if state:
        servers = servers.filter(state=state)
    return servers


def node_of(host: Host) -> Server | None:
    """The node controller a classroom PC runs (a "localnc"): the NC registered under the PC's name."""
    return Server.objects.filter(role=RoleChoices.NC, name=host.name).first()


def nodes_of(hosts: list[Host]) -> dict[str, Server]:
    """``node_of`` for many PCs in one query, by PC name."""
    return {node.name: node for node in Server.objects.filter(role=RoleChoices.NC, name__in={h.name for h in hosts})}


def running_desktops(actor: authz.Actor, hosts: list[Host]) -> dict[str, RunningDesktops]:
    """What each PC runs now, by PC name: the local desktops its node controller's last heartbeat (in the status
    cache) lists as running; nothing for a PC whose node controller is not online. Desktops the person may not read
    are only counted, not named."""
    live = cache.get_many([server_key(RoleChoices.NC, host.name) for host in hosts])
    running: dict[str, list[str]] = {}
    for host in hosts:
        report = live.get(server_key(RoleChoices.NC, host.name)) or {}
        if report.get("state") == LivenessChoices.ONLINE:
            running[host.name] = [vm["insid"] for vm in report.get("vms", []) if vm.get("state") == "running"]
    ids = {insid for insids in running.values() for insid in insids}
    readable = {instance.instance_id: instance
                for instance in authz.readable(actor, Instance.objects.filter(instance_id__in=ids))}
    return {name: RunningDesktops([readable[insid] for insid in insids if insid in readable],
                                  sum(insid not in readable for insid in insids))
            for name, insids in running.items() if insids}


def server_actions(server: Server) -> dict[str, bool]:
    """Which of ``wake`` and ``poweroff`` a server's role offers: the CC wakes what sits on its cluster's LAN (nc,
    sc); only node controllers take commands. Its state is checked when one is asked for."""
    return {"wake": server.role in WAKEABLE_ROLES, "poweroff": server.role == RoleChoices.NC}


def validate_location(value: str, field: str = "location") -> str:
    """Where a PC is, as free text: stripped; control characters are refused."""
    if any(ord(char) < 32 or char == "\x7f" for char in value):
        raise InvalidValue(field, "may not contain control characters")
    return value.strip()


def add_host(*, name: str, mac: str, ip: str, cluster: str, location: str = "", owner_group: OwnerGroup | None = None,
             auto_sync: bool = True, auto_poweroff: bool = False, offline_enabled: bool = True,
             is_pad: bool = False) -> Host:
    """Record a classroom PC before it ever starts (to wake it, or to give it an owner-group first). It is offline
    until it registers; its registration then refreshes what it reports (name, address, resources) and keeps what
    is set here. Raises InvalidValue naming the field for a bad value, MachineError 409 if the MAC is known."""
    mac = validate_mac(mac, "mac")
    values = {"name": validate_name(name, "name"), "ip": validate_ip(ip, "ip"),
              "cluster": validate_name(cluster, "cluster")}
    location = validate_location(location)
    if Host.objects.filter(mac=mac).exists():
        raise MachineError(409, f"a classroom PC with MAC {mac} is already recorded")
    host = Host.objects.create(mac=mac, location=location, owner_group=owner_group, auto_sync=auto_sync,
                               auto_poweroff=auto_poweroff, offline_enabled=offline_enabled, is_pad=is_pad,
                               state=LivenessChoices.OFFLINE, **values)
    logger.info("hosts: %s (%s) added by hand", host.name, host.mac)
    return host


def change_host(host: Host, *, location: str, owner_group: OwnerGroup | None, auto_sync: bool, auto_poweroff: bool,
                offline_enabled: bool, is_pad: bool) -> Host:
    """Change what the administrator owns of a PC's record (where it is, its owner-group, its runtime flags). Only
    these fields are written, so a registration or heartbeat folded meanwhile keeps its address and liveness."""
    host.location, host.owner_group = location.strip(), owner_group
    host.auto_sync, host.auto_poweroff, host.offline_enabled, host.is_pad = (auto_sync, auto_poweroff,
                                                                             offline_enabled, is_pad)
    host.save(update_fields=list(EDITABLE_HOST_FIELDS))
    logger.info("hosts: %s (%s) changed", host.name, host.mac)
    return host


def delete_host(host: Host) -> None:
    """Forget a PC; it is added again when it next registers (at its next start)."""
    host.delete()
    cache.delete(host_key(host.mac))
    logger.info("hosts: %s (%s) deleted", host.name, host.mac)


def _wake(what: str, cluster: str, mac: str, broadcast: str) -> dict:
    """Ask the cluster's online CC to send the magic packet for ``mac``; nothing is sent if a value is wrong."""
    target = validate_wake_target(broadcast, _lan_broadcasts(cluster), "broadcast") if broadcast else ""
    if not mac:
        raise MachineError(409, f"{what} has no MAC address recorded, so it cannot be woken")
    try:
        nic = validate_nic_mac(mac, "mac")
    except InvalidValue as exc:
        raise MachineError(409, f"{what} cannot be woken: {exc.message}") from None
    controllers = online_controllers(cluster)
    if not controllers:
        raise MachineError(409, f"cluster {cluster!r} of {what} has no online cluster controller to send the "
                                "magic packet on its LAN")
    controller = controllers[0]
    try:
        answer = controller_client(controller).post(WAKE_PATH, {"mac": nic, "broadcast": target})
    except RemoteError as exc:
        logger.warning("hosts: waking %s via cc %s failed: %s", what, controller.name, exc)
        raise MachineError(502, f"cluster controller {controller.name} did not send the magic packet for {what}: "
                                f"{exc.detail}") from exc
    logger.info("hosts: magic packet for %s (%s) sent by cc %s to %s", what, nic, controller.name,
                answer.get("broadcast"))
    return {"mac": nic, "controller": controller.name, "broadcast": answer.get("broadcast", target),
            "interface": answer.get("interface", "")}


def _lan_broadcasts(cluster: str) -> set[str]:
    network = ClusterNetwork.objects.filter(cluster=cluster).first()
    return {str(ipaddress.IPv4Network(network.lan_subnet).broadcast_address)} if network else set()


def wake_host(host: Host, broadcast: str = "") -> dict:
    """Wake a classroom PC: its cluster's CC sends the magic packet to ``broadcast`` (default: the CC's
    ``cc.wake_broadcast``). Returns what was sent and by which CC. ``InvalidValue`` (``broadcast``) for a bad
    address; ``MachineError`` 409 if the PC has no usable MAC or its cluster no online CC, 502 if the CC failed.
    That it started shows when it registers."""
    return _wake(f"host {host.name}", host.cluster, host.mac, broadcast)


def wake_server(server: Server, broadcast: str = "") -> dict:
    """Wake a node or storage controller the same way (``wake_host``); other roles are not on a cluster's LAN
    (409)."""
    if not server_actions(server)["wake"]:
        raise MachineError(409, f"{server.role}:{server.name} is woken by no cluster controller; only node and "
                                "storage controllers sit on a cluster's LAN")
    return _wake(f"{server.role}:{server.name}", server.cluster, server.mac, broadcast)


def _power_off(node: Server, what: str) -> dict:
    """Ask the node controller ``node`` (through its CC) to power its machine off."""
    if node.state != LivenessChoices.ONLINE:
        raise MachineError(409, f"{what} is {node.state}: there is nothing to power off")
    config = settings.EDUCLOUD
    if node.ip == config.ip or Server.objects.filter(role=RoleChoices.CLC, ip=node.ip).exists():
        raise MachineError(409, f"the cloud controller runs on the machine of {what} ({node.ip}); power it off there,"
                                " not from its own console")
    try:
        answer = send_node_command(node.name, POWEROFF_OP)
    except CommandError as exc:
        raise MachineError(exc.status, f"{what} was not asked to power off: {exc}") from exc
    logger.warning("hosts: %s asked to power off (node %s, command %s)", what, node.name, answer.get("msg_id"))
    return {"node": node.name, "msg_id": answer.get("msg_id", ""), "op": POWEROFF_OP}


def own_node_problem(host: Host, node: Server | None) -> str:
    """Why ``node`` (``node_of(host)``) is not the node controller the PC runs itself ("" if it is): there is none,
    or it is of another cluster or has another MAC (not the same machine)."""
    if node is None:
        return "it runs no node controller registered with the cloud"
    if node.cluster != host.cluster:
        return (f"node controller {node.name} is in cluster {node.cluster!r}, the PC in {host.cluster!r}: not the same "
                "machine")
    if node.mac and node.mac != host.mac:
        return f"node controller {node.name} has MAC {node.mac}, the PC {host.mac}: not the same machine"
    return ""


def power_off_host(host: Host) -> dict:
    """Power a classroom PC off through the node controller it runs (``node_of``). ``MachineError`` 409 if it runs
    none of its own (``own_node_problem``), if it is not online or if the CLC runs there; 409/502 as
    ``send_node_command`` when the command cannot be queued."""
    node = node_of(host)
    problem = own_node_problem(host, node)
    if problem:
        raise MachineError(409, f"host {host.name} cannot be powered off from here: {problem}")
    return _power_off(node, f"host {host.name}")


def power_off_server(server: Server) -> dict:
    """Power a node controller's machine off (as ``power_off_host``); other roles take no commands (409)."""
    if not server_actions(server)["poweroff"]:
        raise MachineError(409, f"{server.role}:{server.name} takes no commands; only node controllers can power "
                                "their machine off")
    return _power_off(server, f"{server.role}:{server.name}")
