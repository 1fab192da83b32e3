"""A submit the node cannot get through (its CC, or walrus behind it, out of reach) ends with the instance stopped
and the reason reported, its disk kept for another try; the flattened copy made for the upload is not left behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import replace

import pytest

from luhyaapi.messages import Command, InsStatus, TaskStatus
from nc.models import NodeInstance
from nc.services.instances import disk_dir, submit_instance

pytestmark = [pytest.mark.database, pytest.mark.django_db]

INSID = "ins-0000c0de"
TID = f"img-0000abcd:img-0000abcd:{INSID}"


class Reporter:
    def __init__(self):
        self.messages = []

    def publish(self, message):
        self.messages.append(message)

    def report_now(self, last_command=""):
        pass

    def of(self, kind):
        return [message for message in self.messages if isinstance(message, kind)]


@pytest.fixture
def node(settings, tmp_path, monkeypatch):
    """This node with its CC out of reach (a port nobody listens on) and upload retries that do not wait."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path / "host", cc_url=dead, hypervisor="qemu")
    monkeypatch.setattr("luhyaapi.transfer.BACKOFF_SECONDS", 0.0)
    return settings.EDUCLOUD


@pytest.fixture
def prepared(node):
    """A persistent instance prepared on this node: its own disk, stopped (as the wizard's VM is before a submit)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    disk = disk_dir(INSID) / "disk.qcow2"
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True, timeout=60)
    return NodeInstance.objects.create(instance_id=INSID, tid=TID, seq=1, disk_path=str(disk), persistent=True,
                                       state="stopped")


def submit(seq=2, image_id="img-0000abcd"):
    reporter = Reporter()
    submit_instance(Command(op="instance/submit", tid=TID, seq=seq, paras={"insid": INSID, "image_id": image_id}),
                    reporter)
    return reporter


def test_an_unreachable_cc_leaves_the_instance_stopped_with_the_reason_and_its_disk(prepared):
    reporter = submit()
    [*_, failed] = reporter.of(TaskStatus)
    assert (failed.phase, failed.failed, failed.done) == ("failed", True, False)
    assert failed.errormsg.startswith("submit failed: ") and "gave up after 5 retries" in failed.errormsg
    [stopped] = reporter.of(InsStatus)
    assert (stopped.insid, stopped.seq, stopped.state, stopped.errormsg) == (INSID, 2, "stopped", failed.errormsg)
    record = NodeInstance.objects.get(instance_id=INSID)
    assert record.state == "stopped"
    assert (disk_dir(INSID) / "disk.qcow2").is_file(), "the edited disk must stay for another submit"
    assert not (disk_dir(INSID) / "submit.qcow2").exists(), "the flattened copy must not be left behind"


def test_every_attempt_reports_submitting_before_its_failure_even_one_that_fails_at_once(prepared):
    # The CLC resets the task for each attempt and its fold skips a report equal to the one before: the same
    # failure twice in a row reaches the task's record only with another report between them.
    for seq in (2, 3):
        phases = [(message.phase, message.state) for message in submit(seq, image_id="img-;reboot").of(TaskStatus)]
        assert phases == [("submitting", "init"), ("failed", "init")]


def test_a_bad_image_id_fails_the_submit_but_keeps_the_instance_stopped(prepared):
    reporter = submit(image_id="img-;reboot")
    [stopped] = reporter.of(InsStatus)
    assert stopped.state == "stopped" and "not an eduCloud id" in stopped.errormsg
    assert (disk_dir(INSID) / "disk.qcow2").is_file()


def test_an_instance_without_a_disk_here_is_reported_failed(node):
    reporter = submit()
    [failed] = reporter.of(InsStatus)
    assert (failed.state, failed.errormsg) == ("failed", f"submit failed: instance {INSID} has no disk on this node "
                                                         "to submit")
