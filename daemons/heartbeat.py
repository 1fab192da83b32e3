"""Registration with the boss and the heartbeat of one role on this host (and, for the node controller of a
classroom PC, of the PC as a host)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections

from daemons.enrolment import wait_until_enrolled
from luhyaapi import reporting
from luhyaapi.bus import Bus, BusUnavailable
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.config import Config
from luhyaapi.hostinfo import capacity_and_free
from luhyaapi.messages import (
    HostRegistration,
    HostStatus,
    Message,
    NodeStatus,
    Resources,
    ServerRegistration,
    VmInfo,
)
from luhyaapi.queues import boss_status_queue
from luhyaapi.trust import own_key

logger = logging.getLogger(__name__)

# How often the publisher looks for a change worth reporting at once (the heartbeat itself may be minutes apart).
CHANGE_CHECK_SECONDS = 1.0
# Where the node controller of a classroom PC announces the PC (its CC passes it on to the CLC).
HOST_REGISTRATION_PATH = "/cc/api/1.0/register/host/"


def boss(role: str, config: Config) -> tuple[str, str]:
    """Who a role registers with (base URL and path): nc and sc with their CC, every other role with the CLC."""
    if role in ("nc", "sc"):
        return config.cc_url, "/cc/api/1.0/register/server/"
    return config.clc_url, "/clc/api/1.0/register/server/"


class HeartbeatPublisher:
    """Registers ``role`` with its boss (retrying until it answers), then publishes ``nodestatus`` every
    ``heartbeat_seconds``, and at once when the status changes or ``report_now`` is called.

    On a classroom PC (role nc with ``nc.host_mode``) it also registers the PC as a host and publishes a
    ``hoststatus`` with every ``nodestatus``, on the same queue (the CC relays both to the CLC), so the PC is online
    while its node controller runs and stopped when it stops on purpose."""

    def __init__(self, role: str, config: Config, bus: Bus, vms: Callable[[], list[VmInfo]] | None = None,
                 console: Callable[[], str] | None = None,
                 disk: Callable[[], tuple[int, int]] | None = None) -> None:
        self.role = role
        self.disk = disk
        self.vms = vms
        self.console = console
        self.config = config
        self.bus = bus
        self.queue = boss_status_queue(role, config.cluster)
        self.seq = 0
        self._wake = threading.Event()
        self._last_command = ""
        self.registered = threading.Event()
        self.host_mode = role == "nc" and config.host_mode

    def registration(self) -> ServerRegistration:
        capacity, _free, _usage = self.resources()
        return ServerRegistration(role=self.role, name=self.config.name, ip=self.config.ip, mac=self.config.mac,
                                  cluster=self.config.cluster, api_url=self.config.api_url,
                                  heartbeat_seconds=self.config.heartbeat_seconds, capacity=capacity,
                                  classroom_pc=self.host_mode, console=self.console() if self.console else "vnc")

    def resources(self) -> tuple[Resources, Resources, float]:
        """This host's capacity, free resources and CPU usage; the disk figures are ``disk()``'s (MB total, MB
        free) when given (a storage controller's volume store), else those of the data directory's file system."""
        capacity, free, usage = capacity_and_free(self.config.data_dir)
        if self.disk is not None:
            disk_mb, free_mb = self.disk()
            capacity = capacity.model_copy(update={"disk_mb": disk_mb})
            free = free.model_copy(update={"disk_mb": free_mb})
        return capacity, free, usage

    def host_registration(self) -> HostRegistration:
        """The classroom PC this node controller runs on, as it announces itself when it powers on."""
        capacity, _free, _usage = capacity_and_free(self.config.data_dir)
        return HostRegistration(name=self.config.name, ip=self.config.ip, mac=self.config.mac,
                                cluster=self.config.cluster, heartbeat_seconds=self.config.heartbeat_seconds,
                                memory_mb=capacity.memory_mb, disk_mb=capacity.disk_mb)

    def registrations(self) -> list[tuple[str, HostRegistration | ServerRegistration]]:
        """What this role announces to its boss when it starts (path, body): itself, then on a classroom PC the PC."""
        _base, path = boss(self.role, self.config)
        announced: list[tuple[str, HostRegistration | ServerRegistration]] = [(path, self.registration())]
        if self.host_mode:
            announced.append((HOST_REGISTRATION_PATH, self.host_registration()))
        return announced

    def host_status(self, status: NodeStatus) -> HostStatus:
        """The PC's heartbeat that goes with this node controller's ``status`` (same number, interval and state)."""
        return HostStatus(name=status.name, ip=status.ip, mac=status.mac, cluster=status.cluster,
                          interval=status.interval, seq=status.seq, memory_mb=status.capacity.memory_mb,
                          disk_mb=status.capacity.disk_mb, state=status.state)

    def _beat(self, status: NodeStatus) -> None:
        self.bus.publish(self.queue, status)
        if self.host_mode:
            self.bus.publish(self.queue, self.host_status(status))

    def status(self, state: str = "online") -> NodeStatus:
        """This role's status now, numbered one past the last one published."""
        capacity, free, usage = self.resources()
        return NodeStatus(role=self.role, name=self.config.name, ip=self.config.ip, mac=self.config.mac,
                          cluster=self.config.cluster, api_url=self.config.api_url,
                          interval=self.config.heartbeat_seconds, seq=self.seq + 1, state=state, capacity=capacity,
                          free=free, cpu_usage=usage, services={"daemon": "running"},
                          vms=self.vms() if self.vms else [], last_command=self._last_command)

    def publish(self, message: Message) -> None:
        """Send a report (task progress, say) to this role's boss on the same queue as the heartbeat."""
        self.bus.publish(self.queue, message)

    def report_now(self, last_command: str = "") -> None:
        if last_command:
            self._last_command = last_command
        self._wake.set()

    def register(self, stop: threading.Event) -> None:
        """Once this host is enrolled, send each of ``registrations`` in turn, retrying one that fails with back-off
        until the boss takes it."""
        if not wait_until_enrolled(self.config, stop):
            return
        base, _path = boss(self.role, self.config)
        client = RoleClient(base, own_key())
        pending = self.registrations()
        delay = 0.5
        while pending and not stop.is_set():
            path, body = pending[0]
            try:
                client.post(path, body.model_dump(mode="json"))
                logger.info("heartbeat: %s registered at %s%s", self.role, base, path)
                pending.pop(0)
            except RemoteError as exc:
                logger.warning("heartbeat: %s could not register at %s%s (%s); retrying in %.1fs", self.role, base,
                               path, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        if not pending:
            self.registered.set()

    def run(self, stop: threading.Event) -> None:
        self.register(stop)
        close_old_connections()
        reporting.register(self.role, self)
        significant = None
        next_beat = 0.0
        while not stop.is_set():
            status = self.status()
            now = time.monotonic()
            changed = (status.capacity, status.services, status.vms, status.last_command) != significant
            if changed or now >= next_beat or self._wake.is_set():
                self._wake.clear()
                self._beat(status)
                self.seq = status.seq
                significant = (status.capacity, status.services, status.vms, status.last_command)
                next_beat = now + self.config.heartbeat_seconds
            self._wake.wait(timeout=min(CHANGE_CHECK_SECONDS, max(0.0, next_beat - time.monotonic())))
        reporting.unregister(self.role, self)
        self._say_goodbye()

    def _say_goodbye(self) -> None:
        """Tell the boss this role stops on purpose, so it shows as stopped rather than silent."""
        if not self.registered.is_set():
            return
        try:
            self._beat(self.status(state="stopping"))
        except BusUnavailable as exc:
            logger.warning("heartbeat: could not report that %s stops: %s", self.role, exc)
