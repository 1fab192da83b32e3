"""Fixtures of the node controller's VM tests: the test image, free ports, an isolated bridge, a last sweep.

The sweep ends any VM process a failed test left behind.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

BUILD_TEST_IMAGE = Path(__file__).resolve().parents[2] / "tools" / "testimage" / "build.sh"
BUILD_TIMEOUT = 1800


@pytest.fixture(scope="session")
def test_image() -> Path:
    """The project's test VM image (``tools/testimage/build.sh``; built on first use, then reused). It boots by
    BIOS, takes an address by DHCP, prints ``EDUCLOUD-GUEST-IP <ip>`` on its serial port, serves HTTP on port 80
    (``/cgi-bin/write`` and ``/cgi-bin/read`` keep files on its disk) and powers off on the ACPI power button."""
    try:
        result = subprocess.run(
            ["bash", str(BUILD_TEST_IMAGE)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{BUILD_TEST_IMAGE} did not finish within {BUILD_TIMEOUT} s")
    if result.returncode != 0:
        pytest.fail(f"{BUILD_TEST_IMAGE} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    image = Path(result.stdout.strip().splitlines()[-1])
    assert image.is_file(), f"{BUILD_TEST_IMAGE} printed {image}, which is not a file"
    return image


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function giving a TCP port of 127.0.0.1 nobody listens on, a different one each call (all >= 5900, as
    the kernel hands out ports from its ephemeral range)."""
    given: set[int] = set()

    def pick() -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in given and port >= 5900:
                given.add(port)
                return port

    return pick


@pytest.fixture
def processes_of() -> Callable[[str], list[int]]:
    """A function giving the pids of the live processes whose command line mentions a text (an instance id)."""

    def find(text: str) -> list[int]:
        pids = []
        for process in psutil.process_iter(["cmdline", "status"]):
            cmdline = process.info["cmdline"] or []
            if process.info["status"] != psutil.STATUS_ZOMBIE and any(text in arg for arg in cmdline):
                pids.append(process.pid)
        return pids

    return find


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=15)


@pytest.fixture
def isolated_bridge() -> Iterator[str]:
    """A new Linux bridge with a unique name and no uplink, deleted afterwards; skips unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("creating a bridge and taps needs root")
    name = f"ecbr{secrets.token_hex(4)}"
    _ip("link", "add", "name", name, "type", "bridge")
    try:
        _ip("link", "set", "dev", name, "up")
        yield name
    finally:
        _ip("link", "delete", "dev", name)


@pytest.fixture(scope="session", autouse=True)
def _no_vm_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Kill any process still running from this session's temporary directories (where every test VM lives) once
    the tests are done, so a test that failed half-way leaves no VM behind."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for process in psutil.process_iter(["cmdline"]):
        if process.pid != os.getpid() and any(base in arg for arg in process.info["cmdline"] or []):
            process.kill()
