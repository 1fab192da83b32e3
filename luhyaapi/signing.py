"""HMAC signatures of node-to-node REST calls: over method, path (with query), timestamp and the body's sha256.

A streamed upload cannot be hashed before it is sent, so its request may sign ``UNSIGNED-PAYLOAD`` in place of the
body's hash (header ``X-Educloud-Content-Sha256``), like S3. Only views that declare ``unsigned_payload = True``
accept that, and they check the data's integrity themselves (walrus compares the whole file's sha256).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import unquote

HEADER_SIGNATURE = "X-Educloud-Signature"
HEADER_TIMESTAMP = "X-Educloud-Timestamp"
HEADER_SENDER = "X-Educloud-Sender"
HEADER_CONTENT_SHA256 = "X-Educloud-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_SKEW_SECONDS = 300


class SignatureError(Exception):
    """A request's signature is missing, stale or wrong; ``status`` is the HTTP answer (401 or 403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def canonical_path(path: str, query: str = "") -> str:
    """The form of a request path that both sides sign: percent-decoded, with the raw query string if any."""
    return unquote(path) + (f"?{query}" if query else "")


def signature(key: str, method: str, path: str, timestamp: str, body_hash: str) -> str:
    payload = "\n".join((method.upper(), path, timestamp, body_hash)).encode()
    return hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()


def sign_headers(key: str, sender: str, method: str, path: str, body: bytes | None,
                 now: float | None = None) -> dict[str, str]:
    """The headers that make a request acceptable to every role of the same cloud; ``body=None`` signs a streamed
    body as ``UNSIGNED-PAYLOAD``."""
    timestamp = str(int(now if now is not None else time.time()))
    body_hash = UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()
    return {
        HEADER_SENDER: sender,
        HEADER_TIMESTAMP: timestamp,
        HEADER_CONTENT_SHA256: body_hash,
        HEADER_SIGNATURE: signature(key, method, path, timestamp, body_hash),
    }


def verify(key: str, method: str, path: str, body: bytes | None, headers: dict[str, str],
           now: float | None = None) -> str:
    """Return the sender of a correctly signed, fresh request; raise SignatureError (401 unsigned/stale, 403 wrong).
    ``body=None`` means the view accepts an ``UNSIGNED-PAYLOAD`` body (it is not read here)."""
    sent = headers.get(HEADER_SIGNATURE)
    timestamp = headers.get(HEADER_TIMESTAMP)
    sender = headers.get(HEADER_SENDER, "")
    if not sent or not timestamp:
        raise SignatureError(401, "request is not signed")
    try:
        skew = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        raise SignatureError(401, f"bad timestamp {timestamp!r}") from None
    if skew > MAX_SKEW_SECONDS:
        raise SignatureError(401, f"stale request (clock skew {skew:.0f}s > {MAX_SKEW_SECONDS}s)")
    if body is None:
        body_hash = headers.get(HEADER_CONTENT_SHA256, "")
        if body_hash != UNSIGNED_PAYLOAD:
            raise SignatureError(401, f"a streamed body must be signed as {UNSIGNED_PAYLOAD}")
    else:
        body_hash = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(sent, signature(key, method, path, timestamp, body_hash)):
        raise SignatureError(403, "wrong signature")
    return sender


def make_upload_token(key: str, upload_id: str, expires: int) -> str:
    """A pre-signed token that lets a browser send the data of one upload until ``expires`` (epoch seconds)."""
    return hmac.new(key.encode(), f"upload:{upload_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def verify_upload_token(key: str, upload_id: str, token: str, expires: str, now: float | None = None) -> None:
    """Raise SignatureError unless ``token`` is this upload's, made with ``key``, and not expired (401 either way)."""
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        raise SignatureError(401, "upload token expired or malformed")
    if not hmac.compare_digest(token, make_upload_token(key, upload_id, int(expires))):
        raise SignatureError(401, "wrong upload token")
