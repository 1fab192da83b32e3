"""Instances on the CLC: defining them, and asking a cluster controller to run, stop or delete them. Their state
then arrives as instance and task status from the node (folded by ``clc.services.status``)."""

from __future__ import annotations

import logging
import secrets
import string

from django.db import transaction
from django.utils import timezone

from clc.services.commands import controller_client, online_controllers
from luhyaapi.client import RemoteError
from luhyaapi.ids import InvalidId, TaskId, new_id
from luhyaapi.messages import ImageRef, InsStatus, InstanceRunRequest, TaskStatus
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.models import Image, Instance, OwnerGroup, Server, TaskTransaction, VMType

logger = logging.getLogger(__name__)

# While an instance is in one of these, it holds a node and may not be run again or changed.
BUSY_STATES = (State.SCHEDULED, State.PREPARING, State.BOOTING, State.RUNNING, State.STOPPING, State.DELETING,
               State.SUBMITTING)
# It may be changed (or run) only when settled; it may be stopped while it is on its way up or running.
EDITABLE_STATES = (State.DEFINED, State.STOPPED, State.FAILED)
CONSOLE_PASSWORD_ALPHABET = string.ascii_letters + string.digits
STOPPABLE_STATES = (State.SCHEDULED, State.PREPARING, State.BOOTING, State.RUNNING)


class InstanceError(Exception):
    """An instance operation was refused; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_mac() -> str:
    """A random locally administered unicast MAC in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))


def define_instance(*, name: str, kind: str, image: Image, vm_type: VMType, owner_group: OwnerGroup,
                    persistent: bool = False, services: list[int] | None = None, pinned_node: str = "",
                    assigned_to=None, instance_id: str = "", build_tid: str = "") -> Instance:
    """Record a new instance (not running) with a fresh id (or ``instance_id``) and MAC address."""
    return Instance.objects.create(instance_id=instance_id or new_id("instance"), name=name, kind=kind, image=image,
                                   vm_type=vm_type, owner_group=owner_group, persistent=persistent,
                                   services=list(services or []), pinned_node=pinned_node,
                                   assigned_to=assigned_to, mac=new_mac(),
                                   build_tid=build_tid)


def change_instance(instance: Instance, **fields) -> bool:
    """Change a settled instance's fields. A conditional update, not a save: the instance may have been run since
    the caller read it, and a save would also write back its state, node and addresses as they were then. Returns
    False (nothing changed) if it is no longer settled."""
    return bool(Instance.objects.filter(pk=instance.pk, state__in=EDITABLE_STATES).update(
        **fields, updated=timezone.now()))


def _run_request(instance: Instance, seq: int, boot: bool) -> InstanceRunRequest:
    image = instance.image
    version = image.versions.filter(number=image.current_version).first()
    if version is None:
        raise InstanceError(409, f"image {image.image_id} has no file yet; upload one before running instances")
    return InstanceRunRequest(
        insid=instance.instance_id, tid=instance.tid, seq=seq, kind=instance.kind,
        image=ImageRef(image_id=image.image_id, version=version.number, sha256=version.sha256,
                       size=version.size_bytes),
        os_type=image.os_type, cpus=instance.vm_type.cpus, memory_mb=instance.vm_type.memory_mb,
        disk_mb=instance.vm_type.disk_gb * 1024,
        persistent=instance.persistent, mac=instance.mac, services=tuple(instance.services),
        pinned_node=instance.pinned_node or (instance.node if instance.persistent else ""), boot=boot,
        console_password=instance.console_password)


def new_console_password() -> str:
    """A VNC console password for one run: 8 letters and digits (VNC authentication reads no more), about 47 bits."""
    return "".join(secrets.choice(CONSOLE_PASSWORD_ALPHABET) for _ in range(8))


def _clusters_to_try(instance: Instance) -> list[Server]:
    """The pinned node's cluster, the cluster of a persistent instance's disk, else every online cluster."""
    cluster = instance.cluster if instance.persistent and instance.node else ""
    if instance.pinned_node:
        node = Server.objects.filter(role="nc", name=instance.pinned_node).first()
        if node is None:
            raise InstanceError(409, f"pinned node {instance.pinned_node!r} is not a node controller of this cloud")
        cluster = node.cluster
    controllers = online_controllers(cluster)
    if not controllers:
        where = f"cluster {cluster!r}" if cluster else "the cloud"
        raise InstanceError(503, f"{where} has no online cluster controller; check the system status page")
    return controllers


