"""Hosts and servers announcing themselves, and reading the cloud's status back."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

from clc.services import authz
from clc.services.status import as_datetime, host_key, server_fields, server_key
from luhyaapi.messages import HostRegistration, ServerRegistration
from luhyadb.choices import HostKindChoices, KeyStateChoices, LivenessChoices
from luhyadb.choices import ResourceTypeChoices as Type
from luhyadb.models import Host, HostCredential, Server

logger = logging.getLogger(__name__)

SERVER_FIELDS = ("name", "role", "ip", "mac", "cluster", "api_url", "state", "heartbeat_seconds", "cpus", "memory_mb",
                 "disk_mb", "free_cpus", "free_memory_mb", "free_disk_mb", "cpu_usage")
HOST_FIELDS = ("name", "mac", "ip", "cluster", "location", "state", "heartbeat_seconds", "memory_mb", "disk_mb",
               "auto_sync", "auto_poweroff", "offline_enabled", "is_pad")


def register_server(registration: ServerRegistration) -> Server:
    """Add or refresh a server that announced itself; it is online from now on."""
    fields = server_fields(registration) | {"state": LivenessChoices.ONLINE, "last_seen": as_datetime(time.time())}
    server, created = Server.objects.update_or_create(role=registration.role, name=registration.name, defaults=fields)
    logger.info("registry: %s server %s:%s at %s", "new" if created else "known", server.role, server.name, server.ip)
    return server


def register_host(registration: HostRegistration) -> Host:
    """Add or refresh a classroom PC that powered on; it is online from now on. A PC without an owner-group gets
    the one of the join token its key came with, if any."""
    host, created = Host.objects.update_or_create(
        mac=registration.mac,
        defaults={"name": registration.name, "ip": registration.ip, "cluster": registration.cluster,
                  "memory_mb": registration.memory_mb, "disk_mb": registration.disk_mb,
                  "heartbeat_seconds": registration.heartbeat_seconds, "state": LivenessChoices.ONLINE,
                  "last_seen": as_datetime(time.time())})
    if host.owner_group_id is None:  # a PC enrolled with a join token goes where the token says
        group = (HostCredential.objects.filter(kind=HostKindChoices.PC, mac=host.mac, state=KeyStateChoices.ACTIVE)
                 .exclude(owner_group=None).values_list("owner_group", flat=True).first())
        if group is not None:
            Host.objects.filter(pk=host.pk).update(owner_group_id=group)
    cache.delete(host_key(host.mac))  # the registration is newer than a cached report (which may say offline)
    logger.info("registry: %s host %s (%s) at %s", "new" if created else "known", host.name, host.mac, host.ip)
    return host


def _overlay(record: dict, live: dict | None, now: float) -> dict:
    """Prefer the cache's newer liveness and free resources over the database's (written less often)."""
    if live:
        record["state"] = live.get("state", record["state"])
        record["last_seen"] = live["last_seen"]
        free = live.get("free")
        if free:
            record.update(free_cpus=free["cpus"], free_memory_mb=free["memory_mb"], free_disk_mb=free["disk_mb"])
        record["cpu_usage"] = live.get("cpu_usage", record.get("cpu_usage"))
        record["last_command"] = live.get("last_command", "")
    record["age_seconds"] = round(now - record["last_seen"], 1) if record["last_seen"] else None
    return record


def may_see_status(actor: authz.Actor) -> bool:
    """The system status is for who may read servers (the root's administrators) or classroom PCs (their own)."""
    return authz.may_type(actor, "read", Type.SERVER) or authz.may_type(actor, "read", Type.HOST)


def cloud_status(actor: authz.Actor | None, *, role: str = "", state: str = "", limit: int = 500,
                 offset: int = 0) -> dict:
    """The services and hosts ``actor`` may read (everything for a signed role of the cloud, ``None``) with state,
    last seen and resources, newest facts from the cache."""
    now = time.time()
    servers = Server.objects.all() if actor is None else authz.readable(actor, Server.objects.all())
    if role:
        servers = servers.filter(role=role)
    if state:
        servers = servers.filter(state=state)
    total = servers.count()
    rows = []
    for server in servers[offset:offset + limit]:
        row = {field: getattr(server, field) for field in SERVER_FIELDS}
        row["last_seen"] = server.last_seen.timestamp() if server.last_seen else None
        rows.append(row)
    live = cache.get_many([server_key(row["role"], row["name"]) for row in rows])
    services = [_overlay(row, live.get(server_key(row["role"], row["name"])), now) for row in rows]

    hosts = []
    host_rows = list((Host.objects.all() if actor is None else authz.readable(actor, Host.objects.all()))[:limit])
    live_hosts = cache.get_many([host_key(host.mac) for host in host_rows])
    for host in host_rows:
        row = {field: getattr(host, field) for field in HOST_FIELDS}
        row["last_seen"] = host.last_seen.timestamp() if host.last_seen else None
        hosts.append(_overlay(row, live_hosts.get(host_key(host.mac)), now))
    return {"generated_at": now, "count": total, "limit": limit, "offset": offset, "services": services,
            "hosts": hosts}
