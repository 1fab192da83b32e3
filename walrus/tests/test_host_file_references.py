"""Images that would make a hypervisor open other files of its host are refused when their upload completes: qcow2
with a backing file or an external data file, VMDK text descriptors, and sparse VMDKs whose embedded descriptor
names a parent or other extents. Every image here is made by ``qemu-img create``, as a user would make one."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from walrus.models import ImageVersion, Upload
from walrus.services.formats import HEAD_BYTES, detect_format, host_file_reference
from walrus.services.store import StoreError, complete_upload, start_upload, upload_path, write_upload
from walrus.tests.conftest import files_under

pytestmark = [pytest.mark.database, pytest.mark.django_db]

IMAGE = "img-0000000a"
QEMU_IMG = shutil.which("qemu-img")


def qemu_img(folder: Path, name: str, *options: str, size: str | None = "1M") -> Path:
    """``qemu-img create`` in ``folder`` (relative names, as a user would give them); returns the made file."""
    subprocess.run([QEMU_IMG, "create", "-q", *options, name, *([size] if size else [])], cwd=folder, check=True,
                   timeout=60)
    return folder / name


def reference_of(path: Path):
    return reference_of_bytes(path.read_bytes())


def upload_whole(data: bytes) -> str:
    upload = start_upload(IMAGE, len(data))
    assert write_upload(upload.upload_id, 0, len(data), io.BytesIO(data).read) == len(data)
    return upload.upload_id


@pytest.fixture
def made(tmp_path) -> Path:
    """A folder to make images in, with a raw ``base.raw`` to point at."""
    if QEMU_IMG is None:
        pytest.skip("qemu-img is not installed (tests/run.sh installs qemu-utils)")
    folder = tmp_path / "made"
    folder.mkdir()
    qemu_img(folder, "base.raw", "-f", "raw")
    return folder


REFUSED = {
    "qcow2-backing-file": ("top.qcow2", ["-f", "qcow2", "-b", "base.raw", "-F", "raw"], None),
    "qcow2-backing-file-v2": ("old.qcow2", ["-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw"], None),
    "qcow2-external-data-file": ("ext.qcow2", ["-f", "qcow2", "-o", "data_file=data.raw"], "1M"),
    "vmdk-descriptor-flat": ("flat.vmdk", ["-f", "vmdk", "-o", "subformat=monolithicFlat"], "1M"),
    "vmdk-descriptor-split": ("split.vmdk", ["-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"], "1M"),
    "vmdk-parent": ("child.vmdk", ["-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk"], "1M"),
}


def make_refused(folder: Path, case: str) -> Path:
    name, options, size = REFUSED[case]
    if case == "vmdk-parent":
        qemu_img(folder, "parent.vmdk", "-f", "vmdk")
    return qemu_img(folder, name, *options, size=size)


@pytest.mark.parametrize("case, reason", [
    ("qcow2-backing-file", "qcow2-backing-file"),
    ("qcow2-backing-file-v2", "qcow2-backing-file"),
    ("qcow2-external-data-file", "qcow2-external-data-file"),
    ("vmdk-descriptor-flat", "vmdk-descriptor"),
    ("vmdk-descriptor-split", "vmdk-descriptor"),
    ("vmdk-parent", "vmdk-parent"),
])
def test_an_image_naming_other_host_files_is_refused_and_its_upload_discarded(made, store, case, reason):
    disk = make_refused(made, case)
    assert reference_of(disk).reason == reason
    upload_id = upload_whole(disk.read_bytes())
    with pytest.raises(StoreError) as refused:
        complete_upload(upload_id, hashlib.sha256(disk.read_bytes()).hexdigest())
    assert (refused.value.status, refused.value.extra) == (400, {"reason": reason})
    assert not Upload.objects.exists()
    assert not ImageVersion.objects.exists()
    assert not upload_path(upload_id).exists()
    assert files_under(store) == ["uploads"]


def test_the_backing_files_name_is_shown_in_the_refusal(made):
    disk = make_refused(made, "qcow2-backing-file")
    assert "'base.raw'" in reference_of(disk).message


@pytest.mark.parametrize("name, options", [
    ("plain.qcow2", ["-f", "qcow2"]),
    ("plain-v2.qcow2", ["-f", "qcow2", "-o", "compat=0.10"]),
    ("sparse.vmdk", ["-f", "vmdk"]),
    ("stream.vmdk", ["-f", "vmdk", "-o", "subformat=streamOptimized"]),
    ("disk.vdi", ["-f", "vdi"]),
    ("disk.raw", ["-f", "raw"]),
])
def test_self_contained_images_are_stored(made, name, options):
    disk = qemu_img(made, name, *options, size="4M")
    assert reference_of(disk) is None
    stored, created = complete_upload(upload_whole(disk.read_bytes()))
    assert created and stored.format == detect_format(disk.read_bytes()[:HEAD_BYTES])


def with_descriptor(data: bytes, old: bytes, new: bytes) -> bytes:
    """A sparse VMDK whose embedded descriptor has ``old`` replaced by ``new``; every other byte stays in place."""
    offset = int.from_bytes(data[28:36], "little") * 512
    size = int.from_bytes(data[36:44], "little") * 512
    text = data[offset:offset + size].split(b"\0", 1)[0]
    assert text.count(old) == 1
    return data[:offset] + text.replace(old, new).ljust(size, b"\0") + data[offset + size:]


@pytest.mark.parametrize("extent_lines, shown", [
    (b'RW 2048 FLAT "/etc/shadow" 0', "FLAT '/etc/shadow'"),
    (b'RW 2048 SPARSE "../other/disk.vmdk"', "SPARSE '../other/disk.vmdk'"),
    (b'RW 2048 VMFS "disk-flat.vmdk"', "VMFS 'disk-flat.vmdk'"),
    (b'RW 1024 SPARSE "sparse.vmdk"\nRW 1024 FLAT "data.raw" 0', "FLAT 'data.raw'"),
])
def test_a_sparse_vmdk_whose_embedded_descriptor_names_another_extent_is_refused(made, extent_lines, shown):
    data = qemu_img(made, "sparse.vmdk", "-f", "vmdk").read_bytes()
    edited = with_descriptor(data, b'RW 2048 SPARSE "sparse.vmdk"', extent_lines)
    assert len(edited) == len(data)
    reference = reference_of_bytes(edited)
    assert reference.reason == "vmdk-extents" and shown in reference.message
    with pytest.raises(StoreError) as refused:
        complete_upload(upload_whole(edited))
    assert (refused.value.status, refused.value.extra) == (400, {"reason": "vmdk-extents"})
    assert not Upload.objects.exists()


def test_the_api_answers_a_refused_image_with_a_400_naming_the_reason(made, walrus, store):
    disk = make_refused(made, "qcow2-backing-file")
    data = disk.read_bytes()
    upload_id = walrus.start(IMAGE, data)
    assert walrus.put(upload_id, data).json() == {"offset": len(data)}
    response = walrus.call("POST", f"uploads/{upload_id}/complete/", {"sha256": hashlib.sha256(data).hexdigest()})
    assert response.status_code == 400
    assert response.json()["reason"] == "qcow2-backing-file"
    assert "backing file ('base.raw')" in response.json()["detail"]
    assert walrus.call("GET", f"uploads/{upload_id}/").status_code == 404
    assert walrus.call("GET", f"images/{IMAGE}/").status_code == 404
    assert files_under(store) == ["uploads"]


def reference_of_bytes(data: bytes):
    return host_file_reference(data[:HEAD_BYTES], lambda offset, size: data[offset:offset + size])


@pytest.mark.parametrize("head", [
    b"# Disk DescriptorFile\nversion=1\n",
    b"# made by hand\n   \nversion=2\r\nCID=fffffffe\n",
    b"\n#x\nversion=3\ncreateType=\"vmfs\"\n",
])
def test_a_vmdk_text_descriptor_is_recognised_however_it_starts(head):
    assert detect_format(head) == "vmdk"
    assert reference_of_bytes(head).reason == "vmdk-descriptor"


@pytest.mark.parametrize("head", [b"version=4\n", b"#\nnot a descriptor\nversion=1\n", b"version=1", bytes(512)])
def test_text_that_is_no_vmdk_descriptor_is_raw(head):
    assert detect_format(head) == "raw"
    assert reference_of_bytes(head) is None
