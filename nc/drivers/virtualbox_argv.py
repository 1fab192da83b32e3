"""VBoxManage command lines built from a VMSpec, an instance id or a path: pure functions, nothing runs here.

Every builder returns the arguments after ``VBoxManage`` as a list of strings (an argv, never a shell string) and checks
what it is given first: instance ids with ``check_instance_id``, paths with ``safe_path``, so a value that is not safe
to hand to the hypervisor raises InvalidVMName before any command exists.

The syntax of each subcommand was checked against the VirtualBox 7 manual, whose pages are built from
``doc/manual/en_US/man_VBoxManage-<subcommand>.xml`` in the VirtualBox source (read at the 7.1 tree of
github.com/VirtualBox/virtualbox, and VBoxManage's own option tables in ``src/VBox/Frontends/VBoxManage`` where the
manual is silent); each builder names its page. Options
and their values are separate argv elements (``--memory``, ``512``): VBoxManage's option parser (IPRT RTGetOpt)
takes that form as well as the manual's ``--memory=512``, and ``metrics setup`` takes only the separate form.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from luhyaapi.validators import MAC_RE
from luhyaapi.vmspec import VMSpec
from luhyaapi.volumes import VolumeTarget
from nc.drivers.base import DriverError, InvalidVMName, check_instance_id, check_volume_id

# Absolute paths of plain names only: no spaces, quotes, globs or other shell metacharacters, no "..".
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9._+/-]*$")
# The spec's own patterns, checked again here because the values end up on a command line.
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_MEDIUM_UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")

# VirtualBox guest OS type ids (``VBoxManage list ostypes``), all 64-bit: VirtualBox 7 keeps the "_64" suffix for
# x86-64 guests.
OS_TYPES: dict[str, str] = {"linux": "Linux_64", "windows": "Windows10_64", "other": "Other_64"}

# NIC models as ``modifyvm --nic-typeN`` names them (man_VBoxManage-modifyvm, Networking Settings). VirtualBox emulates
# no RTL8139, so a spec asking for one is refused rather than given a different card behind its back.
NIC_TYPES: dict[str, str] = {"e1000": "82540EM", "virtio": "virtio"}
MAX_NICS = 4

# The snapshot a run_with_snapshot VM is taken back to after every run.
SNAPSHOT_NAME = "educloud-clean"

# ``--vrde-auth-type`` values this driver sets: "external" (VirtualBox's VBoxAuth library, host accounts through PAM
# on Linux) unless "null" (no authentication at all) is asked for explicitly.
VRDE_AUTH_TYPES = ("external", "null")

# The per-VM metrics of ``VBoxManage metrics`` this driver reads, and the base names ``metrics setup`` takes.
METRICS = ("CPU/Load/User", "CPU/Load/Kernel", "RAM/Usage/Used", "Disk/Usage/Used", "Net/Rate/Rx", "Net/Rate/Tx")
METRIC_BASES = ("CPU/Load", "RAM/Usage", "Disk/Usage", "Net/Rate")
# The counters of ``debugvm statistics`` this driver reads ('|' separates STAM patterns).
STATISTICS = ("/TM/CPU/*/cNsExecuting", "/TM/CPU/*/cNsOther", "/Public/Storage/*/Port*/Bytes*",
              "/Public/NetAdapter/*/Bytes*")


@dataclass(frozen=True)
class Controller:
    """A storage controller as ``storagectl`` adds it, and how many devices each of its ports takes."""

    name: str
    bus: str
    chipset: str
    devices_per_port: int

    def slot(self, index: int) -> tuple[int, int]:
        """The (port, device) of the ``index``-th disk."""
        return divmod(index, self.devices_per_port)


# disk_type -> controller. IDE is a PIIX4 with two devices per port; SATA an Intel AHCI; virtio VirtualBox's VirtIO
# SCSI controller (``--add virtio`` is taken by VBoxManageStorageController.cpp though the manual's --add list omits
# it; its --controller list has VirtIO).
CONTROLLERS: dict[str, Controller] = {
    "ide": Controller("IDE", "ide", "PIIX4", 2),
    "sata": Controller("SATA", "sata", "IntelAhci", 1),
    "virtio": Controller("VirtIO", "virtio", "VirtIO", 1),
}


def safe_path(path: str | Path, what: str = "path") -> str:
    """``path`` as an absolute path string if it is made of plain names only; InvalidVMName otherwise."""
    text = str(path)
    if "\x00" in text or not _SAFE_PATH_RE.fullmatch(text) or ".." in PurePosixPath(text).parts:
        raise InvalidVMName(f"{what} {text!r} is not safe to hand to VBoxManage (an absolute path of letters, "
                            "digits and ._+- only)")
    return str(PurePosixPath(text))


def medium_uuid(value: str) -> str:
    """``value`` if it is a medium UUID as VBoxManage prints them; InvalidVMName otherwise."""
    if not _MEDIUM_UUID_RE.fullmatch(value):
        raise InvalidVMName(f"{value!r} is not a medium UUID")
    return value


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidVMName(f"{value!r} is not an IPv4 address") from None


def _number(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidVMName(f"{what} {value!r} is not a number")
    return value


def check_spec(spec: VMSpec) -> None:
    """Refuse, before anything runs, what VirtualBox cannot do for ``spec`` (DriverError) or what is not safe to pass
    (InvalidVMName)."""
    check_instance_id(spec.insid)
    if spec.console.protocol != "rdp":
        raise DriverError(f"VirtualBox serves the console over RDP (VRDE) only, not {spec.console.protocol!r}")
    if len(spec.nics) > MAX_NICS:
        raise DriverError(f"at most {MAX_NICS} NICs; the spec has {len(spec.nics)}")
    for nic in spec.nics:
        if nic.model not in NIC_TYPES:
            raise DriverError(f"VirtualBox has no {nic.model!r} NIC emulation; use one of {', '.join(NIC_TYPES)}")
        if not MAC_RE.fullmatch(nic.mac):
            raise InvalidVMName(f"{nic.mac!r} is not a MAC address")
        if nic.bridge is not None and not _BRIDGE_RE.fullmatch(nic.bridge):
            raise InvalidVMName(f"{nic.bridge!r} is not a safe host interface name")
        for forward in nic.forwards:
            _ipv4(forward.host_ip)
            _number(forward.host_port, "host port")
            _number(forward.guest_port, "guest port")
    _ipv4(spec.console.listen)
    _number(spec.console.port, "console port")
    _number(spec.memory_mb, "memory")
    _number(spec.cpus, "cpus")


# Machines (man_VBoxManage-createvm, -modifyvm, -storagectl, -storageattach, -snapshot, -unregistervm).

def createvm(spec: VMSpec, root: Path) -> list[str]:
    """Define and register the VM: its settings file is ``<root>/<insid>/<insid>.vbox`` (createvm page; ``--register``
    does what a separate ``registervm <file>`` would, as the registervm page notes; the platform architecture follows
    from the 64-bit OS type in VBoxManageMisc.cpp, so 7.1's ``--platform-architecture`` is not needed and 7.0 runs
    the same line)."""
    return ["createvm", "--name", check_instance_id(spec.insid), "--ostype", OS_TYPES[spec.os_type],
            "--basefolder", safe_path(root, "root"), "--register"]


def _nic_args(spec: VMSpec) -> list[str]:
    """The Networking and NAT Networking options of modifyvm for every NIC slot: the spec's NICs, then ``none``."""
    args: list[str] = []
    for number, nic in enumerate(spec.nics, start=1):
        args += [f"--nic{number}", nic.mode, f"--nic-type{number}", NIC_TYPES[nic.model],
                 f"--mac-address{number}", nic.mac.replace(":", "").upper()]
        if nic.mode == "bridged":
            args += [f"--bridge-adapter{number}", nic.bridge or ""]
        for forward in nic.forwards:
            # [rule-name],tcp|udp,[host-IP],hostport,[guest-IP],guestport; the guest IP is left to NAT's DHCP.
            rule = f"{forward.protocol}{forward.host_port}"
            args += [f"--nat-pf{number}",
                     f"{rule},{forward.protocol},{forward.host_ip},{forward.host_port},,{forward.guest_port}"]
    for number in range(len(spec.nics) + 1, MAX_NICS + 1):
        args += [f"--nic{number}", "none"]
    return args


