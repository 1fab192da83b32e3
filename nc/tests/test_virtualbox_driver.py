"""The VirtualBox driver keeps the driver contract against a recording fake of the VBoxManage process: the commands
each operation runs and in which order, its cleanup after failures, the stop sequence (with an injected clock, so no
test waits) and its refusals before anything runs."""

import subprocess
from pathlib import Path

import pytest

from luhyaapi.vmspec import ConsoleSpec, DiskSpec, NicSpec, PortForward, VMSpec
from nc.drivers import driver_class
from nc.drivers import virtualbox_argv as vbox
from nc.drivers.base import (
    ConsoleEndpoint,
    DriverError,
    GuestInfo,
    InvalidVMName,
    VMExists,
    VMMetrics,
    VMNotFound,
    VMState,
)
from nc.drivers.virtualbox import NOT_INSTALLED, VirtualBoxDriver, probe_virtualbox, run_vboxmanage
from nc.tests.test_virtualbox_disks import qcow2, vdi
from nc.tests.test_virtualbox_fake import (
    LIST_EXTPACKS,
    LIST_HDDS,
    METRICS_QUERY_EMPTY,
    SHOWMEDIUMINFO_CHILD,
    VBOXDRV_WARNING,
    FakeVBoxManage,
    completed,
)

INSID = "ins-0123abcd"


