"""The CLC's side of a wizard submit that does not get through: a CC that refuses it or cannot be reached leaves the
VM stopped with the reason and the task failed (the submit is offered again); the node's report of a failed submit
folds into the VM stopped with the reason; and the submit asked again reaches the node as a new command (a new run
number), not as a repeat of the failed one that the node would skip."""

from __future__ import annotations

import socket

import pytest

from cc.models import ClusterInstance
from clc.services.builds import BuildError, begin_build, build_steps, submit_build
from clc.services.status import StatusFolder
from luhyaapi.messages import InsStatus, TaskStatus
from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, Server, TaskTransaction, VMType
from tests.commands import queued

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stopped_build(controller):
    """A wizard whose VM was prepared on node pc-12 of cluster1 and is stopped (the CC has no record of it)."""
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Lab desktop", owner_group=group, current_version=1)
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    task = begin_build(image, VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1))
    Instance.objects.filter(build_tid=task.tid).update(state="stopped", node="pc-12", cluster="cluster1", runs=1)
    return task


def _unreachable(controller) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        Server.objects.filter(pk=controller.pk).update(api_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    return "the cluster controller did not take the submit: "


def _no_record(controller) -> str:
    return "is not placed in this cluster"


@pytest.mark.parametrize("refusal", [_no_record, _unreachable])
def test_a_submit_the_cc_does_not_take_leaves_the_vm_stopped_and_the_task_failed_with_the_reason(
        controller, stopped_build, refusal):
    reason = refusal(controller)
    with pytest.raises(BuildError) as raised:
        submit_build(stopped_build)
    assert raised.value.status == 502 and reason in str(raised.value)
    instance = Instance.objects.get(build_tid=stopped_build.tid)
    assert (instance.state, instance.message) == ("stopped", str(raised.value))
    task = TaskTransaction.objects.get(tid=stopped_build.tid)
    assert (task.phase, task.failed, task.message) == ("failed", True, str(raised.value))
    assert build_steps(instance)["submit"]


def test_a_submit_asked_again_after_the_node_reported_it_failed_is_a_new_command_for_the_node(node, stopped_build):
    insid = stopped_build.instance_id
    ClusterInstance.objects.create(instance_id=insid, node="pc-12", tid=stopped_build.tid, seq=1, kind="rvd",
                                   persistent=True, cpus=1, memory_mb=256, state="stopped")
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)
    reason = "submit failed: walrus refused POST /walrus/api/1.0/uploads/: 507: the image store is full"

    assert submit_build(stopped_build).state == "submitting"
    [first] = queued("pc-12")
    folder.fold([TaskStatus(tid=stopped_build.tid, phase="failed", state="init", failed=True, errormsg=reason)])
    folder.fold([InsStatus(insid=insid, node="pc-12", seq=1, state="stopped", vmstatus="stopped")])
    assert Instance.objects.get(instance_id=insid).state == "submitting", "a late report of the run before"
    folder.fold([InsStatus(insid=insid, node="pc-12", seq=first.seq, state="stopped", vmstatus="submit failed",
                           errormsg=reason)])
    instance = Instance.objects.get(instance_id=insid)
    assert (instance.state, instance.message) == ("stopped", reason)
    task = TaskTransaction.objects.get(tid=stopped_build.tid)
    assert (task.phase, task.failed, task.message) == ("failed", True, reason)
    assert build_steps(instance)["submit"]

    submit_build(stopped_build)
    [again] = queued("pc-12")
    assert (first.op, again.op) == ("instance/submit", "instance/submit")
    assert again.key != first.key, "the node would skip it as a repeat of the failed submit"
    assert (first.seq, again.seq) == (2, 3)
    assert ClusterInstance.objects.get(instance_id=insid).seq == 3