def _vrde_args(spec: VMSpec, vrde_auth: str) -> list[str]:
    """The Remote Machine Settings of modifyvm: VRDE on the CC-allocated port and address, authentication on."""
    if vrde_auth not in VRDE_AUTH_TYPES:
        raise DriverError(f"VRDE authentication {vrde_auth!r} is not one of {', '.join(VRDE_AUTH_TYPES)}")
    return ["--vrde", "on", "--vrde-port", str(spec.console.port), "--vrde-address", spec.console.listen,
            "--vrde-auth-type", vrde_auth]


def modifyvm(spec: VMSpec, vrde_auth: str = "external") -> list[str]:
    """Size and wire the VM (modifyvm page): memory, CPUs (with the I/O APIC VirtualBox needs for more than one),
    ACPI for the power button ``stop`` presses, 128 MB of video memory as the original gave, boot from disk only,
    every NIC slot and VRDE."""
    return ["modifyvm", check_instance_id(spec.insid), "--memory", str(spec.memory_mb), "--cpus", str(spec.cpus),
            "--ioapic", "on", "--acpi", "on", "--vram", "128",
            "--boot1", "disk", "--boot2", "none", "--boot3", "none", "--boot4", "none",
            *_nic_args(spec), *_vrde_args(spec, vrde_auth)]


