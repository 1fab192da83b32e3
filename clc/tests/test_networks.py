"""The rules of a cluster's network settings (``clc.services.networks``): each rule refuses with a message that
names the field and says what to change; good settings are stored normalized; the CC's form of them."""

from __future__ import annotations

import json

import pytest

from clc.services.networks import (
    CC_SERVICE_PORTS,
    SUGGESTED_PORT_POOL,
    NetworkInUse,
    NetworkInvalid,
    as_cc_config,
    delete_network,
    network_of,
    save_network,
    unconfigured_clusters,
    validate_network,
)
from luhyadb.models import ClusterNetwork, Image, Instance, OwnerGroup, Server, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]

# A virtual server cluster in private mode: the CC at 203.0.113.10 in front of the LAN 10.20.0.0/24.
GOOD = {"cluster": "c1", "kind": "vs", "mode": "private", "cc_eip": "203.0.113.10", "cc_internal_ip": "10.20.0.1",
        "cc_public_interface": "eth0", "cc_private_interface": "eth1", "lan_subnet": "10.20.0.0/24",
        "lan_gateway": "", "dhcp_start": "10.20.0.100", "dhcp_end": "10.20.0.199", "eip_start": "203.0.113.20",
        "eip_end": "203.0.113.29", "port_low": 30000, "port_high": 39999, "node_bridge": "br0"}


def problems(**changes) -> list[str]:
    """The messages validate_network gives for GOOD with ``changes`` (a value of None drops the field)."""
    fields = {key: value for key, value in (GOOD | changes).items() if value is not None}
    with pytest.raises(NetworkInvalid) as refused:
        validate_network(fields)
    return [str(problem) for problem in refused.value.problems]


def other_cluster(**changes) -> ClusterNetwork:
    return save_network(GOOD | {"cluster": "c2", "cc_eip": "203.0.113.50", "eip_start": "203.0.113.60",
                                "eip_end": "203.0.113.69", "lan_subnet": "10.30.0.0/24",
                                "cc_internal_ip": "10.30.0.1", "dhcp_start": "10.30.0.100",
                                "dhcp_end": "10.30.0.199"} | changes)


# Good settings


def test_good_settings_are_returned_ready_to_store_with_the_gateway_defaulting_to_the_cc():
    values = validate_network(GOOD | {"port_low": "30000", "cc_eip": " 203.0.113.10 "})
    assert values == GOOD | {"lan_gateway": "10.20.0.1", "port_low": 30000}


def test_a_public_desktop_cluster_needs_no_pools_and_no_bridge():
    values = validate_network(GOOD | {"kind": "rvd", "mode": "public", "dhcp_start": "", "dhcp_end": None,
                                      "eip_start": None, "eip_end": "", "node_bridge": ""})
    assert (values["dhcp_start"], values["dhcp_end"], values["eip_start"], values["eip_end"]) == (None,) * 4
    assert values["node_bridge"] == ""


def test_save_stores_the_normalized_settings_and_network_of_finds_them():
    save_network(GOOD)
    network = network_of("c1")
    assert (network.lan_gateway, network.port_low, network.eip_end) == ("10.20.0.1", 30000, "203.0.113.29")
    assert network_of("c9") is None


def test_every_problem_is_reported_at_once():
    found = problems(cc_eip="nope", port_low=80, dhcp_end="10.20.1.5")
    assert sorted(message.split(":")[0] for message in found) == ["cc_eip", "dhcp_end", "port_low"]


# Each rule, with its message


