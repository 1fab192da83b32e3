"""Folding status reports into the cache and the database, marking silent servers offline, and reading it back.

The cache holds the latest report of everything (key ``status:<kind>:<id>``); the database is written only when a
record changes (new server, other address or capacity, state) and, for liveness, at most every
``db_touch_seconds`` per server, so that thousands of identical heartbeats cost one cache write each.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache
from django.db import DatabaseError, connection, transaction

from clc.services.alarm_actions import run_stopped
from clc.services.builds import record_submitted
from clc.services.pools import give_back
from clc.services.volumes import fold_volume_report, release_volumes, run_ended
from luhyaapi.bus import RetryLater
from luhyaapi.ids import InvalidId, TaskId
from luhyaapi.messages import HostStatus, InsStatus, Message, NodeStatus, Resources, ServerRegistration, TaskStatus
from luhyaapi.wording import with_article
from luhyadb.choices import InstanceStateChoices, LivenessChoices, PlacingChoices
from luhyadb.models import Host, Instance, Server, TaskTransaction

logger = logging.getLogger(__name__)

CACHE_TTL_SECONDS = 2 * 24 * 3600


def server_key(role: str, name: str) -> str:
    return f"status:server:{role}:{name}"


def host_key(mac: str) -> str:
    return f"status:host:{mac.replace(':', '')}"


def task_key(tid: str) -> str:
    return f"status:task:{tid}"


def instance_key(insid: str) -> str:
    return f"status:instance:{insid}"


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass
class _Seen:
    """What the folder remembers of one server or host between reports."""

    pk: int
    last_seen: float
    interval: float
    state: str
    digest: tuple
    db_touched: float


def server_fields(report: NodeStatus | ServerRegistration) -> dict:
    capacity = report.capacity
    fields = {"ip": report.ip, "mac": report.mac, "cluster": report.cluster, "api_url": report.api_url,
              "cpus": capacity.cpus, "memory_mb": capacity.memory_mb, "disk_mb": capacity.disk_mb}
    if isinstance(report, NodeStatus):
        fields["heartbeat_seconds"] = report.interval
        fields.update(free_cpus=report.free.cpus, free_memory_mb=report.free.memory_mb,
                      free_disk_mb=report.free.disk_mb, cpu_usage=report.cpu_usage)
    else:
        fields["heartbeat_seconds"] = report.heartbeat_seconds
    return fields


def _update_rows(model, objects: list, fields: list[str]) -> None:
    """``UPDATE ... WHERE id = %s`` prepared once and run for every object (``executemany``): ``bulk_update``'s
    ``CASE WHEN`` per column grows with the square of the batch and takes seconds when the ``db_touch_seconds`` of
    thousands of servers fall due in the same few seconds."""
    ops = connection.ops
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{ops.quote_name(column.column)} = %s" for column in columns)
    sql = f"UPDATE {ops.quote_name(meta.db_table)} SET {assignments} WHERE {ops.quote_name(meta.pk.column)} = %s"
    rows = [[column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns] + [obj.pk]
            for obj in objects]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _server_digest(report: NodeStatus) -> tuple:
    return (report.ip, report.mac, report.cluster, report.api_url, report.interval, report.capacity)


def _row_digest(server: Server) -> tuple:
    """The digest of a server as the database has it (what ``_server_digest`` of its last report gave)."""
    return (server.ip, server.mac, server.cluster, server.api_url, server.heartbeat_seconds,
            Resources(cpus=server.cpus, memory_mb=server.memory_mb, disk_mb=server.disk_mb))


def _host_fields(report: HostStatus) -> dict:
    return {"name": report.name, "ip": report.ip, "cluster": report.cluster, "memory_mb": report.memory_mb,
            "disk_mb": report.disk_mb, "heartbeat_seconds": report.interval}


class StatusFolder:
    """Folds batches of status messages; one instance per CLC status daemon (it keeps liveness in memory).

    ``fold`` and ``sweep`` may be called from different threads. Database failures raise ``RetryLater`` so the
    bus redelivers the batch instead of parking good messages.
    """

    def __init__(self, *, missed_heartbeats: int, db_touch_seconds: float, clock=time.time) -> None:
        self.missed_heartbeats = missed_heartbeats
        self.db_touch_seconds = db_touch_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._servers: dict[str, _Seen] = {}
        self._hosts: dict[str, _Seen] = {}
        self._tasks: dict[str, tuple] = {}
        self._instances: dict[str, tuple] = {}
        self._loaded = False
        # How far behind the queue the fold runs (median age of the last batch's reports) and when that batch was
        # done: while heartbeats wait in the queue, their servers are not silent.
        self._lag = 0.0
        self._lag_at = 0.0

    def _load(self) -> None:
        """Learn the servers and hosts of the database this folder does not know yet: at start, so a restarted
        daemon still marks offline what stopped while it was down, and later, for those that registered over REST
        (in another process) but never sent a heartbeat, or that registered again since."""
        now = self.clock()
        for server in Server.objects.only("pk", "role", "name", "last_seen", "heartbeat_seconds", "state", "ip", "mac",
                                          "cluster", "api_url", "cpus", "memory_mb", "disk_mb"):
            key = server_key(server.role, server.name)
            if key not in self._servers:
                seen = server.last_seen.timestamp() if server.last_seen else now
                self._servers[key] = _Seen(server.pk, seen, server.heartbeat_seconds, server.state,
                                           _row_digest(server), seen)
        for host in Host.objects.only("pk", "mac", "last_seen", "heartbeat_seconds", "state"):
            key = host_key(host.mac)
            seen = host.last_seen.timestamp() if host.last_seen else now
            known = self._hosts.get(key)
            # A PC registers over REST when it starts again: newer than this folder's memory, which may say offline
            # (a second apart at least: a fold's own write of last_seen reads back rounded to the microsecond).
            if known is None or known.pk != host.pk or (host.last_seen and seen - known.last_seen > 1.0):
                self._hosts[key] = _Seen(host.pk, seen, host.heartbeat_seconds, host.state, (), seen)
        self._loaded = True

    def refresh(self) -> None:
        """Pick up servers and hosts added to the database by others since the last look."""
        with self._lock:
            self._load()

    def fold(self, messages: list[Message]) -> None:
        """Fold a batch: every message into the cache, and changes into the database (one transaction)."""
        latest: dict[str, Message] = {}
        for message in messages:
            key = self._key(message)
            if key is not None and (key not in latest or latest[key].sent_at <= message.sent_at):
                latest[key] = message
        try:
            with self._lock, transaction.atomic():
                if not self._loaded:
                    self._load()
                now = self.clock()
                entries: dict[str, dict] = {}
                touched_servers: list[Server] = []
                touched_hosts: list[Host] = []
                changed_servers: list[tuple[str, NodeStatus, str, tuple]] = []
                for key, message in latest.items():
                    entry = message.model_dump(mode="json") | {"folded_at": now, "last_seen": now}
                    if isinstance(message, NodeStatus):
                        entry["state"] = self._fold_server(key, message, now, touched_servers, changed_servers)
                    elif isinstance(message, HostStatus):
                        entry["state"] = self._fold_host(key, message, now, touched_hosts)
                    elif isinstance(message, TaskStatus):
                        self._fold_task(message)
                    elif isinstance(message, InsStatus):
                        self._fold_instance(message)
                    entries[key] = entry
                if changed_servers:
                    self._write_servers(changed_servers, now)
                if touched_servers:
                    _update_rows(Server, touched_servers, ["last_seen", "free_cpus", "free_memory_mb",
                                                           "free_disk_mb", "cpu_usage"])
                if touched_hosts:
                    _update_rows(Host, touched_hosts, ["last_seen"])
        except DatabaseError as exc:
            self._loaded = False
            raise RetryLater(f"database unavailable: {exc}") from exc
        cache.set_many(entries, timeout=CACHE_TTL_SECONDS)
        if latest:
            ages = sorted(now - message.sent_at for message in latest.values())
            self._lag, self._lag_at = max(0.0, ages[len(ages) // 2]), self.clock()

    @staticmethod
    def _key(message: Message) -> str | None:
        if isinstance(message, NodeStatus):
            return server_key(message.role, message.name)
        if isinstance(message, HostStatus):
            return host_key(message.mac)
        if isinstance(message, TaskStatus):
            return task_key(message.tid)
        if isinstance(message, InsStatus):
            return instance_key(message.insid)
        logger.warning("status: ignoring %s message on the status queue", with_article(message.type))
        return None

    def _fold_server(self, key: str, report: NodeStatus, now: float, touched: list[Server],
                     changed: list[tuple[str, NodeStatus, str, tuple]]) -> str:
        state = LivenessChoices.ONLINE if report.state == "online" else LivenessChoices.STOPPED
        digest = _server_digest(report)
        seen = self._servers.get(key)
        if seen is None or seen.state != state or seen.digest != digest:
            changed.append((key, report, state, digest))  # written by _write_servers, for the batch at once
            return state
        seen.last_seen = now
        if now - seen.db_touched >= self.db_touch_seconds:
            seen.db_touched = now
            touched.append(Server(pk=seen.pk, last_seen=as_datetime(now), free_cpus=report.free.cpus,
                                  free_memory_mb=report.free.memory_mb, free_disk_mb=report.free.disk_mb,
                                  cpu_usage=report.cpu_usage))
        return state

    def _write_servers(self, changed: list[tuple[str, NodeStatus, str, tuple]], now: float) -> None:
        """Write the servers of a batch that are new, changed or back: one INSERT for all the new ones, one UPDATE
        per state for those whose only change is their state, one UPDATE by primary key for each changed one
        (instead of ``update_or_create``'s SELECT, savepoint and INSERT or UPDATE for every one of them)."""
        when = as_datetime(now)
        pks = {key: self._servers[key].pk for key, _, _, _ in changed if key in self._servers}
        unknown = {report.name for key, report, _, _ in changed if key not in pks}
        if unknown:  # new, or registered over REST since the last refresh
            for pk, role, name in Server.objects.filter(name__in=unknown).values_list("pk", "role", "name"):
                pks[server_key(role, name)] = pk
        new: list[Server] = []
        state_only: dict[str, list[int]] = {}
        for key, report, state, digest in changed:
            seen = self._servers.get(key)
            pk = pks.get(key)
            if pk is None:
                new.append(Server(role=report.role, name=report.name,
                                  **server_fields(report), state=state, last_seen=when))
                logger.info("status: new server %s:%s at %s added", report.role, report.name, report.ip)
                continue
            if seen is not None and seen.state != state:
                logger.info("status: server %s:%s is %s", report.role, report.name, state)
            if seen is not None and seen.digest == digest:
                state_only.setdefault(state, []).append(pk)
            else:
                Server.objects.filter(pk=pk).update(**server_fields(report), state=state, last_seen=when)
        for state, ids in state_only.items():
            Server.objects.filter(pk__in=ids).update(state=state, last_seen=when)
        if new:
            Server.objects.bulk_create(new, batch_size=500)
            for pk, role, name in Server.objects.filter(name__in={server.name for server in new}).values_list(
                    "pk", "role", "name"):
                pks[server_key(role, name)] = pk
        for key, report, state, digest in changed:
            self._servers[key] = _Seen(pks[key], now, report.interval, state, digest, now)

    def _fold_host(self, key: str, report: HostStatus, now: float, touched: list[Host]) -> str:
        state = LivenessChoices.ONLINE if report.state == "online" else LivenessChoices.STOPPED
        digest = tuple(_host_fields(report).items())
        seen = self._hosts.get(key)
        if seen is None or seen.state != state or seen.digest != digest:
            host, created = Host.objects.update_or_create(
                mac=report.mac, defaults=_host_fields(report) | {"state": state, "last_seen": as_datetime(now)})
            if created:
                logger.info("status: new host %s (%s) added", report.name, report.mac)
            self._hosts[key] = _Seen(host.pk, now, report.interval, state, digest, now)
            return state
        seen.last_seen = now
        if now - seen.db_touched >= self.db_touch_seconds:
            seen.db_touched = now
            touched.append(Host(pk=seen.pk, last_seen=as_datetime(now)))
        return state

    def _fold_task(self, report: TaskStatus) -> None:
        # A volume's attach or detach: its record, not an image task's. Not remembered by signature: the same tid
        # serves every attach and detach of that volume to that instance, each reported alike.
        if fold_volume_report(report):
            return
        values = {"phase": report.phase, "state": report.state, "progress": report.progress,
                  "vmstatus": report.vmstatus, "message": report.errormsg, "failed": report.failed,
                  "done": report.done}
        if report.ccip:
            values["ccip"] = report.ccip
        if report.ncip:
            values["ncip"] = report.ncip
        signature = tuple(values.items())
        if self._tasks.get(report.tid) == signature:
            return
        if not TaskTransaction.objects.filter(tid=report.tid).update(**values):
            try:
                tid = TaskId.parse(report.tid)
            except InvalidId as exc:
                logger.warning("status: task status for unknown, malformed tid %r: %s", report.tid, exc)
                return
            TaskTransaction.objects.create(tid=report.tid, src_image_id=tid.src, dst_image_id=tid.dst,
                                           instance_id=tid.ins, **values)
        if report.phase == "submitting" and report.done and report.result:
            record_submitted(report.tid, report.result)
        self._tasks[report.tid] = signature

    def _fold_instance(self, report: InsStatus) -> None:
        signature = (report.seq, report.state, report.guest_ip, report.console, report.errormsg, report.answering,
                     tuple(sorted(report.access.items())))
        if self._instances.get(report.insid) == signature:
            return
        if report.state not in InstanceStateChoices.values:
            logger.warning("status: instance %s reported unknown state %r", report.insid, report.state)
            return
        # A late report of an earlier run (lower seq) must not undo what a newer run did.
        current = Instance.objects.filter(instance_id=report.insid, runs__lte=report.seq)
        if report.state == InstanceStateChoices.DELETED:
            release_volumes(current)  # its volumes are free to attach elsewhere, not left "in-use" on nothing
            if current.delete()[0]:
                logger.info("status: instance %s deleted on %s", report.insid, report.node)
            self._instances.pop(report.insid, None)
            return
        values = {"state": report.state, "node": report.node, "answering": report.answering}
        if report.state == InstanceStateChoices.BOOTING:
            values["guest_ip"] = ""  # a new boot: the last run's address is no longer known to be the guest's
        if report.guest_ip:
            values["guest_ip"] = report.guest_ip
        if report.state in (InstanceStateChoices.STOPPED, InstanceStateChoices.FAILED):
            # The CC gave its ports and addresses back with the run: they may be another instance's already.
            values |= {"console_url": "", "access": {}, "guest_ip": "", "placing": PlacingChoices.NONE}
        elif report.access:
            # The CC relays its placement with the report: a run whose answer never reached us is placed by it.
            values |= {"access": report.access, "console_url": report.access.get("console", ""),
                       "placing": PlacingChoices.NONE}
        if report.errormsg or report.state == InstanceStateChoices.FAILED:
            values["message"] = report.errormsg
        if report.state == InstanceStateChoices.STOPPED:
            # Issue 17: a run ending unasked is the guest watchdog's evidence; a reboot's run starts again after this
            # commit (clc.services.alarm_actions).
            run_stopped(report.insid, report.seq)
        if not current.update(**values):
            logger.info("status: status of unknown or newer-run instance %s from %s", report.insid, report.node)
        elif report.state in (InstanceStateChoices.STOPPED, InstanceStateChoices.FAILED):
            run_ended(report.insid)
            give_back(report.insid)  # a pool's desktop whose run ended is the pool's again
        self._instances[report.insid] = signature

    def sweep(self) -> list[str]:
        """Mark offline every server and host silent for ``missed_heartbeats`` intervals; return their keys."""
        with self._lock:
            if not self._loaded:
                self._load()
            now = self.clock()
            # Allow for the heartbeats still waiting in the queue; a fold idle for a while has none waiting.
            lag = self._lag if now - self._lag_at < 2.0 else 0.0
            gone = {kind: [(key, seen) for key, seen in table.items()
                           if seen.state == LivenessChoices.ONLINE
                           and now - seen.last_seen > seen.interval * self.missed_heartbeats + lag]
                    for kind, table in (("server", self._servers), ("host", self._hosts))}
            if not gone["server"] and not gone["host"]:
                return []
            with transaction.atomic():
                Server.objects.filter(pk__in=[seen.pk for _, seen in gone["server"]]).update(
                    state=LivenessChoices.OFFLINE)
                Host.objects.filter(pk__in=[seen.pk for _, seen in gone["host"]]).update(state=LivenessChoices.OFFLINE)
            keys = [key for pairs in gone.values() for key, _ in pairs]
            for pairs in gone.values():
                for key, seen in pairs:
                    seen.state = LivenessChoices.OFFLINE
                    logger.warning("status: %s missed %d heartbeats; marked offline", key, self.missed_heartbeats)
            cached = cache.get_many(keys)
            cache.set_many({key: entry | {"state": LivenessChoices.OFFLINE} for key, entry in cached.items()},
                           timeout=CACHE_TTL_SECONDS)
            return keys

