"""A started VM is booting, not running, until its guest shows it is up, with real QEMU (KVM or TCG as the driver's
probe decides; TCG on the project's machines): the test image is reported running only once it serves its page,
with its address; a guest that never leaves its BIOS (a blank disk) stays booting and, after the node's time limit,
is reported running, not answering."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from luhyaapi.messages import Command
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions
from nc.models import NodeInstance
from nc.services.instances import delete_instance, disk_dir, node_driver, run_instance, watch_instances
from tests.nodevm import Reporter, qemu_node, serves

pytestmark = [pytest.mark.database, pytest.mark.guest, pytest.mark.django_db(transaction=True)]

INSID = "ins-0000b007"
TID = f"img-0000abcd:img-0000abcd:{INSID}"
MAC = "52:54:00:00:b0:07"
IMAGE = {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64, "size": 1}
BOOT_TIMEOUT = 240.0


@pytest.fixture
def node(settings) -> Iterator[Path]:
    """This node with QEMU (``tests.nodevm.qemu_node``); every VM it made is removed afterwards."""
    with qemu_node(settings, "nc-boot-", vm_ready_timeout=BOOT_TIMEOUT) as root:
        yield root


def place_disk(make: Callable[[Path], None]) -> None:
    """The instance's own disk where a persistent instance keeps it (so the run skips the image download)."""
    disk = disk_dir(INSID) / "disk.qcow2"
    disk.parent.mkdir(parents=True, exist_ok=True)
    make(disk)


def run(free_port, reporter: Reporter) -> int:
    """Run the instance with its page (guest port 80) forwarded; returns the forward's host port."""
    http_port = free_port()
    nic = NicSpec(mode="nat", model="virtio", mac=MAC, forwards=(PortForward(host_port=http_port, guest_port=80),))
    options = RuntimeOptions(memory_mb=128, disk_type="virtio", nics=(nic,), console=ConsoleSpec(port=free_port()))
    run_instance(Command(op="instance/run", tid=TID, seq=1,
                         paras={"insid": INSID, "image": IMAGE, "options": options.model_dump(mode="json"),
                                "persistent": True}), reporter)
    return http_port


def watch_until(reporter: Reporter, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up after {timeout:.0f} s; reported {reporter.states()}"
        watch_instances(reporter)
        time.sleep(0.5)


def test_the_test_image_is_booting_after_its_start_and_running_with_its_address_once_it_serves(
        node, test_image: Path, free_port):
    place_disk(lambda disk: node_driver().clone_disk(test_image, disk))
    reporter = Reporter()
    http_port = run(free_port, reporter)
    assert reporter.states() == ["preparing", "booting"], "a VM just started is not a running guest yet"
    assert reporter.last_instance().console.startswith("vnc://")
    assert NodeInstance.objects.get(instance_id=INSID).state == "booting"

    # Its page may answer before the guest tells its address: the address then comes in a later report.
    watch_until(reporter, lambda: reporter.states()[-1] == "running" and reporter.last_instance().guest_ip,
                BOOT_TIMEOUT)
    running = reporter.last_instance()
    assert (running.answering, running.guest_ip, running.vmstatus) == (True, "10.0.2.15", "running")
    assert serves(http_port), "running means the guest is up: its page answers"
    states = reporter.states()
    assert states[:3] == ["preparing", "booting", "running"] and set(states[3:]) <= {"running"}
    record = NodeInstance.objects.get(instance_id=INSID)
    assert (record.state, record.guest_ip, record.answering) == ("running", "10.0.2.15", True)

    watch_instances(reporter)
    assert reporter.states()[-1] == "running" and len(reporter.states()) == 3, "nothing new, nothing reported"
    delete_instance(Command(op="instance/delete", tid=TID, seq=1, paras={"insid": INSID}), reporter)
    assert reporter.states()[-1] == "deleted"


def test_a_guest_stuck_in_its_bios_stays_booting_then_is_running_not_answering_after_the_time_limit(
        node, settings, free_port):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, vm_ready_timeout=8.0)
    place_disk(lambda disk: subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"],
                                           check=True, timeout=60))
    reporter = Reporter()
    started = time.monotonic()
    run(free_port, reporter)
    watch_instances(reporter)
    assert time.monotonic() - started < 8.0
    assert reporter.states()[-1] == "booting", "no evidence yet and the time limit not reached"

    watch_until(reporter, lambda: reporter.states()[-1] == "running", 60)
    assert time.monotonic() - started >= 8.0
    stuck = reporter.last_instance()
    assert (stuck.answering, stuck.vmstatus, stuck.guest_ip) == (False, "not answering", "")
    assert NodeInstance.objects.get(instance_id=INSID).answering is False
    watch_instances(reporter)
    assert len(reporter.states()) == len(set(reporter.states())), "the watcher says it once"
    delete_instance(Command(op="instance/delete", tid=TID, seq=1, paras={"insid": INSID}), reporter)