@pytest.mark.parametrize(("changes", "message"), [
    ({"cluster": "../etc"}, "cluster: '../etc' is not a valid name"),
    ({"cluster": "c1;reboot"}, "cluster: 'c1;reboot' is not a valid name"),
    ({"cluster": ""}, "cluster: required: give the cluster's name"),
    ({"kind": "desk"}, "kind: 'desk' is not one of vs, rvd, lvd"),
    ({"mode": None}, "mode: required: give one of public, private"),
    ({"mode": "tree"}, "mode: 'tree' is not one of public, private"),
    ({"cc_eip": "300.1.2.3"}, "cc_eip: '300.1.2.3' is not an IPv4 address (like 10.20.0.1)"),
    ({"cc_eip": "0.0.0.0"}, "cc_eip: 0.0.0.0 is not a host address"),
    ({"cc_eip": ["203.0.113.10"]}, "cc_eip: must be text"),
    ({"cc_internal_ip": "fe80::1"}, "cc_internal_ip: 'fe80::1' is not an IPv4 address"),
    ({"cc_public_interface": "eth0;reboot"}, "cc_public_interface: 'eth0;reboot' is not an interface name"),
    ({"cc_private_interface": "-eth1"}, "cc_private_interface: '-eth1' is not an interface name"),
    ({"cc_private_interface": "../eth1"}, "cc_private_interface: '../eth1' is not an interface name"),
    ({"node_bridge": "br0 br1"}, "node_bridge: 'br0 br1' is not an interface name"),
    ({"node_bridge": "a" * 16}, "node_bridge: 'aaaaaaaaaaaaaaaa' is not an interface name"),
    ({"lan_subnet": "10.20.0.0"}, "lan_subnet: '10.20.0.0' has no prefix length"),
    ({"lan_subnet": "10.20.0.1/24"}, "lan_subnet: 10.20.0.1/24 has host bits set; did you mean 10.20.0.0/24?"),
    ({"lan_subnet": "10.20.0.0/31"}, "lan_subnet: 10.20.0.0/31 has no room for a gateway"),
    ({"lan_subnet": "10.20.0.0/33"}, "lan_subnet: '10.20.0.0/33' is not an IPv4 subnet"),
    ({"cc_internal_ip": "10.21.0.1"}, "cc_internal_ip: 10.21.0.1 is outside the LAN subnet 10.20.0.0/24; pick one "
                                      "from 10.20.0.1 to 10.20.0.254"),
    ({"cc_internal_ip": "10.20.0.0"}, "cc_internal_ip: 10.20.0.0 is the network address of 10.20.0.0/24"),
    ({"lan_gateway": "10.20.1.1"}, "lan_gateway: 10.20.1.1 is outside the LAN subnet 10.20.0.0/24"),
    ({"lan_gateway": "10.20.0.255"}, "lan_gateway: 10.20.0.255 is the broadcast address of 10.20.0.0/24"),
    ({"dhcp_end": "10.20.1.5"}, "dhcp_end: 10.20.1.5 is outside the LAN subnet 10.20.0.0/24"),
    ({"dhcp_start": "10.20.0.0"}, "dhcp_start: 10.20.0.0 is the network address of 10.20.0.0/24"),
    ({"dhcp_end": "10.20.0.255"}, "dhcp_end: 10.20.0.255 is the broadcast address of 10.20.0.0/24"),
    ({"lan_gateway": "10.20.0.150"}, "dhcp_start: the DHCP pool 10.20.0.100-10.20.0.199 contains the LAN gateway "
                                     "10.20.0.150; start the pool after it or end it before it"),
    ({"cc_internal_ip": "10.20.0.120"}, "dhcp_start: the DHCP pool 10.20.0.100-10.20.0.199 contains the CC's LAN "
                                        "address cc_internal_ip 10.20.0.120"),
    ({"dhcp_end": "10.20.0.50"}, "dhcp_end: 10.20.0.50 comes before dhcp_start 10.20.0.100"),
    ({"dhcp_end": ""}, "dhcp_end: empty while dhcp_start is set; give both ends of the DHCP pool, or neither"),
    ({"eip_start": None}, "eip_start: empty while eip_end is set; give both ends of the elastic IP pool"),
    ({"eip_end": "203.0.113.15"}, "eip_end: 203.0.113.15 comes before eip_start 203.0.113.20"),
    ({"eip_start": "203.0.113.5"}, "eip_start: the elastic IP pool 203.0.113.5-203.0.113.29 contains cc_eip "
                                   "203.0.113.10, the CC's own public address; move the pool or cc_eip"),
    ({"eip_start": "10.20.0.150", "eip_end": "10.20.0.160"},
     "eip_start: the elastic IP pool 10.20.0.150-10.20.0.160 overlaps the DHCP pool 10.20.0.100-10.20.0.199"),
    ({"eip_start": "10.20.0.10", "eip_end": "10.20.0.20"},
     "eip_start: the elastic IP pool 10.20.0.10-10.20.0.20 overlaps the LAN subnet 10.20.0.0/24"),
    ({"node_bridge": ""}, "node_bridge: required for a virtual server cluster (kind vs)"),
    ({"kind": "rvd", "dhcp_start": "", "dhcp_end": ""},
     "dhcp_start: required when node_bridge is set: bridged VMs get their LAN address from the DHCP pool; give "
     "dhcp_start and dhcp_end inside 10.20.0.0/24"),
    ({"port_low": 80}, "port_low: 80 is outside 1024-65535"),
    ({"port_high": 70000}, "port_high: 70000 is outside 1024-65535"),
    ({"port_low": "20k"}, "port_low: '20k' is not a port: give a whole number from 1024 to 65535"),
    ({"port_low": "9" * 5000}, "port_low: '9999999999999999999999999999999999999999...' is not a port"),
    ({"port_high": True}, "port_high: 'True' is not a port"),
    ({"port_high": None}, "port_high: required: give a port from 1024 to 65535"),
    ({"port_high": 29999}, "port_high: 29999 is below port_low 30000; the pool runs from port_low to port_high"),
    ({"port_low": 5000, "port_high": 5999}, "port_low: the port pool 5000-5999 contains 5432 (PostgreSQL), 5672 "
                                            "(RabbitMQ), served by the CC host itself; choose a range clear of them"),
    ({"port_low": 11000, "port_high": 12000}, "port_low: the port pool 11000-12000 contains 11211 (memcached)"),
    ({"cc_eip": "203.0.113.10" * 10}, "cc_eip: '203.0.113.10203.0.113.10203.0.113.10203....' is too long"),
    ({"bogus": "1"}, "bogus: not a network setting; the settings are cluster, kind, mode"),
])
def test_each_rule_refuses_with_a_message_naming_the_field(changes, message):
    found = problems(**changes)
    assert any(text.startswith(message) for text in found), found


