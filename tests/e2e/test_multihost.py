"""eduCloud across hosts, in network namespaces the test makes itself: a CLC (with walrus), a CC with a public and a
private interface, a node behind it, a student outside and a pupil's PC on the cluster LAN. The real roles run in
their namespaces, and the test image boots in each network mode of the design notes:

- private mode, reached by the student outside: a virtual server (bridged, its address reserved by the CC's dnsmasq,
  reached at its elastic IP) and a remote desktop (NAT on the node, its console and page forwarded from ``cc_eip``);
- public mode, reached by the pupil on the LAN ("lanuser"): a virtual server at its reserved LAN address, a remote
  desktop at ``nc_ip:port`` (the node's leased ports, forwarded into the VM by QEMU), and no elastic IP, alias or
  DNAT on the CC.

Stopping them leaves no rule, lease, reservation or alias; a restarted CC puts its rules back once; and a wake-on-LAN
request reaches the node's namespace.

Public mode is modelled as a school has it: the nodes' network is the one the pupils' PCs are on (the school LAN,
"public" to the cluster's users though not to the internet), so its user is a PC plugged into the LAN's switch. The
student on the public switch has no route into the LAN and the CC forwards nothing for it in this mode (the test
checks that ``cc_eip:port`` does not answer).

    public switch 192.0.2.0/24 (bridge "pub" in namespace "sw")
      clc      eth0 192.0.2.2       clc,walrus; route to 10.20.0.0/24 via the CC
      cc       pub0 192.0.2.10      cc_eip, elastic IPs 192.0.2.50-59 aliased here
      student  eth0 192.0.2.100     the user of private mode, outside; no route to the LAN
    cluster LAN 10.20.0.0/24 (bridge "lan" in namespace "sw")
      cc       lan0 10.20.0.1       dnsmasq (DHCP 10.20.0.100-109), ip_forward=1 (in its namespace only)
      nc       br0  10.20.0.11      lan0 (its port to the switch) enslaved, its MAC kept by br0; bridged VMs join
                                    by taps; default via .1
      lanuser  eth0 10.20.0.200     the user of public mode, a pupil's PC on the LAN; no route beyond it

The CC and the node enrol with join tokens issued on the CLC host (``manage.py issue_join_token`` run in the CLC's
namespace), the node through its CC. The CC registers with its LAN address (``host.ip`` = 10.20.0.1, the one its
nodes use, so its ``api_url`` is ``http://10.20.0.1:port``); the CLC reaches that address through a route via the
CC's public interface, as a CLC routed to its clusters would. The administrator's calls are logged in to the
console's API (``ConsoleClient``). RabbitMQ listens on the machine's loopback only: each namespace reaches it through
a forwarder on its own 127.0.0.1:5672 and a Unix socket (``Network.forward``). The test's own calls run on threads
that entered the student's, the pupil's (or the node's) namespace, so no address or interface is added to the
machine's own network and every packet stays inside these namespaces. Needs root, iproute2, iptables, dnsmasq, QEMU
and RabbitMQ; skipped otherwise, with the reason printed.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from clc.services.apps import SEAMLESS_SHELL
from luhyaapi.client import RemoteError
from luhyaapi.wol import PACKET_SIZE, magic_packet
from tests.netns import Namespace, NamespaceThread, Network, missing_requirements, wait_until
from tests.rabbitmq import scratch_vhost
from tests.services import (
    ADMIN_USER,
    ConsoleClient,
    RoleProcess,
    build_test_image,
    kill_vms_under,
    processes_mentioning,
)

pytestmark = [pytest.mark.e2e]

CLC_IP, CC_EIP, STUDENT_IP = "192.0.2.2", "192.0.2.10", "192.0.2.100"
CC_LAN_IP, NC_IP, LANUSER_IP = "10.20.0.1", "10.20.0.11", "10.20.0.200"
NC_MAC = "52:54:00:20:00:11"
CLUSTER = "cluster1"
NETWORK = {
    "cluster": CLUSTER, "kind": "vs", "mode": "private",
    "cc_eip": CC_EIP, "cc_public_interface": "pub0", "cc_internal_ip": CC_LAN_IP, "cc_private_interface": "lan0",
    "lan_subnet": "10.20.0.0/24", "lan_gateway": "", "dhcp_start": "10.20.0.100", "dhcp_end": "10.20.0.109",
    "eip_start": "192.0.2.50", "eip_end": "192.0.2.59", "port_low": 6400, "port_high": 6499, "node_bridge": "br0",
}


class Cloud:
    """The running hosts, the namespaces they run in, and the users' views: the student's outside (the
    administrator's API calls are made from its namespace) and the pupil's on the cluster LAN (``lanuser``)."""

    def __init__(self, net: Network, spaces: dict[str, Namespace], hosts: dict[str, RoleProcess],
                 student: NamespaceThread, lanuser: NamespaceThread, image: Path) -> None:
        self.net, self.ns, self.hosts, self.image = net, spaces, hosts, image
        self.student, self.lanuser = student, lanuser
        self.client = ConsoleClient(hosts["clc"].url)

    def get(self, path: str) -> dict:
        return self.student.call(self.client.get, path)

    def post(self, path: str, payload: dict) -> dict:
        return self.student.call(self.client.post, path, payload)

    def patch(self, path: str, payload: dict) -> dict:
        return self.student.call(self.client.request, "PATCH", path, payload)

    def delete(self, path: str) -> dict:
        return self.student.call(self.client.request, "DELETE", path)

    def cc_rules(self) -> list[str]:
        """Every line of the CC's iptables that is ours or jumps to ours (``iptables-save``, counters left out)."""
        listing = self.ns["cc"].run(["iptables-save"]).stdout
        return [line for line in listing.splitlines() if line.startswith("-A") and "EDUCLOUD" in line]

    def cc_rows(self, table: str, columns: str = "*") -> list[tuple]:
        """The CC's records (its own SQLite file, read-only)."""
        db = self.hosts["cc"].dir / "educloud.sqlite3"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            return connection.execute(f"SELECT {columns} FROM {table}").fetchall()  # noqa: S608 (fixed names)

    def cc_network(self) -> dict:
        """The CC's copy of its cluster's network settings (the CLC's ``cc-config/``); empty before its first fetch."""
        rows = self.cc_rows("cc_networksettings", "settings")
        return json.loads(rows[0][0]) if rows else {}

    def dhcp_file(self, name: str) -> str:
        """One of the CC's dnsmasq files (``dnsmasq.hosts``, ``.leases``, ``.log``); empty if not written yet."""
        path = self.hosts["cc"].dir / "cc" / "dhcp" / name
        return path.read_text() if path.exists() else ""

    def pub_aliases(self) -> str:
        return self.ns["cc"].run(["ip", "-4", "-o", "addr", "show", "dev", "pub0"]).stdout


@pytest.fixture(scope="module")
def cloud():
    reason = missing_requirements("iptables", "iptables-save", "dnsmasq", "qemu-system-x86_64", "rabbitmqctl")
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    image = build_test_image()
    # Not under pytest's own temporary directory (private to root): dnsmasq drops root and must still reach its
    # reservations under the CC's data dir.
    workdir = Path(tempfile.mkdtemp(prefix="educloud-multihost-"))
    workdir.chmod(0o755)
    try:
        yield from _cloud(workdir, image)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cloud(workdir: Path, image: Path):
    with scratch_vhost("educloud-multihost") as bus_url, Network() as net:
        hosts: dict[str, RoleProcess] = {}
        threads: list[NamespaceThread] = []
        try:
            spaces = _topology(net)
            socket_path = str(workdir / "amqp.sock")
            net.forward(None, f"unix:{socket_path}", "tcp:127.0.0.1:5672")
            for role in ("clc", "cc", "nc"):
                net.forward(spaces[role], "tcp:127.0.0.1:5672", f"unix:{socket_path}")
            cloud_settings = {"heartbeat_seconds": "1", "missed_heartbeats": "5"}
            hosts["clc"] = RoleProcess(workdir, "clc", "clc,walrus", {"cloud": cloud_settings, "bus": {"url": bus_url}},
                                       netns=spaces["clc"].name, ip=CLC_IP)
            hosts["clc"].start().wait_listening()
            hosts["cc"] = RoleProcess(
                workdir, "cc", "cc",
                {"cloud": cloud_settings | {"clc_url": hosts["clc"].url}, "bus": {"url": bus_url, "cloud_url": bus_url},
                 "cc": {"manage_network": "true", "wake_broadcast": "10.20.0.255", "wake_interface": "lan0"}},
                netns=spaces["cc"].name, ip=CC_LAN_IP,
                join_token=hosts["clc"].issue_join_token(roles="cc", cluster=CLUSTER))
            hosts["nc"] = RoleProcess(
                workdir, "nc", "nc",
                {"cloud": cloud_settings | {"cc_url": hosts["cc"].url}, "bus": {"url": bus_url},
                 "host": {"mac": NC_MAC}, "nc": {"stop_timeout_seconds": "5"}},
                netns=spaces["nc"].name, ip=NC_IP,
                join_token=hosts["clc"].issue_join_token(roles="nc", cluster=CLUSTER))
            for host in (hosts["cc"], hosts["nc"]):
                host.start()
            for host in (hosts["cc"], hosts["nc"]):
                host.wait_listening()
            student, lanuser = NamespaceThread(spaces["student"]), NamespaceThread(spaces["lanuser"])
            threads += [student, lanuser]
            yield Cloud(net, spaces, hosts, student, lanuser, image)
        finally:
            for thread in threads:
                thread.close()
            for host in hosts.values():
                host.stop()
            leftovers = kill_vms_under(workdir)
            for name, host in hosts.items():
                print(f"----- {name} log -----\n{host.tail(25)}")
            assert not leftovers, f"VM processes were left running: {leftovers}"


def _topology(net: Network) -> dict[str, Namespace]:
    spaces = {role: net.namespace(role) for role in ("sw", "clc", "cc", "nc", "student", "lanuser")}
    sw, clc, cc, nc, student, lanuser = (spaces[role] for role in ("sw", "clc", "cc", "nc", "student", "lanuser"))
    net.bridge(sw, "pub")
    net.plug(sw, "pub", clc, "eth0", cidr=f"{CLC_IP}/24")
    net.plug(sw, "pub", cc, "pub0", cidr=f"{CC_EIP}/24")
    net.plug(sw, "pub", student, "eth0", cidr=f"{STUDENT_IP}/24")
    net.bridge(sw, "lan")
    net.plug(sw, "lan", cc, "lan0", cidr=f"{CC_LAN_IP}/24")
    net.plug(sw, "lan", nc, "lan0", mac=NC_MAC)
    net.plug(sw, "lan", lanuser, "eth0", cidr=f"{LANUSER_IP}/24")
    net.bridge(nc, "br0", f"{NC_IP}/24", mac=NC_MAC)  # as a node's bridge has: its NIC's MAC, whatever taps join
    nc.ip("link", "set", "lan0", "master", "br0")
    nc.ip("route", "add", "default", "via", CC_LAN_IP)
    clc.ip("route", "add", "10.20.0.0/24", "via", CC_EIP)
    cc.sysctl("net.ipv4.ip_forward", "1")
    return spaces


def _wait(what: str, probe, timeout: float = 90.0, every: float = 0.5):
    return wait_until(probe, timeout=timeout, what=what, interval=every)


def _instance(cloud: Cloud, insid: str) -> dict | None:
    try:
        return cloud.get(f"/clc/api/1.0/instances/{insid}/")
    except RemoteError as exc:
        if exc.status == 404:
            return None
        raise


def _wait_state(cloud: Cloud, insid: str, state: str, timeout: float = 90.0) -> dict:
    def probe():
        instance = _instance(cloud, insid)
        if instance and instance["state"] == "failed":
            pytest.fail(f"instance {insid} failed: {instance['message']}")
        return instance if instance and instance["state"] == state else None

    return _wait(f"{insid} to be {state}", probe, timeout)


def _page(url: str) -> str | None:
    try:
        response = requests.get(url, timeout=3)
    except requests.RequestException:
        return None
    return response.text if response.status_code == 200 else None


def _banner(host: str, port: int) -> bytes | None:
    """The first bytes a VNC server sends (``RFB 003.008\\n``), or None if nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(3)
            return sock.recv(12)
    except OSError:
        return None


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].rstrip("/").rpartition(":")
    return host, int(port)


def _upload_image(cloud: Cloud) -> dict:
    """The test image uploaded from the student's namespace, as the console's upload page does it (walrus's
    pre-signed data URL)."""
    return cloud.student.call(cloud.client.upload_image, cloud.image, "eduCloud test VM")


def _run(cloud: Cloud, image: dict, kind: str, name: str) -> dict:
    insid = cloud.post("/clc/api/1.0/instances/", {
        "name": name, "kind": kind, "image": image["image_id"], "vm_type": "tiny", "owner_group": "edu",
        "services": [80]})["instance_id"]
    started = time.monotonic()
    cloud.post(f"/clc/api/1.0/instances/{insid}/run/", {})
    running = _wait_state(cloud, insid, "running")
    print(f"{kind} {insid} (mac {running['mac']}) running on {running['node']} in {time.monotonic() - started:.1f} s;"
          f" access {running['access']}")
    return running


def _stop(cloud: Cloud, insid: str) -> None:
    cloud.post(f"/clc/api/1.0/instances/{insid}/stop/", {})
    _wait_state(cloud, insid, "stopped")


def _cc_idle(cloud: Cloud) -> bool:
    """The CC holds nothing: our chains empty (the jumps to them stay), no lease, no elastic IP alias."""
    rules = [line for line in cloud.cc_rules() if line.startswith("-A EDUCLOUD")]
    return (not rules and not cloud.cc_rows("cc_portlease") and not cloud.cc_rows("cc_addresslease")
            and "192.0.2.50/32" not in cloud.pub_aliases())


def _switch(cloud: Cloud, kind: str, mode: str) -> None:
    """Set the cluster's kind and mode on the CLC, so that the CC's next run uses them (every run request carries
    them). A change of mode alone is also waited for in the CC's copy (its network loop fetches every 60 s), so
    that what the CC applies between runs is the new mode's too."""
    cloud.patch(f"/clc/api/1.0/networks/{CLUSTER}/", {"kind": kind, "mode": mode})
    if cloud.cc_network().get("kind", kind) == kind:
        _wait(f"the CC to fetch mode {mode}", lambda: cloud.cc_network().get("mode", mode) == mode, 100, 1)


def _no_forwards(cloud: Cloud) -> list[str]:
    """Assert that the CC's chains are empty: no DNAT, SNAT or filter rule of ours. Returns what is left of ours in
    its iptables (the jumps to the chains)."""
    rules = [line for line in cloud.cc_rules() if line.startswith("-A EDUCLOUD")]
    assert not rules, rules
    return cloud.cc_rules()


def _pub_addresses(cloud: Cloud) -> list[str]:
    return [line.split()[3] for line in cloud.pub_aliases().splitlines()]


@pytest.fixture(scope="module")
def image(cloud: Cloud) -> dict:
    """The cloud ready for instances: every service online, the cluster's network record made (``NETWORK``, a VS
    cluster in private mode) and the test image uploaded to walrus from the student's namespace."""
    _wait("every service online", lambda: {(s["role"], s["state"]) for s in cloud.get("/clc/api/1.0/status/")[
        "services"]} >= {("nc", "online"), ("walrus", "online"), ("cc", "online")}, timeout=60)
    listing = cloud.get("/clc/api/1.0/servers/")
    servers = {(s["role"], s["name"]): s["api_url"] or s["ip"] for s in listing.get("results", listing)}
    print(f"registered servers: {servers}")
    cloud.post("/clc/api/1.0/networks/", NETWORK)
    record = _upload_image(cloud)
    print(f"image {record['image_id']} uploaded to walrus from the student's namespace")
    return record


def test_in_private_mode_vs_and_rvd_instances_are_reached_from_outside_through_the_cc_and_leave_nothing_behind(
        cloud, image):
    _switch(cloud, "vs", "private")

    # A virtual server: bridged on the LAN, its address reserved by the CC's dnsmasq, reached at its elastic IP.
    vs = _run(cloud, image, "vs", "Virtual server")
    assert vs["access"]["http"] == "http://192.0.2.50/", vs["access"]
    page = _wait("the VS's page at its elastic IP", lambda: cloud.student.call(_page, vs["access"]["http"]))
    assert "eduCloud test VM" in page and '<b id="ip">10.20.0.100</b>' in page, page
    print(f"student -> {vs['access']['http']}: {page.split('<title>')[1].split('<')[0]!r}, guest address 10.20.0.100")
    dhcp = cloud.hosts["cc"].dir / "cc" / "dhcp"
    reservation = (dhcp / "dnsmasq.hosts").read_text()
    assert f"{vs['mac']},10.20.0.100," in reservation, reservation
    lease = _wait("the VS's DHCP lease", lambda: next((line for line in (dhcp / "dnsmasq.leases").read_text()
                                                       .splitlines() if vs["mac"] in line), None), 10)
    assert " 10.20.0.100 " in lease, lease
    acks = [line for line in (dhcp / "dnsmasq.log").read_text().splitlines() if "DHCPACK" in line]
    assert any(f"10.20.0.100 {vs['mac']}" in line for line in acks), acks
    print(f"dnsmasq: reservation {reservation.strip()!r}; lease {lease!r}")
    console = _address(vs["console_url"])
    assert console[0] == CC_EIP, vs["console_url"]
    banner = _wait("the VS's console through cc_eip", lambda: cloud.student.call(_banner, *console), 30)
    assert banner.startswith(b"RFB "), banner
    print(f"student -> {console[0]}:{console[1]} (console): {banner!r}")
    rules = cloud.cc_rules()
    expected = {"-A EDUCLOUD-PRE -d 192.0.2.50/32 -j DNAT --to-destination 10.20.0.100",
                "-A EDUCLOUD-POST -s 10.20.0.100/32 -j SNAT --to-source 192.0.2.50",
                f"-A EDUCLOUD-PRE -d {CC_EIP}/32 -p tcp -m tcp --dport {console[1]} -j DNAT "
                f"--to-destination {NC_IP}:{console[1]}",
                "-A PREROUTING -j EDUCLOUD-PRE", "-A POSTROUTING -j EDUCLOUD-POST", "-A FORWARD -j EDUCLOUD-FWD"}
    assert expected <= set(rules) and len(set(rules)) == len(rules), rules
    assert "192.0.2.50/32" in cloud.pub_aliases()
    print("cc iptables:\n  " + "\n  ".join(rules))

    # The CC dies; meanwhile its chains are flushed and the alias removed. Started again, it puts them back once.
    cloud.hosts["cc"].kill()
    for table, chains in (("nat", ("EDUCLOUD-PRE", "EDUCLOUD-POST")), ("filter", ("EDUCLOUD-FWD",))):
        for chain in chains:
            cloud.ns["cc"].run(["iptables", "-w", "-t", table, "-F", chain])
    cloud.ns["cc"].ip("addr", "del", "192.0.2.50/32", "dev", "pub0")
    assert not [line for line in cloud.cc_rules() if line.startswith("-A EDUCLOUD")]
    cloud.hosts["cc"].start().wait_listening()
    # Its rules go back before its alias does (apply_state's order): wait for both.
    restored = _wait("the restarted CC to re-apply its rules and alias", lambda: set(cloud.cc_rules()) == set(rules)
                     and "192.0.2.50/32" in cloud.pub_aliases() and cloud.cc_rules(), 30)
    assert sorted(restored) == sorted(rules), "each rule exactly once after the restart"
    assert cloud.pub_aliases().count("192.0.2.50/32") == 1
    page = _wait("the VS's page after the CC restart", lambda: cloud.student.call(_page, vs["access"]["http"]), 30)
    print(f"CC restarted: {len(restored)} rules back, each once; the VS's page answers again")

    _stop(cloud, vs["instance_id"])
    _wait("the CC to drop the VS's rules, leases and alias", lambda: _cc_idle(cloud), 30)
    assert vs["mac"] not in (dhcp / "dnsmasq.hosts").read_text()
    print("VS stopped: EDUCLOUD chains empty, no port or address lease, reservation and 192.0.2.50 alias gone")

    # A remote desktop: NAT on the node, its console and page forwarded from cc_eip to the node.
    _switch(cloud, "rvd", "private")
    rvd = _run(cloud, image, "rvd", "Remote desktop")
    console, http = _address(rvd["console_url"]), _address(rvd["access"]["http"])
    assert console[0] == CC_EIP and http[0] == CC_EIP, rvd["access"]
    banner = _wait("the RVD's console through cc_eip", lambda: cloud.student.call(_banner, *console), 30)
    assert banner.startswith(b"RFB "), banner
    page = _wait("the RVD's page through cc_eip", lambda: cloud.student.call(_page, rvd["access"]["http"]))
    assert "eduCloud test VM" in page
    rules = cloud.cc_rules()
    for port in (console[1], http[1]):
        assert (f"-A EDUCLOUD-PRE -d {CC_EIP}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination "
                f"{NC_IP}:{port}") in rules, rules
    print(f"student -> {CC_EIP}:{console[1]} (console): {banner!r}; {rvd['access']['http']}: 'eduCloud test VM'")
    _stop(cloud, rvd["instance_id"])
    _wait("the CC to drop the RVD's forwards", lambda: _cc_idle(cloud), 30)
    print("RVD stopped: EDUCLOUD chains empty, no port lease")


def test_in_public_mode_a_virtual_server_is_reached_on_the_lan_at_its_reserved_address_with_no_eip_or_forward(
        cloud, image):
    _switch(cloud, "vs", "public")
    vs = _run(cloud, image, "vs", "Public virtual server")
    console = _address(vs["console_url"])
    assert console[0] == NC_IP, vs["console_url"]
    assert vs["access"] == {"console": f"vnc://{NC_IP}:{console[1]}", "management": f"vnc://{NC_IP}:{console[1]}",
                            "http": "http://10.20.0.100/"}, vs["access"]
    page = _wait("the VS's page at its LAN address", lambda: cloud.lanuser.call(_page, vs["access"]["http"]))
    assert "eduCloud test VM" in page and '<b id="ip">10.20.0.100</b>' in page, page
    print(f"lanuser -> {vs['access']['http']}: {page.split('<title>')[1].split('<')[0]!r}, guest address 10.20.0.100")
    reservation = cloud.dhcp_file("dnsmasq.hosts")
    assert reservation == f"{vs['mac']},10.20.0.100,{vs['instance_id']}\n", reservation
    # The address is this VM's alone: a VM stopped earlier (which never released its lease) does not keep it.
    lease = _wait("the VS's DHCP lease", lambda: [line for line in cloud.dhcp_file("dnsmasq.leases").splitlines()
                                                  if " 10.20.0.100 " in line], 10)
    assert len(lease) == 1 and vs["mac"] in lease[0], lease
    log = cloud.dhcp_file("dnsmasq.log")
    assert f"DHCPACK(lan0) 10.20.0.100 {vs['mac']}" in log and "not using configured address" not in log
    print(f"dnsmasq: reservation {reservation.strip()!r}; lease {lease[0]!r}")
    banner = _wait("the VS's console at its node", lambda: cloud.lanuser.call(_banner, *console), 30)
    assert banner.startswith(b"RFB 003.008"), banner
    print(f"lanuser -> {NC_IP}:{console[1]} (console): {banner!r}")
    assert cloud.cc_rows("cc_addresslease", "ip, pool") == [("10.20.0.100", "lan")]
    assert _pub_addresses(cloud) == [f"{CC_EIP}/24"], cloud.pub_aliases()
    rules = _no_forwards(cloud)
    assert cloud.student.call(_banner, CC_EIP, console[1]) is None
    print(f"no elastic IP leased or aliased (pub0: {_pub_addresses(cloud)}); cc iptables: {rules}; the student gets"
          f" nothing at {CC_EIP}:{console[1]}")

    _stop(cloud, vs["instance_id"])
    _wait("the CC to drop the VS's lease and reservation", lambda: _cc_idle(cloud), 30)
    assert cloud.dhcp_file("dnsmasq.hosts") == ""
    print("VS stopped: no port or address lease, reservation gone")


def test_in_public_mode_a_remote_desktop_is_reached_at_its_node_and_the_cc_forwards_nothing(cloud, image):
    _switch(cloud, "rvd", "public")
    rvd = _run(cloud, image, "rvd", "Public remote desktop")
    console, http = _address(rvd["console_url"]), _address(rvd["access"]["http"])
    assert console[0] == NC_IP and http[0] == NC_IP, rvd["access"]
    assert rvd["access"] == {"console": f"vnc://{NC_IP}:{console[1]}", "http": f"http://{NC_IP}:{http[1]}/"}
    assert sorted(cloud.cc_rows("cc_portlease", "port, purpose")) == sorted([(console[1], "console"),
                                                                               (http[1], "tcp/80")])
    banner = _wait("the RVD's console at its node", lambda: cloud.lanuser.call(_banner, *console), 30)
    assert banner.startswith(b"RFB 003.008"), banner
    page = _wait("the RVD's page at its node", lambda: cloud.lanuser.call(_page, rvd["access"]["http"]))
    assert "eduCloud test VM" in page
    print(f"lanuser -> {NC_IP}:{console[1]} (console): {banner!r}; {rvd['access']['http']}: 'eduCloud test VM'")
    rules = _no_forwards(cloud)
    nat = cloud.ns["cc"].run(["iptables-save", "-t", "nat"]).stdout
    assert "DNAT" not in nat and f"--dport {console[1]}" not in nat and f"--dport {http[1]}" not in nat, nat
    assert cloud.student.call(_banner, CC_EIP, console[1]) is None
    print(f"cc iptables: {rules} (no DNAT); the student gets nothing at {CC_EIP}:{console[1]}")
    _stop(cloud, rvd["instance_id"])
    _wait("the CC to drop the RVD's port leases", lambda: _cc_idle(cloud), 30)
    print("RVD stopped: no port lease")


def test_wake_on_lan_reaches_the_node_namespace(cloud):
    _wait("the node registered with its MAC", lambda: (lambda s: s and s["mac"] == NC_MAC)(
        _server(cloud, "nc")), 60)
    listener = NamespaceThread(cloud.ns["nc"])
    try:
        sock = listener.call(_udp_socket, 9)
        try:
            sent = cloud.post("/clc/api/1.0/servers/nc/nc/wake/", {})
            packet, sender = sock.recvfrom(1024)
        finally:
            sock.close()
    finally:
        listener.close()
    print(f"wake answered {sent}; the node's namespace got {len(packet)} bytes from {sender[0]}:{sender[1]}")
    assert len(packet) == PACKET_SIZE and packet == magic_packet(NC_MAC)
    assert sender[0] == CC_LAN_IP


def _server(cloud: Cloud, name: str) -> dict | None:
    try:
        return cloud.get(f"/clc/api/1.0/servers/nc/{name}/")
    except RemoteError as exc:
        if exc.status == 404:
            return None
        raise


def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(10)
    return sock


RDP_STAND_IN_PORT = 3389  # xrdp in the node's namespace: no guest of its own runs there


def _rdp_client(cloud: Cloud, space: str, rdp_file: Path) -> subprocess.CompletedProcess[str]:
    """FreeRDP opening ``rdp_file`` from the namespace ``space`` as far as the RDP/TLS handshake and login
    (``/auth-only``; under a virtual X display, which it asks for); its exit status says whether it got there."""
    return cloud.ns[space].run(["xvfb-run", "-a", "xfreerdp", str(rdp_file), "/auth-only", "/cert:ignore", "/p:x"],
                               check=False, timeout=90)


def _rdp_settings(text: str) -> dict[str, str]:
    return {name: value for name, _, value in (line.split(":", 2) for line in text.split("\r\n") if line)}


@pytest.mark.parametrize(("mode", "user"), [("private", "student"), ("public", "lanuser")])
def test_a_guests_remote_desktop_is_forwarded_per_network_mode_and_its_rdp_files_open_with_a_real_rdp_client(
        cloud, image, mode, user, tmp_path):
    """An image whose guests serve RDP: the run forwards 3389 (QEMU into the guest, and in private mode the CC from
    ``cc_eip``), the portal's .rdp file and an app's RemoteApp file carry that address, and FreeRDP's ``xfreerdp``
    completes the RDP handshake with them against ``xrdp``, which stands in for the guest's Remote Desktop at the
    node's end of the forward (the test VM serves no RDP): a rule in the node's namespace hands the forwarded port
    to xrdp before QEMU's listener would take it into the guest. Without that rule (into the guest) and with the run
    stopped, the same file reaches no RDP server."""
    reason = missing_requirements("xrdp", "xfreerdp", "xvfb-run")
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    path = f"/clc/api/1.0/images/{image['image_id']}/"
    cloud.patch(path, {"rdp": True, "apps": [{"name": "Notepad", "program": "||notepad"}]})
    xrdp = cloud.net.popen(cloud.ns["nc"], ["xrdp", "--nodaemon", "--port", str(RDP_STAND_IN_PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stand_in: list[str] = []  # the node's rule that hands the forwarded port to xrdp
    try:
        _switch(cloud, "rvd", mode)
        rvd = _run(cloud, image, "rvd", f"Windows desktop ({mode})")
        insid, host, port = rvd["instance_id"], *_address(rvd["access"]["rdp"])
        assert host == (CC_EIP if mode == "private" else NC_IP), rvd["access"]
        assert (port, "tcp/3389") in cloud.cc_rows("cc_portlease", "port, purpose")
        qemu = [pid for pid in processes_mentioning(insid) if "qemu" in Path(f"/proc/{pid}/comm").read_text()]
        cmdline = Path(f"/proc/{qemu[0]}/cmdline").read_bytes().decode()
        assert f"hostfwd=tcp:{NC_IP}:{port}-:3389" in cmdline  # the node forwards it into the guest
        forward = (f"-A EDUCLOUD-PRE -d {CC_EIP}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination "
                   f"{NC_IP}:{port}")
        assert (forward in cloud.cc_rules()) == (mode == "private"), cloud.cc_rules()
        users = cloud.student if user == "student" else cloud.lanuser
        text = users.call(cloud.client.page, f"/portal/desktops/{insid}/rdp/?screen=1024x768")
        settings = _rdp_settings(text)
        assert (settings["full address"], settings["server port"], settings["username"],
                settings["desktopwidth"]) == (f"{host}:{port}", str(port), ADMIN_USER, "1024"), text
        desktop_file = tmp_path / "desktop.rdp"
        desktop_file.write_text(text)
        # Into the guest, the forward finds no RDP (the test VM serves none): the stand-in is what answers below.
        unserved = _rdp_client(cloud, user, desktop_file)
        assert unserved.returncode != 0, unserved.stderr[-2000:]
        print(f"{user} -> {host}:{port} into the guest (no RDP there): xfreerdp exit {unserved.returncode}")
        stand_in = ["PREROUTING", "-d", f"{NC_IP}/32", "-p", "tcp", "--dport", str(port), "-j", "REDIRECT",
                    "--to-ports", str(RDP_STAND_IN_PORT)]
        cloud.ns["nc"].run(["iptables", "-w", "-t", "nat", "-I", *stand_in])
        _wait("xrdp listening in the node's namespace", lambda: "LISTEN" in cloud.ns["nc"].run(
            ["ss", "-ltn", f"sport = :{RDP_STAND_IN_PORT}"]).stdout, 20)
        page = users.call(cloud.client.page, f"/portal/desktops/{insid}/")
        app_id = re.search(r'id="app-(\d+)"', page)[1]
        app_text = users.call(cloud.client.page, f"/portal/desktops/{insid}/apps/{app_id}/rdp/")
        assert _rdp_settings(app_text)["remoteapplicationprogram"] == "||notepad"
        assert shlex.join(["rdesktop", "-A", SEAMLESS_SHELL, "-s", "notepad", "-u", ADMIN_USER, f"{host}:{port}"]) in (
            html.unescape(page))
        app_file = tmp_path / "notepad.rdp"
        app_file.write_text(app_text)

        for rdp_file in (desktop_file, app_file):
            client = _rdp_client(cloud, user, rdp_file)
            assert client.returncode == 0, client.stdout[-2000:] + client.stderr[-2000:]
            print(f"{user} -> {host}:{port} ({rdp_file.name}): xfreerdp /auth-only exit 0 "
                  f"({[line for line in client.stderr.splitlines() if 'exit status' in line][-1:]})")
        cloud.ns["nc"].run(["iptables", "-w", "-t", "nat", "-D", *stand_in])
        stand_in = []
        _stop(cloud, insid)
        _wait("the CC to drop the desktop's forwards", lambda: _cc_idle(cloud), 30)
        refused = _rdp_client(cloud, user, desktop_file)
        assert refused.returncode != 0, refused.stderr[-2000:]
        print(f"stopped: the same file reaches nothing (xfreerdp exit {refused.returncode})")
    finally:
        if stand_in:
            cloud.ns["nc"].run(["iptables", "-w", "-t", "nat", "-D", *stand_in], check=False)
        xrdp.terminate()
        xrdp.wait(10)
        cloud.patch(path, {"rdp": False, "apps": []})
