"""Benchmark: what the in-browser console's proxy costs (the CLC's websocket-to-VNC relay, clc.services.console_proxy).

A console server on loopback stands in for a VM's VNC server (it greets with ``RFB 003.008`` and then either echoes
or streams a framebuffer's worth of bytes); the real proxy runs in this process as the CLC runs it (its own thread
and asyncio loop, tokens issued and redeemed by clc.services.portal against a scratch SQLite database). Figures:

1. session opening: token redeemed + console connected + banner received, p50/p99 over ``--sessions`` sessions
   (the rule is asked in the handshake, so this includes the database reads); and the same to a console that asks
   for the run's password, up to the browser's "security OK" (the proxy logs in with VNC authentication first, then
   greets the browser), against the plain console up to the same point;
2. keystroke round trip: a 10-byte message echoed by the console, through the proxy vs straight TCP, p50/p99;
3. screen throughput: ``--megabytes`` streamed from the console to the client, through the proxy vs straight TCP.

Run: ``.venv/bin/python bench/console_proxy.py [--sessions 50 --echoes 2000 --megabytes 256]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["EDUCLOUD_HOST_DATA_DIR"] = tempfile.mkdtemp(prefix="educloud-bench-console-")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from clc.services import authz, portal, rfb  # noqa: E402
from clc.services.console_proxy import ConsoleProxy  # noqa: E402
from luhyadb.models import Account, Image, Instance, OwnerGroup, OwnerGroupPermission, VMType  # noqa: E402

BANNER = b"RFB 003.008\n"
CHUNK = 64 * 1024


class Console:
    """Greets like a VNC server, then echoes; a client that sends ``STREAM <n>`` gets n bytes back instead. With a
    ``password`` it first asks for it (VNC authentication, RFB 3.8) as a run's QEMU console does; with "" it opens
    with no authentication (RFB 3.8) as a console without a password does."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        block = b"\x5a" * CHUNK
        with connection:
            connection.sendall(BANNER)
            if self.password is not None and not self._authenticated(connection):
                return
            while data := connection.recv(65536):
                if data.startswith(b"STREAM "):
                    left = int(data.split()[1])
                    while left > 0:
                        connection.sendall(block[:min(left, CHUNK)])
                        left -= CHUNK
                else:
                    connection.sendall(data)


    def _authenticated(self, connection: socket.socket) -> bool:
        connection.recv(12, socket.MSG_WAITALL)
        connection.sendall(bytes([1, rfb.SECURITY_VNC if self.password else rfb.SECURITY_NONE]))
        connection.recv(1)
        if not self.password:
            connection.sendall(struct.pack(">I", 0))
            return True
        challenge = os.urandom(16)
        connection.sendall(challenge)
        good = connection.recv(16, socket.MSG_WAITALL) == rfb.vnc_auth_response(self.password, challenge)
        connection.sendall(struct.pack(">I", 0 if good else 1))
        return good


def scratch_desktop(console_port: int):
    call_command("migrate", verbosity=0)
    group = OwnerGroup.objects.create(name="school", path="edu")
    OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
    image = Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=group, current_version=1)
    vm_type = VMType.objects.get_or_create(name="tiny", defaults={"cpus": 1, "memory_mb": 256, "disk_gb": 1})[0]
    user = get_user_model().objects.create_user("alice")
    Account.objects.create(user=user, owner_group=group, role="user")
    desktop = Instance.objects.create(instance_id="ins-00000001", name="Maths desktop", kind="rvd", image=image,
                                      vm_type=vm_type, owner_group=group, assigned_to=user, state="running", runs=1,
                                      node="nc-1", console_url=f"vnc://127.0.0.1:{console_port}")
    return authz.actor_for(user), desktop


def openings(proxy: ConsoleProxy, actor, desktop, sessions: int, handshake: bool) -> list[float]:
    """Seconds from the websocket's opening to the banner, or with ``handshake`` to the RFB security result."""
    times = []
    for _ in range(sessions):
        token = portal.issue_console_token(actor, desktop)
        started = time.perf_counter()
        client = Through(f"ws://127.0.0.1:{proxy.port}/console/{token}")
        client.read(len(BANNER))
        if handshake:
            client.send(BANNER)
            client.read(client.read(1)[0])
            client.send(bytes([rfb.SECURITY_NONE]))
            assert client.read(4) == b"\0\0\0\0"
        times.append(time.perf_counter() - started)
        client.close()
    return times


