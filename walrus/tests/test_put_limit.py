"""The limit of one PUT's body (``MAX_PUT_BYTES``): refused by its headers, before any of the body is sent, by the
product's web server (waitress, ``daemons.host.web_server``) and by walrus's data view behind any other server."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import replace

import pytest

from daemons.host import web_server
from walrus.constants import MAX_PUT_BYTES
from walrus.models import Upload

GiB = 1024**3
PUT_PATH = "/walrus/api/1.0/uploads/upl-00000000/data?offset=0"


@pytest.fixture
def server(tmp_path, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "data")
    server = web_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield ("127.0.0.1", server.effective_port)
    server.close()
    thread.join(10)


def send_headers(address, length: int, *, expect: bool, path: str = PUT_PATH) -> socket.socket:
    """A connection that has sent a PUT's headers and none of its body."""
    sock = socket.create_connection(address, timeout=10)
    lines = [f"PUT {path} HTTP/1.1", f"Host: {address[0]}", f"Content-Length: {length}",
             "Content-Type: application/octet-stream"] + (["Expect: 100-continue"] if expect else [])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or stops sending for the socket's timeout)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        pass
    return answer


def test_the_limit_is_one_gib():
    assert MAX_PUT_BYTES == GiB


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "no-expect"])
def test_a_put_over_the_limit_is_refused_413_by_its_headers_before_any_body_byte(server, expect):
    with send_headers(server, 2 * GiB, expect=expect) as sock:
        answer = read_answer(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b"100 Continue" not in answer
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in headers
    assert str(MAX_PUT_BYTES) in json.loads(body)["Content-Length"][0]


def test_a_put_at_the_limit_is_told_to_continue(server):
    with send_headers(server, MAX_PUT_BYTES, expect=True) as sock:
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")


def test_any_request_over_the_limit_is_refused_at_its_headers(server):
    with send_headers(server, MAX_PUT_BYTES + 1, expect=True, path="/clc/api/1.0/images/") as sock:
        assert read_answer(sock).startswith(b"HTTP/1.1 413 ")


@pytest.mark.database
@pytest.mark.django_db
def test_walrus_refuses_a_put_over_the_limit_by_its_content_length_before_reading(walrus, store):
    upload_id = walrus.start("img-0000abcd", b"", size=3 * GiB)
    assert walrus.put(upload_id, b"0123456789").json() == {"offset": 10}
    response = walrus.put(upload_id, b"x", offset=10, CONTENT_LENGTH=str(MAX_PUT_BYTES + 1))
    assert response.status_code == 413
    assert str(MAX_PUT_BYTES) in response.json()["Content-Length"][0]
    assert Upload.objects.get(upload_id=upload_id).offset == 10
