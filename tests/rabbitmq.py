"""Helpers for tests that manage the real RabbitMQ broker: scratch vhosts and application restarts."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from contextlib import contextmanager

RABBITMQCTL = "rabbitmqctl"


def _ctl(*args: str, timeout: float = 60) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=timeout)


@contextmanager
def scratch_vhost(prefix: str = "educloud-test"):
    """A vhost of its own, so a test's queues meet no other consumer; removed afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        _ctl("delete_vhost", name)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop_broker() -> None:
    """Stop the RabbitMQ application (every connection drops; durable queues and persistent messages stay)."""
    _ctl("stop_app")


def start_broker(timeout: float = 60) -> None:
    _ctl("start_app", timeout=timeout)
    deadline = time.monotonic() + timeout
    while not _port_open(5672):
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ did not come back on 127.0.0.1:5672")
        time.sleep(0.2)
