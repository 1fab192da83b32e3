"""The live state of a node's commands as the CC reads it through Celery: the CC records a command queued when the
broker took it, and its ``cc-task-events`` daemon folds the node worker's task events (``cc.services.command_tasks``),
on both transports: a command goes received, started, in progress (its phase and percent) and done, naming the worker
that ran it; a task whose argument is not a sealed command shows failed with the reason."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from cc.models import CommandTask
from cc.services.command_tasks import follow_task_events, queue_command
from luhyaapi.messages import Command, TaskStatus
from luhyaapi.queues import node_commands
from nc.services import commands as node_commands_service
from nc.services.commands import Handler
from tests.commands import RecordingReporter, as_node, node_worker
from tests.services import wait_for

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(settings):
    """This host as node controller nc-1 (a command it seals for itself is one it may run, as its CC's are)."""
    as_node(settings, "nc-1", "cc")


@contextmanager
def following(broker_url: str):
    """The CC's task-event daemon in a thread, once it folds events (a command sent before it bound its queue would
    not be seen: each warm-up command is a new one, until one shows done)."""
    stop = threading.Event()
    thread = threading.Thread(target=follow_task_events(broker_url, "cc.test"), args=(stop,), daemon=True)
    thread.start()
    try:
        warm_ups: list[str] = []

        def warmed_up() -> bool:
            warm_ups.append(queue_command(broker_url, "nc-1", Command(op="status/report")).task_id)
            return CommandTask.objects.filter(task_id__in=warm_ups, state="done").exists()

        wait_for("the CC to fold the worker's task events", warmed_up, 60, every=1.0)
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the task-event daemon did not stop"


def wait_for_state(task_id: str, state: str, timeout: float = 60) -> CommandTask:
    def reached():
        task = CommandTask.objects.filter(task_id=task_id).first()
        return task if task is not None and task.state == state else None

    return wait_for(f"{task_id} to be {state}", reached, timeout, every=0.1)


def test_a_command_shows_queued_started_in_progress_and_done_with_its_worker(broker_url, node, monkeypatch):
    release = threading.Event()

    def download(command: Command, reporter) -> None:
        reporter.publish(TaskStatus(tid=command.tid, phase="preparing", state="downloading", progress=40))
        release.wait(30)

    with node_worker("nc-1", RecordingReporter(), broker_url), following(broker_url):
        monkeypatch.setitem(node_commands_service.HANDLERS, "status/report", Handler(download))
        task = queue_command(broker_url, "nc-1", Command(op="status/report", tid="tsk-1"))
        assert (task.state, task.node, task.op, task.tid) == ("queued", "nc-1", "status/report", "tsk-1")

        live = wait_for_state(task.task_id, "progress")
        assert (live.phase, live.progress, live.worker) == ("preparing", 40, "nc@nc-1")
        release.set()
        done = wait_for_state(task.task_id, "done")
    assert (done.progress, done.reason, done.worker) == (100, "", "nc@nc-1")


def test_a_task_whose_argument_is_not_a_sealed_command_shows_failed_with_the_reason(broker_url, node):
    from educloud.celery import app

    with node_worker("nc-1", RecordingReporter(), broker_url), following(broker_url):
        queue = node_commands("nc-1")
        with app.connection_for_write(broker_url) as connection:
            bad = app.send_task("nc.instance_stop", args=[{"op": "instance/stop"}], queue=queue, routing_key=queue,
                                connection=connection)
        failed = wait_for_state(bad.id, "failed")
    assert (failed.node, failed.op, failed.worker) == ("nc-1", "instance/stop", "nc@nc-1")
    assert "the task's argument is a dict, not a sealed command" in failed.reason
    assert failed.retries == 0


def test_the_clusters_workers_show_online_with_what_they_run_and_a_silent_node_not_answering(tmp_path, node,
                                                                                             monkeypatch):
    """On the SQLite broker. A worker in the test's own process answered no inspection on RabbitMQ after one on the
    SQLite broker had run in that process (a host never changes brokers), so the RabbitMQ case is proved with hosts
    as processes of their own, in tests/e2e/test_cloud_processes.py."""
    from cc.models import ClusterNode
    from cc.services.workers import cluster_workers

    broker_url = f"sqlite-broker://{tmp_path}/broker.sqlite3"

    for name in ("nc-1", "nc-2"):  # nc-2 registered, its worker is not running
        ClusterNode.objects.create(name=name, role="nc", ip="10.0.0.1")
    release = threading.Event()
    monkeypatch.setitem(node_commands_service.HANDLERS, "status/report",
                        Handler(lambda command, reporter: release.wait(30)))
    with node_worker("nc-1", RecordingReporter(), broker_url, slots=3):
        try:
            task = queue_command(broker_url, "nc-1", Command(op="status/report", tid="tsk-9"))
            rows = wait_for("nc-1's worker to run the command", lambda: (
                found := cluster_workers(broker_url, timeout=3.0)) and found[0]["active"] and found[0]["slots"]
                and found, 60)
        finally:
            release.set()
    one, two = rows
    assert (one["node"], one["worker"], one["online"], one["slots"]) == ("nc-1", "nc@nc-1", True, 3)
    assert one["active"][0] | {"started": None} == {"task_id": task.task_id, "op": "status/report", "tid": "tsk-9",
                                                    "started": None}
    assert (two["node"], two["online"], two["active"], two["unknown_node"]) == ("nc-2", False, [], False)
