"""The volume store: raw sparse files under ``<data_dir>/sc/``, one per volume and per snapshot, the space they
reserve against the SC's capacity, and the records that say which exist.

Every id is validated (``luhyaapi.ids``) before it becomes part of a path, so no name can leave the store's folders.
Changes of state (a volume recorded, exported, snapshotted, restored, deleted) are made one at a time under the
store's lock (``store_lock``: a thread lock and an ``flock`` on ``<data_dir>/sc/lock``, so two processes of one host
never interleave either); a long copy runs after its record reserved the space, outside the lock.

The SC does not over-commit: each volume and each snapshot reserves its whole size from the moment it is recorded,
although its file is sparse and uses only the blocks written. A volume that would not fit is refused with the numbers
(requested, free, capacity).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

from luhyaapi.ids import InvalidId, new_id, validate_id
from sc.choices import VolumeSourceChoices, VolumeStateChoices
from sc.constants import MAX_VOLUME_BYTES, SIZE_UNIT, MiB
from sc.models import Snapshot, Volume

logger = logging.getLogger(__name__)

COPY_TIMEOUT = 6 * 3600


class VolumeError(Exception):
    """A volume operation was refused; ``status`` is the HTTP status that says why and ``field`` the input at fault
    (the answer names it), if one is."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Space:
    """The store's space in bytes: ``capacity`` (``sc.capacity_gb``, or the file system's size), ``reserved`` by
    volumes and snapshots, and ``free`` (what is not reserved, never more than the file system has free now)."""

    capacity: int
    reserved: int
    free: int


# Files and folders.

def store_dir() -> Path:
    return settings.EDUCLOUD.data_dir / "sc"


def volumes_dir() -> Path:
    return store_dir() / "volumes"


def snapshots_dir() -> Path:
    return store_dir() / "snapshots"


def volume_path(volume_id: str) -> Path:
    """``<data_dir>/sc/volumes/<volume_id>.raw``; raises InvalidId for anything but a volume id."""
    return volumes_dir() / f"{validate_id(volume_id, 'volume')}.raw"


def snapshot_path(snapshot_id: str) -> Path:
    """``<data_dir>/sc/snapshots/<snapshot_id>.raw``; raises InvalidId for anything but a snapshot id."""
    return snapshots_dir() / f"{validate_id(snapshot_id, 'snapshot')}.raw"


_thread_lock = threading.RLock()


