"""A node's attachments come back whenever its VM does (issue 16), with real QEMU and a real iSCSI target: a volume
attached to a persistent instance through the node's ``volume/attach`` command keeps what the guest wrote on it when
the node controller restarts with QEMU still running (nothing attached twice), when the instance is stopped and run
again, and when its QEMU died and it is run again; ``volume/detach`` then ends it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from luhyaapi.messages import Command, InsStatus, TaskStatus
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions
from luhyaapi.volumes import initiator_iqn
from nc.drivers.qemu import QemuDriver
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
from tests.services import build_test_image, free_port_block

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

NODE = "nc-vol"
INSID = "ins-0000d001"
VOLUME = "vol-0000d001"
TID = f"img-0000abcd:img-0000abcd:{INSID}"
IMAGE = {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64, "size": 1}
BOOT_TIMEOUT = 180.0
PLUG_TIMEOUT = 60.0


class Reporter:
    def __init__(self) -> None:
        self.messages: list = []

    def publish(self, message) -> None:
        self.messages.append(message)

    def report_now(self, last_command: str = "") -> None:
        pass

    def last_instance(self) -> InsStatus:
        return [message for message in self.messages if isinstance(message, InsStatus)][-1]

    def last_task(self) -> TaskStatus:
        return [message for message in self.messages if isinstance(message, TaskStatus)][-1]


@pytest.fixture
def node(settings) -> Iterator[Path]:
    """This node (QEMU, files under a short scratch directory for the QMP socket's sake); its VMs removed after."""
    availability = QemuDriver.probe()
    if not availability.available:
        pytest.skip(f"QEMU cannot run VMs here: {availability.reason}")
    root = Path(tempfile.mkdtemp(prefix="nc-vol-"))
    settings.EDUCLOUD = replace(settings.EDUCLOUD, name=NODE, data_dir=root, hypervisor="qemu", lease_file=None,
                                vm_ready_timeout=BOOT_TIMEOUT)
    yield root
    driver = node_driver()
    for insid in driver.list_vms():
        driver.destroy(insid)
    shutil.rmtree(root, ignore_errors=True)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def guest_get(port: int, path: str, **params) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", params=params, timeout=10)
    except requests.RequestException:
        return None


def serves(port: int) -> bool:
    response = guest_get(port, "/")
    return response is not None and response.status_code == 200


def read_volume(port: int, length: int) -> str | None:
    response = guest_get(port, "/cgi-bin/blockread", serial=VOLUME, offset=8192, length=length)
    return response.text if response is not None and response.status_code == 200 else None


def run(seq: int, reporter: Reporter) -> int:
    """Run the persistent instance (its disk is in place, so no image is fetched) until its guest serves; returns
    the port its page is forwarded to."""
    console, http = free_port_block(2, low=6000, high=6999)
    nic = NicSpec(mode="nat", model="virtio", mac="52:54:00:00:d0:01",
                  forwards=(PortForward(host_port=http, guest_port=80),))
    options = RuntimeOptions(memory_mb=256, disk_type="virtio", nics=(nic,), console=ConsoleSpec(port=console))
    run_instance(Command(op="instance/run", tid=TID, seq=seq,
                         paras={"insid": INSID, "image": IMAGE, "options": options.model_dump(mode="json"),
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
