"""The VirtualBox hypervisor driver: VMs run by VirtualBox 7, driven through VBoxManage with argv lists only.

Command lines come from ``virtualbox_argv`` (pure builders, checked against the VirtualBox 7 manual), VBoxManage's
output is read by ``virtualbox_output`` and disk headers by ``virtualbox_disks``; this module runs the commands in
order and keeps the contract of ``nc.drivers.base``. The process runner is injectable, so unit tests record the
argv lists and answer with VBoxManage's documented output formats.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import ClassVar

from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.vmspec import VMSpec
from luhyaapi.volumes import VolumeTarget
from nc.drivers import virtualbox_argv as vbox
from nc.drivers.base import (
    AttachedVolume,
    Availability,
    ConsoleEndpoint,
    DriverError,
    GuestInfo,
    HypervisorDriver,
    VMExists,
    VMMetrics,
    VMNotFound,
    VMNotRunning,
    VMState,
    check_instance_id,
    check_volume_id,
)
from nc.drivers.virtualbox_disks import inspect_disk_image
from nc.drivers.virtualbox_output import (
    PAUSED_STATES,
    RUNNING_STATES,
    STOPPED_STATES,
    parse_attached_volumes,
    parse_blocks,
    parse_guest_properties,
    parse_machinereadable,
    parse_metrics_query,
    parse_statistics,
    parse_version,
    parse_vm_list,
    used_ports,
)

logger = logging.getLogger(__name__)

VBOXMANAGE = "VBoxManage"
NOT_INSTALLED = "VBoxManage not found: VirtualBox is not installed on this machine"
MINIMUM_VERSION = (7, 0, 0)

COMMAND_TIMEOUT = 120.0
PROBE_TIMEOUT = 30.0
START_TIMEOUT = 300.0
DISK_TIMEOUT = 3600.0
POWEROFF_WAIT = 60.0

# VBoxManage's answer when a machine name is unknown (a COM error code, not a translated label).
NOT_FOUND_MARKERS = ("VBOX_E_OBJECT_NOT_FOUND", "Could not find a registered machine")
GUEST_INFO_PREFIX = "/VirtualBox/GuestInfo/"
GUEST_IP_PROPERTY = "/VirtualBox/GuestInfo/Net/0/V4/IP"
METRIC_UNITS = {"B": 1, "kB": 1024, "mB": 1024 * 1024, "MB": 1024 * 1024}
# Bases VirtualBox can be a differencing parent of: it opens the parent read-write and finds it again by the UUID in
# the file, which VDI and VHD always carry. Anything else is copied whole (clonemedium opens its source read-only).
LINKED_FORMATS = frozenset({"vdi", "vhd"})

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def run_vboxmanage(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``VBoxManage <args>``: no shell, no stdin, labels untranslated (LC_ALL=C), output captured. Raises OSError
    if it cannot start and subprocess.TimeoutExpired (after killing it) once ``timeout`` seconds have passed."""
    return subprocess.run([VBOXMANAGE, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "LC_ALL": "C"}, check=False)


def _failure(args: Sequence[str], result: subprocess.CompletedProcess[str]) -> str:
    answer = (result.stderr or result.stdout).strip() or "no message"
    return f"{vbox.display(args)} failed (exit {result.returncode}): {answer}"


