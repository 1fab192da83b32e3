"""A boot storm on one node (``nc.max_parallel_boots``): runs beyond the cap wait in line, in order of arrival, each
told its place, and boot as slots free; a stop ends a wait at once. With real QEMU (TCG on the project's machines):
the class of the issue boots the test image, the tests of order and cancelling use blank disks (a guest that stays
in its BIOS costs no CPU, and the node's time limit reports it running, not answering)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from clc.services.portal import start_progress
from clc.services.status import StatusFolder
from luhyaapi.config import ConfigError, load_config
from luhyaapi.messages import Command, InsStatus, TaskStatus
from luhyaapi.vmspec import ConsoleSpec, NicSpec, PortForward, RuntimeOptions
from luhyadb.models import Instance
from nc.drivers.base import VMState
from nc.drivers.qemu import QemuDriver
from nc.models import NodeInstance
from nc.services import boot_queue
from nc.services.instances import delete_instance, disk_dir, node_driver, run_instance, stop_instance, watch_instances

pytestmark = [pytest.mark.database, pytest.mark.guest, pytest.mark.django_db(transaction=True)]

IMAGE = {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64, "size": 1}
CLASS = [f"ins-0000b5{n:02x}" for n in range(8)]
# Left booting by the node controller before its restart, with no VM any more: it holds a slot until the watcher
# ends it.
STALE = "ins-0000b5f0"
BOOT_TIMEOUT = 480.0


def tid_of(insid: str) -> str:
    return f"img-0000abcd:img-0000abcd:{insid}"


class Reporter:
    """What the node reports, in the order it reports it, from every thread."""

    def __init__(self) -> None:
        self.messages: list = []
        self.lock = threading.Lock()

    def publish(self, message) -> None:
        with self.lock:
            self.messages.append(message)

    def report_now(self, last_command: str = "") -> None:
        pass

    def instance_reports(self, insid: str) -> list[InsStatus]:
        with self.lock:
            return [m for m in self.messages if isinstance(m, InsStatus) and m.insid == insid]

    def task_reports(self, insid: str) -> list[TaskStatus]:
        with self.lock:
            return [m for m in self.messages if isinstance(m, TaskStatus) and m.tid == tid_of(insid)]

    def places(self, insid: str) -> list[str]:
        """The places in line the run was told (vmstatus of its waiting reports)."""
        return [m.vmstatus for m in self.instance_reports(insid) if m.vmstatus.startswith("waiting to boot")]

    def booted(self) -> list[str]:
        """The instances reported booting, in the order they were."""
        with self.lock:
            return [m.insid for m in self.messages if isinstance(m, InsStatus) and m.state == "booting"]


@pytest.fixture
def node(settings) -> Iterator[Path]:
    """This node with QEMU, its files under a short scratch directory (QMP socket paths are limited to 107
    bytes), no lease file; every VM it made is removed afterwards, and no run is left in the boot queue."""
    availability = QemuDriver.probe()
    if not availability.available:
        pytest.skip(f"QEMU cannot run VMs here: {availability.reason}")
    root = Path(tempfile.mkdtemp(prefix="nc-storm-"))
    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=root, hypervisor="qemu", lease_file=None,
                                vm_ready_timeout=BOOT_TIMEOUT, max_parallel_boots=2)
    yield root
    left = boot_queue.waiting_now()
    for insid in left:  # a failed test's runs still in line: stopped, so that they leave it
        stop_instance(Command(op="instance/stop", tid=tid_of(insid), seq=1, paras={"insid": insid}), Reporter())
    driver = node_driver()
    for insid in driver.list_vms():
        driver.destroy(insid)
    shutil.rmtree(root, ignore_errors=True)
    assert left == [] and boot_queue._starting == set(), "a run was left in the boot queue"


def place_disk(insid: str, make: Callable[[Path], None]) -> None:
    """The instance's own disk where a persistent instance keeps it (so the run skips the image download)."""
    disk = disk_dir(insid) / "disk.qcow2"
    disk.parent.mkdir(parents=True, exist_ok=True)
    make(disk)


def blank_disk(disk: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True, timeout=60)


def run_command(insid: str, options: RuntimeOptions) -> Command:
    return Command(op="instance/run", tid=tid_of(insid), seq=1,
                   paras={"insid": insid, "image": IMAGE, "options": options.model_dump(mode="json"),
                          "persistent": True})


def in_thread(work: Callable[[], object], name: str) -> threading.Thread:
    """``work`` in a thread of its own (as the worker's pool runs commands), its database connection closed after."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def wait_for(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up after {timeout:.0f} s waiting for {what}"
        time.sleep(0.02)


class Watcher:
    """The node's watcher (``watch_instances``) every half second in a thread, until stopped."""

    def __init__(self, reporter: Reporter) -> None:
        self.stop = threading.Event()

        def loop() -> None:
            while not self.stop.wait(0.5):
                watch_instances(reporter)

        self.thread = in_thread(loop, "watcher")

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def states() -> dict[str, str]:
    return dict(NodeInstance.objects.values_list("instance_id", "state"))


