"""The console proxy for real: a websocket client (as noVNC is) through the proxy's server to a TCP console the test
runs (it greets like a VNC server and echoes) or to a QEMU VM's own VNC server: bytes go both ways in binary frames,
only a fresh token of a person the rule allows opens a session, the desktop is marked in use while a session is
open, and a session ends when the console, the desktop or the rule says so. The CLC runs the proxy and the idle stop
as daemons."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from clc.services import authz, portal, rfb
from clc.services.console_proxy import ConsoleProxy
from daemons.roles import build_workers
from luhyaapi.config import load_config
from luhyadb.models import Account, Image, Instance, OwnerGroup, OwnerGroupPermission, VMType
from tests.integration.conftest import VM_PASSWORD

# The proxy reads the records from its own threads, so they must be committed.
pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

BANNER = b"RFB 003.008\n"
ACTIVITY_SECONDS = 0.2


class EchoConsole:
    """A TCP server that greets each connection like a VNC server (``RFB 003.008``) and then echoes what it gets."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # closed by the test
            self.connections.append(connection)
            threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    @staticmethod
    def _echo(connection: socket.socket) -> None:
        try:
            connection.sendall(BANNER)
            while data := connection.recv(65536):
                connection.sendall(data)
        except OSError:
            return  # the proxy or the test hung up

    def hang_up(self) -> None:
        for connection in self.connections:
            if connection.fileno() != -1:
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()

    def close(self) -> None:
        self.server.close()
        self.hang_up()


@pytest.fixture
def console():
    server = EchoConsole()
    yield server
    server.close()


@contextlib.contextmanager
def running_proxy(activity_seconds: float):
    cache.clear()
    proxy = ConsoleProxy("127.0.0.1", 0, activity_seconds=activity_seconds)
    stop = threading.Event()
    thread = threading.Thread(target=proxy.run, args=(stop,), daemon=True)
    thread.start()
    assert proxy.ready.wait(10), "the console proxy did not start listening"
    try:
        yield proxy
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def proxy():
    with running_proxy(ACTIVITY_SECONDS) as proxy:
        yield proxy


@pytest.fixture
def slow_keeping_proxy():
    """A proxy whose periodic mark never comes during a test, so only opening and closing mark the desktop."""
    with running_proxy(3600) as proxy:
        yield proxy


@pytest.fixture
def school():
    group = OwnerGroup.objects.create(name="school", path="edu")
    OwnerGroupPermission.objects.create(owner_group=group, resource_type="instance", read=True, execute=True)
    image = Image.objects.create(image_id="img-0000abcd", name="Desk", owner_group=group, current_version=1)
    return {"group": group, "image": image, "tiny": VMType.objects.create(name="tiny", cpus=1, memory_mb=256,
                                                                          disk_gb=1)}


def student(school, username: str):
    user = get_user_model().objects.create_user(username)
    Account.objects.create(user=user, owner_group=school["group"], role="user")
    return user


@pytest.fixture
def alice(school):
    return student(school, "alice")


def running_desktop(school, owner, console_port: int, **changes) -> Instance:
    values = {"instance_id": "ins-00000001", "name": "Maths desktop", "kind": "rvd", "image": school["image"],
              "vm_type": school["tiny"], "owner_group": school["group"], "assigned_to": owner, "state": "running",
              "runs": 1, "node": "nc-1", "console_url": f"vnc://127.0.0.1:{console_port}"} | changes
    return Instance.objects.create(**values)


def token_for(user, instance: Instance) -> str:
    return portal.issue_console_token(authz.actor_for(user), instance)


def url(proxy: ConsoleProxy, token: str) -> str:
    return f"ws://127.0.0.1:{proxy.port}/console/{token}"


