"""Snapshots of volumes: point-in-time copies, taken while a volume is detached or attached, restoring a volume to
one, and deleting them (a volume is made from one by ``sc.services.store.create_volume``).

A snapshot of an exported (attached) volume is crash-consistent, taken without a guest agent: the SC's tgtd is
paused (SIGSTOP, and every thread of it seen stopped, so no write is half done in the file) while the file is copied
(``cp --reflink=auto --sparse=always``: instant on XFS or btrfs, a sparse copy elsewhere), then resumed. Every write
the guest was told is done is in the copy, none after it: the guest's file system finds what a power cut at that
instant would have left, which its journal recovers. The guest's I/O waits meanwhile (its commands are answered
late, none is lost); see docs/storage.md.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from luhyaapi.ids import new_id
from sc.choices import VolumeStateChoices
from sc.models import Export, Snapshot, Volume
from sc.services.store import (
    VolumeError,
    checked_id,
    copy_sparse,
    get_snapshot,
    get_volume,
    reserve,
    snapshot_path,
    store_lock,
    volume_path,
)
from sc.services.targets import TargetError, target_server

logger = logging.getLogger(__name__)


def create_snapshot(volume_id: str, snapshot_id: str | None = None) -> Snapshot:
    """Take a snapshot of a volume (``snapshot_id`` as the CLC chose it, or a new one); it reserves the volume's
    size. VolumeError: 400 naming ``snapshot_id`` for a bad id, 404 for an unknown volume, 409 for an id in use or a
    volume still being created, 507 naming ``size`` when it does not fit, 503 when tgtd cannot be paused. Nothing is
    left behind by a refused or failed snapshot."""
    snapshot_id = checked_id(snapshot_id, "snapshot", "snapshot_id") if snapshot_id is not None else new_id("snapshot")
    with store_lock():
        volume = get_volume(volume_id)
        if volume.state != VolumeStateChoices.AVAILABLE:
            raise VolumeError(409, f"volume {volume_id} is still being created")
        reserve(volume.size, "a snapshot")
        try:
            with transaction.atomic():
                snapshot = Snapshot.objects.create(snapshot_id=snapshot_id, volume=volume, size=volume.size)
        except IntegrityError:
            raise VolumeError(409, f"snapshot {snapshot_id} exists already", "snapshot_id") from None
        try:
            _copy_consistently(volume, snapshot_path(snapshot_id))
        except BaseException:
            snapshot_path(snapshot_id).unlink(missing_ok=True)
            snapshot.delete()
            raise
    logger.info("snapshot %s of %s taken", snapshot_id, volume_id)
    return snapshot


def _copy_consistently(volume: Volume, target) -> None:
    server = target_server()
    if not Export.objects.filter(volume=volume).exists() or not server.running():
        copy_sparse(volume_path(volume.volume_id), target)
        return
    try:
        with server.paused():
            copy_sparse(volume_path(volume.volume_id), target)
    except TargetError as exc:
        raise VolumeError(503, f"the volume's writes could not be held for the copy: {exc}") from None


def delete_snapshot(snapshot_id: str) -> None:
    """Delete a snapshot and its file (volumes made from it are copies and stay). VolumeError 404 if unknown, 409
    while a volume is being made from it."""
    with store_lock():
        snapshot = get_snapshot(snapshot_id)
        making = list(Volume.objects.filter(state=VolumeStateChoices.CREATING, source_id=snapshot.snapshot_id)
                      .values_list("volume_id", flat=True))
        if making:
            raise VolumeError(409, f"volume {', '.join(making)} is being made from snapshot {snapshot_id}")
        snapshot.delete()
        snapshot_path(snapshot_id).unlink(missing_ok=True)
    logger.info("snapshot %s deleted", snapshot_id)


def restore_volume(volume_id: str, snapshot_id: str) -> Volume:
    """Make a volume's content its snapshot's again (the file is replaced whole, atomically). Refused (409) while
    the volume is exported: the guest's file system keeps what it read in memory, and changing the disk under it
    would corrupt it; detach, restore, attach. VolumeError: 400 naming ``snapshot_id`` for a bad id or one of
    another volume, 404 for an unknown volume or snapshot."""
    snapshot_id = checked_id(snapshot_id, "snapshot", "snapshot_id")
    with store_lock():
        volume = get_volume(volume_id)
        snapshot = get_snapshot(snapshot_id)
        if snapshot.volume_id != volume.pk:
            raise VolumeError(400, f"snapshot {snapshot_id} is of volume {snapshot.volume.volume_id}, not {volume_id}",
                              "snapshot_id")
        export = Export.objects.filter(volume=volume).first()
        if export is not None:
            raise VolumeError(409, f"volume {volume_id} is exported to node {export.node}; detach it before restoring "
                                   "(the guest would not see the change and could corrupt it)")
        copy_sparse(snapshot_path(snapshot_id), volume_path(volume_id))
        volume.save(update_fields=["updated"])
    logger.info("volume %s restored to snapshot %s", volume_id, snapshot_id)
    return volume
