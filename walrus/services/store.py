"""The image store: uploads received in pieces and hashed on the way, the numbered versions of each image, their
files under ``<data_dir>/walrus/``.

Every id is validated (``luhyaapi.ids``) before it becomes part of a path, so no name can leave the store's folders.
An upload's partial file is locked (``flock``) by whoever writes, completes or abandons it, so two transfers to one
upload never interleave, whichever thread or process of this host they run in.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from luhyaapi.ids import new_id, validate_id
from luhyaapi.ranges import FileRange
from luhyaapi.transfer import BackgroundHash, Writeback, write_all
from walrus.choices import UploadStateChoices
from walrus.constants import CHECKPOINT_BYTES, DISK_FULL, IO_CHUNK_BYTES
from walrus.models import ImageVersion, Upload
from walrus.services.formats import HEAD_BYTES, detect_format, host_file_reference

logger = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class StoreError(Exception):
    """A store operation was refused; ``status`` is the HTTP status that says why and ``extra`` holds more fields
    of the answer (``offset``: where a writer must go on)."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class StoredImage:
    """An image as walrus knows it: its stored versions, newest first."""

    image_id: str
    versions: list[ImageVersion] = field(default_factory=list)

    @property
    def current(self) -> int | None:
        return next((stored.version for stored in self.versions if stored.current), None)


# Files and folders.

def store_dir() -> Path:
    return settings.EDUCLOUD.data_dir / "walrus"


def upload_path(upload_id: str) -> Path:
    """``<data_dir>/walrus/uploads/<upload_id>.part``; raises InvalidId for anything but an upload id."""
    return store_dir() / "uploads" / f"{validate_id(upload_id, 'upload')}.part"


def image_dir(image_id: str) -> Path:
    """``<data_dir>/walrus/images/<image_id>``; raises InvalidId for anything but an image id."""
    return store_dir() / "images" / validate_id(image_id, "image")


