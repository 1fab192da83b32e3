"""The opening of an RFB (VNC) session (RFC 6143, section 7.1-7.2), both ways, for the console proxy.

A desktop's VNC console asks for the password of its run. The proxy logs in to it as a client with that password
and then greets the browser as a server that asks for none: the person was admitted by the portal's one-time token,
and the password never reaches the browser. After both openings the proxy relays bytes; the rest of the protocol
(ClientInit, ServerInit, framebuffer updates) passes through untouched.

Each side is read through an ``read_exactly(count) -> bytes`` coroutine and written through a ``send(bytes)``
coroutine, so the same code serves a TCP stream and a websocket.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

ReadExactly = Callable[[int], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]

VERSION_LENGTH = 12
SECURITY_NONE = 1
SECURITY_VNC = 2
CHALLENGE_LENGTH = 16
KEY_LENGTH = 8
MAX_REASON_BYTES = 4096
# The well-known key VNC viewers obfuscate a password in their files with (TigerVNC, RealVNC, TightVNC).
VIEWER_FILE_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])


class HandshakeError(Exception):
    """The other side does not speak RFB 3.x, offers no usable security type, or refused the password."""


def _des(key: bytes, data: bytes) -> bytes:
    # DES is 3DES with three equal keys; the single-key form is deprecated in cryptography.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _password_key(password: str) -> bytes:
    return password.encode("ascii")[:KEY_LENGTH].ljust(KEY_LENGTH, b"\0")


def _vnc_des(key: bytes, data: bytes) -> bytes:
    """DES as the VNC family uses it: the bits of every key byte mirrored first (the original VNC's DES code set
    key bits in the opposite order), for challenges and password files alike."""
    return _des(bytes(int(f"{byte:08b}"[::-1], 2) for byte in key), data)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC authentication challenge: the 16 bytes encrypted with the password (at most 8 bytes,
    zero-padded) as the key."""
    return _vnc_des(_password_key(password), challenge)


def viewer_file_password(password: str) -> str:
    """The ``password=`` value of a ``.vnc`` file: the password encrypted with the viewers' fixed key, in hex.
    Obfuscation, not secrecy: the file is handed only to a person who may use the desktop."""
    return _vnc_des(VIEWER_FILE_KEY, _password_key(password)).hex()


def _minor(version: bytes) -> int:
    """The minor version of an RFB 3.x ``ProtocolVersion``; HandshakeError for anything else."""
    if len(version) != VERSION_LENGTH or not version.startswith(b"RFB 003.") or not version.endswith(b"\n"):
        raise HandshakeError(f"not an RFB 3.x greeting: {version[:VERSION_LENGTH]!r}")
    digits = version[8:11]
    if not digits.isdigit():
        raise HandshakeError(f"not an RFB 3.x greeting: {version!r}")
    return int(digits)


def _version_for(minor: int) -> tuple[int, bytes]:
    """The version both sides speak: 3.8 or 3.7 when offered, else 3.3 (the base every server and viewer has)."""
    chosen = 8 if minor >= 8 else 7 if minor == 7 else 3
    return chosen, f"RFB 003.{chosen:03d}\n".encode()


async def _reason(read_exactly: ReadExactly) -> str:
    (length,) = struct.unpack(">I", await read_exactly(4))
    return (await read_exactly(min(length, MAX_REASON_BYTES))).decode("utf-8", errors="replace")


async def log_in(read_exactly: ReadExactly, send: Send, password: str) -> None:
    """Open a session with a VNC server as a client: agree on a version, choose VNC authentication (or none, when
    the server asks for nothing) and answer its challenge with ``password``. Afterwards the server waits for the
    ClientInit, which the browser sends. HandshakeError says why it failed (a wrong password included)."""
    minor, version = _version_for(_minor(await read_exactly(VERSION_LENGTH)))
    await send(version)
    if minor == 3:
        (chosen,) = struct.unpack(">I", await read_exactly(4))
        if chosen == 0:
            raise HandshakeError(f"the console refused the session: {await _reason(read_exactly)}")
    else:
        (count,) = await read_exactly(1)
        if count == 0:
            raise HandshakeError(f"the console refused the session: {await _reason(read_exactly)}")
        offered = await read_exactly(count)
        chosen = SECURITY_VNC if SECURITY_VNC in offered else SECURITY_NONE if SECURITY_NONE in offered else 0
        if not chosen:
            raise HandshakeError(f"the console offers no security type the proxy speaks: {list(offered)}")
        await send(bytes([chosen]))
    if chosen == SECURITY_VNC:
        await send(vnc_auth_response(password, await read_exactly(CHALLENGE_LENGTH)))
    elif chosen != SECURITY_NONE:
        raise HandshakeError(f"the console asks for security type {chosen}, which the proxy does not speak")
    if chosen == SECURITY_VNC or minor == 8:
        (result,) = struct.unpack(">I", await read_exactly(4))
        if result != 0:
            reason = await _reason(read_exactly) if minor == 8 else "authentication failed"
            raise HandshakeError(f"the console refused the password: {reason}")


