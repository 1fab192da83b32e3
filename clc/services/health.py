"""The health of what the cloud runs on, checked for real when asked (the System status page): the database (a
query), the message broker (a connection), the cache (a value written and read back) and each cluster's DHCP server
(dnsmasq, as its cluster controller finds its process)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection

from clc.services.hosts import MachineError
from clc.services.usage import cluster_usage
from luhyaapi.bus import BusUnavailable, get_bus
from luhyadb.choices import LivenessChoices, RoleChoices
from luhyadb.models import ClusterNetwork, Server

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One check: what was checked, whether it is fine, and what was found (the error text when not)."""

    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    """A query on the cloud's database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return Check("database", False, f"{connection.vendor}: {exc}")
    return Check("database", True, f"{connection.vendor} answers ({connection.settings_dict.get('NAME')})")


def check_broker() -> Check:
    """A new connection to the message broker."""
    try:
        reached = get_bus(settings.EDUCLOUD.bus_url).check()
    except BusUnavailable as exc:
        return Check("broker", False, str(exc))
    return Check("broker", True, f"{reached} accepts connections")


def check_cache() -> Check:
    """A value written to the cache and read back (a cache that is down loses it without raising)."""
    key, value = f"health:{secrets.token_hex(8)}", secrets.token_hex(8)
    try:
        cache.set(key, value, 30)
        found = cache.get(key)
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001 - each cache backend raises its own client's errors
        return Check("cache", False, f"{type(exc).__name__}: {exc}")
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    if found != value:
        return Check("cache", False, f"{backend}: a value written was read back as {found!r}")
    return Check("cache", True, f"{backend}: a value written was read back")


def check_dhcp(cluster: str) -> Check:
    """The cluster's dnsmasq, as its CC finds it (its pid file's process): needed when the cluster hands out LAN
    addresses and its CC manages the network."""
    name = f"dnsmasq ({cluster})"
    try:
        dhcp = cluster_usage(cluster).get("dhcp", {})
    except MachineError as exc:
        return Check(name, False, str(exc))
    if dhcp.get("running"):
        where = f"pid {dhcp.get('pid')} on {dhcp.get('interface', '?')}"
        if dhcp.get("port_67") is False:
            return Check(name, False, f"runs as {where} but holds no DHCP port (UDP 67)")
        return Check(name, True, f"runs as {where}" + ("" if dhcp.get("port_67") else "; its port could not be "
                                                                                       "read"))
    if not dhcp.get("needed"):
        return Check(name, True, "not needed: the cluster hands out no LAN addresses, or its CC does not manage "
                                 "the network")
    return Check(name, False, "not running: bridged instances get no address")


def system_health() -> list[dict]:
    """Every check, in order: database, broker, cache, then dnsmasq of each cluster that has an online CC or
    network settings."""
    clusters = sorted(set(ClusterNetwork.objects.values_list("cluster", flat=True))
                      | set(Server.objects.filter(role=RoleChoices.CC, state=LivenessChoices.ONLINE)
                            .values_list("cluster", flat=True)))
    checks = [check_database(), check_broker(), check_cache(), *(check_dhcp(cluster) for cluster in clusters)]
    for check in checks:
        if not check.ok:
            logger.warning("health: %s: %s", check.name, check.detail)
    return [asdict(check) for check in checks]