def test_the_reserved_ports_include_the_services_a_cc_host_runs():
    assert {22, 53, 67, 68, 80, 443, 3306, 5432, 5672, 6379, 11211, 15672, 25672} == set(CC_SERVICE_PORTS)
    low, high = SUGGESTED_PORT_POOL
    assert 5900 <= low and not any(low <= port <= high for port in CC_SERVICE_PORTS)


def test_the_pool_may_not_contain_the_port_of_the_registered_cc_api():
    Server.objects.create(name="cc-1", role="cc", ip="10.20.0.1", cluster="c1", api_url="http://10.20.0.1:8000")
    Server.objects.create(name="cc-9", role="cc", ip="10.90.0.1", cluster="c9", api_url="http://10.90.0.1:21000")
    assert problems(port_low=7000, port_high=9000) == [
        "port_low: the port pool 7000-9000 contains 8000, the port of the CC's API (http://10.20.0.1:8000); choose "
        "a range clear of it"]
    assert validate_network(GOOD)["port_low"] == 30000  # another cluster's CC port does not count


def test_a_cluster_has_one_network_and_it_cannot_move_to_another_cluster():
    network = save_network(GOOD)
    assert problems() == ["cluster: cluster c1 already has network settings; edit those instead"]
    with pytest.raises(NetworkInvalid) as refused:
        save_network(GOOD | {"cluster": "c3"}, instance=network)
    assert str(refused.value) == ("cluster: the network of cluster c1 cannot move to another cluster; delete it and "
                                  "create one for c3")


def test_a_change_does_not_collide_with_its_own_pools():
    network = save_network(GOOD)
    changed = save_network(GOOD | {"port_high": 30999}, instance=network)
    assert (changed.pk, changed.port_high) == (network.pk, 30999)


@pytest.mark.parametrize(("changes", "message"), [
    ({"cc_eip": "203.0.113.50"}, "cc_eip: 203.0.113.50 is already the public address of cluster c2's CC; each CC "
                                 "needs its own"),
    ({"cc_eip": "203.0.113.65"}, "cc_eip: 203.0.113.65 is in cluster c2's elastic IP pool "
                                 "203.0.113.60-203.0.113.69; choose an address outside it"),
    ({"eip_end": "203.0.113.62"}, "eip_start: the elastic IP pool 203.0.113.20-203.0.113.62 overlaps cluster c2's "
                                  "elastic IP pool 203.0.113.60-203.0.113.69; clusters share the public network"),
    ({"eip_end": "203.0.113.55"}, "eip_start: the elastic IP pool 203.0.113.20-203.0.113.55 contains 203.0.113.50, "
                                  "the public address of cluster c2's CC; move the pool"),
])
def test_clusters_share_the_public_network_so_their_public_addresses_never_overlap(changes, message):
    other_cluster()
    found = problems(**changes)
    assert any(text.startswith(message) for text in found), found


