"""The hypervisor-neutral VM spec: the notes' "VM runtime options" as they travel in commands, and the full spec a
node hands to its hypervisor driver.

Everything here may end up on a command line (qemu-system, VBoxManage), so every field is checked against a strict
pattern or range on construction; a driver never sees a value these models would refuse.
"""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from luhyaapi.validators import MAC_RE

InstanceIdText = Annotated[str, Field(pattern=r"^ins-[0-9a-f]{8}$")]
# Linux interface names: at most 15 bytes, no slash, no whitespace; we allow the usual safe subset only.
InterfaceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")]
UserPort = Annotated[int, Field(ge=1024, le=65535)]
GuestPort = Annotated[int, Field(ge=1, le=65535)]
# VNC authentication keys on at most 8 characters; "" means the console asks for none (a PC's loopback console).
ConsolePassword = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{0,8}$", repr=False)]
OsType = Literal["linux", "windows", "other"]
DiskType = Literal["ide", "sata", "virtio"]
NicModel = Literal["e1000", "virtio", "rtl8139"]
# The guest port of Remote Desktop (RDP): a run of an image whose guests serve it forwards this port, named ``rdp``.
RDP_PORT = 3389


class GuestDevices(NamedTuple):
    """The emulated devices a guest gets: its disk bus and its network card model."""

    disk_type: DiskType
    nic_model: NicModel


def guest_devices(os_type: OsType) -> GuestDevices:
    """The disk bus and network card a guest of ``os_type`` runs with, wherever it runs (a CC's node or a classroom
    PC): virtio for Linux, whose kernel has the drivers built in (faster disk and network, a link up at once); IDE
    and e1000 for any other system, which may have no virtio drivers but drives those."""
    if os_type == "linux":
        return GuestDevices(disk_type="virtio", nic_model="virtio")
    return GuestDevices(disk_type="ide", nic_model="e1000")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortForward(_Frozen):
    """A host port forwarded into a NAT-mode guest (the guest's service seen on ``host_ip:host_port``)."""

    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = "127.0.0.1"
    host_port: UserPort
    guest_port: GuestPort

    @field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class NicSpec(_Frozen):
    """One network card: NAT (the hypervisor's user networking, with port forwards) or bridged onto ``bridge``."""

    mode: Literal["nat", "bridged"] = "nat"
    model: NicModel = "e1000"
    mac: str
    bridge: InterfaceName | None = None
    forwards: tuple[PortForward, ...] = ()

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        normalized = value.strip().lower().replace("-", ":")
        if not MAC_RE.fullmatch(normalized):
            raise ValueError(f"{value!r} is not a MAC address (expected like '52:54:00:12:34:56')")
        if int(normalized[:2], 16) & 1:
            raise ValueError(f"{value!r} is a multicast MAC address; a NIC needs a unicast one")
        return normalized

    @model_validator(mode="after")
    def _mode_fits(self) -> NicSpec:
        if self.mode == "bridged" and not self.bridge:
            raise ValueError("a bridged NIC needs 'bridge' (the host's bridge interface)")
        if self.mode == "nat" and self.bridge:
            raise ValueError("a NAT NIC takes no 'bridge'")
        if self.mode == "bridged" and self.forwards:
            raise ValueError("port forwards apply to NAT NICs only")
        return self


class ConsoleSpec(_Frozen):
    """Where the VM's screen is served: VNC (QEMU) or RDP (VirtualBox VRDE) on ``listen:port`` of the node; a VNC
    console with a ``password`` (new for each run, chosen by the CLC) lets in only who knows it: the CLC's console
    proxy and the people the CLC shows it to."""

    protocol: Literal["vnc", "rdp"] = "vnc"
    listen: str = "127.0.0.1"
    port: UserPort
    password: ConsolePassword = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class RuntimeOptions(_Frozen):
    """The notes' runtime_option as chosen by the CLC and the CC: what the VM looks like, not where its files are."""

    os_type: OsType = "linux"
    memory_mb: int = Field(default=512, ge=32, le=1024 * 1024)
    cpus: int = Field(default=1, ge=1, le=64)
    disk_type: DiskType = "ide"
    nics: tuple[NicSpec, ...] = Field(default=(), max_length=4)
    console: ConsoleSpec
    run_with_snapshot: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> RuntimeOptions:
        macs = [nic.mac for nic in self.nics]
        if len(set(macs)) != len(macs):
            raise ValueError("two NICs have the same MAC address")
        host_ports = [(fwd.protocol, fwd.host_port) for nic in self.nics for fwd in nic.forwards]
        host_ports.append(("tcp", self.console.port))
        if len(set(host_ports)) != len(host_ports):
            raise ValueError("a host port is used twice (console and forwards must differ)")
        return self


class DiskSpec(_Frozen):
    """A disk file of the VM, an absolute path on the node (the driver checks it lies where it may)."""

    path: str
    readonly: bool = False

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or "\x00" in value or "," in value:
            # Commas would split a qemu -drive option; ".." could climb out of the node's directories.
            raise ValueError(f"{value!r} must be an absolute path without '..' or ','")
        return str(path)


class VMSpec(RuntimeOptions):
    """Everything a driver needs to define one VM: the runtime options, the instance id and its disks (first boots)."""

    insid: InstanceIdText
    disks: tuple[DiskSpec, ...] = Field(min_length=1, max_length=4)

    @classmethod
    def build(cls, insid: str, disks: list[str], options: RuntimeOptions) -> VMSpec:
        """The spec of instance ``insid`` with ``options`` and the given disk files."""
        return cls(insid=insid, disks=tuple(DiskSpec(path=path) for path in disks), **options.model_dump())
