"""The node's ``volume/attach`` and ``volume/detach`` commands (issue 16) with a recording driver: each runs once per
key and is harmless when repeated under another key (nothing attached twice), only a running instance takes or gives
back a volume, the attachment is recorded and re-derived from what the hypervisor says when the VM starts again or
is found running after a restart of the node controller, and the CHAP secret never shows in a refusal.

The hot-plug itself, with real QEMU and a real iSCSI target, is ``tests/integration/test_volume_attach.py``.
"""

from __future__ import annotations

import pytest

from luhyaapi.messages import Command
from luhyaapi.volumes import VolumeTarget, initiator_iqn, target_iqn
from nc.drivers.base import AttachedVolume, DriverError, VMState
from nc.models import CommandRecord, NodeInstance, NodeVolume
from nc.services import instances, volumes
from nc.services.commands import execute_command
from tests.nodevm import Reporter

pytestmark = [pytest.mark.database, pytest.mark.django_db]

INSID = "ins-0000a001"
OTHER = "ins-0000a002"
VOLUME = "vol-0000c001"
SECRET = "Chap0Secret0Value"


def target(volume_id: str = VOLUME, secret: str = SECRET) -> VolumeTarget:
    return VolumeTarget(volume_id=volume_id, host="10.0.0.5", port=3260, iqn=target_iqn(volume_id),
                        chap_user="u0001", chap_secret=secret, initiator=initiator_iqn("nc-1"))


