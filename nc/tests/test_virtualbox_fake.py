"""A recording stand-in for the VBoxManage process, for the VirtualBox driver's unit tests only (never the driver
under contract test): it records every argv it is given and answers in VBoxManage 7's documented output formats.

The canned outputs below follow the format strings of VBoxManage's source (src/VBox/Frontends/VBoxManage:
VBoxManageInfo.cpp for ``showvminfo --machinereadable``, VBoxManageList.cpp and VBoxManageDisk.cpp for ``list`` and
``showmediuminfo``, VBoxManageGuestProp.cpp for ``guestproperty enumerate``, VBoxManageMetrics.cpp for
``metrics query``) and the examples of the VirtualBox 7 manual.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from nc.drivers.virtualbox_output import parse_machinereadable

SHOWVMINFO_TEMPLATE = """\
name="{name}"
Encryption:     disabled
groups="/"
ostype="Other Linux (64-bit)"
UUID="5d1c7e8e-8a55-4c7e-9b2a-6d1f0e3a9c11"
CfgFile="{vm_dir}/{name}.vbox"
SnapFldr="{vm_dir}/Snapshots"
LogFldr="{vm_dir}/Logs"
description="lab \\"A\\" desktop"
memory=512
pagefusion="off"
vram=128
cpuexecutioncap=100
chipset="piix3"
firmware="BIOS"
cpus=1
boot1="disk"
boot2="none"
acpi="on"
ioapic="on"
VMState="{state}"
VMStateChangeTime="2024-05-01T10:00:00.000000000"
storagecontrollername0="SATA"
storagecontrollertype0="IntelAhci"
storagecontrollerinstance0="0"
storagecontrollermaxportcount0="30"
storagecontrollerportcount0="1"
storagecontrollerbootable0="on"
"SATA-0-0"="{vm_dir}/disk0.vdi"
"SATA-ImageUUID-0-0"="7f3c2a10-5b6d-4e8f-9a01-23456789abcd"
natnet1="nat"
macaddress1="525400123456"
cableconnected1="on"
nic1="nat"
nictype1="82540EM"
nicspeed1="0"
Forwarding(0)="tcp2222,tcp,127.0.0.1,2222,,22"
nic2="none"
nic3="none"
nic4="none"
vrde="on"
vrdeport=-1
vrdeports="5901"
vrdeaddress="127.0.0.1"
vrdeauthtype="external"
vrdemulticon="off"
vrdereusecon="off"
vrdevideochannel="off"
{snapshots}"""

SNAPSHOT_LINES = """\
SnapshotName="educloud-clean"
SnapshotUUID="2c9e7d4a-1f0b-4c3e-8d2a-9b8c7d6e5f40"
CurrentSnapshotName="educloud-clean"
CurrentSnapshotUUID="2c9e7d4a-1f0b-4c3e-8d2a-9b8c7d6e5f40"
CurrentSnapshotNode="SnapshotName"
"""

NOT_FOUND = """\
VBoxManage: error: Could not find a registered machine named '{name}'
VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, \
interface IVirtualBox, callee nsISupports
VBoxManage: error: Context: "FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())" at line 2944 of file \
VBoxManageInfo.cpp
"""

LIST_VMS_OTHERS = """\
"Windows 10 lab" {a1b2c3d4-0000-4000-8000-000000000001}
"<inaccessible>" {a1b2c3d4-0000-4000-8000-000000000002}
"ins-0123abcd-old" {a1b2c3d4-0000-4000-8000-000000000003}
"""

GUESTPROPERTY_ENUMERATE = """\
/VirtualBox/GuestAdd/Revision            = '161095'
/VirtualBox/GuestAdd/Version             = '7.0.14'
/VirtualBox/GuestInfo/Net/0/MAC          = '525400123456'
/VirtualBox/GuestInfo/Net/0/Status       = 'Up'
/VirtualBox/GuestInfo/Net/0/V4/Broadcast = '10.0.2.255'
/VirtualBox/GuestInfo/Net/0/V4/IP        = '10.0.2.15'
/VirtualBox/GuestInfo/Net/0/V4/Netmask   = '255.255.255.0'
/VirtualBox/GuestInfo/Net/Count          = '1'
/VirtualBox/GuestInfo/OS/Product         = 'Linux'
/VirtualBox/GuestInfo/OS/Release         = '6.1.0-18-amd64'
/VirtualBox/HostInfo/VBoxVer             = '7.0.14'
"""

METRICS_QUERY = """\
Object          Metric                                   Values
--------------- ---------------------------------------- --------------------------------------------
{name}    CPU/Load/User                            12.50%
{name}    CPU/Load/Kernel                          3.25%
{name}    RAM/Usage/Used                           524288 kB
{name}    Disk/Usage/Used                          2048 mB
{name}    Net/Rate/Rx                              1500 B/s
{name}    Net/Rate/Tx                              300 B/s
"""

METRICS_QUERY_EMPTY = """\
Object          Metric                                   Values
--------------- ---------------------------------------- --------------------------------------------
"""

DEBUGVM_STATISTICS = """\
<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<Statistics>
<U64 val="41250000000" unit="ns" name="/TM/CPU/00/cNsExecuting"/>
<U64 val="2750000000" unit="ns" name="/TM/CPU/00/cNsOther"/>
<U64 val="1000000000" unit="ns" name="/TM/CPU/01/cNsExecuting"/>
<U64 val="500000000" unit="ns" name="/TM/CPU/01/cNsOther"/>
<Counter c="104857600" unit="bytes" name="/Public/Storage/AHCI0/Port0/BytesRead"/>
<Counter c="5242880" unit="bytes" name="/Public/Storage/AHCI0/Port0/BytesWritten"/>
<Counter c="1048576" unit="bytes" name="/Public/Storage/AHCI0/Port1/BytesRead"/>
<Counter c="123456" unit="bytes" name="/Public/NetAdapter/0/BytesReceived"/>
<Counter c="65432" unit="bytes" name="/Public/NetAdapter/0/BytesTransmitted"/>
</Statistics>
"""

SHOWMEDIUMINFO_BASE = """\
UUID:           0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e
Parent UUID:    base
State:          created
Type:           normal (base)
Location:       {path}
Storage format: {format}
Format variant: dynamic default
Capacity:       10240 MBytes
Size on disk:   1534 MBytes
Encryption:     disabled
"""

SHOWMEDIUMINFO_CHILD = """\
UUID:           6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
Parent UUID:    0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e
State:          created
Type:           normal (differencing)
Auto-Reset:     off
Location:       {path}
Storage format: VDI
Format variant: differencing default
Capacity:       10240 MBytes
Size on disk:   2 MBytes
Encryption:     disabled
"""

LIST_HDDS = """\
UUID:           0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e
Parent UUID:    base
State:          created
Type:           normal (base)
Location:       /var/lib/educloud/nc/images/img-00000001/1.img
Storage format: VDI
Capacity:       10240 MBytes
Encryption:     disabled

