"""A node's commands through a real Celery worker (``daemons.celery_worker``, as ``run_cloud`` runs it), the same
tests on both transports: the embedded default's SQLite broker and RabbitMQ. Each command runs once in the worker's
threads; a command sent twice runs once; a task the node does not know, or whose argument is not a sealed command,
fails at once and the queue goes on."""

from __future__ import annotations

import collections
import logging
import time

import pytest
from celery.signals import task_prerun

from luhyaapi.commands import send_command
from luhyaapi.messages import Command
from luhyaapi.queues import node_commands
from nc.models import CommandRecord
from tests.commands import RecordingReporter, as_node, node_worker
from tests.keys import enrolled_key
from tests.services import wait_for

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(settings):
    """This host as node controller nc-1 of cluster1, and cc-1, the cluster's CC, that may command it."""
    as_node(settings)
    return enrolled_key("cc-1", "cc")


@pytest.fixture
def runs():
    """How many times each task id was started by a worker."""
    started: collections.Counter[str] = collections.Counter()

    def count(task_id=None, **_):
        started[task_id] += 1

    task_prerun.connect(count, weak=False)
    yield started
    task_prerun.disconnect(count)


def test_every_command_sent_to_a_node_runs_once_on_its_worker(broker_url, node, runs):
    commands = [Command(op="status/report", paras={"n": n}) for n in range(20)]
    for command in commands:
        send_command(broker_url, "nc-1", command, key=node)
    send_command(broker_url, "nc-1", commands[0], key=node)  # sent again (a CC that asked twice)
    reporter = RecordingReporter()
    with node_worker("nc-1", reporter, broker_url):
        wait_for("the node to run every command", lambda: CommandRecord.objects.filter(done_at__isnull=False).count()
                 == len(commands) and runs[commands[0].msg_id] == 2, 60)
    assert sorted(reporter.reports) == sorted(command.msg_id for command in commands)


def test_a_task_the_node_does_not_know_or_with_a_bad_argument_fails_once_and_the_queue_goes_on(
        broker_url, node, runs, caplog):
    from educloud.celery import app

    queue = node_commands("nc-1")
    with app.connection_for_write(broker_url) as connection:
        unknown = app.send_task("nc.image_explode", args=["x"], queue=queue, routing_key=queue, connection=connection)
        malformed = app.send_task("nc.instance_stop", args=[{"op": "instance/stop"}], queue=queue,
                                  routing_key=queue, connection=connection)
    after = Command(op="status/report")
    send_command(broker_url, "nc-1", after, key=node)
    reporter = RecordingReporter()
    with caplog.at_level(logging.ERROR), node_worker("nc-1", reporter, broker_url):
        wait_for("the command after them to run", lambda: reporter.reports == [after.msg_id], 60)
        time.sleep(0.5)
    assert runs[malformed.id] == 1 and runs[unknown.id] == 0
    logged = caplog.text
    assert "nc.image_explode" in logged and "unregistered" in logged.lower()
    assert "the task's argument is a dict, not a sealed command" in logged
    assert not CommandRecord.objects.exclude(msg_id=after.msg_id).exists()


def test_a_command_that_expired_while_its_node_was_offline_is_dropped_unrun_when_the_node_comes_back(
        broker_url, node, runs):
    stale = Command(op="status/report", paras={"n": "stale"})
    send_command(broker_url, "nc-1", stale, key=node, expires=1)
    time.sleep(1.5)  # the node is offline past the command's expiry
    fresh = Command(op="status/report", paras={"n": "fresh"})
    send_command(broker_url, "nc-1", fresh, key=node)
    reporter = RecordingReporter()
    with node_worker("nc-1", reporter, broker_url):
        wait_for("the fresh command to run", lambda: reporter.reports == [fresh.msg_id], 60)
        time.sleep(0.5)
    assert runs[stale.msg_id] == 0 and reporter.reports == [fresh.msg_id]
    assert not CommandRecord.objects.filter(msg_id=stale.msg_id).exists()