async def greet(read_exactly: ReadExactly, send: Send) -> None:
    """Open a session with a VNC viewer as a server that asks for no password. Afterwards the viewer sends its
    ClientInit, to be relayed to the real server. HandshakeError when the viewer does not speak RFB 3.x or picks
    a security type that was not offered."""
    await send(_version_for(8)[1])
    minor, _ = _version_for(_minor(await read_exactly(VERSION_LENGTH)))
    if minor == 3:
        await send(struct.pack(">I", SECURITY_NONE))
        return
    await send(bytes([1, SECURITY_NONE]))
    (chosen,) = await read_exactly(1)
    if chosen != SECURITY_NONE:
        raise HandshakeError(f"the viewer chose security type {chosen}, which was not offered")
    if minor == 8:
        await send(struct.pack(">I", 0))


# Client messages (RFC 6143 section 7.5, and the extensions noVNC sends) by type: the length of the message from its
# first bytes (None while more are needed to tell), and whether a watcher may send it (asking for pictures: yes;
# keys, the mouse, the clipboard, resizing, power: no).
def _fixed(length: int) -> Callable[[bytes], int | None]:
    return lambda head: length


def _counted(offset: int, size: int, base: int, each: int) -> Callable[[bytes], int | None]:
    """Messages whose length is a count at ``offset`` (``size`` bytes, big-endian) of ``each`` bytes after ``base``."""
    def length(head: bytes) -> int | None:
        if len(head) < offset + size:
            return None
        count = int.from_bytes(head[offset:offset + size], "big", signed=size == 4)
        return base + each * abs(count)  # an extended clipboard message's length is negative
    return length


def _qemu(head: bytes) -> int | None:
    if len(head) < 2:
        return None
    if head[1] == 0:  # extended key event
        return 12
    raise HandshakeError(f"the viewer sent QEMU client message {head[1]}, which a watcher does not send")


CLIENT_MESSAGES: dict[int, tuple[Callable[[bytes], int | None], bool]] = {
    0: (_fixed(20), True),  # SetPixelFormat
    2: (_counted(2, 2, 4, 4), True),  # SetEncodings
    3: (_fixed(10), True),  # FramebufferUpdateRequest
    4: (_fixed(8), False),  # KeyEvent
    5: (_fixed(6), False),  # PointerEvent
    6: (_counted(4, 4, 8, 1), False),  # ClientCutText
    150: (_fixed(10), True),  # EnableContinuousUpdates
    248: (_counted(8, 1, 9, 1), True),  # ClientFence
    250: (_fixed(4), False),  # xvp: shut down, reboot, reset
    251: (_counted(6, 1, 8, 16), False),  # SetDesktopSize
    255: (_qemu, False),  # QEMU's extended key event
}


class WatchOnly:
    """The viewer's side of a session opened to watch only (a teacher looking at a student's screen): the
    ClientInit asks for a shared session (the student's own goes on), and then only the messages that ask for
    pictures pass; keys, the mouse, the clipboard, resizing and power are dropped. ``feed`` takes the viewer's bytes
    as they come (messages may span frames) and returns those to pass on; a message it does not know ends the
    session (HandshakeError), since its length, and so where the next message starts, is unknown."""

    def __init__(self) -> None:
        self.pending = b""
        self.initialised = False
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        passed = bytearray()
        if not self.initialised and self.pending:
            passed.append(1)  # ClientInit: shared, whatever the viewer asked
            self.pending = self.pending[1:]
            self.initialised = True
        while self.pending:
            known = CLIENT_MESSAGES.get(self.pending[0])
            if known is None:
                raise HandshakeError(f"the viewer sent message type {self.pending[0]}, which a watcher does not send")
            length_of, allowed = known
            length = length_of(self.pending)
            if length is None or len(self.pending) < length:
                break
            message, self.pending = self.pending[:length], self.pending[length:]
            if allowed:
                passed += message
            else:
                self.dropped += 1
        return bytes(passed)
