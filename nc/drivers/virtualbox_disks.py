"""Decide from a disk file's own header whether it is one self-contained image VirtualBox may open, before it is
handed to VirtualBox: an uploaded image must not make the hypervisor open another host file.

Accepted: a VDI base image (normal or fixed), a qcow2 with no backing file and no external data file, a VMDK whose
descriptor is embedded and names no parent (monolithicSparse, streamOptimized), a VHD that is not differencing, and a
raw image (no header of any format VirtualBox reads). Refused: VDI differencing/undo images, qcow2 with a backing or
external data file, VMDK text descriptors (they name extent files) and extents without their descriptor, differencing
VHDs, and the formats VirtualBox reads that can refer to other files (VHDX, QED, Parallels, DMG). Header layouts:
VirtualBox's VDICore.h and VHD/VMDK backends, the qcow2 specification (QEMU docs/interop/qcow2.txt), the VMDK
specification (VMware "Virtual Disk Format 1.1").
"""

from __future__ import annotations

import shlex
import struct
from pathlib import Path
from typing import BinaryIO

from nc.drivers.base import DriverError

HEAD_BYTES = 4096
SECTOR = 512
MAX_DESCRIPTOR_BYTES = 1 << 20

QCOW2_MAGIC = b"QFI\xfb"
QCOW2_EXTERNAL_DATA_FILE = 1 << 2
VDI_SIGNATURE = 0xBEDA107F
VDI_TYPES_BASE = {1: "normal", 2: "fixed"}
VMDK_SPARSE_MAGIC = b"KDMV"
VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
VMDK_SELF_CONTAINED = {"monolithicSparse", "streamOptimized"}
VHD_COOKIE = b"conectix"
VHD_DIFFERENCING = 4
# Formats VirtualBox also opens whose images may name other files; a "raw" image must start with none of these.
OTHER_MAGICS = {
    b"vhdxfile": "VHDX",
    b"QED\x00": "QED",
    b"WithoutFreeSpace": "Parallels",
    b"WithouFreSpacExt": "Parallels",
    b"COWD": "VMware ESX sparse",
    b"<?xml": "an XML descriptor",
}
DMG_TRAILER = b"koly"


def _refuse(path: Path, why: str) -> DriverError:
    return DriverError(f"refusing {path} as a clone base: {why}")


def inspect_disk_image(path: Path) -> str:
    """The format of the disk file at ``path`` ("vdi", "qcow2", "vmdk", "vhd" or "raw") if it is a single
    self-contained image; DriverError naming the reason otherwise (and OSError if it cannot be read)."""
    with open(path, "rb") as file:
        head = file.read(HEAD_BYTES)
        size = file.seek(0, 2)
        file.seek(max(0, size - SECTOR))
        tail = file.read(SECTOR)
        if head.startswith(QCOW2_MAGIC):
            return _check_qcow2(path, head)
        if len(head) >= 68 and struct.unpack_from("<I", head, 64)[0] == VDI_SIGNATURE:
            return _check_vdi(path, head)
        if head.startswith(VMDK_DESCRIPTOR):
            raise _refuse(path, "it is a VMDK descriptor, which names other files as its extents")
        if head.startswith(VMDK_SPARSE_MAGIC):
            return _check_vmdk_sparse(path, head, file)
    if head.startswith(VHD_COOKIE) or tail.startswith(VHD_COOKIE):
        return _check_vhd(path, tail if tail.startswith(VHD_COOKIE) else head)
    for magic, name in OTHER_MAGICS.items():
        if head.startswith(magic):
            raise _refuse(path, f"it is {name}, a format whose images may refer to other files")
    if tail.startswith(DMG_TRAILER):
        raise _refuse(path, "it is a DMG image")
    return "raw"


def _check_qcow2(path: Path, head: bytes) -> str:
    if len(head) < 20:
        raise _refuse(path, "its qcow2 header is truncated")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", head, 4)
    if backing_offset or backing_size:
        raise _refuse(path, "it is a qcow2 image with a backing file")
    if version >= 3:
        if len(head) < 80:
            raise _refuse(path, "its qcow2 header is truncated")
        (incompatible,) = struct.unpack_from(">Q", head, 72)
        if incompatible & QCOW2_EXTERNAL_DATA_FILE:
            raise _refuse(path, "it is a qcow2 image whose data lives in an external file")
    return "qcow2"


def _check_vdi(path: Path, head: bytes) -> str:
    (version,) = struct.unpack_from("<I", head, 68)
    if version >> 16 != 1 or len(head) < 456:
        raise _refuse(path, f"its VDI header version {version:#x} is not 1.x")
    (image_type,) = struct.unpack_from("<I", head, 76)
    if image_type not in VDI_TYPES_BASE:
        raise _refuse(path, f"it is a VDI image of type {image_type} (differencing or undo), which has a parent")
    if any(head[424:440]):
        raise _refuse(path, "it is a VDI image that names a parent image")
    return "vdi"


def _check_vmdk_sparse(path: Path, head: bytes, file: BinaryIO) -> str:
    if len(head) < 44:
        raise _refuse(path, "its VMDK header is truncated")
    offset, length = struct.unpack_from("<QQ", head, 28)
    if not offset or not length:
        raise _refuse(path, "it is a VMDK extent without its own descriptor (the descriptor is another file)")
    if length * SECTOR > MAX_DESCRIPTOR_BYTES:
        raise _refuse(path, "its embedded VMDK descriptor is implausibly large")
    file.seek(offset * SECTOR)
    descriptor = file.read(length * SECTOR).split(b"\x00", 1)[0].decode("ascii", "replace")
    return check_vmdk_descriptor(path, descriptor)


def check_vmdk_descriptor(path: Path, descriptor: str) -> str:
    """"vmdk" if an embedded descriptor describes one self-contained image; DriverError otherwise."""
    fields: dict[str, str] = {}
    extents: list[list[str]] = []
    for raw_line in descriptor.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.split(None, 1)[0] in ("RW", "RDONLY", "NOACCESS"):
            try:
                extents.append(shlex.split(line))
            except ValueError:
                raise _refuse(path, f"its VMDK extent line {line!r} cannot be read") from None
            continue
        key, equals, value = line.partition("=")
        if equals:
            fields[key.strip()] = value.strip().strip('"')
    create_type = fields.get("createType", "")
    if create_type not in VMDK_SELF_CONTAINED:
        raise _refuse(path, f"its VMDK createType {create_type!r} spreads the disk over other files")
    if "parentFileNameHint" in fields or fields.get("parentCID", "ffffffff").lower() != "ffffffff":
        raise _refuse(path, "it is a VMDK child image that names a parent")
    if len(extents) != 1:
        raise _refuse(path, f"its VMDK descriptor lists {len(extents)} extents, not one")
    extent = extents[0]
    # A hosted sparse image is its own single extent: "RW <sectors> SPARSE <file name>"; a path there is a lie.
    if len(extent) < 4 or extent[2] != "SPARSE" or "/" in extent[3]:
        raise _refuse(path, f"its VMDK extent {' '.join(extent)!r} is not this file's own sparse extent")
    return "vmdk"


def _check_vhd(path: Path, footer: bytes) -> str:
    if len(footer) < 64:
        raise _refuse(path, "its VHD footer is truncated")
    (disk_type,) = struct.unpack_from(">I", footer, 60)
    if disk_type == VHD_DIFFERENCING:
        raise _refuse(path, "it is a differencing VHD, which names a parent")
    return "vhd"
