"""What the tests of a node's instances share: a reporter that keeps what the node reports, this host as a node
with QEMU (its files under a short scratch directory, every VM it made removed afterwards), and waiting for a guest
and reading its page."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from luhyaapi.messages import InsStatus, TaskStatus


class Reporter:
    """The node's reports of the commands a test runs, in order (``report_now`` is let go)."""

    def __init__(self) -> None:
        self.messages: list = []

    def publish(self, message) -> None:
        self.messages.append(message)

    def report_now(self, last_command: str = "") -> None:
        pass

    def instances(self) -> list[InsStatus]:
        return [message for message in self.messages if isinstance(message, InsStatus)]

    def states(self) -> list[str]:
        return [message.state for message in self.instances()]

    def last_instance(self) -> InsStatus:
        return self.instances()[-1]

    def tasks(self) -> list[TaskStatus]:
        return [message for message in self.messages if isinstance(message, TaskStatus)]

    def last_task(self) -> TaskStatus:
        return self.tasks()[-1]


@contextmanager
def qemu_node(settings, prefix: str, **changes) -> Iterator[Path]:
    """This host as a node with QEMU (skips where QEMU cannot run VMs), its data under a new short directory (QMP
    socket paths are limited to 107 bytes), no lease file, ``changes`` to its settings; every VM the node made is
    destroyed afterwards and the directory removed. Yields the directory."""
    from nc.drivers.qemu import QemuDriver
    from nc.services.instances import node_driver

    availability = QemuDriver.probe()
    if not availability.available:
        pytest.skip(f"QEMU cannot run VMs here: {availability.reason}")
    print(f"QEMU: {availability.reason}")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=root, hypervisor="qemu", lease_file=None, **changes)
    try:
        yield root
    finally:
        driver = node_driver()
        for insid in driver.list_vms():
            driver.destroy(insid)
        shutil.rmtree(root, ignore_errors=True)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` every half second until it is true; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def guest_get(port: int, path: str, **params) -> requests.Response | None:
    """GET a guest's page through its forwarded port; None while it does not answer."""
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", params=params, timeout=10)
    except requests.RequestException:
        return None


def serves(port: int) -> bool:
    """Whether the guest's page answers (the test image serves it once it is up)."""
    response = guest_get(port, "/")
    return response is not None and response.status_code == 200
