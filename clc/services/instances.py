"""Instances on the CLC: defining them, and asking a cluster controller to run, stop or delete them. Their state
then arrives as instance and task status from the node (folded by ``clc.services.status``)."""

from __future__ import annotations

import logging
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from clc.services.commands import CommandError, controller_client, online_controllers, send_node_command
from clc.services.data_disks import provide_data_disk
from clc.services.volumes import release_volumes, volumes_of_run
from luhyaapi.client import RemoteError
from luhyaapi.ids import InvalidId, TaskId, new_id
from luhyaapi.messages import ImageRef, InsStatus, InstanceRunRequest, MonitoringSwitch, TaskStatus
from luhyaapi.validators import MAX_SERVICE_PORTS
from luhyaapi.vmspec import RDP_PORT
from luhyaapi.volumes import parse_volume_task_id
from luhyadb.choices import InstanceStateChoices as State
from luhyadb.choices import PlacingChoices as Placing
from luhyadb.models import Image, Instance, OwnerGroup, Server, TaskTransaction, VMType, Volume

logger = logging.getLogger(__name__)

# While an instance is in one of these, it holds a node and may not be run again or changed.
BUSY_STATES = (State.SCHEDULED, State.PREPARING, State.BOOTING, State.RUNNING, State.STOPPING, State.DELETING,
               State.SUBMITTING)
# It may be changed (or run) only when settled; it may be stopped while it is on its way up or running.
EDITABLE_STATES = (State.DEFINED, State.STOPPED, State.FAILED)
CONSOLE_PASSWORD_ALPHABET = string.ascii_letters + string.digits
STOPPABLE_STATES = (State.SCHEDULED, State.PREPARING, State.BOOTING, State.RUNNING)
# A run that ended gives its ports back: its console and service addresses are another instance's next.
ENDED_STATES = (State.STOPPED, State.FAILED)
# A run waits for a cluster in these; the placer asks until it is placed, refused or GIVE_UP_SECONDS have passed.
WAITING = (Placing.QUEUED, Placing.ASKED)
GIVE_UP_SECONDS = 300
# Runs placed within the caller's request at once; more wait for the placer, so that a class's burst of launches
# leaves web threads free for everything else (the cluster controller's own answer among them on the all-in-one).
IN_REQUEST_PLACEMENTS = 4
_in_request = threading.BoundedSemaphore(IN_REQUEST_PLACEMENTS)
# A run asked of a cluster that did not answer is asked again after this long (more than the calls' timeout).
ASK_AGAIN_SECONDS = 15
PLACED, REFUSED, UNANSWERED, SETTLED = "placed", "refused", "unanswered", "settled"


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
                    assigned_to=None, instance_id: str = "", build_tid: str = "", pool=None,
                    image_version: int = 0, data_disk_mb: int = 0, monitoring: bool = True,
                    restart_when_dead: bool = False) -> Instance:
    """Record a new instance (not running) with a fresh id (or ``instance_id``) and MAC address. ``data_disk_mb``:
    a remote desktop's person gets their personal data disk of that size with it (``clc.services.data_disks``).
    ``monitoring``: its node samples its metrics (``MONITORING_HELP``); ``restart_when_dead``: the guest watchdog
    starts it again when its guest stops from inside (``clc.services.alarm_actions``)."""
    return Instance.objects.create(instance_id=instance_id or new_id("instance"), name=name, kind=kind, image=image,
                                   vm_type=vm_type, owner_group=owner_group, persistent=persistent,
                                   services=list(services or []), pinned_node=pinned_node,
                                   assigned_to=assigned_to, mac=new_mac(), data_disk_mb=data_disk_mb,
                                   build_tid=build_tid, pool=pool, image_version=image_version,
                                   monitoring=monitoring, restart_when_dead=restart_when_dead)


