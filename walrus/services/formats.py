"""Disk formats of stored images: detection from a file's first bytes, and the formats walrus refuses because a
hypervisor opening them would also open other files of the host it runs on.

A qcow2 image may name a backing file or an external data file, and a VMDK may be a text descriptor whose extents
are other files, or a sparse file whose embedded descriptor names a parent or other extents: a user could upload a
small image that makes an NC read ``/etc/shadow`` or another school's disk into a VM. Walrus keeps only
self-contained images. Facts of the formats: the qcow2 header specification (``docs/interop/qcow2.txt`` of QEMU) and
VMware's Virtual Disk Format 1.1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from walrus.choices import DiskFormatChoices

# Enough of a file's head for every decision below (QEMU probes formats with its first 2048 bytes too).
HEAD_BYTES = 2048

QCOW2_MAGIC = b"QFI\xfb"
VDI_SIGNATURE = 0xBEDA107F
VDI_SIGNATURE_OFFSET = 64
VMDK_SPARSE_MAGIC = b"KDMV"
VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
SECTOR = 512

# qcow2 header (big-endian): version at 4 (u32), backing_file_offset at 8 (u64), backing_file_size at 16 (u32); from
# version 3 on, incompatible_features at 72 (u64), whose bit 2 says the guest data lives in an external file.
QCOW2_EXTERNAL_DATA_FILE_BIT = 1 << 2
# Sparse VMDK header (little-endian): descriptorOffset at 28 and descriptorSize at 36, both u64 counts of sectors.
# An embedded descriptor larger than this is not something any tool writes; it is refused rather than read.
MAX_DESCRIPTOR_BYTES = 1024 * 1024

_DESCRIPTOR_VERSION = re.compile(rb"version=[123]\r?")
_EXTENT = re.compile(r'^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+(\w+)(?:\s+"([^"]*)")?', re.MULTILINE)
_PARENT_HINT = re.compile(r'^\s*parentFileNameHint\s*=\s*"([^"]*)"', re.MULTILINE)

ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True)
class HostFileReference:
    """Why an image is refused: ``reason`` is a stable code for programs, ``message`` says it to a person."""

    reason: str
    message: str


def _is_vmdk_descriptor(head: bytes) -> bool:
    """Whether ``head`` starts as a VMDK text descriptor would: comment (``#``) and blank lines, then a
    ``version=1``, 2 or 3 line (the rule QEMU probes with, slightly wider: a wider rule only refuses more)."""
    if head.startswith(VMDK_DESCRIPTOR):
        return True
    for line in head.split(b"\n")[:-1]:
        if line.startswith(b"#") or not line.strip(b" \r"):
            continue
        return _DESCRIPTOR_VERSION.fullmatch(line) is not None
    return False


def detect_format(head: bytes) -> str:
    """The disk format of a file from its first bytes (``HEAD_BYTES`` of them when the file has that many): qcow2
    (``QFI\\xfb`` at 0), vdi (signature 0xbeda107f, little-endian, at 64), vmdk (sparse extent ``KDMV`` at 0, or a
    text descriptor), else raw."""
    if head.startswith(QCOW2_MAGIC):
        return DiskFormatChoices.QCOW2
    signature = head[VDI_SIGNATURE_OFFSET:VDI_SIGNATURE_OFFSET + 4]
    if len(signature) == 4 and int.from_bytes(signature, "little") == VDI_SIGNATURE:
        return DiskFormatChoices.VDI
    if head.startswith(VMDK_SPARSE_MAGIC) or _is_vmdk_descriptor(head):
        return DiskFormatChoices.VMDK
    return DiskFormatChoices.RAW


def _shown(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:200]


def _qcow2_reference(head: bytes, read_at: ReadAt) -> HostFileReference | None:
    version = int.from_bytes(head[4:8], "big")
    backing_offset = int.from_bytes(head[8:16], "big")
    if backing_offset:
        name = read_at(backing_offset, min(int.from_bytes(head[16:20], "big"), 1023))
        return HostFileReference("qcow2-backing-file", f"the qcow2 image names a backing file ({_shown(name)!r}); "
                                                       "convert it to a self-contained image first (qemu-img "
                                                       "convert -O qcow2)")
    if version >= 3 and int.from_bytes(head[72:80], "big") & QCOW2_EXTERNAL_DATA_FILE_BIT:
        return HostFileReference("qcow2-external-data-file", "the qcow2 image keeps its data in an external file; "
                                                             "convert it to a self-contained image first")
    return None


def _bare_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _vmdk_reference(head: bytes, read_at: ReadAt) -> HostFileReference | None:
    if not head.startswith(VMDK_SPARSE_MAGIC):
        return HostFileReference("vmdk-descriptor", "the VMDK is a text descriptor: its data are other files; "
                                                    "upload a monolithic sparse or stream-optimized VMDK")
    offset = int.from_bytes(head[28:36], "little") * SECTOR
    size = int.from_bytes(head[36:44], "little") * SECTOR
    if not offset or not size:
        return None
    if size > MAX_DESCRIPTOR_BYTES:
        return HostFileReference("vmdk-descriptor", f"the VMDK's embedded descriptor claims {size} bytes")
    descriptor = read_at(offset, size).split(b"\0", 1)[0].decode("utf-8", "replace")
    parent = _PARENT_HINT.search(descriptor)
    if parent:
        return HostFileReference("vmdk-parent", f"the VMDK names a parent disk ({parent[1][:200]!r}); upload "
                                                "the whole disk as one image")
    extents = _EXTENT.findall(descriptor)
    # The one extent of a sparse file is the file itself, named without a folder; anything else is another file.
    if len(extents) > 1 or any(kind != "SPARSE" or not _bare_name(name) for _access, kind, name in extents):
        named = ", ".join(f"{kind} {name!r}" if name else kind for _access, kind, name in extents)
        return HostFileReference("vmdk-extents", f"the VMDK's embedded descriptor names other extents ({named[:300]}); "
                                                 "upload a monolithic sparse or stream-optimized VMDK")
    return None


def host_file_reference(head: bytes, read_at: ReadAt) -> HostFileReference | None:
    """Why a file whose first bytes are ``head`` (``HEAD_BYTES`` of them, or the whole file) would make a
    hypervisor open other files of the host, or None for a self-contained image. ``read_at(offset, size)`` reads
    more of the file where the format keeps names further in (it may return fewer bytes at the end of the file)."""
    disk_format = detect_format(head)
    if disk_format == DiskFormatChoices.QCOW2:
        return _qcow2_reference(head, read_at)
    if disk_format == DiskFormatChoices.VMDK:
        return _vmdk_reference(head, read_at)
    return None
