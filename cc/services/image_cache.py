"""The cluster image cache: each image version is pulled from walrus once, verified, and served to the cluster's
NCs, also while it is still arriving, so thirty NCs asking for one image at once cost one walrus download.

One CC serves from one process (its web server's threads share the fetches in progress).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.imagecache import CachedFile, VerifiedFileCache
from luhyaapi.transfer import TransferError, download

logger = logging.getLogger(__name__)

READ_CHUNK = 4 * 1024 * 1024


class ImageUnavailable(Exception):
    """Walrus does not have that image version, or cannot be reached; ``status`` says which (404 or 502)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class VersionInfo:
    """What walrus says of one version: the number, size and sha256 every copy is checked against."""

    image_id: str
    version: int
    size: int
    sha256: str


@dataclass
class _Fetch:
    """A walrus download in progress; readers follow its partial file up to ``written``."""

    info: VersionInfo
    part: Path
    written: int = 0
    finished: bool = False
    error: str = ""
    changed: threading.Condition = field(default_factory=threading.Condition)

    def advance(self, done: int, _total: int) -> None:
        with self.changed:
            self.written = done
            self.changed.notify_all()

    def end(self, error: str = "") -> None:
        with self.changed:
            self.finished = True
            self.error = error
            self.changed.notify_all()


class ClusterImageCache:
    """Serves image versions to NCs from the cache, fetching each from walrus at most once at a time."""

    def __init__(self, files: VerifiedFileCache, walrus: RoleClient) -> None:
        self.files = files
        self.walrus = walrus
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, int], _Fetch] = {}
        self._readers: collections.Counter[Path] = collections.Counter()

    def fetching(self) -> bool:
        """Whether a walrus download is under way (it goes on briefly after the last byte: verify and rename)."""
        with self._lock:
            return bool(self._fetches)

    def describe(self, image_id: str, version: str) -> VersionInfo:
        """Resolve ``version`` (a number or ``current``) with walrus; ImageUnavailable when it has none."""
        try:
            listing = self.walrus.get(f"/walrus/api/1.0/images/{image_id}/")
        except RemoteError as exc:
            status = 404 if exc.status == 404 else 502
            raise ImageUnavailable(status, f"walrus has no image {image_id}: {exc.detail}") from exc
        wanted = listing["current"] if version == "current" else int(version)
        for entry in listing["versions"]:
            if entry["version"] == wanted:
                return VersionInfo(image_id, wanted, entry["size"], entry["sha256"])
        raise ImageUnavailable(404, f"walrus has no version {version} of image {image_id}")

    def open(self, info: VersionInfo) -> tuple[CachedFile | None, _Fetch | None]:
        """The verified cached file, or the fetch that is bringing it (started here if none is)."""
        with self._lock:
            fetch = self._fetches.get((info.image_id, info.version))
            if fetch is not None:
                return None, fetch
            cached = self.files.lookup(info.image_id, info.version, info.sha256)
            if cached is not None:
                return cached, None
            self.files.make_room(info.size, in_use=lambda path: self._readers[path] > 0)
            path = self.files.path(info.image_id, info.version)
            fetch = _Fetch(info, path.with_name(path.name + ".part"))
            self._fetches[(info.image_id, info.version)] = fetch
        threading.Thread(target=self._fetch, args=(fetch, path), name=f"fetch-{info.image_id}-{info.version}",
                         daemon=True).start()
        return None, fetch

    def _fetch(self, fetch: _Fetch, path: Path) -> None:
        info = fetch.info
        url = f"{self.walrus.base_url}/walrus/api/1.0/images/{info.image_id}/versions/{info.version}/data"
        logger.info("cluster cache: fetching %s version %d (%d bytes) from walrus", info.image_id, info.version,
                    info.size)
        try:
            download(url, path, key=self.walrus.key, sender=self.walrus.sender, expected_sha256=info.sha256,
                     progress=fetch.advance)
            self.files.adopt(info.image_id, info.version, info.sha256)
            fetch.end()
            logger.info("cluster cache: %s version %d is cached and verified", info.image_id, info.version)
        except (TransferError, OSError) as exc:
            logger.error("cluster cache: fetching %s version %d failed: %s", info.image_id, info.version, exc)
            fetch.end(str(exc))
        finally:
            with self._lock:
                self._fetches.pop((info.image_id, info.version), None)

    def read(self, cached: CachedFile | None, fetch: _Fetch | None, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first..last`` (inclusive) of the version, from the cache or following the fetch in progress.
        A fetch that fails ends the stream early (the NC's own checksum and resume take it from there)."""
        if fetch is not None and self._wait_for(fetch, 0) is None:
            return
        path = cached.path if cached else fetch.part
        if fetch is not None and not path.exists() and fetch.finished:
            # The fetch completed and renamed its file between our lookup and now.
            path = self.files.path(fetch.info.image_id, fetch.info.version)
        with self._lock:
            self._readers[path] += 1
        try:
            with open(path, "rb") as file:
                position = first
                file.seek(first)
                while position <= last:
                    if fetch is not None:
                        available = self._wait_for(fetch, position)
                        if available is None:
                            return
                    else:
                        available = last + 1
                    data = file.read(min(READ_CHUNK, available - position, last + 1 - position))
                    if not data:
                        return
                    position += len(data)
                    yield data
        finally:
            with self._lock:
                self._readers[path] -= 1

    @staticmethod
    def _wait_for(fetch: _Fetch, position: int) -> int | None:
        """Block until the fetch has bytes past ``position``; None when it failed or ended before."""
        with fetch.changed:
            while fetch.written <= position and not fetch.finished:
                fetch.changed.wait(timeout=30)
            if fetch.error or fetch.written <= position:
                return None
            return fetch.written


_cache: ClusterImageCache | None = None
_cache_lock = threading.Lock()


def cluster_cache() -> ClusterImageCache:
    """This CC's cache, under ``<data_dir>/cc/images`` with the configured size limit."""
    global _cache
    with _cache_lock:
        if _cache is None:
            config = settings.EDUCLOUD
            files = VerifiedFileCache(config.data_dir / "cc" / "images", config.image_cache_bytes)
            _cache = ClusterImageCache(files, RoleClient(config.walrus_url, config.cloud_key, sender=config.name))
        return _cache
