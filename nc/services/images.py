"""Images on a node: pulled from the cluster cache into this node's verified cache, with progress reported up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from django.conf import settings

from luhyaapi.ids import validate_id
from luhyaapi.imagecache import CachedFile, CacheFull, VerifiedFileCache
from luhyaapi.messages import Command, Message, TaskStatus
from luhyaapi.transfer import ChecksumMismatch, TransferError, download, throttled
from luhyaapi.trust import own_key
from nc.drivers.base import HypervisorDriver

logger = logging.getLogger(__name__)

# Task progress goes up at most this often per transfer, so thousands of transfers cannot flood the status queues.
PROGRESS_PER_SECOND = 2.0


def node_cache() -> VerifiedFileCache:
    config = settings.EDUCLOUD
    return VerifiedFileCache(config.data_dir / "nc" / "images", config.image_cache_bytes)


def _in_use(path) -> bool:
    from nc.services.instances import image_in_use

    return image_in_use(path)


def _pull(image_id: str, version: int, sha256: str, progress: Callable[[int, int], None] | None, path: Path) -> None:
    """Pull the version from the cluster cache to ``path`` (a partial earlier pull resumes); a copy that arrives
    corrupt is fetched once more before giving up."""
    url = f"{settings.EDUCLOUD.cc_url}/cc/api/1.0/images/{image_id}/versions/{version}/data"
    for attempt in (1, 2):
        try:
            download(url, path, key=own_key(), expected_sha256=sha256, progress=progress)
            return
        except ChecksumMismatch:
            if attempt == 2:
                raise
            logger.warning("images: %s version %d arrived corrupt; fetching it again", image_id, version)


@contextmanager
def held_image(image_id: str, version: int, sha256: str, size: int,
               progress: Callable[[int, int], None] | None = None) -> Iterator[CachedFile]:
    """The verified image version in this node's cache, kept for the ``with`` block: nothing evicts or replaces it
    meanwhile (hold it while a clone is made of it, until the instance's record names it). If it is not cached,
    one launch pulls it from the cluster cache (``progress`` is that pull's) while every other launch of it waits.
    Raises CacheFull (nothing evicted) when the cache cannot make room, TransferError when the pull fails."""
    cache = node_cache()
    with cache.using(image_id, version, sha256, size, fetch=partial(_pull, image_id, version, sha256, progress),
                     in_use=_in_use) as cached:
        yield cached


def fetch_image(image_id: str, version: int, sha256: str, size: int,
                progress: Callable[[int, int], None] | None = None) -> CachedFile:
    """The verified image version in this node's cache, pulled from the cluster cache if it is not there (see
    ``held_image``; the file is not held once this returns)."""
    with held_image(image_id, version, sha256, size, progress) as cached:
        return cached


def size_disk(driver: HypervisorDriver, disk: Path, disk_mb: int) -> None:
    """Give an instance's fresh clone ``disk`` the VM type's disk size (``disk_mb``; 0: the image's own size).
    DiskTooSmall (a DriverError) when the image is bigger than the VM type's disk; a driver without the
    ``grow_disk`` capability keeps the image's size, said in the log."""
    if disk_mb <= 0:
        return
    if not driver.capabilities.get("grow_disk"):
        logger.warning("images: the %s driver cannot resize disks; %s keeps its image's size, not %d MB",
                       driver.name, disk, disk_mb)
        return
    size = driver.grow_disk(disk, disk_mb * 2**20)
    logger.info("images: %s sized to %d MB", disk, size // 2**20)


def prepare_image(command: Command, publish: Callable[[Message], None]) -> None:
    """``image/prepare``: bring an image version into this node's cache, reporting ``preparing/downloading`` with
    its progress and then ``done``, or ``failed`` with the reason."""
    paras = command.paras
    image_id = validate_id(str(paras.get("image_id", "")), "image")
    version, sha256, size = int(paras["version"]), str(paras["sha256"]), int(paras["size"])
    ncip = settings.EDUCLOUD.ip

    def report(state: str, progress: int, **extra) -> None:
        publish(TaskStatus(tid=command.tid, phase="preparing", state=state, progress=progress, ncip=ncip, **extra))

    def on_progress(done: int, total: int) -> None:
        report("downloading", min(99, done * 100 // total) if total else 0)

    report("downloading", 0)
    try:
        cached = fetch_image(image_id, version, sha256, size, throttled(on_progress, PROGRESS_PER_SECOND))
    except (TransferError, CacheFull, OSError) as exc:
        logger.error("images: preparing %s version %d failed: %s", image_id, version, exc)
        publish(TaskStatus(tid=command.tid, phase="failed", state="init", progress=0, failed=True, errormsg=str(exc),
                           ncip=ncip))
        return
    report("done", 100, done=True)
    logger.info("images: %s version %d ready at %s", image_id, version, cached.path)
