"""Network settings of each cluster, kept on the CLC: the rules they must follow (one place, used by the API and the
console alike), saving and deleting them, and the form a CC pulls to set up its DHCP, forwarding and elastic IPs."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from clc.services.instances import BUSY_STATES
from luhyaapi.validators import InvalidValue, validate_name
from luhyadb.choices import InstanceKindChoices, NetworkModeChoices, RoleChoices
from luhyadb.models import ClusterNetwork, Instance, Server

# The settings of a cluster network, in the order pages and messages show them.
NETWORK_FIELDS = ("cluster", "kind", "mode", "cc_eip", "cc_internal_ip", "cc_public_interface",
                  "cc_private_interface", "lan_subnet", "lan_gateway", "dhcp_start", "dhcp_end", "eip_start",
                  "eip_end", "port_low", "port_high", "node_bridge")

# An interface name on a CC or node host (Linux allows 15 bytes). A letter first, so it can never be read as a
# command-line option; no '/', ':' or whitespace, so it never becomes a path, an alias label or two arguments.
INTERFACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")

# Pool ports are unprivileged: below 1024 only root may listen, and the host's own services live there.
PORT_MIN, PORT_MAX = 1024, 65535

# Ports a CC host serves itself, or may serve on an all-in-one host, and which therefore must never be forwarded to
# a VM: remote login, dnsmasq's DNS and DHCP, the web server in front of the API, the database servers, RabbitMQ
# (AMQP, its management UI and its inter-node port), Redis and memcached. The CC's own API port is added per cluster
# from its registration.
CC_SERVICE_PORTS = {
    22: "ssh",
    53: "DNS",
    67: "DHCP server",
    68: "DHCP client",
    80: "HTTP",
    443: "HTTPS",
    3306: "MySQL/MariaDB",
    5432: "PostgreSQL",
    5672: "RabbitMQ",
    6379: "Redis",
    11211: "memcached",
    15672: "RabbitMQ management",
    25672: "RabbitMQ clustering",
}

# The port pool a new cluster's form starts with: at or above 5900 for QEMU consoles, clear of Redis (6379), and
# inside the CC's configured default (5900-6999), so a CC that still uses its own setting hands out the same ports.
SUGGESTED_PORT_POOL = (6400, 6999)


def suggested_port_pool() -> tuple[int, int]:
    """The pool a new cluster's form starts with: on a host that is a CC too (an all-in-one), its own
    ``cc.port_range``, which its first start may have moved off another all-in-one's on the same machine; else
    SUGGESTED_PORT_POOL."""
    config = settings.EDUCLOUD
    return config.port_range if config.has_role("cc") else SUGGESTED_PORT_POOL

# Longer text is never a valid setting; refusing it first keeps messages short and parsing cheap.
_MAX_TEXT = 64


Address = ipaddress.IPv4Address
Pool = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


@dataclass(frozen=True)
class Problem:
    """One broken rule: the field to change and what to change in it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class NetworkInvalid(ValueError):
    """Settings that break one or more rules; ``problems`` lists every one, each naming its field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))

    def by_field(self) -> dict[str, list[str]]:
        """The problems as ``{field: ["field: message", ...]}``, the shape of an API 400 body."""
        fields: dict[str, list[str]] = {}
        for problem in self.problems:
            fields.setdefault(problem.field, []).append(str(problem))
        return fields


class NetworkInUse(Exception):
    """A network that running instances depend on cannot be deleted (HTTP 409)."""

    status = 409


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _span(start: Address, end: Address) -> str:
    return f"{start}-{end}"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


class _Checker:
    """Reads the raw settings field by field, keeping what parses and a Problem for what does not."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.raw = fields
        self.problems: list[Problem] = []
        for key in fields:
            if key not in NETWORK_FIELDS:
                self.refuse(str(key)[:40], f"not a network setting; the settings are {', '.join(NETWORK_FIELDS)}")

    def refuse(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def text(self, field: str, *, required: bool, what: str) -> str | None:
        value = self.raw.get(field)
        if value is None or value == "":
            if required:
                self.refuse(field, f"required: give {what}")
            return None
        if not isinstance(value, str):
            self.refuse(field, f"must be text: {what}")
            return None
        value = value.strip()
        if not value and required:
            self.refuse(field, f"required: give {what}")
            return None
        if len(value) > _MAX_TEXT:
            self.refuse(field, f"{_shown(value)} is too long to be {what}")
            return None
        return value or None

    def choice(self, field: str, choices: type) -> str | None:
        what = "one of " + ", ".join(choices.values)
        value = self.text(field, required=True, what=what)
        if value is not None and value not in choices.values:
            self.refuse(field, f"{_shown(value)} is not {what}")
            return None
        return value

    def address(self, field: str, *, required: bool, what: str) -> Address | None:
        value = self.text(field, required=required, what=what)
        if value is None:
            return None
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            self.refuse(field, f"{_shown(value)} is not an IPv4 address (like 10.20.0.1): give {what}")
            return None
        if address.is_unspecified or address.is_multicast or address.is_reserved:
            self.refuse(field, f"{address} is not a host address (unspecified, multicast or reserved): give {what}")
            return None
        return address

    def interface(self, field: str, *, required: bool, what: str) -> str | None:
        value = self.text(field, required=required, what=what)
        if value is not None and not INTERFACE_RE.fullmatch(value):
            self.refuse(field, f"{_shown(value)} is not an interface name (a letter, then up to 14 letters, digits, "
                               "'.', '_' or '-'; like eth0, br0 or enp3s0)")
            return None
        return value

    def subnet(self, field: str) -> ipaddress.IPv4Network | None:
        value = self.text(field, required=True, what="the cluster LAN in CIDR form, like 10.20.0.0/24")
        if value is None:
            return None
        if "/" not in value:
            self.refuse(field, f"{_shown(value)} has no prefix length; write the LAN in CIDR form, like 10.20.0.0/24")
            return None
        try:
            network = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            self.refuse(field, f"{_shown(value)} is not an IPv4 subnet in CIDR form, like 10.20.0.0/24")
            return None
        if str(network.network_address) != value.partition("/")[0]:
            self.refuse(field, f"{value} has host bits set; did you mean {network}?")
            return None
        if network.prefixlen > 30:
            self.refuse(field, f"{network} has no room for a gateway, the CC and VMs; use a /30 or larger subnet")
            return None
        return network

    def port(self, field: str) -> int | None:
        value = self.raw.get(field)
        if value is None or value == "":
            self.refuse(field, f"required: give a port from {PORT_MIN} to {PORT_MAX}")
            return None
        if isinstance(value, str):
            value = value.strip()
            # The length check comes first: int() of a very long digit string is slow or refused outright.
            if not (value.isascii() and value.isdigit() and len(value) <= 5):
                self.refuse(field, f"{_shown(value)} is not a port: give a whole number from {PORT_MIN} to {PORT_MAX}")
                return None
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.refuse(field, f"{_shown(value)} is not a port: give a whole number from {PORT_MIN} to {PORT_MAX}")
            return None
        if not PORT_MIN <= value <= PORT_MAX:
            self.refuse(field, f"{value} is outside {PORT_MIN}-{PORT_MAX}: pool ports are unprivileged (below "
                               f"{PORT_MIN} only root may listen, and the host's own services live there)")
            return None
        return value


def cc_api_ports(cluster: str) -> dict[int, str]:
    """The ports the CC of ``cluster`` serves its API on, from its registration (none if it has not registered),
    each with the URL it came from."""
    ports: dict[int, str] = {}
    for api_url in Server.objects.filter(role=RoleChoices.CC, cluster=cluster).exclude(api_url="").values_list(
            "api_url", flat=True):
        try:
            parts = urlsplit(api_url)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            continue
        if port:
            ports[port] = api_url
    return ports


def validate_network(fields: Mapping[str, object], *, instance: ClusterNetwork | None = None) -> dict[str, object]:
    """Check a cluster's network settings against every rule and return them ready to store: addresses in their
    canonical text, ports as numbers, an empty ``lan_gateway`` replaced by ``cc_internal_ip``, an empty pool as
    None. ``instance`` is the record being changed (its cluster cannot change, and its own pools are not another
    cluster's). Raises NetworkInvalid listing every problem found, each naming its field and what to change."""
    check = _Checker(fields)
    cluster = check.text("cluster", required=True, what="the cluster's name")
    if cluster is not None:
        try:
            validate_name(cluster, "cluster")
        except InvalidValue as exc:
            check.refuse("cluster", exc.message)
            cluster = None
    kind = check.choice("kind", InstanceKindChoices)
    mode = check.choice("mode", NetworkModeChoices)
    cc_eip = check.address("cc_eip", required=True, what="the CC's public address, the one users reach")
    cc_internal = check.address("cc_internal_ip", required=True, what="the CC's address on the cluster LAN")
    public_if = check.interface("cc_public_interface", required=True, what="the CC's public interface, like eth0")
    private_if = check.interface("cc_private_interface", required=True, what="the CC's LAN interface, like eth1")
    lan = check.subnet("lan_subnet")
    gateway = check.address("lan_gateway", required=False, what="the LAN's router (empty = the CC's LAN address)")
    dhcp = _pool(check, "dhcp_start", "dhcp_end", "DHCP pool")
    eip = _pool(check, "eip_start", "eip_end", "elastic IP pool")
    port_low, port_high = check.port("port_low"), check.port("port_high")
    bridge = check.interface("node_bridge", required=False, what="the bridge on the nodes, like br0")

    if cluster is not None:
        _check_cluster(check, cluster, instance)
    if lan is not None:
        _check_lan(check, lan, cc_internal, gateway, dhcp)
    if gateway is None:
        gateway = cc_internal
    if kind == InstanceKindChoices.VS and bridge is None and "node_bridge" not in _fields(check):
        check.refuse("node_bridge", "required for a virtual server cluster (kind vs): its VMs are bridged onto the "
                                    "LAN; name the bridge on the nodes, like br0")
    if bridge is not None and dhcp is None and not {"dhcp_start", "dhcp_end"} & _fields(check):
        check.refuse("dhcp_start", f"required when node_bridge is set: bridged VMs get their LAN address from the "
                                   f"DHCP pool; give dhcp_start and dhcp_end{_inside(lan)}")
    if eip is not None:
        _check_eip(check, eip, cc_eip, lan, dhcp)
    if port_low is not None and port_high is not None:
        _check_ports(check, port_low, port_high, cluster)
    if cc_eip is not None or eip is not None:
        _check_other_clusters(check, cc_eip, eip, cluster, instance)

    if check.problems:
        raise NetworkInvalid(check.problems)
    return {
        "cluster": cluster, "kind": kind, "mode": mode, "cc_eip": str(cc_eip), "cc_internal_ip": str(cc_internal),
        "cc_public_interface": public_if, "cc_private_interface": private_if, "lan_subnet": str(lan),
        "lan_gateway": str(gateway),
        "dhcp_start": str(dhcp[0]) if dhcp else None, "dhcp_end": str(dhcp[1]) if dhcp else None,
        "eip_start": str(eip[0]) if eip else None, "eip_end": str(eip[1]) if eip else None,
        "port_low": port_low, "port_high": port_high, "node_bridge": bridge or "",
    }


def _fields(check: _Checker) -> set[str]:
    return {problem.field for problem in check.problems}


def _inside(lan: ipaddress.IPv4Network | None) -> str:
    return f" inside {lan}" if lan is not None else ""


def _pool(check: _Checker, start_field: str, end_field: str, name: str) -> Pool | None:
    """Both ends of an optional address pool, (start, end), or None when both are empty."""
    start = check.address(start_field, required=False, what=f"the first address of the {name}")
    end = check.address(end_field, required=False, what=f"the last address of the {name}")
    if start_field in _fields(check) or end_field in _fields(check):
        return None
    if start is None and end is None:
        return None
    if start is None or end is None:
        empty, given = (start_field, end_field) if start is None else (end_field, start_field)
        check.refuse(empty, f"empty while {given} is set; give both ends of the {name}, or neither for none")
        return None
    if start > end:
        check.refuse(end_field, f"{end} comes before {start_field} {start}; the {name} runs from start to end, so "
                                "swap them")
        return None
    return start, end


def _check_cluster(check: _Checker, cluster: str, instance: ClusterNetwork | None) -> None:
    if instance is not None and cluster != instance.cluster:
        check.refuse("cluster", f"the network of cluster {instance.cluster} cannot move to another cluster; delete "
                                f"it and create one for {cluster}")
    elif instance is None and ClusterNetwork.objects.filter(cluster=cluster).exists():
        check.refuse("cluster", f"cluster {cluster} already has network settings; edit those instead")


def _check_lan(check: _Checker, lan: ipaddress.IPv4Network, cc_internal: Address | None, gateway: Address | None,
               dhcp: Pool | None) -> None:
    """Addresses that must be usable hosts of the LAN, and a DHCP pool clear of the gateway and the CC. ``gateway``
    is None when it was left empty (it is then the CC's LAN address, checked once as cc_internal_ip)."""
    usable = f"pick one from {lan[1]} to {lan[-2]}"
    for field, address in (("cc_internal_ip", cc_internal), ("lan_gateway", gateway),
                           ("dhcp_start", dhcp[0] if dhcp else None), ("dhcp_end", dhcp[1] if dhcp else None)):
        if address is None:
            continue
        if address not in lan:
            check.refuse(field, f"{address} is outside the LAN subnet {lan}; {usable}")
        elif address == lan.network_address:
            check.refuse(field, f"{address} is the network address of {lan}, not a host; {usable}")
        elif address == lan.broadcast_address:
            check.refuse(field, f"{address} is the broadcast address of {lan}, not a host; {usable}")
    if dhcp is None or {"dhcp_start", "dhcp_end"} & _fields(check):
        return
    # Both ends are usable hosts of the LAN, so the pool already misses its network and broadcast addresses.
    # Keyed by address, so a gateway that is the CC itself is named once.
    inside = {address: name for name, address in (("the CC's LAN address cc_internal_ip", cc_internal),
                                                  ("the LAN gateway", gateway))
              if address is not None and dhcp[0] <= address <= dhcp[1]}
    for address, name in inside.items():
        check.refuse("dhcp_start", f"the DHCP pool {_span(*dhcp)} contains {name} {address}; start the pool after "
                                   "it or end it before it")


def _check_eip(check: _Checker, eip: Pool, cc_eip: Address | None, lan: ipaddress.IPv4Network | None,
               dhcp: Pool | None) -> None:
    """The elastic IP pool holds public addresses for VMs: not the CC's own, and nothing of the cluster LAN."""
    pool = _span(*eip)
    if cc_eip is not None and eip[0] <= cc_eip <= eip[1]:
        check.refuse("eip_start", f"the elastic IP pool {pool} contains cc_eip {cc_eip}, the CC's own public "
                                  "address; move the pool or cc_eip")
    if dhcp is not None and _overlap((int(eip[0]), int(eip[1])), (int(dhcp[0]), int(dhcp[1]))):
        check.refuse("eip_start", f"the elastic IP pool {pool} overlaps the DHCP pool {_span(*dhcp)}; elastic IPs "
                                  "are public addresses, keep them apart from the LAN pool")
    elif lan is not None and _overlap((int(eip[0]), int(eip[1])), (int(lan[0]), int(lan[-1]))):
        check.refuse("eip_start", f"the elastic IP pool {pool} overlaps the LAN subnet {lan}; elastic IPs are public "
                                  "addresses outside the cluster LAN")


def _check_ports(check: _Checker, low: int, high: int, cluster: str | None) -> None:
    """The pool's ports are forwarded to VMs, so none of them may be a port the CC host serves itself."""
    if low > high:
        check.refuse("port_high", f"{high} is below port_low {low}; the pool runs from port_low to port_high")
        return
    taken = [f"{port} ({service})" for port, service in sorted(CC_SERVICE_PORTS.items()) if low <= port <= high]
    if taken:
        check.refuse("port_low", f"the port pool {low}-{high} contains {', '.join(taken)}, served by the CC host "
                                 "itself; choose a range clear of them")
    if cluster is None:
        return
    for port, api_url in sorted(cc_api_ports(cluster).items()):
        if low <= port <= high and port not in CC_SERVICE_PORTS:
            check.refuse("port_low", f"the port pool {low}-{high} contains {port}, the port of the CC's API "
                                     f"({api_url}); choose a range clear of it")


def _check_other_clusters(check: _Checker, cc_eip: Address | None, eip: Pool | None, cluster: str | None,
                          instance: ClusterNetwork | None) -> None:
    """The clusters of one cloud share the public network: no two may claim the same public address. The record
    being changed, and any of the same cluster (a duplicate, refused on its own), are not "other"."""
    others = ClusterNetwork.objects.exclude(cluster=cluster or "")
    if instance is not None:
        others = others.exclude(pk=instance.pk)
    for other in others:
        other_eip = (Address(other.eip_start), Address(other.eip_end)) if other.eip_start and other.eip_end else None
        other_cc_eip = Address(other.cc_eip)
        if cc_eip is not None and cc_eip == other_cc_eip:
            check.refuse("cc_eip", f"{cc_eip} is already the public address of cluster {other.cluster}'s CC; each CC "
                                   "needs its own")
        elif cc_eip is not None and other_eip and other_eip[0] <= cc_eip <= other_eip[1]:
            check.refuse("cc_eip", f"{cc_eip} is in cluster {other.cluster}'s elastic IP pool {_span(*other_eip)}; "
                                   "choose an address outside it")
        if eip is None:
            continue
        if other_eip and _overlap((int(eip[0]), int(eip[1])), (int(other_eip[0]), int(other_eip[1]))):
            check.refuse("eip_start", f"the elastic IP pool {_span(*eip)} overlaps cluster {other.cluster}'s elastic "
                                      f"IP pool {_span(*other_eip)}; clusters share the public network, so their "
                                      "pools must not overlap")
        if eip[0] <= other_cc_eip <= eip[1]:
            check.refuse("eip_start", f"the elastic IP pool {_span(*eip)} contains {other_cc_eip}, the public address "
                                      f"of cluster {other.cluster}'s CC; move the pool")


def network_settings(network: ClusterNetwork) -> dict[str, object]:
    """A stored network's settings as ``validate_network`` takes them (the base of a partial change)."""
    return {field: getattr(network, field) for field in NETWORK_FIELDS}


def save_network(fields: Mapping[str, object], *, instance: ClusterNetwork | None = None) -> ClusterNetwork:
    """Validate ``fields`` (see ``validate_network``) and store them as a new cluster network, or over ``instance``.
    Raises NetworkInvalid, and then stores nothing."""
    with transaction.atomic():
        # The cross-cluster rules read every other network: lock them so two saves cannot both take one address.
        list(ClusterNetwork.objects.select_for_update().values_list("pk", flat=True))
        values = validate_network(fields, instance=instance)
        network = instance if instance is not None else ClusterNetwork()
        for field, value in values.items():
            setattr(network, field, value)
        network.save()
    return network


def busy_instances(network: ClusterNetwork) -> list[str]:
    """Ids of the instances that hold ports or addresses of this cluster now."""
    return list(Instance.objects.filter(cluster=network.cluster, state__in=BUSY_STATES)
                .order_by("instance_id").values_list("instance_id", flat=True))


def delete_network(network: ClusterNetwork) -> None:
    """Delete a cluster's network settings. Raises NetworkInUse while instances of the cluster are running (they
    hold its ports and addresses)."""
    with transaction.atomic():
        busy = busy_instances(network)
        if busy:
            raise NetworkInUse(f"cluster {network.cluster} has {len(busy)} instance(s) running or on their way "
                               f"({', '.join(busy[:5])}); stop them before deleting its network")
        network.delete()


def network_of(cluster: str) -> ClusterNetwork | None:
    """The network settings of ``cluster``, or None if it has none yet."""
    return ClusterNetwork.objects.filter(cluster=cluster).first()


def unconfigured_clusters() -> list[str]:
    """Clusters whose CC has registered but which have no network settings yet."""
    configured = ClusterNetwork.objects.values_list("cluster", flat=True)
    return sorted(set(Server.objects.filter(role=RoleChoices.CC).exclude(cluster__in=configured)
                      .values_list("cluster", flat=True)))


def as_cc_config(network: ClusterNetwork) -> dict:
    """What the CC of ``network.cluster`` needs to set its network up, as plain JSON values: its addresses and
    interfaces, the LAN (with netmask), the DHCP and elastic IP pools (None when there are none), the port pool,
    the node bridge, and how users reach consoles: ``forward_ports`` says whether the CC forwards
    ``console_host:port`` to the node (private mode; LVD desktops run on the user's own PC and are never forwarded),
    otherwise users connect to the node's own address."""
    lan = ipaddress.IPv4Network(network.lan_subnet)
    forward = network.mode == NetworkModeChoices.PRIVATE and network.kind != InstanceKindChoices.LVD
    return {
        "cluster": network.cluster,
        "kind": network.kind,
        "mode": network.mode,
        "cc_eip": network.cc_eip,
        "cc_internal_ip": network.cc_internal_ip,
        "interfaces": {"public": network.cc_public_interface, "private": network.cc_private_interface},
        "lan": {"subnet": str(lan), "netmask": str(lan.netmask), "prefix": lan.prefixlen,
                "gateway": network.lan_gateway},
        "dhcp": {"start": network.dhcp_start, "end": network.dhcp_end} if network.dhcp_start else None,
        "eip_pool": {"start": network.eip_start, "end": network.eip_end} if network.eip_start else None,
        "ports": {"low": network.port_low, "high": network.port_high},
        "node_bridge": network.node_bridge,
        "forward_ports": forward,
        "console_host": network.cc_eip if forward else "",
        "updated": network.updated.isoformat() if network.updated else None,
    }


def cc_config_of(cluster: str) -> dict:
    """The settings of ``cluster`` as its CC takes them (``as_cc_config``), or ``{}`` while it has none: a cluster
    without settings is a normal state (its CC runs NAT-only on its own defaults), not an error."""
    network = network_of(cluster)
    return as_cc_config(network) if network is not None else {}
