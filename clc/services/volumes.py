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

Attaching and detaching are not here yet: the cluster controller has no API for them (``cc.api.urls``).
Who may do what is ``clc.services.authz``'s rule on type ``volume``; the callers ask it.
"""

from __future__ import annotations

import logging

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.ids import new_id
from luhyaapi.trust import own_key
from luhyadb.choices import LivenessChoices, RoleChoices, VolumeSourceChoices, VolumeStateChoices
from luhyadb.models import Image, OwnerGroup, Server, Snapshot, Volume

logger = logging.getLogger(__name__)

MIB = 2**20
# What the SC says of a volume, as the CLC records it (the SC knows nothing of attachments).
SC_STATES = {"creating": VolumeStateChoices.CREATING, "available": VolumeStateChoices.AVAILABLE,
             "failed": VolumeStateChoices.FAILED}
# The SC's request fields that the CLC's API names the same way; the SC's ``volume_id`` and ``sha256`` are the
# CLC's own choices, so a refusal of them is not the caller's fault.
CALLER_FIELDS = frozenset({"size", "snapshot_id", "image_id", "version"})


class VolumeError(Exception):
    """A volume operation was refused: ``status`` is the HTTP status, ``field`` the request field at fault (""
    for none)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def storage_controllers(cluster: str = "") -> list[Server]:
    """The online storage controllers that can be called (of ``cluster`` if given), most recently heard first."""
    servers = Server.objects.filter(role=RoleChoices.SC, state=LivenessChoices.ONLINE).exclude(api_url="")
    if cluster:
        servers = servers.filter(cluster=cluster)
    return list(servers.order_by("-last_seen", "name"))


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
                  snapshot: Snapshot | None = None, image: Image | None = None, image_version: int = 0) -> Volume:
    """Make a volume with its SC and record it: empty (``size``), a copy of ``snapshot`` (on its SC; ``size`` at
    least the snapshot's, the snapshot's if left out) or from ``image``'s version (0 = current; ``size`` required:
    the image's disk must fit; ``creating`` until the SC has fetched and converted it). The caller has checked the
    name and the person's rights. VolumeError 400 naming the field for what cannot be made (a size of 0, not whole
    MiB, beyond the SC's free space with its numbers), 503 when the SC cannot be reached; nothing is recorded then."""
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
                    cluster=server.cluster, sc=server.name, **record)
    _note(volume, answer)
    volume.save()
    logger.info("volumes: %s (%d MiB) made on sc %s for %s", volume_id, volume.size_bytes // MIB, server.name,
                owner_group.path)
    return volume


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
