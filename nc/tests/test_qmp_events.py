"""The QMP client's events: those QEMU sends between replies are kept for ``wait_event``, which also waits for new
ones and gives up after its timeout (then the connection is closed), against a scripted QMP server on a unix
socket. The detach of a volume waits for ``DEVICE_DELETED`` this way (the real one: tests/integration)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from nc.drivers.qemu_qmp import QMPClient, QMPError


def event(name: str, **data) -> dict:
    return {"event": name, "data": data, "timestamp": {"seconds": 0, "microseconds": 0}}


@pytest.fixture
def qmp_server(tmp_path: Path):
    """A server greeting as QEMU does and answering each command; ``script`` maps a command to the messages sent
    before its reply, ``later`` are sent ``delay`` seconds after the last reply."""
    path = tmp_path / "qmp.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    plan: dict = {"script": {}, "later": [], "delay": 0.0}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as stream:
            def send(message: dict) -> None:
                stream.write(json.dumps(message).encode() + b"\n")
                stream.flush()

            send({"QMP": {"version": {}, "capabilities": []}})
            for line in stream:
                request = json.loads(line)
                for message in plan["script"].get(request["execute"], []):
                    send(message)
                send({"return": {}, "id": request["id"]})
                if request["execute"] == "device_del":
                    time.sleep(plan["delay"])
                    for message in plan["later"]:
                        send(message)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, plan
    listener.close()


def test_an_event_sent_before_the_reply_is_kept_for_wait_event(qmp_server):
    path, plan = qmp_server
    plan["script"]["device_del"] = [event("DEVICE_DELETED", path="/machine/peripheral/vol-1/virtio-backend"),
                                    event("DEVICE_DELETED", device="vol-1", path="/machine/peripheral/vol-1")]
    with QMPClient(path) as qmp:
        qmp.execute("device_del", {"id": "vol-1"})
        found = qmp.wait_event("DEVICE_DELETED", lambda data: data.get("device") == "vol-1", 5)
    assert found["data"]["device"] == "vol-1"


def test_wait_event_waits_for_an_event_that_comes_later(qmp_server):
    path, plan = qmp_server
    plan["later"], plan["delay"] = [event("DEVICE_DELETED", device="vol-2")], 0.5
    with QMPClient(path) as qmp:
        qmp.execute("device_del", {"id": "vol-2"})
        started = time.monotonic()
        found = qmp.wait_event("DEVICE_DELETED", lambda data: data.get("device") == "vol-2", 5)
    assert found is not None and 0.3 < time.monotonic() - started < 5


def test_wait_event_gives_up_after_its_timeout_and_closes_the_connection(qmp_server):
    path, plan = qmp_server
    plan["later"] = [event("DEVICE_DELETED", device="another")]
    with QMPClient(path) as qmp:
        qmp.execute("device_del", {"id": "vol-3"})
        started = time.monotonic()
        assert qmp.wait_event("DEVICE_DELETED", lambda data: data.get("device") == "vol-3", 0.5) is None
        assert 0.4 < time.monotonic() - started < 3
        with pytest.raises(QMPError, match="not open"):
            qmp.execute("query-status")
