"""The storage controller's settings: the volume store's capacity, its tgtd's iSCSI address and management port,
with defaults that keep clear of the system's tgtd and an error naming each wrong one."""

import pytest

from luhyaapi.config import ConfigError, load_config

BASE = {
    "EDUCLOUD_HOST_NAME": "sc-1",
    "EDUCLOUD_ROLES": "sc",
    "EDUCLOUD_HOST_IP": "10.0.0.5",
    "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
    "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.1:8000",
    "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent",
}


def test_by_default_the_store_takes_its_file_system_and_tgtd_serves_the_hosts_address_on_3261():
    config = load_config(BASE)
    assert (config.sc_capacity_bytes, config.iscsi_listen, config.tgt_control_port) == (0, ("10.0.0.5", 3261), 3260)


def test_the_capacity_address_and_management_port_can_be_set():
    config = load_config(BASE | {"EDUCLOUD_SC_CAPACITY_GB": "1.5", "EDUCLOUD_SC_ISCSI_LISTEN": "0.0.0.0:3260",
                                 "EDUCLOUD_SC_TGT_CONTROL_PORT": "77"})
    assert (config.sc_capacity_bytes, config.iscsi_listen, config.tgt_control_port) == (
        3 * 2**29, ("0.0.0.0", 3260), 77)


@pytest.mark.parametrize("variable, value, named", [
    ("EDUCLOUD_SC_CAPACITY_GB", "-1", "sc.capacity_gb"), ("EDUCLOUD_SC_CAPACITY_GB", "lots", "sc.capacity_gb"),
    ("EDUCLOUD_SC_ISCSI_LISTEN", "3260", "sc.iscsi_listen"),
    ("EDUCLOUD_SC_ISCSI_LISTEN", "::1:3260", "sc.iscsi_listen"),
    ("EDUCLOUD_SC_ISCSI_LISTEN", "10.0.0.5:0", "sc.iscsi_listen"),
    ("EDUCLOUD_SC_ISCSI_LISTEN", "10.0.0.5:70000", "sc.iscsi_listen"),
    ("EDUCLOUD_SC_TGT_CONTROL_PORT", "40000", "sc.tgt_control_port"),
    ("EDUCLOUD_SC_TGT_CONTROL_PORT", "-1", "sc.tgt_control_port"),
])
def test_a_wrong_sc_setting_fails_naming_it(variable, value, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(BASE | {variable: value})
