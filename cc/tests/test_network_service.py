"""The cluster's network derived from its records: what each mode makes the CC forward, reserve and alias."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cc.models import AddressLease, ClusterNode, NetworkSettings, PortLease
from cc.network import iptables
from cc.network.dnsmasq import Reservation
from cc.services.instances import InstanceRefused, note_instance_status, run_instance
from cc.services.network import cluster_network, desired_state
from luhyaapi.messages import ImageRef, InsStatus, InstanceRunRequest
from tests.commands import broker
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

IMAGE = ImageRef(image_id="img-0000aaaa", version=1, sha256="a" * 64, size=1024)
NODE_IP = "10.20.0.11"


def settings_of(kind="rvd", mode="private", dhcp=True, eips=True, bridge="br0"):
    return {"cluster": "cluster1", "kind": kind, "mode": mode, "cc_eip": "192.0.2.10", "cc_internal_ip": "10.20.0.1",
            "interfaces": {"public": "pub0", "private": "lan0"},
            "lan": {"subnet": "10.20.0.0/24", "netmask": "255.255.255.0", "prefix": 24, "gateway": "10.20.0.1"},
            "dhcp": {"start": "10.20.0.100", "end": "10.20.0.101"} if dhcp else None,
            "eip_pool": {"start": "192.0.2.50", "end": "192.0.2.51"} if eips else None,
            "ports": {"low": 6400, "high": 6499}, "node_bridge": bridge,
            "forward_ports": mode == "private" and kind != "lvd", "console_host": "192.0.2.10" if mode == "private"
            else ""}


@pytest.fixture
def network(settings):
    enrolled_key("nc-1")
    ClusterNode.objects.create(name="nc-1", role="nc", ip=NODE_IP, cpus=4, memory_mb=8192, disk_mb=10**6,
                               free_disk_mb=10**6, last_seen=datetime.now(tz=UTC))

    def configure(**changes):
        NetworkSettings.objects.update_or_create(cluster="cluster1", defaults={"settings": settings_of(**changes)})
        return cluster_network()

    return configure


def request(insid="ins-0000000a", kind="rvd", mac="52:54:00:00:00:0a", seq=1):
    return InstanceRunRequest(insid=insid, tid=f"img-0000aaaa:img-0000aaaa:{insid}", seq=seq, kind=kind, image=IMAGE,
                              cpus=1, memory_mb=256, mac=mac, services=(80,))


def test_a_private_remote_desktop_is_reached_through_the_ccs_public_address(network):
    net = network(kind="rvd", mode="private")
    record = run_instance(broker(), request())
    ports = dict(PortLease.objects.values_list("purpose", "port"))
    assert record.access == {"console": f"vnc://192.0.2.10:{ports['console']}",
                             "http": f"http://192.0.2.10:{ports['tcp/80']}/"}
    assert record.options["nics"][0]["mode"] == "nat"
    state = desired_state(net)
    assert set(state.rules) == {
        iptables.PortForward(public_ip="192.0.2.10", public_port=port, target_ip=NODE_IP, target_port=port)
        for port in ports.values()}
    assert (state.reservations, state.aliases) == ([], set())


def test_a_public_remote_desktop_is_reached_at_its_node_and_nothing_is_forwarded(network):
    net = network(kind="rvd", mode="public", eips=False)
    record = run_instance(broker(), request())
    assert record.access["console"].startswith(f"vnc://{NODE_IP}:")
    assert desired_state(net).rules == []


def test_a_private_virtual_server_is_bridged_with_a_reserved_address_and_an_elastic_ip(network):
    net = network(kind="vs", mode="private")
    record = run_instance(broker(), request(kind="vs"))
    leases = {lease.pool: lease.ip for lease in AddressLease.objects.all()}
    assert leases == {"lan": "10.20.0.100", "eip": "192.0.2.50"}
    nic = record.options["nics"][0]
    assert (nic["mode"], nic["bridge"], nic["mac"], nic["forwards"]) == ("bridged", "br0", "52:54:00:00:00:0a", [])
    console = PortLease.objects.get(purpose="console").port
    assert record.access == {"console": f"vnc://192.0.2.10:{console}", "management": f"vnc://192.0.2.10:{console}",
                             "http": "http://192.0.2.50/"}
    state = desired_state(net)
    assert set(state.rules) == {iptables.ElasticIp(eip="192.0.2.50", lan_ip="10.20.0.100"),
                                iptables.PortForward(public_ip="192.0.2.10", public_port=console, target_ip=NODE_IP,
                                                     target_port=console)}
    assert state.reservations == [Reservation(mac="52:54:00:00:00:0a", ip="10.20.0.100", hostname="ins-0000000a")]
    assert state.aliases == {"192.0.2.50"}


def test_a_public_virtual_server_is_reached_at_its_lan_address(network):
    network(kind="vs", mode="public", eips=False)
    record = run_instance(broker(), request(kind="vs"))
    assert record.access["http"] == "http://10.20.0.100/"
    assert not AddressLease.objects.filter(pool="eip").exists()


def test_a_stopped_instance_gives_back_its_ports_and_addresses_and_its_rules_go(network):
    net = network(kind="vs", mode="private")
    run_instance(broker(), request(kind="vs"))
    note_instance_status(InsStatus(insid="ins-0000000a", node="nc-1", seq=1, state="stopped"))
    assert not AddressLease.objects.exists() and not PortLease.objects.exists()
    state = desired_state(net)
    assert (state.rules, state.reservations, state.aliases) == ([], [], set())


def test_an_address_is_never_handed_out_twice_and_an_empty_pool_is_refused(network):
    network(kind="vs", mode="private")
    url = broker()
    run_instance(url, request("ins-00000001", kind="vs", mac="52:54:00:00:00:01"))
    run_instance(url, request("ins-00000002", kind="vs", mac="52:54:00:00:00:02"))
    assert sorted(AddressLease.objects.values_list("ip", flat=True)) == [
        "10.20.0.100", "10.20.0.101", "192.0.2.50", "192.0.2.51"]
    with pytest.raises(InstanceRefused, match="lan address pool 10.20.0.100-10.20.0.101 is used up") as raised:
        run_instance(url, request("ins-00000003", kind="vs", mac="52:54:00:00:00:03"))
    assert raised.value.status == 409
    assert not AddressLease.objects.filter(instance_id="ins-00000003").exists()
    assert not PortLease.objects.filter(instance_id="ins-00000003").exists()


def test_a_kind_the_clusters_network_is_not_for_is_refused(network):
    network(kind="vs", mode="private")
    with pytest.raises(InstanceRefused, match="runs vs instances, not rvd"):
        run_instance(broker(), request(kind="rvd"))


def test_a_cluster_without_settings_is_said_once_in_plain_words_not_every_minute(live_server, cloud_at, caplog):
    """The cc-network daemon asks the CLC every minute; the CLC has no settings for this cluster (a fresh install)."""
    from cc.services.network import refresh_network

    cloud_at(live_server.url, cluster="fresh")  # a cluster this process has said nothing of yet
    with caplog.at_level("INFO"):
        for _ in range(3):
            assert refresh_network() is None
    said = [record.getMessage() for record in caplog.records if "no network settings yet" in record.getMessage()]
    assert said == ["network: cluster fresh has no network settings yet; it runs NAT-only with cc.kinds and "
                    "cc.port_range until they are set on the CLC's Networks page"]
    assert not [record for record in caplog.records if record.levelname == "WARNING"]
