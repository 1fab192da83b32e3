"""A directory of verified image files (the CC's cluster cache and an NC's cache share it): each file has a sidecar
recording its sha256 and the size and mtime it had when verified; a file whose size or mtime changed since is hashed
again before use and counts as absent if it no longer matches. Least recently used files go first when space is needed.

Many launches of one image arrive at once (a class at 8:00), from threads and processes of one host, so every file
is guarded by a lock file beside it (``flock``, which also separates threads of one process): whoever uses a file
holds it shared; the one caller that fetches, replaces or evicts it holds it exclusive. A lookup never deletes
anything (a half-written or stale sidecar only means "not here"), and sidecars are written under unique temporary
names and renamed into place, so a reader sees a whole old one or a whole new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from luhyaapi.ids import validate_id

logger = logging.getLogger(__name__)

HASH_CHUNK = 8 * 1024 * 1024
# How often ``using`` fetches a version again when an eviction took it between the fetch and the use: an eviction
# takes the least recently used file, so losing a file just fetched more than once means the cache is far too small.
FETCH_ATTEMPTS = 3
EVICTION_LOCK = ".evict.lock"


@dataclass(frozen=True)
class CachedFile:
    """A verified file of the cache."""

    image_id: str
    version: int
    path: Path
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while data := file.read(HASH_CHUNK):
            digest.update(data)
    return digest.hexdigest()


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _flock(lock_path: Path, mode: int) -> int | None:
    """An open descriptor holding ``flock(mode)`` on ``lock_path`` (made if missing); None when ``mode`` has
    LOCK_NB and someone else holds it. An eviction deletes a lock file while holding it exclusive, so a lock taken on
    a file that is no longer at ``lock_path`` is dropped and taken again on the one that is."""
    while True:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            continue  # an eviction removed the emptied directory between the two calls
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)


class VerifiedFileCache:
    """Files ``<root>/<image_id>/<version>.img`` with sidecars ``.img.json`` and lock files ``.img.lock``; at most
    ``limit_bytes`` of files in all. Any number of these objects (threads, processes) may share one root."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit_bytes = limit_bytes

    def path(self, image_id: str, version: int) -> Path:
        """Where a version lives; the id is validated first, so no name can lead outside the cache."""
        validate_id(image_id, "image")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive number, not {version!r}")
        return self.root / image_id / f"{version}.img"

    @contextlib.contextmanager
    def held(self, image_id: str, version: int, *, exclusive: bool = False) -> Iterator[Path]:
        """Hold the version's lock for the ``with`` block, yielding its path: shared for a user of the file (a
        clone being made of it), which eviction then skips; exclusive for the one caller fetching, replacing or
        removing it. Blocks until the lock is free: a user waits for a fetch under way, a fetcher for the users."""
        path = self.path(image_id, version)
        fd = _flock(_lock_path(path), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield path
        finally:
            os.close(fd)

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def _read_sidecar(self, path: Path) -> dict | None:
        """The sidecar's record; None when there is none or it is not whole (a crash while an old version of this
        module wrote it): either way the file counts as not verified, and nothing is deleted here."""
        try:
            record = json.loads(self._sidecar(path).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _write_sidecar(self, path: Path, record: dict) -> None:
        """Write the sidecar whole under a name no other writer uses, then rename it into place (atomic: a reader
        sees the old or the new record, and concurrent writers never share a temporary file)."""
        sidecar = self._sidecar(path)
        fd, temporary = tempfile.mkstemp(dir=sidecar.parent, prefix=sidecar.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                file.write(json.dumps(record))
            os.replace(temporary, sidecar)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def lookup(self, image_id: str, version: int, sha256: str) -> CachedFile | None:
        """The cached file if it is there and still has ``sha256`` (a file changed since it was verified is hashed
        again), its last use recorded; else None. Never deletes anything: a missing, half-written or stale sidecar
        and a file that no longer matches all count as absent, and the caller that then holds the version exclusive
        replaces them (``using``). Call it holding the version (``held``), or know that nobody replaces it meanwhile."""
        path = self.path(image_id, version)
        record = self._read_sidecar(path)
        if record is None or record.get("sha256") != sha256:
            return None
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if (record.get("size"), record.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            logger.warning("image cache: %s changed on disk since it was verified; checking it again", path)
            try:
                if sha256_of(path) != sha256:
                    logger.error("image cache: %s is corrupt (sha256 differs); it will be fetched again", path)
                    return None
                stat = path.stat()
            except FileNotFoundError:
                return None
        record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns, last_used=time.time())
        self._write_sidecar(path, record)
        return CachedFile(image_id, version, path, stat.st_size, sha256)

    def adopt(self, image_id: str, version: int, sha256: str) -> CachedFile:
        """Record a file just placed at ``path(image_id, version)`` after its sha256 was checked while it arrived."""
        path = self.path(image_id, version)
        stat = path.stat()
        self._write_sidecar(path, {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                   "last_used": time.time()})
        return CachedFile(image_id, version, path, stat.st_size, sha256)

    @contextlib.contextmanager
    def using(self, image_id: str, version: int, sha256: str, size: int, *, fetch: Callable[[Path], None],
              in_use: Callable[[Path], bool]) -> Iterator[CachedFile]:
        """The verified version, held shared for the ``with`` block (eviction skips it). If it is not here, one
        caller (per host: threads and processes alike) makes room for ``size`` bytes, calls ``fetch(path)`` to
        place the file at ``path`` and records it; every other caller waits meanwhile and then uses that file. A
        failed fetch raises in its caller only: the next waiter tries in its turn. Raises CacheFull (nothing was
        evicted) when there is no room, and what ``fetch`` raises."""
        for _attempt in range(FETCH_ATTEMPTS):
            with self.held(image_id, version):
                cached = self.lookup(image_id, version, sha256)
                if cached is not None:
                    yield cached
                    return
            self._fetch_once(image_id, version, sha256, size, fetch, in_use)
        raise CacheFull(f"the image cache in {self.root} evicted {image_id} version {version} each time it was "
                        f"fetched: its {self.limit_bytes}-byte limit is too small for the images in use")

    def _fetch_once(self, image_id: str, version: int, sha256: str, size: int, fetch: Callable[[Path], None],
                    in_use: Callable[[Path], bool]) -> None:
        with self.held(image_id, version, exclusive=True) as path:
            if self.lookup(image_id, version, sha256) is not None:
                return  # fetched by the caller that held it before us
            # A stale copy (changed on disk, another sha256, half a sidecar) is ours to drop now: nobody holds it.
            # Its partial file stays, so an interrupted fetch resumes.
            self._discard(path, partial=False)
            self.make_room(size, in_use)
            fetch(path)
            self.adopt(image_id, version, sha256)

    def remove(self, image_id: str, version: int) -> None:
        """Delete the version, its sidecar and partial file, once nobody holds it (waits for its users)."""
        with self.held(image_id, version, exclusive=True) as path:
            self._discard(path, partial=True)

    def _discard(self, path: Path, *, partial: bool) -> None:
        """Delete a file and its sidecar (and partial file); the caller holds it exclusive."""
        leftovers = [path, self._sidecar(path), *path.parent.glob(f"{path.name}.json.*.tmp")]
        if partial:
            leftovers.append(path.with_name(path.name + ".part"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)

    def entries(self) -> list[tuple[float, Path, int]]:
        """(last used, path, size) of every complete file."""
        found = []
        for sidecar in self.root.glob("img-*/*.img.json"):
            path = sidecar.with_name(sidecar.name[: -len(".json")])
            record = self._read_sidecar(path) or {}
            try:
                found.append((record.get("last_used", 0.0), path, path.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    @contextlib.contextmanager
    def _evicting(self) -> Iterator[None]:
        """One eviction at a time per cache root, so two never count the same free room or evict for each other."""
        fd = _flock(self.root / EVICTION_LOCK, fcntl.LOCK_EX)
        try:
            yield
        finally:
            os.close(fd)

    def make_room(self, needed: int, in_use: Callable[[Path], bool]) -> None:
        """Make ``needed`` more bytes fit under the limit by evicting least recently used files that ``in_use`` does
        not protect and nobody holds (``held``). Decides first: raises CacheFull, with nothing evicted, when even
        an empty cache could not hold ``needed`` or when evicting every such file would not make enough room."""
        if needed > self.limit_bytes:
            raise CacheFull(f"an image of {needed} bytes is larger than the whole image cache in {self.root} "
                            f"({self.limit_bytes}-byte limit)")
        with self._evicting():
            entries = sorted(self.entries())
            total = sum(size for _, _, size in entries)
            if total + needed <= self.limit_bytes:
                return
            chosen: list[tuple[int, Path, int]] = []
            try:
                freed = 0
                for _last_used, path, size in entries:
                    if total - freed + needed <= self.limit_bytes:
                        break
                    if in_use(path):
                        continue
                    fd = _flock(_lock_path(path), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if fd is None:
                        continue  # a clone is being made of it, or it is being fetched again
                    chosen.append((fd, path, size))
                    if path.exists():
                        freed += size
                    else:
                        total -= size  # removed since we listed it
                if total - freed + needed > self.limit_bytes:
                    raise CacheFull(f"the image cache in {self.root} needs {needed} bytes but holds {total} of its "
                                    f"{self.limit_bytes}-byte limit, and only {freed} of them are in files not in "
                                    f"use; nothing was evicted")
                for _fd, path, size in chosen:
                    logger.info("image cache: evicting %s (%d bytes, least recently used)", path, size)
                    self._discard(path, partial=True)
                    # Deleted while held: a waiter on this lock file notices and locks the new one (``_flock``).
                    _lock_path(path).unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        path.parent.rmdir()  # only when no other version or partial file is left
            finally:
                for fd, _path, _size in chosen:
                    os.close(fd)


class CacheFull(RuntimeError):
    """Not enough room in the cache even after evicting every file not in use; nothing was evicted."""
