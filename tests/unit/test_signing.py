"""Signatures of calls between hosts and of their messages on the bus: each host's own key, over everything that
makes the call or the message what it is."""

import json

import pytest

from luhyaapi.keys import fingerprint, parse_public_key, verify_signature
from luhyaapi.signing import (
    HEADER_NONCE,
    HEADER_SENDER,
    HEADER_SIGNATURE,
    BadEnvelope,
    SignatureError,
    canonical_host,
    make_upload_token,
    seal,
    sign_headers,
    unseal,
    verify,
    verify_sealed,
    verify_upload_token,
)
from tests.keys import new_key

NODE = new_key("nc-1")
OTHER = new_key("nc-2")
KEYS = {"nc-1": NODE.public_key, "nc-2": OTHER.public_key}
HOST = "10.0.0.2:8000"
PATH = "/cc/api/1.0/register/server/"


def signed(method="POST", host=HOST, path=PATH, body=b'{"a": 1}', key=NODE, now=1000):
    return sign_headers(key, method, host, path, body, now=now)


def test_a_signed_request_verifies_and_names_its_sender_and_nonce():
    headers = signed()
    assert verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', headers, now=1010) == ("nc-1", headers[HEADER_NONCE])


@pytest.mark.parametrize("method, host, path, body", [
    ("GET", HOST, PATH, b'{"a": 1}'),
    ("POST", "10.0.0.3:8000", PATH, b'{"a": 1}'),
    ("POST", HOST, "/cc/api/1.0/register/host/", b'{"a": 1}'),
    ("POST", HOST, PATH + "?x=1", b'{"a": 1}'),
    ("POST", HOST, PATH, b'{"a": 2}'),
])
def test_any_change_of_method_host_path_or_body_is_refused_with_403(method, host, path, body):
    with pytest.raises(SignatureError) as error:
        verify(KEYS.get, method, host, path, body, signed(), now=1000)
    assert error.value.status == 403


def test_a_signature_of_another_hosts_key_is_refused_with_403():
    with pytest.raises(SignatureError, match="wrong signature") as error:
        verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', signed(key=OTHER) | {HEADER_SENDER: "nc-1"}, now=1000)
    assert error.value.status == 403


def test_the_sender_is_signed_too_so_a_call_cannot_be_passed_off_as_another_hosts():
    headers = signed() | {HEADER_SENDER: "nc-2"}
    with pytest.raises(SignatureError, match="wrong signature"):
        verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', headers, now=1000)


def test_the_nonce_is_signed_so_a_replay_cannot_wear_a_new_one():
    headers = signed() | {HEADER_NONCE: "A" * 24}
    with pytest.raises(SignatureError, match="wrong signature"):
        verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', headers, now=1000)


def test_every_signature_has_a_new_nonce():
    assert signed()[HEADER_NONCE] != signed()[HEADER_NONCE]


def test_an_unknown_or_revoked_sender_is_refused_with_401():
    with pytest.raises(SignatureError, match="not an enrolled host") as error:
        verify({}.get, "POST", HOST, PATH, b'{"a": 1}', signed(), now=1000)
    assert error.value.status == 401


def test_a_stale_request_is_refused_with_401():
    with pytest.raises(SignatureError, match="stale") as error:
        verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', signed(now=1000), now=1000 + 301)
    assert error.value.status == 401


@pytest.mark.parametrize("change", [{}, {HEADER_SIGNATURE: None}, {HEADER_NONCE: None}, {HEADER_NONCE: "short"},
                                    {HEADER_SENDER: "NC;1"}, {"X-Educloud-Timestamp": "soon"}])
def test_an_unsigned_or_malformed_request_is_refused_with_401(change):
    headers = {key: value for key, value in (signed() | change).items() if value is not None} if change else {}
    with pytest.raises(SignatureError) as error:
        verify(KEYS.get, "POST", HOST, PATH, b'{"a": 1}', headers, now=1000)
    assert error.value.status == 401


def test_a_streamed_body_may_be_signed_as_unsigned_payload_where_the_view_allows_it():
    headers = signed("PUT", path="/walrus/api/1.0/uploads/x/data", body=None)
    assert verify(KEYS.get, "PUT", HOST, "/walrus/api/1.0/uploads/x/data", None, headers, now=1000)[0] == "nc-1"


def test_an_unsigned_payload_is_refused_where_the_body_must_be_signed():
    with pytest.raises(SignatureError) as error:
        verify(KEYS.get, "POST", HOST, "/p", b"anything", signed(path="/p", body=None), now=1000)
    assert error.value.status == 403


def test_a_view_that_streams_still_refuses_a_body_hash_it_cannot_check():
    with pytest.raises(SignatureError, match="UNSIGNED-PAYLOAD"):
        verify(KEYS.get, "PUT", HOST, "/p", None, signed("PUT", path="/p", body=b"data"), now=1000)


def test_the_host_is_signed_as_browsers_and_requests_send_it():
    assert canonical_host("CLC.School.example:80") == "clc.school.example"
    assert canonical_host("clc.school.example:443", "https") == "clc.school.example"
    assert canonical_host("10.0.0.2:8000") == "10.0.0.2:8000"
    assert canonical_host("[fd00::1]:80") == "[fd00::1]"


