"""Streamed, resumable and verified transfers of image files to and from walrus (``docs/images.md``).

Nothing is held in memory whole: uploads are sent from the file in chunks, downloads written to ``<dest>.part`` as
they arrive, and both hash the bytes on the way. A cut connection is retried with back-off from where the other side
stands (walrus's saved offset, or the partial file's length with ``Range``); the retries are bounded, but any
progress resets the count, so a long transfer over a flaky link goes on while each attempt moves it forward.

Two helpers keep the copies near the speed of the disk (``docs/images.md``, "Speed"), and walrus's receiving side
uses them too: ``BackgroundHash`` takes the sha256 in a helper thread, so network reads, disk writes and the hash
overlap on two cores; ``Writeback`` starts the kernel's writeback of each written stretch at once, so dirty pages
never pile up until writers are throttled and the closing ``fsync`` has almost nothing left to do.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests

from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.ids import validate_id
from luhyaapi.keys import HostKey
from luhyaapi.signing import canonical_host, canonical_path, sign_headers

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

MiB = 1024 * 1024
# Bytes are read, written and hashed in pieces this large: small enough that a piece is still in the CPU's cache
# when it is written to disk and hashed after being received (4 MiB pieces made a pull up to half as fast again,
# bench/image_transfer.py), large enough that the work per piece in Python is small against its copies.
CHUNK_BYTES = 512 * 1024
# One PUT carries at most this much: a web server may take a request body whole before the application sees any of
# it (waitress refuses bodies over 1 GiB and drops an unfinished one), so a cut costs at most one piece.
PIECE_BYTES = 64 * MiB
RETRIES = 5
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 15.0
CONNECT_TIMEOUT = 10.0
# Long, because walrus may first re-read a partial file to rebuild its sha256 after a restart before answering.
DATA_TIMEOUT = 600.0
COMPLETE_TIMEOUT = 3600.0
CALL_TIMEOUT = 60.0
UPLOADS_PATH = "/walrus/api/1.0/uploads/"
SHA256_HEADER = "X-Educloud-Sha256"
# Answers worth another try: unreachable (0), a proxy or walrus not ready, or busy with another transfer (409).
_RETRY_STATUSES = {0, 502, 503, 504}
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes \*/(\d+)$")
_TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Chunks waiting for the hashing thread: enough to ride out a slow moment of either side, few enough that a transfer
# holds at most this many chunks in memory (8 MiB of CHUNK_BYTES pieces).
HASH_QUEUE_CHUNKS = 16
# Writeback is started every this many written bytes: large enough that the calls cost nothing, small enough that
# the disk is kept busy from the first seconds.
WRITEBACK_BYTES = 8 * MiB
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


class TransferError(RuntimeError):
    """A transfer failed for good: refused by walrus, or still failing after the retries. ``status`` is the last HTTP
    status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ChecksumMismatch(TransferError):
    """The data's sha256 is not the expected one; nothing was left at the destination."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: the sha256 is {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class _Retry(Exception):
    """An attempt failed in a way worth another try."""


# Disk and hash helpers (also used by walrus for uploads).

def _libc_sync_file_range() -> Callable[..., int] | None:
    """Linux's ``sync_file_range(2)`` through ctypes (the os module has no binding), None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _libc_sync_file_range()


class Writeback:
    """Starts the writeback of a file's bytes as they are written (Linux ``sync_file_range``, asynchronous): the
    disk works while the transfer goes on instead of all at the closing ``fsync``, and the page cache never holds
    enough dirty pages for the kernel to throttle the writer. Durability is still only what ``fsync`` promises.
    Where the call does not exist or the file system refuses it, it does nothing."""

    def __init__(self, fd: int, start: int = 0) -> None:
        self.fd = fd
        self.started = start
        self.enabled = _sync_file_range is not None

    def written(self, end: int) -> None:
        """The file now holds its bytes up to ``end``: start writing back those not yet started."""
        if not self.enabled or end - self.started < WRITEBACK_BYTES:
            return
        if _sync_file_range(self.fd, self.started, end - self.started, _SYNC_FILE_RANGE_WRITE) != 0:
            # Only an optimisation: fsync stays the authority, so the file goes on without it.
            self.enabled = False
            logger.info("sync_file_range on fd %d failed (%s); writing back at fsync only", self.fd,
                        os.strerror(ctypes.get_errno()))
            return
        self.started = end


