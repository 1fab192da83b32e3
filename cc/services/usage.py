"""What of the cluster's pools is in use: the ports and addresses leased, to which instance and MAC, how many are
free, and whether the cluster's DHCP server runs and holds its port. Read from this CC's records only (no call back
to the CLC: the network settings are the copy kept here)."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from cc.models import AddressLease, ClusterInstance, NetworkSettings, PortLease
from cc.network.addresses import PortPool
from cc.network.dnsmasq import DhcpServer
from cc.services.network import ClusterNet, dhcp_server


def _kept_network() -> ClusterNet | None:
    row = NetworkSettings.objects.filter(cluster=settings.EDUCLOUD.cluster).first()
    return ClusterNet.from_config(row.settings) if row else None


def _pool(name: str, first: str, last: str, size: int, leases: list[dict]) -> dict:
    return {"name": name, "first": first, "last": last, "size": size, "leased": len(leases),
            "free": max(0, size - len(leases)), "leases": leases}


DHCP_PORT = 67


def dhcp_state(server: DhcpServer) -> dict:
    """Whether ``server``'s dnsmasq runs (its pid file's process, checked to be this server's dnsmasq) and holds the
    DHCP port: ``running``, ``pid``, ``interface`` and ``port_67`` (None when its sockets cannot be read)."""
    pid = server.pid()
    return {"running": pid is not None, "pid": pid, "interface": server.interface,
            "port_67": None if pid is None else _holds_udp_port(pid, DHCP_PORT)}


def _holds_udp_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` has a UDP socket bound to ``port``, read from its own view of the network (its
    ``/proc/<pid>/net/udp``, so a dnsmasq in another network namespace is seen too); None when it cannot be read."""
    proc = Path("/proc") / str(pid)
    try:
        table = (proc / "net" / "udp").read_text().splitlines()[1:]
        names = os.listdir(proc / "fd")
    except OSError:
        return None
    sockets = set()
    for name in names:
        try:
            target = os.readlink(proc / "fd" / name)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    for line in table:
        fields = line.split()
        if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in sockets:
            return True
    return False


def cluster_usage() -> dict:
    """The cluster's pools and their leases: ``ports`` (each lease: port, instance, purpose, node), ``addresses``
    (the LAN DHCP pool and elastic IPs: ip, instance, MAC, node) and ``dhcp`` (whether dnsmasq is needed and runs)."""
    config = settings.EDUCLOUD
    net = _kept_network()
    nodes = dict(ClusterInstance.objects.values_list("instance_id", "node"))
    port_pool = PortPool(*(net.port_range if net else config.port_range))
    ports = [{"port": lease.port, "instance_id": lease.instance_id, "purpose": lease.purpose,
              "node": nodes.get(lease.instance_id, "")}
             for lease in PortLease.objects.filter(port__gte=port_pool.low, port__lte=port_pool.high)]
    address_leases = list(AddressLease.objects.all())
    pools = []
    for name, pool in (("lan", net.dhcp if net else None), ("eip", net.eips if net else None)):
        if pool is None:
            continue
        leases = [{"ip": lease.ip, "instance_id": lease.instance_id, "mac": lease.mac,
                   "node": nodes.get(lease.instance_id, "")} for lease in address_leases
                  if lease.pool == name and lease.ip in pool]
        pools.append(_pool(name, pool.first, pool.last, len(pool), leases))
    dhcp = {"needed": bool(net and net.dhcp and config.manage_network), "running": False, "pid": None,
            "port_67": None}
    if net is not None and net.dhcp is not None:
        dhcp |= dhcp_state(dhcp_server(net))
    return {"cluster": config.cluster, "mode": net.mode if net else "nat",
            "ports": _pool("ports", str(port_pool.low), str(port_pool.high), len(port_pool), ports),
            "addresses": pools, "dhcp": dhcp}

