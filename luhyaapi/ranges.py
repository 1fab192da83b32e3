"""HTTP byte ranges of image downloads: the single ``Range: bytes=...`` forms resumed transfers use, and responses
that hand a complete file (or a range of it) to the web server to send."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from django.http import FileResponse, StreamingHttpResponse

logger = logging.getLogger(__name__)

# What a server without a ``wsgi.file_wrapper`` (Django's test client, runserver) reads per step of a file
# response; waitress reads as much as the socket takes.
FILE_BLOCK_BYTES = 4 * 1024 * 1024

_RANGE_RE = re.compile(r"^bytes=(?P<first>\d*)-(?P<last>\d*)$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """The range lies outside the file (HTTP 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` bytes that ``header`` asks for in a file of ``size`` bytes, or None to send
    the whole file. ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are understood; a last byte past the end is cut to
    the end and a suffix longer than the file means all of it. A header this store does not serve (several ranges,
    another unit, bad syntax) is ignored, as RFC 9110 allows. Raises RangeNotSatisfiable when the first byte is at
    or past the end, or for ``bytes=-0``."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or (not match["first"] and not match["last"]):
        return None
    if not match["first"]:
        suffix = int(match["last"])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{suffix} of a file of {size} bytes")
        return max(size - suffix, 0), size - 1
    first = int(match["first"])
    if match["last"] and int(match["last"]) < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(f"byte {first} is past the end of a file of {size} bytes")
    return first, min(int(match["last"]), size - 1) if match["last"] else size - 1


def etag_of(sha256: str) -> str:
    return f'"{sha256}"'


def wanted_range(headers, size: int, sha256: str) -> tuple[int, int] | None:
    """The range a request for a file with ``sha256`` asks for: ``Range``, unless an ``If-Range`` names another
    file (then the whole file, so a resumed download never joins two files). Raises RangeNotSatisfiable."""
    etag = etag_of(sha256)
    return parse_range(headers.get("Range") if headers.get("If-Range", etag) == etag else None, size)


def unsatisfiable_headers(size: int, sha256: str) -> dict[str, str]:
    """Headers of a 416: the file's size, and its checksum so a client whose partial file is whole can verify it."""
    return {"Content-Range": f"bytes */{size}", "ETag": etag_of(sha256), "X-Educloud-Sha256": sha256}


def set_file_headers(response, *, size: int, sha256: str, first: int, last: int, partial: bool) -> None:
    """Length, range and checksum headers of a (partial) file response; a partial one becomes a 206."""
    response["Content-Length"] = str(last - first + 1)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag_of(sha256)
    response["X-Educloud-Sha256"] = sha256
    if partial:
        response.status_code = 206
        response["Content-Range"] = f"bytes {first}-{last}/{size}"


class FileRange:
    """Bytes ``first..last`` (inclusive) of an open file, as a read-only file of their own: ``read`` never passes
    the range, and ``seek``/``tell`` count from its first byte, so a web server's file wrapper (waitress's
    ``wsgi.file_wrapper``) sends exactly the range straight from the file, without the application copying it
    through buffers. Reads use ``pread``: several ranges of one file never disturb each other. Waitress reads as
    much as the socket's buffer holds, sends what the socket takes, seeks back to there and reads again: a read
    that starts inside the bytes the last read returned is answered from them (a memoryview, no copy), so a slow
    receiver does not make the file be read several times over. A file that turns out shorter than the range
    raises OSError (the server then drops the connection; the client's checksum and resume take it from there)
    rather than sending less than the promised Content-Length. ``close`` closes the file and then calls
    ``on_close``."""

    def __init__(self, file: BinaryIO, first: int, last: int, on_close: Callable[[], None] | None = None) -> None:
        self._file = file
        self._fd = file.fileno()
        self.first = first
        self.last = last
        self.length = last - first + 1
        self._position = 0
        self._on_close = on_close
        self._last_read = memoryview(b"")
        self._last_read_at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError(f"negative position {base + offset}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes | memoryview:
        left = self.length - self._position
        size = left if size is None or size < 0 else min(size, left)
        if size <= 0:
            return b""
        already = self._position - self._last_read_at
        if 0 <= already < len(self._last_read):
            data = self._last_read[already:already + size]
            self._position += len(data)
            return data
        data = os.pread(self._fd, size, self.first + self._position)
        if not data:
            name = getattr(self._file, "name", self._fd)
            logger.error("%s ends at %d, inside the range being sent", name, self.first + self._position)
            raise OSError(f"{name} ends at {self.first + self._position}, inside the range being sent")
        self._last_read, self._last_read_at = memoryview(data), self._position
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        # Django ties a file response and its file in a reference cycle: let go of the buffer and the callback's
        # owner now rather than when the garbage collector breaks the cycle.
        self._last_read = memoryview(b"")
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class StreamedRange:
    """Bytes ``first..last`` (inclusive) of a file that is still arriving, as the chunks that carry them: the web
    server copies them through its buffers as they are iterated."""

    def __init__(self, chunks: Iterable[bytes], first: int, last: int) -> None:
        self.chunks = chunks
        self.first = first
        self.last = last

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)


def file_response(body: FileRange | StreamedRange, *, size: int, sha256: str, partial: bool) -> StreamingHttpResponse:
    """A response carrying ``body``, bytes ``body.first..body.last`` of a file of ``size`` bytes with ``sha256``
    (``partial``: a 206), with the headers of ``set_file_headers``. A FileRange goes to the web server's file
    wrapper, which sends it straight from the file; a StreamedRange is streamed as it is iterated."""
    if isinstance(body, FileRange):
        response = FileResponse(body, content_type="application/octet-stream")
        response.block_size = FILE_BLOCK_BYTES
    else:
        response = StreamingHttpResponse(body, content_type="application/octet-stream")
    set_file_headers(response, size=size, sha256=sha256, first=body.first, last=body.last, partial=partial)
    return response