def change_instance(instance: Instance, **fields) -> bool:
    """Change a settled instance's fields. A conditional update, not a save: the instance may have been run since
    the caller read it, and a save would also write back its state, node and addresses as they were then. Returns
    False (nothing changed) if it is no longer settled."""
    return bool(Instance.objects.filter(pk=instance.pk, state__in=EDITABLE_STATES).update(
        **fields, updated=timezone.now()))


# What the monitoring switch does, said on the API's field and the console's form.
MONITORING_HELP = ("its node samples its CPU, memory, disk, network and liveness for the watch role; switched on a "
                   "running instance, its node is told at once (if it cannot be reached, the switch applies from "
                   "the next start)")


# What may change on an instance in any state, as it changes nothing of a run at work: monitoring (each run command
# carries it, and the node of a run at work is told) and the watchdog's switch (read when the watchdog fires).
WATCH_SWITCHES = frozenset({"monitoring", "restart_when_dead"})

# The states of a run at work, whose node (once a cluster placed it) is told of a monitoring switch.
AT_WORK = (State.SCHEDULED, State.PREPARING, State.BOOTING, State.RUNNING)


def on_a_node(instance: Instance) -> bool:
    """Whether a run of the instance is at work on a node: placed by a cluster, not ended."""
    return instance.state in AT_WORK and bool(instance.node) and not instance.placing


def switch_watching(instance: Instance, **switches: bool) -> bool:
    """Set ``WATCH_SWITCHES`` of ``instance`` in any state; a monitoring switch of a run on a node is sent to that
    node too (``tell_node_monitoring``). Whether a node was told."""
    unknown = switches.keys() - WATCH_SWITCHES
    if unknown:
        raise ValueError(f"not a switch of watching: {', '.join(sorted(unknown))}")
    Instance.objects.filter(pk=instance.pk).update(**switches, updated=timezone.now())
    if "monitoring" in switches and switches["monitoring"] != instance.monitoring:
        return tell_node_monitoring(Instance.objects.get(pk=instance.pk))
    return False


