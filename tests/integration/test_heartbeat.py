"""A role's daemon registers with its boss, heartbeats on its boss's queue, reports at once when asked, and says
goodbye when stopped."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from daemons.heartbeat import HeartbeatPublisher
from luhyaapi.bus import InProcessBus
from luhyaapi.messages import NodeStatus
from luhyaapi.queues import CLC_STATUS, cc_status
from luhyadb.models import Server

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


def _take(bus, queue, count, timeout=10.0) -> list[NodeStatus]:
    got: list = []
    stop = threading.Event()
    deadline = time.monotonic() + timeout

    def take(messages):
        got.extend(messages)
        if len(got) >= count or time.monotonic() > deadline:
            stop.set()

    watchdog = threading.Timer(timeout, stop.set)
    watchdog.start()
    bus.consume(queue, take, stop, max_wait=0.05)
    watchdog.cancel()
    return got


@pytest.mark.parametrize("role, queue", [("nc", cc_status("cluster1")), ("walrus", CLC_STATUS)])
def test_a_role_registers_with_its_boss_then_heartbeats_on_its_queue(live_server, cloud_at, role, queue):
    config = replace(cloud_at(live_server.url), heartbeat_seconds=60)
    bus = InProcessBus()
    publisher = HeartbeatPublisher(role, config, bus)
    stop = threading.Event()
    thread = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        (first,) = _take(bus, queue, 1)
        assert (first.role, first.name, first.seq, first.state, first.interval) == (role, "test", 1, "online", 60)
        assert first.capacity.memory_mb > 0
        assert Server.objects.get(role=role, name="test").state == "online"

        publisher.report_now(last_command="0123456789abcdef0123456789abcdef")
        (second,) = _take(bus, queue, 1, timeout=5)
        assert (second.seq, second.last_command) == (2, "0123456789abcdef0123456789abcdef")
    finally:
        stop.set()
        thread.join(timeout=10)
    (goodbye,) = _take(bus, queue, 1)
    assert goodbye.state == "stopping"


def test_registration_is_retried_until_the_boss_answers(live_server, cloud_at):
    config = replace(cloud_at(live_server.url), cc_url="http://127.0.0.1:9", heartbeat_seconds=60)
    publisher = HeartbeatPublisher("nc", config, InProcessBus())
    stop = threading.Event()
    thread = threading.Thread(target=publisher.register, args=(stop,), daemon=True)
    thread.start()
    time.sleep(1.5)
    assert not publisher.registered.is_set()
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
