"""Instances of this cluster: placing them on a node, leasing their ports, sending the node its commands, and
following their state as the nodes report it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum

from cc.models import ClusterInstance, ClusterNode, PortLease
from cc.network.addresses import PortPool
from cc.services.command_tasks import queue_command
from cc.services.leases import PoolBusy, PoolUsedUp, lease_next_free
from cc.services.network import (
    AddressPoolExhausted,
    apply_network,
    cluster_network,
    lease_address,
    release_addresses,
    remember_network,
)
from cc.services.scheduler import Candidate, Need, NoNodeFits, pick_node
from cc.services.volumes import export_run_volumes, export_volume, note_detaching
from luhyaapi import trust
from luhyaapi.messages import Command, InsStatus, InstanceRunRequest
from luhyaapi.vmspec import RDP_PORT, ConsoleSpec, NicSpec, PortForward, RuntimeOptions, guest_devices
from luhyaapi.volumes import (
    ATTACH_OP,
    DETACH_OP,
    RUN_VOLUMES,
    RUN_VOLUMES_MISSING,
    VolumeAttachParas,
    VolumeDetachParas,
    VolumeRef,
    VolumeTarget,
    volume_task_id,
)

logger = logging.getLogger(__name__)

# States in which an instance holds its node's resources and its ports.
ACTIVE_STATES = ("scheduled", "preparing", "booting", "running", "stopping", "submitting")
RELEASING_STATES = ("stopped", "failed", "deleted")
# The roles a node controller may have been enrolled with: a server's nc, or a classroom PC.
NODE_ROLES = frozenset({"nc", trust.PC})


class InstanceRefused(Exception):
    """The cluster will not do what was asked; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _candidates() -> list[Candidate]:
    config = settings.EDUCLOUD
    # The relay writes a node's last_seen only every db_touch_seconds while nothing else changes.
    recent = datetime.now(tz=UTC) - timedelta(seconds=config.offline_after_seconds + config.db_touch_seconds)
    committed = {row["node"]: Need(row["cpus"] or 0, row["memory_mb"] or 0) for row in
                 ClusterInstance.objects.filter(state__in=ACTIVE_STATES).values("node")
                 .annotate(cpus=Sum("cpus"), memory_mb=Sum("memory_mb"))}
    nodes = list(ClusterNode.objects.filter(role="nc"))
    # A node whose key was revoked keeps its row (and heartbeats until its CC stops taking them): it runs nothing more.
    trusted = {name for name, found in trust.peers(node.name for node in nodes).items()
               if found is not None and found.roles & NODE_ROLES and found.cluster == config.cluster}
    return [Candidate(name=node.name, online=bool(node.last_seen and node.last_seen >= recent), cpus=node.cpus,
                      memory_mb=node.memory_mb, free_disk_mb=node.free_disk_mb or node.disk_mb,
                      committed=committed.get(node.name, Need(0, 0)), classroom_pc=node.classroom_pc,
                      trusted=node.name in trusted, cpu_overcommit=config.cpu_overcommit, draining=node.draining)
            for node in nodes]


def lease_ports(insid: str, purposes: list[str], port_range: tuple[int, int]) -> dict[str, int]:
    """Lease one port of the cluster's pool for each purpose; InstanceRefused (409) when the pool is used up."""
    pool = PortPool(*port_range)
    taken = PortLease.objects.filter(port__gte=pool.low, port__lte=pool.high)
    leased: dict[str, int] = {}
    for purpose in purposes:
        try:
            leased[purpose] = lease_next_free(taken, "port", pool.next_unused,
                                              {"instance_id": insid, "purpose": purpose})
        except PoolUsedUp:
            raise InstanceRefused(409, f"the cluster's port pool {pool.low}-{pool.high} is used up") from None
        except PoolBusy:
            raise InstanceRefused(503, "could not lease a port: the pool is changing too fast, try again") from None
    return leased


def release_ports(insid: str) -> int:
    """Give back every port ``insid`` holds; returns how many."""
    released, _ = PortLease.objects.filter(instance_id=insid).delete()
    return released