class Through:
    """The client side through the proxy: a websocket whose frames are joined into one byte stream."""

    def __init__(self, url: str) -> None:
        self.stack = contextlib.ExitStack()
        self.websocket = self.stack.enter_context(connect(url, compression=None, max_size=None))
        self.buffer = bytearray()

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self.websocket.recv()
        data, self.buffer = bytes(self.buffer[:count]), self.buffer[count:]
        return data

    def drain(self, count: int) -> None:
        got = len(self.buffer)
        self.buffer.clear()
        while got < count:
            got += len(self.websocket.recv())

    def send(self, data: bytes) -> None:
        self.websocket.send(data)

    def close(self) -> None:
        self.stack.close()


class Direct:
    """The same over plain TCP, the way a native VNC client talks to the node."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            data += self.socket.recv(count - len(data))
        return data

    def drain(self, count: int) -> None:
        got = 0
        while got < count:
            got += len(self.socket.recv(1 << 20))

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def close(self) -> None:
        self.socket.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def round_trips(client, echoes: int) -> list[float]:
    times = []
    for _ in range(echoes):
        started = time.perf_counter()
        client.send(b"key-event!")
        client.read(10)
        times.append(time.perf_counter() - started)
    return times


def stream(client, megabytes: int) -> float:
    size = megabytes * 1024 * 1024
    started = time.perf_counter()
    client.send(f"STREAM {size}".encode())
    client.drain(size)
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--echoes", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=256)
    options = parser.parse_args()

    console = Console()
    actor, desktop = scratch_desktop(console.port)
    proxy = ConsoleProxy("127.0.0.1", 0)
    stop = threading.Event()
    threading.Thread(target=proxy.run, args=(stop,), daemon=True).start()
    proxy.ready.wait(10)

    def through() -> Through:
        client = Through(f"ws://127.0.0.1:{proxy.port}/console/{portal.issue_console_token(actor, desktop)}")
        assert client.read(len(BANNER)) == BANNER
        return client

    opened = openings(proxy, actor, desktop, options.sessions, handshake=False)
    print(f"session opening (token checked, console connected, banner in): p50 {percentile(opened, .5) * 1e3:.1f} "
          f"ms, p99 {percentile(opened, .99) * 1e3:.1f} ms over {options.sessions}")
    secured = {}
    for password in ("", "Pw4run99"):
        Instance.objects.filter(pk=desktop.pk).update(console_url=f"vnc://127.0.0.1:{Console(password).port}",
                                                      console_password=password)
        desktop.refresh_from_db()
        secured[password] = openings(proxy, actor, desktop, options.sessions, handshake=True)
    Instance.objects.filter(pk=desktop.pk).update(console_url=f"vnc://127.0.0.1:{console.port}", console_password="")
    desktop.refresh_from_db()
    plain, locked = percentile(secured[""], .5), percentile(secured["Pw4run99"], .5)
    print(f"session opening to the browser's security OK: console without a password (handshake relayed) p50 "
          f"{plain * 1e3:.1f} ms / p99 {percentile(secured[''], .99) * 1e3:.1f} ms; with the run's password (the "
          f"proxy logs in, then greets the browser) p50 {locked * 1e3:.1f} ms / p99 "
          f"{percentile(secured['Pw4run99'], .99) * 1e3:.1f} ms (ratio {locked / plain:.2f})")

    direct = Direct(console.port)
    direct.read(len(BANNER))
    proxied = through()
    for client in (direct, proxied):
        round_trips(client, 100)  # warm up
    direct_rtt, proxied_rtt = round_trips(direct, options.echoes), round_trips(proxied, options.echoes)
    print(f"keystroke round trip: direct p50 {statistics.median(direct_rtt) * 1e6:.0f} us / p99 "
          f"{percentile(direct_rtt, .99) * 1e6:.0f} us; proxy p50 {statistics.median(proxied_rtt) * 1e6:.0f} us / "
          f"p99 {percentile(proxied_rtt, .99) * 1e6:.0f} us; added p50 "
          f"{(statistics.median(proxied_rtt) - statistics.median(direct_rtt)) * 1e6:.0f} us")
    direct_mbps, proxied_mbps = stream(direct, options.megabytes), stream(proxied, options.megabytes)
    print(f"screen throughput ({options.megabytes} MiB): direct {direct_mbps:.0f} MB/s, proxy {proxied_mbps:.0f} MB/s "
          f"(ratio {proxied_mbps / direct_mbps:.2f}); a 1920x1080 32-bit full-screen update is 8.3 MB, so the proxy "
          f"carries {proxied_mbps / 8.3:.0f} of them per second")
    direct.close()
    proxied.close()
    stop.set()


if __name__ == "__main__":
    main()
