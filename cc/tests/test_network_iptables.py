"""The cluster controller's iptables chains, applied for real inside network namespaces: a student, the cluster
controller (public side and a LAN bridge) and, on that LAN, a node and a VM.

    student 203.0.113.10 --pub0-- 203.0.113.1 cc (eip 203.0.113.50 aliased) lan 10.20.0.1 --+-- nc 10.20.0.2
                                                                                              +-- vm 10.20.0.3
The cc forwards packets, and its FORWARD policy is DROP, so traffic passes only through the accepts we install.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cc.network import addresses, iptables
from cc.network.iptables import ElasticIp, PortForward, RuleConflict
from luhyaapi.validators import InvalidValue
from tests.netns import Namespace, Network, missing_requirements, run_in

STUDENT, CC_PUBLIC, EIP = "203.0.113.10", "203.0.113.1", "203.0.113.50"
CC_LAN, NC, VM = "10.20.0.1", "10.20.0.2", "10.20.0.3"

# Serves on every port given: answers each connection with "<label> <the peer's address>".
SERVE = """
import selectors, socket, sys
label, ports = sys.argv[1], sys.argv[2:]
selector = selectors.DefaultSelector()
for port in ports:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", int(port)))
    listener.listen()
    selector.register(listener, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        connection, peer = key.fileobj.accept()
        with connection:
            connection.sendall(f"{label} {peer[0]}\\n".encode())
"""
# Connects to host:port and prints the one line the server answers.
ASK = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as connection:
    print(connection.makefile().readline().strip())
"""


@pytest.fixture
def lan(monkeypatch, tmp_path):
    reason = missing_requirements("iptables", "iptables-restore", "iptables-save", "sysctl")
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(iptables, "LOCK_DIR", tmp_path)
    with Network() as net:
        student, cc, nc, vm = (net.namespace(role) for role in ("student", "cc", "nc", "vm"))
        net.veth(student, "pub0", cc, "pub0", a_cidr=f"{STUDENT}/24", b_cidr=f"{CC_PUBLIC}/24")
        net.bridge(cc, "lan", cidr=f"{CC_LAN}/24")
        net.plug(cc, "lan", nc, "lan0", cidr=f"{NC}/24")
        net.plug(cc, "lan", vm, "lan0", cidr=f"{VM}/24")
        for host in (nc, vm):
            host.ip("route", "add", "default", "via", CC_LAN)
        cc.sysctl("net.ipv4.ip_forward", "1")
        cc.run(["iptables", "-w", "-P", "FORWARD", "DROP"])
        yield net, {"student": student, "cc": cc, "nc": nc, "vm": vm}


def serve(net: Network, namespace: Namespace, label: str, *ports: int) -> None:
    server = net.popen(namespace, [sys.executable, "-c", SERVE, label, *map(str, ports)], stdout=subprocess.PIPE,
                       text=True)
    assert server.stdout.readline().strip() == "ready"


def ask(namespace: Namespace, host: str, port: int) -> str | None:
    """The server's answer, or None when the connection fails."""
    result = run_in(namespace, [sys.executable, "-c", ASK, host, str(port)], check=False, timeout=10)
    return result.stdout.strip() if result.returncode == 0 else None


def saved(namespace: Namespace) -> str:
    """The namespace's whole ruleset, without the comment lines and counters that change between two saves."""
    text = run_in(namespace, ["iptables-save"]).stdout
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in text.splitlines() if not line.startswith("#"))


def test_a_port_forward_reaches_the_node_which_sees_the_students_address(lan):
    net, hosts = lan
    serve(net, hosts["nc"], "nc", 80)
    assert ask(hosts["student"], CC_PUBLIC, 8080) is None

    iptables.apply([PortForward(CC_PUBLIC, 8080, NC, 80)], netns=hosts["cc"].name)

    assert ask(hosts["student"], CC_PUBLIC, 8080) == f"nc {STUDENT}"
    # Through the OUTPUT jump the cluster controller reaches its own forward too.
    assert ask(hosts["cc"], CC_PUBLIC, 8080) is not None
    # Only the forwarded port passes: the node's port 80 is not reachable from the student directly.
    assert ask(hosts["student"], NC, 80) is None


def test_an_elastic_ip_carries_all_traffic_in_and_the_vms_own_connections_out(lan):
    net, hosts = lan
    cc = hosts["cc"].name
    serve(net, hosts["vm"], "vm", 22, 8000)
    serve(net, hosts["student"], "student", 9000)
    assert addresses.ensure_alias("pub0", EIP, netns=cc) is True

    iptables.apply([ElasticIp(EIP, VM)], netns=cc)

    assert ask(hosts["student"], EIP, 22) == f"vm {STUDENT}"
    assert ask(hosts["student"], EIP, 8000) == f"vm {STUDENT}"
    assert ask(hosts["vm"], STUDENT, 9000) == f"student {EIP}"
    # The node next to the VM is not behind the elastic IP: its connections leave with its own address.
    assert ask(hosts["nc"], STUDENT, 9000) is None