def version_path(image_id: str, version: int) -> Path:
    """``<data_dir>/walrus/images/<image_id>/<version>.img``; raises InvalidId or ValueError for a bad part."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{version!r} is not a version number")
    return image_dir(image_id) / f"{version}.img"


def _sync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` survive a power cut (the data alone being on disk is not enough)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Disk formats.

def detect_file_format(path: Path) -> str:
    with open(path, "rb") as file:
        return detect_format(file.read(HEAD_BYTES))


# Running hashes: a write goes on from the sha256 state the previous write of this process left.

@dataclass
class _RunningHash:
    offset: int
    hasher: hashlib._Hash


_running: dict[str, _RunningHash] = {}
_running_lock = threading.Lock()


def _hash_file(fd: int, hasher: hashlib._Hash, start: int, end: int) -> None:
    position = start
    while position < end:
        data = os.pread(fd, min(IO_CHUNK_BYTES, end - position), position)
        if not data:
            raise StoreError(500, f"the partial file ends at {position}, before {end}")
        hasher.update(data)
        position += len(data)


def _hash_at(upload_id: str, fd: int, offset: int) -> hashlib._Hash:
    """The sha256 state of the partial file's first ``offset`` bytes. This process's last write left it in memory;
    after a restart (or writes by another process) the bytes it has not seen are read back from the file, once."""
    with _running_lock:
        running = _running.pop(upload_id, None)
    if running is None or running.offset > offset:
        running = _RunningHash(0, hashlib.sha256())
    if running.offset < offset:
        logger.info("walrus: re-reading bytes %d-%d of upload %s for its sha256", running.offset, offset, upload_id)
    _hash_file(fd, running.hasher, running.offset, offset)
    return running.hasher


def _keep_hash(upload_id: str, offset: int, hasher: hashlib._Hash) -> None:
    with _running_lock:
        _running[upload_id] = _RunningHash(offset, hasher.copy())


def _forget_hash(upload_id: str) -> None:
    with _running_lock:
        _running.pop(upload_id, None)


# Uploads.

def _load(upload_id: str) -> Upload:
    try:
        return Upload.objects.get(upload_id=validate_id(upload_id, "upload"))
    except Upload.DoesNotExist:
        raise StoreError(404, f"no upload {upload_id}") from None


@contextmanager
def _locked_part(upload_id: str) -> Iterator[int]:
    """The partial file's descriptor, locked against every other user of the same upload. A second writer is
    refused at once (409) rather than queued behind a transfer that may take hours. Raises FileNotFoundError when
    the partial file is gone (completed or abandoned meanwhile): the caller decides what that means."""
    fd = os.open(upload_path(upload_id), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            offset = Upload.objects.filter(upload_id=upload_id).values_list("offset", flat=True).first()
            raise StoreError(409, f"another transfer to upload {upload_id} is in progress; try again later",
                             offset=offset) from None
        yield fd
    finally:
        os.close(fd)


def _unavailable(upload_id: str) -> StoreError:
    """Why an upload takes no data: it is unknown (raised at once), complete, or its partial file is gone."""
    upload = _load(upload_id)
    if upload.state == UploadStateChoices.COMPLETE:
        return StoreError(409, f"upload {upload_id} is complete (version {upload.version})", offset=upload.offset)
    logger.error("walrus: the partial file of open upload %s is missing", upload_id)
    return StoreError(410, f"the data of upload {upload_id} is missing from the store; abandon it and start again")


def _reconcile(upload: Upload, fd: int) -> int:
    """Make the partial file and the saved offset agree and return the offset. After a crash the file may hold
    bytes past the last saved offset: they were never acknowledged, so they go. A file shorter than the offset lost
    data (a disk fault, a hand at work): the offset goes back to what the file really holds."""
    length = os.fstat(fd).st_size
    if length > upload.offset:
        os.ftruncate(fd, upload.offset)
    elif length < upload.offset:
        logger.warning("walrus: upload %s had %d bytes on disk but %d recorded; going on from %d",
                       upload.upload_id, length, upload.offset, length)
        Upload.objects.filter(pk=upload.pk).update(offset=length, updated=timezone.now())
        upload.offset = length
    return upload.offset


def _save_offset(upload: Upload, fd: int, offset: int) -> None:
    # The saved offset must never be ahead of the bytes on disk, or a crash would leave a hole that looks received.
    os.fdatasync(fd)
    Upload.objects.filter(pk=upload.pk, state=UploadStateChoices.OPEN).update(offset=offset, updated=timezone.now())


def _write_all(fd: int, data: bytes, position: int) -> None:
    try:
        write_all(fd, data, position)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreError(507, "the image store's disk is full", reason=DISK_FULL) from exc
        raise


def start_upload(image_id: str, size: int, sha256: str = "") -> Upload:
    """Open an upload of the next version of ``image_id``: ``size`` bytes, optionally with the whole file's sha256.
    Raises InvalidId or ValueError for bad arguments, StoreError 507 when the store's disk has not ``size`` bytes
    free."""
    validate_id(image_id, "image")
    if size < 1:
        raise ValueError(f"size {size} must be at least 1 byte")
    if sha256 and not SHA256_RE.match(sha256):
        raise ValueError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
    folder = store_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if size > free:
        raise StoreError(507, f"the image store has {free} bytes free; this image needs {size}", reason=DISK_FULL)
    for _attempt in range(5):
        upload_id = new_id("upload")
        try:
            with transaction.atomic():
                upload = Upload.objects.create(upload_id=upload_id, image_id=image_id, size=size, sha256=sha256)
                os.close(os.open(upload_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except (IntegrityError, FileExistsError):
            continue
        logger.info("walrus: upload %s of %s started (%d bytes)", upload_id, image_id, size)
        return upload
    raise StoreError(503, "no free upload id was found; try again")


def get_upload(upload_id: str) -> Upload:
    """An upload by id: where to resume (``offset``) and its state. Raises StoreError 404."""
    return _load(upload_id)


def write_upload(upload_id: str, offset: int, length: int, read: Callable[[int], bytes]) -> int:
    """Write ``length`` bytes, taken in chunks from ``read(n)``, at ``offset`` of an open upload, hashing them on the
    way, and return the new offset. What arrives before ``read`` fails or ends early is kept and the new offset
    saved, so the sender resumes from there. Raises StoreError: 404 no such upload; 409 (with ``offset``) if
    ``offset`` is not where the upload stands, another transfer to it is in progress or it is complete; 400 if the
    data would pass the upload's size, or the body ended early (with the saved ``offset``); 410 if its partial file
    is gone; 507 when the disk is full."""
    try:
        with _locked_part(upload_id) as fd:
            # Read again under the lock: the previous holder may have moved the offset or completed the upload.
            upload = _load(upload_id)
            if upload.state != UploadStateChoices.OPEN:
                raise _unavailable(upload_id)
            current = _reconcile(upload, fd)
            if offset != current:
                raise StoreError(409, f"upload {upload_id} stands at offset {current}, not {offset}", offset=current)
            if length > upload.size - current:
                raise StoreError(400, f"{length} bytes at offset {current} would pass the upload's size "
                                      f"{upload.size}", offset=current)
            return _receive(upload, fd, current, length, read)
    except FileNotFoundError:
        raise _unavailable(upload_id) from None


def _receive(upload: Upload, fd: int, start: int, length: int, read: Callable[[int], bytes]) -> int:
    hasher = _hash_at(upload.upload_id, fd, start)
    position = saved = start
    end = start + length
    # The disk writes, the sha256 (in a helper thread) and the reads from the request overlap; the disk starts
    # writing back at once, so the checkpoints' fdatasync find little to do.
    writeback = Writeback(fd, start)
    hashing = BackgroundHash(hasher)
    try:
        while position < end:
            try:
                chunk = read(min(IO_CHUNK_BYTES, end - position))
            except OSError as exc:
                raise StoreError(400, f"the connection was lost after {position - start} of {length} bytes: {exc}",
                                 offset=position) from exc
            if not chunk:
                raise StoreError(400, f"the body ended after {position - start} of {length} bytes", offset=position)
            _write_all(fd, chunk, position)
            hashing.feed(chunk)
            position += len(chunk)
            writeback.written(position)
            if position - saved >= CHECKPOINT_BYTES:
                _save_offset(upload, fd, position)
                saved = position
    finally:
        # A chunk whose write failed half-way is not in the hash: drop its bytes so file and hash stay the same.
        os.ftruncate(fd, position)
        hashing.finish()
        _save_offset(upload, fd, position)
        _keep_hash(upload.upload_id, position, hasher)
        if position < end:
            logger.warning("walrus: upload %s got %d of %d bytes at %d; kept them (offset %d)", upload.upload_id,
                           position - start, length, start, position)
    return position


def _next_version(image_id: str) -> int:
    # Numbers are never reused (the CLC keeps a record per number): count the versions deleted since, too.
    stored = ImageVersion.objects.filter(image_id=image_id).aggregate(n=Max("version"))["n"] or 0
    made = Upload.objects.filter(image_id=image_id, state=UploadStateChoices.COMPLETE).aggregate(
        n=Max("version"))["n"] or 0
    return max(stored, made) + 1


def _completed_version(upload: Upload) -> ImageVersion:
    stored = ImageVersion.objects.filter(image_id=upload.image_id, version=upload.version).first()
    if stored is None:
        raise StoreError(410, f"upload {upload.upload_id} became version {upload.version} of {upload.image_id}, "
                              "which has since been deleted")
    return stored


def _discard(upload: Upload) -> None:
    Upload.objects.filter(pk=upload.pk).delete()
    upload_path(upload.upload_id).unlink(missing_ok=True)
    _forget_hash(upload.upload_id)


def complete_upload(upload_id: str, sha256: str = "") -> tuple[ImageVersion, bool]:
    """Store a fully received upload as the next version of its image and make that version current. Returns the
    version and whether this call made it: completing a completed upload answers with the same version, so a client
    whose connection broke during ``complete/`` can safely ask again. ``sha256`` (given here, at start, or both)
    must be the received file's. Raises StoreError: 404 no such upload; 409 (with ``offset``) if not all bytes
    arrived or a transfer to it is in progress; 422 if a sha256 differs, and 400 (with ``reason``) if the image would
    make a hypervisor open other files of its host (``walrus.services.formats``): then the upload and its data are
    discarded; 410 if the version it became has since been deleted."""
    if sha256 and not SHA256_RE.match(sha256):
        raise ValueError(f"{sha256!r} is not a sha256 (64 lower-case hex digits)")
    upload = _load(upload_id)
    if upload.state == UploadStateChoices.COMPLETE:
        return _completed_version(upload), False
    try:
        with _locked_part(upload_id) as fd:
            upload = _load(upload_id)
            if upload.state == UploadStateChoices.COMPLETE:
                return _completed_version(upload), False
            received = _reconcile(upload, fd)
            if received != upload.size:
                raise StoreError(409, f"upload {upload_id} has {received} of {upload.size} bytes", offset=received)
            hasher = _hash_at(upload_id, fd, received)
            # Kept until the version is stored, so a retry after a failure below need not re-read the file.
            _keep_hash(upload_id, received, hasher)
            actual = hasher.hexdigest()
            wrong = sorted({expected for expected in (upload.sha256, sha256) if expected and expected != actual})
            if wrong:
                _discard(upload)
                logger.warning("walrus: upload %s of %s refused: sha256 %s, expected %s", upload_id,
                               upload.image_id, actual, wrong[0])
                raise StoreError(422, f"the received data's sha256 is {actual}, not {wrong[0]}; the upload is "
                                      "discarded, start again")
            head = os.pread(fd, HEAD_BYTES, 0)
            refused = host_file_reference(head, lambda offset, size: os.pread(fd, size, offset))
            if refused:
                _discard(upload)
                logger.warning("walrus: upload %s of %s refused (%s): %s", upload_id, upload.image_id,
                               refused.reason, refused.message)
                raise StoreError(400, f"{refused.message}; the upload is discarded", reason=refused.reason)
            os.fsync(fd)
            return _store_version(upload, actual, detect_format(head)), True
    except FileNotFoundError:
        upload = _load(upload_id)
        if upload.state == UploadStateChoices.COMPLETE:
            return _completed_version(upload), False
        raise _unavailable(upload_id) from None


def _store_version(upload: Upload, sha256: str, disk_format: str) -> ImageVersion:
    part = upload_path(upload.upload_id)
    last_error: Exception | None = None
    for attempt in range(5):
        target: Path | None = None
        try:
            with transaction.atomic():
                # Lock the image's versions: a delete that promotes another version must not interleave.
                list(ImageVersion.objects.select_for_update().filter(image_id=upload.image_id))
                number = _next_version(upload.image_id)
                ImageVersion.objects.filter(image_id=upload.image_id, current=True).update(current=False)
                stored = ImageVersion.objects.create(image_id=upload.image_id, version=number, size=upload.size,
                                                     sha256=sha256, format=disk_format, current=True)
                Upload.objects.filter(pk=upload.pk).update(state=UploadStateChoices.COMPLETE, version=number,
                                                           offset=upload.size, updated=timezone.now())
                folder = image_dir(upload.image_id)
                folder.mkdir(parents=True, exist_ok=True)
                # The rename is the last step, so a failure before it leaves the upload as it was.
                destination = version_path(upload.image_id, number)
                os.replace(part, destination)
                target = destination
        except BaseException as exc:
            if target is not None:
                os.replace(target, part)
            if isinstance(exc, (IntegrityError, OperationalError)):
                # Another upload of this image took the number first, or (MariaDB) two completes of new images
                # deadlocked on the same index gap: numbering again in a new transaction settles both.
                logger.info("walrus: numbering %s again after %s", upload.upload_id, exc)
                last_error = exc
                time.sleep(0.05 * (attempt + 1))
                continue
            raise
        _sync_dir(folder)
        _forget_hash(upload.upload_id)
        logger.info("walrus: upload %s stored as %s version %d (%s, %d bytes, sha256 %s)", upload.upload_id,
                    upload.image_id, number, disk_format, upload.size, sha256)
        return stored
    raise StoreError(503, f"could not number the new version of {upload.image_id} ({last_error}); try again")


def abandon_upload(upload_id: str) -> None:
    """Forget an open upload and delete its partial file. Raises StoreError: 404 no such upload; 409 if it is
    complete (delete the version instead) or a transfer to it is in progress."""
    upload = _load(upload_id)
    if upload.state == UploadStateChoices.COMPLETE:
        raise StoreError(409, f"upload {upload_id} is complete (version {upload.version}); delete the version instead")
    try:
        with _locked_part(upload_id):
            _discard(_load(upload_id))
    except FileNotFoundError:
        Upload.objects.filter(pk=upload.pk, state=UploadStateChoices.OPEN).delete()
    logger.info("walrus: upload %s of %s abandoned", upload_id, upload.image_id)


def expire_uploads(max_idle_seconds: float) -> list[str]:
    """Delete the open uploads nobody has written to for ``max_idle_seconds`` (their ``updated`` time), with their
    partial files, and partial files older than that which no open upload owns (left by a crash); return the ids
    of the uploads deleted. An upload being written right now is left alone, however old (its partial file is
    locked), and so are complete uploads: they hold no data and keep version numbers from being reused."""
    cutoff = timezone.now() - timedelta(seconds=max_idle_seconds)
    expired = []
    for upload_id in Upload.objects.filter(state=UploadStateChoices.OPEN, updated__lt=cutoff).values_list(
            "upload_id", flat=True):
        try:
            with _locked_part(upload_id):
                # Read again under the lock: a write may have touched it since the query.
                upload = _load(upload_id)
                if upload.state != UploadStateChoices.OPEN or upload.updated >= cutoff:
                    continue
                _discard(upload)
        except StoreError:
            continue  # being written (409), or completed or abandoned meanwhile (404)
        except FileNotFoundError:
            Upload.objects.filter(upload_id=upload_id, state=UploadStateChoices.OPEN).delete()
        expired.append(upload_id)
        logger.info("walrus: upload %s expired (no data for %.0f hours)", upload_id, max_idle_seconds / 3600)
    folder = store_dir() / "uploads"
    open_ids = set(Upload.objects.filter(state=UploadStateChoices.OPEN).values_list("upload_id", flat=True))
    for part in folder.glob("upl-*.part") if folder.is_dir() else []:
        try:
            stale = part.stem not in open_ids and part.stat().st_mtime < cutoff.timestamp()
        except FileNotFoundError:
            continue
        if stale:
            logger.info("walrus: removing %s, a partial file no open upload owns", part)
            part.unlink(missing_ok=True)
    return expired


# Images and their versions.

def image_ids() -> QuerySet:
    """The ids of the images with stored versions, sorted (a queryset, so that it can be paginated)."""
    return ImageVersion.objects.order_by("image_id").values_list("image_id", flat=True).distinct()


def list_images(image_ids: list[str]) -> list[StoredImage]:
    """The images of ``image_ids`` with their versions, in the same order."""
    versions: dict[str, list[ImageVersion]] = {image_id: [] for image_id in image_ids}
    for stored in ImageVersion.objects.filter(image_id__in=image_ids).order_by("image_id", "-version"):
        versions[stored.image_id].append(stored)
    return [StoredImage(image_id, found) for image_id, found in versions.items()]


def get_image(image_id: str) -> StoredImage:
    """An image's versions. Raises StoreError 404 if it has none."""
    versions = list(ImageVersion.objects.filter(image_id=validate_id(image_id, "image")).order_by("-version"))
    if not versions:
        raise StoreError(404, f"no stored versions of {image_id}")
    return StoredImage(image_id, versions)