def _options(request: InstanceRunRequest, node_ip: str, ports: dict[str, int], console: str,
             bridge: str = "") -> RuntimeOptions:
    devices = guest_devices(request.os_type)
    if bridge:  # on the cluster LAN with its DHCP-reserved address: its services are reached there, not forwarded
        nic = NicSpec(mode="bridged", bridge=bridge, model=devices.nic_model, mac=request.mac)
    else:
        forwards = tuple(PortForward(host_ip=node_ip, host_port=ports[f"tcp/{port}"], guest_port=port)
                         for port in request.services)
        nic = NicSpec(mode="nat", model=devices.nic_model, mac=request.mac, forwards=forwards)
    return RuntimeOptions(os_type=request.os_type, memory_mb=request.memory_mb, cpus=request.cpus, nics=(nic,),
                          disk_type=devices.disk_type,
                          # VirtualBox's RDP console authenticates by VRDE: the run's VNC password is not for it.
                          console=ConsoleSpec(protocol=console, listen=node_ip, port=ports["console"],
                                              password=request.console_password if console == "vnc" else ""))


def _access(kind: str, node_ip: str, ports: dict[str, int], services: tuple[int, ...], console: str,
            console_host: str = "", guest_address: str = "") -> dict[str, str]:
    """How a user reaches the instance: its ``console`` (``vnc`` or ``rdp``, as the node's hypervisor serves it)
    through the CC's public address in private mode or the node's own address (for a virtual server also named
    ``management``: how its administrator gets to its screen), and each service at the guest's own (elastic or LAN)
    address when it is bridged, else at the forwarded port: ``http`` for port 80, ``rdp`` (``rdp://host:port``) for
    the guest's Remote Desktop on 3389, ``tcp/<port>`` for any other."""
    host = console_host or node_ip
    access = {"console": f"{console}://{host}:{ports['console']}"}
    if kind == "vs":
        access["management"] = access["console"]
    for port in services:
        address = f"{guest_address}:{port}" if guest_address else f"{host}:{ports[f'tcp/{port}']}"
        if port == 80:
            access["http"] = f"http://{address.removesuffix(':80')}/"
        elif port == RDP_PORT:
            access["rdp"] = f"rdp://{address}"
        else:
            access[f"tcp/{port}"] = address
    return access


def run_instance(broker: str, request: InstanceRunRequest) -> ClusterInstance:
    """Place the instance on a node (the pinned one, or where its persistent disk lives, else the best fit), lease
    its console and service ports, and queue ``instance/run`` for the node and apply the network after the commit.
    The cluster's network settings come with the request (kept, ``remember_network``) or are the copy kept here:
    nothing here calls the CLC, which waits for this answer. Asking again for the same run (same ``seq``) answers
    its placement as it stands, in any state (the CLC asks again when an answer was lost). InstanceRefused: 400
    when the settings sent cannot be read, 409 when the cluster does not run this kind, no node fits (with each
    node's reason) or it already runs."""
    config = settings.EDUCLOUD
    if request.network is not None:
        try:
            net = remember_network(request.network)
        except ValueError as exc:
            raise InstanceRefused(400, str(exc)) from None
    else:
        net = cluster_network()
    kinds = (net.kind,) if net else config.cluster_kinds
    if request.kind not in kinds:
        raise InstanceRefused(409, f"cluster {config.cluster} runs {', '.join(kinds)} instances, not {request.kind}")
    with transaction.atomic():
        existing = ClusterInstance.objects.select_for_update().filter(instance_id=request.insid).first()
        if existing and existing.seq == request.seq:
            if existing.state == "scheduled" and not existing.run_sent:
                # Its command never reached the broker: that is why the CLC asks again.
                _send_run(broker, existing, request)
            return existing
        if existing and existing.state in ACTIVE_STATES:
            raise InstanceRefused(409, f"instance {request.insid} is already {existing.state} on {existing.node}")
        pinned = request.pinned_node or (existing.node if existing and existing.persistent else "")
        need = Need(request.cpus, request.memory_mb, request.disk_mb)
        try:
            chosen = pick_node(need, _candidates(), pinned)
        except NoNodeFits as exc:
            raise InstanceRefused(409, str(exc)) from None
        bridged = net is not None and net.bridges(request.kind)
        release_ports(request.insid)
        release_addresses(request.insid)
        ports = lease_ports(request.insid, ["console"] + ([] if bridged else [f"tcp/{p}" for p in request.services]),
                            net.port_range if net else config.port_range)
        guest_address = ""
        if bridged:
            try:
                guest_address = lease_address(request.insid, net.dhcp, "lan", request.mac)
                if net.mode == "private" and net.eips is not None:
                    guest_address = lease_address(request.insid, net.eips, "eip")
            except AddressPoolExhausted as exc:
                raise InstanceRefused(409, str(exc)) from None
        node = ClusterNode.objects.get(role="nc", name=chosen.name)
        node_ip = node.ip
        options = _options(request, node_ip, ports, node.console_protocol, net.node_bridge if bridged else "")
        record, _ = ClusterInstance.objects.update_or_create(
            instance_id=request.insid,
            defaults={"node": chosen.name, "tid": request.tid, "seq": request.seq, "kind": request.kind,
                      "persistent": request.persistent, "cpus": request.cpus, "memory_mb": request.memory_mb,
                      "disk_mb": request.disk_mb, "state": "scheduled", "options": options.model_dump(mode="json"),
                      "access": _access(request.kind, node_ip, ports, request.services, node.console_protocol,
                                        net.console_host if net else "", guest_address)})
        _send_run(broker, record, request)
        transaction.on_commit(apply_network)
    logger.info("instances: %s scheduled on %s (console port %d)", request.insid, chosen.name, ports["console"])
    return record


