"""Volumes and snapshots of the cloud as the CLC keeps them (issue 16): the records (``Volume``, ``Snapshot``), each
made, changed and deleted by asking the storage controller that keeps its file first (``/sc/api/1.0/``, signed with
this host's key), so that a record exists only for what its SC made.

- **Making one** (``create_volume``): the SC of the requested cluster (or, with none requested, the only online
  one) is asked for an empty volume, a copy of a snapshot (on the snapshot's SC) or a volume from an image version
  (the SC fetches it from walrus: the volume is ``creating`` with its ``progress`` until ``available`` or
  ``failed``). What the SC refuses is refused here with the field and the SC's words, its numbers included (a
  volume that does not fit: 400 naming ``size``).
- **Reading** (``refresh_volume``): a volume still ``creating`` has its state, progress and message refreshed from
  its SC whenever it is read (its page refreshes itself while it is made).
- **Deleting** is refused (409, with the reason) while the volume is attached or has snapshots; **restoring** a
  snapshot while it is attached.
- **Attaching** (``attach_volume``) and **detaching** (``detach_volume``) ask the cluster controller of the
  instance's cluster (``/cc/api/1.0/instances/<insid>/volumes/``), which has the volume's SC export it to the
  instance's node and queues the node's command; the record is ``attaching``/``detaching`` until the node's report
  (``fold_volume_report``, from the status fold) makes it ``in-use`` with its device, or ``available`` again. A
  volume stays ``in-use`` while its instance is stopped: every run of the instance carries it
  (``volumes_of_run``), so it is attached again at the next start. Deleting the instance frees it
  (``release_volumes``).

Who may do what is ``clc.services.authz``'s rule on type ``volume``; the callers ask it (attaching and detaching:
write on the volume and execute or write on the instance).
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from pydantic import BaseModel

from clc.services.commands import controller_client, online_controllers, online_servers
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.ids import new_id
from luhyaapi.messages import TaskStatus
from luhyaapi.trust import own_key
from luhyaapi.volumes import VolumeAttachRequest, VolumeDetachRequest, VolumeRef, parse_volume_task_id
from luhyadb.choices import InstanceStateChoices as InstanceState
from luhyadb.choices import RoleChoices, VolumeSourceChoices, VolumeStateChoices
from luhyadb.models import Image, Instance, OwnerGroup, Server, Snapshot, Volume

logger = logging.getLogger(__name__)

MIB = 2**20
# What the SC says of a volume, as the CLC records it (the SC knows nothing of attachments).
SC_STATES = {"creating": VolumeStateChoices.CREATING, "available": VolumeStateChoices.AVAILABLE,
             "failed": VolumeStateChoices.FAILED}
# The SC's request fields that the CLC's API names the same way; the SC's ``volume_id`` and ``sha256`` are the
# CLC's own choices, so a refusal of them is not the caller's fault.
CALLER_FIELDS = frozenset({"size", "snapshot_id", "image_id", "version"})
# Volumes are plugged into and out of a VM that runs (the node refuses any other).
ATTACHABLE_STATES = (InstanceState.BOOTING, InstanceState.RUNNING)
# The instance has the volume, or is about to: every run of it carries these.
HELD_STATES = (VolumeStateChoices.ATTACHING, VolumeStateChoices.IN_USE)


class VolumeError(Exception):
    """A volume operation was refused: ``status`` is the HTTP status, ``field`` the request field at fault (""
    for none); ``may_have_arrived``: a cluster controller that did not answer may have carried it out anyway."""

    def __init__(self, status: int, message: str, field: str = "", may_have_arrived: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.may_have_arrived = may_have_arrived


def storage_controllers(cluster: str = "") -> list[Server]:
    """The online storage controllers that can be called (of ``cluster`` if given), most recently heard first."""
    return list(online_servers(RoleChoices.SC, cluster).order_by("-last_seen", "name"))


def choose_sc(cluster: str = "") -> Server:
    """The SC a new volume goes to: the one of ``cluster``, or with none given the only online SC. VolumeError 400
    naming ``cluster`` when that does not name one SC."""
    servers = storage_controllers(cluster)
    if not servers:
        where = f"in cluster {cluster!r}" if cluster else "in the cloud"
        raise VolumeError(400, f"no storage controller is online {where}; see the system status page", "cluster")
    if not cluster and len({server.cluster for server in servers}) > 1:
        clusters = ", ".join(sorted({server.cluster for server in servers}))
        raise VolumeError(400, f"several clusters have a storage controller ({clusters}): choose one", "cluster")
    return servers[0]


def _sc_server(volume: Volume) -> Server:
    server = Server.objects.filter(role=RoleChoices.SC, name=volume.sc).exclude(api_url="").first()
    if server is None:
        raise VolumeError(503, f"storage controller {volume.sc!r} of volume {volume.volume_id} is not known; "
                               "see the system status page")
    return server


def _sc_call(server: Server, method: str, path: str, payload: dict | None = None) -> dict:
    """The SC's answer; its refusals raise VolumeError: a 4xx or a 507 (no room) as a 4xx with the field it names
    (the 507 as a 400: what was asked does not fit, say so with the SC's numbers), an SC that cannot be reached or
    fails 503."""
    try:
        return RoleClient(server.api_url, own_key(), timeout=30).request(method, f"/sc/api/1.0/{path}", payload)
    except RemoteError as exc:
        body = exc.body or {}
        detail = str(body.get("detail") or exc.detail)
        field = next((name for name in body if name in CALLER_FIELDS), "")
        if exc.status == 507 or 400 <= exc.status < 500:
            status = 400 if exc.status == 507 else exc.status
            raise VolumeError(status, f"storage controller {server.name}: {detail}", field) from exc
        logger.warning("volumes: %s %s on sc %s failed: %s", method, path, server.name, exc)
        raise VolumeError(503, f"storage controller {server.name} did not answer: {detail}") from exc


def _checked_size(size: int | None, required: bool) -> None:
    if size is None:
        if required:
            raise VolumeError(400, "a size is required (bytes, a whole number of MiB)", "size")
        return
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise VolumeError(400, "a size is a number of bytes above 0", "size")
    if size % MIB:
        raise VolumeError(400, f"a size is a whole number of MiB ({MIB} bytes); {size} is not", "size")


def _note(volume: Volume, answer: dict) -> None:
    """Take the SC's word about the volume's state, progress and reason."""
    state = SC_STATES.get(answer.get("state", ""), volume.state)
    if volume.instance_id and state == VolumeStateChoices.AVAILABLE:
        state = VolumeStateChoices.IN_USE
    volume.state = state
    volume.progress = int(answer.get("progress", volume.progress))
    volume.message = str(answer.get("error", "") or "")
    if "size" in answer:
        volume.size_bytes = int(answer["size"])


def create_volume(*, name: str, owner_group: OwnerGroup, size: int | None = None, cluster: str = "",
                  snapshot: Snapshot | None = None, image: Image | None = None, image_version: int = 0,
                  holder=None) -> Volume:
    """Make a volume with its SC and record it: empty (``size``), a copy of ``snapshot`` (on its SC; ``size`` at
    least the snapshot's, the snapshot's if left out) or from ``image``'s version (0 = current; ``size`` required:
    the image's disk must fit; ``creating`` until the SC has fetched and converted it). With ``holder``, the
    person's personal volume (data disk) of that cluster: an ``IntegrityError`` when they have one there already
    (the file made meanwhile is deleted again). The caller has checked the name and the person's rights.
    VolumeError 400 naming the field for what cannot be made (a size of 0, not whole MiB, beyond the SC's free
    space with its numbers), 503 when the SC cannot be reached; nothing is recorded then."""
    _checked_size(size, required=snapshot is None)
    if snapshot is not None and image is not None:
        raise VolumeError(400, "make a volume from a snapshot or from an image, not both", "snapshot_id")
    volume_id = new_id("volume")
    payload: dict = {"volume_id": volume_id}
    if size is not None:
        payload["size"] = size
    record = {"source": VolumeSourceChoices.EMPTY}
    if snapshot is not None:
        server = _sc_server(snapshot.volume)
        payload["snapshot_id"] = snapshot.snapshot_id
        record = {"source": VolumeSourceChoices.SNAPSHOT, "source_snapshot": snapshot.snapshot_id}
    else:
        server = choose_sc(cluster)
    if image is not None:
        number = image_version or image.current_version
        version = image.versions.filter(number=number).first()
        if version is None:
            raise VolumeError(400, f"image {image.image_id} has no version {number or '(no file yet)'}",
                              "image_version" if image_version else "image_id")
        payload |= {"image_id": image.image_id, "version": number, "sha256": version.sha256}
        record = {"source": VolumeSourceChoices.IMAGE, "image": image, "image_version": number}
    answer = _sc_call(server, "POST", "volumes/", payload)
    volume = Volume(volume_id=volume_id, name=name, owner_group=owner_group, size_bytes=int(answer["size"]),
                    cluster=server.cluster, sc=server.name, holder=holder, personal=holder is not None, **record)
    _note(volume, answer)
    try:
        with transaction.atomic():  # a savepoint: a caller's transaction survives the refusal
            volume.save()
    except IntegrityError:
        _forget_file(server, volume_id)
        raise
    logger.info("volumes: %s (%d MiB) made on sc %s for %s", volume_id, volume.size_bytes // MIB, server.name,
                owner_group.path)
    return volume


def _forget_file(server: Server, volume_id: str) -> None:
    """Delete a volume's file that no record will name (logged when its SC refuses: the file is then left over)."""
    try:
        _sc_call(server, "DELETE", f"volumes/{volume_id}/")
    except VolumeError as exc:
        logger.warning("volumes: %s on sc %s is left over: %s", volume_id, server.name, exc)


def refresh_volume(volume: Volume) -> Volume:
    """While the volume is being made, its state, progress and message as its SC says now (unchanged when the SC
    cannot be reached: the record says what was last known)."""
    if volume.state != VolumeStateChoices.CREATING:
        return volume
    try:
        answer = _sc_call(_sc_server(volume), "GET", f"volumes/{volume.volume_id}/")
    except VolumeError as exc:
        logger.warning("volumes: %s not refreshed: %s", volume.volume_id, exc)
        if exc.status == 404:
            volume.state, volume.message = VolumeStateChoices.FAILED, str(exc)
            volume.save(update_fields=["state", "message", "updated"])
        return volume
    _note(volume, answer)
    volume.save(update_fields=["state", "progress", "message", "size_bytes", "updated"])
    return volume


def refresh_volumes(volumes) -> list[Volume]:
    """``refresh_volume`` of each volume of a list (only those still being made ask their SC)."""
    return [refresh_volume(volume) for volume in volumes]


def rename_volume(volume: Volume, name: str) -> Volume:
    """Give the volume another name (checked by the caller)."""
    volume.name = name
    volume.save(update_fields=["name", "updated"])
    return volume


def _refuse_attached(volume: Volume, doing: str) -> None:
    if volume.instance_id is not None:
        raise VolumeError(409, f"volume {volume.volume_id} is attached to {volume.instance.instance_id}: detach it "
                               f"before {doing} it")


def delete_volume(volume: Volume) -> None:
    """Delete the volume's file on its SC, then its record. VolumeError 409 with the reason while it is attached or
    has snapshots (or while its SC is still making it)."""
    _refuse_attached(volume, "deleting")
    snapshots = list(volume.snapshots.values_list("snapshot_id", flat=True))
    if snapshots:
        raise VolumeError(409, f"volume {volume.volume_id} has snapshots ({', '.join(snapshots)}); delete them first")
    try:
        _sc_call(_sc_server(volume), "DELETE", f"volumes/{volume.volume_id}/")
    except VolumeError as exc:
        if exc.status != 404:  # gone from its SC already: the record goes too
            raise
    volume.delete()
    logger.info("volumes: %s deleted", volume.volume_id)


def create_snapshot(volume: Volume) -> Snapshot:
    """Take a snapshot of the volume (attached or not: the SC makes it crash-consistent) and record it, owned by the
    volume's owner-group. VolumeError 409 while the volume is not made yet, 400 when its SC has no room for it."""
    if volume.state not in (VolumeStateChoices.AVAILABLE, VolumeStateChoices.IN_USE):
        raise VolumeError(409, f"volume {volume.volume_id} is {volume.state}: only an available or attached volume "
                               "can be snapshotted")
    snapshot_id = new_id("snapshot")
    answer = _sc_call(_sc_server(volume), "POST", "snapshots/",
                      {"volume_id": volume.volume_id, "snapshot_id": snapshot_id})
    snapshot = Snapshot.objects.create(snapshot_id=snapshot_id, volume=volume, owner_group=volume.owner_group,
                                       size_bytes=int(answer["size"]))
    logger.info("volumes: snapshot %s of %s taken", snapshot_id, volume.volume_id)
    return snapshot


def delete_snapshot(snapshot: Snapshot) -> None:
    """Delete the snapshot's file on its SC, then its record (volumes made from it are copies and stay)."""
    try:
        _sc_call(_sc_server(snapshot.volume), "DELETE", f"snapshots/{snapshot.snapshot_id}/")
    except VolumeError as exc:
        if exc.status != 404:
            raise
    snapshot.delete()
    logger.info("volumes: snapshot %s deleted", snapshot.snapshot_id)


def restore_volume(volume: Volume, snapshot: Snapshot) -> Volume:
    """Make the volume's content its snapshot's. VolumeError 409 while it is attached, 400 naming ``snapshot_id``
    for a snapshot of another volume."""
    if snapshot.volume_id != volume.pk:
        raise VolumeError(400, f"snapshot {snapshot.snapshot_id} is of volume {snapshot.volume.volume_id}, not of "
                               f"{volume.volume_id}", "snapshot_id")
    _refuse_attached(volume, "restoring")
    answer = _sc_call(_sc_server(volume), "POST", f"volumes/{volume.volume_id}/restore/",
                      {"snapshot_id": snapshot.snapshot_id})
    _note(volume, answer)
    volume.save()
    logger.info("volumes: %s restored to %s", volume.volume_id, snapshot.snapshot_id)
    return volume


def _attached_refusal(volume: Volume) -> str:
    """Why the volume cannot be attached now ("" when it is available)."""
    state = volume.state
    if state == VolumeStateChoices.AVAILABLE:
        return ""
    if volume.instance is not None and state in (*HELD_STATES, VolumeStateChoices.DETACHING):
        return (f"volume {volume.volume_id} is {state} on instance {volume.instance.name} "
                f"({volume.instance.instance_id}): detach it there first")
    if state == VolumeStateChoices.CREATING:
        return f"volume {volume.volume_id} is still being made ({volume.progress} %); attach it when it is available"
    if state == VolumeStateChoices.FAILED:
        return f"volume {volume.volume_id} failed ({volume.message}); delete it"
    return f"volume {volume.volume_id} is {state}: only an available volume can be attached"


def _cluster_controller(instance: Instance) -> Server:
    controllers = online_controllers(instance.cluster)
    if not controllers:
        raise VolumeError(503, f"cluster {instance.cluster!r} of instance {instance.instance_id} has no online "
                               "cluster controller; see the system status page")
    return controllers[0]


def _ask_controller(controller: Server, path: str, payload: dict) -> dict:
    """The CC's answer to a volume operation; VolumeError with the CC's status and words when it refuses (503 when
    it cannot be reached or fails). ``may_have_arrived`` on the error says whether it may have been queued anyway."""
    try:
        return controller_client(controller).post(f"/cc/api/1.0/{path}", payload)
    except RemoteError as exc:
        # Its 404 is about the instance (not placed in that cluster), not about the URL the caller asked: a 409.
        status = 409 if exc.status == 404 else exc.status if 400 <= exc.status < 500 else 503
        raise VolumeError(status, f"cluster controller {controller.name}: {exc.detail}",
                          may_have_arrived=exc.may_have_arrived) from exc


def _ask_for(volume: Volume, instance: Instance, controller: Server, path: str, request: BaseModel, *,
             pending: str, doing: str, undo: dict) -> dict:
    """The CC's answer to an attach or detach the volume is ``pending`` for. A refusal puts the record back
    (``undo``, with the reason) and is raised; a call that may have been queued anyway leaves it ``pending`` (the
    node's report settles it, or the next attempt) and is a 503 saying so."""
    try:
        return _ask_controller(controller, path, request.model_dump())
    except VolumeError as exc:
        if exc.may_have_arrived:
            Volume.objects.filter(pk=volume.pk, state=pending).update(message=str(exc))
            raise VolumeError(503, f"{exc}; the {doing} may still happen: look again in a moment") from exc
        Volume.objects.filter(pk=volume.pk, state=pending, instance=instance).update(
            message=f"not {doing}ed: {exc}", **undo)
        raise


def attach_volume(volume: Volume, instance: Instance) -> Volume:
    """Attach the volume to the running instance: ``attaching`` with the instance recorded, then the instance's
    cluster controller asked to have the volume's SC export it to the instance's node and plug it in there; the
    node's report (``fold_volume_report``) makes it ``in-use`` with its device. Asked again while it is still
    ``attaching`` to the same instance, the CC is asked again (the same export, the same command key). The caller
    has checked the person's rights. VolumeError: 409 for a volume that is not available (the instance it is on
    named), 409 naming ``instance_id`` for an instance that does not run, 400 naming ``instance_id`` for an instance
    of another cluster than the volume's SC; the CC's refusal with its status (409, 503...), the record as it was."""
    with transaction.atomic():
        volume = Volume.objects.select_for_update().select_related("instance").get(pk=volume.pk)
        instance = Instance.objects.get(pk=instance.pk)
        again = volume.state == VolumeStateChoices.ATTACHING and volume.instance_id == instance.pk
        refusal = "" if again else _attached_refusal(volume)
        if refusal:
            raise VolumeError(409, refusal, "volume_id")
        if instance.state not in ATTACHABLE_STATES:
            raise VolumeError(409, f"instance {instance.name} ({instance.instance_id}) is {instance.state}: volumes "
                                   "are attached to running instances only; start it first", "instance_id")
        if instance.cluster != volume.cluster:
            raise VolumeError(400, f"instance {instance.instance_id} runs in cluster {instance.cluster!r}, volume "
                                   f"{volume.volume_id} is kept in cluster {volume.cluster!r}: a volume is attached "
                                   "to instances of its own cluster only", "instance_id")
        controller = _cluster_controller(instance)
        volume.state, volume.instance, volume.device, volume.message = (
            VolumeStateChoices.ATTACHING, instance, "", "")
        volume.save(update_fields=["state", "instance", "device", "message", "updated"])
    request = VolumeAttachRequest(volume=VolumeRef(volume_id=volume.volume_id, sc=volume.sc))
    answer = _ask_for(volume, instance, controller, f"instances/{instance.instance_id}/volumes/", request,
                      pending=VolumeStateChoices.ATTACHING, doing="attach",
                      undo={"state": VolumeStateChoices.AVAILABLE, "instance": None, "device": ""})
    logger.info("volumes: %s attaching to %s on %s (%s)", volume.volume_id, instance.instance_id,
                answer.get("node"), answer.get("tid"))
    volume.refresh_from_db()
    return volume


def detach_volume(volume: Volume) -> Volume:
    """Detach the volume from its instance: ``detaching``, then the instance's cluster controller asked to unplug
    it on the node (which ends the SC's export once the node let go); the node's report makes it ``available``.
    The caller has checked the person's rights. VolumeError 409 for a volume that is not attached, 409 for an
    instance that does not run (a stopped one would take it again at its next start: start it, or delete the
    instance, which frees its volumes); the CC's refusal with its status, the volume ``in-use`` as it was."""
    with transaction.atomic():
        volume = Volume.objects.select_for_update().select_related("instance").get(pk=volume.pk)
        instance = volume.instance
        if instance is None or volume.state != VolumeStateChoices.IN_USE:
            where = f" ({volume.state} on {instance.instance_id})" if instance is not None else ""
            raise VolumeError(409, f"volume {volume.volume_id} is not attached{where}: nothing to detach", "volume_id")
        if instance.state in (InstanceState.SCHEDULED, InstanceState.PREPARING):
            raise VolumeError(409, f"volume {volume.volume_id} is on instance {instance.name} "
                                   f"({instance.instance_id}), which is {instance.state}: detach it once it runs",
                              "instance_id")
        if instance.state not in ATTACHABLE_STATES:
            raise VolumeError(409, f"volume {volume.volume_id} is on instance {instance.name} "
                                   f"({instance.instance_id}), which is {instance.state}: detaching from a stopped "
                                   "instance is not done (it would take the volume again at its next start); start "
                                   "it and detach the volume then, or delete the instance, which frees its volumes",
                              "instance_id")
        controller = _cluster_controller(instance)
        volume.state, volume.message = VolumeStateChoices.DETACHING, ""
        volume.save(update_fields=["state", "message", "updated"])
    request = VolumeDetachRequest(volume=VolumeRef(volume_id=volume.volume_id, sc=volume.sc))
    answer = _ask_for(volume, instance, controller,
                      f"instances/{instance.instance_id}/volumes/{volume.volume_id}/detach/", request,
                      pending=VolumeStateChoices.DETACHING, doing="detach", undo={"state": VolumeStateChoices.IN_USE})
    logger.info("volumes: %s detaching from %s on %s (%s)", volume.volume_id, instance.instance_id,
                answer.get("node"), answer.get("tid"))
    volume.refresh_from_db()
    return volume


def fold_volume_report(report: TaskStatus) -> bool:
    """Take a node's report on a volume task (tid ``vol:vol:ins``, ``luhyaapi.volumes.volume_task_id``) into the
    volume's record; False for any other tid. Done ``attached``: ``in-use`` with its device; done ``detached``:
    ``available``, no instance; failed while ``attaching``: ``available`` again, while ``detaching``: ``in-use``
    again, each with the node's reason. Each change applies only to the volume on that instance in the state the
    report answers, so a late or repeated report (an ``attached`` of a volume detached since and attached
    elsewhere, a ``detached`` of one attached again) changes nothing."""
    parsed = parse_volume_task_id(report.tid)
    if parsed is None:
        return False
    volume_id, insid = parsed
    rows = Volume.objects.filter(volume_id=volume_id, instance__instance_id=insid)
    state = VolumeStateChoices
    if report.failed:
        reason = report.errormsg or "the node gave no reason"
        if report.state == "detaching":
            changed = rows.filter(state=state.DETACHING).update(state=state.IN_USE, message=f"not detached: {reason}")
        else:
            changed = rows.filter(state=state.ATTACHING).update(state=state.AVAILABLE, instance=None, device="",
                                                                message=f"not attached: {reason}")
    elif report.done and report.state == "attached":
        device = str((report.result or {}).get("device", ""))[:32]
        changed = rows.filter(state__in=HELD_STATES).update(state=state.IN_USE, device=device, message="")
    elif report.done and report.state == "detached":
        changed = rows.filter(state=state.DETACHING).update(state=state.AVAILABLE, instance=None, device="",
                                                            message="")
    else:
        return True  # progress: nothing to record
    if changed:
        logger.info("volumes: %s %s (%s)", volume_id, "failed" if report.failed else report.state, insid)
    else:
        logger.info("volumes: report %s/%s on %s changes nothing (late, or repeated)", report.phase, report.state,
                    report.tid)
    return True


def volumes_of_run(instance: Instance) -> tuple[VolumeRef, ...]:
    """What a run of the instance carries: every volume it has or is being given (its CC exports each to the node
    it picks, and the node attaches them at start)."""
    volumes = Volume.objects.filter(instance=instance, state__in=HELD_STATES).order_by("volume_id")
    return tuple(VolumeRef(volume_id=volume.volume_id, sc=volume.sc) for volume in volumes)


def run_ended(instance_id: str) -> None:
    """The instance's run ended (stopped, failed): a detach still under way is done (the node keeps only what the
    next run carries); an attach under way becomes ``in-use``, attached again at the next start."""
    rows = Volume.objects.filter(instance__instance_id=instance_id)
    rows.filter(state=VolumeStateChoices.DETACHING).update(state=VolumeStateChoices.AVAILABLE, instance=None,
                                                           device="", message="detached when its instance stopped")
    rows.filter(state=VolumeStateChoices.ATTACHING).update(state=VolumeStateChoices.IN_USE, device="")


def release_volumes(instances, personal_only: bool = False) -> int:
    """Free the volumes of ``instances`` (a queryset of instances that are deleted, or of pool desktops given back:
    ``personal_only``): ``available``, no instance. Returns how many."""
    rows = Volume.objects.filter(instance__in=instances)
    if personal_only:
        rows = rows.filter(personal=True)
    released = rows.update(state=VolumeStateChoices.AVAILABLE, instance=None, device="")
    if released:
        logger.info("volumes: %d volume%s released", released, "s" * (released != 1))
    return released
