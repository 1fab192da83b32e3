"""The classroom PC settings of a node controller (``nc.host_mode``, ``nc.kiosk``): off by default, the PC known by
its MAC (the first network card's unless ``host.mac`` says), and refused where they make no sense."""

import pytest

import luhyaapi.config
from luhyaapi.config import ConfigError, load_config
from luhyaapi.hostinfo import first_mac

BASE = {
    "EDUCLOUD_HOST_NAME": "pc-12",
    "EDUCLOUD_ROLES": "nc",
    "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
    "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.1:8000",
    "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent",
}


def test_a_node_controller_is_no_classroom_pc_and_serves_no_kiosk_unless_told():
    config = load_config(BASE)
    assert (config.host_mode, config.kiosk, config.mac) == (False, False, "")


def test_a_classroom_pc_takes_the_mac_of_its_first_network_card_unless_one_is_set():
    if not first_mac():
        pytest.skip("this machine has no network card with a MAC address")
    config = load_config(BASE | {"EDUCLOUD_NC_HOST_MODE": "true", "EDUCLOUD_NC_KIOSK": "true"})
    assert (config.host_mode, config.kiosk, config.mac) == (True, True, first_mac())
    chosen = load_config(BASE | {"EDUCLOUD_NC_HOST_MODE": "yes", "EDUCLOUD_HOST_MAC": "52-54-00-3C-0F-7E"})
    assert chosen.mac == "52:54:00:3c:0f:7e"


def test_a_classroom_pc_without_any_mac_is_refused_naming_host_mac(monkeypatch):
    monkeypatch.setattr(luhyaapi.config, "first_mac", lambda: "")  # a machine without a network card
    with pytest.raises(ConfigError, match=r"host\.mac \(EDUCLOUD_HOST_MAC\).*nc\.host_mode"):
        load_config(BASE | {"EDUCLOUD_NC_HOST_MODE": "true"})


@pytest.mark.parametrize("changes, setting", [
    ({"EDUCLOUD_NC_KIOSK": "true"}, "nc.kiosk"),
    ({"EDUCLOUD_NC_HOST_MODE": "true", "EDUCLOUD_ROLES": "cc", "EDUCLOUD_CLOUD_CLC_URL": "http://10.0.0.1:8000"},
     "nc.host_mode"),
])
def test_the_kiosk_needs_host_mode_and_host_mode_needs_a_node_controller(changes, setting):
    with pytest.raises(ConfigError, match=rf"setting {setting}\b"):
        load_config(BASE | changes)