class RecordingDriver:
    """What the services ask of a hypervisor, recorded: VMs that run, and the volumes hot-plugged into each, kept
    as a hypervisor keeps them (attaching an attached volume adds nothing)."""

    name = "recording"
    capabilities = {"volumes": True}
    disk_suffix = ".qcow2"

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.plugged: dict[str, dict[str, VolumeTarget]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.refuse: str = ""

    def state(self, insid: str) -> VMState:
        return VMState.RUNNING if insid in self.running else VMState.STOPPED

    def console(self, insid: str):
        class Endpoint:
            url = "vnc://127.0.0.1:5901"

        return Endpoint()

    def adopt(self) -> list[str]:
        return sorted(self.running)

    def create(self, spec) -> None:
        self.calls.append(("create", spec.insid, ""))

    def start(self, insid: str) -> None:
        self.calls.append(("start", insid, ""))
        self.running.add(insid)
        self.plugged[insid] = {}  # a VM just started has no volume yet

    def destroy(self, insid: str) -> None:
        self.running.discard(insid)
        self.plugged.pop(insid, None)

    def attach_volume(self, insid: str, volume: VolumeTarget) -> AttachedVolume:
        self.calls.append(("attach", insid, volume.volume_id))
        if self.refuse:
            raise DriverError(self.refuse)
        self.plugged.setdefault(insid, {})[volume.volume_id] = volume
        return AttachedVolume(volume.volume_id, volume.volume_id, volume.volume_id)

    def detach_volume(self, insid: str, volume_id: str) -> None:
        self.calls.append(("detach", insid, volume_id))
        if self.refuse:
            raise DriverError(self.refuse)
        self.plugged.get(insid, {}).pop(volume_id, None)

    def attached_volumes(self, insid: str) -> list[AttachedVolume]:
        return [AttachedVolume(volume_id, volume_id, volume_id) for volume_id in sorted(self.plugged.get(insid, {}))]

    def attaches(self) -> list[tuple[str, str, str]]:
        return [call for call in self.calls if call[0] == "attach"]


@pytest.fixture
def driver(monkeypatch) -> RecordingDriver:
    driver = RecordingDriver()
    monkeypatch.setattr(instances, "node_driver", lambda: driver)
    return driver


def instance(driver: RecordingDriver, insid: str = INSID, state: str = "running", persistent: bool = True):
    if state in instances.STARTED_STATES:
        driver.running.add(insid)
    return NodeInstance.objects.create(instance_id=insid, tid=f"t-{insid}", state=state, persistent=persistent,
                                       disk_path=f"/nowhere/{insid}.qcow2")


def attach_command(insid: str = INSID, volume: VolumeTarget | None = None, tid: str = "vt-0001") -> Command:
    return Command(op="volume/attach", tid=tid,
                   paras={"insid": insid, "target": (volume or target()).model_dump(mode="json")})


def detach_command(insid: str = INSID, volume_id: str = VOLUME, tid: str = "vt-0002") -> Command:
    return Command(op="volume/detach", tid=tid, paras={"insid": insid, "volume_id": volume_id})


def test_an_attach_hot_plugs_the_volume_records_it_and_reports_its_task_attached(driver):
    record = instance(driver)
    reporter = Reporter()
    assert execute_command(attach_command(), reporter) is True
    assert driver.attaches() == [("attach", INSID, VOLUME)]
    row = NodeVolume.objects.get(volume_id=VOLUME)
    assert (row.instance, row.device, row.serial) == (record, VOLUME, VOLUME)
    assert VolumeTarget.model_validate(row.target) == target()
    [report] = reporter.tasks()
    assert (report.tid, report.state, report.done, report.failed) == ("vt-0001", "attached", True, False)
    assert report.result == {"volume_id": VOLUME, "insid": INSID, "device": VOLUME, "serial": VOLUME}
    assert SECRET not in report.model_dump_json()


def test_a_redelivered_attach_runs_once_and_a_repeated_one_attaches_nothing_more(driver):
    instance(driver)
    command = attach_command()
    assert execute_command(command, Reporter()) is True
    assert execute_command(Command.model_validate_json(command.model_dump_json()), Reporter()) is False
    assert driver.attaches() == [("attach", INSID, VOLUME)]
    # Asked again under another key (the CLC asked twice): the hypervisor keeps one disk, the node one row.
    reporter = Reporter()
    assert execute_command(attach_command(tid="vt-0003"), reporter) is True
    assert driver.attached_volumes(INSID) == [AttachedVolume(VOLUME, VOLUME, VOLUME)]
    assert NodeVolume.objects.count() == 1
    assert [report.state for report in reporter.tasks()] == ["attached"]


@pytest.mark.parametrize("state", ["stopped", "preparing", "failed"])
def test_an_instance_that_does_not_run_takes_no_volume_and_the_task_says_why(driver, state):
    instance(driver, state=state)
    reporter = Reporter()
    execute_command(attach_command(), reporter)
    assert driver.calls == [] and not NodeVolume.objects.exists()
    [report] = reporter.tasks()
    assert report.failed and report.state == "attaching"
    assert report.errormsg == (f"instance {INSID} is {state} on this node: volumes are attached to and detached "
                               "from running instances only")


def test_an_instance_this_node_does_not_have_takes_no_volume(driver):
    reporter = Reporter()
    execute_command(attach_command(), reporter)
    assert driver.calls == []
    assert reporter.tasks()[0].errormsg == f"instance {INSID} does not run on this node"


def test_a_volume_attached_to_another_instance_here_is_refused_naming_it(driver):
    instance(driver)
    instance(driver, OTHER)
    execute_command(attach_command(), Reporter())
    reporter = Reporter()
    execute_command(attach_command(OTHER, tid="vt-0009"), reporter)
    assert driver.attaches() == [("attach", INSID, VOLUME)]
    assert reporter.tasks()[0].errormsg == f"{VOLUME} is attached to {INSID} on this node; detach it there first"
    assert NodeVolume.objects.get().instance.instance_id == INSID


def test_a_refused_hot_plug_records_nothing_and_reports_the_hypervisors_reason(driver):
    instance(driver)
    driver.refuse = "iSCSI: Failed to log in to target. Status: Authentication failure(513)"
    reporter = Reporter()
    execute_command(attach_command(), reporter)
    assert not NodeVolume.objects.exists()
    assert "Authentication failure" in reporter.tasks()[0].errormsg


@pytest.mark.parametrize("paras, field", [
    ({"insid": INSID, "target": target().model_dump(mode="json") | {"chap_secret": "short"}}, "target.chap_secret"),
    ({"insid": "../x", "target": target().model_dump(mode="json")}, "insid"),
    ({"insid": INSID}, "target"),
    ({"insid": INSID, "target": target().model_dump(mode="json") | {"host": "evil;host"}}, "target.host"),
])
def test_a_malformed_attach_is_refused_naming_the_field_never_its_value_and_nothing_is_recorded(driver, paras,
                                                                                              field):
    instance(driver)
    with pytest.raises(volumes.InvalidVolumeCommand) as refused:
        execute_command(Command(op="volume/attach", tid="vt-0001", paras=paras), Reporter())
    assert field in str(refused.value)
    assert "short" not in str(refused.value) and SECRET not in str(refused.value)
    assert driver.calls == [] and not CommandRecord.objects.exists()


def test_a_volume_command_without_its_task_is_refused(driver):
    with pytest.raises(volumes.InvalidVolumeCommand, match="needs the tid"):
        execute_command(attach_command(tid=""), Reporter())


def test_a_detach_unplugs_and_forgets_the_volume_and_a_second_one_is_harmless(driver):
    instance(driver)
    execute_command(attach_command(), Reporter())
    reporter = Reporter()
    execute_command(detach_command(), reporter)
    assert driver.attached_volumes(INSID) == [] and not NodeVolume.objects.exists()
    assert [(report.state, report.done) for report in reporter.tasks()] == [("detached", True)]
    again = Reporter()
    execute_command(detach_command(tid="vt-0004"), again)
    assert [report.state for report in again.tasks()] == ["detached"]


def test_a_detach_the_guest_does_not_complete_keeps_the_record(driver):
    instance(driver)
    execute_command(attach_command(), Reporter())
    driver.refuse = f"detaching {VOLUME} from {INSID}: the guest did not release the disk within 60 s"
    reporter = Reporter()
    execute_command(detach_command(), reporter)
    assert NodeVolume.objects.filter(volume_id=VOLUME).exists()
    assert reporter.tasks()[0].failed and "did not release" in reporter.tasks()[0].errormsg


def test_a_stopped_instance_is_not_asked_to_detach(driver):
    record = instance(driver)
    execute_command(attach_command(), Reporter())
    driver.running.discard(INSID)
    record.state = "stopped"
    record.save()
    reporter = Reporter()
    execute_command(detach_command(), reporter)
    assert [call for call in driver.calls if call[0] == "detach"] == []
    assert "running instances only" in reporter.tasks()[0].errormsg
    assert NodeVolume.objects.filter(volume_id=VOLUME).exists()


def test_a_vm_started_again_gets_only_the_recorded_volumes_it_lacks(driver):
    record = instance(driver)
    second = target("vol-0000c002", "Another0Secret0Value")
    for volume in (target(), second):
        execute_command(attach_command(volume=volume, tid=f"vt-{volume.volume_id}"), Reporter())
    # Stopped and started again: its new VM has no volume; one is back already (say, the command raced it).
    driver.plugged[INSID] = {VOLUME: target()}
    driver.calls.clear()
    assert volumes.restore_volumes(driver, record) == {}
    assert driver.attaches() == [("attach", INSID, "vol-0000c002")]
    assert [found.volume_id for found in driver.attached_volumes(INSID)] == [VOLUME, "vol-0000c002"]
    driver.calls.clear()
    assert volumes.restore_volumes(driver, record) == {}
    assert driver.calls == []


def test_a_volume_that_cannot_come_back_is_named_with_the_reason_and_kept_for_the_next_start(driver):
    record = instance(driver)
    execute_command(attach_command(), Reporter())
    driver.plugged.clear()
    driver.refuse = "iSCSI: Failed to connect to LUN"
    assert volumes.restore_volumes(driver, record) == {VOLUME: "iSCSI: Failed to connect to LUN"}
    assert instances._started_text({VOLUME: "iSCSI: Failed to connect to LUN"}) == (
        f"started; not attached: {VOLUME} (iSCSI: Failed to connect to LUN)")
    assert NodeVolume.objects.filter(volume_id=VOLUME).exists()


def test_after_a_restart_of_the_node_controller_a_running_vm_keeps_its_disks_and_gets_what_it_lacks(driver):
    record = instance(driver)
    execute_command(attach_command(), Reporter())
    NodeVolume.objects.create(volume_id="vol-0000c003", instance=record,
                              target=target("vol-0000c003").model_dump(mode="json"))
    driver.calls.clear()
    assert instances.adopt_instances(Reporter()) == [INSID]
    assert driver.attaches() == [("attach", INSID, "vol-0000c003")]
    assert [found.volume_id for found in driver.attached_volumes(INSID)] == [VOLUME, "vol-0000c003"]


def test_a_temporary_instance_whose_run_ends_takes_its_volume_records_with_it(driver, monkeypatch):
    record = instance(driver, persistent=False)
    execute_command(attach_command(), Reporter())
    monkeypatch.setattr(instances, "_discard", lambda record, driver, keep_disk: None)
    instances._end_run(record, driver, instances._Reports(Reporter(), record.tid, 0, INSID), "stopped")
    assert not NodeVolume.objects.exists()


@pytest.fixture
def node_dir(settings, tmp_path):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, data_dir=tmp_path, max_parallel_boots=0)
    return tmp_path


