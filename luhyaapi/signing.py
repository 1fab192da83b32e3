"""Signatures of calls between the cloud's hosts: each host signs with its own key (``luhyaapi.keys``).

What is signed: the method, the host the call is for, the path (with query), the time, a nonce, the sender's name and
the body's sha256. So a signature proves who sent the call and that nothing of it was changed; it is good for
``MAX_SKEW_SECONDS`` around its time, for that host only, and once (the receiver remembers nonces for that long:
``luhyaapi.trust.remember_nonce``).

A streamed upload cannot be hashed before it is sent, so its request may sign ``UNSIGNED-PAYLOAD`` in place of the
body's hash (header ``X-Educloud-Content-Sha256``), like S3. Only views that declare ``unsigned_payload = True``
accept that, and they check the data's integrity themselves (walrus compares the whole file's sha256).

Browsers send an image's data to walrus with a pre-signed token the CLC makes (``make_upload_token``), which walrus
checks with the CLC's public key.

Messages on the bus travel sealed (``seal``): a JSON envelope naming the sender, with its signature of the queue's
name, its own name and the message's exact JSON bytes, which the envelope carries as a string. Sealed messages have no
time limit (they may wait in a queue for hours) and no nonce: consumers are idempotent, so a replayed one does no
harm (``luhyaapi.bus``, ``docs/security.md``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from luhyaapi.keys import HostKey, verify_signature

HEADER_SIGNATURE = "X-Educloud-Signature"
HEADER_TIMESTAMP = "X-Educloud-Timestamp"
HEADER_SENDER = "X-Educloud-Sender"
HEADER_NONCE = "X-Educloud-Nonce"
HEADER_CONTENT_SHA256 = "X-Educloud-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_SKEW_SECONDS = 300
SCHEME = "EDUCLOUD-ED25519"
BUS_SCHEME = "EDUCLOUD-BUS-ED25519"
ENVELOPE_VERSION = 1
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SENDER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class SignatureError(Exception):
    """A request's signature is missing, stale, replayed or wrong; ``status`` is the HTTP answer (401 or 403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def canonical_path(path: str, query: str = "") -> str:
    """The form of a request path that both sides sign: percent-decoded, with the raw query string if any."""
    return unquote(path) + (f"?{query}" if query else "")


def canonical_host(host: str, scheme: str = "http") -> str:
    """The ``Host`` a call is for, as both sides sign it: lower case, without the scheme's default port."""
    host = host.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(f":{default}") and not host.endswith("]"):
        host = host.rsplit(":", 1)[0]
    return host


def string_to_sign(method: str, host: str, path: str, timestamp: str, nonce: str, sender: str,
                   body_hash: str) -> bytes:
    return "\n".join((SCHEME, method.upper(), host, path, timestamp, nonce, sender, body_hash)).encode()


def sign_headers(key: HostKey, method: str, host: str, path: str, body: bytes | None,
                 now: float | None = None) -> dict[str, str]:
    """The headers that make a call to ``host`` acceptable to the roles that trust ``key``'s host; ``body=None``
    signs a streamed body as ``UNSIGNED-PAYLOAD``. Every call gets a new nonce, so a retry is signed anew."""
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(18)
    body_hash = UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()
    return {
        HEADER_SENDER: key.name,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_CONTENT_SHA256: body_hash,
        HEADER_SIGNATURE: key.sign(string_to_sign(method, host, path, timestamp, nonce, key.name, body_hash)),
    }


def verify(public_key_of: Callable[[str], str | None], method: str, host: str, path: str, body: bytes | None,
           headers: dict[str, str], now: float | None = None) -> tuple[str, str]:
    """Check a signed request; return its ``(sender, nonce)``. ``public_key_of(sender)`` gives the sender's public
    key (None: unknown or revoked). Raises SignatureError: 401 unsigned, stale, malformed or from an unknown sender,
    403 a wrong signature. ``body=None`` means the view accepts an ``UNSIGNED-PAYLOAD`` body (not read here).
    Whether the nonce was seen before is the caller's to check (it needs a cache shared by the host's workers)."""
    sent = headers.get(HEADER_SIGNATURE)
    timestamp = headers.get(HEADER_TIMESTAMP)
    sender = headers.get(HEADER_SENDER, "")
    nonce = headers.get(HEADER_NONCE, "")
    if not sent or not timestamp:
        raise SignatureError(401, "request is not signed")
    if not _SENDER_RE.fullmatch(sender):
        raise SignatureError(401, f"bad sender {sender[:80]!r}")
    if not _NONCE_RE.fullmatch(nonce):
        raise SignatureError(401, "a signed request needs a nonce (X-Educloud-Nonce, 16-64 url-safe characters)")
    try:
        skew = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        raise SignatureError(401, f"bad timestamp {timestamp[:40]!r}") from None
    if skew > MAX_SKEW_SECONDS:
        raise SignatureError(401, f"stale request (clock skew {skew:.0f}s > {MAX_SKEW_SECONDS}s)")
    if body is None:
        body_hash = headers.get(HEADER_CONTENT_SHA256, "")
        if body_hash != UNSIGNED_PAYLOAD:
            raise SignatureError(401, f"a streamed body must be signed as {UNSIGNED_PAYLOAD}")
    else:
        body_hash = hashlib.sha256(body).hexdigest()
    public_key = public_key_of(sender)
    if public_key is None:
        raise SignatureError(401, f"{sender} is not an enrolled host of this cloud (or its key was revoked)")
    if not verify_signature(public_key, sent, string_to_sign(method, host, path, timestamp, nonce, sender,
                                                             body_hash)):
        raise SignatureError(403, "wrong signature")
    return sender, nonce