def storagectl(spec: VMSpec) -> list[str]:
    """Add the one controller the spec's disk_type names (storagectl page)."""
    controller = CONTROLLERS[spec.disk_type]
    return ["storagectl", check_instance_id(spec.insid), "--name", controller.name, "--add", controller.bus,
            "--controller", controller.chipset]


# Volumes (issue 16) are hot-plugged into the VM's SATA controller (AHCI: VirtualBox hot-plugs and unplugs disks on
# SATA only), on the ports after the spec's own disks; ``create`` gives every VM one with all its ports.
VOLUME_CONTROLLER = "SATA"
SATA_PORTS = 30


def storagectl_volumes(spec: VMSpec) -> list[str]:
    """The SATA controller volumes are hot-plugged into, with every port it can have (storagectl page): the spec's
    own when its disks are SATA, else a second, not bootable controller (a running VM's port count cannot change)."""
    insid = check_instance_id(spec.insid)
    if spec.disk_type == "sata":
        return ["storagectl", insid, "--name", VOLUME_CONTROLLER, "--portcount", str(SATA_PORTS)]
    return ["storagectl", insid, "--name", VOLUME_CONTROLLER, "--add", "sata", "--controller", "IntelAhci",
            "--portcount", str(SATA_PORTS), "--bootable", "off"]


def storageattach_iscsi(insid: str, port: int, target: VolumeTarget, password_file: str | Path) -> list[str]:
    """Hot-plug an iSCSI volume as a hard disk on ``port`` of the volumes' controller (storageattach page, the
    iSCSI options: ``--server`` and ``--tport`` the portal, ``--target``, ``--lun``, ``--username``, and the CHAP
    secret from ``--passwordfile``, never ``--password``, so it is on no command line; ``--initiator`` the node's
    name). VirtualBox names the medium ``<server>|<target>|<lun>``."""
    check_volume_id(target.volume_id)
    if not 0 <= port < SATA_PORTS:
        raise ValueError(f"SATA port {port} is not between 0 and {SATA_PORTS - 1}")
    return ["storageattach", check_instance_id(insid), "--storagectl", VOLUME_CONTROLLER, "--port", str(port),
            "--device", "0", "--type", "hdd", "--medium", "iscsi", "--server", _ipv4(target.host),
            "--tport", str(target.port), "--target", target.iqn, "--lun", str(target.lun),
            "--username", target.chap_user, "--passwordfile", safe_path(password_file, "password file"),
            "--initiator", target.initiator]


