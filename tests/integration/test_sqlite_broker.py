"""The SQLite broker (luhyaapi/sqlite_broker.py) through kombu, as Celery uses it: what is acknowledged is gone, what
is rejected comes back, what a process killed with SIGKILL had fetched comes back to the next consumer, a living
consumer keeps what it holds, and routing and broadcasts reach queues another process declared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from luhyaapi import sqlite_broker  # registers the sqlite-broker:// transport with kombu

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = Exchange("educloud.test", type="direct")


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite-broker://{tmp_path}/broker.sqlite3"


def _queue(name: str) -> Queue:
    return Queue(name, EXCHANGE, routing_key=name)


def _publish(url: str, queue: Queue, *bodies) -> None:
    with Connection(url) as connection:
        producer = connection.Producer()
        for body in bodies:
            producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])


def _take(url: str, queue: Queue, count: int, *, ack: bool = True, no_ack: bool = False, timeout: float = 5.0,
          **options) -> list:
    """Consume ``count`` messages (acknowledging each unless ``ack`` is false; a ``no_ack`` consumer, as Celery's
    broadcast and reply queues have, acks nothing); returns (body, redelivered) pairs."""
    got = []

    def on_message(body, message):
        got.append((body, bool(message.delivery_info.get("redelivered"))))
        if ack and not no_ack:
            message.ack()

    with Connection(url, transport_options=options) as connection:
        with connection.Consumer(queue, callbacks=[on_message], prefetch_count=count, no_ack=no_ack):
            deadline = time.monotonic() + timeout
            while len(got) < count and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    return got


def _ready(url: str, queue: str) -> int:
    return sqlite_broker.store_at(url.removeprefix("sqlite-broker://")).size(queue)


def test_an_acknowledged_message_is_gone_and_the_others_wait_in_order(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1}, {"n": 2}, {"n": 3})
    assert [body for body, _ in _take(url, queue, 1)] == [{"n": 1}]
    assert _ready(url, "cmd.n1") == 2
    assert [body for body, _ in _take(url, queue, 2)] == [{"n": 2}, {"n": 3}]
    assert _ready(url, "cmd.n1") == 0


def test_a_rejected_message_with_requeue_comes_back_first_and_marked_redelivered(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1}, {"n": 2})
    with Connection(url) as connection:
        message = connection.SimpleQueue(queue).get(timeout=2)
        assert message.payload == {"n": 1}
        message.requeue()
    again = _take(url, queue, 2)
    assert again[0] == ({"n": 1}, True)
    assert again[1] == ({"n": 2}, False)


def test_a_message_rejected_without_requeue_is_dropped(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1})
    with Connection(url) as connection:
        connection.SimpleQueue(queue).get(timeout=2).reject()
    assert _ready(url, "cmd.n1") == 0
    assert _take(url, queue, 1, timeout=0.5) == []


HOLDER = textwrap.dedent("""
    import sys, time
    from kombu import Connection, Exchange, Queue
    import luhyaapi.sqlite_broker
    url, name = sys.argv[1], sys.argv[2]
    queue = Queue(name, Exchange("educloud.test", type="direct"), routing_key=name)
    with Connection(url, transport_options={"lease_seconds": float(sys.argv[3])}) as connection:
        channel = connection.default_channel
        queue(channel).declare()
        message = channel.basic_get(name)
        print(channel.message_to_python(message).payload["n"] if message else "none", flush=True)
        while True:  # holds it unacknowledged, polling (so renewing its lease) until it is killed
            try:
                connection.drain_events(timeout=0.1)
            except Exception:
                pass
