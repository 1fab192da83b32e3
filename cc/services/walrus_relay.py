"""The cluster's hop on the way up to walrus: a node's upload of an edited image goes nc -> cc -> walrus.

Nodes of a private cluster may reach only their CC; the CC passes each upload call on to walrus as itself (signed
with its own key), streaming data bodies through without storing them, and hands walrus's answer back. Only the
upload calls are passed on, so a node cannot use the CC to reach any other walrus call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from django.conf import settings

from luhyaapi.signing import canonical_host, canonical_path, sign_headers
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

# The walrus calls a node may make through its CC (paths below /walrus/api/1.0/), with their methods.
RELAYED = (
    (re.compile(r"^uploads/$"), {"POST"}),
    (re.compile(r"^uploads/upl-[0-9a-f]{8}/$"), {"GET"}),
    (re.compile(r"^uploads/upl-[0-9a-f]{8}/data$"), {"PUT"}),
    (re.compile(r"^uploads/upl-[0-9a-f]{8}/complete/$"), {"POST"}),
)
CONNECT_TIMEOUT = 10.0
DATA_TIMEOUT = 600.0


class NotRelayed(ValueError):
    """A call the CC does not pass on to walrus."""


class _Body:
    """A request body of known length read as it arrives, so requests streams it with a Content-Length."""

    def __init__(self, read: Callable[[int], bytes], length: int) -> None:
        self._read = read
        self._left = length
        self._length = length

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._read(size)
        self._left -= len(chunk)
        return chunk


def relay_to_walrus(method: str, rest: str, query: str, body: bytes | None,
                    stream: tuple[Callable[[int], bytes], int] | None = None) -> requests.Response:
    """Pass one upload call on to walrus: ``rest`` is the path below ``/walrus/api/1.0/``, ``body`` a JSON body
    (signed), ``stream`` a data body (reader and length, signed as UNSIGNED-PAYLOAD). Raises NotRelayed for any
    other call and requests.RequestException when walrus cannot be reached."""
    if not any(pattern.match(rest) and method in methods for pattern, methods in RELAYED):
        raise NotRelayed(f"{method} {rest!r} is not an upload call the cluster controller passes on")
    config = settings.EDUCLOUD
    url = f"{config.walrus_url}/walrus/api/1.0/{rest}" + (f"?{query}" if query else "")
    parts = urlsplit(url)
    headers = sign_headers(own_key(), method, canonical_host(parts.netloc, parts.scheme),
                           canonical_path(parts.path, parts.query),
                           None if stream else (body or b""))
    if stream:
        headers["Content-Type"] = "application/octet-stream"
        data = _Body(*stream)
    else:
        headers["Content-Type"] = "application/json"
        data = body or None
    return requests.request(method, url, data=data, headers=headers, timeout=(CONNECT_TIMEOUT, DATA_TIMEOUT))
