"""The storage controllers of this cluster, as the CC asks them for volumes (issue 16): export a volume to the node
that runs (or is about to run) its instance, and end the export once that node let go of it.

The CLC names the volume's SC (``luhyaapi.volumes.VolumeRef``); the CC finds it among the servers registered with it
(``ClusterNode`` of role ``sc``) and calls its API signed with this host's key. Each export asked is remembered
(``VolumeExport``): the node's report that a detach is done names only the volume and the instance, and the CC ends
that export at the SC it remembered.
"""

from __future__ import annotations

import logging

from django.conf import settings
from pydantic import ValidationError

from cc.models import ClusterNode, VolumeExport
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.messages import TaskStatus
from luhyaapi.trust import own_key
from luhyaapi.volumes import VolumeRef, VolumeTarget, initiator_iqn, parse_volume_task_id

logger = logging.getLogger(__name__)

# An export is a few tgtadm calls on the SC; ending one is asked from the status relay, which must not wait long.
EXPORT_TIMEOUT = 20.0
UNEXPORT_TIMEOUT = 3.0
# The SC's refusals passed on as they are; anything else (unreachable, a server error, our signature refused) says
# that the SC cannot do it now.
PASSED_ON = (400, 404, 409)


class ExportRefused(Exception):
    """The volume cannot be exported as asked: ``status`` is the HTTP status that says why, ``field`` the request's
    field at fault ('' for none)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def storage_controller(name: str) -> ClusterNode:
    """The SC ``name`` as it registered with this cluster; ExportRefused (400 naming ``sc``) for any other."""
    server = ClusterNode.objects.filter(role="sc", name=name).first()
    if server is None or not server.api_url:
        raise ExportRefused(400, f"storage controller {name!r} has not registered with cluster "
                                 f"{settings.EDUCLOUD.cluster!r}", "sc")
    return server


def _export_path(volume_id: str) -> str:
    return f"/sc/api/1.0/volumes/{volume_id}/export/"


def export_volume(volume: VolumeRef, node: str, insid: str, take_over: bool = False) -> VolumeTarget:
    """Have the volume's SC export it to ``node`` (for instance ``insid``) and answer how that node logs in; the
    export is remembered for ``end_detached_export``. ``take_over`` moves an export to another node (a run on
    another node than last time); without it that is the SC's 409. ExportRefused: 400 naming ``sc`` for an SC this
    cluster does not know; the SC's 400/404/409 with its words; 503 when it cannot be reached, fails, or answers
    something that is not a target for ``node``."""
    server = storage_controller(volume.sc)
    client = RoleClient(server.api_url, own_key(), timeout=EXPORT_TIMEOUT)
    try:
        answer = client.post(_export_path(volume.volume_id), {"node": node, "take_over": take_over})
    except RemoteError as exc:
        status = exc.status if exc.status in PASSED_ON else 503
        raise ExportRefused(status, f"storage controller {server.name}: {exc.detail}") from None
    try:
        target = VolumeTarget.model_validate(answer)
    except ValidationError:
        target = None  # its fields are not echoed: one is the CHAP secret
    if target is None or target.volume_id != volume.volume_id or target.initiator != initiator_iqn(node):
        raise ExportRefused(503, f"storage controller {server.name} did not answer the export of "
                                 f"{volume.volume_id} to {node} with its target")
    VolumeExport.objects.update_or_create(volume_id=volume.volume_id, defaults={
        "sc": server.name, "node": node, "instance_id": insid, "detaching": False})
    logger.info("volumes: %s exported by %s to %s for %s", volume.volume_id, server.name, node, insid)
    return target


def export_run_volumes(volumes: tuple[VolumeRef, ...], node: str,
                       insid: str) -> tuple[list[VolumeTarget], dict[str, str]]:
    """Export every volume of a run to the node chosen for it, each moved there from wherever it was exported
    before (``take_over``). Returns the targets, and for each volume its SC would not export, why: the run goes on
    without it."""
    targets, missing = [], {}
    for volume in volumes:
        try:
            targets.append(export_volume(volume, node, insid, take_over=True))
        except ExportRefused as exc:
            logger.warning("volumes: %s not exported for the run of %s on %s: %s", volume.volume_id, insid, node, exc)
            missing[volume.volume_id] = str(exc)
    return targets, missing


def note_detaching(volume: VolumeRef, node: str, insid: str) -> None:
    """Remember that a detach of ``volume`` from ``insid`` was asked, so that its export ends once the node reports
    it done (``end_detached_export``). ExportRefused (400 naming ``sc``) for an SC this cluster does not know."""
    storage_controller(volume.sc)
    VolumeExport.objects.update_or_create(volume_id=volume.volume_id, defaults={
        "sc": volume.sc, "node": node, "instance_id": insid, "detaching": True})


def end_detached_export(report: TaskStatus) -> bool:
    """End the SC's export of a volume the node reports detached (a volume task's report, done, state
    ``detached``) if a detach of it from that instance was asked here. Returns whether it was ended. Never raises
    for the SC: an SC that refuses or does not answer within a few seconds is logged and the export stays, until
    the volume's next export moves it."""
    parsed = parse_volume_task_id(report.tid)
    if parsed is None or not report.done or report.failed or report.state != "detached":
        return False
    volume_id, insid = parsed
    export = VolumeExport.objects.filter(volume_id=volume_id, instance_id=insid, detaching=True).first()
    if export is None:
        return False
    try:
        server = storage_controller(export.sc)
        RoleClient(server.api_url, own_key(), timeout=UNEXPORT_TIMEOUT).request("DELETE", _export_path(volume_id))
    except (ExportRefused, RemoteError) as exc:
        logger.warning("volumes: the export of %s (detached from %s) was not ended at %s: %s", volume_id, insid,
                       export.sc, exc)
        return False
    # An export asked again meanwhile (an attach) is no longer ``detaching``: its record stays.
    VolumeExport.objects.filter(pk=export.pk, detaching=True).delete()
    logger.info("volumes: export of %s by %s ended (detached from %s)", volume_id, export.sc, insid)
    return True
