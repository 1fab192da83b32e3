"""The cluster's report of its DHCP server, as the console's health check reads it: a real dnsmasq in a network
namespace is found running and holding UDP port 67; once stopped it is reported not running."""

from __future__ import annotations

from cc.services.usage import dhcp_state
from cc.tests.test_network_dnsmasq import data_dir, lan, server_for  # noqa: F401 - data_dir and lan: fixtures


def test_a_running_dnsmasq_is_found_with_its_pid_and_the_dhcp_port_and_a_stopped_one_is_not(lan, data_dir):  # noqa: F811
    _, server_ns, _ = lan
    server = server_for(data_dir, server_ns.name)
    assert dhcp_state(server) == {"running": False, "pid": None, "interface": "dhcp0", "port_67": None}
    server.start()
    try:
        state = dhcp_state(server)
        assert (state["running"], state["pid"], state["port_67"]) == (True, server.pid(), True)
    finally:
        server.stop()
    assert dhcp_state(server)["running"] is False
