"""The labels of an instance's metrics on the node (issue 17): the run command's ``labels`` (image, owner group,
monitoring) are kept on the instance's record, each run's own; a run without them, or with values of the wrong type,
keeps no image or owner group and monitoring on. The node's real ``instance/run`` (QEMU driver, a persistent disk
already there, prepare only: no VM is started)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from luhyaapi.messages import Command
from luhyaapi.vmspec import ConsoleSpec, NicSpec, RuntimeOptions
from nc.models import NodeInstance
from nc.services.instances import disk_dir, node_driver, run_instance
from tests.nodevm import Reporter, qemu_node

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

INSID = "ins-0000e0a1"
TID = f"img-0000abcd:img-0000abcd:{INSID}"
IMAGE = {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64, "size": 1}
OPTIONS = RuntimeOptions(memory_mb=128, nics=(NicSpec(mode="nat", mac="52:54:00:00:e0:a1"),),
                         console=ConsoleSpec(port=5999)).model_dump(mode="json")


@pytest.fixture
def node(settings) -> Iterator[Path]:
    with qemu_node(settings, "nc-labels-") as root:
        disk = disk_dir(INSID) / f"disk{node_driver().disk_suffix}"
        disk.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
        yield root


def prepare(seq: int, **paras) -> NodeInstance:
    reporter = Reporter()
    run_instance(Command(op="instance/run", tid=TID, seq=seq, paras={
        "insid": INSID, "image": IMAGE, "options": OPTIONS, "persistent": True, "boot": False} | paras), reporter)
    assert reporter.states() == ["preparing", "stopped"], reporter.messages
    return NodeInstance.objects.get(instance_id=INSID)


def test_each_runs_labels_are_kept_on_the_instance_and_a_run_without_them_is_monitored(node):
    labels = {"image_id": "img-0000abcd", "owner_group": "edu.school1.class2", "monitoring": False}
    assert prepare(1, labels=labels).labels == labels
    assert prepare(2).labels == {"monitoring": True}, "a CC that sends no labels: monitored, no such dimensions"
    assert prepare(3, labels={"image_id": 7, "owner_group": ["edu"], "monitoring": "no"}).labels == {
        "monitoring": True}, "values of the wrong type are not kept"
    assert prepare(4, labels="edu").labels == {"monitoring": True}