""")


def _holder(url: str, queue: str, lease: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, url, queue, str(lease)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "1"
    return process


def test_what_a_consumer_killed_with_sigkill_had_fetched_goes_to_the_next_consumer_after_its_lease(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1}, {"n": 2})
    holder = _holder(url, "cmd.n1", lease=1.0)
    try:
        # While the holder lives, its message is its own: another consumer gets only the next one.
        assert _take(url, queue, 2, timeout=2.5) == [({"n": 2}, False)]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _take(url, queue, 1, timeout=5) == [({"n": 1}, True)]
    assert _ready(url, "cmd.n1") == 0


def test_a_consumer_that_lives_keeps_renewing_the_lease_of_what_it_holds(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1})
    holder = _holder(url, "cmd.n1", lease=0.4)
    try:
        assert _take(url, queue, 1, timeout=2.0) == []  # five leases long, and still held
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_clean_close_gives_back_what_was_fetched_at_once(url):
    queue = _queue("cmd.n1")
    _publish(url, queue, {"n": 1})
    assert _take(url, queue, 1, ack=False, lease_seconds=600) == [({"n": 1}, False)]
    assert _take(url, queue, 1, timeout=2) == [({"n": 1}, True)]


def test_a_consumer_without_acks_takes_each_message_once_even_while_it_lives_on(url):
    queue = _queue("reply")
    _publish(url, queue, {"n": 1}, {"n": 2})
    assert _take(url, queue, 2, no_ack=True, lease_seconds=0.2) == [({"n": 1}, False), ({"n": 2}, False)]
    # Long past any lease: nothing came back, to that consumer or another.
    time.sleep(0.4)
    assert _ready(url, "reply") == 0
    assert _take(url, queue, 1, timeout=0.5) == []
    with Connection(url) as connection:
        _publish(url, queue, {"n": 3})
        message = connection.default_channel.basic_get("reply", no_ack=True)
        assert message is not None and message.payload == {"n": 3}
        assert connection.default_channel.basic_get("reply", no_ack=True) is None


def test_a_fanout_reaches_every_queue_bound_to_it_even_from_a_connection_that_declared_nothing(url):
    fanout = Exchange("educloud.broadcast", type="fanout")
    first, second = Queue("a", fanout), Queue("b", fanout)
    with Connection(url) as connection:
        for queue in (first, second):
            queue(connection.default_channel).declare()
    with Connection(url) as stranger:
        stranger.Producer().publish({"hello": 1}, exchange="educloud.broadcast", routing_key="")
    assert [body for body, _ in _take(url, first, 1)] == [{"hello": 1}]
    assert [body for body, _ in _take(url, second, 1)] == [{"hello": 1}]


def test_a_direct_message_reaches_a_queue_another_connection_bound(url):
    queue = _queue("cmd.n2")
    with Connection(url) as connection:
        queue(connection.default_channel).declare()
    with Connection(url) as stranger:
        stranger.Producer().publish({"n": 7}, exchange="educloud.test", routing_key="cmd.n2")
    assert [body for body, _ in _take(url, queue, 1)] == [{"n": 7}]


def test_an_expired_message_is_dropped_unread(url):
    queue = _queue("reply")
    with Connection(url) as connection:
        connection.Producer().publish({"late": True}, exchange=EXCHANGE, routing_key="reply", declare=[queue],
                                      expiration=0.2)
        connection.Producer().publish({"late": False}, exchange=EXCHANGE, routing_key="reply", declare=[queue])
    time.sleep(0.4)
    assert [body for body, _ in _take(url, queue, 2, timeout=1.0)] == [{"late": False}]


def test_a_topic_message_reaches_the_queues_whose_pattern_matches_it_as_celerys_events_are_routed(url):
    events = Exchange("educloud.events", type="topic")
    tasks = Queue("tasks", events, routing_key="task.#")
    workers = Queue("workers", events, routing_key="worker.*")
    every = Queue("every", events, routing_key="#")
    with Connection(url) as connection:
        for queue in (tasks, workers, every):
            queue(connection.default_channel).declare()
    with Connection(url) as stranger:
        producer = stranger.Producer()
        for key in ("task.sent", "worker.heartbeat", "worker.online.late"):
            producer.publish({"key": key}, exchange="educloud.events", routing_key=key)
    assert [body["key"] for body, _ in _take(url, tasks, 1)] == ["task.sent"]
    assert [body["key"] for body, _ in _take(url, workers, 1)] == ["worker.heartbeat"]
    assert [body["key"] for body, _ in _take(url, every, 3)] == ["task.sent", "worker.heartbeat", "worker.online.late"]
    assert _ready(url, "tasks") == _ready(url, "workers") == 0, "nothing else was routed to them"


@pytest.mark.parametrize("pattern, key, matches", [
    ("#", "task.sent", True), ("task.#", "task", True), ("task.*", "task", False), ("task.*", "task.a.b", False),
    ("a.#.b", "a.b", True), ("a.#.b", "a.x.y.b", True), ("a.#.b", "a.x.c", False), ("#.b", "xb", False),
    ("a.b", "aXb", False), ("#.#", "a", True), ("*.#.*", "a", False), ("*.#.*", "a.b", True), ("#", "", True),
    ("a.*.#", "a.b.c.d", True)])
def test_topic_patterns_match_as_amqp_defines_them(pattern, key, matches):
    assert sqlite_broker.topic_matches(pattern, key) is matches