def _upload_message(upload_id: str, expires: int) -> bytes:
    return f"{SCHEME}\nupload\n{upload_id}\n{expires}".encode()


def make_upload_token(key: HostKey, upload_id: str, expires: int) -> str:
    """A pre-signed token that lets a browser send the data of one upload until ``expires`` (epoch seconds):
    ``<issuer>.<signature>``, the issuer being the CLC host that made it."""
    return f"{key.name}.{key.sign(_upload_message(upload_id, expires))}"


def verify_upload_token(public_key_of: Callable[[str], str | None], upload_id: str, token: str, expires: str,
                        now: float | None = None) -> str:
    """Return the token's issuer, or raise SignatureError (401) unless ``token`` is this upload's, signed by the
    issuer ``public_key_of`` knows (the caller decides which issuers it accepts), and not expired."""
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        raise SignatureError(401, "upload token expired or malformed")
    issuer, _, signature = token.partition(".")
    public_key = public_key_of(issuer) if _SENDER_RE.fullmatch(issuer) else None
    if public_key is None or not verify_signature(public_key, signature, _upload_message(upload_id, int(expires))):
        raise SignatureError(401, "wrong upload token")
    return issuer


class BadEnvelope(ValueError):
    """Bytes from a queue that are not a sealed message; the text says why."""


@dataclass(frozen=True)
class Sealed:
    """An opened envelope, not yet checked: who says it sent ``message`` (JSON bytes), and its signature."""

    sender: str
    signature: str
    message: bytes


def _bus_string_to_sign(queue: str, sender: str, message: bytes) -> bytes:
    return b"\n".join((BUS_SCHEME.encode(), queue.encode(), sender.encode(), message))


def seal(key: HostKey, queue: str, message: bytes) -> bytes:
    """The envelope that carries ``message`` (JSON bytes, UTF-8) on ``queue``, signed by ``key``'s host:
    ``{"envelope": 1, "sender": ..., "signature": ..., "message": "<the message's JSON as a string>"}``."""
    return json.dumps({"envelope": ENVELOPE_VERSION, "sender": key.name,
                       "signature": key.sign(_bus_string_to_sign(queue, key.name, message)),
                       "message": message.decode()}, separators=(",", ":")).encode()


def unseal(body: bytes) -> Sealed:
    """Open an envelope without checking it (``verify_sealed`` does); BadEnvelope if ``body`` is not one."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEnvelope("unsigned message: not JSON") from None
    if not isinstance(envelope, dict) or envelope.get("envelope") != ENVELOPE_VERSION:
        raise BadEnvelope(f"unsigned message: not an eduCloud envelope (version {ENVELOPE_VERSION})")
    sender, signature, message = (envelope.get(field) for field in ("sender", "signature", "message"))
    if not isinstance(sender, str) or not _SENDER_RE.fullmatch(sender):
        raise BadEnvelope(f"bad sender {str(sender)[:80]!r}")
    if not isinstance(signature, str) or not isinstance(message, str):
        raise BadEnvelope(f"the envelope from {sender} lacks its signature or its message")
    try:
        return Sealed(sender, signature, message.encode())
    except UnicodeEncodeError:
        raise BadEnvelope(f"the message from {sender} is not UTF-8") from None


def verify_sealed(public_key: str, queue: str, sealed: Sealed) -> bool:
    """Whether ``sealed`` was sealed for ``queue`` by the holder of ``public_key`` and not changed since."""
    return verify_signature(public_key, sealed.signature, _bus_string_to_sign(queue, sealed.sender, sealed.message))
