"""The store's services: uploads in pieces, the sha256 across cuts and restarts, one writer at a time, versions,
formats, deletion, and ids that never become paths."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import threading

import pytest

from luhyaapi.ids import InvalidId
from walrus.models import ImageVersion, Upload
from walrus.services import store
from walrus.services.store import (
    StoreError,
    abandon_upload,
    complete_upload,
    delete_image,
    delete_version,
    detect_file_format,
    detect_format,
    find_version,
    get_image,
    open_version,
    start_upload,
    upload_path,
    version_path,
    write_upload,
)

pytestmark = [pytest.mark.database, pytest.mark.django_db]

IMAGE = "img-0000000a"
QEMU_IMG = shutil.which("qemu-img")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(upload_id: str, data: bytes, offset: int = 0) -> int:
    return write_upload(upload_id, offset, len(data), io.BytesIO(data).read)


def stored(data: bytes, image_id: str = IMAGE) -> ImageVersion:
    upload = start_upload(image_id, len(data))
    write(upload.upload_id, data)
    return complete_upload(upload.upload_id)[0]


def test_an_upload_written_in_pieces_is_stored_with_the_whole_files_sha256(store):
    data = bytes(range(256)) * 9000
    upload = start_upload(IMAGE, len(data), sha(data))
    assert write(upload.upload_id, data[:1000]) == 1000
    assert write(upload.upload_id, data[1000:700_000], 1000) == 700_000
    assert write(upload.upload_id, data[700_000:], 700_000) == len(data)
    version, made = complete_upload(upload.upload_id)
    assert (made, version.version, version.size, version.sha256, version.current) == (True, 1, len(data), sha(data),
                                                                                       True)
    assert version_path(IMAGE, 1).read_bytes() == data


def test_the_version_file_appears_only_when_complete_and_the_partial_file_goes(store):
    data = b"x" * 5000
    upload = start_upload(IMAGE, len(data))
    write(upload.upload_id, data)
    assert upload_path(upload.upload_id).exists()
    assert not (store / "images" / IMAGE).exists()
    complete_upload(upload.upload_id)
    assert not upload_path(upload.upload_id).exists()
    assert [path.name for path in (store / "images" / IMAGE).iterdir()] == ["1.img"]


class EndsEarly:
    """A request body whose connection is cut after ``keep`` bytes (the read returns nothing, as a socket does)."""

    def __init__(self, data: bytes, keep: int, error: bool = False) -> None:
        self.stream = io.BytesIO(data[:keep])
        self.error = error

    def read(self, size: int) -> bytes:
        chunk = self.stream.read(min(size, 100_000))
        if not chunk and self.error:
            raise OSError("connection reset by peer")
        return chunk


@pytest.mark.parametrize("error", [False, True], ids=["eof", "reset"])
def test_a_write_cut_short_keeps_what_arrived_and_the_next_write_goes_on_from_there(error):
    data = bytes(range(251)) * 20_000
    upload = start_upload(IMAGE, len(data), sha(data))
    with pytest.raises(StoreError) as cut:
        write_upload(upload.upload_id, 0, len(data), EndsEarly(data, 1_234_567, error).read)
    assert (cut.value.status, cut.value.extra["offset"]) == (400, 1_234_567)
    assert Upload.objects.get(upload_id=upload.upload_id).offset == 1_234_567
    write(upload.upload_id, data[1_234_567:], 1_234_567)
    assert complete_upload(upload.upload_id)[0].sha256 == sha(data)


def test_after_a_restart_the_partial_file_is_rehashed_once_and_the_sha256_is_still_the_whole_files(monkeypatch):
    data = bytes(range(256)) * 10_000
    upload = start_upload(IMAGE, len(data), sha(data))
    write(upload.upload_id, data[:1_000_000])
    store._running.clear()  # what a restarted process has: no running hash
    reads = []
    original = store._hash_file
    monkeypatch.setattr(store, "_hash_file", lambda fd, hasher, start, end: (reads.append((start, end)),
                                                                              original(fd, hasher, start, end)))
    write(upload.upload_id, data[1_000_000:2_000_000], 1_000_000)
    write(upload.upload_id, data[2_000_000:], 2_000_000)
    assert complete_upload(upload.upload_id)[0].sha256 == sha(data)
    assert [(start, end) for start, end in reads if end > start] == [(0, 1_000_000)]


def test_bytes_past_the_saved_offset_are_dropped_after_a_crash():
    data = b"good" * 50_000
    upload = start_upload(IMAGE, len(data), sha(data))
    write(upload.upload_id, data[:100_000])
    with open(upload_path(upload.upload_id), "ab") as part:
        part.write(b"never acknowledged")
    write(upload.upload_id, data[100_000:], 100_000)
    assert complete_upload(upload.upload_id)[0].sha256 == sha(data)


def test_a_write_at_another_offset_is_refused_with_the_current_offset():
    upload = start_upload(IMAGE, 100)
    write(upload.upload_id, b"a" * 40)
    with pytest.raises(StoreError) as refused:
        write(upload.upload_id, b"b" * 10, 30)
    assert (refused.value.status, refused.value.extra) == (409, {"offset": 40})
    assert upload_path(upload.upload_id).read_bytes() == b"a" * 40


def test_a_write_past_the_size_is_refused_before_anything_is_written():
    upload = start_upload(IMAGE, 100)
    with pytest.raises(StoreError) as refused:
        write(upload.upload_id, b"c" * 101)
    assert refused.value.status == 400
    assert upload_path(upload.upload_id).read_bytes() == b""


@pytest.mark.django_db(transaction=True)
def test_two_writers_to_one_upload_never_interleave():
    data = b"z" * 3_000_000
    upload = start_upload(IMAGE, len(data) * 2)
    inside, release = threading.Event(), threading.Event()

    class SlowBody:
        def __init__(self):
            self.stream = io.BytesIO(data)

        def read(self, size):
            inside.set()
            release.wait(10)
            return self.stream.read(size)

    first = threading.Thread(target=write_upload, args=(upload.upload_id, 0, len(data), SlowBody().read))
    first.start()
    assert inside.wait(10)
    try:
        with pytest.raises(StoreError) as second:
            write(upload.upload_id, b"y" * 10)
        assert second.value.status == 409
        assert "in progress" in str(second.value)
        with pytest.raises(StoreError) as completing:
            complete_upload(upload.upload_id)
        assert completing.value.status == 409
    finally:
        release.set()
        first.join(10)
    assert upload_path(upload.upload_id).read_bytes() == data


def test_complete_before_every_byte_arrived_is_refused_with_the_offset():
    upload = start_upload(IMAGE, 100)
    write(upload.upload_id, b"d" * 60)
    with pytest.raises(StoreError) as refused:
        complete_upload(upload.upload_id)
    assert (refused.value.status, refused.value.extra) == (409, {"offset": 60})


@pytest.mark.parametrize("where", ["start", "complete"])
def test_a_wrong_sha256_is_refused_and_the_upload_discarded(where):
    data = b"e" * 1000
    upload = start_upload(IMAGE, len(data), sha(b"other") if where == "start" else "")
    write(upload.upload_id, data)
    with pytest.raises(StoreError) as refused:
        complete_upload(upload.upload_id, sha(b"other") if where == "complete" else "")
    assert refused.value.status == 422
    assert not Upload.objects.exists()
    assert not upload_path(upload.upload_id).exists()
    assert not ImageVersion.objects.exists()


def test_completing_again_answers_with_the_same_version():
    data = b"f" * 100
    upload = start_upload(IMAGE, len(data))
    write(upload.upload_id, data)
    first, made_first = complete_upload(upload.upload_id)
    again, made_again = complete_upload(upload.upload_id, sha(data))
    assert (made_first, made_again, again.pk) == (True, False, first.pk)


def test_versions_count_up_and_the_newest_is_current():
    versions = [stored(bytes([n]) * 10) for n in range(3)]
    assert [version.version for version in versions] == [1, 2, 3]
    image = get_image(IMAGE)
    assert (image.current, [v.version for v in image.versions]) == (3, [3, 2, 1])
    assert find_version(IMAGE, None).version == 3


def test_deleting_the_current_version_makes_the_newest_remaining_current():
    for n in range(3):
        stored(bytes([n]) * 10)
    delete_version(IMAGE, 3)
    assert get_image(IMAGE).current == 2
    assert not version_path(IMAGE, 3).exists()
    delete_version(IMAGE, 1)
    assert (get_image(IMAGE).current, version_path(IMAGE, 2).exists()) == (2, True)


def test_deleting_an_older_version_keeps_the_current_one():
    for n in range(3):
        stored(bytes([n]) * 10)
    delete_version(IMAGE, 2)
    assert [(v.version, v.current) for v in get_image(IMAGE).versions] == [(3, True), (1, False)]


def test_version_numbers_are_not_reused_after_a_delete():
    stored(b"1")
    stored(b"2")
    delete_version(IMAGE, 2)
    assert stored(b"3").version == 3


def test_deleting_an_image_removes_every_version_and_its_folder(store):
    stored(b"1")
    stored(b"2")
    other = stored(b"3", "img-0000000b")
    delete_image(IMAGE)
    assert not (store / "images" / IMAGE).exists()
    assert list(ImageVersion.objects.all()) == [other]
    with pytest.raises(StoreError) as missing:
        get_image(IMAGE)
    assert missing.value.status == 404


def test_abandoning_an_upload_removes_its_record_and_partial_file():
    upload = start_upload(IMAGE, 100)
    write(upload.upload_id, b"g" * 50)
    abandon_upload(upload.upload_id)
    assert not Upload.objects.exists()
    assert not upload_path(upload.upload_id).exists()
    with pytest.raises(StoreError) as gone:
        write(upload.upload_id, b"g", 50)
    assert gone.value.status == 404


def test_a_version_is_read_back_in_ranges():
    data = bytes(range(256)) * 100
    version = stored(data)
    whole, middle = open_version(version, 0, len(data) - 1), open_version(version, 1000, 1023)
    try:
        assert whole.read() == data
        assert (middle.read(10), middle.read(), middle.read()) == (data[1000:1010], data[1010:1024], b"")
    finally:
        whole.close()
        middle.close()


@pytest.mark.parametrize("head, expected", [
    (b"QFI\xfb\x00\x00\x00\x03" + bytes(504), "qcow2"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0") + (0xBEDA107F).to_bytes(4, "little"), "vdi"),
    (b"KDMV\x01\x00\x00\x00" + bytes(504), "vmdk"),
    (b"# Disk DescriptorFile\nversion=1\nCID=fffffffe\n", "vmdk"),
    (bytes(512), "raw"),
    (b"\xeb\x63\x90" + bytes(509), "raw"),
    # The VDI signature is little-endian: the same number stored big-endian is not a VDI.
    (bytes(64) + (0xBEDA107F).to_bytes(4, "big"), "raw"),
    (b"QF", "raw"),
    (b"", "raw"),
])
def test_the_format_is_detected_from_the_magic_bytes(head, expected):
    assert detect_format(head) == expected


@pytest.mark.parametrize("disk_format", ["qcow2", "vdi", "vmdk"])
def test_disks_made_by_qemu_img_are_detected_and_stored_with_their_format(tmp_path, disk_format):
    if QEMU_IMG is None:
        pytest.skip("qemu-img is not installed (tests/run.sh installs qemu-utils)")
    disk = tmp_path / f"disk.{disk_format}"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", disk_format, str(disk), "64M"], check=True, timeout=60)
    assert detect_file_format(disk) == disk_format
    assert stored(disk.read_bytes()).format == disk_format


@pytest.mark.parametrize("hostile", ["../x", "..", "/etc/passwd", "upl-0000000a/../../x", "upl-0000000a\x00",
                                     ";rm -rf x", "$(id)", "upl 0000000a", "UPL-0000000A", "img-0000000a"])
def test_a_hostile_upload_id_never_becomes_a_path(store, hostile):
    with pytest.raises(InvalidId):
        upload_path(hostile)
    with pytest.raises(InvalidId):
        write_upload(hostile, 0, 1, io.BytesIO(b"x").read)
    assert not store.exists()


@pytest.mark.parametrize("image_id, version", [("../x", 1), ("/abs", 1), ("img-0000000a\x00", 1),
                                               ("img-0000000a", 0), ("img-0000000a", -1), ("img-0000000a", True),
                                               ("img-0000000a", "1")])
def test_a_hostile_image_id_or_version_never_becomes_a_path(store, image_id, version):
    with pytest.raises(ValueError):
        version_path(image_id, version)
    assert not store.exists()


@pytest.mark.parametrize("image_id", ["../x", "/abs", "img-0000000a/..", "$(id)", "ins-0000000a"])
def test_an_upload_of_a_hostile_image_id_is_refused_before_the_disk(store, image_id):
    with pytest.raises(InvalidId):
        start_upload(image_id, 10)
    assert not store.exists()
