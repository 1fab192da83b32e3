"""Network namespaces for tests: namespaces, veth pairs and bridges with unique short names, commands and servers run
inside them, and a cleanup that always runs (every process left in a namespace is killed, then the namespace and the
interfaces in it are deleted), so a test never touches the host's own network stack.

    with Network() as net:
        cc, nc = net.namespace("cc"), net.namespace("nc")
        net.veth(cc, "lan0", nc, "lan0", a_cidr="10.20.0.1/24", b_cidr="10.20.0.2/24")
        server = net.popen(nc, ["python3", "-m", "http.server", "80"])
        run_in(cc, ["curl", "http://10.20.0.2/"])

Every interface is created from inside a namespace, never in the host's one. Needs root and iproute2;
``missing_requirements`` says why a test cannot run here.

A service that listens only on the host's loopback (RabbitMQ) is reached from inside a namespace through a Unix
socket, which every network namespace can open: ``Network.forward`` runs this file as a small forwarder (``python
tests/netns.py LISTEN CONNECT``, each end ``tcp:HOST:PORT`` or ``unix:PATH``), one in the host's namespace from the
socket to the service, one in each namespace from its own loopback to the socket. ``NamespaceThread`` runs Python
calls (an API client, a socket) on a thread that entered a namespace, so the test's own traffic stays inside too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

# Every namespace made here is named ``ect-<role>-<hex>``, so a leftover one (from a killed test run) is recognisable.
PREFIX = "ect"
DEFAULT_TIMEOUT = 30.0
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def missing_requirements(*binaries: str) -> str | None:
    """Why namespace tests cannot run on this machine (not root, or a binary not installed), or None if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    missing = [binary for binary in ("ip", *binaries) if shutil.which(binary) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (tests/run.sh installs them)"
    return None


def unique_name(prefix: str, length: int = 15) -> str:
    """``prefix`` plus random hex, at most ``length`` characters (15 fits an interface name)."""
    name = f"{prefix}{uuid.uuid4().hex}"[:length]
    if len(name) < len(prefix) + 4:
        raise ValueError(f"{prefix!r} leaves too little room for a unique suffix in {length} characters")
    return name


@dataclass(frozen=True)
class Namespace:
    """A network namespace, by name."""

    name: str

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_in(self, argv, **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """A process in this namespace that the caller must end; prefer Network.popen, which ends it for you."""
        return popen_in(self, argv, **kwargs)

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["ip", *args])

    def add_address(self, interface: str, cidr: str) -> None:
        self.ip("addr", "add", cidr, "dev", interface)

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace kernel setting such as ``net.ipv4.ip_forward``."""
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def pids(self) -> list[int]:
        """The processes whose network namespace this is (zombies included)."""
        listing = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(pid) for pid in listing.stdout.split()]

    def __str__(self) -> str:
        return self.name


class CommandFailed(subprocess.CalledProcessError):
    """A command run in a namespace failed; its message ends with the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {(self.stderr or '').strip()}"


def _netns_argv(namespace: Namespace | str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", str(namespace), *argv]


def run_in(namespace: Namespace | str, argv: Sequence[str], *, check: bool = True, timeout: float = DEFAULT_TIMEOUT,
           **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``namespace`` and wait for it; text output captured. Raises CommandFailed (a
    CalledProcessError whose message ends with the command's stderr) on failure when ``check``."""
    result = subprocess.run(_netns_argv(namespace, argv), capture_output=True, text=True, timeout=timeout,
                            check=False, **kwargs)
    if check and result.returncode != 0:
        raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)
    return result


def popen_in(namespace: Namespace | str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start ``argv`` inside ``namespace``. `ip netns exec` replaces itself with the command, so the Popen's pid is
    the command's own (signals sent to it reach the command)."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(_netns_argv(namespace, argv), **kwargs)


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "the condition", interval: float = 0.05) -> T:
    """Call ``check`` until it returns something true and return that; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Network:
    """Namespaces and links made for one test, all removed by ``close`` (or leaving the ``with`` block), even when
    the test failed half-way: tracked processes are ended first, then every process still inside a namespace
    (daemons that forked away included), then the namespaces, which takes their interfaces with them."""

    def __init__(self) -> None:
        self._namespaces: list[Namespace] = []
        self._processes: list[subprocess.Popen] = []

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def namespace(self, role: str) -> Namespace:
        """A new namespace named after ``role`` (letters and digits, short) with its loopback up."""
        if not role.isalnum() or len(role) > 8:
            raise ValueError(f"role {role!r} should be a short alphanumeric word")
        namespace = Namespace(unique_name(f"{PREFIX}-{role}-", length=len(role) + 13))
        subprocess.run(["ip", "netns", "add", namespace.name], check=True, capture_output=True)
        self._namespaces.append(namespace)
        namespace.ip("link", "set", "lo", "up")
        return namespace

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str, *, a_mac: str | None = None,
             b_mac: str | None = None, a_cidr: str | None = None, b_cidr: str | None = None) -> None:
        """A veth pair from ``a_if`` in ``a`` to ``b_if`` in ``b``, both up, with the given MACs and addresses. The
        pair is created inside ``a`` and its peer moved straight into ``b``."""
        argv = ["link", "add", a_if, *(["address", a_mac] if a_mac else []), "type", "veth",
                "peer", "name", b_if, *(["address", b_mac] if b_mac else []), "netns", b.name]
        a.ip(*argv)
        for namespace, interface, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
            if cidr:
                namespace.add_address(interface, cidr)
            namespace.ip("link", "set", interface, "up")

    def bridge(self, namespace: Namespace, name: str, cidr: str | None = None, *, mac: str | None = None) -> str:
        """A bridge ``name`` in ``namespace``, up, with an optional address (a switch, or a host's LAN side). Give a
        host's bridge its ``mac``: without one, Linux gives a bridge the lowest MAC of its ports, and it changes as
        ports (VM taps) come and go, leaving the host's neighbours with a stale ARP entry for up to half a minute."""
        namespace.ip("link", "add", "name", name, *(["address", mac] if mac else []), "type", "bridge")
        if cidr:
            namespace.add_address(name, cidr)
        namespace.ip("link", "set", name, "up")
        return name

    def plug(self, switch: Namespace, bridge: str, host: Namespace, host_if: str, *, mac: str | None = None,
             cidr: str | None = None) -> str:
        """Connect ``host`` to ``bridge`` in ``switch`` with a veth (``host_if`` on the host's side); returns the
        name of the bridge port."""
        port = unique_name("p")
        self.veth(switch, port, host, host_if, b_mac=mac, b_cidr=cidr)
        switch.ip("link", "set", port, "master", bridge)
        return port

    def popen(self, namespace: Namespace, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside ``namespace``; it is ended (SIGTERM, then SIGKILL) by ``close``."""
        process = popen_in(namespace, argv, **kwargs)
        self._processes.append(process)
        return process

    def forward(self, namespace: Namespace | None, listen: str, connect: str) -> subprocess.Popen:
        """A forwarder (this file run as a script) in ``namespace`` (None: the host's own) that accepts on ``listen``
        and relays each connection to ``connect`` (``tcp:HOST:PORT`` or ``unix:PATH``); returns once it listens.
        It is ended by ``close``."""
        argv = [sys.executable, os.path.abspath(__file__), listen, connect]
        options = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "text": True}
        process = popen_in(namespace, argv, **options) if namespace else subprocess.Popen(argv, **options)
        self._processes.append(process)
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the forwarder {listen} -> {connect} did not start (exit {process.wait(5)})")
        return process

    def close(self) -> None:
        errors = []
        for process in reversed(self._processes):
            _end(process)
        self._processes.clear()
        for namespace in reversed(self._namespaces):
            try:
                _empty(namespace)
                subprocess.run(["ip", "netns", "del", namespace.name], check=True, capture_output=True, text=True)
            except (subprocess.CalledProcessError, AssertionError) as error:
                errors.append(f"{namespace.name}: {getattr(error, 'stderr', None) or error}")
        self._namespaces.clear()
        if errors:
            raise RuntimeError(f"could not remove test namespaces: {'; '.join(errors)}")


class NamespaceThread:
    """One thread that entered ``namespace`` (network only: files, processes and memory stay shared), for calls
    whose sockets must be opened there: ``thread.call(client.get, "/path")``. Close it with ``close``."""

    def __init__(self, namespace: Namespace | str) -> None:
        self.namespace = str(namespace)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{self.namespace}",
                                            initializer=_enter, initargs=(self.namespace,))
        self._executor.submit(lambda: None).result()  # the namespace is entered, or the error raised here

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` run inside the namespace; its result, or its exception raised here."""
        return self.submit(function, *args, **kwargs).result()

    def submit(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Start ``function(*args, **kwargs)`` inside the namespace without waiting for it (a server's loop); its
        Future. The thread is one: calls made meanwhile wait until it returns."""
        return self._executor.submit(function, *args, **kwargs)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _enter(namespace: str) -> None:
    """Move the calling thread (only it: a namespace belongs to a thread) into ``namespace``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into {namespace}: {os.strerror(error)}")
    finally:
        os.close(fd)


def _end(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _empty(namespace: Namespace) -> None:
    """Kill every process still running inside ``namespace`` (all of them were started by the test)."""
    pids = [pid for pid in namespace.pids() if _running(pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not any(_running(pid) for pid in pids), timeout=5,
               what=f"the processes left in {namespace.name} to exit")


async def _open(endpoint: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, where = endpoint.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    host, _, port = where.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the sender is done, then pass its end of stream on (the other direction may still talk)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:  # ConnectionError, or ENOTCONN from write_eof when the other side is already gone
        writer.close()  # a reset on one side ends the connection on the other too


async def _forward(listen: str, connect: str) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await _open(connect)
        except OSError:
            writer.close()  # the client sees the refusal it would have seen connecting directly
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        for end in (writer, upstream_writer):
            end.close()

    kind, _, where = listen.partition(":")
    if kind == "unix":
        server = await asyncio.start_unix_server(relay, where)
    else:
        host, _, port = where.rpartition(":")
        server = await asyncio.start_server(relay, host, int(port), reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # The forwarder of Network.forward: python tests/netns.py LISTEN CONNECT (tcp:HOST:PORT or unix:PATH).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(_forward(sys.argv[1], sys.argv[2]))