def _send_run(broker: str, record: ClusterInstance, request: InstanceRunRequest) -> None:
    """Queue the run's command for its node once the placement is committed, and note that the broker took it. A
    publish that fails then (the broker away longer than its retry window) fails the CLC's call, which asks again
    with the same run number: the command goes again, under the same key, so a node that has it skips it.

    The instance's volumes are exported to the node then too, after the commit (the SCs are called outside the
    transaction and its row lock): the command carries every target (``RUN_VOLUMES``, empty for none, so the node
    keeps exactly those) and why each volume that could not be exported is missing (``RUN_VOLUMES_MISSING``).
    Its ``labels`` are the instance's image, owner group and monitoring switch, for the node's metrics of it."""
    node, paras = record.node, {"insid": request.insid, "image": request.image.model_dump(), "options": record.options,
                                "persistent": request.persistent, "boot": request.boot, "disk_mb": request.disk_mb,
                                # Its metrics' labels, which the node keeps (nc.services.metrics.InstanceLabels).
                                "labels": {"image_id": request.image.image_id, "owner_group": request.owner_group,
                                           "monitoring": request.monitoring}}

    def publish() -> None:
        targets, missing = export_run_volumes(request.volumes, node, request.insid)
        command = Command(op="instance/run", tid=request.tid, seq=request.seq,
                          paras=paras | {RUN_VOLUMES: [target.model_dump(mode="json") for target in targets],
                                         RUN_VOLUMES_MISSING: missing})
        queue_command(broker, node, command)
        ClusterInstance.objects.filter(pk=record.pk, seq=request.seq).update(run_sent=True)

    transaction.on_commit(publish)


def _send(broker: str, insid: str, op: str, seq: int, state: str, **paras) -> ClusterInstance:
    with transaction.atomic():
        record = ClusterInstance.objects.select_for_update().filter(instance_id=insid).first()
        if record is None:
            raise InstanceRefused(404, f"instance {insid} is not placed in this cluster")
        # A newer seq (a submit is one) makes the node's reports of the older one late reports, ignored below.
        record.state, record.seq = state, max(seq, record.seq)
        record.save(update_fields=["state", "seq", "updated"])
        command = Command(op=op, tid=record.tid, seq=record.seq,
                          paras={"insid": insid, "persistent": record.persistent} | paras)
        transaction.on_commit(lambda: queue_command(broker, record.node, command))
    logger.info("instances: %s for %s queued for %s", op, insid, record.node)
    return record


def stop_instance(broker: str, insid: str, seq: int) -> ClusterInstance:
    """Queue ``instance/stop`` for the instance's node; its ports are given back when the node reports it stopped."""
    return _send(broker, insid, "instance/stop", seq, "stopping")


def delete_instance(broker: str, insid: str, seq: int) -> ClusterInstance:
    """Queue ``instance/delete`` (VM and disk removed) for its node; the record goes when the node reports it."""
    return _send(broker, insid, "instance/delete", seq, "deleting")


def submit_instance(broker: str, insid: str, seq: int, image_id: str) -> ClusterInstance:
    """Queue ``instance/submit``: the node uploads the instance's disk (through this CC) to walrus as a new version
    of ``image_id``, then removes the instance (the image wizard's last step). Each submit comes with a new ``seq``
    from the CLC; when it fails the node reports the instance stopped (its disk kept), which frees it here."""
    return _send(broker, insid, "instance/submit", seq, "submitting", image_id=image_id)


# The states in which an instance's VM runs on its node: the only ones a volume is attached to or detached from.
VOLUME_STATES = ("booting", "running")


