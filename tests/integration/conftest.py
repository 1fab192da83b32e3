"""Fixtures for tests against real services: both buses, scratch queues (whose policy takes any message a trusted
host sealed for them), a consumer running in a thread."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import pytest

from luhyaapi.bus import InProcessBus, RabbitMQBus
from luhyaapi.bus_trust import ANY_HOST, Clause, QueuePolicy
from luhyaapi.messages import MESSAGE_CLASSES
from luhyaapi.queues import kind_of
from tests.apifuzz import SUMMARY
from tests.rabbitmq import scratch_vhost
from tests.services import build_test_image, free_port_block

RABBITMQ_URL = os.environ.get("EDUCLOUD_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/%2F")
# The policy of a test's scratch queue: every message sealed for it by a trusted host.
ANY_TRUSTED_HOST = QueuePolicy("a test's queue", (Clause(ANY_HOST, MESSAGE_CLASSES, lambda batch, sender, msg: ""),))


def _policy_of(queue: str, options: dict) -> dict:
    """``options`` with the scratch queues' policy unless the queue is one of eduCloud's (or a test chose one)."""
    try:
        kind_of(queue)
    except ValueError:
        return {"policy": ANY_TRUSTED_HOST} | options
    return options


@pytest.fixture(params=["in-process", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def bus(request):
    """Each contract test runs once per bus implementation."""
    bus = InProcessBus() if request.param == "in-process" else RabbitMQBus(RABBITMQ_URL, publish_retry_seconds=30)
    yield bus
    bus.close()


@pytest.fixture(params=["sqlite", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def broker_url(request, tmp_path):
    """Each Celery test runs once per transport: the embedded default's SQLite broker file, and RabbitMQ (a
    scratch virtual host of its own)."""
    if request.param == "sqlite":
        yield f"sqlite-broker://{tmp_path}/broker.sqlite3"
    else:
        with scratch_vhost() as url:
            yield url


@pytest.fixture
def queue(bus):
    name = f"test.{uuid.uuid4().hex[:12]}"
    yield name
    bus.delete(name)


class RunningConsumer:
    """A consumer in a background thread that records what its handler saw."""

    def __init__(self, bus, queue: str, handler=None, **options) -> None:
        self.received: list = []
        self.batches: list[int] = []
        self.stop = threading.Event()
        self._handler = handler
        self.error: BaseException | None = None

        def handle(messages):
            if self._handler is not None:
                self._handler(messages)
            self.batches.append(len(messages))
            self.received.extend(messages)

        def run():
            try:
                bus.consume(queue, handle, self.stop, **_policy_of(queue, options))
            except BaseException as exc:  # noqa: B036 - recorded so the test can assert on how the consumer died
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


@pytest.fixture
def no_lingering_connections():
    """A client that raised keeps its keep-alive connection in a reference cycle until the garbage collector runs:
    collect after each test, so the live server's thread for that connection ends while the server still runs (one
    that ends after the session's server stopped fails with a DatabaseError at exit). For modules that call the
    live server: ``pytest.mark.usefixtures("no_lingering_connections")``."""
    yield
    gc.collect()


@pytest.fixture
def start_consumer():
    consumers: list[RunningConsumer] = []

    def start(bus, queue, handler=None, **options) -> RunningConsumer:
        consumer = RunningConsumer(bus, queue, handler, **options)
        consumers.append(consumer)
        return consumer

    yield start
    for consumer in consumers:
        consumer.close()



def pytest_terminal_summary(terminalreporter, config):
    """The API fuzz test's counts, if it ran."""
    if SUMMARY in config.stash:
        terminalreporter.write_line(config.stash[SUMMARY])


QEMU = shutil.which("qemu-system-x86_64")
VM_PASSWORD = "Vm7pass2"


@pytest.fixture
def qemu_vm(tmp_path):
    """The project's test image booted by QEMU (TCG, a throw-away snapshot) with its VNC server on a free port,
    asking for ``VM_PASSWORD`` as a run started by the CLC does. Yields the port."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (tests/run.sh installs qemu-system-x86)")
    image = build_test_image()
    port, _ = free_port_block(1, low=6000, high=6999)
    (tmp_path / "vnc-password").write_text(VM_PASSWORD)
    process = subprocess.Popen([QEMU, "-accel", "tcg", "-m", "256", "-display", "none", "-name", "ins-00000001",
                                "-snapshot", "-drive", f"file={image},format=qcow2,if=ide",
                                "-object", f"secret,id=vncpassword,format=raw,file={tmp_path / 'vnc-password'}",
                                "-vnc", f"127.0.0.1:{port - 5900},password-secret=vncpassword",
                                "-serial", f"file:{tmp_path / 'serial.log'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "QEMU exited at once"
                assert time.monotonic() < deadline, "QEMU's VNC server did not listen"
                time.sleep(0.1)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def tgt(tmp_path_factory):
    """A tgtd of the module's own on a free loopback port (``tests/iscsi.py``), exporting files as volumes the way
    an SC does; shut down after the module. Skips where tgt is not installed."""
    from tests.iscsi import TgtServer, tgt_missing  # the SC's models: only where a test asks for a target

    reason = tgt_missing()
    if reason:
        pytest.skip(reason)
    server = TgtServer(tmp_path_factory.mktemp("tgt")).start()
    try:
        yield server
    finally:
        server.stop()
