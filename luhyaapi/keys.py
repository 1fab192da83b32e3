"""Each host's own key pair (Ed25519): made on first start, the private half never leaves the host.

A host signs its calls to other roles with its private key (``luhyaapi.signing``); every other host checks them with
its public key, which the cloud controller records when the host enrols (``docs/security.md``). Public keys travel
as text, ``ed25519:<base64 of the 32 bytes>``, and are shown to people by their fingerprint, ``SHA256:<base64>``
(the form ``ssh-keygen -l`` uses), which an administrator compares with what the host prints before approving it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_PREFIX = "ed25519:"
KEY_DIR = "keys"
PRIVATE_FILE = "host.key"


class BadKey(ValueError):
    """A public key or a signature is not well formed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    """URL-safe base64: a signature travels in headers and in a browser's upload URL alike."""
    return base64.urlsafe_b64encode(data).decode()


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>`` of a public key."""
    return PUBLIC_PREFIX + _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """The public key of its text form; ``BadKey`` saying what is wrong."""
    if not isinstance(text, str) or not text.startswith(PUBLIC_PREFIX) or len(text) > 64:
        raise BadKey(f"not a public key (expected {PUBLIC_PREFIX}<base64 of 32 bytes>)")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("the public key is not base64") from None
    if len(raw) != 32:
        raise BadKey(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(text: str) -> str:
    """``SHA256:<base64 without padding>`` of a public key's bytes, for people to compare."""
    raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX))
    return "SHA256:" + _b64(hashlib.sha256(raw).digest()).rstrip("=")


def verify_signature(public_key: str, signature: str, message: bytes) -> bool:
    """Whether ``signature`` (URL-safe base64) is the holder of ``public_key``'s signature of ``message``."""
    try:
        raw = base64.b64decode(signature, altchars=b"-_", validate=True)
        parse_public_key(public_key).verify(raw, message)
    except (binascii.Error, ValueError, BadKey, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class HostKey:
    """This host's name and key pair: ``sign`` for its calls, ``public_key`` for others to check them."""

    name: str
    private: Ed25519PrivateKey = field(repr=False)

    @property
    def public_key(self) -> str:
        return public_key_text(self.private.public_key())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, message: bytes) -> str:
        return _b64url(self.private.sign(message))

    def derived_secret(self, purpose: str) -> str:
        """A secret of this host for ``purpose`` (Django's session signing, say), kept nowhere but in the key."""
        raw = self.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        return hashlib.sha256(f"{purpose}:".encode() + raw).hexdigest()


_loaded: dict[tuple[str, Path], HostKey] = {}
_lock = threading.Lock()


def host_key(name: str, data_dir: Path) -> HostKey:
    """This host's key pair, read from ``<data_dir>/keys/host.key`` or made there on first use (directory 0700,
    file 0600, written whole under a temporary name so a crash never leaves half a key, and linked into place so
    two processes starting at once end up with the same key)."""
    path = Path(data_dir) / KEY_DIR / PRIVATE_FILE
    with _lock:
        cached = _loaded.get((name, path))
        if cached is not None:
            return cached
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            temporary = path.with_name(f".{PRIVATE_FILE}.{os.getpid()}.{threading.get_ident()}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            try:
                # A link never replaces: of two processes making the key at once, one's is kept and both read it.
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(temporary)
        os.chmod(path, 0o600)
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise BadKey(f"{path} is not an Ed25519 private key")
        _loaded[(name, path)] = HostKey(name, private)
        return _loaded[(name, path)]
