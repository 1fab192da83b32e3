"""The hypervisor driver interface of a node controller. The docstrings are the contract every driver keeps; one
contract test suite (``nc/tests/test_driver_contract.py``) runs it against every driver the machine can run.

A driver keeps each VM's files under ``<root>/<insid>/`` and nowhere else (disks it is given may live elsewhere, in
the node's image cache for instance, and are never modified or removed by the driver). Instance ids are checked
(``ins-`` + 8 hex digits) before they reach a command line or a path.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from luhyaapi.ids import InvalidId, validate_id
from luhyaapi.vmspec import VMSpec
from luhyaapi.volumes import VolumeTarget


class DriverError(RuntimeError):
    """A hypervisor operation failed; the text says what was run and what the hypervisor answered."""


class DiskTooSmall(DriverError):
    """The size asked for a VM's disk is smaller than its image's disk: shrinking would cut off the guest's file
    system, so the disk is refused, not shrunk."""


class VMNotFound(DriverError):
    """No VM of that instance id is defined on this node."""


class VMExists(DriverError):
    """``create`` was asked for an instance id that is already defined."""


class InvalidVMName(DriverError, ValueError):
    """An instance id or a name that is not safe to hand to the hypervisor; refused before anything runs."""


class VMNotRunning(DriverError):
    """The operation needs the VM running (a volume is hot-plugged into a running VM only), and it is not."""


class VMState(StrEnum):
    """What a driver can say of a VM."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ABSENT = "absent"


@dataclass(frozen=True)
class Availability:
    """Whether a driver can run VMs on this machine, and why not (printed when its contract tests skip)."""

    available: bool
    reason: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where a client reaches the VM's screen on this node."""

    protocol: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


@dataclass(frozen=True)
class VMMetrics:
    """A sample of a VM's use: counters since it started (bytes, operations, CPU seconds) and whether it is alive.
    A disk counter is None when it could not be read this time, and the operation counters always where the driver
    does not count operations (capability ``disk_ops``)."""

    alive: bool
    cpu_seconds: float = 0.0
    memory_bytes: int = 0
    disk_read_bytes: int | None = 0
    disk_write_bytes: int | None = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    disk_read_ops: int | None = None
    disk_write_ops: int | None = None


@dataclass(frozen=True)
class GuestInfo:
    """What the driver learnt of the guest from inside: its address once it has one, and ``ready`` once the guest
    said it is up (a marker or an agent; see "Readiness" in ``HypervisorDriver``)."""

    ip: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    ready: bool = False


@dataclass(frozen=True)
class AttachedVolume:
    """A volume attached to a running VM: ``device`` is the hypervisor's name of the attachment (QEMU's device id,
    VirtualBox's controller port), ``serial`` what the guest reads as the disk's serial number (empty where the
    hypervisor sets none)."""

    volume_id: str
    device: str
    serial: str = ""


def check_volume_id(volume_id: str) -> str:
    """``volume_id`` if it is a volume id; InvalidVMName otherwise (so no other text reaches the hypervisor)."""
    try:
        return validate_id(volume_id, "volume")
    except InvalidId as exc:
        raise InvalidVMName(str(exc)) from None


def check_instance_id(insid: str) -> str:
    """``insid`` if it is an instance id; InvalidVMName otherwise (so no other text reaches the hypervisor)."""
    try:
        return validate_id(insid, "instance")
    except InvalidId as exc:
        raise InvalidVMName(str(exc)) from None


