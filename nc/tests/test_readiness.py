"""The readiness decision of a booting guest, on real evidence: a dnsmasq lease file written as dnsmasq writes it,
real TCP listeners on loopback (one that answers, one that hangs up as a NAT forward does when the guest refuses,
one that stays silent as a forward does while the guest is still in its BIOS), and the driver's word."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions
from nc.drivers.base import GuestInfo
from nc.services.readiness import BootTarget, check_readiness, read_leases

MAC = "52:54:00:12:34:56"
OTHER_MAC = "52:54:00:65:43:21"


def lease_line(mac: str, ip: str, expires: float) -> str:
    return f"{int(expires)} {mac} {ip} * 01:{mac}\n"


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """A function starting a TCP server on a free loopback port that hands every connection to ``serve``; the
    servers are closed afterwards."""
    servers: list[socket.socket] = []

    def start(serve: Callable[[socket.socket], None]) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return server.getsockname()[1]

    yield start
    for server in servers:
        server.close()


def answer_http(conn: socket.socket) -> None:
    with conn:
        conn.recv(1024)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")


def hang_up(conn: socket.socket) -> None:
    conn.close()


def stay_silent(conn: socket.socket) -> None:
    time.sleep(3)
    conn.close()


def target(*ports: int) -> BootTarget:
    return BootTarget(macs=(MAC,), services=tuple(("127.0.0.1", port) for port in ports))


def test_a_current_dhcp_lease_for_the_guests_mac_shows_it_up_with_the_leased_address(tmp_path: Path):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(lease_line(OTHER_MAC, "10.20.0.100", time.time() + 600)
                      + lease_line(MAC.upper(), "10.20.0.101", time.time() + 600) + "duid 00:01:00:01:2a\n")
    found = check_readiness(target(), GuestInfo(), [tmp_path / "missing.leases", leases])
    assert (found.up, found.guest_ip, found.evidence) == (True, "10.20.0.101", "its DHCP lease")


def test_an_expired_lease_another_macs_lease_or_no_lease_file_is_no_evidence(tmp_path: Path):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(lease_line(MAC, "10.20.0.101", time.time() - 5) + lease_line(OTHER_MAC, "10.20.0.100", 0)
                      + "garbage line\n")
    assert not check_readiness(target(), GuestInfo(), [leases]).up
    assert not check_readiness(target(), GuestInfo(), [tmp_path / "missing.leases"]).up
    assert read_leases(leases) == {OTHER_MAC: "10.20.0.100"}  # expiry 0: a lease without end


def test_the_first_service_answering_shows_the_guest_up(listener):
    port = listener(answer_http)
    found = check_readiness(target(port), GuestInfo(), [])
    assert found.up and found.evidence == f"its service at 127.0.0.1:{port} answered" and found.guest_ip == ""


@pytest.mark.parametrize("serve", [hang_up, stay_silent], ids=["guest-refuses", "guest-not-up-yet"])
def test_a_connection_accepted_but_not_answered_is_no_evidence(listener, serve):
    # A NAT forward accepts on the host whatever the guest does: only an answer from inside counts.
    assert not check_readiness(target(listener(serve)), GuestInfo(), [], probe_timeout=0.5).up


def test_a_port_nobody_listens_on_is_no_evidence_and_only_the_first_service_is_asked(listener):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert not check_readiness(target(closed, listener(answer_http)), GuestInfo(), []).up


@pytest.mark.parametrize("guest", [GuestInfo(ready=True), GuestInfo(ip="10.0.2.15")], ids=["ready-marker", "address"])
def test_the_guests_own_word_through_the_driver_shows_it_up(guest, tmp_path: Path):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(lease_line(MAC, "10.20.0.101", 0))
    found = check_readiness(target(), guest, [leases])
    assert found.up and found.guest_ip == (guest.ip or "10.20.0.101")


def test_the_target_of_a_run_probes_its_forwarded_tcp_services_and_knows_its_macs():
    nic = NicSpec(mode="nat", mac=MAC, forwards=(PortForward(protocol="udp", host_port=6401, guest_port=53),
                                                 PortForward(host_ip="0.0.0.0", host_port=6402, guest_port=80)))
    options = RuntimeOptions(nics=(nic,), console=ConsoleSpec(port=6400))
    assert BootTarget.of(options) == BootTarget(macs=(MAC,), services=(("127.0.0.1", 6402),))