def test_an_upload_token_is_good_for_its_upload_until_it_expires_and_names_its_issuer():
    clc = new_key("clc-1")
    keys = {"clc-1": clc.public_key}.get
    token = make_upload_token(clc, "upl-0000abcd", 2000)
    assert verify_upload_token(keys, "upl-0000abcd", token, "2000", now=1999) == "clc-1"
    for upload, expires, now in (("upl-0000ffff", "2000", 1999), ("upl-0000abcd", "2001", 1999),
                                 ("upl-0000abcd", "2000", 2001)):
        with pytest.raises(SignatureError):
            verify_upload_token(keys, upload, token, expires, now=now)
    with pytest.raises(SignatureError):
        verify_upload_token(keys, "upl-0000abcd", make_upload_token(new_key("clc-1"), "upl-0000abcd", 2000), "2000",
                            now=1999)


def test_public_keys_travel_as_text_and_are_shown_by_a_fingerprint():
    key = new_key("x")
    assert parse_public_key(key.public_key)
    assert key.fingerprint.startswith("SHA256:") and len(key.fingerprint) == 50
    assert fingerprint(key.public_key) == key.fingerprint
    assert verify_signature(key.public_key, key.sign(b"m"), b"m")
    assert not verify_signature(key.public_key, key.sign(b"m"), b"n")
    assert not verify_signature(key.public_key, "not base64!", b"m")


def test_two_processes_making_the_hosts_key_at_once_both_end_up_with_the_one_on_disk(tmp_path):
    import multiprocessing

    from luhyaapi.keys import host_key

    with multiprocessing.get_context("fork").Pool(4) as pool:
        public_keys = pool.starmap(_public_key_made_in, [(str(tmp_path),)] * 8)
    assert len(set(public_keys)) == 1
    assert host_key("nc-1", tmp_path).public_key == public_keys[0]
    assert [path.name for path in (tmp_path / "keys").iterdir()] == ["host.key"]


def _public_key_made_in(data_dir: str) -> str:
    from pathlib import Path

    from luhyaapi import keys

    keys._loaded.clear()
    return keys.host_key("nc-1", Path(data_dir)).public_key


def test_with_the_cache_unreachable_a_nonce_is_still_taken_once_by_this_process(monkeypatch):
    from luhyaapi import trust

    class Down:
        def add(self, *args, **kwargs):
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(trust, "cache", Down())
    assert trust.remember_nonce("nc-1", "n" * 24, 600) is True
    assert trust.remember_nonce("nc-1", "n" * 24, 600) is False
    assert trust.remember_nonce("nc-2", "n" * 24, 600) is True


# Messages on the bus


QUEUE = "cmd.nc-1"
MESSAGE = '{"type":"cmd","op":"status/report","note":"café"}'.encode()


def test_a_sealed_message_carries_its_exact_bytes_and_sender_and_verifies_for_its_queue_only():
    body = seal(NODE, QUEUE, MESSAGE)
    opened = unseal(body)
    assert (opened.sender, opened.message) == ("nc-1", MESSAGE)
    assert verify_sealed(NODE.public_key, QUEUE, opened)
    assert not verify_sealed(OTHER.public_key, QUEUE, opened), "another host's key"
    assert not verify_sealed(NODE.public_key, "cmd.nc-2", opened), "another queue"
    assert seal(NODE, QUEUE, MESSAGE) == body, "Ed25519 is deterministic: the same bytes on every bus"


@pytest.mark.parametrize("change", [
    lambda envelope: envelope | {"message": envelope["message"].replace("report", "poweroff")},
    lambda envelope: envelope | {"sender": "nc-2"},
    lambda envelope: envelope | {"signature": envelope["signature"][:-4] + "AAAA"},
])
def test_a_changed_envelope_does_not_verify(change):
    changed = unseal(json.dumps(change(json.loads(seal(NODE, QUEUE, MESSAGE)))).encode())
    assert not verify_sealed(NODE.public_key, QUEUE, changed) and not verify_sealed(OTHER.public_key, QUEUE, changed)


@pytest.mark.parametrize("body, reason", [
    (MESSAGE, "unsigned message: not an eduCloud envelope (version 1)"),
    (b"\xff", "unsigned message: not JSON"),
    (b'{"envelope": 2, "sender": "nc-1", "signature": "x", "message": "{}"}',
     "unsigned message: not an eduCloud envelope (version 1)"),
    (b'{"envelope": 1, "sender": "NC 1;", "signature": "x", "message": "{}"}', "bad sender 'NC 1;'"),
    (b'{"envelope": 1, "sender": "nc-1", "message": "{}"}',
     "the envelope from nc-1 lacks its signature or its message"),
    (b'{"envelope": 1, "sender": "nc-1", "signature": "x", "message": {"type": "cmd"}}',
     "the envelope from nc-1 lacks its signature or its message"),
])
def test_what_is_not_an_envelope_is_refused_saying_why(body, reason):
    with pytest.raises(BadEnvelope) as refused:
        unseal(body)
    assert str(refused.value) == reason