class HypervisorDriver(abc.ABC):
    """Runs VMs of one hypervisor on this node.

    ``capabilities`` declares optional features (clients check it rather than ``hasattr``):
    ``linked_clone`` (``clone_disk`` makes a copy-on-write child), ``console_vnc`` / ``console_rdp``,
    ``nat_forwards`` (NAT NICs with host port forwards), ``bridged``, ``guest_ip`` (``guest_info`` can learn the
    guest's address), ``guest_ready`` (``guest_info`` can say the guest is up), ``snapshot_run``
    (``run_with_snapshot``), ``adopt`` (running VMs survive a node restart), ``grow_disk`` (``grow_disk`` gives a
    clone the VM type's disk size), ``volumes`` (``attach_volume``: an SC's iSCSI volume hot-plugged into a running
    VM), ``disk_ops`` (``metrics`` counts disk read and write operations), ``guest_panic`` (a guest whose kernel
    panics, with a pvpanic driver, ends its VM as a power-off would).

    Readiness. ``start`` returns once the hypervisor runs the VM, which may still be in its BIOS: the node reports
    it ``booting`` and ``nc.services.readiness`` decides when the guest is up from evidence. What a driver gives for
    that: ``guest_info`` must only ever report what came from the booted guest itself, never a guess: an ``ip``
    the guest's own system reported (QEMU: the ``EDUCLOUD-GUEST-IP`` line on the serial console; VirtualBox: the
    Guest Additions' ``/VirtualBox/GuestInfo/Net/0/V4/IP``), and ``ready`` True once the guest said it is up
    (QEMU: ``EDUCLOUD-GUEST-READY``); both empty before, and for guests without a marker or an agent (then the
    node's DHCP lease for the NIC's MAC or the first forwarded service answering decide). It must be cheap (the
    node asks every few seconds while the VM boots) and never block on the guest. The NAT port forwards of the
    spec must be served on the host while the VM runs, so that a probe of them reaches the guest.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Mapping[str, bool]]
    # The file name suffix of the disks this driver makes (clones, flattened copies), e.g. ".qcow2" or ".vdi".
    disk_suffix: ClassVar[str]

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def vm_dir(self, insid: str) -> Path:
        """The directory that holds every file this driver makes for ``insid``."""
        return self.root / check_instance_id(insid)

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> Availability:
        """Whether this machine can run VMs with this driver, found by trying (not by looking for a device file)."""

    @abc.abstractmethod
    def create(self, spec: VMSpec) -> None:
        """Define the VM of ``spec`` (not started). Afterwards ``state`` is STOPPED.

        Raises VMExists if the instance is already defined, DriverError if the hypervisor refuses; a failed create
        removes whatever it made, so the instance is ABSENT again."""

    @abc.abstractmethod
    def start(self, insid: str) -> None:
        """Boot the VM. Afterwards ``state`` is RUNNING and its console answers at ``console(insid)``.

        Starting a running VM does nothing. Raises VMNotFound, or DriverError if it does not start (with the
        hypervisor's own message)."""

    @abc.abstractmethod
    def stop(self, insid: str, timeout: float = 60.0) -> bool:
        """Shut the VM down: ask the guest (ACPI power button) and power it off if it has not stopped after
        ``timeout`` seconds. Afterwards ``state`` is STOPPED. Returns True if the guest shut down by itself.

        Stopping a stopped VM does nothing (returns True). Raises VMNotFound."""

    @abc.abstractmethod
    def destroy(self, insid: str) -> None:
        """Power the VM off if it runs and remove its definition and every file the driver made for it (linked
        clones made by ``clone_disk`` inside ``vm_dir`` included). Afterwards ``state`` is ABSENT.

        Succeeds if the VM is already gone."""

    @abc.abstractmethod
    def state(self, insid: str) -> VMState:
        """The VM's state now; ABSENT if it is not defined."""

    @abc.abstractmethod
    def list_vms(self) -> list[str]:
        """The instance ids of every VM this driver has defined on this node."""

    @abc.abstractmethod
    def console(self, insid: str) -> ConsoleEndpoint:
        """Where the VM's screen is served (protocol, host, port) as its spec asked. Raises VMNotFound."""

    @abc.abstractmethod
    def metrics(self, insid: str) -> VMMetrics:
        """A sample of the VM's CPU, memory, disk and network counters; ``alive`` False if it does not run.

        Raises VMNotFound."""

    @abc.abstractmethod
    def guest_info(self, insid: str) -> GuestInfo:
        """What is known of the guest from inside: at least its IPv4 address once it has one (None before).

        Raises VMNotFound."""

    @abc.abstractmethod
    def clone_disk(self, base: Path, dest: Path) -> None:
        """Make ``dest`` a linked (copy-on-write) clone of ``base``: ``base`` is never written; writes go to
        ``dest``. Refuses a ``base`` that itself refers to other files (a backing file, an extent) with
        DriverError, so an uploaded image cannot make the hypervisor open a host file. ``dest`` must not exist."""

    def grow_disk(self, disk: Path, size_bytes: int) -> int:
        """Make the virtual disk ``disk`` (a clone this driver made, not in use by a running VM) ``size_bytes`` big
        when it is smaller; the guest sees the new space after its end (its partitions are not touched). Returns
        the disk's virtual size afterwards. Raises DiskTooSmall when the disk is already bigger than ``size_bytes``
        (never shrunk), DriverError when it cannot be read or resized. Only with the ``grow_disk`` capability."""
        raise DriverError(f"the {self.name} driver cannot resize disks")

    @abc.abstractmethod
    def flatten_disk(self, source: Path, dest: Path) -> None:
        """Write ``dest`` as one self-contained disk image holding what a VM sees on ``source`` (a linked clone's
        base merged in), to upload an edited disk as a new image version. ``source`` is not changed and must not be
        in use by a running VM; ``dest`` must not exist; a failed flatten leaves no ``dest``. Raises DriverError."""

    def adopt(self) -> list[str]:
        """Called when the node controller starts: find the VMs that kept running while it was down and take them
        back under control. Returns the instance ids found running."""
        return [insid for insid in self.list_vms() if self.state(insid) is VMState.RUNNING]

    def attach_volume(self, insid: str, target: VolumeTarget) -> AttachedVolume:
        """Hot-plug the iSCSI volume ``target`` into the running VM ``insid`` as one more disk: the hypervisor logs
        in to ``target.portal`` as ``target.initiator`` with the target's CHAP user and secret. The secret never
        reaches a command line, a log line or an error text. Afterwards ``attached_volumes`` lists the volume.

        Attaching an attached volume does nothing and returns it as it is (never a second disk), so a VM whose
        node restarted gets only what it lacks. A failed attach leaves nothing of the attempt behind. Raises
        VMNotFound, VMNotRunning, or DriverError with the hypervisor's message (a refused login, an unreachable
        portal: within a bounded time, never a hang). Only with the ``volumes`` capability."""
        raise DriverError(f"the {self.name} driver cannot attach volumes")

    def detach_volume(self, insid: str, volume_id: str) -> None:
        """Unplug ``volume_id`` from the running VM ``insid`` and log out of its target: the guest is asked to
        release the disk and given a bounded time for it. Afterwards ``attached_volumes`` does not list it.

        Detaching a volume that is not attached does nothing. Raises VMNotFound, VMNotRunning, or DriverError
        (the guest did not release the disk in time: it stays attached). Only with the ``volumes`` capability."""
        raise DriverError(f"the {self.name} driver cannot detach volumes")

    def attached_volumes(self, insid: str) -> list[AttachedVolume]:
        """The volumes attached to ``insid`` now, as the hypervisor says (not as anyone recorded); empty when the
        VM does not run. Raises VMNotFound. Only with the ``volumes`` capability."""
        raise DriverError(f"the {self.name} driver cannot attach volumes")