def tell_node_monitoring(instance: Instance) -> bool:
    """Send the node of the instance's run at work its monitoring switch (``instance/monitoring``, the run's number
    and the time of the switch, so the node skips it for a later run and applies the newest of two); whether it was
    sent. Nothing is sent for a run on no node; one that cannot be sent (no CC online, node untrusted) is logged and
    the next run's command carries the switch."""
    if not on_a_node(instance):
        return False
    switch = MonitoringSwitch(insid=instance.instance_id, run=instance.runs, monitoring=instance.monitoring,
                              at=time.time_ns() // 1_000_000)
    try:
        send_node_command(instance.node, "instance/monitoring", switch.model_dump())
    except CommandError as exc:
        logger.warning("instances: monitoring switch of %s not sent to %s (applies from its next start): %s",
                       instance.instance_id, instance.node, exc)
        return False
    return True


def guest_services(instance: Instance) -> list[int]:
    """The guest ports a run forwards: the instance's ``services``, and Remote Desktop's 3389 when its image's
    guests serve RDP (``Image.rdp``), so the cluster forwards it by its network mode and reports it as ``rdp``.
    InstanceError 409 when that makes more ports than a run may forward."""
    services = list(instance.services)
    if instance.image.rdp and RDP_PORT not in services:
        services.append(RDP_PORT)
    if len(services) > MAX_SERVICE_PORTS:
        raise InstanceError(409, f"{instance.name} forwards {len(instance.services)} ports and its image serves "
                                 f"Remote Desktop (RDP) too: a run forwards at most {MAX_SERVICE_PORTS}; remove one "
                                 "of its services")
    return services


def _run_request(instance: Instance, seq: int, boot: bool) -> InstanceRunRequest:
    image = instance.image
    version = image.versions.filter(number=instance.image_version or image.current_version).first()
    if version is None and instance.image_version:
        raise InstanceError(409, f"image {image.image_id} has no version {instance.image_version} any more; choose "
                                 "another version")
    if version is None:
        raise InstanceError(409, f"image {image.image_id} has no file yet; upload one before running instances")
    return InstanceRunRequest(
        insid=instance.instance_id, tid=instance.tid, seq=seq, kind=instance.kind,
        image=ImageRef(image_id=image.image_id, version=version.number, sha256=version.sha256,
                       size=version.size_bytes),
        os_type=image.os_type, cpus=instance.vm_type.cpus, memory_mb=instance.vm_type.memory_mb,
        disk_mb=instance.vm_type.disk_gb * 1024,
        persistent=instance.persistent, mac=instance.mac, services=tuple(guest_services(instance)),
        pinned_node=instance.pinned_node or (instance.node if instance.persistent else ""), boot=boot,
        console_password=instance.console_password, volumes=volumes_of_run(instance),
        # The labels of its metrics: its node knows them only from the run (docs/watch.md, "Collection").
        owner_group=instance.owner_group.path, monitoring=instance.monitoring)


def new_console_password() -> str:
    """A VNC console password for one run: 8 letters and digits (VNC authentication reads no more), about 47 bits."""
    return "".join(secrets.choice(CONSOLE_PASSWORD_ALPHABET) for _ in range(8))


def _clusters_to_try(instance: Instance) -> list[Server]:
    """The pinned node's cluster, the cluster of a persistent instance's disk, the cluster of its volumes (their
    SC exports them to that cluster's nodes only), else every online cluster."""
    cluster = instance.cluster if instance.persistent and instance.node else ""
    if not cluster:
        cluster = Volume.objects.filter(instance=instance).values_list("cluster", flat=True).first() or ""
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
    """Ask a cluster controller to place and run the instance; the first cluster that takes it wins. The instance is
    ``scheduled`` at once and waits for a cluster (``placing`` queued); up to ``IN_REQUEST_PLACEMENTS`` runs at a
    time are placed within the caller's request, the others by the placer (``place_pending``), so a class's burst
    of launches never holds every web thread on calls to the clusters. The task (``img:img:insid``) is reset to
    ``preparing`` (``editing/booting`` when the disk is there already) once it is placed. With ``boot`` false the
    node only prepares the disk. The outcome is one truth: a placed instance (``placing`` empty, with its node and
    console), or a refusal and the instance as it was; a cluster that did not answer in time leaves it ``asked``,
    settled by the cluster's status reports or by asking again (same run number). A remote desktop with a personal
    data disk gets it first (``clc.services.data_disks``: made on first use, carried by the run); when it cannot,
    the desktop starts without it and its message says why. InstanceError: 409 while it is busy or when no cluster
    can take it (with each cluster's reason), 503 when no cluster controller is online."""
    # Before the row lock: making the disk calls a storage controller.
    disk_problem = "" if instance.state in BUSY_STATES else provide_data_disk(instance)
    with transaction.atomic():
        instance = Instance.objects.select_for_update().select_related("image", "vm_type").get(pk=instance.pk)
        if instance.state in BUSY_STATES:
            raise InstanceError(409, f"instance {instance.instance_id} is {instance.state}; stop it first")
        controllers = _clusters_to_try(instance)
        before = (instance.state, instance.message)
        instance.runs += 1
        instance.console_password = new_console_password()
        request = _run_request(instance, instance.runs, boot)
        instance.state, instance.placing = State.SCHEDULED, Placing.QUEUED
        instance.console_url, instance.access, instance.guest_ip = "", {}, ""
        instance.message = "waiting for a cluster to take it" + (f"; {disk_problem}" if disk_problem else "")
        instance.save(update_fields=["runs", "console_password", "state", "placing", "console_url", "access",
                                     "guest_ip", "message", "updated"])
    if not _in_request.acquire(blocking=False):
        logger.info("instances: %s queued for the placer", instance.instance_id)
        return instance
    try:
        attempt = _place(instance, request, controllers, held=None)
    finally:
        _in_request.release()
    if attempt.outcome == REFUSED and _held(instance, request.seq, attempt.held).update(
            state=before[0], placing=Placing.NONE, message=attempt.message or before[1]):
        raise InstanceError(409, attempt.message)  # nothing runs anywhere: the instance is as it was, with why
    if disk_problem and attempt.outcome == PLACED:
        Instance.objects.filter(pk=instance.pk, runs=request.seq).update(
            message=Concat(F("message"), Value(f"; {disk_problem}")))
    instance.refresh_from_db()
    return instance


def _boots(instance: Instance) -> bool:
    """Whether the run boots the VM: all do but an image wizard's first step (its VM has no node yet), which only
    prepares the disk (``clc.services.builds.prepare_build``)."""
    return not (instance.build_tid and not instance.node)


@dataclass(frozen=True)
class Attempt:
    """How one attempt to place a run ended: ``outcome`` PLACED, REFUSED (``message``: every cluster's reason),
    UNANSWERED (``message``: who did not answer) or SETTLED (someone else took or ended the run meanwhile);
    ``held``: the ``asked_at`` of this attempt's last ask, by which it still holds the run."""

    outcome: str
    message: str = ""
    held: datetime | None = None


def _held(instance: Instance, seq: int, held: datetime | None):
    """The instance's row while this run waits as the caller left it: queued (``held`` None), or asked by the
    caller's own last ask (``asked_at`` == ``held``). Updating through it is how an attempt claims or settles the
    run without overwriting what another one (the placer, a request, a stop, the status fold) did meanwhile."""
    rows = Instance.objects.filter(pk=instance.pk, runs=seq)
    return rows.filter(placing=Placing.QUEUED) if held is None else rows.filter(placing=Placing.ASKED, asked_at=held)


def _place(instance: Instance, request: InstanceRunRequest, controllers: list[Server],
           held: datetime | None) -> Attempt:
    """Ask each cluster in turn to take the run, the cluster's network settings sent along so that its CC calls
    nobody back while it places. Each ask first claims the run (from ``held``: see ``_held``), so one run is never
    asked of two clusters, or twice at once. When a cluster may have received the request but did not answer, no
    other cluster is asked (the run must not be placed twice) and the instance stays ``asked`` there."""
    from clc.services.networks import cc_config_of  # here: that module takes BUSY_STATES from this one

    reasons = []
    for controller in controllers:
        now = timezone.now()
        if not _held(instance, request.seq, held).update(cluster=controller.cluster, placing=Placing.ASKED,
                                                          asked_at=now):
            return Attempt(SETTLED)
        held = now
        payload = request.model_copy(update={"network": cc_config_of(controller.cluster)}).model_dump(mode="json")
        try:
            answer = controller_client(controller).post("/cc/api/1.0/instances/", payload)
        except RemoteError as exc:
            if exc.may_have_arrived:
                message = (f"cluster {controller.cluster} has not answered yet ({exc.detail}); the instance waits "
                           "for its answer")
                _held(instance, request.seq, held).update(message=message)
                logger.warning("instances: %s: %s", instance.instance_id, message)
                return Attempt(UNANSWERED, message, held)
            reasons.append(f"{controller.cluster}: {exc.detail}")
            continue
        _placed(instance, request.seq, held, controller.cluster, answer)
        return Attempt(PLACED, held=held)
    return Attempt(REFUSED, "no cluster could run it: " + "; ".join(reasons), held)


def _placed(instance: Instance, seq: int, held: datetime, cluster: str, answer: dict) -> None:
    """Record the cluster's answer, unless the run was settled meanwhile (its reports came first, or it was
    stopped): the answer's state (an ended run is answered as it ended, without its access)."""
    state = answer.get("state") or State.SCHEDULED
    ended = state in ENDED_STATES
    access = (answer.get("access") or {}) if state in State.values and not ended else {}
    with transaction.atomic():
        updated = _held(instance, seq, held).update(
            state=state if state in State.values else State.SCHEDULED, placing=Placing.NONE, cluster=cluster,
            node=answer["node"], access=access, console_url=access.get("console", ""),
            message=(f"the run ended ({state}) on {answer['node']} before its placement was learnt" if ended
                     else f"placed on {answer['node']} in cluster {cluster}"))
        if not updated:
            return
        disk_kept = instance.persistent and bool(instance.node) and seq > 1
        phase, task_state = ("editing", "booting") if disk_kept else ("preparing", "init")
        tid = TaskId.parse(instance.tid)
        TaskTransaction.objects.update_or_create(
            tid=str(tid),
            defaults={"src_image_id": tid.src, "dst_image_id": tid.dst, "instance_id": tid.ins,
                      "phase": phase, "state": task_state, "progress": 0, "failed": False,
                      "done": False, "message": "", "vmstatus": ""})
    logger.info("instances: %s placed on %s (cluster %s)", instance.instance_id, answer["node"], cluster)


def place_pending(now: datetime | None = None) -> int:
    """The placer's round (the CLC's ``clc-placer`` daemon, one per cloud): place the runs no request placed, and
    ask again, with the same run number, for a run whose cluster did not answer (``ASK_AGAIN_SECONDS`` after the
    last ask), which a cluster that placed it answers with the placement it made. A clear refusal marks the run
    failed with the reasons; so does waiting ``GIVE_UP_SECONDS`` since it was run. Returns how many it settled."""
    now = now or timezone.now()
    settled = 0
    waiting = Instance.objects.filter(placing__in=WAITING, state=State.SCHEDULED).select_related("image", "vm_type")
    for instance in waiting.order_by("updated"):
        seq, held = instance.runs, instance.asked_at if instance.placing == Placing.ASKED else None
        if now - instance.updated > timedelta(seconds=GIVE_UP_SECONDS):
            settled += _fail(instance, seq, held, f"no cluster answered within {GIVE_UP_SECONDS} s; run it again")
            continue
        if held is not None and now - held < timedelta(seconds=ASK_AGAIN_SECONDS):
            continue  # its ask may still be under way
        try:
            # An asked cluster is asked again, and only it: another one might place the run a second time.
            controllers = online_controllers(instance.cluster)[:1] if held else _clusters_to_try(instance)
            request = _run_request(instance, seq, _boots(instance))
        except InstanceError as exc:
            settled += _fail(instance, seq, held, str(exc))
            continue
        if not controllers:
            continue  # the asked cluster's controller is away: its reports, or its return, settle the run
        attempt = _place(instance, request, controllers, held)
        if attempt.outcome == REFUSED:
            settled += _fail(instance, seq, attempt.held, attempt.message)
        elif attempt.outcome == PLACED:
            settled += 1
    return settled


def _fail(instance: Instance, seq: int, held: datetime | None, message: str) -> int:
    failed = _held(instance, seq, held).update(state=State.FAILED, placing=Placing.NONE, message=message)
    if failed:
        logger.warning("instances: %s not placed: %s", instance.instance_id, message)
    return failed


def placement_of(report: InsStatus | TaskStatus) -> str:
    """The cluster these records place a report's run in ("" where they place it nowhere yet, or do not know it):
    an instance's cluster; for a task, its instance's, or for an image's preparation the cluster of the node it was
    sent to. The bus lets a CC relay only reports of runs placed in its cluster (``luhyaapi.bus_trust``)."""
    if isinstance(report, InsStatus):
        return Instance.objects.filter(instance_id=report.insid).values_list("cluster", flat=True).first() or ""
    volume_task = parse_volume_task_id(report.tid)
    if volume_task is not None:  # a volume's attach or detach: the instance's cluster, as its runs
        return Instance.objects.filter(instance_id=volume_task[1]).values_list("cluster", flat=True).first() or ""
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


def _cancel_waiting(instance: Instance, placing: tuple[str, ...]) -> bool:
    """End a run no cluster has (``placing`` one of ``placing``): stopped, as if it had run. False if it was
    placed or settled meanwhile."""
    return bool(Instance.objects.filter(pk=instance.pk, runs=instance.runs, placing__in=placing).update(
        state=State.STOPPED, placing=Placing.NONE, message="stopped before a cluster took it"))


def stop_instance(instance: Instance) -> Instance:
    """Ask the instance's cluster to stop it (graceful, then forced); 409 unless it is placed and not stopping. A
    run still waiting for a cluster is stopped here (the one asked is told, in case it took it)."""
    instance.refresh_from_db()
    if instance.state not in STOPPABLE_STATES:
        raise InstanceError(409, f"instance {instance.instance_id} is {instance.state}, not running")
    if instance.placing == Placing.QUEUED and _cancel_waiting(instance, (Placing.QUEUED,)):
        instance.refresh_from_db()
        return instance
    try:
        controller_client(instance_controller(instance)).post(f"/cc/api/1.0/instances/{instance.instance_id}/stop/",
                                                         {"seq": instance.runs})
    except RemoteError as exc:
        if exc.status == 404 and _cancel_waiting(instance, WAITING):  # the asked cluster never placed it
            instance.refresh_from_db()
            return instance
        raise InstanceError(502, f"the cluster controller did not take the stop: {exc.detail}") from exc
    Instance.objects.filter(pk=instance.pk).update(state=State.STOPPING, placing=Placing.NONE)
    instance.refresh_from_db()
    return instance


def delete_instance(instance: Instance) -> bool:
    """Delete an instance. One that never ran (or whose node has nothing of it) goes at once (returns True); one
    that ran is removed from its node first and goes when the node reports it deleted (returns False)."""
    if instance.state == State.DELETING:
        return False
    if not instance.node and instance.placing != Placing.ASKED:  # an asked cluster may have placed it
        release_volumes(Instance.objects.filter(pk=instance.pk))
        instance.delete()
        logger.info("instances: %s deleted", instance.instance_id)
        return True
    try:
        controller_client(instance_controller(instance)).request(
            "DELETE", f"/cc/api/1.0/instances/{instance.instance_id}/", {"seq": instance.runs})
    except RemoteError as exc:
        if exc.status != 404:
            raise InstanceError(502, f"the cluster controller did not take the delete: {exc.detail}") from exc
        release_volumes(Instance.objects.filter(pk=instance.pk))
        instance.delete()  # the cluster has no record of it: nothing is left on a node
        return True
    Instance.objects.filter(pk=instance.pk).update(state=State.DELETING)
    return False


def reboot_instance(instance: Instance) -> Instance:
    """Stop the instance now and start it again once its run is reported stopped (issue 17: an alarm's ``reboot``).
    The run to start again after is recorded first (``restart_after_run``), since the node's report may arrive
    before the stop's answer; the status fold then calls ``restart_stopped``. A run stopped here at once (it was
    still waiting for a cluster) starts again at once. InstanceError as ``stop_instance`` (the record is then as
    it was)."""
    instance.refresh_from_db()
    seq = instance.runs
    Instance.objects.filter(pk=instance.pk, runs=seq).update(restart_after_run=seq)
    try:
        instance = stop_instance(instance)
    except InstanceError:
        Instance.objects.filter(pk=instance.pk, restart_after_run=seq).update(restart_after_run=0)
        raise
    if instance.state == State.STOPPED:
        restart_stopped(instance.instance_id, seq)
        instance.refresh_from_db()
    return instance


def restart_stopped(instance_id: str, seq: int) -> Instance | None:
    """Start the instance again if its run ``seq`` ended stopped and was to be started again (``restart_after_run``,
    set by a reboot or the guest watchdog). The claim is one conditional update, so a report folded twice, or by two
    folders, starts it once. Returns the instance started (``run_instance``: scheduled, or placed), None when there
    was nothing to start. InstanceError from ``run_instance`` (no cluster, image gone): it stays stopped."""
    claimed = Instance.objects.filter(instance_id=instance_id, runs=seq, state=State.STOPPED,
                                      restart_after_run=seq).update(restart_after_run=0)
    if not claimed:
        return None
    logger.info("instances: %s stopped for a restart (run %d); starting it again", instance_id, seq)
    return run_instance(Instance.objects.get(instance_id=instance_id))
