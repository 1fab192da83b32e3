"""A node's attachments come back whenever its VM does (issue 16), with real QEMU and a real iSCSI target: a volume
attached to a persistent instance through the node's ``volume/attach`` command keeps what the guest wrote on it when
the node controller restarts with QEMU still running (nothing attached twice), when the instance is stopped and run
again, and when its QEMU died and it is run again; ``volume/detach`` then ends it. And the whole way from the CLC's
call: attached through the CC's API (the CC has this test server's SC role export the volume to the node and queues
the attach, which the node's task runs), written by the guest, detached through the CC's API, and the SC's export
ended once the node's report of it reaches the CC.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cc.models import ClusterInstance, ClusterNode
from cc.services.nodes import NodeStatusRelay
from luhyaapi.messages import Command, TaskStatus
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions
from luhyaapi.volumes import initiator_iqn, target_iqn, volume_task_id
from nc.models import NodeInstance, NodeVolume
from nc.services.commands import execute_command
from nc.services.instances import (
    adopt_instances,
    delete_instance,
    disk_dir,
    node_driver,
    run_instance,
    stop_instance,
    watch_instances,
)
from tests.commands import run_queued
from tests.nodevm import Reporter, guest_get, qemu_node, serves, wait_for
from tests.services import build_test_image, free_port_block, free_tgt_control_port

pytestmark = [pytest.mark.database, pytest.mark.guest, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(900)]

NODE = "nc-vol"
INSID = "ins-0000d001"
VOLUME = "vol-0000d001"
TID = f"img-0000abcd:img-0000abcd:{INSID}"
IMAGE = {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64, "size": 1}
BOOT_TIMEOUT = 180.0
PLUG_TIMEOUT = 60.0


@pytest.fixture
def node(settings) -> Iterator[Path]:
    """This node (``tests.nodevm.qemu_node``, named ``NODE``); its VMs removed after."""
    with qemu_node(settings, "nc-vol-", name=NODE, vm_ready_timeout=BOOT_TIMEOUT) as root:
        yield root


def read_volume(port: int, length: int, volume_id: str = VOLUME) -> str | None:
    response = guest_get(port, "/cgi-bin/blockread", serial=volume_id, offset=8192, length=length)
    return response.text if response is not None and response.status_code == 200 else None


def run(seq: int, reporter: Reporter, insid: str = INSID) -> int:
    """Run the persistent instance (its disk is in place, so no image is fetched) until its guest serves; returns
    the port its page is forwarded to."""
    console, http = free_port_block(2, low=6000, high=6999)
    nic = NicSpec(mode="nat", model="virtio", mac="52:54:00:00:d0:01",
                  forwards=(PortForward(host_port=http, guest_port=80),))
    options = RuntimeOptions(memory_mb=256, disk_type="virtio", nics=(nic,), console=ConsoleSpec(port=console))
    run_instance(Command(op="instance/run", tid=TID, seq=seq,
                         paras={"insid": insid, "image": IMAGE, "options": options.model_dump(mode="json"),
                                "persistent": True}), reporter)
    assert reporter.last_instance().state == "booting", reporter.last_instance()
    wait_for(lambda: serves(http), BOOT_TIMEOUT, "page from the guest")
    return http


def qemu_pid() -> int:
    return int((node_driver().vm_dir(INSID) / "qemu.pid").read_text())


def test_an_attached_volume_comes_back_after_a_restart_of_the_node_a_stop_and_a_dead_qemu(node, tgt, tmp_path):
    volume_file = tmp_path / "volume.raw"
    with volume_file.open("wb") as data:
        data.truncate(16 * 1024 * 1024)
    target = tgt.export(VOLUME, volume_file, initiator_iqn(NODE))
    disk = disk_dir(INSID) / "disk.qcow2"
    disk.parent.mkdir(parents=True)
    node_driver().clone_disk(build_test_image(), disk)
    reporter = Reporter()
    port = run(1, reporter)

    execute_command(Command(op="volume/attach", tid="vtask-attach",
                            paras={"insid": INSID, "target": target.model_dump(mode="json")}), reporter)
    assert (reporter.last_task().state, reporter.last_task().result["device"]) == ("attached", VOLUME)
    wait_for(lambda: read_volume(port, 1) is not None, PLUG_TIMEOUT, "volume in the guest")
    payload = "kept across every start"
    written = guest_get(port, "/cgi-bin/blockwrite", serial=VOLUME, offset=8192, text=payload)
    assert written is not None and written.status_code == 200, written and written.text

    # The node controller restarts; QEMU ran on: the disk is there already and is not plugged in a second time.
    pid = qemu_pid()
    assert adopt_instances(reporter) == [INSID]
    assert [found.volume_id for found in node_driver().attached_volumes(INSID)] == [VOLUME]
    assert tgt.sessions(VOLUME) == [initiator_iqn(NODE)]
    assert qemu_pid() == pid and read_volume(port, len(payload)) == payload

    # Stopped and run again: the new VM gets the volume back at its start, and the guest reads what it wrote.
    stop_instance(Command(op="instance/stop", tid=TID, seq=1, paras={"insid": INSID}), reporter)
    assert reporter.last_instance().state == "stopped"
    assert tgt.sessions(VOLUME) == [] and NodeVolume.objects.filter(volume_id=VOLUME).exists()
    port = run(2, reporter)
    wait_for(lambda: read_volume(port, len(payload)) == payload, PLUG_TIMEOUT, "the written bytes after a restart")
    assert [found.volume_id for found in node_driver().attached_volumes(INSID)] == [VOLUME]

    # Its QEMU dies (the node controller finds it gone): the run ends, and the next run attaches the volume again.
    os.kill(qemu_pid(), signal.SIGKILL)
    wait_for(lambda: watch_instances(reporter) == [INSID], 30, "the dead VM noticed")
    assert NodeInstance.objects.get(instance_id=INSID).state == "stopped"
    port = run(3, reporter)
    wait_for(lambda: read_volume(port, len(payload)) == payload, PLUG_TIMEOUT, "the written bytes after QEMU died")
    assert tgt.sessions(VOLUME) == [initiator_iqn(NODE)]

    execute_command(Command(op="volume/detach", tid="vtask-detach",
                            paras={"insid": INSID, "volume_id": VOLUME}), reporter)
    assert reporter.last_task().state == "detached"
    assert not NodeVolume.objects.exists() and node_driver().attached_volumes(INSID) == []
    assert tgt.sessions(VOLUME) == []
    delete_instance(Command(op="instance/delete", tid=TID, seq=3, paras={"insid": INSID}), reporter)


@pytest.fixture
def sc_role(node, live_server, cloud_at) -> Iterator[Path]:
    """This test server as the cluster's SC too (its store under the node's directory, a tgtd of its own on a free
    loopback portal), registered with this server's CC as sc-1 at the live server's address; its tgtd stopped
    after. Yields the folder of its volume files."""
    from sc.services.targets import target_server
    from tests.iscsi import tgt_missing

    if tgt_missing():
        pytest.skip(tgt_missing())
    portal, _ = free_port_block(1, low=30000, high=39999)
    cloud_at(live_server.url, iscsi_listen=("127.0.0.1", portal), tgt_control_port=free_tgt_control_port(),
             sc_capacity_bytes=0)
    ClusterNode.objects.create(role="sc", name="sc-1", ip="127.0.0.1", api_url=live_server.url)
    try:
        yield node / "sc" / "volumes"
    finally:
        target_server().stop()


class Upstream:
    """The CLC's status queue as the CC's relay sees it."""

    def __init__(self) -> None:
        self.published: list = []

    def publish(self, queue: str, message) -> None:
        self.published.append(message)


def test_attached_and_detached_through_the_ccs_api_and_the_export_ends_at_the_sc(node, sc_role, signed_client):
    from sc.models import Export
    from sc.services.store import create_volume
    from sc.services.targets import target_server

    insid, volume_id = "ins-0000d002", "vol-0000d002"
    create_volume(size=16 * 1024 * 1024, volume_id=volume_id)
    disk = disk_dir(insid) / "disk.qcow2"
    disk.parent.mkdir(parents=True)
    node_driver().clone_disk(build_test_image(), disk)
    reporter = Reporter()
    port = run(1, reporter, insid)
    # The CC placed it on this node (as its run would have recorded it).
    ClusterInstance.objects.create(instance_id=insid, node=NODE, tid=TID, seq=1, kind="vs", persistent=True, cpus=1,
                                   memory_mb=256, state="running")
    volume = {"volume": {"volume_id": volume_id, "sc": "sc-1"}}

    answer = signed_client.post(f"/cc/api/1.0/instances/{insid}/volumes/", volume)
    assert answer.status_code == 202, answer.content
    tid = volume_task_id(volume_id, insid)
    assert answer.json() == {"insid": insid, "volume_id": volume_id, "node": NODE, "tid": tid}
    assert Export.objects.get(volume__volume_id=volume_id).initiator == initiator_iqn(NODE)
    run_queued(NODE, reporter)  # the node's worker takes the attach
    assert (reporter.last_task().tid, reporter.last_task().state) == (tid, "attached"), reporter.last_task()
    wait_for(lambda: read_volume(port, 1, volume_id) is not None, PLUG_TIMEOUT, "volume in the guest")
    payload = "written through the CC's attach"
    written = guest_get(port, "/cgi-bin/blockwrite", serial=volume_id, offset=8192, text=payload)
    assert written is not None and written.status_code == 200, written and written.text
    with (sc_role / f"{volume_id}.raw").open("rb") as data:
        data.seek(8192)
        assert data.read(len(payload)).decode() == payload, "the SC's volume file holds what the guest wrote"

    answer = signed_client.post(f"/cc/api/1.0/instances/{insid}/volumes/{volume_id}/detach/", volume)
    assert answer.status_code == 202, answer.content
    run_queued(NODE, reporter)
    done = reporter.last_task()
    assert (done.tid, done.state, done.done) == (tid, "detached", True)
    assert node_driver().attached_volumes(insid) == []
    assert Export.objects.filter(volume__volume_id=volume_id).exists(), "ended once the CC hears the node"
    # The node's report reaches the CC's relay: it goes up to the CLC, and the export ends at the SC.
    upstream = Upstream()
    NodeStatusRelay(upstream, touch_seconds=0).relay([TaskStatus.model_validate(done.model_dump())])
    assert upstream.published and upstream.published[0].tid == tid
    assert not Export.objects.filter(volume__volume_id=volume_id).exists()
    assert target_iqn(volume_id) not in target_server().tgtadm("--op", "show", "--mode", "target").stdout
    delete_instance(Command(op="instance/delete", tid=TID, seq=1, paras={"insid": insid}), reporter)
