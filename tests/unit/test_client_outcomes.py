"""A role's call to another: which failures may still have been carried out on the other side (the caller must not
take them as refusals) and which are refusals, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from luhyaapi.client import RemoteError, RoleClient
from tests.keys import new_key


class Answering(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = int(self.path.strip("/"))
        body = json.dumps({"detail": f"answered {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("status, unsure", [(400, False), (404, False), (409, False), (503, False), (500, True),
                                            (502, True), (504, True)])
def test_a_server_error_may_have_been_carried_out_but_a_refusal_or_503_was_not(server, status, unsure):
    with pytest.raises(RemoteError) as raised:
        RoleClient(server, new_key("cc-1")).post(f"/{status}/", {})
    assert (raised.value.status, raised.value.detail) == (status, f"answered {status}")
    assert raised.value.may_have_arrived is unsure


def test_a_connection_never_made_was_not_carried_out():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        with pytest.raises(RemoteError) as raised:
            RoleClient(f"http://127.0.0.1:{port}", new_key("cc-1"), timeout=2).post("/", {})
    assert raised.value.status == 0 and raised.value.may_have_arrived is False
