"""The cluster LAN's DHCP server: a real dnsmasq in a "server" namespace handing the reserved address to a real DHCP
client (busybox udhcpc) in a "client" namespace, on a veth whose MAC is reserved."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cc.network import dnsmasq
from cc.network.dnsmasq import DhcpError, DhcpServer, Lease, Reservation
from luhyaapi.validators import InvalidValue
from tests.netns import Network, missing_requirements, wait_until

MAC = "52:54:00:12:34:56"
SERVER_CIDR = "10.30.0.1/24"

# udhcpc runs this at each event: it sets the address it was given and appends "<event> <address>" to HOOK_LOG.
HOOK = """
import os, subprocess, sys
event, interface = sys.argv[1], os.environ["interface"]
if event in ("deconfig", "bound", "renew"):
    subprocess.run(["ip", "-4", "addr", "flush", "dev", interface], check=True)
if event in ("bound", "renew"):
    subprocess.run(["ip", "addr", "add", os.environ["ip"] + "/" + os.environ["mask"], "dev", interface], check=True)
with open(os.environ["HOOK_LOG"], "a") as log:
    log.write(event + " " + os.environ.get("ip", "") + "\\n")
"""


@pytest.fixture
def data_dir():
    """A data directory dnsmasq's unprivileged account can reach (pytest's tmp_path sits under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="educloud-dhcp-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def lan():
    reason = missing_requirements("dnsmasq", "busybox")
    if reason:
        pytest.skip(reason)
    with Network() as net:
        server, client = net.namespace("dhcp"), net.namespace("client")
        net.veth(server, "dhcp0", client, "eth0", a_cidr=SERVER_CIDR, b_mac=MAC)
        yield net, server, client


def server_for(data_dir: Path, netns: str, **options) -> DhcpServer:
    return DhcpServer(data_dir, "dhcp0", "10.30.0.100", "10.30.0.150", "255.255.255.0", netns=netns, **options)


def reads(data_dir: Path) -> int:
    """How often dnsmasq has read the reservations file, by its log."""
    return (data_dir / "dnsmasq.log").read_text().count(f"read {data_dir}/dnsmasq.hosts")


def bound(hook_log: Path, ip: str):
    def check():
        return hook_log.exists() and f"bound {ip}" in hook_log.read_text().splitlines()
    return check


def test_the_client_gets_its_reserved_address_and_a_new_one_after_a_change(lan, data_dir, tmp_path):
    net, server_ns, client_ns = lan
    server = server_for(data_dir, server_ns.name)
    assert server.set_reservations([(MAC, "10.30.0.77", "vm-1")]) is True

    assert server.start() is True
    pid = server.pid()
    assert server.running() and pid is not None
    assert server.set_reservations([(MAC.upper(), "10.30.0.77", "vm-1")]) is False
    # Started twice, by this object or by a restarted controller: the running dnsmasq is adopted, not doubled.
    assert server.start() is False
    assert server_for(data_dir, server_ns.name).start() is False
    assert server.pid() == pid and len(server_ns.pids()) == 1

    hook, hook_log = tmp_path / "hook.py", tmp_path / "hook.log"
    hook.write_text(f"#!{sys.executable}\n{HOOK}")
    hook.chmod(0o755)
    client = net.popen(client_ns, ["busybox", "udhcpc", "-f", "-i", "eth0", "-s", str(hook), "-t", "10", "-T", "1"],
                       env={**os.environ, "HOOK_LOG": str(hook_log)}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    wait_until(bound(hook_log, "10.30.0.77"), timeout=15, what="the client to bind 10.30.0.77")
    assert "10.30.0.77/24" in client_ns.ip("-4", "addr", "show", "dev", "eth0").stdout
    assert [(lease.mac, lease.ip, lease.hostname) for lease in server.leases()] == [(MAC, "10.30.0.77", "vm-1")]

    assert server.set_reservations([Reservation(MAC, "10.30.0.88", "vm-1")]) is True
    # dnsmasq re-reads on its next turn of its loop; a renewal it answers before that keeps the old address.
    wait_until(lambda: reads(data_dir) == 2, timeout=5, what="dnsmasq to re-read the reservations")
    os.kill(client.pid, signal.SIGUSR1)
    wait_until(bound(hook_log, "10.30.0.88"), timeout=15, what="the client to bind 10.30.0.88 after renewing")
    assert [(lease.mac, lease.ip) for lease in server.leases()] == [(MAC, "10.30.0.88")]
    assert server.pid() == pid
    # One read of the reservations at start and one per change: the unchanged set sent no SIGHUP.
    assert reads(data_dir) == 2

    assert server.stop() is True
    assert not server.running() and not (data_dir / "dnsmasq.pid").exists()
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert [pid for pid in server_ns.pids() if Path(f"/proc/{pid}/cmdline").read_bytes()] == []
    assert server.stop() is False


def test_a_client_without_a_reservation_gets_no_address_of_the_pool(lan, data_dir):
    _, server_ns, client_ns = lan
    server = server_for(data_dir, server_ns.name)
    server.set_reservations([("52:54:00:aa:bb:cc", "10.30.0.77", "vm-2")])
    server.start()
    try:
        # dnsmasq pings a dynamic address for a few seconds before offering it: 6 tries leave it time to.
        asked = client_ns.run(["busybox", "udhcpc", "-n", "-q", "-i", "eth0", "-t", "6", "-T", "1", "-s",
                               "/bin/true"], check=False, timeout=30)
        log = (data_dir / "dnsmasq.log").read_text()
        assert f"DHCPDISCOVER(dhcp0) {MAC} no address available" in log
        assert "DHCPOFFER" not in log and asked.returncode != 0
        assert server.leases() == []
    finally:
        server.stop()


def test_a_server_started_with_other_options_is_replaced(lan, data_dir):
    _, server_ns, _ = lan
    old = server_for(data_dir, server_ns.name)
    old.start()
    old_pid = old.pid()
    new = server_for(data_dir, server_ns.name, lease_time="1h")

    assert new.start() is True
    assert new.pid() not in (None, old_pid)
    arguments = Path(f"/proc/{new.pid()}/cmdline").read_bytes().decode().split("\0")
    assert "--dhcp-range=10.30.0.100,static,255.255.255.0,1h" in arguments
    assert not dnsmasq._alive(old_pid)
    new.stop()


def test_start_says_why_dnsmasq_cannot_run(lan, data_dir):
    _, server_ns, _ = lan
    with pytest.raises(DhcpError, match="network access"):
        DhcpServer(data_dir, "nosuch0", "10.30.0.100", "10.30.0.150", "255.255.255.0", netns=server_ns.name).start()

    hidden = data_dir / "private"
    hidden.mkdir(mode=0o700)
    with pytest.raises(DhcpError, match="cannot enter"):
        server_for(hidden / "dhcp", server_ns.name).start()
    assert server_ns.pids() == []


@pytest.mark.parametrize("reservations", [
    [("52:54:00:12:34:56; reboot", "10.30.0.77")],
    [("01:00:5e:00:00:01", "10.30.0.77")],
    [(MAC, "10.30.0.77\n52:54:00:00:00:01,10.30.0.78")],
    [(MAC, "10.30.0.77", "vm 1")],
    [(MAC, "10.30.0.77", "vm,1")],
    [(MAC, "10.31.0.77")],
    [(MAC, "10.30.0.255")],
    [(MAC, "10.30.0.77"), (MAC, "10.30.0.78")],
    [(MAC, "10.30.0.77"), ("52:54:00:00:00:01", "10.30.0.77")],
], ids=lambda _: "")
def test_bad_reservations_are_refused_before_the_file_is_written(data_dir, reservations):
    server = DhcpServer(data_dir, "dhcp0", "10.30.0.100", "10.30.0.150", "255.255.255.0")
    with pytest.raises(InvalidValue):
        server.set_reservations(reservations)
    assert not server.hosts_file.exists()


@pytest.mark.parametrize("options", [
    {"interface": "eth0 -j ACCEPT"}, {"interface": "../x"}, {"interface": "a" * 16},
    {"range_start": "10.30.0.100,10.30.0.200"}, {"range_end": "10.31.0.150"}, {"range_end": "10.30.0.99"},
    {"netmask": "255.0.255.0"}, {"lease_time": "60"}, {"lease_time": "12h --dhcp-script=/x"},
    {"data_dir": "/tmp/a,b"}, {"data_dir": "/tmp/a b"}, {"user": "root --x"}, {"netns": "../x"},
], ids=lambda _: "")
def test_hostile_options_are_refused_before_any_command_runs(monkeypatch, data_dir, options):
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail(f"a command ran: {args}"))
    fields = {"data_dir": data_dir, "interface": "dhcp0", "range_start": "10.30.0.100", "range_end": "10.30.0.150",
              "netmask": "255.255.255.0"} | options
    with pytest.raises(InvalidValue):
        DhcpServer(**fields)


