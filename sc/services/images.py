"""Volumes made from an image version: the SC downloads the version from walrus (signed, resumable, its sha256
checked) and converts it to the volume's raw sparse file with ``qemu-img convert -O raw``, in the background, the
volume ``creating`` with its progress meanwhile and ``failed`` with the reason if it cannot be made.

The SC builds the download URL itself from ``cloud.walrus_url`` and the image id and version (never a URL a caller
gives: the SC signs what it fetches with its host key). The image's format is what ``qemu-img info`` finds, one of
walrus's formats, and an image naming a backing file is refused (it would make ``qemu-img`` read another file of the
SC's host).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction

from luhyaapi.ids import new_id
from luhyaapi.transfer import TransferError, download, throttled
from luhyaapi.trust import own_key
from sc.choices import VolumeSourceChoices, VolumeStateChoices
from sc.models import Volume
from sc.services.store import VolumeError, checked_id, checked_size, reserve, store_dir, store_lock, volume_path

logger = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FORMATS = ("raw", "qcow2", "vdi", "vmdk")
CONVERT_TIMEOUT = 6 * 3600
INFO_TIMEOUT = 60
# Of a volume's progress: the download is most of the time on a school's network, the conversion the rest.
DOWNLOAD_SHARE = 80


def version_url(image_id: str, version: int) -> str:
    """Where walrus serves the version's file."""
    return f"{settings.EDUCLOUD.walrus_url}/walrus/api/1.0/images/{image_id}/versions/{version}/data"


def create_volume_from_image(*, image_id: object, version: object, sha256: object, size: object = None,
                             volume_id: str | None = None, wait: bool = False) -> Volume:
    """Record a volume of ``size`` bytes to be made from version ``version`` of image ``image_id`` (whose file has
    ``sha256``) and make it in a thread (``wait``: in this one); returns the volume, ``creating`` unless waited for.
    The image's virtual size must fit in ``size`` (the rest of the volume reads as zeros).

    Errors (VolumeError, nothing recorded): 400 naming ``image_id``, ``version``, ``sha256``, ``size`` or
    ``volume_id``; 409 for a volume id in use; 507 naming ``size`` when it does not fit; 503 when this SC has no
    walrus address. A download or conversion that fails later leaves the volume ``failed`` with the reason."""
    image_id = checked_id(image_id, "image", "image_id")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise VolumeError(400, f"{version!r} is not a version number (1 or more)", "version")
    if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
        raise VolumeError(400, "must be the image file's sha256: 64 lower-case hex digits", "sha256")
    if size is None:
        raise VolumeError(400, "give the volume's size in bytes (at least the image's virtual size)", "size")
    size = checked_size(size)
    volume_id = checked_id(volume_id, "volume", "volume_id") if volume_id is not None else new_id("volume")
    if not settings.EDUCLOUD.walrus_url:
        raise VolumeError(503, "this storage controller has no walrus address (cloud.walrus_url)")
    with store_lock():
        reserve(size, "a volume")
        try:
            with transaction.atomic():
                volume = Volume.objects.create(volume_id=volume_id, size=size, state=VolumeStateChoices.CREATING,
                                               source=VolumeSourceChoices.IMAGE, source_id=f"{image_id}/{version}",
                                               progress=0)
        except IntegrityError:
            raise VolumeError(409, f"volume {volume_id} exists already", "volume_id") from None
    work = (volume_id, version_url(image_id, version), sha256, size)
    if wait:
        _make(*work)
        volume.refresh_from_db()
    else:
        threading.Thread(target=_make_in_thread, args=work, name=f"sc-image-{volume_id}", daemon=True).start()
    return volume


def _make_in_thread(*work) -> None:
    try:
        _make(*work)
    finally:
        close_old_connections()


def _make(volume_id: str, url: str, sha256: str, size: int) -> None:
    """Download, check and convert; the volume ends ``available`` or ``failed`` with the reason."""
    downloaded = store_dir() / "downloads" / f"{volume_id}.img"
    target = volume_path(volume_id)
    partial = target.with_name(f"{target.name}.part")

    def progress(done: int, total: int) -> None:
        Volume.objects.filter(volume_id=volume_id).update(progress=done * DOWNLOAD_SHARE // max(total, 1))

    try:
        download(url, downloaded, key=own_key(), expected_sha256=sha256, progress=throttled(progress, 1.0))
        image_format, virtual_size = _inspect(downloaded)
        if virtual_size > size:
            raise VolumeError(400, f"the image's virtual size ({virtual_size} bytes) is more than the volume's "
                                   f"({size} bytes)", "size")
        target.parent.mkdir(parents=True, exist_ok=True)
        argv = ["qemu-img", "convert", "-f", image_format, "-O", "raw", str(downloaded), str(partial)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=CONVERT_TIMEOUT, check=False)
        if result.returncode != 0:
            raise VolumeError(500, f"qemu-img convert failed: {result.stderr.strip()}")
        os.truncate(partial, size)
        os.replace(partial, target)
    except (VolumeError, TransferError, OSError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        Volume.objects.filter(volume_id=volume_id).update(state=VolumeStateChoices.FAILED, error=str(exc)[:2000])
        logger.error("volume %s could not be made from %s: %s", volume_id, url, exc)
        return
    finally:
        downloaded.unlink(missing_ok=True)
        downloaded.with_name(f"{downloaded.name}.part").unlink(missing_ok=True)
    Volume.objects.filter(volume_id=volume_id).update(state=VolumeStateChoices.AVAILABLE, progress=100)
    logger.info("volume %s made from %s (%s, %d bytes)", volume_id, url, image_format, size)


def _inspect(path: Path) -> tuple[str, int]:
    """The image's format and virtual size, by ``qemu-img info``; VolumeError for an unknown format or one that
    names a backing file."""
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                            timeout=INFO_TIMEOUT, check=False)
    if result.returncode != 0:
        raise VolumeError(400, f"qemu-img cannot read the image: {result.stderr.strip()}")
    info = json.loads(result.stdout)
    if info.get("format") not in FORMATS:
        raise VolumeError(400, f"the image's format {info.get('format')!r} is not one of {', '.join(FORMATS)}")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise VolumeError(400, "the image names a backing file; a volume is made from a whole image only")
    return info["format"], int(info["virtual-size"])