def test_apply_sets_exactly_the_given_rules_and_leaves_foreign_rules_alone(lan):
    net, hosts = lan
    cc = hosts["cc"]
    serve(net, hosts["nc"], "nc", 80, 3389)
    foreign = [["-t", "nat", "-A", "PREROUTING", "-d", "198.51.100.1/32", "-j", "RETURN"],
               ["-t", "nat", "-N", "OTHER"], ["-t", "nat", "-A", "OTHER", "-s", "198.51.100.2/32", "-j", "RETURN"],
               ["-A", "FORWARD", "-s", "198.51.100.3/32", "-j", "DROP"]]
    for rule in foreign:
        cc.run(["iptables", "-w", *rule])
    before = saved(cc)
    big = [PortForward(CC_PUBLIC, 8080, NC, 80), PortForward(CC_PUBLIC, 8081, NC, 3389),
           PortForward(CC_PUBLIC, 5353, NC, 53, "udp"), ElasticIp(EIP, VM)]

    iptables.apply(big, netns=cc.name)
    first = saved(cc)
    iptables.apply(list(reversed(big)), netns=cc.name)

    assert saved(cc) == first
    for builtin, chain in (("PREROUTING", "EDUCLOUD-PRE"), ("OUTPUT", "EDUCLOUD-PRE"),
                           ("POSTROUTING", "EDUCLOUD-POST"), ("FORWARD", "EDUCLOUD-FWD")):
        assert first.count(f"-A {builtin} -j {chain}\n") == 1
    assert iptables.current(netns=cc.name) == frozenset(big)
    assert ask(hosts["student"], CC_PUBLIC, 8081) == f"nc {STUDENT}"

    small = [PortForward(CC_PUBLIC, 8080, NC, 80)]
    iptables.apply(small, netns=cc.name)

    assert iptables.current(netns=cc.name) == frozenset(small)
    after = saved(cc)
    for gone in ("--dport 8081", "3389", "udp", EIP, VM):
        assert gone not in after
    assert ask(hosts["student"], CC_PUBLIC, 8081) is None
    assert ask(hosts["student"], CC_PUBLIC, 8080) == f"nc {STUDENT}"
    for line in before.splitlines():
        assert line in after

    iptables.remove_all(netns=cc.name)

    assert saved(cc) == before
    assert iptables.current(netns=cc.name) is None
    iptables.remove_all(netns=cc.name)
    assert saved(cc) == before


def test_a_doubled_jump_or_a_hand_edited_rule_is_noticed_and_repaired(lan):
    _, hosts = lan
    cc = hosts["cc"]
    rules = [PortForward(CC_PUBLIC, 8080, NC, 80)]
    iptables.apply(rules, netns=cc.name)
    clean = saved(cc)

    cc.run(["iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", "EDUCLOUD-PRE"])
    assert iptables.current(netns=cc.name) is None
    iptables.apply(rules, netns=cc.name)
    assert saved(cc) == clean

    cc.run(["iptables", "-w", "-A", "EDUCLOUD-FWD", "-j", "ACCEPT"])
    assert iptables.current(netns=cc.name) is None
    iptables.apply(rules, netns=cc.name)
    assert saved(cc) == clean
    assert iptables.current(netns=cc.name) == frozenset(rules)


@pytest.mark.parametrize("make", [
    lambda: PortForward("1.2.3.4; reboot", 80, NC, 80),
    lambda: PortForward(CC_PUBLIC, 70000, NC, 80),
    lambda: PortForward(CC_PUBLIC, 0, NC, 80),
    lambda: PortForward(CC_PUBLIC, "80", NC, 80),
    lambda: PortForward(CC_PUBLIC, True, NC, 80),
    lambda: PortForward(CC_PUBLIC, 8080, "10.20.0.2 -j ACCEPT", 80),
    lambda: PortForward(CC_PUBLIC, 8080, NC, 80, "icmp"),
    lambda: PortForward(CC_PUBLIC, 8080, "::1", 80),
    lambda: ElasticIp(EIP, "10.20.0.3/24"),
    lambda: ElasticIp("203.0.113.050", VM),
    lambda: addresses.ensure_alias("eth0 -j ACCEPT", EIP),
    lambda: addresses.ensure_alias("../x", EIP),
    lambda: addresses.ensure_alias("pub0", EIP, prefix=33),
    lambda: addresses.remove_alias("pub0", "1.2.3.4; reboot"),
    lambda: iptables.apply([], netns="../x"),
    lambda: iptables.current(netns="cc; reboot"),
], ids=lambda _: "")
def test_hostile_values_are_refused_before_any_command_runs(monkeypatch, make):
    def no_command(*args, **kwargs):
        raise AssertionError(f"a command ran: {args}")

    monkeypatch.setattr(subprocess, "run", no_command)
    monkeypatch.setattr(subprocess, "Popen", no_command)
    with pytest.raises(InvalidValue):
        make()


def test_clashing_or_foreign_rules_are_refused_before_any_command_runs(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail(f"a command ran: {args}"))
    clashes = [
        [PortForward(CC_PUBLIC, 8080, NC, 80), PortForward(CC_PUBLIC, 8080, VM, 80)],
        [ElasticIp(EIP, VM), ElasticIp(EIP, NC)],
        [ElasticIp(EIP, VM), ElasticIp("203.0.113.51", VM)],
        [ElasticIp(EIP, VM), PortForward(EIP, 8080, NC, 80)],
    ]
    for rules in clashes:
        with pytest.raises(RuleConflict):
            iptables.apply(rules)
    with pytest.raises(TypeError):
        iptables.apply([("203.0.113.1", 8080, NC, 80)])
    # The same rule twice, or a TCP and a UDP forward of one port, are no clash.
    assert iptables._checked([PortForward(CC_PUBLIC, 53, NC, 53), PortForward(CC_PUBLIC, 53, NC, 53),
                              PortForward(CC_PUBLIC, 53, NC, 53, "udp")]) == [
        PortForward(CC_PUBLIC, 53, NC, 53), PortForward(CC_PUBLIC, 53, NC, 53, "udp")]
