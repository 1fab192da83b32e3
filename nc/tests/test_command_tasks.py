"""The node's command tasks (``nc.tasks``), run through Celery: every command nodes know has its task and every task
of the node is a known command (enumerated from both sides, so a new one cannot slip past); who may command a node
(a CC of the node's cluster, and the node itself); and a task whose argument is not its own sealed command fails at
once with the reason and never runs anything."""

from __future__ import annotations

import pytest

from educloud.celery import app
from luhyaapi.commands import KINDS, sealed
from luhyaapi.messages import Command, InsStatus, encode
from luhyaapi.queues import node_commands
from luhyaapi.signing import seal
from luhyaapi.trust import own_key
from luhyadb.choices import KeyStateChoices
from luhyadb.models import HostCredential
from nc import tasks
from nc.models import CommandRecord
from nc.services.commands import HANDLERS, RefusedCommand
from tests.commands import RecordingReporter, as_node
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db]


@pytest.fixture
def node(settings):
    """This host as node controller nc-1 of cluster1, the hosts around it, and what its tasks report."""
    as_node(settings)
    reporter = RecordingReporter()
    tasks.use_reporter(reporter)
    yield {"cc-1": enrolled_key("cc-1", "cc"), "cc-2": enrolled_key("cc-2", "cc", cluster="cluster2"),
           "nc-2": enrolled_key("nc-2"), "pc-12": enrolled_key("pc-12", "pc", mac="52:54:00:3c:0f:12"),
           "nc-1": own_key(), "reporter": reporter}
    tasks.use_reporter(None)


def apply(op: str, envelope):
    return app.tasks[KINDS[op].task].apply(args=[envelope])


def test_every_command_nodes_know_is_a_registered_task_with_a_handler_and_every_node_task_is_a_command():
    node_tasks = {name for name in app.tasks if name.startswith("nc.")}
    assert node_tasks == {kind.task for kind in KINDS.values()}
    assert set(HANDLERS) == set(KINDS) == set(tasks.TASKS)


@pytest.mark.parametrize("op", sorted(KINDS))
def test_every_command_task_is_acknowledged_late_given_back_when_its_worker_dies_and_limited_in_time(op):
    task = app.tasks[KINDS[op].task]
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
    assert 0 < task.soft_time_limit < task.time_limit == KINDS[op].time_limit


def test_the_long_commands_have_hours_and_the_short_ones_minutes():
    assert KINDS["image/prepare"].time_limit >= 3600 and KINDS["instance/submit"].time_limit >= 3600
    assert KINDS["instance/stop"].time_limit <= 1800 and KINDS["status/report"].time_limit <= 300


def test_commands_from_the_clusters_cc_and_from_the_node_itself_run_once_each(node):
    from_cc, from_itself = Command(op="status/report"), Command(op="status/report")
    for key, command in (("cc-1", from_cc), ("nc-1", from_itself)):
        result = apply("status/report", sealed("nc-1", command, node[key]))
        assert (result.state, result.result["ran"]) == ("SUCCESS", True)
    again = apply("status/report", sealed("nc-1", from_cc, node["cc-1"]))
    assert (again.state, again.result["ran"]) == ("SUCCESS", False)
    assert node["reporter"].reports == [from_cc.msg_id, from_itself.msg_id]


@pytest.mark.parametrize("sender, reason", [
    ("nc-2", "nc-2 may not command nc-1: only its cluster's CC and the node itself may"),
    ("pc-12", "pc-12 may not command nc-1: only its cluster's CC and the node itself may"),
    ("cc-2", "cc-2 controls cluster cluster2, not this node's cluster cluster1"),
])
def test_a_command_from_another_host_fails_with_the_reason_and_never_runs(node, sender, reason):
    result = apply("status/report", sealed("nc-1", Command(op="status/report"), node[sender]))
    assert (result.state, str(result.result)) == ("FAILURE", f"refused: {reason}")
    assert not CommandRecord.objects.exists() and node["reporter"].reports == []


def test_a_command_of_a_revoked_cc_or_sealed_for_another_node_fails(node):
    moved = sealed("nc-2", Command(op="status/report"), node["cc-1"])
    HostCredential.objects.filter(name="cc-2").update(state=KeyStateChoices.REVOKED, cluster="cluster1")
    assert str(apply("status/report", moved).result) == (
        f"refused: wrong signature: not sealed by cc-1 for {node_commands('nc-1')}")
    assert str(apply("status/report", sealed("nc-1", Command(op="status/report"), node["cc-2"])).result) == (
        "refused: cc-2 is not a trusted host of this cloud (unknown, or its key was revoked)")
    assert not CommandRecord.objects.exists()


@pytest.mark.parametrize("envelope, reason", [
    (None, "the task's argument is a NoneType, not a sealed command"),
    (17, "the task's argument is an int, not a sealed command"),
    ("not json", "refused: "),
])
def test_a_task_whose_argument_is_not_a_sealed_command_fails_at_once_without_retrying(node, envelope, reason):
    result = apply("instance/stop", envelope)
    assert result.state == "FAILURE" and str(result.result).startswith(reason)
    assert isinstance(result.result, RefusedCommand)
    assert not issubclass(RefusedCommand, tuple(app.tasks[KINDS["instance/stop"].task].autoretry_for))
    assert not CommandRecord.objects.exists()


def test_a_task_carrying_another_commands_seal_fails(node):
    stop = Command(op="instance/stop", paras={"insid": "ins-0000a001"})
    result = apply("host/poweroff", sealed("nc-1", stop, node["cc-1"]))
    assert (result.state, str(result.result)) == ("FAILURE", "the task of host/poweroff carries an instance/stop "
                                                             "command")


def test_a_status_message_in_a_task_fails_in_plain_english(node):
    status = InsStatus(insid="ins-0000a001", node="nc-1", state="running")
    result = apply("status/report", seal(node["cc-1"], node_commands("nc-1"), encode(status)).decode())
    assert (result.state, str(result.result)) == (
        "FAILURE", "refused: cc-1 (cc) may not put an insstatus message on cmd.<node>")


def test_every_registered_task_of_eduCloud_is_a_node_command_or_a_scheduled_periodic_job():
    from luhyaapi.jobs import JOBS

    app.loader.import_default_modules()  # every installed app's tasks module, as a worker loads them
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == {kind.task for kind in KINDS.values()} | {job.task for job in JOBS}