def find_version(image_id: str, version: int | None) -> ImageVersion:
    """Version ``version`` of an image, or its current one for None. Raises StoreError 404."""
    found = ImageVersion.objects.filter(image_id=validate_id(image_id, "image"))
    found = found.filter(current=True) if version is None else found.filter(version=version)
    stored = found.first()
    if stored is None:
        raise StoreError(404, f"no {'current' if version is None else version} version of {image_id}")
    return stored


def open_version(stored: ImageVersion, first: int, last: int) -> FileRange:
    """Bytes ``first..last`` (inclusive) of a version's file, for a web server to send straight from the file. The
    file is opened now, so a version deleted while it is sent is still sent whole; closing the range closes it.
    Raises StoreError 500 when the version's file is missing."""
    try:
        file = open(version_path(stored.image_id, stored.version), "rb", buffering=0)
    except FileNotFoundError:
        logger.error("walrus: the file of %s version %d is missing", stored.image_id, stored.version)
        raise StoreError(500, f"the file of {stored.image_id} version {stored.version} is missing") from None
    return FileRange(file, first, last)


def delete_version(image_id: str, version: int) -> None:
    """Delete one version and its file; if it was current, the newest remaining version becomes current. Raises
    StoreError 404."""
    path = version_path(image_id, version)
    with transaction.atomic():
        versions = list(ImageVersion.objects.select_for_update().filter(image_id=image_id).order_by("-version"))
        stored = next((candidate for candidate in versions if candidate.version == version), None)
        if stored is None:
            raise StoreError(404, f"no version {version} of {image_id}")
        stored.delete()
        remaining = [candidate for candidate in versions if candidate.version != version]
        if stored.current and remaining:
            ImageVersion.objects.filter(pk=remaining[0].pk).update(current=True)
    # After the commit: a rolled-back delete must not have lost the file.
    path.unlink(missing_ok=True)
    logger.info("walrus: %s version %d deleted", image_id, version)


def delete_image(image_id: str) -> None:
    """Delete every version of an image and its folder. Raises StoreError 404 if it has none."""
    folder = image_dir(image_id)
    deleted, _ = ImageVersion.objects.filter(image_id=image_id).delete()
    if not deleted:
        raise StoreError(404, f"no stored versions of {image_id}")
    shutil.rmtree(folder, ignore_errors=True)
    logger.info("walrus: %s deleted (%d versions)", image_id, deleted)