class Received:
    """The console's byte stream as the websocket brings it, however the proxy framed it."""

    def __init__(self, websocket) -> None:
        self.websocket = websocket
        self.buffer = b""

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            message = self.websocket.recv(timeout=10)
            assert isinstance(message, bytes), "a console's bytes come in binary frames"
            self.buffer += message
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def receive(websocket, count: int) -> bytes:
    return Received(websocket).read(count)


def refused(address: str) -> int:
    with pytest.raises(InvalidStatus) as error:
        connect(address, open_timeout=10)
    return error.value.response.status_code


def test_the_proxy_relays_the_consoles_bytes_both_ways_in_binary_frames(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    with connect(url(proxy, token_for(alice, instance)), subprotocols=["binary"], open_timeout=10) as websocket:
        assert websocket.subprotocol == "binary"
        assert receive(websocket, len(BANNER)) == BANNER
        websocket.send(BANNER)
        assert receive(websocket, len(BANNER)) == BANNER
        screen = bytes(range(256)) * 1024  # larger than one relay read: arrives in several frames, in order
        websocket.send(screen)
        assert receive(websocket, len(screen)) == screen
    assert len(console.connections) == 1


def test_a_client_that_asks_for_no_subprotocol_is_relayed_too(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        assert websocket.subprotocol is None
        assert receive(websocket, len(BANNER)) == BANNER


def test_a_token_opens_one_session_only(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    token = token_for(alice, instance)
    with connect(url(proxy, token), open_timeout=10) as websocket:
        assert receive(websocket, len(BANNER)) == BANNER
    assert refused(url(proxy, token)) == 403
    assert len(console.connections) == 1


def test_bad_and_expired_tokens_and_other_paths_are_refused_before_any_console_connection(
        proxy, console, school, alice, monkeypatch):
    instance = running_desktop(school, alice, console.port)
    real_time = time.time

    class Earlier:
        @staticmethod
        def time() -> float:
            return real_time() - portal.CONSOLE_TOKEN_SECONDS - 5

    with monkeypatch.context() as patch:
        patch.setattr(signing, "time", Earlier)
        expired = token_for(alice, instance)
    good = token_for(alice, instance)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert refused(url(proxy, expired)) == 403
    assert refused(url(proxy, forged)) == 403
    assert refused(url(proxy, "not-a-token")) == 403
    assert refused(f"ws://127.0.0.1:{proxy.port}/console/") == 404
    assert refused(f"ws://127.0.0.1:{proxy.port}/other/{good}") == 404
    assert console.connections == []


def test_a_desktop_given_to_someone_else_or_stopped_is_refused(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    given_away = token_for(alice, instance)
    stopped = token_for(alice, instance)
    Instance.objects.filter(pk=instance.pk).update(assigned_to=student(school, "bob"))
    assert refused(url(proxy, given_away)) == 403
    Instance.objects.filter(pk=instance.pk).update(assigned_to=alice, state="stopping")
    assert refused(url(proxy, stopped)) == 403
    assert console.connections == []


def test_an_open_session_keeps_the_desktop_active(proxy, console, school, alice):
    long_ago = timezone.now() - timedelta(hours=2)
    instance = running_desktop(school, alice, console.port, last_activity=long_ago)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        receive(websocket, len(BANNER))
        Instance.objects.filter(pk=instance.pk).update(last_activity=long_ago)
        time.sleep(ACTIVITY_SECONDS * 4)
        assert timezone.now() - Instance.objects.get().last_activity < timedelta(seconds=5)
        assert portal.stop_idle_desktops(60) == []


def test_closing_a_session_marks_the_desktop_active(slow_keeping_proxy, console, school, alice):
    long_ago = timezone.now() - timedelta(hours=2)
    instance = running_desktop(school, alice, console.port, last_activity=long_ago)
    with connect(url(slow_keeping_proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        receive(websocket, len(BANNER))
        # Reset inside the session: the proxy's mark on closing may land before the client's close returns.
        Instance.objects.filter(pk=instance.pk).update(last_activity=long_ago)
    deadline = time.monotonic() + 5
    while Instance.objects.get().last_activity == long_ago and time.monotonic() < deadline:
        time.sleep(0.05)
    assert timezone.now() - Instance.objects.get().last_activity < timedelta(seconds=10)


def test_a_session_ends_when_the_desktop_stops(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        receive(websocket, len(BANNER))
        Instance.objects.filter(pk=instance.pk).update(state="stopping")
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=10)
    assert closed.value.rcvd.code == 1008 and "not running" in closed.value.rcvd.reason


def test_the_browser_side_closes_when_the_console_hangs_up(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        receive(websocket, len(BANNER))
        console.hang_up()
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=10)
    deadline = time.monotonic() + 5
    while proxy.open_sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.open_sessions == 0


def test_an_unreachable_console_closes_the_session_with_a_reason(proxy, school, alice):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    instance = running_desktop(school, alice, port)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=15)
    assert closed.value.rcvd.code == 1011 and "does not answer" in closed.value.rcvd.reason


def test_a_text_frame_ends_the_session(proxy, console, school, alice):
    instance = running_desktop(school, alice, console.port)
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        receive(websocket, len(BANNER))
        websocket.send("RFB 003.008\n")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                websocket.recv(timeout=10)
    assert closed.value.rcvd.code == 1003


def _config(tmp_path, **environ):
    return load_config({"EDUCLOUD_HOST_NAME": "clc-1", "EDUCLOUD_ROLES": "clc", "EDUCLOUD_HOST_DATA_DIR":
                        str(tmp_path), "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent",
                        "EDUCLOUD_HOST_LISTEN": "10.0.0.1:8000", **environ})


def test_the_clc_runs_the_console_proxy_as_a_daemon_and_the_idle_stop_as_a_job_of_its_worker(tmp_path):
    config = _config(tmp_path)
    assert (config.console_port, config.console_listen, config.idle_stop_minutes) == (6080, "10.0.0.1", 60)
    names = [worker.name for worker in build_workers(config, threading.Event())[0]]
    assert {"clc-console-proxy", "clc-beat", "celery-worker"} <= set(names)
    config = _config(tmp_path, EDUCLOUD_CLC_CONSOLE_PORT="0", EDUCLOUD_CLC_IDLE_STOP_MINUTES="0",
                     EDUCLOUD_CLC_CONSOLE_LISTEN="127.0.0.1")
    names = [worker.name for worker in build_workers(config, threading.Event())[0]]
    assert "clc-console-proxy" not in names


@pytest.mark.parametrize("key, value", [("CONSOLE_PORT", "70000"), ("CONSOLE_PORT", "x"), ("CONSOLE_LISTEN", "here"),
                                        ("IDLE_STOP_MINUTES", "-1"), ("IDLE_STOP_MINUTES", "0.5")])
def test_wrong_console_settings_are_named(tmp_path, key, value):
    from luhyaapi.config import ConfigError

    with pytest.raises(ConfigError, match=f"clc.{key.lower()}"):
        _config(tmp_path, **{f"EDUCLOUD_CLC_{key}": value})


# A real VM's console through the proxy


def test_a_qemu_vms_console_asks_for_its_password_when_reached_directly(qemu_vm):
    with socket.create_connection(("127.0.0.1", qemu_vm), timeout=10) as direct:
        assert direct.recv(12) == BANNER
        direct.sendall(BANNER)
        count = direct.recv(1)[0]
        assert direct.recv(count) == bytes([2]), "only VNC authentication: nobody gets in without the password"


def test_the_proxy_logs_in_to_a_qemu_vms_console_and_the_browser_needs_no_password(proxy, qemu_vm, school, alice):
    instance = running_desktop(school, alice, qemu_vm, console_password=VM_PASSWORD)
    with connect(url(proxy, token_for(alice, instance)), subprotocols=["binary"], open_timeout=10) as websocket:
        stream = Received(websocket)
        assert stream.read(12) == BANNER
        websocket.send(BANNER)
        types = stream.read(stream.read(1)[0])
        assert types == bytes([1]), "the browser is offered no authentication: the token admitted it"
        websocket.send(bytes([1]))
        assert stream.read(4) == b"\0\0\0\0"  # SecurityResult: OK
        websocket.send(bytes([1]))  # ClientInit: shared
        width, height = struct.unpack(">HH", stream.read(4))
        stream.read(16)  # pixel format
        (length,) = struct.unpack(">I", stream.read(4))
        name = stream.read(length).decode()
    assert width > 0 and height > 0
    assert name == "QEMU (ins-00000001)"  # the VM this desktop is, by its -name


def test_a_console_refusing_the_password_ends_the_session_with_the_reason(proxy, qemu_vm, school, alice):
    instance = running_desktop(school, alice, qemu_vm, console_password="wrong123")
    with connect(url(proxy, token_for(alice, instance)), open_timeout=10) as websocket:
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=15)
    assert closed.value.rcvd.code == 1011 and "refused the password" in closed.value.rcvd.reason


# Watching a desktop (the teacher's class console): no input reaches it


class RecordingConsole:
    """A VNC server that asks for ``VM_PASSWORD`` (RFB 3.8, VNC authentication) and then records what it gets."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self.server.accept()
        except OSError:
            return
        with connection:
            connection.sendall(BANNER)
            connection.recv(12)
            connection.sendall(bytes([1, rfb.SECURITY_VNC]))
            connection.recv(1)
            challenge = bytes(range(16))
            connection.sendall(challenge)
            ok = connection.recv(16) == rfb.vnc_auth_response(VM_PASSWORD, challenge)
            connection.sendall(struct.pack(">I", 0 if ok else 1))
            while data := connection.recv(65536):
                self.received += data

    def close(self) -> None:
        self.server.close()


def open_as_viewer(websocket, client_init: bytes) -> None:
    """The browser's side of the opening with the proxy (which asks for no password), then its ClientInit."""
    stream = Received(websocket)
    assert stream.read(12) == BANNER
    websocket.send(BANNER)
    assert stream.read(2) == bytes([1, rfb.SECURITY_NONE])
    websocket.send(bytes([rfb.SECURITY_NONE]))
    assert stream.read(4) == struct.pack(">I", 0)
    websocket.send(client_init)


def test_a_teacher_watching_a_desktop_shares_it_and_no_key_or_pointer_reaches_it(slow_keeping_proxy, school, alice):
    console = RecordingConsole()
    try:
        instance = running_desktop(school, alice, console.port, console_password=VM_PASSWORD)
        teacher = get_user_model().objects.create_user("teacher")
        Account.objects.create(user=teacher, owner_group=school["group"], role="poweruser")
        OwnerGroupPermission.objects.filter(owner_group=school["group"]).update(write=True)
        before = Instance.objects.get().last_activity
        token = portal.issue_console_token(authz.actor_for(teacher), instance, watch=True)
        key, pointer = struct.pack(">BBxxI", 4, 1, 0x61), struct.pack(">BBHH", 5, 1, 10, 20)
        update = struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 480)
        with connect(url(slow_keeping_proxy, token), subprotocols=["binary"], open_timeout=10) as websocket:
            open_as_viewer(websocket, b"\x00")  # the viewer asks for the desktop to itself: the proxy shares it
            websocket.send(key + update + pointer)
            deadline = time.monotonic() + 10
            while len(console.received) < 1 + len(update) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert console.received == b"\x01" + update
        # Watching is not using: the student's idle clock was not reset.
        assert Instance.objects.get().last_activity == before
    finally:
        console.close()


def test_only_who_may_change_a_desktop_may_watch_it(school, alice):
    instance = running_desktop(school, alice, 5999, console_password=VM_PASSWORD)
    with pytest.raises(authz.Denied):
        portal.issue_console_token(authz.actor_for(alice), instance, watch=True)
