"""A clone base is judged by its own header before VirtualBox opens it: single self-contained images pass, anything
that names another file (a parent, a backing file, an extent) is refused."""

import struct

import pytest

from nc.drivers.base import DriverError
from nc.drivers.virtualbox_disks import inspect_disk_image

VDI_PREHEADER = b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0")


def vdi(image_type: int = 1, parent: bytes = bytes(16), version: int = 0x00010001) -> bytes:
    header = bytearray(VDI_PREHEADER + struct.pack("<II", 0xBEDA107F, version) + bytes(448))
    struct.pack_into("<II", header, 72, 400, image_type)
    header[392:408] = b"\x11" * 16  # this image's own UUID
    header[424:440] = parent
    return bytes(header) + bytes(4096)


def qcow2(version: int = 3, backing_offset: int = 0, backing_size: int = 0, incompatible: int = 0) -> bytes:
    header = bytearray(b"QFI\xfb" + struct.pack(">IQI", version, backing_offset, backing_size) + bytes(492))
    struct.pack_into(">Q", header, 72, incompatible)
    return bytes(header) + bytes(4096)


def vmdk_sparse(descriptor: str, descriptor_offset: int = 1, descriptor_sectors: int = 20) -> bytes:
    header = b"KDMV" + struct.pack("<IIQQQQ", 1, 3, 20971520, 128, descriptor_offset, descriptor_sectors)
    body = descriptor.encode().ljust(descriptor_sectors * 512, b"\0") if descriptor_offset else b""
    return header.ljust(512, b"\0") + body + bytes(4096)


MONOLITHIC = """# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="monolithicSparse"

# Extent description
RW 20971520 SPARSE "ubuntu.vmdk"

ddb.uuid.image="0b1e9d3c-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
"""


def vhd_footer(disk_type: int) -> bytes:
    footer = bytearray(b"conectix".ljust(512, b"\0"))
    struct.pack_into(">I", footer, 60, disk_type)
    return bytes(footer)


def write(tmp_path, data: bytes, name: str = "base.img"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("data", "expected"), [
    (vdi(image_type=1), "vdi"),
    (vdi(image_type=2), "vdi"),
    (qcow2(version=2), "qcow2"),
    (qcow2(version=3), "qcow2"),
    (vmdk_sparse(MONOLITHIC), "vmdk"),
    (vmdk_sparse(MONOLITHIC.replace("monolithicSparse", "streamOptimized")), "vmdk"),
    (bytes(8192) + vhd_footer(2), "vhd"),
    (vhd_footer(3) + bytes(8192) + vhd_footer(3), "vhd"),
    (b"\xeb\x63\x90" + bytes(8189), "raw"),
], ids=["vdi-dynamic", "vdi-fixed", "qcow2-v2", "qcow2-v3", "vmdk-monolithic", "vmdk-stream", "vhd-fixed",
        "vhd-dynamic", "raw"])
def test_a_self_contained_image_is_accepted_with_its_format(tmp_path, data, expected):
    assert inspect_disk_image(write(tmp_path, data)) == expected


@pytest.mark.parametrize(("data", "reason"), [
    (vdi(image_type=4, parent=b"\x22" * 16), "differencing or undo"),
    (vdi(image_type=3, parent=b"\x22" * 16), "differencing or undo"),
    (vdi(image_type=1, parent=b"\x22" * 16), "names a parent"),
    (vdi(version=0x00000002), "not 1.x"),
    (qcow2(backing_offset=512, backing_size=16), "backing file"),
    (qcow2(incompatible=1 << 2), "external file"),
    (b"# Disk DescriptorFile\nversion=1\nRW 100 FLAT \"/etc/shadow\" 0\n", "VMDK descriptor"),
    (vmdk_sparse("", descriptor_offset=0, descriptor_sectors=0), "without its own descriptor"),
    (vmdk_sparse(MONOLITHIC.replace("monolithicSparse", "twoGbMaxExtentSparse")), "spreads the disk"),
    (vmdk_sparse(MONOLITHIC.replace("parentCID=ffffffff", 'parentCID=87654321\nparentFileNameHint="base.vmdk"')),
     "names a parent"),
    (vmdk_sparse(MONOLITHIC.replace('"ubuntu.vmdk"', '"/etc/shadow"')), "not this file's own"),
    (vmdk_sparse(MONOLITHIC.replace("RW 20971520 SPARSE", "RW 20971520 FLAT")), "not this file's own"),
    (vmdk_sparse(MONOLITHIC + 'RW 100 SPARSE "second.vmdk"\n'), "2 extents"),
    (vmdk_sparse(MONOLITHIC.replace('"ubuntu.vmdk"', '"unterminated')), "cannot be read"),
    (vhd_footer(4) + bytes(8192) + vhd_footer(4), "differencing VHD"),
    (b"vhdxfile" + bytes(8192), "VHDX"),
    (b"QED\x00" + bytes(8192), "QED"),
    (b"WithoutFreeSpace" + bytes(8192), "Parallels"),
    (b"<?xml version='1.0'?><Parallels_disk_image/>", "XML descriptor"),
    (bytes(8192) + b"koly".ljust(512, b"\0"), "DMG"),
], ids=["vdi-diff", "vdi-undo", "vdi-linked", "vdi-old-header", "qcow2-backing", "qcow2-external-data",
        "vmdk-descriptor", "vmdk-bare-extent", "vmdk-split", "vmdk-child", "vmdk-extent-path", "vmdk-flat-extent",
        "vmdk-two-extents", "vmdk-bad-quote", "vhd-differencing", "vhdx", "qed", "parallels", "xml", "dmg"])
def test_an_image_that_refers_to_other_files_is_refused_with_the_reason(tmp_path, data, reason):
    with pytest.raises(DriverError, match=reason):
        inspect_disk_image(write(tmp_path, data))


def test_a_truncated_qcow2_header_is_refused(tmp_path):
    with pytest.raises(DriverError, match="truncated"):
        inspect_disk_image(write(tmp_path, b"QFI\xfb\x00\x00\x00\x03"))
