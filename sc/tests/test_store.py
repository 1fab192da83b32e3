"""The volume store: sparse volumes, the space they reserve and the refusal of one that does not fit (with the
numbers), bad sizes and ids refused before any path is made, snapshots and restores at the file level, deletes
refused with the reason, and what a crash left half made removed at the next start."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from django.conf import settings

from sc.choices import VolumeStateChoices
from sc.constants import GiB, MiB
from sc.models import Snapshot, Volume
from sc.services.snapshots import create_snapshot, delete_snapshot, restore_volume
from sc.services.store import (
    VolumeError,
    create_volume,
    delete_volume,
    forget_unfinished,
    snapshot_path,
    space,
    volume_path,
    volume_store_mb,
)
from sc.tests.conftest import files_under

pytestmark = [pytest.mark.database, pytest.mark.django_db, pytest.mark.usefixtures("store")]


def refusal(call, *args, **kwargs) -> VolumeError:
    with pytest.raises(VolumeError) as caught:
        call(*args, **kwargs)
    return caught.value


def write_at(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)


def read_at(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(offset)
        return file.read(length)


def test_an_empty_volume_is_a_sparse_raw_file_of_its_size_using_no_blocks():
    volume = create_volume(size=10 * GiB, volume_id="vol-0000000a")
    path = volume_path("vol-0000000a")
    assert (volume.state, volume.size, path.name) == (VolumeStateChoices.AVAILABLE, 10 * GiB, "vol-0000000a.raw")
    assert path.stat().st_size == 10 * GiB
    assert path.stat().st_blocks == 0


def test_volumes_and_snapshots_reserve_their_size_against_the_capacity(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=100 * MiB)
    create_volume(size=30 * MiB, volume_id="vol-0000000a")
    create_snapshot("vol-0000000a", "snp-0000000a")
    assert (space().capacity, space().reserved, space().free) == (100 * MiB, 60 * MiB, 40 * MiB)
    assert volume_store_mb() == (100, 40)


def test_a_volume_that_does_not_fit_is_refused_with_requested_free_and_capacity(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=100 * MiB)
    create_volume(size=70 * MiB, volume_id="vol-0000000a")
    error = refusal(create_volume, size=40 * MiB, volume_id="vol-0000000b")
    assert (error.status, error.field) == (507, "size")
    assert str(error) == "a volume of 40 MiB does not fit: 30 MiB free of 100 MiB capacity"
    assert not Volume.objects.filter(volume_id="vol-0000000b").exists()
    assert not volume_path("vol-0000000b").exists()


def test_a_snapshot_that_does_not_fit_is_refused_with_the_numbers(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=100 * MiB)
    create_volume(size=60 * MiB, volume_id="vol-0000000a")
    error = refusal(create_snapshot, "vol-0000000a", "snp-0000000a")
    assert (error.status, str(error)) == (507, "a snapshot of 60 MiB does not fit: 40 MiB free of 100 MiB capacity")
    assert not Snapshot.objects.exists() and not snapshot_path("snp-0000000a").exists()


@pytest.mark.parametrize("size, says", [
    (0, "is not above 0"), (-MiB, "is not above 0"), (MiB + 1, "is not a whole number of MiB"),
    (1000, "is not a whole number of MiB"), ("10", "is not a whole number of bytes"),
    (True, "is not a whole number of bytes"), (2**80, "is more than the storage controller's capacity"),
])
def test_a_bad_size_is_refused_naming_size_and_nothing_is_made(store, size, says):
    error = refusal(create_volume, size=size, volume_id="vol-0000000a")
    assert (error.status, error.field) == (400, "size") and says in str(error)
    assert not Volume.objects.exists() and files_under(store) == []


def test_a_size_beyond_the_capacity_is_a_400_naming_the_capacity(settings):
    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=100 * MiB)
    error = refusal(create_volume, size=200 * MiB)
    assert (error.status, error.field, str(error)) == (
        400, "size", "200 MiB is more than the storage controller's capacity of 100 MiB")


@pytest.mark.parametrize("volume_id", ["../vol-0000000a", "vol-0000000a/../../x", "vol-\x00000000a", "v" * 300,
                                       "snp-0000000a", "/etc/passwd", ""])
def test_a_bad_volume_id_is_refused_before_any_path_is_made(store, volume_id):
    error = refusal(create_volume, size=MiB, volume_id=volume_id)
    assert (error.status, error.field) == (400, "volume_id")
    assert not Volume.objects.exists() and files_under(store) == []


def test_a_volume_id_in_use_is_a_409_and_the_first_volume_stays():
    create_volume(size=MiB, volume_id="vol-0000000a")
    write_at(volume_path("vol-0000000a"), 0, b"kept")
    error = refusal(create_volume, size=2 * MiB, volume_id="vol-0000000a")
    assert (error.status, error.field) == (409, "volume_id")
    assert read_at(volume_path("vol-0000000a"), 0, 4) == b"kept" and Volume.objects.get().size == MiB


def test_a_snapshot_keeps_the_bytes_of_its_time_and_a_restore_brings_them_back():
    create_volume(size=4 * MiB, volume_id="vol-0000000a")
    write_at(volume_path("vol-0000000a"), MiB, b"before")
    snapshot = create_snapshot("vol-0000000a")
    write_at(volume_path("vol-0000000a"), MiB, b"AFTER!")
    assert read_at(snapshot_path(snapshot.snapshot_id), MiB, 6) == b"before"
    restore_volume("vol-0000000a", snapshot.snapshot_id)
    assert read_at(volume_path("vol-0000000a"), MiB, 6) == b"before"
    assert volume_path("vol-0000000a").stat().st_size == 4 * MiB


def test_a_snapshot_of_a_sparse_volume_stays_sparse():
    create_volume(size=1 * GiB, volume_id="vol-0000000a")
    write_at(volume_path("vol-0000000a"), 0, b"x" * 4096)
    snapshot = create_snapshot("vol-0000000a")
    copied = snapshot_path(snapshot.snapshot_id).stat()
    assert copied.st_size == GiB and copied.st_blocks * 512 <= 1 * MiB


def test_a_volume_made_from_a_snapshot_has_its_bytes_and_may_be_larger():
    create_volume(size=2 * MiB, volume_id="vol-0000000a")
    write_at(volume_path("vol-0000000a"), 100, b"school")
    create_snapshot("vol-0000000a", "snp-0000000a")
    copy = create_volume(snapshot_id="snp-0000000a", size=8 * MiB, volume_id="vol-0000000b")
    assert (copy.size, copy.source, copy.source_id) == (8 * MiB, "snapshot", "snp-0000000a")
    assert read_at(volume_path("vol-0000000b"), 100, 6) == b"school"
    assert volume_path("vol-0000000b").stat().st_size == 8 * MiB
    error = refusal(create_volume, snapshot_id="snp-0000000a", size=MiB)
    assert (error.status, error.field) == (400, "size") and "smaller than snapshot snp-0000000a" in str(error)


def test_a_volume_from_an_unknown_snapshot_is_a_404_and_nothing_is_made(store):
    error = refusal(create_volume, snapshot_id="snp-0000dead")
    assert error.status == 404 and not Volume.objects.exists()


def test_deleting_a_volume_with_snapshots_is_refused_naming_them():
    create_volume(size=MiB, volume_id="vol-0000000a")
    create_snapshot("vol-0000000a", "snp-0000000a")
    error = refusal(delete_volume, "vol-0000000a")
    assert (error.status, str(error)) == (409, "volume vol-0000000a has snapshots (snp-0000000a); delete them first")
    assert volume_path("vol-0000000a").exists()
    delete_snapshot("snp-0000000a")
    delete_volume("vol-0000000a")
    assert not volume_path("vol-0000000a").exists() and not snapshot_path("snp-0000000a").exists()
    assert not Volume.objects.exists()


def test_restoring_to_another_volumes_snapshot_is_refused_naming_snapshot_id():
    create_volume(size=MiB, volume_id="vol-0000000a")
    create_volume(size=MiB, volume_id="vol-0000000b")
    create_snapshot("vol-0000000b", "snp-0000000b")
    error = refusal(restore_volume, "vol-0000000a", "snp-0000000b")
    assert (error.status, error.field) == (400, "snapshot_id")


def test_a_volume_left_creating_by_a_crash_is_removed_at_the_next_start(store):
    Volume.objects.create(volume_id="vol-0000000c", size=MiB, state=VolumeStateChoices.CREATING)
    volume_path("vol-0000000c").parent.mkdir(parents=True, exist_ok=True)
    volume_path("vol-0000000c").with_name("vol-0000000c.raw.part").write_bytes(b"half")
    create_volume(size=MiB, volume_id="vol-0000000a")
    assert forget_unfinished() == ["vol-0000000c"]
    assert list(Volume.objects.values_list("volume_id", flat=True)) == ["vol-0000000a"]
    assert files_under(store) == ["volumes/vol-0000000a.raw"]
    assert os.path.exists(settings.EDUCLOUD.data_dir / "sc" / "volumes" / "vol-0000000a.raw")
