"""HTTP byte ranges of image downloads: the single ``Range: bytes=...`` forms resumed transfers use."""

from __future__ import annotations

import re

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