def probe_virtualbox(runner: Runner = run_vboxmanage,
                     which: Callable[[str], str | None] = shutil.which) -> Availability:
    """Whether VirtualBox can run VMs here, found by running VBoxManage: it must be on PATH, print a version of 7.0
    or later without the wrapper's "vboxdrv kernel module is not loaded" warning, and reach VBoxSVC (``list
    hostinfo``). The VRDE modules of the installed extension packs (the RDP console) go into ``details``."""
    if which(VBOXMANAGE) is None:
        return Availability(False, NOT_INSTALLED)
    try:
        result = runner(vbox.version(), PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"VBoxManage --version could not run: {exc}")
    output = f"{result.stdout}\n{result.stderr}"
    warning = next((line.strip() for line in output.splitlines() if "vboxdrv" in line), None)
    if warning:
        return Availability(False, f"VirtualBox's kernel driver is not loaded: {warning}")
    found = parse_version(result.stdout)
    if result.returncode != 0 or found is None:
        return Availability(False, f"VBoxManage --version failed: {output.strip() or 'no output'}")
    version = ".".join(map(str, found))
    if found < MINIMUM_VERSION:
        return Availability(False, f"VirtualBox {version} is too old: this driver speaks the VBoxManage 7 syntax")
    answers: dict[str, str] = {}
    for args in (vbox.list_hostinfo(), vbox.list_extpacks()):
        try:
            answer = runner(args, PROBE_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Availability(False, f"{vbox.display(args)} could not run: {exc}")
        if answer.returncode != 0:
            return Availability(False, f"VirtualBox does not answer: {_failure(args, answer)}")
        answers[args[-1]] = answer.stdout
    modules = sorted({block["VRDE Module"] for block in parse_blocks(answers["extpacks"])
                      if block.get("VRDE Module") and block.get("Usable", "").lower() == "true"})
    return Availability(True, f"VirtualBox {version}",
                        {"version": version, "vrde_modules": ",".join(modules) or "none"})


def _state_of(info: Mapping[str, str]) -> VMState:
    """The driver's state for ``showvminfo``'s VMState (found by key)."""
    value = info.get("VMState", "")
    if value in RUNNING_STATES:
        return VMState.RUNNING
    if value in PAUSED_STATES:
        return VMState.PAUSED
    if value in STOPPED_STATES:
        return VMState.STOPPED
    raise DriverError(f"VirtualBox reports an unknown VM state {value!r}")


def _attached(volume_id: str, port: int) -> AttachedVolume:
    return AttachedVolume(volume_id=volume_id, device=f"{vbox.VOLUME_CONTROLLER}-{port}-0")


def _has_clean_snapshot(info: Mapping[str, str]) -> bool:
    """Whether the VM has the run_with_snapshot snapshot (SnapshotName, SnapshotName-1, ... in showvminfo)."""
    return any(value == vbox.SNAPSHOT_NAME for key, value in info.items()
               if key == "SnapshotName" or key.startswith("SnapshotName-"))


def _is_instance_id(name: str) -> bool:
    try:
        validate_id(name, "instance")
    except InvalidId:
        return False
    return True


def _inside(location: str, directory: Path) -> bool:
    path = PurePosixPath(os.path.normpath(location))
    return path.is_relative_to(directory) or path.is_relative_to(directory.resolve())


class VirtualBoxDriver(HypervisorDriver):
    """VMs of VirtualBox 7 (VBoxManage), each defined as ``<root>/<insid>/<insid>.vbox`` and named by its instance id.

    The console is VirtualBox's VRDE (RDP) on the spec's listen address and port, with VRDE's ``external``
    authentication (the VBoxAuth library: host accounts through PAM) unless ``vrde_auth="null"`` is given; per-VM
    passwords instead need ``VBoxManage setproperty vrdeauthlibrary VBoxAuthSimple`` once and a
    ``VBoxAuthSimple/users/<name>`` extra-data hash per VM. The guest's address (``guest_ip``) comes from the Guest
    Additions. ``runner`` (the VBoxManage process), ``clock`` and ``sleep`` are injectable for tests.
    """

    name: ClassVar[str] = "virtualbox"
    disk_suffix: ClassVar[str] = ".vdi"
    capabilities: ClassVar[Mapping[str, bool]] = MappingProxyType({
        "linked_clone": True,
        "console_vnc": False,
        "console_rdp": True,
        "nat_forwards": True,
        "bridged": True,
        "guest_ip": True,
        "guest_ready": False,
        "snapshot_run": True,
        "adopt": True,
        "grow_disk": False,
        "volumes": True,
        # Its public statistics count bytes per storage port; operation counters were not checked on a real
        # VirtualBox (none on our test machines), so none are read.
        "disk_ops": False,
        # VirtualBox has no pvpanic device: a panicked guest's VM runs on, and reads alive.
        "guest_panic": False,
    })

    def __init__(self, root: Path, *, runner: Runner | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll_interval: float = 1.0,
                 vrde_auth: str = "external") -> None:
        super().__init__(root)
        if vrde_auth not in vbox.VRDE_AUTH_TYPES:
            raise ValueError(f"vrde_auth must be one of {', '.join(vbox.VRDE_AUTH_TYPES)}, not {vrde_auth!r}")
        self._runner = runner or run_vboxmanage
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._vrde_auth = vrde_auth

    @classmethod
    def probe(cls) -> Availability:
        """See ``probe_virtualbox``."""
        return probe_virtualbox()

    # Running VBoxManage.

    def _call(self, args: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one command and return its result whatever its exit status; DriverError if it cannot run or time
        runs out."""
        try:
            return self._runner(args, timeout)
        except subprocess.TimeoutExpired:
            raise DriverError(f"{vbox.display(args)} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise DriverError(f"{vbox.display(args)} could not run: {exc}") from None

    def _run(self, args: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> str:
        """Run one command and return its output; DriverError with the command and VBoxManage's message if it
        fails."""
        result = self._call(args, timeout)
        if result.returncode != 0:
            raise DriverError(_failure(args, result))
        return result.stdout

    def _machine(self, insid: str) -> dict[str, str] | None:
        """``showvminfo --machinereadable`` of ``insid``, or None if VirtualBox has no such VM."""
        args = vbox.showvminfo(insid)
        result = self._call(args)
        if result.returncode == 0:
            return parse_machinereadable(result.stdout)
        if any(marker in result.stderr for marker in NOT_FOUND_MARKERS):
            return None
        raise DriverError(_failure(args, result))

    def _existing(self, insid: str) -> dict[str, str]:
        info = self._machine(insid)
        if info is None:
            raise VMNotFound(f"no VirtualBox VM {insid} on this node")
        return info

    # The contract.

    def create(self, spec: VMSpec) -> None:
        """Define the VM: createvm (registered, settings under ``vm_dir``), modifyvm (memory, CPUs, NICs, NAT port
        forwards, VRDE), storagectl and one storageattach per disk, then the clean snapshot when the spec runs with
        one. Everything the spec holds is checked before the first command; a failed create unregisters the VM and
        removes the files it made (not the disks it was given)."""
        commands = vbox.create_commands(spec, self.root, self._vrde_auth)
        insid = spec.insid
        vm_dir = self.vm_dir(insid)
        if self._machine(insid) is not None:
            raise VMExists(f"{insid} is already defined in VirtualBox")
        settings = vm_dir / f"{insid}.vbox"
        if settings.exists():
            raise VMExists(f"{settings} is left over from an earlier VM {insid}; destroy {insid} first")
        dir_existed = vm_dir.exists()
        try:
            for command in commands:
                self._run(command, DISK_TIMEOUT if command[0] == "snapshot" else COMMAND_TIMEOUT)
        except DriverError:
            self._undo_create(insid, vm_dir, dir_existed)
            raise

    def _undo_create(self, insid: str, vm_dir: Path, dir_existed: bool) -> None:
        """Unregister a half-made VM (VBoxManage closes its media, deleting none) and remove the files create made:
        the whole directory if create made it, else the settings, logs and snapshots only."""
        try:
            if self._machine(insid) is not None:
                self._run(vbox.unregistervm(insid))
        except DriverError as exc:
            logger.error("virtualbox: %s stays registered after its create failed: %s", insid, exc)
            return
        if not dir_existed:
            if vm_dir.exists():
                shutil.rmtree(vm_dir)
            return
        for name in (f"{insid}.vbox", f"{insid}.vbox-prev", "Logs", "Snapshots"):
            path = vm_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def start(self, insid: str) -> None:
        """``startvm --type headless``, after going back to the clean snapshot when the VM has one (a guest that
        powered itself off never passed through ``stop``); a paused VM is resumed, a running one left alone. Sets up
        metrics collection, which VirtualBox drops whenever the VM stops."""
        info = self._existing(insid)
        state = _state_of(info)
        if state is VMState.RUNNING:
            return
        if state is VMState.PAUSED:
            self._run(vbox.controlvm(insid, "resume"))
            return
        if _has_clean_snapshot(info):
            self._run(vbox.snapshot_restore(insid), DISK_TIMEOUT)
        self._run(vbox.startvm(insid), START_TIMEOUT)
        self._setup_metrics(insid)

    def stop(self, insid: str, timeout: float = 60.0) -> bool:
        """``controlvm acpipowerbutton``, then the state every ``poll_interval`` seconds until ``timeout``, then
        ``controlvm poweroff``; a paused guest cannot see the button and is powered off at once. Afterwards a
        run_with_snapshot VM is taken back to its clean snapshot."""
        info = self._existing(insid)
        state = _state_of(info)
        if state is VMState.STOPPED:
            return True
        if state is VMState.PAUSED:
            graceful = False
            self._power_off(insid)
        else:
            self._press_power_button(insid)
            graceful = self._wait_until_stopped(insid, timeout)
            if not graceful:
                logger.info("virtualbox: %s ignored the power button for %g s; powering it off", insid, timeout)
                self._power_off(insid)
        if _has_clean_snapshot(info):
            self._run(vbox.snapshot_restore(insid), DISK_TIMEOUT)
        return graceful

    def _press_power_button(self, insid: str) -> None:
        args = vbox.controlvm(insid, "acpipowerbutton")
        result = self._call(args)
        if result.returncode != 0 and self.state(insid) is not VMState.STOPPED:
            raise DriverError(_failure(args, result))

    def _power_off(self, insid: str) -> None:
        """``controlvm poweroff`` and wait until VirtualBox says the VM stopped (it may have stopped meanwhile)."""
        args = vbox.controlvm(insid, "poweroff")
        result = self._call(args)
        if result.returncode != 0 and self.state(insid) is not VMState.STOPPED:
            raise DriverError(_failure(args, result))
        if not self._wait_until_stopped(insid, POWEROFF_WAIT):
            raise DriverError(f"{insid} was powered off but had not stopped after {POWEROFF_WAIT:g} s")

    def _wait_until_stopped(self, insid: str, timeout: float) -> bool:
        deadline = self._clock() + timeout
        while True:
            if self.state(insid) in (VMState.STOPPED, VMState.ABSENT):
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(self._poll_interval, remaining))

    def destroy(self, insid: str) -> None:
        """Power the VM off if it runs, ``unregistervm`` it (which closes its media but deletes no file: ``--delete``
        would delete the disks it was given too), close the disk images still registered inside ``vm_dir`` (clones
        made by ``clone_disk``), then remove ``vm_dir``. Succeeds if the VM is already gone."""
        vm_dir = Path(vbox.safe_path(self.vm_dir(insid), "VM directory"))
        info = self._machine(insid)
        if info is not None:
            if _state_of(info) in (VMState.RUNNING, VMState.PAUSED):
                self._power_off(insid)
            self._run(vbox.unregistervm(insid))
        self._close_media_in(vm_dir)
        if vm_dir.exists():
            shutil.rmtree(vm_dir)

    def _close_media_in(self, directory: Path) -> None:
        """``closemedium`` every registered disk image under ``directory``, children before their parents, so no
        registration is left pointing at files about to be removed."""
        media = [block for block in parse_blocks(self._run(vbox.list_hdds()))
                 if "UUID" in block and _inside(block.get("Location", ""), directory)]
        parents = {block["UUID"]: block.get("Parent UUID", "") for block in media}

        def depth(uuid: str) -> int:
            level = 0
            while parents.get(uuid) in parents and level < len(parents):
                uuid = parents[uuid]
                level += 1
            return level

        for uuid in sorted(parents, key=depth, reverse=True):
            try:
                self._run(vbox.closemedium(uuid))
            except DriverError as exc:
                logger.warning("virtualbox: could not close disk image %s under %s: %s", uuid, directory, exc)

    def state(self, insid: str) -> VMState:
        """From ``showvminfo --machinereadable``'s VMState: running and the transitions of a running VM are
        RUNNING; paused and guru meditation PAUSED; poweroff, saved, aborted and the offline operations STOPPED."""
        info = self._machine(check_instance_id(insid))
        return VMState.ABSENT if info is None else _state_of(info)

    def list_vms(self) -> list[str]:
        """The registered VMs (``list vms``) named like instance ids; other VMs of the host are not ours."""
        return [name for name, _ in parse_vm_list(self._run(vbox.list_vms())) if _is_instance_id(name)]

    def adopt(self) -> list[str]:
        """The instances among ``list runningvms``: VirtualBox VMs outlive the node controller's process, so nothing
        more is needed to take them back."""
        return [name for name, _ in parse_vm_list(self._run(vbox.list_runningvms())) if _is_instance_id(name)]

    def console(self, insid: str) -> ConsoleEndpoint:
        """``rdp://<vrdeaddress>:<vrdeports>`` as create configured them (read back from showvminfo)."""
        info = self._existing(insid)
        if info.get("vrde") != "on":
            raise DriverError(f"{insid} has no VRDE server configured")
        try:
            port = int(info.get("vrdeports", ""))
        except ValueError:
            raise DriverError(f"{insid} has VRDE ports {info.get('vrdeports')!r}, not one port") from None
        return ConsoleEndpoint("rdp", info.get("vrdeaddress") or "0.0.0.0", port)

    def metrics(self, insid: str) -> VMMetrics:
        """A running VM's counters since it started from ``debugvm statistics`` (its virtual CPUs' time in guest
        code and in the VMM; bytes read and written per storage port; bytes received and sent per network adapter)
        and its memory from ``metrics query`` (RAM/Usage/Used). VirtualBox's performance collector keeps no samples
        until ``metrics setup`` and drops them when the VM stops: a VM started outside this driver gets it now and
        reports memory from the next sample on."""
        info = self._existing(insid)
        if _state_of(info) is not VMState.RUNNING:
            return VMMetrics(alive=False)
        counters = parse_statistics(self._run(vbox.debugvm_statistics(insid)))
        samples = parse_metrics_query(self._run(vbox.metrics_query(insid)), insid)
        used = samples.get("RAM/Usage/Used")
        if used is None or used.unit not in METRIC_UNITS:
            self._setup_metrics(insid)
            memory = 0
        else:
            memory = int(used.value * METRIC_UNITS[used.unit])

        def total(prefix: str, suffix: str) -> int:
            return sum(value for name, value in counters.items() if name.startswith(prefix) and name.endswith(suffix))

        cpu_ns = total("/TM/CPU/", "/cNsExecuting") + total("/TM/CPU/", "/cNsOther")
        return VMMetrics(
            alive=True,
            cpu_seconds=cpu_ns / 1e9,
            memory_bytes=memory,
            disk_read_bytes=total("/Public/Storage/", "/BytesRead"),
            disk_write_bytes=total("/Public/Storage/", "/BytesWritten"),
            net_rx_bytes=total("/Public/NetAdapter/", "/BytesReceived"),
            net_tx_bytes=total("/Public/NetAdapter/", "/BytesTransmitted"),
        )

    def _setup_metrics(self, insid: str) -> None:
        try:
            self._run(vbox.metrics_setup(insid))
        except DriverError as exc:
            logger.warning("virtualbox: metrics of %s are not collected: %s", insid, exc)

    def guest_info(self, insid: str) -> GuestInfo:
        """The ``/VirtualBox/GuestInfo/*`` guest properties of a running VM (``guestproperty enumerate``; one call
        returns the address as well as the rest), its IPv4 address from ``.../Net/0/V4/IP``. Empty for a VM that does
        not run or a guest without the Guest Additions."""
        info = self._existing(insid)
        if _state_of(info) is not VMState.RUNNING:
            return GuestInfo()
        properties = {name: value
                      for name, value in parse_guest_properties(self._run(vbox.guestproperty_enumerate(insid))).items()
                      if name.startswith(GUEST_INFO_PREFIX)}
        address = properties.get(GUEST_IP_PROPERTY)
        try:
            ip = str(ipaddress.IPv4Address(address)) if address else None
        except ValueError:
            ip = None
        return GuestInfo(ip=ip, properties=properties)

    def flatten_disk(self, source: Path, dest: Path) -> None:
        """``clonemedium disk <source> <dest> --format VDI``: cloning a differencing disk copies what the VM sees
        (its parent merged in). The copy is then forgotten by VirtualBox (``closemedium``), as it leaves this node
        as an upload; a failed flatten removes a partial ``dest``."""
        source_path = Path(vbox.safe_path(source, "source"))
        dest_path = Path(vbox.safe_path(dest, "flattened copy"))
        if dest_path.exists() or dest_path.is_symlink():
            raise DriverError(f"{dest_path} already exists")
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._run(vbox.clonemedium(source_path, dest_path), DISK_TIMEOUT)
            blocks = parse_blocks(self._run(vbox.showmediuminfo(dest_path)))
            if blocks and blocks[0].get("UUID"):
                self._run(vbox.closemedium(blocks[0]["UUID"]))
        except DriverError:
            dest_path.unlink(missing_ok=True)
            raise

    def attach_volume(self, insid: str, target: VolumeTarget) -> AttachedVolume:
        """``storageattach --medium iscsi`` onto the first free port of the VM's SATA controller after its own
        disks (``virtualbox_argv.storageattach_iscsi``), the CHAP secret in a file only the node's user reads for
        the length of the call. The guest sees a SATA disk (VirtualBox sets no serial of ours). A volume on the VM
        already (found by its target's name in ``showvminfo``) is returned as it is."""
        volume_id = check_volume_id(target.volume_id)
        info = self._running_info(insid)
        attached = parse_attached_volumes(info, vbox.VOLUME_CONTROLLER)
        if volume_id in attached:
            return _attached(volume_id, attached[volume_id][0])
        taken = used_ports(info, vbox.VOLUME_CONTROLLER)
        port = next((port for port in range(vbox.SATA_PORTS) if port not in taken), None)
        if port is None:
            raise DriverError(f"attaching {volume_id} to {insid}: all {vbox.SATA_PORTS} SATA ports are taken")
        password_file = self.vm_dir(insid) / f"chap-{volume_id}"
        password_file.unlink(missing_ok=True)
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as secret:
                secret.write(target.chap_secret)
            self._run(vbox.storageattach_iscsi(insid, port, target, password_file))
        finally:
            password_file.unlink(missing_ok=True)
        logger.info("%s: attached %s (%s at %s) on SATA port %d", insid, volume_id, target.iqn, target.portal, port)
        return _attached(volume_id, port)

    def detach_volume(self, insid: str, volume_id: str) -> None:
        """``storageattach --medium none`` on the volume's port (VirtualBox unplugs it from the guest), then
        ``closemedium`` of its iSCSI medium, so VirtualBox's media registry keeps no CHAP secret of it."""
        volume_id = check_volume_id(volume_id)
        attached = parse_attached_volumes(self._running_info(insid), vbox.VOLUME_CONTROLLER)
        if volume_id not in attached:
            return
        port, uuid = attached[volume_id]
        self._run(vbox.storagedetach(insid, port))
        if uuid:
            result = self._call(vbox.closemedium(uuid))
            if result.returncode != 0:
                logger.warning("%s: %s", insid, _failure(vbox.closemedium(uuid), result))
        logger.info("%s: detached %s from SATA port %d", insid, volume_id, port)

    def attached_volumes(self, insid: str) -> list[AttachedVolume]:
        """The iSCSI volumes ``showvminfo`` lists on the VM's SATA controller."""
        info = self._existing(insid)
        if _state_of(info) is not VMState.RUNNING:
            return []
        attached = parse_attached_volumes(info, vbox.VOLUME_CONTROLLER)
        return [_attached(volume_id, attached[volume_id][0]) for volume_id in sorted(attached)]

    def _running_info(self, insid: str) -> dict[str, str]:
        info = self._existing(insid)
        if _state_of(info) is not VMState.RUNNING:
            raise VMNotRunning(f"{insid} is not running: a volume is attached to a running VM only")
        return info

    def clone_disk(self, base: Path, dest: Path) -> None:
        """Refuse a base that is not one self-contained file, judged first by its header (``virtualbox_disks``,
        before VirtualBox opens it) and then by ``showmediuminfo`` (Parent UUID must be ``base``). A VDI or VHD base
        gets a linked clone, ``createmedium --diffparent`` (a VDI differencing image); other formats (qcow2, VMDK,
        raw) a full VDI copy with ``clonemedium``, because VirtualBox opens a differencing parent read-write and
        tracks it by a UUID those files need not carry. ``dest`` needs a file name extension: createmedium adds
        ``.vdi`` to a name without one."""
        base_path = Path(vbox.safe_path(base, "base"))
        dest_path = Path(vbox.safe_path(dest, "clone"))
        if dest_path.exists() or dest_path.is_symlink():
            raise DriverError(f"{dest_path} already exists")
        if not dest_path.suffix:
            raise DriverError(f"{dest_path} needs a file name extension (VBoxManage would add .vdi)")
        if not base_path.is_file():
            raise DriverError(f"{base_path} is not a disk file")
        try:
            disk_format = inspect_disk_image(base_path)
        except OSError as exc:
            raise DriverError(f"cannot read {base_path}: {exc}") from None
        blocks = parse_blocks(self._run(vbox.showmediuminfo(base_path)))
        parent = blocks[0].get("Parent UUID") if blocks else None
        if parent != "base":
            raise DriverError(f"refusing {base_path} as a clone base: VirtualBox reports its parent as {parent!r}")
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        if disk_format in LINKED_FORMATS:
            self._run(vbox.createmedium_diff(base_path, dest_path), DISK_TIMEOUT)
        else:
            self._run(vbox.clonemedium(base_path, dest_path), DISK_TIMEOUT)
        if not dest_path.is_file():
            raise DriverError(f"VBoxManage reported success but made no {dest_path}")
