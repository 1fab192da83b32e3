"""Every value the network modules hand to iptables, ip or dnsmasq is checked first and comes back canonical."""

import pytest

from cc.network import validate
from luhyaapi.validators import InvalidValue


@pytest.mark.parametrize("value", ["1.2.3.4; reboot", "1.2.3.4 -j ACCEPT", "256.1.1.1", "1.2.3", "01.2.3.4",
                                   "::1", "1.2.3.4/32", " 1.2.3.4", "", None, 16909060, "1.2.3.4\n"])
def test_ipv4_refuses_anything_but_a_plain_dotted_quad(value):
    with pytest.raises(InvalidValue, match="^addr:"):
        validate.ipv4(value, "addr")


def test_ipv4_and_subnets_come_back_canonical():
    assert validate.ipv4("10.0.0.1") == "10.0.0.1"
    assert validate.subnet("10.0.0.0/24") == "10.0.0.0/24"
    for bad in ("10.0.0.1/24", "10.0.0.0", "10.0.0.0/33", "10.0.0.0/24; x", 24):
        with pytest.raises(InvalidValue, match="^subnet:"):
            validate.subnet(bad)
    assert validate.netmask("255.255.255.0") == "255.255.255.0"
    for bad in ("255.0.255.0", "24", "/24"):
        with pytest.raises(InvalidValue, match="^netmask:"):
            validate.netmask(bad)


@pytest.mark.parametrize("value", [0, -1, 65536, 70000, "80", 80.0, True, None])
def test_ports_are_integers_from_1_to_65535(value):
    with pytest.raises(InvalidValue, match="^public_port:"):
        validate.port(value, "public_port")


def test_port_ranges():
    assert validate.port_range("10000-10999") == (10000, 10999)
    assert validate.port_range((1, 65535)) == (1, 65535)
    assert validate.port_range([80, 80]) == (80, 80)
    for bad in ("10999-10000", "10000-70000", "1-2-3", "10000 - 10999", (0, 10), (1,), "80"):
        with pytest.raises(InvalidValue, match="^port_range:"):
            validate.port_range(bad)


@pytest.mark.parametrize("value", ["eth0 -j ACCEPT", "../x", "a/b", "eth0:1", "a" * 16, "", ".", "..", "-eth0",
                                   "eth0\n", "eth 0", None])
def test_hostile_interface_names_are_refused(value):
    with pytest.raises(InvalidValue, match="^interface:"):
        validate.interface(value)


@pytest.mark.parametrize("value", ["eth0", "br-lan", "enp0s31f6", "veth1.100", "a" * 15, "wlan_0"])
def test_usual_interface_names_pass(value):
    assert validate.interface(value) == value


def test_macs_are_normalised_and_must_be_unicast():
    assert validate.unicast_mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"
    for bad in ("01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "52:54:00:ab:cd", "52:54:00:ab:cd:ef; x"):
        with pytest.raises(InvalidValue, match="^mac:"):
            validate.unicast_mac(bad)


def test_protocols_lease_times_and_namespaces():
    assert validate.protocol("udp") == "udp"
    with pytest.raises(InvalidValue, match="^protocol:"):
        validate.protocol("all")
    assert [validate.lease_time(value) for value in ("12h", "120", "2m", "1d", "infinite")] == [
        "12h", "120", "2m", "1d", "infinite"]
    for bad in ("119", "1m", "12 h", "12h,x", "", 3600):
        with pytest.raises(InvalidValue, match="^lease_time:"):
            validate.lease_time(bad)
    assert validate.netns(None) is None
    for bad in ("../x", "a b", "-x", ""):
        with pytest.raises(InvalidValue, match="^netns:"):
            validate.netns(bad)
