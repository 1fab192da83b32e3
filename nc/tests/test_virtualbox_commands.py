"""VBoxManage command lines for representative specs, each checked against the VirtualBox 7 manual's syntax
(doc/manual/en_US/man_VBoxManage-*.xml): exact argv lists, refusals before anything is built, and no shell
metacharacter from user input in any argument."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from luhyaapi.vmspec import ConsoleSpec, DiskSpec, NicSpec, PortForward, VMSpec
from nc.drivers import virtualbox_argv as vbox
from nc.drivers.base import DriverError, InvalidVMName

INSID = "ins-0123abcd"
ROOT = Path("/var/lib/educloud/nc/vms")
DISK = "/var/lib/educloud/nc/vms/ins-0123abcd/disk0.vdi"
SHELL_METACHARACTERS = set(" \t\n;&|$`<>(){}[]*?!~#'\"\\%")


def make_spec(**overrides) -> VMSpec:
    fields = {
        "insid": INSID,
        "disks": (DiskSpec(path=DISK),),
        "console": ConsoleSpec(protocol="rdp", listen="127.0.0.1", port=5901),
    }
    fields.update(overrides)
    return VMSpec(**fields)


NAT_NIC = NicSpec(mode="nat", model="e1000", mac="52:54:00:12:34:56", forwards=(
    PortForward(host_port=2222, guest_port=22),
    PortForward(protocol="udp", host_ip="0.0.0.0", host_port=5353, guest_port=53),
))
BRIDGED_NIC = NicSpec(mode="bridged", model="virtio", mac="52:54:00:ab:cd:ef", bridge="br0")
NO_MORE_NICS = ["--nic2", "none", "--nic3", "none", "--nic4", "none"]
HARDWARE_1G_2CPU = ["--memory", "1024", "--cpus", "2", "--ioapic", "on", "--acpi", "on", "--vram", "128",
                    "--boot1", "disk", "--boot2", "none", "--boot3", "none", "--boot4", "none"]
VRDE_5901 = ["--vrde", "on", "--vrde-port", "5901", "--vrde-address", "127.0.0.1", "--vrde-auth-type", "external"]


def test_createvm_registers_a_64_bit_linux_vm_under_the_root():
    assert vbox.createvm(make_spec(), ROOT) == [
        "createvm", "--name", INSID, "--ostype", "Linux_64", "--basefolder", str(ROOT), "--register"]


def test_windows_and_other_guests_get_64_bit_os_type_ids():
    assert vbox.createvm(make_spec(os_type="windows"), ROOT)[4] == "Windows10_64"
    assert vbox.createvm(make_spec(os_type="other"), ROOT)[4] == "Other_64"


def test_modifyvm_for_nat_with_forwards_sets_cpus_nic_type_mac_natpf_and_vrde():
    spec = make_spec(memory_mb=1024, cpus=2, nics=(NAT_NIC,))
    assert vbox.modifyvm(spec) == [
        "modifyvm", INSID, *HARDWARE_1G_2CPU,
        "--nic1", "nat", "--nic-type1", "82540EM", "--mac-address1", "525400123456",
        "--nat-pf1", "tcp2222,tcp,127.0.0.1,2222,,22",
        "--nat-pf1", "udp5353,udp,0.0.0.0,5353,,53",
        *NO_MORE_NICS, *VRDE_5901]


def test_modifyvm_for_a_bridged_virtio_nic_names_the_host_bridge():
    spec = make_spec(memory_mb=1024, cpus=2, nics=(BRIDGED_NIC,))
    assert vbox.modifyvm(spec) == [
        "modifyvm", INSID, *HARDWARE_1G_2CPU,
        "--nic1", "bridged", "--nic-type1", "virtio", "--mac-address1", "525400ABCDEF", "--bridge-adapter1", "br0",
        *NO_MORE_NICS, *VRDE_5901]


def test_modifyvm_numbers_nics_from_one_and_disables_the_free_slots():
    spec = make_spec(nics=(NAT_NIC, BRIDGED_NIC))
    args = vbox.modifyvm(spec)
    assert args[args.index("--nic1") + 1] == "nat"
    assert args[args.index("--nic2") + 1] == "bridged"
    assert args[args.index("--bridge-adapter2") + 1] == "br0"
    assert args[args.index("--nic3") + 1] == "none"
    assert args[args.index("--nic4") + 1] == "none"
    assert "--bridge-adapter1" not in args


def test_modifyvm_without_nics_disables_every_slot():
    args = vbox.modifyvm(make_spec())
    assert [args[args.index(f"--nic{n}") + 1] for n in range(1, 5)] == ["none"] * 4


def test_vrde_authentication_is_null_only_when_asked_for():
    assert vbox.modifyvm(make_spec())[-2:] == ["--vrde-auth-type", "external"]
    assert vbox.modifyvm(make_spec(), vrde_auth="null")[-2:] == ["--vrde-auth-type", "null"]
    with pytest.raises(DriverError, match="guest"):
        vbox.modifyvm(make_spec(), vrde_auth="guest")


@pytest.mark.parametrize(("disk_type", "expected"), [
    ("ide", ["--name", "IDE", "--add", "ide", "--controller", "PIIX4"]),
    ("sata", ["--name", "SATA", "--add", "sata", "--controller", "IntelAhci"]),
    ("virtio", ["--name", "VirtIO", "--add", "virtio", "--controller", "VirtIO"]),
])
def test_storagectl_adds_the_controller_of_the_disk_type(disk_type, expected):
    assert vbox.storagectl(make_spec(disk_type=disk_type)) == ["storagectl", INSID, *expected]


def test_ide_disks_fill_master_and_slave_of_each_port():
    disks = tuple(DiskSpec(path=f"/images/disk{n}.vdi") for n in range(4))
    commands = vbox.storageattach(make_spec(disk_type="ide", disks=disks))
    slots = [(command[command.index("--port") + 1], command[command.index("--device") + 1]) for command in commands]
    assert slots == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]


def test_sata_disks_take_one_port_each_and_a_readonly_disk_is_immutable():
    disks = (DiskSpec(path="/images/system.vdi"), DiskSpec(path="/images/data.vdi", readonly=True))
    assert vbox.storageattach(make_spec(disk_type="sata", disks=disks)) == [
        ["storageattach", INSID, "--storagectl", "SATA", "--port", "0", "--device", "0", "--type", "hdd",
         "--medium", "/images/system.vdi"],
        ["storageattach", INSID, "--storagectl", "SATA", "--port", "1", "--device", "0", "--type", "hdd",
         "--medium", "/images/data.vdi", "--mtype", "immutable"],
    ]


def test_virtio_disks_attach_to_the_virtio_scsi_controller():
    command = vbox.storageattach(make_spec(disk_type="virtio"))[0]
    assert command[command.index("--storagectl") + 1] == "VirtIO"


def test_create_commands_run_createvm_modifyvm_storagectl_then_each_attach():
    spec = make_spec(disk_type="sata", nics=(NAT_NIC,))
    assert [command[0] for command in vbox.create_commands(spec, ROOT)] == [
        "createvm", "modifyvm", "storagectl", "storagectl", "storageattach"]


def test_snapshot_mode_ends_create_with_the_clean_snapshot_and_restores_it_by_name():
    commands = vbox.create_commands(make_spec(run_with_snapshot=True), ROOT)
    assert commands[-1] == ["snapshot", INSID, "take", "educloud-clean"]
    assert vbox.snapshot_restore(INSID) == ["snapshot", INSID, "restore", "educloud-clean"]


def test_run_commands_match_the_documented_syntax():
    assert vbox.startvm(INSID) == ["startvm", INSID, "--type", "headless"]
    assert vbox.controlvm(INSID, "acpipowerbutton") == ["controlvm", INSID, "acpipowerbutton"]
    assert vbox.controlvm(INSID, "poweroff") == ["controlvm", INSID, "poweroff"]
    assert vbox.unregistervm(INSID) == ["unregistervm", INSID]
    assert vbox.showvminfo(INSID) == ["showvminfo", INSID, "--machinereadable"]
    assert vbox.guestproperty_enumerate(INSID) == [
        "guestproperty", "enumerate", INSID, "--no-timestamp", "--no-flags"]
    assert vbox.list_vms() == ["list", "vms"]
    assert vbox.list_runningvms() == ["list", "runningvms"]


def test_unregistervm_never_deletes_files():
    assert "--delete" not in vbox.unregistervm(INSID)
    assert "--delete-all" not in vbox.unregistervm(INSID)


def test_metrics_setup_passes_period_and_samples_as_separate_arguments():
    assert vbox.metrics_setup(INSID) == [
        "metrics", "setup", "--period", "1", "--samples", "1", INSID, "CPU/Load,RAM/Usage,Disk/Usage,Net/Rate"]
    assert vbox.metrics_query(INSID) == [
        "metrics", "query", INSID,
        "CPU/Load/User,CPU/Load/Kernel,RAM/Usage/Used,Disk/Usage/Used,Net/Rate/Rx,Net/Rate/Tx"]


def test_debugvm_statistics_asks_for_the_cpu_time_and_public_byte_counters():
    assert vbox.debugvm_statistics(INSID) == [
        "debugvm", INSID, "statistics", "--pattern",
        "/TM/CPU/*/cNsExecuting|/TM/CPU/*/cNsOther|/Public/Storage/*/Port*/Bytes*|/Public/NetAdapter/*/Bytes*"]


def test_disk_commands_match_the_documented_syntax():
    assert vbox.showmediuminfo("/images/base.vdi") == ["showmediuminfo", "disk", "/images/base.vdi"]
    assert vbox.createmedium_diff("/images/base.vdi", "/vms/ins-0123abcd/disk0.vdi") == [
        "createmedium", "disk", "--filename", "/vms/ins-0123abcd/disk0.vdi", "--diffparent", "/images/base.vdi",
        "--format", "VDI"]
    assert vbox.clonemedium("/images/base.img", "/vms/ins-0123abcd/disk0.vdi") == [
        "clonemedium", "disk", "/images/base.img", "/vms/ins-0123abcd/disk0.vdi", "--format", "VDI"]
    uuid = "7f3c2a10-5b6d-4e8f-9a01-23456789abcd"
    assert vbox.closemedium(uuid) == ["closemedium", "disk", uuid]


def test_an_rtl8139_nic_is_refused_rather_than_swapped_for_another_card():
    spec = make_spec(nics=(NicSpec(model="rtl8139", mac="52:54:00:12:34:56"),))
    with pytest.raises(DriverError, match="no 'rtl8139' NIC emulation"):
        vbox.create_commands(spec, ROOT)


def test_a_vnc_console_is_refused():
    spec = make_spec(console=ConsoleSpec(protocol="vnc", port=5901))
    with pytest.raises(DriverError, match="RDP"):
        vbox.create_commands(spec, ROOT)


@pytest.mark.parametrize("path", [
    "/images/a;rm -rf ~.vdi", "/images/$(reboot).vdi", "/images/`id`.vdi", "/images/a b.vdi", "/images/*.vdi",
    "/images/a|b.vdi", "/images/a\nb.vdi", "/images/'quoted'.vdi",
])
def test_a_disk_path_with_shell_metacharacters_is_refused_before_any_command_is_built(path):
    spec = make_spec(disks=(DiskSpec(path=path),))
    with pytest.raises(InvalidVMName, match="not safe"):
        vbox.create_commands(spec, ROOT)


@pytest.mark.parametrize("root", ["relative/vms", "/var/lib/edu cloud", "/var/lib/../etc"])
def test_an_unsafe_root_is_refused(root):
    with pytest.raises(InvalidVMName):
        vbox.createvm(make_spec(), Path(root))


@pytest.mark.parametrize("insid", ["ins-0123abcd; reboot", "../ins-0123abcd", "ins-0123ABCD", "vm1", ""])
def test_every_builder_refuses_a_hostile_instance_id(insid):
    builders = [vbox.startvm, vbox.unregistervm, vbox.showvminfo, vbox.snapshot_take, vbox.snapshot_restore,
                vbox.guestproperty_enumerate, vbox.metrics_setup, vbox.metrics_query,
                lambda i: vbox.controlvm(i, "poweroff")]
    for builder in builders:
        with pytest.raises(InvalidVMName):
            builder(insid)


def test_a_spec_that_skipped_validation_is_still_refused():
    spec = VMSpec.model_construct(**{**dict(make_spec()), "insid": "ins-0123abcd && reboot"})
    with pytest.raises(InvalidVMName):
        vbox.create_commands(spec, ROOT)
    bridged = NicSpec.model_construct(mode="bridged", model="e1000", mac="52:54:00:12:34:56", bridge="br0;reboot",
                                      forwards=())
    with pytest.raises(InvalidVMName):
        vbox.check_spec(VMSpec.model_construct(**{**dict(make_spec()), "nics": (bridged,)}))


def test_the_spec_itself_refuses_hostile_names_before_the_driver_sees_them():
    with pytest.raises(ValidationError):
        make_spec(insid="ins-0123abcd;reboot")
    with pytest.raises(ValidationError):
        NicSpec(mode="bridged", mac="52:54:00:12:34:56", bridge="br0 && reboot")
    with pytest.raises(ValidationError):
        NicSpec(mac="52:54:00:12:34:56;")


@pytest.mark.parametrize("spec", [
    make_spec(nics=(NAT_NIC,)),
    make_spec(nics=(BRIDGED_NIC,), disk_type="sata", os_type="windows"),
    make_spec(nics=(NAT_NIC, BRIDGED_NIC), disk_type="virtio", run_with_snapshot=True,
              disks=(DiskSpec(path="/images/a.vdi"), DiskSpec(path="/images/b.vdi", readonly=True))),
], ids=["nat", "bridged-windows-sata", "two-nics-virtio-snapshot"])
def test_no_argv_element_contains_a_shell_metacharacter(spec):
    commands = [*vbox.create_commands(spec, ROOT), vbox.startvm(spec.insid), vbox.controlvm(spec.insid, "poweroff"),
                vbox.unregistervm(spec.insid), vbox.metrics_setup(spec.insid), vbox.metrics_query(spec.insid),
                vbox.guestproperty_enumerate(spec.insid), vbox.showvminfo(spec.insid)]
    for command in commands:
        for element in command:
            assert isinstance(element, str)
            assert not set(element) & SHELL_METACHARACTERS, (command, element)
