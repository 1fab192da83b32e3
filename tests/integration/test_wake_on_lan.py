"""Wake-on-LAN on a real link: two network namespaces made by the test (``tests/netns.py``) and joined by a veth pair
stand for a cluster LAN; the sender (``send_magic_packet``, the CC's endpoint, the whole console API -> CC chain) runs
in one, a UDP listener in the other receives exactly the 102-byte magic packet. Nothing is sent outside these
namespaces. Needs root and ``ip`` (iproute2); skipped otherwise, with the reason printed."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, replace
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.contrib.auth import get_user_model

from luhyaapi import wol
from luhyadb.models import Host, Server
from tests.netns import NamespaceThread, Network, missing_requirements

MAC = "52:54:00:3c:0f:7e"
SUBNET = "10.213.7"


@dataclass(frozen=True)
class Lan:
    """Two namespaces on one link, each with a thread inside it for the test's calls: ``sender`` (``wol0``, .1) and
    ``receiver`` (``wol1``, .2), in ``SUBNET``.0/24. Neither has a default route."""

    sender: NamespaceThread
    receiver: NamespaceThread
    sender_ip: str = f"{SUBNET}.1"
    broadcast: str = f"{SUBNET}.255"
    sender_interface: str = "wol0"


@pytest.fixture
def lan():
    reason = missing_requirements()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    with Network() as net:
        try:
            sender, receiver = net.namespace("sender"), net.namespace("receiver")
            net.veth(sender, "wol0", receiver, "wol1", a_cidr=f"{SUBNET}.1/24", b_cidr=f"{SUBNET}.2/24")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"could not make network namespaces here: {exc}")
        threads = [NamespaceThread(sender), NamespaceThread(receiver)]
        try:
            yield Lan(*threads)
        finally:
            for thread in threads:
                thread.close()


def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    return sock


class Listener:
    """A UDP socket of the receiver's namespace on all its addresses (broadcasts are delivered only there)."""

    def __init__(self, lan: Lan, port: int = wol.DEFAULT_PORT) -> None:
        self.sock = lan.receiver.call(_udp_socket, port)

    def receive(self, timeout: float = 5.0) -> tuple[bytes, str]:
        self.sock.settimeout(timeout)
        data, (source, _port) = self.sock.recvfrom(4096)
        return data, source

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.3)
        try:
            self.sock.recvfrom(4096)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(lan):
    listening = Listener(lan)
    yield listening
    listening.close()


def test_a_magic_packet_to_the_lans_broadcast_reaches_the_other_end_exactly(lan, listener):
    sent = lan.sender.call(wol.send_magic_packet, MAC, lan.broadcast)
    data, source = listener.receive()
    assert data == sent == bytes.fromhex("ff" * 6 + MAC.replace(":", "") * 16)
    assert len(data) == 102
    assert source == lan.sender_ip
    assert listener.nothing_more()


def test_bound_to_its_interface_the_limited_broadcast_goes_out_there_and_the_port_is_honoured(lan):
    other_port = Listener(lan, port=7)
    try:
        # The sender's namespace has no default route: only the interface binding gives 255.255.255.255 a way out.
        with pytest.raises(OSError):
            lan.sender.call(wol.send_magic_packet, MAC, port=7)
        lan.sender.call(wol.send_magic_packet, MAC, port=7, interface=lan.sender_interface)
        data, _source = other_port.receive()
        assert data == wol.magic_packet(MAC)
    finally:
        other_port.close()


def test_a_missing_interface_is_an_os_error_and_sends_nothing(lan, listener):
    with pytest.raises(OSError):
        lan.sender.call(wol.send_magic_packet, MAC, lan.broadcast, interface="nosuchnic0")
    assert listener.nothing_more()


def test_the_cluster_controllers_endpoint_sends_the_packet_on_its_lan(lan, listener, signed_client, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, wake_broadcast=lan.broadcast)
    response = lan.sender.call(signed_client.post, "/cc/api/1.0/hosts/wake/", {"mac": MAC})
    assert response.status_code == 202, response.content
    assert response.json() == {"mac": MAC, "broadcast": lan.broadcast, "port": 9, "interface": ""}
    data, source = listener.receive()
    assert (data, source) == (wol.magic_packet(MAC), lan.sender_ip)


def test_the_cluster_controller_uses_its_configured_interface(lan, listener, signed_client, settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, wake_interface=lan.sender_interface)
    response = lan.sender.call(signed_client.post, "/cc/api/1.0/hosts/wake/", {"mac": MAC})
    assert response.status_code == 202, response.content
    assert response.json()["interface"] == lan.sender_interface
    assert listener.receive()[0] == wol.magic_packet(MAC)


def test_a_send_the_kernel_refuses_is_a_502_saying_why(lan, listener, signed_client):
    # The limited broadcast with no interface configured and no default route in the sender's namespace.
    response = lan.sender.call(signed_client.post, "/cc/api/1.0/hosts/wake/", {"mac": MAC})
    assert response.status_code == 502
    assert "could not send the magic packet to 255.255.255.255" in response.json()["detail"]
    assert listener.nothing_more()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the method it replaces
        pass


@pytest.fixture
def controller_in_lan(lan, settings):
    """This cloud's CC API served by the sender's namespace thread (so its magic packets go on the test's link) from
    a socket of the machine's loopback (so the CLC, in the test's thread, can call it)."""
    from django.core.handlers.wsgi import WSGIHandler

    server: WSGIServer = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=QuietHandler)
    serving = lan.sender.submit(server.serve_forever, poll_interval=0.05)
    settings.EDUCLOUD = replace(settings.EDUCLOUD, wake_broadcast=lan.broadcast)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    serving.result(timeout=10)


@pytest.mark.database
@pytest.mark.django_db
def test_the_console_api_wakes_a_host_through_its_cluster_controller(controller_in_lan, listener, client):
    Server.objects.create(role="cc", name="cc-lab", ip="127.0.0.1", cluster="lab", api_url=controller_in_lan,
                          state="online")
    Host.objects.create(name="pc-12", mac=MAC, ip=f"{SUBNET}.2", cluster="lab")
    client.force_login(get_user_model().objects.create_user("boss", is_staff=True, is_superuser=True))
    response = client.post(f"/clc/api/1.0/hosts/{MAC}/wake/", {}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json() == {"mac": MAC, "controller": "cc-lab", "broadcast": f"{SUBNET}.255", "interface": ""}
    data, _source = listener.receive()
    assert data == wol.magic_packet(MAC)
    assert listener.nothing_more()


@pytest.mark.parametrize("body", [{"mac": "52:54:00:3c:0f:7e; reboot"}, {"mac": "ff:ff:ff:ff:ff:ff"}, {"mac": ""},
                                  {"mac": MAC, "broadcast": "10.213.7.255 -c reboot"},
                                  {"mac": MAC, "broadcast": "224.0.0.1"}, {}])
def test_the_cluster_controller_refuses_a_hostile_request_naming_the_field_and_sends_nothing(
        signed_client, monkeypatch, body):
    monkeypatch.setattr(wol, "socket", None)  # any socket use would fail with an AttributeError, not a 400
    response = signed_client.post("/cc/api/1.0/hosts/wake/", body)
    assert response.status_code == 400
    assert set(response.json()) & {"mac", "broadcast"}


def test_the_cluster_controllers_endpoint_is_for_signed_calls_only(client, monkeypatch):
    monkeypatch.setattr(wol, "socket", None)
    response = client.post("/cc/api/1.0/hosts/wake/", {"mac": MAC}, content_type="application/json")
    assert response.status_code in (401, 403)