def storagedetach(insid: str, port: int) -> list[str]:
    """Unplug whatever is on ``port`` of the volumes' controller (storageattach page, ``--medium none``)."""
    if not 0 <= port < SATA_PORTS:
        raise ValueError(f"SATA port {port} is not between 0 and {SATA_PORTS - 1}")
    return ["storageattach", check_instance_id(insid), "--storagectl", VOLUME_CONTROLLER, "--port", str(port),
            "--device", "0", "--medium", "none"]


def storageattach(spec: VMSpec) -> list[list[str]]:
    """Attach every disk as a hard disk, in order (storageattach page). A read-only disk is attached ``immutable``:
    the guest's writes go to a differencing image in the VM's Snapshots folder that VirtualBox throws away at each
    power-on, and the file itself is never written."""
    insid = check_instance_id(spec.insid)
    controller = CONTROLLERS[spec.disk_type]
    commands = []
    for index, disk in enumerate(spec.disks):
        port, device = controller.slot(index)
        command = ["storageattach", insid, "--storagectl", controller.name, "--port", str(port),
                   "--device", str(device), "--type", "hdd", "--medium", safe_path(disk.path, "disk")]
        if disk.readonly:
            command += ["--mtype", "immutable"]
        commands.append(command)
    return commands


def snapshot_take(insid: str) -> list[str]:
    """Take the clean snapshot a run_with_snapshot VM returns to (snapshot page, ``take``)."""
    return ["snapshot", check_instance_id(insid), "take", SNAPSHOT_NAME]


def snapshot_restore(insid: str) -> list[str]:
    """Throw away what the last run wrote by going back to the clean snapshot (snapshot page, ``restore``)."""
    return ["snapshot", check_instance_id(insid), "restore", SNAPSHOT_NAME]


def create_commands(spec: VMSpec, root: Path, vrde_auth: str = "external") -> list[list[str]]:
    """Every command ``create`` runs for ``spec``, in order; refuses the spec (check_spec) before building any."""
    check_spec(spec)
    commands = [createvm(spec, root), modifyvm(spec, vrde_auth), storagectl(spec), storagectl_volumes(spec),
                *storageattach(spec)]
    if spec.run_with_snapshot:
        commands.append(snapshot_take(spec.insid))
    return commands


def unregistervm(insid: str) -> list[str]:
    """Unregister the VM (unregistervm page). Without ``--delete`` VBoxManage only closes the media the VM used
    (VBoxManageMisc.cpp): ``--delete`` would delete every hard disk image attached to it, the image cache's
    included, so the driver removes the VM's own directory itself."""
    return ["unregistervm", check_instance_id(insid)]


# Running (man_VBoxManage-startvm, -controlvm).

def startvm(insid: str) -> list[str]:
    """Boot the VM with no window, its screen served by VRDE (startvm page)."""
    return ["startvm", check_instance_id(insid), "--type", "headless"]


CONTROLVM_ACTIONS = ("acpipowerbutton", "poweroff", "resume")


def controlvm(insid: str, action: str) -> list[str]:
    """Press the ACPI power button, pull the plug, or resume a paused VM (controlvm page)."""
    if action not in CONTROLVM_ACTIONS:
        raise ValueError(f"controlvm {action!r} is not one of {', '.join(CONTROLVM_ACTIONS)}")
    return ["controlvm", check_instance_id(insid), action]


# Looking (man_VBoxManage-showvminfo, -list, -guestproperty, -metrics).

