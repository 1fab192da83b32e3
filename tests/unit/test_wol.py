"""Wake-on-LAN: the magic packet's exact bytes, and every argument checked before a socket is opened. (Real packets
on a real link: tests/integration/test_wake_on_lan.py.)"""

from __future__ import annotations

import pytest

from luhyaapi import wol
from luhyaapi.config import ConfigError, load_config
from luhyaapi.validators import InvalidValue

HOSTILE_MACS = ["", "zz:zz:zz:zz:zz:zz", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:56; reboot",
                "52:54:00:12:34:5\n", "$(reboot)", "../../etc", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb",
                "33:33:00:00:00:01", "00:00:00:00:00:00", None, 525400123456]


def test_the_magic_packet_is_six_ff_bytes_then_the_mac_sixteen_times():
    packet = wol.magic_packet("52:54:00:12:34:56")
    assert packet == bytes.fromhex("ffffffffffff" + "525400123456" * 16)
    assert len(packet) == wol.PACKET_SIZE == 102


@pytest.mark.parametrize("spelling", ["52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", " 52:54:00:ab:cd:ef "])
def test_the_usual_spellings_of_one_mac_give_the_same_packet(spelling):
    assert wol.magic_packet(spelling) == b"\xff" * 6 + b"\x52\x54\x00\xab\xcd\xef" * 16


@pytest.mark.parametrize("mac", HOSTILE_MACS)
def test_a_value_that_is_no_network_cards_mac_is_refused_naming_mac(mac):
    with pytest.raises(InvalidValue) as error:
        wol.magic_packet(mac)
    assert error.value.field == "mac"


class NoSockets:
    """Stands in for the socket module: opening a socket fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"socket.{name} used although an argument was wrong")


@pytest.mark.parametrize("arguments, field", [
    ({"mac": "52:54:00:12:34:56;reboot"}, "mac"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "mac"),
    ({"broadcast": "10.0.0.255; reboot"}, "broadcast"),
    ({"broadcast": "ff02::1"}, "broadcast"),
    ({"broadcast": "224.0.0.1"}, "broadcast"),
    ({"broadcast": "0.0.0.0"}, "broadcast"),
    ({"broadcast": "lan.example"}, "broadcast"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": "9"}, "port"),
    ({"port": True}, "port"),
    ({"interface": "eth0; reboot"}, "interface"),
    ({"interface": "../../etc"}, "interface"),
    ({"interface": "a-very-long-interface-name"}, "interface"),
    ({"interface": "eth 0"}, "interface"),
])
def test_a_wrong_argument_is_refused_before_a_socket_is_opened(monkeypatch, arguments, field):
    monkeypatch.setattr(wol, "socket", NoSockets())
    with pytest.raises(InvalidValue) as error:
        wol.send_magic_packet(**({"mac": "52:54:00:12:34:56"} | arguments))
    assert error.value.field == field


@pytest.mark.parametrize("value", ["10.0.1.255", "255.255.255.255", "192.168.7.23"])
def test_a_lan_broadcast_the_limited_broadcast_or_one_pcs_address_may_be_the_target(value):
    assert wol.validate_broadcast(value) == value


BASE = {"EDUCLOUD_HOST_NAME": "cc-1", "EDUCLOUD_ROLES": "cc", "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
        "EDUCLOUD_CLOUD_CLC_URL": "http://10.0.0.1:8000",
        "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"}


def test_a_cluster_controller_wakes_on_the_limited_broadcast_by_default_and_on_its_lan_when_configured():
    default = load_config(BASE)
    assert (default.wake_broadcast, default.wake_interface) == ("255.255.255.255", "")
    configured = load_config(BASE | {"EDUCLOUD_CC_WAKE_BROADCAST": "10.0.1.255", "EDUCLOUD_CC_WAKE_INTERFACE": "eth1"})
    assert (configured.wake_broadcast, configured.wake_interface) == ("10.0.1.255", "eth1")


@pytest.mark.parametrize("variable, value", [("EDUCLOUD_CC_WAKE_BROADCAST", "ff02::1"),
                                             ("EDUCLOUD_CC_WAKE_BROADCAST", "lan"),
                                             ("EDUCLOUD_CC_WAKE_INTERFACE", "eth1;reboot")])
def test_a_wrong_wake_setting_stops_the_start_naming_it(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_config(BASE | {variable: value})
