"""What waits on a node's command queue (Celery tasks on the host's broker), read as the node's worker reads it, and
running it in the test's own thread (its database transaction) through the tasks themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from celery.result import EagerResult
from django.conf import settings
from django.test import override_settings
from kombu import Connection, Queue

from luhyaapi.config import celery_broker_url
from luhyaapi.messages import Command, decode
from luhyaapi.queues import node_commands
from luhyaapi.signing import unseal


@dataclass(frozen=True)
class Queued:
    """One task taken off a node's queue: its name and id, and the sealed command it carries (and that command)."""

    task: str
    task_id: str
    envelope: str

    @property
    def command(self) -> Command:
        return decode(unseal(self.envelope.encode()).message)


class RecordingReporter:
    """What a node's tasks report, as its heartbeat would send it: the commands reported (``report_now``), in order;
    progress reports are let go. Safe for a worker's threads."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        self._lock = threading.Lock()

    def report_now(self, last_command: str = "") -> None:
        with self._lock:
            self.reports.append(last_command)

    def publish(self, message) -> None:
        pass


def as_node(settings, name: str = "nc-1", *roles: str) -> None:
    """This host as node controller ``name`` of cluster1 (with ``roles`` besides nc)."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, name=name, roles=("nc", *roles), cluster="cluster1")


def broker() -> str:
    return celery_broker_url(settings.EDUCLOUD)


def take_queued(node: str, wait: float = 0.3) -> list[Queued]:
    """Take every task waiting on ``node``'s queue off it (waiting up to ``wait`` s for the first)."""
    name = node_commands(node)
    got: list[Queued] = []
    with Connection(broker()) as connection:
        simple = connection.SimpleQueue(Queue(name, routing_key=name, exchange=name))
        deadline = time.monotonic() + wait
        while True:
            try:
                message = simple.get(timeout=max(0.01, deadline - time.monotonic()) if not got else 0.01)
            except simple.Empty:
                break
            headers = message.headers
            got.append(Queued(headers["task"], headers["id"], message.payload[0][0]))
            message.ack()
        simple.close()
    return got


def queued(node: str, wait: float = 0.3) -> list[Command]:
    """The commands waiting on ``node``'s queue, taken off it."""
    return [item.command for item in take_queued(node, wait)]


def purge(node: str) -> None:
    with Connection(broker()) as connection:
        name = node_commands(node)
        Queue(name, routing_key=name, exchange=name)(connection.default_channel).declare()
        connection.default_channel.queue_purge(name)


def run_task(node: str, item: Queued, reporter=None) -> EagerResult:
    """Run a taken task here, as ``node``'s worker would (its task, its argument, its id; this host as ``node``)."""
    from educloud.celery import app
    from nc import tasks

    previous = tasks._reporter
    if reporter is not None:
        tasks.use_reporter(reporter)
    try:
        with override_settings(EDUCLOUD=replace(settings.EDUCLOUD, name=node)):
            return app.tasks[item.task].apply(args=[item.envelope], task_id=item.task_id)
    finally:
        tasks.use_reporter(previous)


def run_queued(node: str, reporter=None, wait: float = 0.3) -> list[EagerResult]:
    """Take and run, in order, every task waiting on ``node``'s queue."""
    return [run_task(node, item, reporter) for item in take_queued(node, wait)]


def _use_broker(app, url: str) -> None:
    """Point the app at ``url``. A host has one broker for its life, so the app keeps the connection and producer
    pools of the first one it used; a test that moves to another (a broker per test) drops them, or the worker's
    replies to inspection would still go to the first broker."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def node_worker(node: str, reporter=None, broker_url: str | None = None, slots: int = 4) -> Iterator[None]:
    """``node``'s Celery worker (``daemons.celery_worker``, as ``run_cloud`` runs it) in a thread of this process, on
    ``broker_url`` (the host's own broker by default), reporting to ``reporter``; stopped and joined afterwards."""
    from daemons.celery_worker import celery_worker
    from educloud.celery import app
    from nc import tasks

    previous_reporter, previous_url = tasks._reporter, app.conf.broker_url
    tasks.use_reporter(reporter)
    _use_broker(app, broker_url or broker())
    stop = threading.Event()
    thread = threading.Thread(target=celery_worker(f"nc@{node}", [node_commands(node)], slots), args=(stop,),
                              name=f"test-worker-{node}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
        _use_broker(app, previous_url)
        tasks.use_reporter(previous_reporter)
        assert not thread.is_alive(), f"the worker of {node} did not stop"
