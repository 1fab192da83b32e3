"""RabbitMQ for tests: scratch vhosts on the machine's broker, and brokers of a test's own for tests that stop one.

The machine's broker (127.0.0.1:5672) serves every test run on the machine at once, so a test never stops it: a test
that restarts or crashes a broker starts its own (``private_broker``: its own node name, ports, data, pid file and
Erlang cookie, all under a temporary directory) and stops, kills and starts that one.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RABBITMQCTL = "rabbitmqctl"
# The server's own scripts, not Debian's wrappers in /usr/sbin (they switch to the rabbitmq user and the machine
# broker's cookie and configuration).
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def _ctl(*args: str, timeout: float = 60) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=timeout)


@contextmanager
def scratch_vhost(prefix: str = "educloud-test"):
    """A vhost of its own on the machine's broker, so a test's queues meet no other consumer; removed afterwards."""
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


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range: while the broker is down, the port must stay its
    own, and in that range any outgoing connection may take it as its local port (a client reconnecting to the
    stopped broker even connects to itself, through TCP's simultaneous open, and holds the port)."""
    ephemeral = _ephemeral_ports()
    while True:
        port = random.randrange(10000, 65535)
        if port in ephemeral:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class PrivateBroker:
    """A RabbitMQ server of one test, on loopback ports of its own, that the test may stop, crash and start: ``stop``
    halts the whole server in order (every connection drops), ``kill9`` crashes it (SIGKILL to its Erlang VM: nothing
    flushed, nothing closed), ``start`` boots it again on the same data (durable queues and persistent messages stay),
    as a broker's machine restarting would. ``url`` is its default vhost, as guest."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.node = f"educloud-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        (directory / "rabbitmq.conf").write_text("")
        (directory / "rabbitmq-env.conf").write_text("")
        (directory / "enabled_plugins").write_text("[].\n")
        self.pid_file = directory / "beam.pid"
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"), "HOME": str(directory),
                    "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                    "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(_free_port()),
                    "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"), "RABBITMQ_LOG_BASE": str(directory / "log"),
                    "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
                    "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(self.pid_file),
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                    "ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.process: subprocess.Popen | None = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 90) -> None:
        """Boot the server and wait until it takes AMQP connections."""
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.halt()
                raise RuntimeError(f"the test's RabbitMQ {self.node} did not start on 127.0.0.1:{self.port}:\n"
                                   f"{(self.directory / 'server.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        """Halt the server (``rabbitmqctl stop``) and wait until it is gone."""
        if not self.running():
            return
        subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, "stop"], env=self.env,
                       capture_output=True, timeout=timeout, check=False)
        self.halt(timeout)

    def beam_pid(self) -> int:
        """The process id of this server's Erlang VM (``beam.smp``), from the pid file the server wrote at boot;
        RuntimeError if that process is not this node's VM."""
        pid = int(self.pid_file.read_text().strip())
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except FileNotFoundError as exc:
            raise RuntimeError(f"the VM of {self.node} (pid {pid}) is not running") from exc
        # The node's name reaches the VM in its environment, not on its command line.
        if not program.endswith(b"beam.smp") or f"RABBITMQ_NODENAME={self.node}".encode() not in environment:
            raise RuntimeError(f"pid {pid} of {self.pid_file} is not the Erlang VM of {self.node}: {program!r}")
        return pid

    def kill9(self, timeout: float = 30) -> None:
        """Crash the server: SIGKILL to its Erlang VM (no shutdown, no flush), then wait until the VM and the
        server's script are gone and the port is closed. ``start`` boots it again on the same data."""
        pid = self.beam_pid()
        os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=timeout)  # the script waits on the VM, so it ends once the VM is gone
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() or _port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.node} (pid {pid}) still there {timeout}s after SIGKILL")
            time.sleep(0.05)

    def halt(self, timeout: float = 30) -> None:
        """End the server's processes if they are still there (SIGTERM, then SIGKILL)."""
        if not self.running():
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)


@contextmanager
def private_broker() -> Iterator[PrivateBroker]:
    """A running RabbitMQ server of the caller's own (see ``PrivateBroker``); halted and removed afterwards."""
    if not (RABBITMQ_BIN / "rabbitmq-server").is_file():
        raise RuntimeError(f"{RABBITMQ_BIN / 'rabbitmq-server'} is missing; tests/run.sh installs rabbitmq-server")
    directory = Path(tempfile.mkdtemp(prefix="educloud-rabbitmq-"))
    broker = PrivateBroker(directory)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
