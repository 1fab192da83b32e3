"""Registration with the boss and the heartbeat of one role on this host."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections

from luhyaapi.bus import Bus, BusUnavailable
from luhyaapi.client import RemoteError, RoleClient
from luhyaapi.config import Config
from luhyaapi.hostinfo import capacity_and_free
from luhyaapi.messages import Message, NodeStatus, ServerRegistration, VmInfo
from luhyaapi.queues import boss_status_queue

logger = logging.getLogger(__name__)

# How often the publisher looks for a change worth reporting at once (the heartbeat itself may be minutes apart).
CHANGE_CHECK_SECONDS = 1.0


def boss(role: str, config: Config) -> tuple[str, str]:
    """Who a role registers with (base URL and path): nc and sc with their CC, every other role with the CLC."""
    if role in ("nc", "sc"):
        return config.cc_url, "/cc/api/1.0/register/server/"
    return config.clc_url, "/clc/api/1.0/register/server/"


class HeartbeatPublisher:
    """Registers ``role`` with its boss (retrying until it answers), then publishes ``nodestatus`` every
    ``heartbeat_seconds``, and at once when the status changes or ``report_now`` is called."""

    def __init__(self, role: str, config: Config, bus: Bus,
                 vms: Callable[[], list[VmInfo]] | None = None) -> None:
        self.role = role
        self.vms = vms
        self.config = config
        self.bus = bus
        self.queue = boss_status_queue(role, config.cluster)
        self.seq = 0
        self._wake = threading.Event()
        self._last_command = ""
        self.registered = threading.Event()

    def registration(self) -> ServerRegistration:
        capacity, _free, _usage = capacity_and_free(self.config.data_dir)
        return ServerRegistration(role=self.role, name=self.config.name, ip=self.config.ip, mac=self.config.mac,
                                  cluster=self.config.cluster, api_url=self.config.api_url,
                                  heartbeat_seconds=self.config.heartbeat_seconds, capacity=capacity)

    def status(self, state: str = "online") -> NodeStatus:
        """This role's status now, numbered one past the last one published."""
        capacity, free, usage = capacity_and_free(self.config.data_dir)
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
        base, path = boss(self.role, self.config)
        client = RoleClient(base, self.config.cloud_key, sender=self.config.name)
        delay = 0.5
        while not stop.is_set():
            try:
                client.post(path, self.registration().model_dump(mode="json"))
                logger.info("heartbeat: %s registered with %s", self.role, base)
                self.registered.set()
                return
            except RemoteError as exc:
                logger.warning("heartbeat: %s could not register with %s (%s); retrying in %.1fs", self.role, base,
                               exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def run(self, stop: threading.Event) -> None:
        self.register(stop)
        close_old_connections()
        significant = None
        next_beat = 0.0
        while not stop.is_set():
            status = self.status()
            now = time.monotonic()
            changed = (status.capacity, status.services, status.vms, status.last_command) != significant
            if changed or now >= next_beat or self._wake.is_set():
                self._wake.clear()
                self.bus.publish(self.queue, status)
                self.seq = status.seq
                significant = (status.capacity, status.services, status.vms, status.last_command)
                next_beat = now + self.config.heartbeat_seconds
            self._wake.wait(timeout=min(CHANGE_CHECK_SECONDS, max(0.0, next_beat - time.monotonic())))
        self._say_goodbye()

    def _say_goodbye(self) -> None:
        """Tell the boss this role stops on purpose, so it shows as stopped rather than silent."""
        if not self.registered.is_set():
            return
        try:
            self.bus.publish(self.queue, self.status(state="stopping"))
        except BusUnavailable as exc:
            logger.warning("heartbeat: could not report that %s stops: %s", self.role, exc)