UUID:           2d3e4f50-6172-4839-9a4b-5c6d7e8f9a0b
Parent UUID:    7f3c2a10-5b6d-4e8f-9a01-23456789abcd
State:          created
Type:           normal (differencing)
Location:       {vm_dir}/Snapshots/{{2d3e4f50-6172-4839-9a4b-5c6d7e8f9a0b}}.vdi
Storage format: VDI
Capacity:       10240 MBytes
Encryption:     disabled

UUID:           7f3c2a10-5b6d-4e8f-9a01-23456789abcd
Parent UUID:    0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e
State:          created
Type:           normal (differencing)
Location:       {vm_dir}/disk0.vdi
Storage format: VDI
Capacity:       10240 MBytes
Encryption:     disabled

UUID:           99999999-8888-4777-8666-555555555555
Parent UUID:    base
State:          created
Type:           normal (base)
Location:       {vm_dir}-other/disk0.vdi
Storage format: VDI
Capacity:       10240 MBytes
Encryption:     disabled
"""

LIST_EXTPACKS = """\
Extension Packs: 1
Pack no. 0:   Oracle VM VirtualBox Extension Pack
Version:        7.0.14
Revision:       161095
Edition:
Description:    Oracle Cloud Infrastructure integration, USB 2.0 and USB 3.0 Host Controller, Host Webcam, \
VirtualBox RDP, PXE ROM, Disk Encryption, NVMe.
VRDE Module:    VBoxVRDP
Crypto Module:  VBoxPuelCrypto
Usable:         true
Why unusable:
"""

VBOXDRV_WARNING = """\
WARNING: The vboxdrv kernel module is not loaded. Either there is no module
         available for the current kernel (6.1.0-18-amd64) or it failed to
         load. Please recompile the kernel module and install it by

           sudo /sbin/vboxconfig

         You will not be able to start VMs until this problem is fixed.
