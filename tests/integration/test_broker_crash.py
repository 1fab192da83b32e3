"""A crash of RabbitMQ (SIGKILL to its Erlang VM, then a boot on the same data) loses nothing and runs nothing twice,
on a broker of this module's own and through the project's own bus (``luhyaapi.bus.RabbitMQBus``):

- messages the bus confirmed, waiting on their durable queue, are all delivered after the restart;
- a command task the node's Celery worker had run but not acknowledged when the broker died comes again after the
  restart, and the node runs each of its commands once (its record of the command's key);
- a publish under way at the crash either returns (confirmed; then the message is delivered) or raises
  ``BusUnavailable`` once its retry window is over: no message is reported sent and then missing.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

import pytest
from celery.signals import task_prerun

from luhyaapi.bus import BusUnavailable, RabbitMQBus
from luhyaapi.commands import send_command
from luhyaapi.messages import Command
from nc.models import CommandRecord
from tests.commands import RecordingReporter, as_node, node_worker
from tests.integration.conftest import RunningConsumer
from tests.keys import enrolled_key
from tests.rabbitmq import private_broker
from tests.services import wait_for

pytestmark = [pytest.mark.broker_restart]


@pytest.fixture(scope="module")
def broker():
    """A RabbitMQ server of this module's own, which every test crashes once; halted even when a test fails."""
    with private_broker() as running:
        yield running


@pytest.fixture
def up(broker):
    """The module's broker, running when the test starts (a test that failed between crash and boot leaves it down)."""
    if not broker.running():
        broker.start()
    return broker


def _commands(count: int, start: int = 0) -> list[Command]:
    return [Command(op="status/report", paras={"n": n}) for n in range(start, start + count)]


def test_confirmed_messages_on_a_durable_queue_survive_a_kill_9_of_the_broker(up):
    queue = "crash.durable"
    bus = RabbitMQBus(up.url, publish_retry_seconds=30)
    sent = _commands(300)
    for message in sent:
        bus.publish(queue, message)  # returns once the broker confirmed it
    bus.close()

    up.kill9()
    assert not up.running()
    up.start()

    consumer = RunningConsumer(RabbitMQBus(up.url), queue)
    try:
        assert consumer.wait_for(len(sent), timeout=60) == sent
        time.sleep(0.5)
        assert len(consumer.received) == len(sent), "nothing is delivered twice when nothing was consumed"
    finally:
        consumer.close()


class Reporter(RecordingReporter):
    """What the node's ``status/report`` command does, recorded: one report per command run. The first report kills
    the broker: the task has run, its acknowledgement (late, after it returns) has not been sent."""

    def __init__(self, broker) -> None:
        super().__init__()
        self.broker = broker
        self.crashed_with = ""
        self.restart: threading.Thread | None = None

    def report_now(self, last_command: str = "") -> None:
        super().report_now(last_command)
        if not self.crashed_with:
            self.crashed_with = last_command
            self.broker.kill9()
            self.restart = threading.Thread(target=self.broker.start, daemon=True)
            self.restart.start()


@pytest.fixture
def node(settings):
    """This host as node controller nc-1 of cluster1, and cc-1, the cluster's CC, that may command it."""
    as_node(settings)
    return enrolled_key("cc-1", "cc")


@pytest.mark.django_db(transaction=True)
def test_a_command_task_run_but_not_acknowledged_at_the_crash_comes_again_and_runs_once(up, node):
    commands = _commands(40)
    for command in commands:
        send_command(up.url, "nc-1", command, key=node)  # sealed by the cluster's CC, as its commands are
    wanted = {command.msg_id for command in commands}
    started: collections.Counter[str] = collections.Counter()

    def count(task_id=None, **_):
        started[task_id] += 1

    reporter = Reporter(up)
    task_prerun.connect(count, weak=False)
    try:
        with node_worker("nc-1", reporter, up.url, slots=1):
            wait_for("every command to be done and the crashed one delivered again", lambda: (
                CommandRecord.objects.filter(done_at__isnull=False).count() == len(wanted)
                and started[reporter.crashed_with] >= 2), 180)
    finally:
        task_prerun.disconnect(count)
        if reporter.restart is not None:
            reporter.restart.join(timeout=90)

    assert reporter.crashed_with, "the worker never ran a command"
    assert started[reporter.crashed_with] == 2, "the unacknowledged task came again"
    assert set(started) == wanted
    assert sorted(reporter.reports) == sorted(wanted), "each command ran exactly once"
    records = CommandRecord.objects.filter(done_at__isnull=False)
    assert sorted(records.values_list("msg_id", flat=True)) == sorted(wanted)