@contextmanager
def store_lock() -> Iterator[None]:
    """One change of the store's state at a time, across the threads and processes of this host."""
    with _thread_lock:
        store_dir().mkdir(parents=True, exist_ok=True)
        with open(store_dir() / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` as a reflink where the file system can (XFS, btrfs: instant, sharing blocks
    until either is written), else as a sparse copy (holes stay holes); through ``<target>.part`` so ``target`` is
    whole or absent. Raises VolumeError (507) when the copy fails (the disk filled up, say)."""
    partial = target.with_name(f"{target.name}.part")
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = ["cp", "--reflink=auto", "--sparse=always", "--", str(source), str(partial)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=COPY_TIMEOUT, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise VolumeError(507, f"copying {source.name} failed: {result.stderr.strip()}")
    os.replace(partial, target)


# Space.

def space() -> Space:
    """The store's capacity, what its volumes and snapshots reserve and what is free (bytes)."""
    volumes_dir().mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(volumes_dir())
    capacity = settings.EDUCLOUD.sc_capacity_bytes or disk.total
    reserved = ((Volume.objects.aggregate(total=Sum("size"))["total"] or 0)
                + (Snapshot.objects.aggregate(total=Sum("size"))["total"] or 0))
    return Space(capacity=capacity, reserved=reserved, free=max(0, min(capacity - reserved, disk.free)))


def _mib(size: int) -> str:
    return f"{size // MiB} MiB"


def reserve(size: int, what: str) -> None:
    """Raise VolumeError (507, naming ``size``) if ``size`` more bytes do not fit; call under ``store_lock``."""
    now = space()
    if size > now.free:
        raise VolumeError(507, f"{what} of {_mib(size)} does not fit: {_mib(now.free)} free of {_mib(now.capacity)} "
                               f"capacity", "size")


def checked_size(size: object) -> int:
    """``size`` if it is a whole number of bytes, above 0, a multiple of 1 MiB and within the store's capacity;
    else VolumeError (400, field ``size``) saying which."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise VolumeError(400, f"{size!r} is not a whole number of bytes", "size")
    if size <= 0:
        raise VolumeError(400, f"{size} is not above 0", "size")
    if size % SIZE_UNIT:
        raise VolumeError(400, f"{size} is not a whole number of MiB ({SIZE_UNIT} bytes)", "size")
    capacity = min(space().capacity, MAX_VOLUME_BYTES)
    if size > capacity:
        raise VolumeError(400, f"{_mib(size)} is more than the storage controller's capacity of {_mib(capacity)}",
                          "size")
    return size


def checked_id(value: object, kind: str, field: str) -> str:
    """``value`` if it is an id of ``kind``; else VolumeError (400, naming ``field``)."""
    try:
        return validate_id(value, kind)  # type: ignore[arg-type]
    except InvalidId as exc:
        raise VolumeError(400, str(exc), field) from None


# Volumes.

def get_volume(volume_id: str) -> Volume:
    """The volume; VolumeError 404 if the SC has none of that id."""
    try:
        return Volume.objects.get(volume_id=validate_id(volume_id, "volume"))
    except Volume.DoesNotExist:
        raise VolumeError(404, f"no volume {volume_id}") from None


def get_snapshot(snapshot_id: str) -> Snapshot:
    """The snapshot; VolumeError 404 if the SC has none of that id."""
    try:
        return Snapshot.objects.select_related("volume").get(snapshot_id=validate_id(snapshot_id, "snapshot"))
    except Snapshot.DoesNotExist:
        raise VolumeError(404, f"no snapshot {snapshot_id}") from None


def create_volume(*, size: int | None = None, volume_id: str | None = None, snapshot_id: str | None = None) -> Volume:
    """Make a volume (``volume_id`` as the CLC chose it, or a new one): empty of ``size`` bytes (a sparse file,
    nothing written), or a copy of snapshot ``snapshot_id`` (``size`` defaults to the snapshot's and may be larger;
    the rest reads as zeros). Returns the available volume.

    Errors (VolumeError): 400 naming ``size``/``volume_id``/``snapshot_id`` for bad input (and ``size`` smaller than
    the snapshot's), 404 for an unknown snapshot, 409 for an id in use, 507 naming ``size`` when it does not fit
    (requested, free and capacity in the message). Nothing is left behind by a refused or failed create."""
    volume_id = checked_id(volume_id, "volume", "volume_id") if volume_id is not None else new_id("volume")
    snapshot = None
    if snapshot_id is not None:
        snapshot_id = checked_id(snapshot_id, "snapshot", "snapshot_id")
        snapshot = get_snapshot(snapshot_id)
        size = snapshot.size if size is None else size
        if checked_size(size) < snapshot.size:
            raise VolumeError(400, f"{_mib(size)} is smaller than snapshot {snapshot_id} ({_mib(snapshot.size)})",
                              "size")
    elif size is None:
        raise VolumeError(400, "give the size in bytes (or a snapshot_id to copy)", "size")
    size = checked_size(size)
    path = volume_path(volume_id)
    with store_lock():
        reserve(size, "a volume")
        try:
            with transaction.atomic():
                volume = Volume.objects.create(
                    volume_id=volume_id, size=size, state=VolumeStateChoices.CREATING,
                    source=VolumeSourceChoices.SNAPSHOT if snapshot else VolumeSourceChoices.EMPTY,
                    source_id=snapshot.snapshot_id if snapshot else "")
        except IntegrityError:
            raise VolumeError(409, f"volume {volume_id} exists already", "volume_id") from None
    try:
        if snapshot is not None:
            copy_sparse(snapshot_path(snapshot.snapshot_id), path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "xb"):
                pass
        os.truncate(path, size)
    except BaseException:
        path.unlink(missing_ok=True)
        Volume.objects.filter(pk=volume.pk).delete()
        raise
    volume.state = VolumeStateChoices.AVAILABLE
    volume.save(update_fields=["state", "updated"])
    logger.info("volume %s created (%s, %s)", volume_id, _mib(size), f"from {snapshot_id}" if snapshot else "empty")
    return volume


def delete_volume(volume_id: str) -> None:
    """Delete a volume and its file. VolumeError 404 if unknown, 409 (with the reason) while it is being created,
    exported to a node, or has snapshots (each named: delete them first)."""
    with store_lock():
        volume = get_volume(volume_id)
        if volume.state == VolumeStateChoices.CREATING:
            raise VolumeError(409, f"volume {volume_id} is still being created")
        if hasattr(volume, "export"):
            raise VolumeError(409, f"volume {volume_id} is exported to node {volume.export.node}; detach it first")
        snapshots = list(volume.snapshots.values_list("snapshot_id", flat=True))
        if snapshots:
            raise VolumeError(409, f"volume {volume_id} has snapshots ({', '.join(snapshots)}); delete them first")
        volume.delete()
        volume_path(volume_id).unlink(missing_ok=True)
    logger.info("volume %s deleted", volume_id)


def forget_unfinished() -> list[str]:
    """Remove what a crash left half made: volumes still ``creating`` (record, file and partial copy), partial
    snapshot copies and image downloads. Called when the SC starts, before anything else changes the store; returns
    the volume ids."""
    with store_lock():
        unfinished = list(Volume.objects.filter(state=VolumeStateChoices.CREATING).values_list("volume_id", flat=True))
        for volume_id in unfinished:
            path = volume_path(volume_id)
            path.unlink(missing_ok=True)
            path.with_name(f"{path.name}.part").unlink(missing_ok=True)
        Volume.objects.filter(volume_id__in=unfinished).delete()
        for folder in (volumes_dir(), snapshots_dir()):
            for partial in folder.glob("*.part") if folder.is_dir() else ():
                partial.unlink()
        downloads = store_dir() / "downloads"
        for download in downloads.iterdir() if downloads.is_dir() else ():
            download.unlink()
    if unfinished:
        logger.warning("volumes left unfinished by a crash removed: %s", ", ".join(unfinished))
    return unfinished


def volume_store_mb() -> tuple[int, int]:
    """The store's capacity and free space in MB (MiB), as the SC's heartbeat reports its disk."""
    now = space()
    return now.capacity // MiB, now.free // MiB
