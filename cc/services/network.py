"""The cluster's network as its records say it should be: the CLC's settings for this cluster, the address leases
of its instances, and what follows from them on the CC host: DNAT forwards of ``cc_eip:port`` to the nodes
(private mode), elastic IPs (DNAT/SNAT, the address aliased on the public interface) and DHCP reservations of
bridged VMs. Everything is derived from the database and applied whole and idempotently (``apply_network``), after
every change and when the CC starts, so a restart re-applies the rules once and rules of deleted instances are gone.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from django.conf import settings

from cc.models import AddressLease, ClusterInstance, ClusterNode, NetworkSettings, PortLease
from cc.network import addresses, iptables
from cc.network.addresses import AddressPool
from cc.network.dnsmasq import DhcpServer, Reservation
from cc.services.leases import PoolBusy, PoolUsedUp, lease_next_free
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

# The clusters of which "no network settings yet" was said since their settings were last there: said once, not at
# every look.
_said_none: set[str] = set()
# The states in which an instance holds its ports and addresses (the same as the scheduler's).
HOLDING_STATES = ("scheduled", "preparing", "booting", "running", "stopping", "submitting")


class AddressPoolExhausted(LookupError):
    """Every address of a pool is leased."""


@dataclass(frozen=True)
class ClusterNet:
    """This cluster's network settings (the CLC's ``as_cc_config``)."""

    kind: str
    mode: str
    cc_eip: str
    cc_internal_ip: str
    public_interface: str
    private_interface: str
    netmask: str
    port_range: tuple[int, int]
    node_bridge: str = ""
    dhcp: AddressPool | None = None
    eips: AddressPool | None = None
    forward_ports: bool = False
    console_host: str = ""

    @classmethod
    def from_config(cls, data: dict) -> ClusterNet:
        dhcp, eips = data.get("dhcp"), data.get("eip_pool")
        return cls(kind=data["kind"], mode=data["mode"], cc_eip=data["cc_eip"], cc_internal_ip=data["cc_internal_ip"],
                   public_interface=data["interfaces"]["public"], private_interface=data["interfaces"]["private"],
                   netmask=data["lan"]["netmask"], port_range=(data["ports"]["low"], data["ports"]["high"]),
                   node_bridge=data.get("node_bridge") or "",
                   dhcp=AddressPool(dhcp["start"], dhcp["end"]) if dhcp else None,
                   eips=AddressPool(eips["start"], eips["end"]) if eips else None,
                   forward_ports=bool(data.get("forward_ports")), console_host=data.get("console_host") or "")

    def bridges(self, kind: str) -> bool:
        """Whether a VM of ``kind`` joins the LAN bridged (virtual servers, where nodes have a bridge)."""
        return kind == "vs" and bool(self.node_bridge) and self.dhcp is not None


def cluster_network() -> ClusterNet | None:
    """This cluster's network settings as last received from the CLC (with a run request, or fetched by the
    ``cc-network`` daemon), None while the CLC has none (NAT-only defaults from this host's config). Never calls the
    CLC: it is read while requests from the CLC wait for their answer."""
    row = NetworkSettings.objects.filter(cluster=settings.EDUCLOUD.cluster).first()
    return ClusterNet.from_config(row.settings) if row else None


def remember_network(values: dict) -> ClusterNet | None:
    """Keep the CLC's settings for this cluster (``{}``: it has none); written only when they changed, and a
    cluster without settings is said once in the log, not at every look. ValueError when they cannot be read."""
    cluster = settings.EDUCLOUD.cluster
    try:
        net = ClusterNet.from_config(values) if values else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"network settings the CC cannot read: {exc!r} is missing or wrong") from None
    row = NetworkSettings.objects.filter(cluster=cluster).first()
    if net is None:
        if row is not None:
            row.delete()
        if row is not None or cluster not in _said_none:
            logger.info("network: cluster %s has no network settings yet; it runs NAT-only with cc.kinds and "
                        "cc.port_range until they are set on the CLC's Networks page", cluster)
            _said_none.add(cluster)
        return None
    _said_none.discard(cluster)
    if row is None or row.settings != values:
        NetworkSettings.objects.update_or_create(cluster=cluster, defaults={"settings": values})
        logger.info("network: cluster %s's network settings received (%s, %s mode)", cluster, net.kind, net.mode)
    return net


def refresh_network() -> ClusterNet | None:
    """Fetch this cluster's settings from the CLC and keep them (the ``cc-network`` daemon, never a request); the
    last copy is kept while the CLC cannot be reached."""
    config = settings.EDUCLOUD
    client = RoleClient(config.clc_url, own_key())
    try:
        fetched = client.get(f"/clc/api/1.0/networks/{config.cluster}/cc-config/")
    except RemoteError as exc:
        if exc.status == 404:  # a CLC from before ``{}`` meant "no settings"
            return remember_network({})
        logger.warning("network: the CLC did not give this cluster's settings (%s); using the last copy", exc)
        return cluster_network()
    return remember_network(fetched)


def lease_address(insid: str, pool: AddressPool, kind: str, mac: str = "") -> str:
    """Lease the next free address of ``pool`` to ``insid``; AddressPoolExhausted when none is left."""
    try:
        return lease_next_free(AddressLease.objects.all(), "ip", pool.next_free,
                               {"instance_id": insid, "pool": kind, "mac": mac})
    except PoolUsedUp:
        raise AddressPoolExhausted(f"the {kind} address pool {pool.first}-{pool.last} is used up") from None
    except PoolBusy:
        raise AddressPoolExhausted("could not lease an address: the pool is changing too fast, try again") from None


def release_addresses(insid: str) -> int:
    """Give back every address ``insid`` holds."""
    released, _ = AddressLease.objects.filter(instance_id=insid).delete()
    return released


@dataclass
class NetworkState:
    """What the CC host should carry: forwarding rules, DHCP reservations, elastic IPs aliased on its public side."""

    rules: list[iptables.Rule] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)


def desired_state(net: ClusterNet) -> NetworkState:
    """The network state the records call for: for each instance holding resources, its ports forwarded from
    ``cc_eip`` to its node (private mode), its LAN address reserved for its MAC, its elastic IP forwarded."""
    state = NetworkState()
    holding = {record.instance_id: record for record in ClusterInstance.objects.filter(state__in=HOLDING_STATES)}
    node_ips = dict(ClusterNode.objects.filter(role="nc").values_list("name", "ip"))
    if net.forward_ports:
        for lease in PortLease.objects.filter(instance_id__in=holding):
            node_ip = node_ips.get(holding[lease.instance_id].node)
            if node_ip:
                state.rules.append(iptables.PortForward(public_ip=net.cc_eip, public_port=lease.port,
                                                        target_ip=node_ip, target_port=lease.port))
    leases = list(AddressLease.objects.filter(instance_id__in=holding))
    lan = {lease.instance_id: lease for lease in leases if lease.pool == "lan"}
    for lease in lan.values():
        state.reservations.append(Reservation(mac=lease.mac, ip=lease.ip, hostname=lease.instance_id))
    for lease in leases:
        if lease.pool == "eip" and lease.instance_id in lan:
            state.rules.append(iptables.ElasticIp(eip=lease.ip, lan_ip=lan[lease.instance_id].ip))
            state.aliases.add(lease.ip)
    return state


def dhcp_server(net: ClusterNet) -> DhcpServer:
    """The cluster LAN's DHCP server on the CC's private interface (its files under the CC's data dir)."""
    return DhcpServer(settings.EDUCLOUD.data_dir / "cc" / "dhcp", net.private_interface, net.dhcp.first,
                      net.dhcp.last, net.netmask)


def apply_state(net: ClusterNet, state: NetworkState) -> None:
    """Make the CC host carry ``state``: our iptables chains replaced whole, the DHCP reservations rewritten (leases
    that keep a reserved address from its NIC dropped, the server started if needed), elastic IPs aliased on the
    public interface and the ones no longer leased removed."""
    iptables.apply(state.rules)
    if net.dhcp is not None:
        server = dhcp_server(net)
        server.set_reservations(state.reservations)
        server.drop_blocking_leases(state.reservations)
        server.start()
    if net.eips is not None:
        for ip, prefix in addresses.aliases(net.public_interface):
            if prefix == 32 and ip in net.eips and ip not in state.aliases:
                addresses.remove_alias(net.public_interface, ip)
        for ip in sorted(state.aliases, key=ipaddress.IPv4Address):
            addresses.ensure_alias(net.public_interface, ip)


def apply_network() -> NetworkState | None:
    """Derive the cluster's network from the records and apply it, if this CC manages its host's network
    (``cc.manage_network``) and the CLC has network settings for the cluster; returns what was applied."""
    if not settings.EDUCLOUD.manage_network:
        return None
    net = cluster_network()
    if net is None:
        return None
    state = desired_state(net)
    apply_state(net, state)
    logger.info("network: %d rules, %d DHCP reservations, %d elastic IPs applied", len(state.rules),
                len(state.reservations), len(state.aliases))
    return state