def test_reservations_are_written_atomically_readable_and_sorted(data_dir):
    server = DhcpServer(data_dir / "sub", "dhcp0", "10.30.0.100", "10.30.0.150", "255.255.255.0")
    assert server.set_reservations([("52:54:00:00:00:02", "10.30.0.12"), ("52-54-00-00-00-01", "10.30.0.11", "a")])
    assert server.hosts_file.read_text() == "52:54:00:00:00:01,10.30.0.11,a\n52:54:00:00:00:02,10.30.0.12\n"
    assert stat.S_IMODE(server.hosts_file.stat().st_mode) == 0o644
    assert server.set_reservations([]) is True
    assert server.hosts_file.read_text() == ""
    assert [path.name for path in server.data_dir.iterdir()] == ["dnsmasq.hosts"]


def test_leases_are_read_from_dnsmasqs_lease_file(data_dir):
    server = DhcpServer(data_dir, "dhcp0", "10.30.0.100", "10.30.0.150", "255.255.255.0")
    assert server.leases() == []
    expires = int(time.time()) + 3600
    server.lease_file.write_text(f"{expires} {MAC} 10.30.0.77 vm-1 01:{MAC}\n"
                                 "0 52:54:00:00:00:02 10.30.0.101 * *\n"
                                 "garbage line\n"
                                 "duid 00:01:00:01:2c:00:00:00:52:54:00:12:34:56\n")
    assert server.leases() == [Lease(expires, MAC, "10.30.0.77", "vm-1", f"01:{MAC}"),
                               Lease(0, "52:54:00:00:00:02", "10.30.0.101", None, None)]


def test_the_command_line_is_dhcp_only_and_self_contained(data_dir):
    argv = DhcpServer(data_dir, "dhcp0", "10.30.0.100", "10.30.0.150", "255.255.255.0", user="nobody").argv()
    assert argv[0] == dnsmasq.DNSMASQ
    for option in ("--conf-file=/dev/null", "--port=0", "--interface=dhcp0", "--bind-interfaces", "--log-dhcp",
                   "--dhcp-range=10.30.0.100,static,255.255.255.0,12h", "--user=nobody",
                   f"--pid-file={data_dir}/dnsmasq.pid", f"--dhcp-leasefile={data_dir}/dnsmasq.leases",
                   f"--dhcp-hostsfile={data_dir}/dnsmasq.hosts", f"--log-facility={data_dir}/dnsmasq.log"):
        assert option in argv
    assert "--keep-in-foreground" not in argv