class BackgroundHash:
    """Feeds chunks to a hash object in a helper thread, in order, so the caller reads and writes the next chunk
    meanwhile (``hashlib`` releases the GIL on large updates). At most ``HASH_QUEUE_CHUNKS`` chunks wait; ``feed``
    blocks while the queue is full. The chunks must not change after they are fed (bytes do not). ``finish``
    waits for every fed chunk and re-raises an error of the thread; until then the hash object is the thread's:
    read nothing from it. ``hashed`` is the number of bytes the hash covers once ``finish`` returned."""

    def __init__(self, hasher: hashlib._Hash) -> None:
        self.hasher = hasher
        self.hashed = 0
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=HASH_QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.hasher.update(chunk)
                    self.hashed += len(chunk)
                except Exception as exc:  # handed to the feeding thread by finish()
                    self._error = exc

    def feed(self, chunk: bytes | memoryview) -> None:
        if self._error is not None:
            self.finish()
        self._queue.put(chunk)

    def finish(self) -> None:
        """Wait until every fed chunk is hashed (idempotent); raises the thread's error if it had one."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


def write_all(fd: int, data: bytes | memoryview, position: int) -> None:
    """Write all of ``data`` at ``position`` (``pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def throttled(callback: Progress, per_second: float) -> Progress:
    """``callback`` fired at most ``per_second`` times a second; the first call and the last (``done >= total``)
    always fire, so a progress display starts at once and ends at 100%."""
    interval = 1.0 / per_second
    last = [float("-inf")]

    def fire(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= interval:
            last[0] = now
            callback(done, total)

    return fire


class _Attempts:
    """Bounded retries with exponential back-off; progress resets the count."""

    def __init__(self, what: str, retries: int = RETRIES) -> None:
        self.what = what
        self.retries = retries
        self.failures = 0

    def failed(self, reason: object) -> None:
        self.failures += 1
        if self.failures > self.retries:
            raise TransferError(f"{self.what}: gave up after {self.retries} retries; last failure: {reason}",
                                getattr(reason, "status", 0))
        delay = min(BACKOFF_SECONDS * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
        logger.warning("%s: %s; retry %d of %d in %.1fs", self.what, reason, self.failures, self.retries, delay)
        time.sleep(delay)

    def progressed(self) -> None:
        self.failures = 0


# Uploads.

class _LocalHash:
    """The sha256 of the local file, taken from the bytes as they are sent so the file is not read twice, in a helper
    thread while they go out. Bytes walrus already had (a resumed upload) are read from the file; when a piece is
    sent again after a cut, the hash goes on from the state saved at the piece's start."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256()
        self.position = 0
        self.mark = (0, self.hasher.copy())
        self._background: BackgroundHash | None = None

    def settle(self) -> None:
        """Wait for the helper thread: afterwards the hash covers exactly the first ``position`` bytes."""
        if self._background is not None:
            background, self._background = self._background, None
            background.finish()

    def seek(self, offset: int) -> None:
        """Make the hash cover exactly the file's first ``offset`` bytes, and remember that state."""
        self.settle()
        if offset < self.position:
            mark_position, mark_hasher = self.mark
            if mark_position <= offset:
                self.position, self.hasher = mark_position, mark_hasher.copy()
            else:
                self.position, self.hasher = 0, hashlib.sha256()
        while self.position < offset:
            data = os.pread(self.fd, min(CHUNK_BYTES, offset - self.position), self.position)
            if not data:
                raise TransferError(f"the local file ended at {self.position}, before {offset}: did it change?")
            self.hasher.update(data)
            self.position += len(data)
        self.mark = (offset, self.hasher.copy())

    def feed(self, offset: int, data: bytes) -> None:
        if offset != self.position:
            self.seek(offset)
        if self._background is None:
            self._background = BackgroundHash(self.hasher)
        self._background.feed(data)
        self.position += len(data)

    def digest_of_first(self, size: int) -> str:
        self.seek(size)
        return self.hasher.hexdigest()


class _FileSlice:
    """``length`` bytes of a file from ``offset`` as a request body: iterated in chunks (hashed and reported as they
    go) with a known length, so requests sends a Content-Length instead of a chunked body."""

    def __init__(self, fd: int, offset: int, length: int, local: _LocalHash, report: Callable[[int], None]) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length
        self.local = local
        self.report = report

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        position, end = self.offset, self.offset + self.length
        while position < end:
            data = os.pread(self.fd, min(CHUNK_BYTES, end - position), position)
            if not data:
                raise TransferError(f"the local file ended at {position}, before {end}: did it change?")
            self.local.feed(position, data)
            position += len(data)
            yield data
            self.report(position)


class _Uploader:
    def __init__(self, base_url: str, key: HostKey, path: Path, progress: Progress | None, piece_bytes: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.path = path
        self.progress = progress
        self.piece_bytes = piece_bytes
        self.client = RoleClient(self.base_url, key, timeout=CALL_TIMEOUT)
        self.session = requests.Session()
        self.attempts = _Attempts(f"upload of {path}")

    def call(self, method: str, path: str, payload: dict | None = None, client: RoleClient | None = None) -> dict:
        """A JSON call, tried again while walrus is unreachable or not ready."""
        while True:
            try:
                return (client or self.client).request(method, path, payload)
            except RemoteError as exc:
                if exc.status not in _RETRY_STATUSES:
                    raise TransferError(f"walrus refused {method} {path}: {exc.status}: {exc.detail}",
                                        exc.status) from exc
                self.attempts.failed(exc)

    def report(self, done: int, size: int) -> None:
        if self.progress is not None:
            self.progress(done, size)

    def send(self, upload_id: str, fd: int, offset: int, size: int, local: _LocalHash) -> None:
        """Send the file from ``offset`` to its end, going on from walrus's offset after each failure."""
        while offset < size:
            try:
                offset = self.put_piece(upload_id, fd, offset, min(self.piece_bytes, size - offset), size, local)
                self.attempts.progressed()
            except (*_TRANSPORT_ERRORS, _Retry) as exc:
                self.attempts.failed(exc)
                offset = self.call("GET", f"{UPLOADS_PATH}{upload_id}/")["offset"]
                self.report(offset, size)

    def put_piece(self, upload_id: str, fd: int, offset: int, length: int, size: int, local: _LocalHash) -> int:
        url = f"{self.base_url}{UPLOADS_PATH}{upload_id}/data?offset={offset}"
        parts = urlsplit(url)
        # The body is streamed, so it cannot be hashed before it is sent: it is signed as UNSIGNED-PAYLOAD and
        # walrus checks the whole file's sha256 at complete/.
        headers = sign_headers(self.key, "PUT", canonical_host(parts.netloc, parts.scheme),
                               canonical_path(parts.path, parts.query), None)
        headers["Content-Type"] = "application/octet-stream"
        local.seek(offset)
        body = _FileSlice(fd, offset, length, local, lambda done: self.report(done, size))
        response = self.session.put(url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, DATA_TIMEOUT))
        answer = _json(response)
        if response.status_code == 200:
            return int(answer["offset"])
        if response.status_code == 409 and isinstance(answer.get("offset"), int) and answer["offset"] != offset:
            logger.info("upload %s: walrus stands at %d, not %d; going on from there", upload_id, answer["offset"],
                        offset)
            return int(answer["offset"])
        if response.status_code == 409 or response.status_code in _RETRY_STATUSES:
            raise _Retry(f"{response.status_code}: {answer.get('detail', response.text[:200])}")
        raise TransferError(f"walrus refused the data of upload {upload_id} at {offset}: {response.status_code}: "
                            f"{answer.get('detail', response.text[:200])}", response.status_code)

    def complete(self, upload_id: str, digest: str) -> dict:
        client = RoleClient(self.base_url, self.key, timeout=COMPLETE_TIMEOUT)
        try:
            return self.call("POST", f"{UPLOADS_PATH}{upload_id}/complete/", {"sha256": digest}, client=client)
        except TransferError as exc:
            if exc.status == 422:
                raise ChecksumMismatch(f"upload {upload_id} of {self.path}", digest, str(exc)) from exc
            raise


def upload_file(base_url: str, key: HostKey, path: str | Path, image_id: str, *, sha256: str | None = None,
                progress: Progress | None = None, upload_id: str | None = None,
                piece_bytes: int = PIECE_BYTES) -> dict:
    """Upload a file to walrus at ``base_url`` as the next version of ``image_id`` and return walrus's answer to
    ``complete/`` (``image_id``, ``version``, ``size``, ``sha256``, ``format``).

    Starts an upload (with ``sha256`` when given) or resumes ``upload_id`` from walrus's offset; sends the file in
    ``piece_bytes`` PUTs, streamed in chunks; after a cut connection re-reads walrus's offset and goes on (bounded
    retries with back-off); completes with the sha256 of the bytes sent. ``progress(done, total)`` follows the bytes.
    Raises TransferError when walrus refuses or stays unreachable, ChecksumMismatch when the stored data's sha256 is
    not the local file's (or not ``sha256``), InvalidId for a bad id and OSError when the file cannot be read."""
    path = Path(path)
    validate_id(image_id, "image")
    if upload_id is not None:
        validate_id(upload_id, "upload")
    uploader = _Uploader(base_url, key, path, progress, piece_bytes)
    with uploader.session, open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if upload_id is None:
            payload = {"image_id": image_id, "size": size} | ({"sha256": sha256} if sha256 else {})
            upload_id = uploader.call("POST", UPLOADS_PATH, payload)["upload_id"]
        state = uploader.call("GET", f"{UPLOADS_PATH}{upload_id}/")
        if (state["image_id"], state["size"]) != (image_id, size):
            raise TransferError(f"upload {upload_id} is for {state['size']} bytes of {state['image_id']}, not "
                                f"{size} bytes of {image_id}", 409)
        local = _LocalHash(file.fileno())
        offset = state["offset"]
        uploader.report(offset, size)
        try:
            while True:
                if state["state"] == "open":
                    uploader.send(upload_id, file.fileno(), offset, size, local)
                digest = local.digest_of_first(size)
                try:
                    answer = uploader.complete(upload_id, digest)
                    break
                except TransferError as exc:
                    if exc.status != 409:
                        raise
                    # Some bytes did not arrive after all (or the last write still holds the upload): ask where it is.
                    uploader.attempts.failed(exc)
                    state = uploader.call("GET", f"{UPLOADS_PATH}{upload_id}/")
                    offset = state["offset"]
        finally:
            local.settle()
    if answer.get("sha256") != digest:
        raise ChecksumMismatch(f"upload {upload_id} of {path}", digest, str(answer.get("sha256")))
    uploader.report(size, size)
    return answer


# Downloads.

class _Download:
    """One download into ``<dest>.part``: what is on disk so far and the sha256 of exactly those bytes."""

    def __init__(self, url: str, dest: Path, key: HostKey, expected_sha256: str | None,
                 progress: Progress | None) -> None:
        self.url = url
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self.key = key
        self.expected = expected_sha256
        self.progress = progress
        self.walrus_sha256: str | None = None
        self.etag = f'"{expected_sha256}"' if expected_sha256 else None
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.session = requests.Session()
        parts = urlsplit(url)
        self.signed_path = canonical_path(parts.path, parts.query)
        self.signed_host = canonical_host(parts.netloc, parts.scheme)

    def have(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def rehash(self, length: int) -> None:
        """Make the hash cover the partial file's first ``length`` bytes (a partial file left by another run)."""
        if self.hashed == length:
            return
        self.hasher, self.hashed = hashlib.sha256(), 0
        with open(self.part, "rb") as file:
            while self.hashed < length:
                data = file.read(min(CHUNK_BYTES, length - self.hashed))
                if not data:
                    break
                self.hasher.update(data)
                self.hashed += len(data)

    def attempt(self) -> bool:
        """Fetch what is missing, or the part of it the server sends; True when the partial file holds the whole
        file."""
        have = self.have()
        headers = sign_headers(self.key, "GET", self.signed_host, self.signed_path, b"")
        # Always a range, even from 0: a server may then answer with the part it has (a cluster cache still fetching
        # the file sends what has arrived, straight from its disk), and the next attempt asks for the rest.
        headers["Range"] = f"bytes={have}-"
        if have and self.etag:
            # A different file than the one the partial bytes came from is sent whole, never appended.
            headers["If-Range"] = self.etag
        with self.session.get(self.url, headers=headers, stream=True,
                              timeout=(CONNECT_TIMEOUT, DATA_TIMEOUT)) as response:
            self.walrus_sha256 = response.headers.get(SHA256_HEADER) or self.walrus_sha256
            self.etag = self.etag or response.headers.get("ETag")
            status = response.status_code
            if status == 416 and have:
                match = _UNSATISFIED_RANGE_RE.match(response.headers.get("Content-Range", ""))
                if match and int(match[1]) == have:
                    self.rehash(have)
                    return True
                logger.warning("download of %s: the partial file is longer than the file; starting again", self.url)
                self.part.unlink(missing_ok=True)
                raise _Retry("partial file longer than the file")
            if status == 206:
                match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
                if not match or int(match[1]) != have:
                    raise TransferError(f"download of {self.url}: asked for bytes from {have}, got "
                                        f"{response.headers.get('Content-Range')!r}", status)
                start, end, total = have, int(match[2]) + 1, int(match[3])
            elif status == 200:
                start = 0
                end = total = int(response.headers.get("Content-Length", "0"))
            elif status in _RETRY_STATUSES:
                raise _Retry(f"{status}: {response.text[:200]}")
            else:
                raise TransferError(f"download of {self.url}: {status}: {response.text[:500]}", status)
            return self.receive(response, start, end, total)

    def receive(self, response: requests.Response, start: int, end: int, total: int) -> bool:
        """Write the body (bytes ``start..end-1`` of a file of ``total``) to the partial file; True when that made
        it whole (then it is on disk), False when the server sent only a part."""
        self.rehash(start)
        position = start
        with open(self.part, "r+b" if start else "wb", buffering=0) as out:
            out.truncate(start)
            fd = out.fileno()
            writeback = Writeback(fd, start)
            hashing = BackgroundHash(self.hasher)
            try:
                for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                    # Unbuffered: readers may follow the partial file (a cluster cache relays it while it arrives),
                    # so the bytes a progress call counts must be in the file.
                    write_all(fd, chunk, position)
                    hashing.feed(chunk)
                    position += len(chunk)
                    writeback.written(position)
                    if self.progress is not None:
                        self.progress(position, total)
            finally:
                self.hashed = -1  # unknown until the helper thread is done: a failure there means hashing again
                hashing.finish()
                self.hashed = start + hashing.hashed
            if position < end:
                raise _Retry(f"the body ended at {position} of {total} bytes")
            if position < total:
                return False
            os.fsync(fd)
        return True

    def finish(self) -> str:
        expected = self.expected or self.walrus_sha256
        actual = self.hasher.hexdigest()
        if not expected:
            self.part.unlink(missing_ok=True)
            raise TransferError(f"download of {self.url}: no sha256 to check it against (no expected_sha256 and no "
                                f"{SHA256_HEADER} header)")
        if actual != expected:
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(f"download of {self.url}", expected, actual)
        os.replace(self.part, self.dest)
        return actual


def download(url: str, dest: str | Path, *, key: HostKey, expected_sha256: str | None = None,
             progress: Progress | None = None) -> str:
    """Download ``url`` (a walrus or cluster cache ``.../data`` URL, signed with ``key``) to ``dest`` and return its
    sha256.

    The bytes go to ``<dest>.part`` (a partial file left by an earlier run is resumed), asked for with ``Range``
    from where it ends: after a cut connection (bounded retries with back-off), and at once when the server sent
    only a part (a 206 ending before the file does). The whole file's sha256 is checked against
    ``expected_sha256``, else against walrus's ``X-Educloud-Sha256``; only a match is renamed to ``dest``.
    ``progress(done, total)`` is called once ``done`` bytes are in the partial file. Raises ChecksumMismatch (the
    partial file is removed, nothing is at ``dest``), TransferError when walrus refuses or stays unreachable."""
    fetch = _Download(url, Path(dest), key, expected_sha256, progress)
    fetch.dest.parent.mkdir(parents=True, exist_ok=True)
    attempts = _Attempts(f"download of {url}")
    with fetch.session:
        while True:
            before = fetch.have()
            try:
                if fetch.attempt():
                    break
                if fetch.have() <= before:
                    raise _Retry(f"a part without bytes (from {before})")
                attempts.progressed()
            except (*_TRANSPORT_ERRORS, _Retry) as exc:
                if fetch.have() > before:
                    attempts.progressed()
                attempts.failed(exc)
    return fetch.finish()


def _json(response: requests.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}