class Clock:
    """A monotonic clock that only moves when the driver sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake():
    return FakeVBoxManage()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "vms"


@pytest.fixture
def driver(root, fake, clock):
    return VirtualBoxDriver(root, runner=fake, clock=clock, sleep=clock.sleep)


def make_spec(root: Path, **overrides) -> VMSpec:
    fields = {
        "insid": INSID,
        "disk_type": "sata",
        "disks": (DiskSpec(path=str(root / INSID / "disk0.vdi")),),
        "nics": (NicSpec(mac="52:54:00:12:34:56", forwards=(PortForward(host_port=2222, guest_port=22),)),),
        "console": ConsoleSpec(protocol="rdp", listen="127.0.0.1", port=5901),
    }
    fields.update(overrides)
    return VMSpec(**fields)


# create

def test_create_runs_createvm_modifyvm_storagectl_and_storageattach_in_order(driver, fake, root):
    spec = make_spec(root)
    driver.create(spec)
    assert fake.calls == [vbox.showvminfo(INSID), *vbox.create_commands(spec, root)]
    assert fake.calls[1] == ["createvm", "--name", INSID, "--ostype", "Linux_64", "--basefolder", str(root),
                             "--register"]
    assert driver.state(INSID) is VMState.STOPPED


def test_create_in_snapshot_mode_takes_the_clean_snapshot_last(driver, fake, root):
    driver.create(make_spec(root, run_with_snapshot=True))
    assert fake.calls[-1] == ["snapshot", INSID, "take", "educloud-clean"]


def test_create_of_a_defined_instance_raises_vmexists_and_changes_nothing(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    with pytest.raises(VMExists):
        driver.create(make_spec(root))
    assert fake.commands() == ["showvminfo"]


def test_create_refuses_a_leftover_settings_file(driver, fake, root):
    (root / INSID).mkdir(parents=True)
    (root / INSID / f"{INSID}.vbox").write_text("<VirtualBox/>")
    with pytest.raises(VMExists, match="left over"):
        driver.create(make_spec(root))
    assert fake.commands() == ["showvminfo"]


def test_a_failed_create_unregisters_the_vm_and_removes_its_directory(driver, fake, root):
    fake.fail["storageattach"] = "Could not find file for the medium '/vms/ins-0123abcd/disk0.vdi'"
    with pytest.raises(DriverError, match=r"VBoxManage storageattach .* failed \(exit 1\).*Could not find file"):
        driver.create(make_spec(root))
    assert fake.commands() == ["showvminfo", "createvm", "modifyvm", "storagectl", "storagectl", "storageattach",
                               "showvminfo", "unregistervm"]
    assert fake.calls[-1] == ["unregistervm", INSID]
    assert not (root / INSID).exists()
    assert driver.state(INSID) is VMState.ABSENT


def test_a_failed_create_keeps_the_clone_that_was_there_before_it(driver, fake, root):
    clone = root / INSID / "disk0.vdi"
    clone.parent.mkdir(parents=True)
    clone.write_bytes(b"clone")
    fake.fail["modifyvm"] = "Invalid NIC type"
    with pytest.raises(DriverError):
        driver.create(make_spec(root))
    assert "unregistervm" in fake.commands()
    assert clone.read_bytes() == b"clone"
    assert sorted(path.name for path in clone.parent.iterdir()) == ["disk0.vdi"]


def test_a_spec_vbox_cannot_run_is_refused_before_any_command(driver, fake, root):
    with pytest.raises(DriverError, match="rtl8139"):
        driver.create(make_spec(root, nics=(NicSpec(model="rtl8139", mac="52:54:00:12:34:56"),)))
    with pytest.raises(DriverError, match="RDP"):
        driver.create(make_spec(root, console=ConsoleSpec(protocol="vnc", port=5901)))
    assert fake.calls == []


def test_a_hostile_spec_raises_invalidvmname_before_any_command(driver, fake, root):
    with pytest.raises(InvalidVMName):
        driver.create(VMSpec.model_construct(**{**dict(make_spec(root)), "insid": "ins-0123abcd;reboot"}))
    with pytest.raises(InvalidVMName):
        driver.create(make_spec(root, disks=(DiskSpec(path="/images/$(reboot).vdi"),)))
    assert fake.calls == []


# start

def test_start_boots_headless_and_sets_up_metrics(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    driver.start(INSID)
    assert fake.calls == [vbox.showvminfo(INSID), ["startvm", INSID, "--type", "headless"],
                          vbox.metrics_setup(INSID)]
    assert driver.state(INSID) is VMState.RUNNING


def test_start_of_a_running_vm_does_nothing(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    driver.start(INSID)
    assert fake.commands() == ["showvminfo"]


def test_start_of_a_paused_vm_resumes_it(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="paused")
    driver.start(INSID)
    assert fake.calls[-1] == ["controlvm", INSID, "resume"]
    assert driver.state(INSID) is VMState.RUNNING


def test_start_of_a_snapshot_vm_restores_the_clean_snapshot_first(driver, fake, root):
    fake.add_vm(INSID, root / INSID, snapshot=True)
    driver.start(INSID)
    assert fake.commands() == ["showvminfo", "snapshot", "startvm", "metrics"]
    assert fake.calls[1] == ["snapshot", INSID, "restore", "educloud-clean"]


def test_start_of_an_unknown_vm_raises_vmnotfound(driver, fake):
    with pytest.raises(VMNotFound):
        driver.start(INSID)
    assert fake.commands() == ["showvminfo"]


def test_a_failed_start_carries_virtualboxs_message(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    fake.fail["startvm"] = "The VM session was closed before any attempt to power it on"
    with pytest.raises(DriverError, match="session was closed"):
        driver.start(INSID)


# stop

def test_stop_presses_the_power_button_and_returns_true_when_the_guest_shuts_down(driver, fake, root, clock):
    fake.add_vm(INSID, root / INSID, state="running")
    fake.acpi_polls = 3
    assert driver.stop(INSID, timeout=60) is True
    assert fake.commands() == ["showvminfo", "controlvm acpipowerbutton", "showvminfo", "showvminfo", "showvminfo"]
    assert "controlvm poweroff" not in fake.commands()
    assert clock.slept == [1.0, 1.0]
    assert driver.state(INSID) is VMState.STOPPED


def test_stop_powers_off_after_the_timeout_when_the_guest_ignores_the_button(driver, fake, root, clock):
    fake.add_vm(INSID, root / INSID, state="running")
    fake.acpi_polls = None
    started = clock.now
    assert driver.stop(INSID, timeout=5) is False
    commands = fake.commands()
    assert commands.index("controlvm acpipowerbutton") < commands.index("controlvm poweroff")
    assert clock.now - started == pytest.approx(5.0)
    assert sum(clock.slept) == pytest.approx(5.0)
    assert driver.state(INSID) is VMState.STOPPED


def test_stop_of_a_snapshot_vm_restores_the_clean_snapshot_after_it_stopped(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running", snapshot=True)
    fake.acpi_polls = 1
    assert driver.stop(INSID) is True
    assert fake.calls[-1] == ["snapshot", INSID, "restore", "educloud-clean"]


def test_stop_of_a_paused_vm_powers_it_off_at_once(driver, fake, root, clock):
    fake.add_vm(INSID, root / INSID, state="paused")
    assert driver.stop(INSID) is False
    assert "controlvm acpipowerbutton" not in fake.commands()
    assert "controlvm poweroff" in fake.commands()
    assert clock.slept == []


def test_stop_of_a_stopped_vm_does_nothing(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    assert driver.stop(INSID) is True
    assert fake.commands() == ["showvminfo"]


def test_stop_of_a_guest_that_stops_before_the_button_press_is_graceful(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    original = fake._controlvm

    def stopped_meanwhile(args):
        fake.vms[INSID]["state"] = "poweroff"
        return original(args)

    fake._controlvm = stopped_meanwhile
    assert driver.stop(INSID) is True


def test_stop_of_an_unknown_vm_raises_vmnotfound(driver):
    with pytest.raises(VMNotFound):
        driver.stop(INSID)


# destroy

def test_destroy_of_an_absent_vm_succeeds(driver, fake, root):
    driver.destroy(INSID)
    assert fake.commands() == ["showvminfo", "list"]
    assert driver.state(INSID) is VMState.ABSENT


def test_destroy_powers_off_unregisters_without_delete_closes_its_images_and_removes_its_directory(
        driver, fake, root, tmp_path):
    vm_dir = root / INSID
    base = tmp_path / "images" / "base.vdi"
    base.parent.mkdir()
    base.write_bytes(b"base image")
    (vm_dir / "Snapshots").mkdir(parents=True)
    (vm_dir / "disk0.vdi").write_bytes(b"clone")
    fake.add_vm(INSID, vm_dir, state="running", snapshot=True)
    fake.hdds = LIST_HDDS.format(vm_dir=vm_dir)
    driver.destroy(INSID)
    commands = fake.commands()
    assert commands[:2] == ["showvminfo", "controlvm poweroff"]
    assert ["unregistervm", INSID] in fake.calls
    assert not any("--delete" in call or "--delete-all" in call for call in fake.calls)
    closed = [call[2] for call in fake.calls if call[0] == "closemedium"]
    # The snapshot's differencing image before the clone it grew from; nothing outside the VM's directory.
    assert closed == ["2d3e4f50-6172-4839-9a4b-5c6d7e8f9a0b", "7f3c2a10-5b6d-4e8f-9a01-23456789abcd"]
    assert not vm_dir.exists()
    assert base.read_bytes() == b"base image"
    assert driver.state(INSID) is VMState.ABSENT


def test_destroy_removes_a_left_over_directory_of_an_unregistered_vm(driver, fake, root):
    (root / INSID / "Logs").mkdir(parents=True)
    driver.destroy(INSID)
    assert not (root / INSID).exists()
    assert "unregistervm" not in fake.commands()


# looking

def test_state_is_read_from_vmstate_by_key(driver, fake, root):
    for vbox_state, expected in [("running", VMState.RUNNING), ("paused", VMState.PAUSED),
                                 ("poweroff", VMState.STOPPED), ("aborted", VMState.STOPPED),
                                 ("saved", VMState.STOPPED), ("gurumeditation", VMState.PAUSED)]:
        fake.add_vm(INSID, root / INSID, state=vbox_state)
        assert driver.state(INSID) is expected


def test_an_unknown_vmstate_is_an_error_not_a_guess(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="levitating")
    with pytest.raises(DriverError, match="levitating"):
        driver.state(INSID)


def test_list_vms_and_adopt_return_only_instance_ids(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    fake.add_vm("ins-89abcdef", root / "ins-89abcdef")
    assert driver.list_vms() == [INSID, "ins-89abcdef"]
    assert driver.adopt() == [INSID]
    assert fake.calls[-1] == ["list", "runningvms"]


def test_console_is_the_vrde_address_and_port(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    assert driver.console(INSID) == ConsoleEndpoint("rdp", "127.0.0.1", 5901)
    with pytest.raises(VMNotFound):
        driver.console("ins-0000000f")


def test_metrics_of_a_running_vm_count_cpu_disk_and_network_and_report_memory(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    assert driver.metrics(INSID) == VMMetrics(
        alive=True, cpu_seconds=45.5, memory_bytes=524288 * 1024, disk_read_bytes=104857600 + 1048576,
        disk_write_bytes=5242880, net_rx_bytes=123456, net_tx_bytes=65432)
    assert fake.calls[1:] == [vbox.debugvm_statistics(INSID), vbox.metrics_query(INSID)]


def test_metrics_without_samples_set_collection_up_and_still_count(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    fake.metrics_text = METRICS_QUERY_EMPTY
    metrics = driver.metrics(INSID)
    assert metrics.memory_bytes == 0
    assert metrics.cpu_seconds == 45.5
    assert fake.calls[-1] == vbox.metrics_setup(INSID)


def test_metrics_of_a_stopped_vm_are_not_alive(driver, fake, root):
    fake.add_vm(INSID, root / INSID)
    assert driver.metrics(INSID) == VMMetrics(alive=False)
    assert fake.commands() == ["showvminfo"]


def test_guest_info_reads_the_guest_address_from_the_guest_properties(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    info = driver.guest_info(INSID)
    assert info.ip == "10.0.2.15"
    assert info.properties["/VirtualBox/GuestInfo/OS/Product"] == "Linux"
    assert all(name.startswith("/VirtualBox/GuestInfo/") for name in info.properties)
    assert fake.calls[-1] == ["guestproperty", "enumerate", INSID, "--no-timestamp", "--no-flags"]


def test_guest_info_before_the_guest_has_an_address_is_none(driver, fake, root):
    fake.add_vm(INSID, root / INSID, state="running")
    fake.guest_properties = "No properties found.\n"
    assert driver.guest_info(INSID) == GuestInfo(ip=None, properties={})
    fake.add_vm(INSID, root / INSID)
    assert driver.guest_info(INSID) == GuestInfo()


# clone_disk

def test_clone_of_a_vdi_base_is_a_differencing_image(driver, fake, tmp_path):
    base = tmp_path / "images" / "base.img"
    base.parent.mkdir()
    base.write_bytes(vdi())
    dest = tmp_path / "vms" / INSID / "disk0.vdi"
    driver.clone_disk(base, dest)
    assert fake.calls == [["showmediuminfo", "disk", str(base)],
                          ["createmedium", "disk", "--filename", str(dest), "--diffparent", str(base),
                           "--format", "VDI"]]
    assert dest.is_file()
    assert base.read_bytes() == vdi()


def test_clone_of_a_qcow2_base_is_a_full_vdi_copy(driver, fake, tmp_path):
    base = tmp_path / "base.qcow2"
    base.write_bytes(qcow2())
    dest = tmp_path / "vms" / INSID / "disk0.vdi"
    driver.clone_disk(base, dest)
    assert fake.calls[-1] == ["clonemedium", "disk", str(base), str(dest), "--format", "VDI"]


def test_clone_of_a_base_with_a_parent_is_refused_before_virtualbox_opens_it(driver, fake, tmp_path):
    base = tmp_path / "child.vdi"
    base.write_bytes(vdi(image_type=4, parent=b"\x22" * 16))
    with pytest.raises(DriverError, match="refusing .*differencing"):
        driver.clone_disk(base, tmp_path / "vms" / INSID / "disk0.vdi")
    assert fake.calls == []


def test_clone_of_a_base_virtualbox_sees_as_a_child_is_refused(driver, fake, tmp_path):
    base = tmp_path / "base.vdi"
    base.write_bytes(vdi())
    fake.medium_info = SHOWMEDIUMINFO_CHILD.format(path=base)
    dest = tmp_path / "vms" / INSID / "disk0.vdi"
    with pytest.raises(DriverError, match="parent"):
        driver.clone_disk(base, dest)
    assert fake.commands() == ["showmediuminfo"]
    assert not dest.exists()


def test_clone_refuses_an_existing_or_extensionless_destination(driver, fake, tmp_path):
    base = tmp_path / "base.vdi"
    base.write_bytes(vdi())
    with pytest.raises(DriverError, match="already exists"):
        driver.clone_disk(base, base)
    with pytest.raises(DriverError, match="extension"):
        driver.clone_disk(base, tmp_path / "disk0")
    with pytest.raises(InvalidVMName):
        driver.clone_disk(base, tmp_path / "disk 0.vdi")
    assert fake.calls == []


# refusals before anything runs

@pytest.mark.parametrize("insid", ["ins-0123abcd; reboot", "../../etc", "ins-0123abcd\n", "INS-0123ABCD"])
def test_a_hostile_instance_id_is_refused_before_any_command_runs(driver, fake, insid):
    operations = [driver.start, driver.stop, driver.destroy, driver.state, driver.console, driver.metrics,
                  driver.guest_info]
    for operation in operations:
        with pytest.raises(InvalidVMName):
            operation(insid)
    assert fake.calls == []


# running VBoxManage

def test_vboxmanage_runs_as_an_argv_list_without_a_shell(monkeypatch):
    seen = {}

    def fake_run(argv, **kwargs):
        seen.update(argv=argv, **kwargs)
        return completed(argv[1:], "7.0.14r161095\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    run_vboxmanage(["showvminfo", INSID, "--machinereadable"], 12.0)
    assert seen["argv"] == ["VBoxManage", "showvminfo", INSID, "--machinereadable"]
    assert not seen.get("shell")
    assert seen["timeout"] == 12.0
    assert seen["env"]["LC_ALL"] == "C"
    assert seen["stdin"] is subprocess.DEVNULL


def test_a_command_that_times_out_or_cannot_start_is_a_driver_error(root):
    def timing_out(args, timeout):
        raise subprocess.TimeoutExpired(["VBoxManage", *args], timeout)

    def missing(args, timeout):
        raise FileNotFoundError(2, "No such file or directory", "VBoxManage")

    with pytest.raises(DriverError, match="did not finish within 120 s"):
        VirtualBoxDriver(root, runner=timing_out).state(INSID)
    with pytest.raises(DriverError, match="could not run"):
        VirtualBoxDriver(root, runner=missing).state(INSID)


def test_vrde_without_authentication_must_be_asked_for_by_name(root, fake):
    driver = VirtualBoxDriver(root, runner=fake, vrde_auth="null")
    driver.create(make_spec(root))
    modifyvm = next(call for call in fake.calls if call[0] == "modifyvm")
    assert modifyvm[modifyvm.index("--vrde-auth-type") + 1] == "null"
    with pytest.raises(ValueError):
        VirtualBoxDriver(root, vrde_auth="guest")


# probe

def test_probe_without_vboxmanage_says_virtualbox_is_not_installed():
    availability = probe_virtualbox(runner=FakeVBoxManage(), which=lambda name: None)
    assert availability.available is False
    assert availability.reason == NOT_INSTALLED == "VBoxManage not found: VirtualBox is not installed on this machine"


def test_probe_reports_the_kernel_driver_warning():
    def runner(args, timeout):
        return completed(args, VBOXDRV_WARNING)

    availability = probe_virtualbox(runner=runner, which=lambda name: "/usr/bin/VBoxManage")
    assert availability.available is False
    assert "vboxdrv kernel module is not loaded" in availability.reason


def test_probe_refuses_virtualbox_older_than_7():
    def runner(args, timeout):
        return completed(args, "6.1.50r161033\n")

    availability = probe_virtualbox(runner=runner, which=lambda name: "/usr/bin/VBoxManage")
    assert availability.available is False
    assert "6.1.50 is too old" in availability.reason


def test_probe_reports_a_service_that_does_not_answer():
    def runner(args, timeout):
        if args == ["--version"]:
            return completed(args, "7.0.14r161095\n")
        return completed(args, stderr="VBoxManage: error: Failed to create the VirtualBox object!\n", returncode=1)

    availability = probe_virtualbox(runner=runner, which=lambda name: "/usr/bin/VBoxManage")
    assert availability.available is False
    assert "Failed to create the VirtualBox object" in availability.reason


def test_probe_finds_a_working_virtualbox_and_its_vrde_module():
    answers = {"--version": "7.0.14r161095\n", "hostinfo": "Host Information:\n", "extpacks": LIST_EXTPACKS}

    def runner(args, timeout):
        return completed(args, answers[args[-1]])

    availability = probe_virtualbox(runner=runner, which=lambda name: "/usr/bin/VBoxManage")
    assert availability.available is True
    assert availability.details == {"version": "7.0.14", "vrde_modules": "VBoxVRDP"}


def test_the_registry_names_this_driver_and_its_capabilities():
    assert driver_class("virtualbox") is VirtualBoxDriver
    assert VirtualBoxDriver.capabilities["console_rdp"] is True
    assert VirtualBoxDriver.capabilities["console_vnc"] is False
    assert VirtualBoxDriver.capabilities["snapshot_run"] is True


def test_flatten_clones_the_differencing_disk_to_one_vdi_and_forgets_the_copy(driver, fake, tmp_path):
    source = tmp_path / "vms" / INSID / "disk0.vdi"
    source.parent.mkdir(parents=True)
    source.write_bytes(vdi())
    dest = tmp_path / "submit" / "flat.vdi"
    driver.flatten_disk(source, dest)
    assert fake.calls[0] == ["clonemedium", "disk", str(source), str(dest), "--format", "VDI"]
    assert fake.calls[1] == ["showmediuminfo", "disk", str(dest)]
    assert fake.calls[2][:2] == ["closemedium", "disk"]
    assert dest.is_file()


def test_flatten_refuses_an_existing_dest_before_any_command(driver, fake, tmp_path):
    dest = tmp_path / "flat.vdi"
    dest.write_bytes(b"keep me")
    with pytest.raises(DriverError, match="already exists"):
        driver.flatten_disk(tmp_path / "disk0.vdi", dest)
    assert fake.calls == [] and dest.read_bytes() == b"keep me"