def test_nothing_is_stored_when_a_rule_is_broken():
    with pytest.raises(NetworkInvalid):
        save_network(GOOD | {"dhcp_end": "10.20.1.5"})
    assert not ClusterNetwork.objects.exists()


def test_by_field_gives_the_api_shape():
    with pytest.raises(NetworkInvalid) as refused:
        validate_network(GOOD | {"port_low": 80, "cc_eip": "x"})
    assert refused.value.by_field() == {
        "cc_eip": ["cc_eip: 'x' is not an IPv4 address (like 10.20.0.1): give the CC's public address, the one users "
                   "reach"],
        "port_low": ["port_low: 80 is outside 1024-65535: pool ports are unprivileged (below 1024 only root may "
                     "listen, and the host's own services live there)"]}


# What the CC pulls


def test_the_cc_config_is_plain_json_with_the_lan_the_pools_and_forwarding():
    config = as_cc_config(save_network(GOOD))
    assert json.loads(json.dumps(config)) == config
    assert config["lan"] == {"subnet": "10.20.0.0/24", "netmask": "255.255.255.0", "prefix": 24,
                             "gateway": "10.20.0.1"}
    assert config["dhcp"] == {"start": "10.20.0.100", "end": "10.20.0.199"}
    assert config["eip_pool"] == {"start": "203.0.113.20", "end": "203.0.113.29"}
    assert config["ports"] == {"low": 30000, "high": 39999}
    assert config["interfaces"] == {"public": "eth0", "private": "eth1"}
    assert (config["forward_ports"], config["console_host"], config["node_bridge"]) == (True, "203.0.113.10", "br0")


@pytest.mark.parametrize(("kind", "mode", "forward"), [("rvd", "private", True), ("rvd", "public", False),
                                                       ("lvd", "private", False), ("vs", "public", False)])
def test_the_cc_forwards_console_ports_only_in_private_mode_and_never_for_local_desktops(kind, mode, forward):
    config = as_cc_config(save_network(GOOD | {"kind": kind, "mode": mode}))
    assert (config["forward_ports"], config["console_host"]) == (forward, "203.0.113.10" if forward else "")


def test_the_cc_config_says_none_for_absent_pools():
    config = as_cc_config(save_network(GOOD | {"kind": "rvd", "dhcp_start": "", "dhcp_end": "", "eip_start": "",
                                               "eip_end": "", "node_bridge": ""}))
    assert (config["dhcp"], config["eip_pool"], config["node_bridge"]) == (None, None, "")


# Deleting, and clusters without settings


def _instance(state: str, cluster: str = "c1") -> Instance:
    group = OwnerGroup.objects.get_or_create(name="root", path="edu")[0]
    image = Image.objects.get_or_create(image_id="img-0000abcd", name="Desk", owner_group=group)[0]
    vm_type = VMType.objects.get_or_create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)[0]
    number = Instance.objects.count() + 1
    return Instance.objects.create(instance_id=f"ins-{number:08x}", name=f"VM {number}", kind="vs", image=image,
                                   vm_type=vm_type, owner_group=group, cluster=cluster, state=state)


def test_a_network_is_not_deleted_while_instances_of_its_cluster_run():
    network = save_network(GOOD)
    _instance("running")
    _instance("stopped")
    _instance("running", cluster="c2")
    with pytest.raises(NetworkInUse, match=r"cluster c1 has 1 instance\(s\) running or on their way "
                                           r"\(ins-00000001\); stop them before deleting its network"):
        delete_network(network)
    Instance.objects.filter(instance_id="ins-00000001").update(state="stopped")
    delete_network(network)
    assert network_of("c1") is None


def test_registered_clusters_without_settings_are_listed():
    Server.objects.create(name="cc-1", role="cc", ip="10.20.0.1", cluster="c1")
    Server.objects.create(name="cc-2", role="cc", ip="10.30.0.1", cluster="c2")
    Server.objects.create(name="nc-3", role="nc", ip="10.40.0.5", cluster="c3")
    save_network(GOOD)
    assert unconfigured_clusters() == ["c2"]
