"""A directory of verified image files (the CC's cluster cache and an NC's cache share it): each file has a sidecar
recording its sha256 and the size and mtime it had when verified; a file whose size or mtime changed since is hashed
again before use and dropped if it no longer matches. Least recently used files go first when space is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from luhyaapi.ids import validate_id

logger = logging.getLogger(__name__)

HASH_CHUNK = 8 * 1024 * 1024


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


class VerifiedFileCache:
    """Files ``<root>/<image_id>/<version>.img`` with sidecars ``.img.json``; at most ``limit_bytes`` in all."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()

    def path(self, image_id: str, version: int) -> Path:
        """Where a version lives; the id is validated first, so no name can lead outside the cache."""
        validate_id(image_id, "image")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive number, not {version!r}")
        return self.root / image_id / f"{version}.img"

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    def _read_sidecar(self, path: Path) -> dict | None:
        try:
            return json.loads(self._sidecar(path).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _write_sidecar(self, path: Path, record: dict) -> None:
        sidecar = self._sidecar(path)
        temporary = sidecar.with_name(sidecar.name + ".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, sidecar)

    def lookup(self, image_id: str, version: int, sha256: str) -> CachedFile | None:
        """The cached file if it is there and still has ``sha256``; a changed file is hashed again, and removed if
        it no longer matches (the caller then fetches it again)."""
        path = self.path(image_id, version)
        record = self._read_sidecar(path)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if record is None or record.get("sha256") != sha256:
            self.remove(image_id, version)
            return None
        if (record.get("size"), record.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
            logger.warning("image cache: %s changed on disk since it was verified; checking it again", path)
            if sha256_of(path) != sha256:
                logger.error("image cache: %s is corrupt (sha256 differs); removing it to fetch it again", path)
                self.remove(image_id, version)
                return None
            stat = path.stat()
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

    def remove(self, image_id: str, version: int) -> None:
        path = self.path(image_id, version)
        for leftover in (path, self._sidecar(path), path.with_name(path.name + ".part")):
            leftover.unlink(missing_ok=True)

    def entries(self) -> list[tuple[float, Path, int]]:
        """(last used, path, size) of every complete file."""
        found = []
        for sidecar in self.root.glob("img-*/*.img.json"):
            path = sidecar.with_name(sidecar.name[: -len(".json")])
            record = self._read_sidecar(path) or {}
            if path.exists():
                found.append((record.get("last_used", 0.0), path, path.stat().st_size))
        return found

    def make_room(self, needed: int, in_use: Callable[[Path], bool]) -> None:
        """Evict least recently used files that ``in_use`` does not protect until ``needed`` more bytes fit under
        the limit; raise CacheFull if that is impossible."""
        with self._lock:
            entries = sorted(self.entries())
            total = sum(size for _, _, size in entries)
            for _last_used, path, size in entries:
                if total + needed <= self.limit_bytes:
                    break
                if in_use(path):
                    continue
                logger.info("image cache: evicting %s (%d bytes, least recently used)", path, size)
                path.unlink(missing_ok=True)
                self._sidecar(path).unlink(missing_ok=True)
                total -= size
            if total + needed > self.limit_bytes:
                raise CacheFull(f"the image cache in {self.root} needs {needed} bytes but holds {total} of its "
                                f"{self.limit_bytes}-byte limit in files that are in use")


class CacheFull(RuntimeError):
    """Not enough room in the cache even after evicting every file not in use."""
