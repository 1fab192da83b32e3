"""The cluster image cache: each image version is pulled from walrus once, verified, and served to the cluster's
NCs, also while it is still arriving, so thirty NCs asking for one image at once cost one walrus download.

One CC serves from one process (its web server's threads share the fetches in progress).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.imagecache import VerifiedFileCache
from luhyaapi.ranges import FileRange, StreamedRange
from luhyaapi.transfer import TransferError, download
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
READ_CHUNK = 4 * MiB
# An NC pulling a version that is still arriving (with Range) is sent at least this much per answer, or what is
# left: enough that its requests cost little against the data, little enough that it is not kept waiting long.
RELAY_MIN_BYTES = 16 * MiB


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
        """Resolve ``version`` (a number or ``current``) with walrus; ImageUnavailable when it has none. A version
        being fetched is described by its fetch (walrus was asked when it started): an NC pulling it while it
        arrives asks once per part."""
        if version != "current":
            with self._lock:
                fetch = self._fetches.get((image_id, int(version)))
            if fetch is not None:
                return fetch.info
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

    def open(self, info: VersionInfo, first: int, last: int, *, may_shorten: bool) -> FileRange | StreamedRange:
        """Bytes ``first..last`` (inclusive) of the version: a range of the verified cached file, for the web server
        to send straight from the disk (the file counts as being read, so it is not evicted, until the range is
        closed). While the version is arriving from walrus (a download started here if none is under way): with
        ``may_shorten`` (the NC asked with ``Range``, so it asks again for the rest) the bytes that have arrived
        from ``first`` on, at least ``RELAY_MIN_BYTES`` of them unless the range ends sooner, as a range of the
        partial file, sent straight from the disk too; else the whole range, streamed as the download writes it.
        Raises CacheFull when the cache has no room for the version, ImageUnavailable (502) when the download
        failed before the bytes asked for arrived."""
        key = (info.image_id, info.version)
        with self._lock:
            fetch = self._fetches.get(key)
            if fetch is None:
                cached = self.files.lookup(info.image_id, info.version, info.sha256)
                if cached is not None:
                    return self._range_of(cached.path, first, last)
                self.files.make_room(info.size, in_use=lambda path: self._readers[path] > 0)
                path = self.files.path(info.image_id, info.version)
                fetch = _Fetch(info, path.with_name(path.name + ".part"))
                self._fetches[key] = fetch
                threading.Thread(target=self._fetch, args=(fetch, path), name=f"fetch-{info.image_id}-{info.version}",
                                 daemon=True).start()
        if not may_shorten:
            return StreamedRange(self._follow(fetch, first, last), first, last)
        available = self._wait_for(fetch, min(first + RELAY_MIN_BYTES, last + 1) - 1)
        if available is None:
            raise ImageUnavailable(502, f"fetching {info.image_id} version {info.version} from walrus failed: "
                                        f"{fetch.error or 'it ended early'}")
        end = min(available, last + 1) - 1
        with self._lock:
            try:
                return self._range_of(fetch.part, first, end)
            except FileNotFoundError:
                # The download completed and renamed its file since it reported these bytes.
                return self._range_of(self.files.path(info.image_id, info.version), first, end)

    def _range_of(self, path: Path, first: int, last: int) -> FileRange:
        """A range of a file that counts as being read until it is closed (call with the lock held)."""
        file = open(path, "rb", buffering=0)
        self._readers[path] += 1
        return FileRange(file, first, last, on_close=functools.partial(self._release, path))

    def _release(self, path: Path) -> None:
        with self._lock:
            self._readers[path] -= 1

    def _fetch(self, fetch: _Fetch, path: Path) -> None:
        info = fetch.info
        url = f"{self.walrus.base_url}/walrus/api/1.0/images/{info.image_id}/versions/{info.version}/data"
        logger.info("cluster cache: fetching %s version %d (%d bytes) from walrus", info.image_id, info.version,
                    info.size)
        try:
            # Exclusive for the download, as an NC's cache does: another process on this root waits, then finds it.
            with self.files.held(info.image_id, info.version, exclusive=True):
                if self.files.lookup(info.image_id, info.version, info.sha256) is None:
                    download(url, path, key=self.walrus.key, expected_sha256=info.sha256,
                             progress=fetch.advance)
                    self.files.adopt(info.image_id, info.version, info.sha256)
                else:
                    fetch.advance(info.size, info.size)
            fetch.end()
            logger.info("cluster cache: %s version %d is cached and verified", info.image_id, info.version)
        except (TransferError, OSError) as exc:
            logger.error("cluster cache: fetching %s version %d failed: %s", info.image_id, info.version, exc)
            fetch.end(str(exc))
        finally:
            with self._lock:
                self._fetches.pop((info.image_id, info.version), None)

    def _follow(self, fetch: _Fetch, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first..last`` of a version as its download writes them. A fetch that fails ends the stream early
        (the NC's own checksum and resume take it from there)."""
        if self._wait_for(fetch, 0) is None:
            return
        path = fetch.part
        if not path.exists() and fetch.finished:
            # The fetch completed and renamed its file between our lookup and now.
            path = self.files.path(fetch.info.image_id, fetch.info.version)
        with self._lock:
            self._readers[path] += 1
        try:
            with open(path, "rb", buffering=0) as file:
                position = first
                while position <= last:
                    available = self._wait_for(fetch, position)
                    if available is None:
                        return
                    data = os.pread(file.fileno(), min(READ_CHUNK, available - position, last + 1 - position),
                                    position)
                    if not data:
                        return
                    position += len(data)
                    yield data
        finally:
            self._release(path)

    @staticmethod
    def _wait_for(fetch: _Fetch, position: int) -> int | None:
        """Block until the fetch has bytes past ``position``; None when it failed or ended before."""
        with fetch.changed:
            while fetch.written <= position and not fetch.finished:
                fetch.changed.wait(timeout=30)
            if fetch.error or fetch.written <= position:
                return None
            return fetch.written


_caches: dict[tuple, ClusterImageCache] = {}
_cache_lock = threading.Lock()


def cluster_cache() -> ClusterImageCache:
    """This CC's cache, under ``<data_dir>/cc/images`` with the configured size limit, fetching from walrus signed
    with this host's key (one per configuration: a host has one, a test may change it)."""
    config = settings.EDUCLOUD
    key = own_key()
    wanted = (config.data_dir, config.image_cache_bytes, config.walrus_url, key.fingerprint)
    with _cache_lock:
        if wanted not in _caches:
            files = VerifiedFileCache(config.data_dir / "cc" / "images", config.image_cache_bytes)
            _caches[wanted] = ClusterImageCache(files, RoleClient(config.walrus_url, key))
        return _caches[wanted]
