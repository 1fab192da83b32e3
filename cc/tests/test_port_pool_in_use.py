"""Ports of the CC's pool that another program on this host holds (a second all-in-one's console, a service): the
lease passes over them, and the log says so once per port, not once per lease."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cc.models import PortLease
from cc.network import addresses
from cc.network.addresses import port_in_use
from cc.services.instances import InstanceRefused, lease_ports

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

POOL_SIZE = 8


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@pytest.fixture
def pool() -> tuple[int, int]:
    """A pool of ports that nothing on this machine holds now (other test runs share the machine)."""
    for low in range(21000, 31000, 97):
        if all(_bindable(port) for port in range(low, low + POOL_SIZE)):
            return low, low + POOL_SIZE - 1
    pytest.fail("no free block of ports found on this machine for the test pool")


@pytest.fixture(autouse=True)
def no_port_warned_yet(monkeypatch):
    """Each test starts as a fresh CC process: no port warned about yet."""
    monkeypatch.setattr(addresses, "_held_ports", set())


@contextmanager
def listening(port: int, address: str = "127.0.0.1", reuse: bool = False) -> Iterator[socket.socket]:
    """Another program's listener on ``address:port`` (with SO_REUSEADDR if ``reuse``, as QEMU's consoles)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
        server.bind((address, port))
        server.listen()
        yield server


def _busy_warnings(caplog, port: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno == logging.WARNING and record.getMessage().startswith(f"port {port} ")]


def test_a_pool_port_another_program_listens_on_is_passed_over_and_warned_about_once(pool, caplog):
    low, _high = pool
    caplog.set_level(logging.WARNING)
    with listening(low):
        first = lease_ports("ins-0000000a", ["console", "tcp/80"], pool)
        second = lease_ports("ins-0000000b", ["console"], pool)
    assert first == {"console": low + 1, "tcp/80": low + 2}
    assert second == {"console": low + 3}
    assert low not in set(PortLease.objects.values_list("port", flat=True))
    warnings = _busy_warnings(caplog, low)
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    assert "in use" in warnings[0].getMessage()


def test_a_port_bound_to_one_address_of_the_host_only_is_passed_over_too(pool):
    # A console that listens on the node's own address is not reachable at 127.0.0.1, yet the port is taken.
    low, _high = pool
    with listening(low, "127.0.0.2"):
        assert lease_ports("ins-0000000a", ["console"], pool) == {"console": low + 1}


def test_a_port_freed_by_the_other_program_is_leased_again(pool):
    low, _high = pool
    with listening(low):
        assert lease_ports("ins-0000000a", ["console"], pool) == {"console": low + 1}
    assert lease_ports("ins-0000000b", ["console"], pool) == {"console": low}


def test_a_pool_whose_free_ports_other_programs_all_hold_is_refused_as_used_up(pool):
    low, high = pool
    PortLease.objects.bulk_create(PortLease(port=port, instance_id="ins-0000beef", purpose=f"tcp/{port}")
                                  for port in range(low, high))
    with listening(high), pytest.raises(InstanceRefused, match="used up") as refused:
        lease_ports("ins-0000000a", ["console"], pool)
    assert refused.value.status == 409


def test_a_port_taken_again_after_it_was_free_is_warned_about_again(pool, caplog):
    low, _high = pool
    caplog.set_level(logging.WARNING)
    with listening(low):
        lease_ports("ins-0000000a", ["console"], pool)
    lease_ports("ins-0000000b", ["console"], pool)
    with listening(low + 2):
        lease_ports("ins-0000000c", ["console"], pool)
    with listening(low + 2):
        lease_ports("ins-0000000d", ["console"], pool)
    assert dict(PortLease.objects.values_list("instance_id", "port")) == {
        "ins-0000000a": low + 1, "ins-0000000b": low, "ins-0000000c": low + 3, "ins-0000000d": low + 4}
    assert len(_busy_warnings(caplog, low)) == 1
    assert len(_busy_warnings(caplog, low + 2)) == 1


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1", "127.0.0.2"])
def test_a_listener_on_any_address_of_the_host_holds_its_port(pool, address):
    low, _high = pool
    assert not port_in_use(low)
    with listening(low, address):
        assert port_in_use(low)
    assert not port_in_use(low)


def test_a_socket_bound_but_not_listening_yet_holds_its_port(pool):
    low, _high = pool
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", low))
        assert port_in_use(low)


def test_a_listener_on_ipv6_only_holds_its_port(pool):
    low, _high = pool
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", low))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    with server:
        server.listen()
        assert port_in_use(low)


def test_a_connection_lingering_after_its_server_closed_does_not_hold_the_port(pool):
    # A stopped VM whose console had a viewer leaves the port in TIME_WAIT; QEMU binds it again at once, so may we.
    low, _high = pool
    with listening(low, reuse=True) as server:
        viewer = socket.create_connection(("127.0.0.1", low))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first, as QEMU does when the VM stops
        viewer.recv(1)
        viewer.close()
    assert not _bindable(low), "the closed connection should linger on the port (TIME_WAIT)"
    assert not port_in_use(low)
