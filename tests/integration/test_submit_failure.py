"""The image wizard's submit when walrus does not take the disk, on the all-in-one host (every role's API on the
live server, the node's command tasks, the CC's status relay and the CLC's fold, a real qcow2 disk): the node
reports the VM stopped with the reason, which reaches the node's, the cluster's and the cloud's records and the
task; the disk stays, and the submit asked again stores the new version."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.cache import cache

import cc.services.image_cache as cluster_cache_module
from cc.models import ClusterInstance
from cc.services.nodes import NodeStatusRelay
from clc.services.builds import begin_build, build_steps, prepare_build, submit_build
from clc.services.images import create_image, finish_upload, start_upload
from clc.services.status import StatusFolder
from clc.services.tasks import task_status
from luhyaapi.messages import Message, decode, encode
from luhyaapi.queues import CLC_STATUS
from luhyaapi.transfer import upload_file
from luhyaapi.trust import own_key
from luhyadb.models import Image, Instance, OwnerGroup, TaskTransaction, VMType
from nc.models import NodeInstance
from nc.services.instances import disk_dir
from tests.commands import purge, run_queued
from tests.services import one_host_servers

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("no_lingering_connections")]


def _dead_url() -> str:
    """An address nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _wait_for(what: str, probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def cloud(live_server, cloud_at, tmp_path, monkeypatch):
    """One host running every role, with walrus and the CC online, its node known to the CC, upload retries that
    do not wait (an unreachable walrus is given up on at once)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed; the test command (tests/run.sh) installs it")
    config = cloud_at(live_server.url, data_dir=tmp_path / "host", name="aio", hypervisor="qemu")
    monkeypatch.setattr(cluster_cache_module, "_caches", {})
    monkeypatch.setattr("luhyaapi.transfer.BACKOFF_SECONDS", 0.0)
    cache.clear()
    one_host_servers(config, live_server.url, cpus=4, memory_mb=8192, disk_mb=10**6, free_disk_mb=10**6,
                     last_seen=datetime.now(tz=UTC))
    return config


class CloudStatusQueue:
    """The cloud bus's ``clc.status`` as the CC's relay sees it, folded by the CLC as each report is published."""

    def __init__(self) -> None:
        self.folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)

    def publish(self, queue: str, message: Message) -> None:
        assert queue == CLC_STATUS
        self.folder.fold([decode(encode(message))])


class StatusUp:
    """The node's reporter: every report goes up as the CC's and the CLC's status daemons take it (the CC's relay
    notes it and passes it on, the CLC folds it), each hop through JSON, but in the reporting thread: the tests'
    in-memory SQLite refuses a second writer at once instead of waiting, so the roles must take turns."""

    def __init__(self) -> None:
        self.relay = NodeStatusRelay(upstream=CloudStatusQueue())

    def publish(self, message: Message) -> None:
        self.relay.relay([decode(encode(message))])

    def report_now(self, last_command: str = "") -> None:
        """The node's heartbeat is not under test here."""


@pytest.fixture
def node(cloud):
    """Runs what the CC queued for the node, as the node's worker does (its tasks, here in the test's thread)."""
    purge(cloud.name)
    reporter = StatusUp()

    def run() -> None:
        for result in run_queued(cloud.name, reporter):
            assert result.state == "SUCCESS", result.result

    return run


@pytest.fixture
def image(cloud, tmp_path):
    """An image with a real qcow2 disk as its version 1 in walrus."""
    disk = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "32M"], check=True, timeout=60)
    image = create_image(name="Lab server", usage="server",
                         owner_group=OwnerGroup.objects.create(name="root", path="edu"))
    upload = start_upload(image, disk.stat().st_size)
    upload_file(cloud.walrus_url, own_key(), disk, image.image_id, upload_id=upload["upload_id"])
    finish_upload(image, upload["upload_id"])
    image.refresh_from_db()
    return image


@pytest.fixture
def prepared(node, image):
    """A wizard modifying the image, its VM prepared on the node (disk cloned, stopped): ready to submit."""
    task = begin_build(image, VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1))
    prepare_build(task)
    node()
    assert Instance.objects.get(build_tid=task.tid).state == "stopped"
    return task


@contextmanager
def walrus_out_of_reach(settings) -> Iterator[str]:
    """The CC's relay finds nobody at walrus's address: it answers the node 502, which the node gives up on."""
    working = settings.EDUCLOUD
    settings.EDUCLOUD = replace(working, walrus_url=_dead_url())
    try:
        yield "walrus cannot be reached"
    finally:
        settings.EDUCLOUD = working


@contextmanager
def walrus_store_full(settings) -> Iterator[str]:
    """Walrus has no room for the upload (its disk measured full) and refuses it with 507."""
    uploads = settings.EDUCLOUD.data_dir / "walrus" / "uploads"
    measure = shutil.disk_usage

    def full_for_walrus(path):
        usage = measure(path)
        return usage._replace(free=0) if Path(path) == uploads else usage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "disk_usage", full_for_walrus)
        yield "507: the image store has 0 bytes free"


@pytest.mark.parametrize("breakage", [walrus_out_of_reach, walrus_store_full])
def test_a_submit_walrus_does_not_take_leaves_the_vm_stopped_with_the_reason_and_can_be_asked_again(
        prepared, node, image, breakage, settings):
    task = prepared
    insid = task.instance_id
    with breakage(settings) as reason:
        assert submit_build(task).state == "submitting"
        node()
    instance = Instance.objects.get(build_tid=task.tid)
    assert instance.state == "stopped"

    assert instance.message.startswith("submit failed: ") and reason in instance.message
    assert ClusterInstance.objects.get(instance_id=insid).state == "stopped"
    node_record = NodeInstance.objects.get(instance_id=insid)
    assert node_record.state == "stopped"
    assert Path(node_record.disk_path).is_file(), "the edited disk must stay for another submit"
    assert not list(disk_dir(insid).glob("submit*")), "the flattened copy must not be left behind"
    record = TaskTransaction.objects.get(tid=task.tid)
    assert (record.phase, record.failed, record.done, record.message) == ("failed", True, False, instance.message)
    status = task_status(task.tid)
    assert status["failed"] and status["message"] == instance.message
    assert build_steps(instance)["submit"], "the wizard must offer the submit again"
    assert Image.objects.get(pk=image.pk).current_version == 1

    submit_build(task)
    node()
    assert not Instance.objects.filter(build_tid=task.tid).exists()
    record = TaskTransaction.objects.get(tid=task.tid)
    assert (record.phase, record.state, record.done, record.failed) == ("submitting", "done", True, False)
    image.refresh_from_db()
    assert (image.current_version, image.version) == (2, "1.0.1")
    assert not ClusterInstance.objects.filter(instance_id=insid).exists()
    assert not NodeInstance.objects.filter(instance_id=insid).exists()
    assert not disk_dir(insid).exists()
