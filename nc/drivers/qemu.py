"""The QEMU driver: qemu-system-x86_64 (KVM or TCG), qcow2 linked clones, QMP for state and stop, VNC consoles.

Each VM's files live in ``<root>/<insid>/``: ``spec.json`` (its VMSpec, written by ``create``), ``disk-formats.json``
(each disk's format, found at its first start), ``qemu.pid``, ``qmp.sock`` and ``serial.log`` (while it runs or
since its last boot). QEMU runs daemonized with a pid file, so VMs outlive the node controller and a new driver
instance finds them again from those files.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from luhyaapi.vmspec import NicSpec, VMSpec
from luhyaapi.volumes import VolumeTarget
from nc.drivers.base import (
    AttachedVolume,
    Availability,
    ConsoleEndpoint,
    DriverError,
    GuestInfo,
    HypervisorDriver,
    InvalidVMName,
    VMExists,
    VMMetrics,
    VMNotFound,
    VMNotRunning,
    VMState,
    check_instance_id,
    check_volume_id,
)
from nc.drivers.qemu_accel import QEMU_SYSTEM, detect_accelerator
from nc.drivers.qemu_img import QEMU_IMG, clone_image, flatten_image, grow_image, image_format
from nc.drivers.qemu_qmp import QMPClient, QMPError

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
FORMATS_FILE = "disk-formats.json"
PID_FILE = "qemu.pid"
QMP_SOCKET = "qmp.sock"
SERIAL_LOG = "serial.log"
VNC_PASSWORD_FILE = "vnc-password"  # only while QEMU starts: it reads the secret once
VNC_SECRET_ID = "vncpassword"
VNC_BASE_PORT = 5900
# sun_path holds 108 bytes including the final NUL.
UNIX_PATH_MAX = 107
NIC_DEVICES = {"e1000": "e1000", "virtio": "virtio-net-pci", "rtl8139": "rtl8139"}
MAX_NICS = 4
GUEST_IP_MARK = "EDUCLOUD-GUEST-IP"
GUEST_READY_MARK = "EDUCLOUD-GUEST-READY"
START_TIMEOUT = 60.0
QUIT_WAIT = 5.0
KILL_WAIT = 5.0
IP_TIMEOUT = 15.0
SYS_NET = Path("/sys/class/net")
# Hot-plugged volumes: a CHAP secret object, an iSCSI block node and a virtio-blk device per volume, named after it.
VOLUME_SECRET_PREFIX = "chap-"
VOLUME_NODE_PREFIX = "iscsi-"
PERIPHERALS = "/machine/peripheral"
# Seconds libiscsi waits for the target (blockdev-add's ``timeout``): an unanswering portal fails the attach.
ISCSI_TIMEOUT = 20
VOLUME_QMP_TIMEOUT = ISCSI_TIMEOUT + 10.0
# Seconds a guest has to release an unplugged disk (ACPI hot-unplug; a TCG guest takes a few).
DETACH_TIMEOUT = 60.0

_locks: dict[tuple[Path, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _console_password_file(spec: VMSpec, vm_dir: Path) -> Iterator[None]:
    """The console's password in a file only the node's user reads, for as long as QEMU takes to start."""
    path = vm_dir / VNC_PASSWORD_FILE
    if not spec.console.password:
        yield
        return
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as secret:
            secret.write(spec.console.password)
        yield
    finally:
        path.unlink(missing_ok=True)


def qemu_opt(value: str) -> str:
    """``value`` made safe inside a QEMU ``key=value,...`` option: QEMU reads a doubled comma as a comma."""
    return value.replace(",", ",,")


def tap_name(insid: str, index: int) -> str:
    """The tap interface of NIC ``index`` of ``insid``: the same name every time, 14 characters (Linux allows 15)."""
    return f"ect-{check_instance_id(insid)[4:]}-{index}"


def qemu_argv(spec: VMSpec, vm_dir: Path, formats: list[str], accelerator: str) -> list[str]:
    """The qemu-system-x86_64 command line of ``spec``, its files in ``vm_dir``, its disks in ``formats``.

    Every value comes from the validated spec, the instance's directory or the driver's constants; paths inside
    option strings have their commas doubled."""
    pid_file, qmp_socket, serial_log = vm_dir / PID_FILE, vm_dir / QMP_SOCKET, vm_dir / SERIAL_LOG
    argv = [
        QEMU_SYSTEM, "-name", spec.insid,
        "-nodefaults", "-no-user-config",
        "-machine", "pc", "-accel", accelerator,
        "-m", str(spec.memory_mb), "-smp", str(spec.cpus),
        "-vga", "std", "-usb", "-device", "usb-tablet",
        "-display", "none",
        "-vnc", _vnc_option(spec),
        "-chardev", f"socket,id=qmp,path={qemu_opt(str(qmp_socket))},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"file,id=serial0,path={qemu_opt(str(serial_log))}",
        "-serial", "chardev:serial0",
        # No obsolete system calls, no changing of scheduling or CPU affinity by a compromised QEMU. (Denying
        # "spawn" or "elevateprivileges" would stop -daemonize from forking and calling setsid.)
        "-sandbox", "on,obsolete=deny,resourcecontrol=deny",
        # A guest whose kernel panics says so through the pvpanic device and QEMU ends as at a power-off: the node
        # sees the run end on its own (the guest watchdog's evidence), not a hung guest that reads alive.
        "-device", "pvpanic", "-action", "panic=shutdown",
        "-pidfile", str(pid_file), "-daemonize",
    ]  # fmt: skip
    if spec.console.password:
        # From a file in the VM's own directory: a password on the command line would show in every ps listing.
        argv += ["-object", f"secret,id={VNC_SECRET_ID},format=raw,file={qemu_opt(str(vm_dir / VNC_PASSWORD_FILE))}"]
    if accelerator == "kvm":
        argv += ["-cpu", "host"]
    if spec.os_type == "windows":
        argv += ["-rtc", "base=localtime"]
    if spec.run_with_snapshot:
        argv.append("-snapshot")
    argv += _drive_args(spec, formats)
    for index, nic in enumerate(spec.nics):
        argv += _nic_args(spec.insid, index, nic)
    return argv


def _vnc_option(spec: VMSpec) -> str:
    display = f"{spec.console.listen}:{spec.console.port - VNC_BASE_PORT}"
    return f"{display},password-secret={VNC_SECRET_ID}" if spec.console.password else display


def _drive_args(spec: VMSpec, formats: list[str]) -> list[str]:
    args: list[str] = []
    if spec.disk_type == "sata":
        args += ["-device", "ahci,id=ahci"]
    for index, (disk, fmt) in enumerate(zip(spec.disks, formats, strict=True)):
        drive = f"file={qemu_opt(disk.path)},format={fmt},media=disk"
        if disk.readonly:
            # IDE disks cannot be read-only: the guest writes to a throw-away overlay and the file stays untouched.
            drive += ",readonly=on" if spec.disk_type == "virtio" else ",snapshot=on"
        if spec.disk_type == "sata":
            args += [
                "-drive",
                f"{drive},if=none,id=disk{index}",
                "-device",
                f"ide-hd,drive=disk{index},bus=ahci.{index}",
            ]
        else:
            args += ["-drive", f"{drive},if={spec.disk_type},index={index}"]
    return args


def _nic_args(insid: str, index: int, nic: NicSpec) -> list[str]:
    netdev_id = f"net{index}"
    if nic.mode == "bridged":
        netdev = f"tap,id={netdev_id},ifname={tap_name(insid, index)},script=no,downscript=no"
    else:
        netdev = f"user,id={netdev_id}" + "".join(
            f",hostfwd={fwd.protocol}:{fwd.host_ip}:{fwd.host_port}-:{fwd.guest_port}" for fwd in nic.forwards
        )
    return ["-netdev", netdev, "-device", f"{NIC_DEVICES[nic.model]},netdev={netdev_id},mac={nic.mac}"]


def _run(argv: list[str], what: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never through a shell); DriverError naming ``what`` with the program's message if it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DriverError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from None
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise DriverError(f"{what}: {message}")
    return result


class QemuDriver(HypervisorDriver):
    """VMs as daemonized qemu-system-x86_64 processes (see the module docstring for the files of a VM)."""

    name: ClassVar[str] = "qemu"
    disk_suffix: ClassVar[str] = ".qcow2"
    capabilities: ClassVar[dict[str, bool]] = {
        "linked_clone": True,
        "console_vnc": True,
        "console_rdp": False,
        "nat_forwards": True,
        "bridged": True,
        "guest_ip": True,
        "guest_ready": True,
        "snapshot_run": True,
        "adopt": True,
        "grow_disk": True,
        "disk_ops": True,
        "guest_panic": True,
        "volumes": True,
    }

    def __init__(self, root: Path) -> None:
        # Absolute and canonical: the paths end up on QEMU's command line, where a later driver instance
        # recognises its VMs by them.
        super().__init__(Path(root).resolve())

    @classmethod
    def probe(cls) -> Availability:
        """Available when qemu-system-x86_64 and qemu-img run; ``details`` names the accelerator and why."""
        versions = {}
        for program in (QEMU_SYSTEM, QEMU_IMG):
            if shutil.which(program) is None:
                return Availability(False, f"{program} not found")
            try:
                result = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=15, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return Availability(False, f"{program} --version failed: {exc}")
            if result.returncode != 0:
                return Availability(False, f"{program} --version failed: {result.stderr.strip()}")
            versions[program] = (result.stdout.splitlines() or [""])[0].strip()
        accelerator = detect_accelerator()
        details = {"accelerator": accelerator.name, "accelerator_reason": accelerator.reason, **versions}
        return Availability(
            True, f"{versions[QEMU_SYSTEM]}, accelerator {accelerator.name} ({accelerator.reason})", details
        )

    def create(self, spec: VMSpec) -> None:
        """Write ``<root>/<insid>/spec.json``; nothing is started. The directory may already hold disks (a clone
        made there first); VMExists if it holds a spec. DriverError for a console QEMU cannot serve: RDP, or a
        VNC port below 5900 (QEMU takes VNC display numbers, port - 5900)."""
        insid = check_instance_id(spec.insid)
        if spec.console.protocol != "vnc":
            raise DriverError(f"{insid}: QEMU serves VNC consoles only, not {spec.console.protocol}")
        if spec.console.port < VNC_BASE_PORT:
            raise DriverError(
                f"{insid}: VNC console port {spec.console.port} is below {VNC_BASE_PORT}; QEMU cannot "
                f"listen there (it takes display numbers, port - {VNC_BASE_PORT})"
            )
        vm_dir = self.vm_dir(insid)
        if len(str(vm_dir / QMP_SOCKET).encode()) > UNIX_PATH_MAX:
            raise DriverError(f"{insid}: {vm_dir / QMP_SOCKET} is too long for a unix socket; use a shorter root")
        with self._lock(insid):
            self.root.mkdir(parents=True, exist_ok=True)
            made_dir = not vm_dir.exists()
            vm_dir.mkdir(mode=0o700, exist_ok=True)
            # The QMP socket in here controls the VM completely: nobody else may reach it.
            vm_dir.chmod(0o700)
            try:
                with (vm_dir / SPEC_FILE).open("x") as spec_file:
                    spec_file.write(spec.model_dump_json(indent=2))
            except FileExistsError:
                raise VMExists(f"{insid} is already defined") from None
            except BaseException:
                (vm_dir / SPEC_FILE).unlink(missing_ok=True)
                if made_dir:
                    shutil.rmtree(vm_dir, ignore_errors=True)
                raise
        logger.info("defined %s", insid)

    def list_vms(self) -> list[str]:
        """The instance ids with a ``spec.json`` under root."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            try:
                insid = check_instance_id(entry.name)
            except InvalidVMName:
                continue
            if (entry / SPEC_FILE).is_file():
                found.append(insid)
        return sorted(found)

    def start(self, insid: str) -> None:
        """Run qemu-system-x86_64 daemonized. A running VM is left alone; a paused one is resumed.

        Each disk's format comes from ``qemu-img info`` at its first start and is kept in ``disk-formats.json``,
        so a guest that writes an image header onto a raw disk cannot change how QEMU opens it later. Bridged NICs
        get a tap on their bridge first. On failure (QEMU's message is in the DriverError) the taps, the pid file
        and any process are gone again and the VM is STOPPED."""
        with self._lock(insid):
            spec = self._spec(insid)
            vm_dir = self.vm_dir(insid)
            if self._pid(insid) is not None:
                self._resume_if_paused(insid)
                return
            self._clear_remnants(insid)
            formats = self._disk_formats(spec)
            taps: list[str] = []
            try:
                for index, nic in enumerate(spec.nics):
                    if nic.mode == "bridged":
                        taps.append(self._add_tap(tap_name(insid, index), nic.bridge or ""))
                accelerator = detect_accelerator().name
                with _console_password_file(spec, vm_dir):
                    _run(qemu_argv(spec, vm_dir, formats, accelerator), f"starting {insid} with {QEMU_SYSTEM}")
                if self._pid(insid) is None:
                    raise DriverError(f"starting {insid}: {QEMU_SYSTEM} exited at once (see {vm_dir / SERIAL_LOG})")
            except BaseException:
                # A QEMU still starting up when we gave up on it is ended, so nothing of this start is left.
                pid = self._pid(insid)
                if pid is not None:
                    self._force_off(insid, pid)
                self._clear_remnants(insid)
                raise
        logger.info("started %s (%s)", insid, accelerator)

    def stop(self, insid: str, timeout: float = 60.0) -> bool:
        """Press the ACPI power button (QMP ``system_powerdown``) and wait up to ``timeout`` seconds for QEMU to
        exit; then QMP ``quit``, then SIGKILL. Taps, pid file and socket are removed afterwards."""
        with self._lock(insid):
            pid = self._pid(insid)
            if pid is None:
                if not (self.vm_dir(insid) / SPEC_FILE).is_file():
                    raise VMNotFound(f"{insid} is not defined")
                self._clear_remnants(insid)
                return True
            graceful = False
            try:
                with QMPClient(self._qmp_path(insid)) as qmp:
                    qmp.execute("system_powerdown")
                graceful = self._wait_gone(insid, pid, timeout)
            except QMPError as exc:
                logger.warning("%s: cannot press the power button: %s", insid, exc)
            if not graceful:
                self._force_off(insid, pid)
            self._clear_remnants(insid)
        logger.info("stopped %s (%s)", insid, "guest shut down" if graceful else "powered off")
        return graceful

    def destroy(self, insid: str) -> None:
        """Power off at once (QMP ``quit``, then SIGKILL), remove the taps, then remove ``<root>/<insid>/`` and
        everything in it; nothing outside root is touched (a symlink there is removed, not followed)."""
        with self._lock(insid):
            pid = self._pid(insid)
            if pid is not None:
                self._force_off(insid, pid)
            self._clear_remnants(insid)
            vm_dir = self.vm_dir(insid)
            if vm_dir.is_symlink():
                vm_dir.unlink()
            elif vm_dir.exists():
                if vm_dir.resolve().parent != self.root.resolve():
                    raise DriverError(f"refusing to remove {vm_dir}: it is not inside {self.root}")
                shutil.rmtree(vm_dir)
        logger.info("destroyed %s", insid)

    def adopt(self) -> list[str]:
        """The VMs whose QEMU kept running (pid file, process and QMP answer agree), running or paused. A VM whose
        QEMU died meanwhile has its leftover pid file, socket and taps removed; one whose QEMU runs but does not
        answer QMP is logged and left alone (``stop`` or ``destroy`` still end it)."""
        adopted = []
        for insid in self.list_vms():
            with self._lock(insid):
                if self._pid(insid) is None:
                    self._clear_remnants(insid)
                    continue
                try:
                    with QMPClient(self._qmp_path(insid)) as qmp:
                        status = qmp.execute("query-status")
                except QMPError as exc:
                    logger.warning("%s: QEMU runs but does not answer QMP: %s", insid, exc)
                    continue
                logger.info("adopted %s (%s)", insid, status.get("status"))
                adopted.append(insid)
        return adopted

    def state(self, insid: str) -> VMState:
        """RUNNING or PAUSED (QMP ``query-status``) while this VM's QEMU runs, RUNNING if it runs and QMP is busy;
        STOPPED when only its spec exists; ABSENT otherwise."""
        if self._pid(insid) is not None:
            try:
                with QMPClient(self._qmp_path(insid)) as qmp:
                    status = qmp.execute("query-status")
            except QMPError as exc:
                logger.warning("%s: QEMU runs but QMP gave no status: %s", insid, exc)
                return VMState.RUNNING
            return VMState.RUNNING if status.get("status") == "running" else VMState.PAUSED
        if (self.vm_dir(insid) / SPEC_FILE).is_file():
            return VMState.STOPPED
        return VMState.ABSENT

    def console(self, insid: str) -> ConsoleEndpoint:
        """The spec's VNC listen address and port."""
        spec = self._spec(insid)
        return ConsoleEndpoint("vnc", spec.console.listen, spec.console.port)

    def metrics(self, insid: str) -> VMMetrics:
        """CPU seconds and resident memory of the QEMU process (``/proc/<pid>/stat`` and ``status``), disk bytes
        and operations from QMP ``query-blockstats`` (None when QMP does not answer), network bytes of bridged NICs
        from their taps' kernel counters, counted as the guest sees them (received = sent by the tap). NAT NICs
        (QEMU's user networking) have no kernel interface and so no counters: they count 0."""
        spec = self._spec(insid)
        pid = self._pid(insid)
        if pid is None:
            return VMMetrics(alive=False)
        cpu_seconds, memory_bytes = _process_usage(pid)
        disk_read = disk_write = read_ops = write_ops = 0
        try:
            with QMPClient(self._qmp_path(insid)) as qmp:
                for device in qmp.execute("query-blockstats"):
                    stats = device.get("stats", {})
                    disk_read += int(stats.get("rd_bytes", 0))
                    disk_write += int(stats.get("wr_bytes", 0))
                    read_ops += int(stats.get("rd_operations", 0))
                    write_ops += int(stats.get("wr_operations", 0))
        except QMPError as exc:
            # Not zeros: the sampler would take the next reading's whole counters for one period's amount.
            logger.warning("%s: no disk counters from QMP: %s", insid, exc)
            disk_read = disk_write = read_ops = write_ops = None
        net_rx = net_tx = 0
        for index, nic in enumerate(spec.nics):
            if nic.mode == "bridged":
                statistics = SYS_NET / tap_name(insid, index) / "statistics"
                net_rx += _read_counter(statistics / "tx_bytes")
                net_tx += _read_counter(statistics / "rx_bytes")
        return VMMetrics(
            alive=True,
            cpu_seconds=cpu_seconds,
            memory_bytes=memory_bytes,
            disk_read_bytes=disk_read,
            disk_write_bytes=disk_write,
            net_rx_bytes=net_rx,
            net_tx_bytes=net_tx,
            disk_read_ops=read_ops,
            disk_write_ops=write_ops,
        )

    def guest_info(self, insid: str) -> GuestInfo:
        """The address from the last ``EDUCLOUD-GUEST-IP <ip>`` line the guest printed on its serial console since
        its last boot (the project's test image prints one when DHCP gives it an address; other images need a guest
        agent for this), and ``ready`` once it printed ``EDUCLOUD-GUEST-READY`` alone on a line (its services
        listen). Lines that do not carry an IPv4 address are ignored: the guest writes this file."""
        self._spec(insid)
        ip = None
        ready = False
        try:
            with (self.vm_dir(insid) / SERIAL_LOG).open("rb") as serial:
                for raw_line in serial:
                    words = raw_line.decode("ascii", "replace").split()
                    ready = ready or words == [GUEST_READY_MARK]
                    if len(words) == 2 and words[0] == GUEST_IP_MARK:
                        try:
                            ip = str(ipaddress.IPv4Address(words[1]))
                        except ValueError:
                            continue
        except FileNotFoundError:
            pass
        return GuestInfo(ip=ip, ready=ready)

    def flatten_disk(self, source: Path, dest: Path) -> None:
        """``qemu-img convert -f <format> -O qcow2 <source> <dest>``: the clone's chain merged into one qcow2."""
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        flatten_image(Path(source), Path(dest))

    def grow_disk(self, disk: Path, size_bytes: int) -> int:
        """``qemu-img resize -f <format> <disk> <size>`` when the disk is smaller (``qemu-img info`` says)."""
        return grow_image(Path(disk), size_bytes)

    def clone_disk(self, base: Path, dest: Path) -> None:
        """``qemu-img create -f qcow2 -b <base> -F <format> <dest>`` after ``qemu-img info`` shows ``base`` is one
        file (no backing file, no external data file, no VMDK extent but itself) in an allowed format. Makes
        ``dest``'s directory if needed; DriverError if ``dest`` exists."""
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        clone_image(Path(base), Path(dest))

    def attach_volume(self, insid: str, target: VolumeTarget) -> AttachedVolume:
        """QMP ``object-add`` (a ``secret`` holding the CHAP secret, id ``chap-<volume>``), ``blockdev-add``
        (driver ``iscsi``, node ``iscsi-<volume>``: portal, target, LUN, user, the secret's id, the node's initiator
        name, libiscsi's ``timeout``), then ``device_add`` (``virtio-blk-pci``, id and serial the volume id, so the
        guest finds it as ``/sys/block/vdX/serial``). The secret travels on the VM's private QMP socket only. A
        volume whose device is plugged in already is returned as it is; pieces of an attach that never finished
        (a secret or node without its device) are removed and made again."""
        volume_id = check_volume_id(target.volume_id)
        with self._lock(insid):
            self._running(insid)
            try:
                with QMPClient(self._qmp_path(insid), timeout=VOLUME_QMP_TIMEOUT) as qmp:
                    if volume_id in _volume_devices(qmp):
                        return _attached(volume_id)
                    _remove_volume_backend(qmp, volume_id)
                    try:
                        qmp.execute("object-add", {"qom-type": "secret", "id": VOLUME_SECRET_PREFIX + volume_id,
                                                   "format": "raw", "data": target.chap_secret})
                        qmp.execute("blockdev-add", {
                            "driver": "iscsi", "node-name": VOLUME_NODE_PREFIX + volume_id, "transport": "tcp",
                            "portal": target.portal, "target": target.iqn, "lun": target.lun,
                            "user": target.chap_user, "password-secret": VOLUME_SECRET_PREFIX + volume_id,
                            "initiator-name": target.initiator, "timeout": ISCSI_TIMEOUT})
                        qmp.execute("device_add", {"driver": "virtio-blk-pci", "id": volume_id,
                                                   "drive": VOLUME_NODE_PREFIX + volume_id, "serial": volume_id})
                    except QMPError:
                        try:
                            _remove_volume_backend(qmp, volume_id)
                        except QMPError as cleanup:
                            logger.warning("%s: what the failed attach of %s made is left: %s", insid, volume_id,
                                           cleanup)
                        raise
            except QMPError as exc:
                where = f"{target.iqn} at {target.portal}"
                raise DriverError(f"attaching {volume_id} ({where}) to {insid}: {exc}") from None
        logger.info("%s: attached %s (%s at %s)", insid, volume_id, target.iqn, target.portal)
        return _attached(volume_id)

    def detach_volume(self, insid: str, volume_id: str) -> None:
        """QMP ``device_del``, then wait up to ``DETACH_TIMEOUT`` seconds for the guest to let go (the
        ``DEVICE_DELETED`` event of the device), then ``blockdev-del`` (QEMU logs out of the target) and
        ``object-del`` of the secret. A device already gone has only its node and secret removed."""
        volume_id = check_volume_id(volume_id)
        with self._lock(insid):
            self._running(insid)
            try:
                with QMPClient(self._qmp_path(insid), timeout=VOLUME_QMP_TIMEOUT) as qmp:
                    if volume_id in _volume_devices(qmp):
                        self._unplug(qmp, insid, volume_id)
                with QMPClient(self._qmp_path(insid), timeout=VOLUME_QMP_TIMEOUT) as qmp:
                    if volume_id in _volume_devices(qmp):
                        raise DriverError(f"detaching {volume_id} from {insid}: the guest did not release the disk "
                                          f"within {DETACH_TIMEOUT:.0f} s; it is still attached")
                    _remove_volume_backend(qmp, volume_id)
            except QMPError as exc:
                raise DriverError(f"detaching {volume_id} from {insid}: {exc}") from None
        logger.info("%s: detached %s", insid, volume_id)

    def _unplug(self, qmp: QMPClient, insid: str, volume_id: str) -> None:
        try:
            qmp.execute("device_del", {"id": volume_id})
        except QMPError as exc:
            # Asked before (a detach cut short): the guest is at it already, so wait for it all the same.
            if "in the process of unplug" not in str(exc):
                raise
        if qmp.wait_event("DEVICE_DELETED", lambda data: data.get("device") == volume_id, DETACH_TIMEOUT) is None:
            logger.warning("%s: no DEVICE_DELETED for %s within %.0f s", insid, volume_id, DETACH_TIMEOUT)

    def attached_volumes(self, insid: str) -> list[AttachedVolume]:
        """The volume devices among QEMU's user-created devices (QOM ``/machine/peripheral``)."""
        self._spec(insid)
        if self._pid(insid) is None:
            return []
        try:
            with QMPClient(self._qmp_path(insid), timeout=VOLUME_QMP_TIMEOUT) as qmp:
                return [_attached(volume_id) for volume_id in sorted(_volume_devices(qmp))]
        except QMPError as exc:
            raise DriverError(f"{insid}: QEMU did not say which volumes are attached: {exc}") from None

    def _running(self, insid: str) -> None:
        """VMNotFound if ``insid`` is not defined, VMNotRunning if its QEMU does not run."""
        self._spec(insid)
        if self._pid(insid) is None:
            raise VMNotRunning(f"{insid} is not running: a volume is attached to a running VM only")

    @contextmanager
    def _lock(self, insid: str) -> Iterator[None]:
        """One life-cycle operation at a time per VM within this process."""
        key = (self.root, check_instance_id(insid))
        with _locks_guard:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def _qmp_path(self, insid: str) -> Path:
        return self.vm_dir(insid) / QMP_SOCKET

    def _spec(self, insid: str) -> VMSpec:
        """The VM's spec as ``create`` wrote it, validated again; VMNotFound if there is none."""
        path = self.vm_dir(insid) / SPEC_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise VMNotFound(f"{insid} is not defined") from None
        try:
            spec = VMSpec.model_validate_json(text)
        except ValidationError as exc:
            raise DriverError(f"{path} is not a valid VM spec: {exc}") from None
        if spec.insid != insid:
            raise DriverError(f"{path} describes {spec.insid}, not {insid}")
        return spec

    def _disk_formats(self, spec: VMSpec) -> list[str]:
        """Each disk's format: as recorded at an earlier start, else from ``qemu-img info`` (then recorded)."""
        path = self.vm_dir(spec.insid) / FORMATS_FILE
        try:
            known: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            known = {}
        except ValueError:
            raise DriverError(f"{path} is not valid JSON") from None
        formats = []
        for disk in spec.disks:
            fmt = known.get(disk.path)
            if fmt is None:
                fmt = image_format(Path(disk.path))
            formats.append(fmt)
        recorded = {disk.path: fmt for disk, fmt in zip(spec.disks, formats, strict=True)}
        if recorded != known:
            path.write_text(json.dumps(recorded, indent=2))
        return formats

    def _pid(self, insid: str) -> int | None:
        """The pid of this VM's QEMU if it runs: read from the pid file and confirmed by the process's command
        line (a pid the kernel has given to another process since is not ours)."""
        try:
            pid = int((self.vm_dir(insid) / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 1 and self._is_our_qemu(insid, pid) else None

    def _is_our_qemu(self, insid: str, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # A zombie's command line is empty, so an exited QEMU nobody has reaped yet does not count as running.
        return _has_pair(argv, b"-name", insid.encode()) and _has_pair(
            argv, b"-pidfile", str(self.vm_dir(insid) / PID_FILE).encode()
        )

    def _wait_gone(self, insid: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._is_our_qemu(insid, pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _force_off(self, insid: str, pid: int) -> None:
        """End QEMU: QMP ``quit`` (QEMU closes its files), then SIGKILL; DriverError if it still runs."""
        try:
            with QMPClient(self._qmp_path(insid)) as qmp:
                qmp.execute("quit")
        except QMPError as exc:
            logger.info("%s: QMP quit: %s", insid, exc)
        if self._wait_gone(insid, pid, QUIT_WAIT):
            return
        self._kill(insid, pid)
        if not self._wait_gone(insid, pid, KILL_WAIT):
            raise DriverError(f"{insid}: QEMU (pid {pid}) is still there after SIGKILL")

    def _kill(self, insid: str, pid: int) -> None:
        """SIGKILL ``pid`` through a pidfd, after checking the pidfd's process is this VM's QEMU, so a pid reused
        in between is never signalled."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            if self._is_our_qemu(insid, pid):
                logger.warning("%s: killing QEMU (pid %d)", insid, pid)
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)

    def _resume_if_paused(self, insid: str) -> None:
        try:
            with QMPClient(self._qmp_path(insid)) as qmp:
                if qmp.execute("query-status").get("status") != "running":
                    qmp.execute("cont")
        except QMPError as exc:
            raise DriverError(f"{insid} runs but cannot be resumed: {exc}") from None

    def _clear_remnants(self, insid: str) -> None:
        """Remove what a QEMU of ``insid`` that no longer runs may have left: its taps, pid file and socket."""
        if self._pid(insid) is not None:
            raise DriverError(f"{insid}: QEMU still runs")
        for index in range(MAX_NICS):
            self._delete_tap(tap_name(insid, index))
        vm_dir = self.vm_dir(insid)
        for name in (PID_FILE, QMP_SOCKET):
            (vm_dir / name).unlink(missing_ok=True)

    def _add_tap(self, tap: str, bridge: str) -> str:
        """Create tap ``tap`` and enslave it to ``bridge`` (up); a half-made tap is removed again."""
        self._delete_tap(tap)
        _run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], f"creating tap {tap}", IP_TIMEOUT)
        try:
            _run(
                ["ip", "link", "set", "dev", tap, "master", bridge, "up"],
                f"adding tap {tap} to bridge {bridge}",
                IP_TIMEOUT,
            )
        except BaseException:
            self._delete_tap(tap)
            raise
        return tap

    def _delete_tap(self, tap: str) -> None:
        if (SYS_NET / tap).exists():
            _run(["ip", "link", "delete", "dev", tap], f"removing tap {tap}", IP_TIMEOUT)


def _attached(volume_id: str) -> AttachedVolume:
    return AttachedVolume(volume_id=volume_id, device=volume_id, serial=volume_id)


def _volume_devices(qmp: QMPClient) -> set[str]:
    """The ids of the volume devices plugged into the VM (QMP ``qom-list`` of ``/machine/peripheral``)."""
    found = set()
    for child in qmp.execute("qom-list", {"path": PERIPHERALS}):
        try:
            found.add(check_volume_id(child.get("name", "")))
        except InvalidVMName:
            continue
    return found


def _remove_volume_backend(qmp: QMPClient, volume_id: str) -> None:
    """Remove the iSCSI node (QEMU logs out) and the secret of ``volume_id`` where they exist, its device gone."""
    node = VOLUME_NODE_PREFIX + volume_id
    if any(found.get("node-name") == node for found in qmp.execute("query-named-block-nodes", {"flat": True})):
        qmp.execute("blockdev-del", {"node-name": node})
    secret = VOLUME_SECRET_PREFIX + volume_id
    if any(child.get("name") == secret for child in qmp.execute("qom-list", {"path": "/objects"})):
        qmp.execute("object-del", {"id": secret})


def _has_pair(argv: list[bytes], option: bytes, value: bytes) -> bool:
    return any(argv[i] == option and argv[i + 1] == value for i in range(len(argv) - 1))


def _process_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of ``pid``; zeros if it has just gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0
    # Fields after the command name, which is in parentheses and may itself hold spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    memory_bytes = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            memory_bytes = int(line.split()[1]) * 1024
    return cpu_seconds, memory_bytes


def _read_counter(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0