def run_instance(instance: Instance, boot: bool = True) -> Instance:
    """Ask a cluster controller to place and run the instance; the first cluster that takes it wins. The task
    (``img:img:insid``) is reset to ``preparing`` (``editing/booting`` when the disk is there already) and follows
    the run. With ``boot`` false the node only prepares the disk. InstanceError: 409 while it is busy or when no
    cluster can take it (with each cluster's reason), 503 when no cluster controller is online."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("image", "vm_type").get(pk=instance.pk)
        if instance.state in BUSY_STATES:
            raise InstanceError(409, f"instance {instance.instance_id} is {instance.state}; stop it first")
        instance.runs += 1
        instance.console_password = new_console_password()
        request = _run_request(instance, instance.runs, boot)
        instance.save(update_fields=["runs", "console_password", "updated"])
    reasons = []
    for controller in _clusters_to_try(instance):
        try:
            answer = controller_client(controller).post("/cc/api/1.0/instances/", request.model_dump(mode="json"))
        except RemoteError as exc:
            reasons.append(f"{controller.cluster}: {exc.detail}")
            continue
        disk_kept = instance.persistent and bool(instance.node) and instance.runs > 1
        phase_state = ("editing", "booting") if disk_kept else ("preparing", "init")
        return _placed(instance, controller.cluster, answer, phase_state)
    message = "no cluster could run it: " + "; ".join(reasons)
    Instance.objects.filter(pk=instance.pk).update(message=message)
    raise InstanceError(409, message)


def _placed(instance: Instance, cluster: str, answer: dict, phase_state: tuple[str, str]) -> Instance:
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            state=State.SCHEDULED, cluster=cluster, node=answer["node"], access=answer.get("access", {}),
            console_url=answer.get("access", {}).get("console", ""), guest_ip="",
            message=f"placed on {answer['node']} in cluster {cluster}")
        tid = TaskId.parse(instance.tid)
        TaskTransaction.objects.update_or_create(
            tid=str(tid),
            defaults={"src_image_id": tid.src, "dst_image_id": tid.dst, "instance_id": tid.ins,
                      "phase": phase_state[0], "state": phase_state[1], "progress": 0, "failed": False,
                      "done": False, "message": "", "vmstatus": ""})
    logger.info("instances: %s placed on %s (cluster %s)", instance.instance_id, answer["node"], cluster)
    instance.refresh_from_db()
    return instance


def placement_of(report: InsStatus | TaskStatus) -> str:
    """The cluster these records place a report's run in ("" where they place it nowhere yet, or do not know it):
    an instance's cluster; for a task, its instance's, or for an image's preparation the cluster of the node it was
    sent to. The bus lets a CC relay only reports of runs placed in its cluster (``luhyaapi.bus_trust``)."""
    if isinstance(report, InsStatus):
        return Instance.objects.filter(instance_id=report.insid).values_list("cluster", flat=True).first() or ""
    try:
        tid = TaskId.parse(report.tid)
    except InvalidId:
        return ""
    cluster = Instance.objects.filter(instance_id=tid.ins).values_list("cluster", flat=True).first()
    if cluster:
        return cluster
    options = TaskTransaction.objects.filter(tid=report.tid).values_list("runtime_option", flat=True).first()
    node = options.get("node") if isinstance(options, dict) else None
    if not node:
        return ""
    return Server.objects.filter(role="nc", name=node).values_list("cluster", flat=True).first() or ""


def instance_controller(instance: Instance) -> Server:
    """The online cluster controller of the instance's cluster (503 when there is none)."""
    controllers = online_controllers(instance.cluster)
    if not controllers:
        raise InstanceError(503, f"cluster {instance.cluster!r} has no online cluster controller")
    return controllers[0]


def stop_instance(instance: Instance) -> Instance:
    """Ask the instance's cluster to stop it (graceful, then forced); 409 unless it is placed and not stopping."""
    if instance.state not in STOPPABLE_STATES:
        raise InstanceError(409, f"instance {instance.instance_id} is {instance.state}, not running")
    try:
        controller_client(instance_controller(instance)).post(f"/cc/api/1.0/instances/{instance.instance_id}/stop/",
                                                         {"seq": instance.runs})
    except RemoteError as exc:
        raise InstanceError(502, f"the cluster controller did not take the stop: {exc.detail}") from exc
    Instance.objects.filter(pk=instance.pk).update(state=State.STOPPING)
    instance.refresh_from_db()
    return instance


def delete_instance(instance: Instance) -> bool:
    """Delete an instance. One that never ran (or whose node has nothing of it) goes at once (returns True); one
    that ran is removed from its node first and goes when the node reports it deleted (returns False)."""
    if instance.state == State.DELETING:
        return False
    if not instance.node:
        instance.delete()
        logger.info("instances: %s deleted", instance.instance_id)
        return True
    try:
        controller_client(instance_controller(instance)).request(
            "DELETE", f"/cc/api/1.0/instances/{instance.instance_id}/", {"seq": instance.runs})
    except RemoteError as exc:
        if exc.status != 404:
            raise InstanceError(502, f"the cluster controller did not take the delete: {exc.detail}") from exc
        instance.delete()  # the cluster has no record of it: nothing is left on a node
        return True
    Instance.objects.filter(pk=instance.pk).update(state=State.DELETING)
    return False
