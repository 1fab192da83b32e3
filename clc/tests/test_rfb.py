"""The RFB opening the console proxy speaks: logging in to a console with the run's password, greeting a browser
with no password, in each protocol version; the password's answer is checked with vncdotool's own DES code."""

from __future__ import annotations

import asyncio
import struct

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from vncdotool.rfb import _vnc_des, des_encrypt

from clc.services import rfb

CHALLENGE = bytes(range(16))


class Peer:
    """The other side of an opening: what it says, in order, and what it was sent."""

    def __init__(self, *says: bytes) -> None:
        self.says = b"".join(says)
        self.sent = b""

    async def read_exactly(self, count: int) -> bytes:
        if len(self.says) < count:
            raise asyncio.IncompleteReadError(self.says, count)
        data, self.says = self.says[:count], self.says[count:]
        return data

    async def send(self, data: bytes) -> None:
        self.sent += data


def log_in(peer: Peer, password: str = "s3cret12") -> None:
    asyncio.run(rfb.log_in(peer.read_exactly, peer.send, password))


def greet(peer: Peer) -> None:
    asyncio.run(rfb.greet(peer.read_exactly, peer.send))


def answer(password: str) -> bytes:
    return des_encrypt(_vnc_des(password), CHALLENGE)


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def test_the_answer_to_a_challenge_is_the_one_vnc_clients_compute():
    for password in ("s3cret12", "abc", "A1b2C3d4", ""):
        assert rfb.vnc_auth_response(password, CHALLENGE) == answer(password)


def test_logging_in_to_a_3_8_console_chooses_vnc_authentication_and_answers_its_challenge():
    console = Peer(b"RFB 003.008\n", bytes([2, 1, 2]), CHALLENGE, u32(0))
    log_in(console)
    assert console.sent == b"RFB 003.008\n" + bytes([2]) + answer("s3cret12")
    assert console.says == b""


def test_logging_in_to_a_3_3_console_takes_the_security_type_it_names():
    console = Peer(b"RFB 003.003\n", u32(2), CHALLENGE, u32(0))
    log_in(console)
    assert console.sent == b"RFB 003.003\n" + answer("s3cret12")


def test_a_newer_console_is_spoken_to_in_3_8_and_an_unknown_minor_in_3_3():
    newer = Peer(b"RFB 003.889\n", bytes([1, 2]), CHALLENGE, u32(0))
    log_in(newer)
    assert newer.sent.startswith(b"RFB 003.008\n")
    odd = Peer(b"RFB 003.005\n", u32(1))
    log_in(odd)
    assert odd.sent == b"RFB 003.003\n"


def test_a_console_that_asks_for_nothing_is_opened_without_the_password():
    console = Peer(b"RFB 003.008\n", bytes([1, 1]), u32(0))
    log_in(console)
    assert console.sent == b"RFB 003.008\n" + bytes([1])


def test_a_refused_password_is_an_error_with_the_consoles_reason():
    console = Peer(b"RFB 003.008\n", bytes([1, 2]), CHALLENGE, u32(1), u32(21), b"Authentication failed")
    with pytest.raises(rfb.HandshakeError, match="refused the password: Authentication failed"):
        log_in(console)


def test_a_refused_password_in_3_7_has_no_reason_to_read():
    console = Peer(b"RFB 003.007\n", bytes([1, 2]), CHALLENGE, u32(1))
    with pytest.raises(rfb.HandshakeError, match="refused the password: authentication failed"):
        log_in(console)


def test_a_console_that_refuses_every_session_gives_its_reason():
    console = Peer(b"RFB 003.008\n", bytes([0]), u32(14), b"Too many users")
    with pytest.raises(rfb.HandshakeError, match="refused the session: Too many users"):
        log_in(console)


def test_a_console_offering_only_unknown_security_types_is_refused():
    console = Peer(b"RFB 003.008\n", bytes([2, 16, 19]))
    with pytest.raises(rfb.HandshakeError, match=r"no security type the proxy speaks: \[16, 19\]"):
        log_in(console)


