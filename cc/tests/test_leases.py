"""Leasing the next free value of a pool (``cc.services.leases``), as the port and address leases use it: a value
another process takes between the look and the insert is looked for again; a pool that keeps changing under every
attempt, or has nothing left, is refused with each caller's own error."""

from __future__ import annotations

import pytest

from cc.models import AddressLease, PortLease
from cc.network.addresses import AddressPool, PortPool
from cc.services.instances import InstanceRefused, lease_ports
from cc.services.leases import ATTEMPTS, PoolBusy, PoolUsedUp, lease_next_free
from cc.services.network import AddressPoolExhausted, lease_address

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


class Racing:
    """A pool's ``next_free`` during whose look another process leases the value found, ``times`` times."""

    def __init__(self, next_free, take, times: int) -> None:
        self.next_free = next_free
        self.take = take
        self.times = times
        self.looks = 0

    def __call__(self, *args):
        value = self.next_free(*args)
        self.looks += 1
        if value is not None and self.looks <= self.times:
            self.take(value)
        return value


def _other_port(port):
    PortLease.objects.create(port=port, instance_id="ins-0000beef", purpose="console")


def _other_address(ip):
    AddressLease.objects.create(ip=ip, instance_id="ins-0000beef", pool="lan")


def test_a_value_another_process_took_meanwhile_is_looked_for_again_and_the_next_one_leased():
    pool = PortPool(6000, 6009)
    racing = Racing(pool.next_free, _other_port, times=1)
    port = lease_next_free(PortLease.objects.all(), "port", racing, {"instance_id": "ins-0000000a",
                                                                     "purpose": "console"})
    assert (port, racing.looks) == (6001, 2)
    assert dict(PortLease.objects.values_list("port", "instance_id")) == {6000: "ins-0000beef",
                                                                         6001: "ins-0000000a"}


def test_a_pool_that_changes_under_every_attempt_is_busy_after_the_attempts():
    pool = PortPool(6000, 6009)
    racing = Racing(pool.next_free, _other_port, times=ATTEMPTS)
    with pytest.raises(PoolBusy):
        lease_next_free(PortLease.objects.all(), "port", racing, {"instance_id": "ins-0000000a", "purpose": "console"})
    assert racing.looks == ATTEMPTS
    assert not PortLease.objects.filter(instance_id="ins-0000000a").exists()


def test_a_pool_with_nothing_left_is_used_up():
    PortLease.objects.create(port=6000, instance_id="ins-0000beef", purpose="console")
    with pytest.raises(PoolUsedUp):
        lease_next_free(PortLease.objects.all(), "port", PortPool(6000, 6000).next_free,
                        {"instance_id": "ins-0000000a", "purpose": "console"})


def test_only_the_leases_given_count_against_the_pool():
    PortLease.objects.create(port=6000, instance_id="ins-0000beef", purpose="console")
    port = lease_next_free(PortLease.objects.filter(port__gte=7000), "port", PortPool(7000, 7009).next_free,
                           {"instance_id": "ins-0000000a", "purpose": "console"})
    assert port == 7000


def test_port_leases_refuse_a_busy_pool_with_503(monkeypatch):
    racing = Racing(PortPool.next_free, _other_port, times=ATTEMPTS)
    monkeypatch.setattr(PortPool, "next_free", lambda pool, taken: racing(pool, taken))
    with pytest.raises(InstanceRefused, match="could not lease a port: the pool is changing too fast") as raised:
        lease_ports("ins-0000000a", ["console"], (6000, 6009))
    assert raised.value.status == 503


def test_address_leases_say_a_busy_pool_is_exhausted_for_now(monkeypatch):
    racing = Racing(AddressPool.next_free, _other_address, times=ATTEMPTS)
    monkeypatch.setattr(AddressPool, "next_free", lambda pool, taken: racing(pool, taken))
    with pytest.raises(AddressPoolExhausted, match="could not lease an address: the pool is changing too fast"):
        lease_address("ins-0000000a", AddressPool("10.20.0.100", "10.20.0.199"), "lan", "52:54:00:00:00:0a")


def test_an_address_lease_carries_its_pool_kind_and_mac():
    ip = lease_address("ins-0000000a", AddressPool("10.20.0.100", "10.20.0.199"), "lan", "52:54:00:00:00:0a")
    lease = AddressLease.objects.get()
    assert (ip, lease.ip, lease.instance_id, lease.pool, lease.mac) == (
        "10.20.0.100", "10.20.0.100", "ins-0000000a", "lan", "52:54:00:00:00:0a")
