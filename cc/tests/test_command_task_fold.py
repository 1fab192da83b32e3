"""How the CC folds Celery's task events into its record of a command (``cc.services.command_tasks.TaskEventFold``):
each event moves the command on, an old or repeated event changes nothing, a command done stays done, and events of
tasks that are not node commands are left alone. The events are shaped as a Celery worker sends them; the real
worker and broker are in tests/integration/test_command_task_state.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cc.models import CommandTask
from cc.services.command_tasks import TaskEventFold

pytestmark = pytest.mark.django_db

TASK = "5f0c6d2a9e3b4f1c8a7d6e5f4c3b2a19"
fold = TaskEventFold()


def event(kind: str, at: float, **fields) -> dict:
    return {"type": kind, "uuid": TASK, "timestamp": at, "hostname": "nc@nc-1", **fields}


@pytest.fixture
def queued() -> CommandTask:
    return CommandTask.objects.create(task_id=TASK, node="nc-1", op="image/prepare", tid="tsk-7",
                                      queued_at=datetime.now(UTC))


def state() -> tuple:
    task = CommandTask.objects.get(task_id=TASK)
    return task.state, task.phase, task.progress, task.worker, task.retries, task.reason


def test_a_command_goes_received_started_in_progress_and_done(queued):
    fold(event("task-received", 1.0, name="nc.image_prepare", retries=0))
    assert state() == ("received", "", 0, "nc@nc-1", 0, "")
    fold(event("task-started", 2.0))
    assert state()[0] == "started"
    fold(event("task-progress", 3.0, phase="preparing", state="downloading", progress=55))
    assert state() == ("progress", "preparing", 55, "nc@nc-1", 0, "")
    fold(event("task-succeeded", 4.0, result="{}", runtime=3.1))
    assert state() == ("done", "preparing", 100, "nc@nc-1", 0, "")


def test_a_retried_command_shows_why_and_how_many_times(queued):
    fold(event("task-retried", 1.0, exception="BusUnavailable('the status bus is away')"))
    assert state()[0] == "retrying" and "the status bus is away" in state()[5]
    fold(event("task-received", 2.0, retries=1))
    assert state()[:1] + state()[4:5] == ("received", 1)


def test_a_failed_command_keeps_the_reason(queued):
    fold(event("task-failed", 1.0, exception="RefusedCommand('sealed by an unknown host')"))
    assert state()[0] == "failed" and "sealed by an unknown host" in state()[5]


def test_an_event_older_than_the_newest_folded_changes_nothing(queued):
    fold(event("task-progress", 5.0, phase="preparing", progress=80))
    fold(event("task-progress", 4.0, phase="preparing", progress=20))
    fold(event("task-started", 3.0))
    assert state()[:3] == ("progress", "preparing", 80)


def test_a_command_done_stays_done_when_its_redelivery_starts_again(queued):
    fold(event("task-succeeded", 5.0))
    fold(event("task-received", 6.0))
    fold(event("task-started", 7.0))
    assert state()[0] == "done"


def test_a_task_that_expired_unrun_shows_failed_with_why(queued):
    fold(event("task-revoked", 2.0, expired=True))
    assert state()[0] == "failed" and state()[5] == "expired before a worker took it"


def test_a_node_command_the_cc_has_no_record_of_is_recorded_from_its_receipt():
    fold(event("task-received", 1.0, name="nc.instance_stop"))
    task = CommandTask.objects.get(task_id=TASK)
    assert (task.node, task.op, task.state, task.tid) == ("nc-1", "instance/stop", "received", "")


@pytest.mark.parametrize("unrelated", [
    event("task-received", 1.0, name="celery.backend_cleanup"),  # not a node command
    event("task-started", 1.0),  # no record and not a receipt: nothing to name it by
    {"type": "worker-heartbeat", "hostname": "nc@nc-1", "timestamp": 1.0},
    {"type": "task-received", "name": "nc.instance_stop"},  # no task id
    event("task-received", 1.0, name="nc.instance_stop", hostname="beat@cc-1"),  # not a node's worker
])
def test_events_that_are_not_about_a_node_command_are_left_alone(unrelated):
    fold(unrelated)
    assert not CommandTask.objects.exists()


def test_a_command_whose_paras_name_no_instance_id_is_recorded_without_one(settings, tmp_path):
    from cc.services.command_tasks import queue_command
    from luhyaapi.messages import Command

    url = f"sqlite-broker://{tmp_path}/broker.sqlite3"
    odd = queue_command(url, "nc-1", Command(op="status/report", paras={"insid": "x" * 300}, seq=2))
    named = queue_command(url, "nc-1", Command(op="instance/stop", paras={"insid": "ins-0000000a"}, seq=3))
    assert (odd.instance_id, odd.seq) == ("", 2)
    assert (named.instance_id, named.seq) == ("ins-0000000a", 3)