def stale_booting_record() -> None:
    NodeInstance.objects.create(instance_id=STALE, tid=tid_of(STALE), seq=1, state="booting",
                                booted_at=timezone.now(), persistent=True)


@pytest.mark.timeout(900)
def test_eight_desktops_started_at_once_with_two_boot_slots_never_boot_more_than_two_at_a_time_and_all_run(
        node, test_image: Path, free_port):
    """The issue's test: 8 runs at once on a node with ``max_parallel_boots = 2``; the node's records, sampled all
    along, never show more than 2 booting, and all 8 guests end up running (up and answering)."""
    reporter = Reporter()
    commands = []
    for n, insid in enumerate(CLASS):
        place_disk(insid, lambda disk: node_driver().clone_disk(test_image, disk))
        nic = NicSpec(mode="nat", model="virtio", mac=f"52:54:00:00:b5:{n:02x}",
                      forwards=(PortForward(host_port=free_port(), guest_port=80),))
        commands.append(run_command(insid, RuntimeOptions(memory_mb=128, disk_type="virtio", nics=(nic,),
                                                          console=ConsoleSpec(port=free_port()))))
    samples: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            samples.append(NodeInstance.objects.filter(state="booting").count())
            time.sleep(0.01)

    sampler = in_thread(sample, "sampler")
    watcher = Watcher(reporter)
    start = threading.Barrier(len(commands))
    started = time.monotonic()
    runs = [in_thread(lambda command=command: (start.wait(), run_instance(command, reporter)), command.paras["insid"])
            for command in commands]
    try:
        wait_for(lambda: list(states().values()) == ["running"] * len(CLASS), BOOT_TIMEOUT, "all 8 running")
    finally:
        watcher.end()
        sampling.set()
        sampler.join(timeout=10)
    for run in runs:
        run.join(timeout=10)
        assert not run.is_alive()
    print(f"8 desktops running after {time.monotonic() - started:.0f} s; {len(samples)} samples of the records")

    assert max(samples) == 2, f"at most 2 booting, and the cap was reached: {sorted(set(samples))}"
    assert len(samples) > 100
    assert sorted(reporter.booted()) == CLASS, "each booted once"
    waited = [insid for insid in CLASS if reporter.places(insid)]
    assert len(waited) >= len(CLASS) - 2, f"the runs beyond the 2 slots waited in line; only {waited} did"
    records = NodeInstance.objects.order_by("instance_id")
    assert [(r.instance_id, r.state, r.answering) for r in records] == [(i, "running", True) for i in CLASS]
    for insid in CLASS:
        assert reporter.instance_reports(insid)[-1].state == "running"
        assert node_driver().state(insid) is VMState.RUNNING


