"""Signatures of node-to-node calls."""

import pytest

from luhyaapi.signing import HEADER_SIGNATURE, SignatureError, sign_headers, verify

KEY = "cloud-key-0123456789"


def test_a_signed_request_verifies_and_names_its_sender():
    headers = sign_headers(KEY, "nc-1", "POST", "/cc/api/1.0/register/server/", b'{"a": 1}', now=1000)
    assert verify(KEY, "POST", "/cc/api/1.0/register/server/", b'{"a": 1}', headers, now=1010) == "nc-1"


@pytest.mark.parametrize("method, path, body, key", [
    ("GET", "/cc/api/1.0/register/server/", b'{"a": 1}', KEY),
    ("POST", "/cc/api/1.0/register/host/", b'{"a": 1}', KEY),
    ("POST", "/cc/api/1.0/register/server/", b'{"a": 2}', KEY),
    ("POST", "/cc/api/1.0/register/server/", b'{"a": 1}', "another-cloud-key-000"),
])
def test_any_change_of_method_path_body_or_key_is_refused_with_403(method, path, body, key):
    headers = sign_headers(KEY, "nc-1", "POST", "/cc/api/1.0/register/server/", b'{"a": 1}', now=1000)
    with pytest.raises(SignatureError) as error:
        verify(key, method, path, body, headers, now=1000)
    assert error.value.status == 403


def test_a_stale_request_is_refused_with_401():
    headers = sign_headers(KEY, "nc-1", "GET", "/p", b"", now=1000)
    with pytest.raises(SignatureError, match="stale") as error:
        verify(KEY, "GET", "/p", b"", headers, now=1000 + 301)
    assert error.value.status == 401


def test_an_unsigned_request_is_refused_with_401():
    with pytest.raises(SignatureError, match="not signed") as error:
        verify(KEY, "GET", "/p", b"", {}, now=1000)
    assert error.value.status == 401


def test_a_signature_cannot_be_replayed_on_another_path():
    headers = sign_headers(KEY, "nc-1", "GET", "/clc/api/1.0/status/", b"", now=1000)
    with pytest.raises(SignatureError):
        verify(KEY, "GET", "/clc/api/1.0/status/?role=nc", b"", headers, now=1000)
    assert HEADER_SIGNATURE in headers


def test_a_streamed_body_may_be_signed_as_unsigned_payload_where_the_view_allows_it():
    headers = sign_headers(KEY, "nc-1", "PUT", "/walrus/api/1.0/uploads/x/data", None, now=1000)
    assert verify(KEY, "PUT", "/walrus/api/1.0/uploads/x/data", None, headers, now=1000) == "nc-1"


def test_an_unsigned_payload_is_refused_where_the_body_must_be_signed():
    headers = sign_headers(KEY, "nc-1", "POST", "/p", None, now=1000)
    with pytest.raises(SignatureError) as error:
        verify(KEY, "POST", "/p", b"anything", headers, now=1000)
    assert error.value.status == 403


def test_a_view_that_streams_still_refuses_a_body_hash_it_cannot_check():
    headers = sign_headers(KEY, "nc-1", "PUT", "/p", b"data", now=1000)
    with pytest.raises(SignatureError, match="UNSIGNED-PAYLOAD"):
        verify(KEY, "PUT", "/p", None, headers, now=1000)