@dataclass
class Attempt:
    """One call of ``publish``: when it started and ended, and whether it returned (sent) or raised."""

    message: Command
    started: float
    ended: float = 0.0
    sent: bool = False


class Publisher:
    """Publishes one message after another from a thread until stopped, recording every attempt."""

    def __init__(self, url: str, queue: str, name: str, retry_seconds: float) -> None:
        self.bus = RabbitMQBus(url, publish_retry_seconds=retry_seconds)
        self.attempts: list[Attempt] = []
        self.stop = threading.Event()
        self.queue, self.name = queue, name
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            attempt = Attempt(Command(op="status/report", paras={"by": self.name, "n": n}), time.monotonic())
            self.attempts.append(attempt)
            try:
                self.bus.publish(self.queue, attempt.message)
                attempt.sent = True
            except BusUnavailable:
                pass
            attempt.ended = time.monotonic()
            n += 1
        self.bus.close()

    def sent(self) -> list[Command]:
        return [attempt.message for attempt in self.attempts if attempt.sent]

    def failed(self) -> list[Command]:
        return [attempt.message for attempt in self.attempts if attempt.ended and not attempt.sent]

    def wait_until(self, predicate, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"{self.name}: {what} within {timeout}s"
            assert self.thread.is_alive(), f"{self.name} died"
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), f"{self.name} still publishing"


def test_a_publish_under_way_at_the_crash_is_confirmed_and_delivered_or_raises_never_lost(up):
    queue = "crash.inflight"
    # One publisher waits out the whole crash; the other gives up after a second, shorter than the broker's boot.
    patient = Publisher(up.url, queue, "patient", retry_seconds=120)
    hasty = Publisher(up.url, queue, "hasty", retry_seconds=1)
    try:
        for publisher in (patient, hasty):
            publisher.wait_until(lambda p=publisher: len(p.sent()) >= 100, "100 messages sent before the crash")
        up.kill9()
        crashed = time.monotonic()
        hasty.wait_until(lambda: hasty.failed(), "a publish raised BusUnavailable while the broker is down")
        booting = time.monotonic()
        up.start()
        for publisher in (patient, hasty):
            count = len(publisher.sent())
            publisher.wait_until(lambda p=publisher, c=count: len(p.sent()) >= c + 100,
                                 "100 more messages sent after the restart")
    finally:
        patient.finish()
        hasty.finish()

    # The patient publisher had a message under way when the broker died: it was retried until the broker was back.
    across = [attempt for attempt in patient.attempts if attempt.started < crashed < attempt.ended]
    assert len(across) == 1 and across[0].sent and across[0].ended > booting
    assert not patient.failed()

    sent = patient.sent() + hasty.sent()
    consumer = RunningConsumer(RabbitMQBus(up.url), queue)
    try:
        consumer.wait_for(len(sent), timeout=60)
        deadline = time.monotonic() + 60
        while {m.msg_id for m in sent} - {m.msg_id for m in consumer.received} and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # whatever else is on the queue (messages of failed publishes that did reach it)
    finally:
        consumer.close()
    received = {message.msg_id for message in consumer.received}
    missing = [message.paras for message in sent if message.msg_id not in received]
    assert missing == [], "reported sent, never delivered"
    # Every message on the queue came from a publish: sent, or failed but reached the broker before it died.
    assert received <= {attempt.message.msg_id for p in (patient, hasty) for attempt in p.attempts}
    print(f"sent {len(sent)}, raised {len(hasty.failed())}, delivered {len(received)} "
          f"({len(received) - len(sent)} of the raised ones reached the queue before the crash; "
          f"{len(consumer.received) - len(received)} delivered twice)")