def run_command(paras: dict | None = None, seq: int = 2) -> Command:
    """A run of the persistent instance INSID, whose disk is in place (nothing is fetched), with ``paras`` added."""
    disk = instances.disk_dir(INSID) / "disk.qcow2"
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.touch()
    options = {"memory_mb": 128, "nics": [{"mac": "52:54:00:00:a0:01"}], "console": {"port": 5901}}
    return Command(op="instance/run", tid=f"t-{INSID}", seq=seq,
                   paras={"insid": INSID, "image": {"image_id": "img-0000abcd", "version": 1, "sha256": "0" * 64,
                                                    "size": 1},
                          "options": options, "persistent": True} | (paras or {}))


def stopped_with(driver: RecordingDriver, *volume_targets: VolumeTarget) -> NodeInstance:
    """INSID stopped, with ``volume_targets`` recorded as its volumes (attached before it stopped)."""
    record = instance(driver, state="stopped")
    for volume in volume_targets:
        NodeVolume.objects.create(volume_id=volume.volume_id, instance=record, target=volume.model_dump(mode="json"))
    return record


def test_a_run_bringing_its_volumes_makes_them_exactly_the_recorded_ones_before_the_vm_starts(driver, node_dir):
    kept, dropped, new = target(), target("vol-0000c002"), target("vol-0000c003", "Third0Secret0Value")
    stopped_with(driver, kept, dropped)
    moved = kept.model_copy(update={"chap_secret": "NewSecret0AfterTakeOver"})  # the SC's export was taken over
    reporter = Reporter()
    instances.run_instance(run_command({"volumes": [moved.model_dump(mode="json"), new.model_dump(mode="json")],
                                        "volumes_missing": {"vol-0000c004": "storage controller sc-1: not found"}}),
                           reporter)
    assert sorted(NodeVolume.objects.values_list("volume_id", flat=True)) == [VOLUME, "vol-0000c003"]
    assert VolumeTarget.model_validate(NodeVolume.objects.get(volume_id=VOLUME).target) == moved
    # Attached right after the start, with the run's targets; the volume detached meanwhile is not.
    assert driver.calls[driver.calls.index(("start", INSID, "")) + 1:] == [
        ("attach", INSID, VOLUME), ("attach", INSID, "vol-0000c003")]
    assert driver.plugged[INSID] == {VOLUME: moved, "vol-0000c003": new}
    report = reporter.last_instance()
    assert (report.state, report.vmstatus) == (
        "booting", "started; not attached: vol-0000c004 (storage controller sc-1: not found)")


