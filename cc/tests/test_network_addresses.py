"""Elastic IP aliases on the cluster controller's public interface (inside a namespace), and the pure pool helpers
that pick the next free port or address."""

import pytest

from cc.network import addresses
from cc.network.addresses import AddressConflict, AddressPool, PortPool
from luhyaapi.validators import InvalidValue
from tests.netns import Network, missing_requirements


@pytest.fixture
def host():
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with Network() as net:
        cc, student = net.namespace("cc"), net.namespace("student")
        net.veth(cc, "pub0", student, "pub0", a_cidr="203.0.113.1/24", b_cidr="203.0.113.10/24")
        yield cc


def test_aliases_are_added_and_removed_once(host):
    cc = host.name
    assert addresses.aliases("pub0", netns=cc) == [("203.0.113.1", 24)]

    assert addresses.ensure_alias("pub0", "203.0.113.50", netns=cc) is True
    assert addresses.ensure_alias("pub0", "203.0.113.50", netns=cc) is False
    assert addresses.ensure_alias("pub0", "203.0.113.51", 32, netns=cc) is True
    assert addresses.aliases("pub0", netns=cc) == [("203.0.113.1", 24), ("203.0.113.50", 32), ("203.0.113.51", 32)]
    with pytest.raises(AddressConflict):
        addresses.ensure_alias("pub0", "203.0.113.1", 32, netns=cc)

    assert addresses.remove_alias("pub0", "203.0.113.50", netns=cc) is True
    assert addresses.remove_alias("pub0", "203.0.113.50", netns=cc) is False
    # The interface's own address, with its own prefix, is not an alias of ours to remove.
    assert addresses.remove_alias("pub0", "203.0.113.1", netns=cc) is False
    assert addresses.aliases("pub0", netns=cc) == [("203.0.113.1", 24), ("203.0.113.51", 32)]


def test_port_pool_hands_out_the_next_free_port_round_robin():
    pool = PortPool(10000, 10003)
    assert len(pool) == 4 and 10003 in pool and 10004 not in pool and PortPool.parse("10000-10003") == pool
    assert pool.next_free(set()) == 10000
    assert pool.next_free({10000, 10001}) == 10002
    assert pool.next_free({10003}, after=10002) == 10000
    assert pool.next_free(set(), after=10003) == 10000
    assert pool.next_free({10000, 10001, 10002, 10003}) is None
    assert pool.next_free({9999, 20000}) == 10000
    with pytest.raises(InvalidValue):
        PortPool(10003, 10000)
    with pytest.raises(InvalidValue):
        PortPool(0, 10)


def test_address_pool_hands_out_the_next_free_address_round_robin():
    pool = AddressPool("10.0.0.254", "10.0.1.1")
    assert len(pool) == 4 and "10.0.0.255" in pool and "10.0.1.2" not in pool and "x" not in pool
    assert pool.next_free(["10.0.0.254"]) == "10.0.0.255"
    assert pool.next_free([], after="10.0.0.255") == "10.0.1.0"
    assert pool.next_free(["10.0.0.254"], after="10.0.1.1") == "10.0.0.255"
    assert pool.next_free(["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]) is None
    assert AddressPool.of_subnet("192.168.5.0/29") == AddressPool("192.168.5.1", "192.168.5.6")
    assert AddressPool.of_subnet("192.168.5.8/31") == AddressPool("192.168.5.8", "192.168.5.9")
    with pytest.raises(InvalidValue):
        AddressPool("10.0.0.2", "10.0.0.1")
    with pytest.raises(InvalidValue):
        pool.next_free(["10.0.0.1; reboot"])