def showvminfo(insid: str) -> list[str]:
    """The VM's settings and state as ``key="value"`` lines (showvminfo page, ``--machinereadable``)."""
    return ["showvminfo", check_instance_id(insid), "--machinereadable"]


def list_vms() -> list[str]:
    """Every registered VM as ``"name" {uuid}`` lines (list page)."""
    return ["list", "vms"]


def list_runningvms() -> list[str]:
    """The running VMs, in the same format as ``list vms`` (list page)."""
    return ["list", "runningvms"]


def list_hdds() -> list[str]:
    """Every registered hard disk image as ``Key: value`` blocks (list page)."""
    return ["list", "hdds"]


def guestproperty_enumerate(insid: str) -> list[str]:
    """Every guest property as ``name = 'value'`` lines, without timestamps and flags (guestproperty page). The
    Guest Additions keep ``/VirtualBox/GuestInfo/Net/0/V4/IP`` among them once the guest has an address."""
    return ["guestproperty", "enumerate", check_instance_id(insid), "--no-timestamp", "--no-flags"]


def metrics_setup(insid: str) -> list[str]:
    """Collect the VM's CPU, RAM, disk and network metrics every second, keeping one sample (metrics page, ``setup``;
    VBoxManageMetrics.cpp compares ``--period`` and ``--samples`` as whole arguments). Collection ends when the VM
    stops, so it is set up again after every start."""
    return ["metrics", "setup", "--period", "1", "--samples", "1", check_instance_id(insid), ",".join(METRIC_BASES)]


def metrics_query(insid: str) -> list[str]:
    """The VM's latest metric samples as a table (metrics page, ``query``)."""
    return ["metrics", "query", check_instance_id(insid), ",".join(METRICS)]


def debugvm_statistics(insid: str) -> list[str]:
    """The running VM's counters since it started, as XML (debugvm page, ``statistics --pattern``): the virtual
    CPUs' nanoseconds in guest code and in the VMM (TM.cpp), and the byte counters VirtualBox keeps public for its
    session information window, per storage port and per network adapter."""
    return ["debugvm", check_instance_id(insid), "statistics", "--pattern", "|".join(STATISTICS)]


# Media (man_VBoxManage-showmediuminfo, -createmedium, -clonemedium, -closemedium).

def showmediuminfo(path: str | Path) -> list[str]:
    """What VirtualBox makes of a disk file: format, type and ``Parent UUID`` (``base`` for a base image)."""
    return ["showmediuminfo", "disk", safe_path(path, "disk")]


def createmedium_diff(base: str | Path, dest: str | Path) -> list[str]:
    """A VDI differencing image at ``dest`` whose parent is ``base``: the linked clone (createmedium page,
    ``--diffparent``)."""
    return ["createmedium", "disk", "--filename", safe_path(dest, "clone"), "--diffparent", safe_path(base, "base"),
            "--format", "VDI"]


def clonemedium(base: str | Path, dest: str | Path) -> list[str]:
    """A full VDI copy of ``base`` at ``dest`` (clonemedium page: ``clonemedium [disk|dvd|floppy] <input>
    <output> [--format ...]``, the medium type first). For bases VirtualBox cannot be a differencing parent of, and
    to flatten a differencing disk (the copy holds its parent's content merged in)."""
    return ["clonemedium", "disk", safe_path(base, "base"), safe_path(dest, "clone"), "--format", "VDI"]


def closemedium(uuid: str) -> list[str]:
    """Forget a registered disk image without deleting it (closemedium page)."""
    return ["closemedium", "disk", medium_uuid(uuid)]


# The installation (VBoxManage --version; man_VBoxManage-list).

def version() -> list[str]:
    return ["--version"]


def list_hostinfo() -> list[str]:
    return ["list", "hostinfo"]


def list_extpacks() -> list[str]:
    return ["list", "extpacks"]


def display(args: Sequence[str]) -> str:
    """``VBoxManage`` and its arguments as one line for messages (never run)."""
    return shlex.join(["VBoxManage", *args])