def running_instance(insid: str) -> ClusterInstance:
    """The record of an instance whose VM runs on its node; InstanceRefused: 404 for an instance this cluster did
    not place, 409 for one that does not run (volumes go to and from running instances only)."""
    record = ClusterInstance.objects.filter(instance_id=insid).first()
    if record is None:
        raise InstanceRefused(404, f"instance {insid} is not placed in this cluster")
    if record.state not in VOLUME_STATES:
        raise InstanceRefused(409, f"instance {insid} is {record.state}: volumes are attached to and detached from "
                                   "running instances only")
    return record


def _send_volume_command(broker: str, insid: str, tid: str, op: str, paras: dict) -> ClusterInstance:
    record = running_instance(insid)
    # Its own tid (the volume operation's task): the node's reports of it must not touch the run's task.
    queue_command(broker, record.node, Command(op=op, tid=tid, paras=paras))
    logger.info("instances: %s for %s queued for %s", op, insid, record.node)
    return record


def attach_volume(broker: str, insid: str, tid: str, target: VolumeTarget) -> ClusterInstance:
    """Queue ``volume/attach`` for the node the instance runs on: its hypervisor logs in to ``target`` (exported by
    the SC for that node's initiator) and hot-plugs the volume; the node reports on task ``tid``. 404 for an
    instance this cluster did not place, 409 for one that does not run."""
    paras = VolumeAttachParas(insid=insid, target=target)
    return _send_volume_command(broker, insid, tid, ATTACH_OP, paras.model_dump(mode="json"))


def detach_volume(broker: str, insid: str, tid: str, volume_id: str) -> ClusterInstance:
    """Queue ``volume/detach`` for the node the instance runs on (the guest lets go of the disk, the node logs out of
    the target); the node reports on task ``tid``. 404 and 409 as ``attach_volume``."""
    paras = VolumeDetachParas(insid=insid, volume_id=volume_id)
    return _send_volume_command(broker, insid, tid, DETACH_OP, paras.model_dump(mode="json"))


def attach_instance_volume(broker: str, insid: str, volume: VolumeRef) -> tuple[ClusterInstance, str]:
    """The CLC's attach: have the volume's SC export it to the node the instance runs on, then queue
    ``volume/attach`` there under the volume's task (``volume_task_id``); returns the record and that tid.
    InstanceRefused (404, 409) is decided before anything is exported; ``ExportRefused`` with the SC's reason."""
    record = running_instance(insid)
    target = export_volume(volume, record.node, insid)
    tid = volume_task_id(volume.volume_id, insid)
    return attach_volume(broker, insid, tid, target), tid


def detach_instance_volume(broker: str, insid: str, volume: VolumeRef) -> tuple[ClusterInstance, str]:
    """The CLC's detach: queue ``volume/detach`` for the instance's node under the volume's task; once the node
    reports it detached, the export is ended at the SC named here (``cc.services.volumes.end_detached_export``).
    InstanceRefused (404, 409); ``ExportRefused`` (400 naming ``sc``) for an SC this cluster does not know."""
    record = running_instance(insid)
    note_detaching(volume, record.node, insid)
    tid = volume_task_id(volume.volume_id, insid)
    return detach_volume(broker, insid, tid, volume.volume_id), tid


def note_instance_status(report: InsStatus) -> InsStatus:
    """Follow an instance's state as its node reports it: ports are given back once it stopped, failed or is gone,
    and with them the run's access (its addresses are another instance's next); the record of a deleted one is
    removed. A report of an earlier run (lower ``seq``) changes nothing. Returns the report as it goes up to the
    CLC: with the run's access while it holds its ports, so that a CLC whose answer to the run was lost learns the
    placement from it."""
    record = ClusterInstance.objects.filter(instance_id=report.insid).first()
    if record is None or report.seq < record.seq:
        return report
    released = 0
    if report.state in RELEASING_STATES:
        released = release_ports(report.insid) + release_addresses(report.insid)
        if released:
            logger.info("instances: %s is %s; %d ports and addresses released", report.insid, report.state,
                        released)
    if report.state == "deleted":
        record.delete()
    elif report.state in RELEASING_STATES:
        ClusterInstance.objects.filter(pk=record.pk).update(state=report.state, access={})
    elif record.state != report.state:
        ClusterInstance.objects.filter(pk=record.pk).update(state=report.state)
    if released:
        apply_network()
    if report.seq == record.seq and report.state not in RELEASING_STATES and not report.access:
        return report.model_copy(update={"access": record.access})
    return report