def test_runs_beyond_the_cap_boot_in_order_of_arrival_each_told_its_place_in_line_and_the_portal_shows_it(
        node, settings, free_port):
    """One slot, held by a record left booting from before a restart: three runs arriving one after the other wait
    1st, 2nd and 3rd in line (the instance stays preparing, the task says ``waiting`` with the place), move up as
    the ones before them boot, and boot in the order they came."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, max_parallel_boots=1, vm_ready_timeout=1.0)
    stale_booting_record()
    reporter = Reporter()
    arrivals = CLASS[:3]
    runs = []
    for insid in arrivals:
        place_disk(insid, blank_disk)
        command = run_command(insid, RuntimeOptions(memory_mb=64, console=ConsoleSpec(port=free_port())))
        runs.append(in_thread(lambda command=command: run_instance(command, reporter), insid))
        wait_for(lambda insid=insid: insid in boot_queue.waiting_now(), 30, f"{insid} in line")
    assert boot_queue.waiting_now() == arrivals
    for insid, place in zip(arrivals, ("1st", "2nd", "3rd"), strict=True):
        text = f"waiting to boot, {place} in line"
        assert [(m.state, m.vmstatus) for m in reporter.instance_reports(insid)] == [
            ("preparing", ""), ("preparing", text)]
        waiting = reporter.task_reports(insid)[-1]
        assert (waiting.phase, waiting.state, waiting.progress, waiting.vmstatus) == ("preparing", "waiting", 99, text)
        assert NodeInstance.objects.get(instance_id=insid).state == "preparing"
    assert reporter.booted() == [], "the slot is the stale record's"

    # The CLC folds the node's report and the portal's step says it.
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold([reporter.task_reports(arrivals[2])[-1]])
    desktop = Instance(instance_id=arrivals[2], state="preparing", build_tid=tid_of(arrivals[2]))
    assert start_progress(desktop) == (99, "Waiting to boot, 3rd in line")

    # The watcher ends the stale record (its VM is gone), and each guest, stuck in its BIOS, is running (not
    # answering) a second after its start: the slot passes down the line.
    watcher = Watcher(reporter)
    try:
        wait_for(lambda: all(states().get(i) == "running" for i in arrivals), 120, "the three running")
    finally:
        watcher.end()
    for run in runs:
        run.join(timeout=10)
    assert reporter.booted() == arrivals, "first come, first booted"
    assert [reporter.places(insid) for insid in arrivals] == [
        ["waiting to boot, 1st in line"],
        ["waiting to boot, 2nd in line", "waiting to boot, 1st in line"],
        ["waiting to boot, 3rd in line", "waiting to boot, 2nd in line", "waiting to boot, 1st in line"]]
    assert states()[STALE] == "stopped"


@pytest.mark.parametrize("op, ended", [("instance/stop", "stopped"), ("instance/delete", "deleted")])
def test_a_stop_or_delete_of_a_waiting_run_ends_its_wait_at_once_and_it_never_boots(
        node, settings, monkeypatch, free_port, op, ended):
    """The wait does not keep the instance's lock from a stop: the stop wakes it (the timed re-check is made too
    slow to help here), the run leaves the line without starting its VM, and the stop goes on at once."""
    settings.EDUCLOUD = replace(settings.EDUCLOUD, max_parallel_boots=1)
    monkeypatch.setattr(boot_queue, "RECHECK_SECONDS", 120.0)
    stale_booting_record()
    reporter = Reporter()
    insid = CLASS[0]
    place_disk(insid, blank_disk)
    command = run_command(insid, RuntimeOptions(memory_mb=64, console=ConsoleSpec(port=free_port())))
    run = in_thread(lambda: run_instance(command, reporter), insid)
    wait_for(lambda: boot_queue.waiting_now() == [insid], 30, "the run in line")

    asked = time.monotonic()
    handler = {"instance/stop": stop_instance, "instance/delete": delete_instance}[op]
    handler(Command(op=op, tid=tid_of(insid), seq=1, paras={"insid": insid}), reporter)
    took = time.monotonic() - asked
    run.join(timeout=5)

    assert took < 5.0, f"the {op} waited {took:.1f} s for the run's lock"
    assert not run.is_alive()
    assert boot_queue.waiting_now() == [] and insid not in boot_queue.booting_now()
    assert reporter.booted() == [] and node_driver().state(insid) is VMState.ABSENT
    assert reporter.instance_reports(insid)[-1].state == ended
    assert states().get(insid) == ("stopped" if ended == "stopped" else None)


def test_with_no_cap_a_run_boots_whatever_else_is_booting(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, max_parallel_boots=0)
    for insid in CLASS[:4]:
        NodeInstance.objects.create(instance_id=insid, tid=tid_of(insid), state="booting")
    told: list[int] = []
    with boot_queue.boot_slot(CLASS[4], threading.Event(), told.append):
        entered = True
    assert entered and told == []


CONFIG = {"EDUCLOUD_HOST_NAME": "node-1", "EDUCLOUD_ROLES": "nc", "EDUCLOUD_HOST_DATA_DIR": "/tmp/educloud-config-test",
          "EDUCLOUD_CLOUD_CC_URL": "http://10.0.0.1:8000", "EDUCLOUD_HOST_PEER_CONFIG_DIR": "/nonexistent"}


@pytest.mark.parametrize("value, cap", [(None, 4), ("0", 0), ("2", 2), ("30", 30)])
def test_the_boot_cap_defaults_to_four_and_zero_means_no_cap(value, cap):
    environ = CONFIG | ({"EDUCLOUD_NC_MAX_PARALLEL_BOOTS": value} if value is not None else {})
    assert load_config(environ).max_parallel_boots == cap


@pytest.mark.parametrize("value", ["-1", "two", "2.5", "", "1e3"])
def test_a_boot_cap_that_is_not_a_whole_number_of_zero_or_more_stops_the_start_naming_the_setting(value):
    with pytest.raises(ConfigError) as refused:
        load_config(CONFIG | {"EDUCLOUD_NC_MAX_PARALLEL_BOOTS": value})
    assert str(refused.value) == (f"setting nc.max_parallel_boots (EDUCLOUD_NC_MAX_PARALLEL_BOOTS): {value!r} is not a "
                                  "whole number of VMs booting at once (0 or more; 0 means no cap)")


def test_the_place_in_line_reads_as_an_ordinal():
    assert [boot_queue.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]
    assert boot_queue.waiting_text(3) == "waiting to boot, 3rd in line"