def test_a_run_without_the_volumes_key_keeps_the_recorded_volumes(driver, node_dir):
    stopped_with(driver, target(), target("vol-0000c002"))
    reporter = Reporter()
    instances.run_instance(run_command(), reporter)
    assert sorted(NodeVolume.objects.values_list("volume_id", flat=True)) == [VOLUME, "vol-0000c002"]
    assert driver.attaches() == [("attach", INSID, VOLUME), ("attach", INSID, "vol-0000c002")]
    assert reporter.last_instance().vmstatus == "started"


def test_a_run_with_an_empty_volume_list_forgets_every_volume(driver, node_dir):
    stopped_with(driver, target())
    instances.run_instance(run_command({"volumes": []}), Reporter())
    assert not NodeVolume.objects.exists() and driver.attaches() == []


def test_a_volume_recorded_for_another_instance_here_moves_to_the_run_that_brings_it(driver, node_dir):
    other = instance(driver, OTHER, state="stopped")
    NodeVolume.objects.create(volume_id=VOLUME, instance=other, target=target().model_dump(mode="json"))
    instance(driver, state="stopped")
    instances.run_instance(run_command({"volumes": [target().model_dump(mode="json")]}), Reporter())
    assert NodeVolume.objects.get(volume_id=VOLUME).instance.instance_id == INSID
    assert driver.attaches() == [("attach", INSID, VOLUME)]


@pytest.mark.parametrize(("volumes", "field"), [
    ([target().model_dump(mode="json") | {"chap_secret": "short"}], "volumes.0.chap_secret"),
    ([target().model_dump(mode="json") | {"host": "evil;host"}], "volumes.0.host"),
    ("everything", "volumes"),
    ([target().model_dump(mode="json")] * 17, "volumes"),
])
def test_a_run_with_a_malformed_volume_fails_naming_the_field_never_its_value(driver, node_dir, volumes, field):
    stopped_with(driver, target())
    reporter = Reporter()
    instances.run_instance(run_command({"volumes": volumes}), reporter)
    report = reporter.last_instance()
    assert report.state == "failed" and field in report.errormsg, report.errormsg
    assert SECRET not in report.errormsg and "short" not in report.errormsg
    assert driver.calls == [] and list(NodeVolume.objects.values_list("volume_id", flat=True)) == [VOLUME]