@pytest.mark.parametrize("greeting", [b"SSH-2.0-Open\n", b"RFB 004.000\n", b"RFB 003.0x8\n", b"HTTP/1.1 200 "])
def test_something_that_is_not_an_rfb_3_console_is_refused(greeting):
    with pytest.raises(rfb.HandshakeError, match="not an RFB 3.x greeting"):
        log_in(Peer(greeting))


def test_a_3_8_viewer_is_greeted_with_no_authentication_and_told_it_succeeded():
    viewer = Peer(b"RFB 003.008\n", bytes([1]))
    greet(viewer)
    assert viewer.sent == b"RFB 003.008\n" + bytes([1, 1]) + u32(0)


def test_a_3_7_viewer_gets_no_security_result_for_no_authentication():
    viewer = Peer(b"RFB 003.007\n", bytes([1]))
    greet(viewer)
    assert viewer.sent == b"RFB 003.008\n" + bytes([1, 1])


def test_a_3_3_viewer_is_told_the_security_type():
    viewer = Peer(b"RFB 003.003\n")
    greet(viewer)
    assert viewer.sent == b"RFB 003.008\n" + u32(1)


def test_a_viewer_choosing_a_security_type_not_offered_is_refused():
    with pytest.raises(rfb.HandshakeError, match="chose security type 2"):
        greet(Peer(b"RFB 003.008\n", bytes([2])))


def test_a_vnc_file_password_decrypts_with_the_key_password_recovery_tools_use():
    # In plain DES terms the viewers' fixed key {23, 82, 107, 6, 35, 78, 88, 7}, bits mirrored, is e84ad660c4721ae0.
    key = bytes.fromhex("e84ad660c4721ae0") * 3
    for password, stored in (("s3cret12", b"s3cret12"), ("abc", b"abc\0\0\0\0\0")):
        decryptor = Cipher(TripleDES(key), modes.ECB()).decryptor()
        hidden = bytes.fromhex(rfb.viewer_file_password(password))
        assert decryptor.update(hidden) + decryptor.finalize() == stored


# Watching only (a teacher looking at a student's screen)

PIXEL_FORMAT = bytes([0, 0, 0, 0]) + bytes(16)
ENCODINGS = struct.pack(">BxHii", 2, 2, 0, -223)
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 800, 600)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 1, 10, 20)
CUT = struct.pack(">BxxxI", 6, 5) + b"hello"
FENCE = struct.pack(">BxxxIB", 248, 0, 3) + b"abc"
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)
RESIZE = struct.pack(">BxHHBx", 251, 1024, 768, 1) + bytes(16)


def test_a_watcher_asks_for_a_shared_session_and_only_its_requests_for_pictures_pass():
    watcher = rfb.WatchOnly()
    stream = b"\x00" + PIXEL_FORMAT + ENCODINGS + KEY + UPDATE + POINTER + CUT + FENCE + QEMU_KEY + RESIZE + UPDATE
    assert watcher.feed(stream) == b"\x01" + PIXEL_FORMAT + ENCODINGS + UPDATE + FENCE + UPDATE
    assert watcher.dropped == 5


def test_messages_split_across_frames_are_taken_whole():
    watcher = rfb.WatchOnly()
    stream = b"\x01" + KEY + UPDATE + CUT + UPDATE
    passed = b"".join(watcher.feed(stream[index:index + 3]) for index in range(0, len(stream), 3))
    assert passed == b"\x01" + UPDATE + UPDATE


def test_a_message_a_watcher_never_sends_ends_the_session():
    watcher = rfb.WatchOnly()
    with pytest.raises(rfb.HandshakeError, match="message type 99"):
        watcher.feed(b"\x01" + UPDATE + b"\x63" + bytes(10))
    with pytest.raises(rfb.HandshakeError, match="QEMU client message 1"):
        rfb.WatchOnly().feed(b"\x01" + struct.pack(">BBH", 255, 1, 0))