7.0.14r161095
"""


def completed(args: Sequence[str], stdout: str = "", stderr: str = "", returncode: int = 0):
    return subprocess.CompletedProcess(["VBoxManage", *args], returncode, stdout, stderr)


class FakeVBoxManage:
    """Records each argv and plays VBoxManage against a small model of VirtualBox: registered VMs with a state and
    snapshots. ``fail[subcommand]`` makes that subcommand fail with the given message; ``acpi_polls`` is how many
    state queries a guest takes to power off after the ACPI button (None: it never does)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.vms: dict[str, dict] = {}
        self.fail: dict[str, str] = {}
        self.acpi_polls: int | None = 2
        self.hdds = ""
        self.guest_properties = GUESTPROPERTY_ENUMERATE
        self.metrics_text = METRICS_QUERY
        self.statistics = DEBUGVM_STATISTICS
        self.medium_info = SHOWMEDIUMINFO_BASE
        # What each ``--passwordfile`` held when VBoxManage read it (the driver removes the file afterwards).
        self.password_files: list[str] = []

    def add_vm(self, name: str, vm_dir: Path, state: str = "poweroff", snapshot: bool = False) -> None:
        self.vms[name] = {"state": state, "vm_dir": vm_dir, "snapshots": ["educloud-clean"] if snapshot else [],
                          "acpi": None, "volumes": {}}

    def commands(self) -> list[str]:
        """The subcommands run so far (with controlvm's action), in order."""
        return [" ".join(call[:3:2]) if call[0] == "controlvm" else call[0] for call in self.calls]

    def __call__(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        args = list(args)
        assert all(isinstance(arg, str) for arg in args), args
        assert timeout > 0
        self.calls.append(args)
        command = args[0]
        if command in self.fail:
            return completed(args, stderr=f"VBoxManage: error: {self.fail[command]}\n", returncode=1)
        if command in ("showvminfo", "startvm", "controlvm", "unregistervm", "snapshot", "debugvm") \
                and args[1] not in self.vms:
            return completed(args, stderr=NOT_FOUND.format(name=args[1]), returncode=1)
        handler = getattr(self, f"_{command}", None)
        return handler(args) if handler else completed(args)

    def _showvminfo(self, args):
        vm = self.vms[args[1]]
        if vm["acpi"] is not None:
            vm["acpi"] -= 1
            if vm["acpi"] <= 0:
                vm["state"], vm["acpi"] = "poweroff", None
        volumes = "".join(f'"SATA-{port}-0"="{location}"\n"SATA-ImageUUID-{port}-0"="{uuid}"\n'
                          for port, (location, uuid) in sorted(vm["volumes"].items()))
        return completed(args, SHOWVMINFO_TEMPLATE.format(
            name=args[1], vm_dir=vm["vm_dir"], state=vm["state"],
            snapshots=SNAPSHOT_LINES if vm["snapshots"] else "") + volumes)

    def _storageattach(self, args):
        """A hot-plugged iSCSI volume on the SATA controller is kept (named ``<server>|<target>|<lun>`` as
        VBoxManage names it) and shown by showvminfo; ``--medium none`` unplugs it. A running VM only (a stopped
        VM's attachments are the spec's disks, which this model does not follow)."""
        vm = self.vms.get(args[1])
        medium = args[args.index("--medium") + 1]
        if vm is None or vm["state"] != "running" or args[args.index("--storagectl") + 1] != "SATA":
            return completed(args)
        port = int(args[args.index("--port") + 1])
        if medium == "none":
            vm["volumes"].pop(port, None)
        elif medium == "iscsi":
            def value(option: str) -> str:
                return args[args.index(option) + 1]

            self.password_files.append(Path(value("--passwordfile")).read_text())
            uuid = f"0b0e0e0e-0000-4000-8000-{port:012d}"
            vm["volumes"][port] = (f"{value('--server')}|{value('--target')}|{value('--lun')}", uuid)
            return completed(args, f"iSCSI disk created. UUID: {uuid}\n")
        return completed(args)

    def _createvm(self, args):
        name, base = args[args.index("--name") + 1], Path(args[args.index("--basefolder") + 1])
        vm_dir = base / name
        vm_dir.mkdir(parents=True, exist_ok=True)
        (vm_dir / f"{name}.vbox").write_text("<VirtualBox/>\n")
        (vm_dir / "Logs").mkdir(exist_ok=True)
        self.add_vm(name, vm_dir)
        return completed(args, f"Virtual machine '{name}' is created and registered.\n")

    def _unregistervm(self, args):
        del self.vms[args[1]]
        return completed(args)

    def _startvm(self, args):
        self.vms[args[1]]["state"] = "running"
        return completed(args, f'Waiting for VM "{args[1]}" to power on...\nVM "{args[1]}" has been successfully '
                               "started.\n")

    def _controlvm(self, args):
        vm = self.vms[args[1]]
        if vm["state"] not in ("running", "paused"):
            message = f"VBoxManage: error: Machine '{args[1]}' is not currently running\n"
            return completed(args, stderr=message, returncode=1)
        if args[2] == "poweroff":
            vm["state"], vm["acpi"] = "poweroff", None
        elif args[2] == "resume":
            vm["state"] = "running"
        elif args[2] == "acpipowerbutton" and self.acpi_polls is not None:
            vm["acpi"] = self.acpi_polls
        return completed(args)

    def _snapshot(self, args):
        if args[2] == "take":
            self.vms[args[1]]["snapshots"].append(args[3])
        return completed(args, "0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%\n")

    def _list(self, args):
        if args[1] == "hdds":
            return completed(args, self.hdds)
        names = [name for name, vm in self.vms.items() if args[1] == "vms" or vm["state"] == "running"]
        mine = "".join(f'"{name}" {{5d1c7e8e-8a55-4c7e-9b2a-{index:012d}}}\n' for index, name in enumerate(names))
        return completed(args, mine + (LIST_VMS_OTHERS if args[1] == "vms" else ""))

    def _guestproperty(self, args):
        return completed(args, self.guest_properties)

    def _metrics(self, args):
        if args[1] == "query":
            return completed(args, self.metrics_text.format(name=args[2]))
        return completed(args)

    def _debugvm(self, args):
        return completed(args, self.statistics)

    def _showmediuminfo(self, args):
        return completed(args, self.medium_info)

    def _createmedium(self, args):
        Path(args[args.index("--filename") + 1]).write_bytes(b"<<< Oracle VM VirtualBox Disk Image >>>\n")
        return completed(args, "0%...100%\nMedium created. UUID: 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d\n")

    def _clonemedium(self, args):
        Path(args[3]).write_bytes(b"<<< Oracle VM VirtualBox Disk Image >>>\n")
        return completed(args, "0%...100%\nClone medium created in format 'VDI'. UUID: "
                               "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d\n")


def test_the_fake_answers_showvminfo_in_the_machinereadable_format(tmp_path):
    fake = FakeVBoxManage()
    fake.add_vm("ins-0123abcd", tmp_path, state="running", snapshot=True)
    info = parse_machinereadable(fake(["showvminfo", "ins-0123abcd", "--machinereadable"], 60).stdout)
    assert info["VMState"] == "running"
    assert info["SATA-0-0"] == f"{tmp_path}/disk0.vdi"
    assert info["SnapshotName"] == "educloud-clean"


def test_the_fake_answers_an_unknown_vm_as_vboxmanage_does():
    result = FakeVBoxManage()(["showvminfo", "ins-0000000f", "--machinereadable"], 60)
    assert result.returncode == 1
    assert "VBOX_E_OBJECT_NOT_FOUND" in result.stderr
