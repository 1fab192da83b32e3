"""Volumes through the CLC's API: made, snapshotted, restored and deleted by a real storage controller (this test
server's SC role, its files under the test's own data dir), each refusal of the SC passed on naming the field with
its numbers, bad input a 400 naming the field with nothing made, another school's volumes a 404 at every URL, and a
student refused making one."""

from __future__ import annotations

import time

import pytest

from clc.services import volumes as volume_service
from clc.tests.classes import as_
from clc.tests.conftest import STORE_MB
from luhyadb.models import Snapshot, Volume

pytestmark = [pytest.mark.database, pytest.mark.django_db(transaction=True)]

API = "/clc/api/1.0"
MIB = 2**20


def make(user, **body):
    """Ask to make a volume; a field given as ``...`` is left out."""
    values = {"name": "Data", "owner_group": "edu.s1", "size": 8 * MIB} | body
    values = {name: value for name, value in values.items() if value is not ...}
    return as_(user).post(f"{API}/volumes/", values, content_type="application/json")


def test_a_volume_is_made_by_the_sc_as_a_sparse_file_and_listed_with_its_state(schools, store):
    answer = make(schools["head1"], name="Server disk", size=16 * MIB)
    assert answer.status_code == 201, answer.content
    volume = answer.json()
    assert (volume["state"], volume["size"], volume["sc"], volume["cluster"], volume["source"]) == (
        "available", 16 * MIB, "sc-1", "cluster1", "empty")
    path = store / f"{volume['volume_id']}.raw"
    assert path.stat().st_size == 16 * MIB and path.stat().st_blocks == 0  # sparse: nothing written yet
    listing = as_(schools["head1"]).get(f"{API}/volumes/").json()
    assert listing["count"] == 1 and listing["results"][0]["volume_id"] == volume["volume_id"]
    assert Volume.objects.get(volume_id=volume["volume_id"]).owner_group.path == "edu.s1"


def test_snapshot_restore_and_a_volume_from_a_snapshot(schools, store):
    head = as_(schools["head1"])
    volume_id = make(schools["head1"]).json()["volume_id"]
    path = store / f"{volume_id}.raw"
    with path.open("r+b") as disk:
        disk.write(b"old bytes")
    taken = head.post(f"{API}/volumes/{volume_id}/snapshots/")
    assert taken.status_code == 201, taken.content
    snapshot_id = taken.json()["snapshot_id"]
    assert taken.json()["owner_group"] == "edu.s1"
    with path.open("r+b") as disk:
        disk.write(b"new bytes")
    restored = head.post(f"{API}/volumes/{volume_id}/restore/", {"snapshot_id": snapshot_id},
                         content_type="application/json")
    assert restored.status_code == 200, restored.content
    assert path.read_bytes()[:9] == b"old bytes"
    copy = make(schools["head1"], name="Copy", size=..., snapshot_id=snapshot_id)
    assert copy.status_code == 201, copy.content
    assert (copy.json()["source"], copy.json()["source_snapshot"], copy.json()["size"]) == (
        "snapshot", snapshot_id, 8 * MIB)
    assert (store / f"{copy.json()['volume_id']}.raw").read_bytes()[:9] == b"old bytes"
    assert [s["snapshot_id"] for s in head.get(f"{API}/volumes/{volume_id}/snapshots/").json()] == [snapshot_id]


def test_a_volume_with_snapshots_or_attached_is_not_deleted_and_says_why(schools, store):
    head = as_(schools["head1"])
    volume_id = make(schools["head1"]).json()["volume_id"]
    snapshot_id = head.post(f"{API}/volumes/{volume_id}/snapshots/").json()["snapshot_id"]
    refused = head.delete(f"{API}/volumes/{volume_id}/")
    assert refused.status_code == 409
    assert f"has snapshots ({snapshot_id}); delete them first" in refused.json()["detail"]
    assert head.delete(f"{API}/snapshots/{snapshot_id}/").status_code == 204
    assert not Snapshot.objects.exists()
    # An attached volume (as the attach will record it) is neither deleted nor restored.
    instance = schools["images"]["edu.s1"].instances.create(instance_id="ins-000000a1", name="server",
                                                             vm_type=schools["tiny"], owner_group=schools["s1"])
    Volume.objects.filter(volume_id=volume_id).update(instance=instance, state="in-use")
    refused = head.delete(f"{API}/volumes/{volume_id}/")
    assert refused.status_code == 409 and "attached to ins-000000a1" in refused.json()["detail"]
    Volume.objects.filter(volume_id=volume_id).update(instance=None, state="available")
    assert head.delete(f"{API}/volumes/{volume_id}/").status_code == 204
    assert not (store / f"{volume_id}.raw").exists()
    assert not Volume.objects.exists()


def test_rename(schools, store):
    volume_id = make(schools["head1"]).json()["volume_id"]
    answer = as_(schools["head1"]).patch(f"{API}/volumes/{volume_id}/", {"name": "Renamed"},
                                         content_type="application/json")
    assert answer.status_code == 200 and answer.json()["name"] == "Renamed"
    bad = as_(schools["head1"]).patch(f"{API}/volumes/{volume_id}/", {"name": "../x"},
                                      content_type="application/json")
    assert bad.status_code == 400 and "name" in bad.json()


@pytest.mark.parametrize(("body", "field"), [
    ({"size": 0}, "size"),
    ({"size": -MIB}, "size"),
    ({"size": MIB + 1}, "size"),
    ({"size": "many"}, "size"),
    ({"size": 2**70}, "size"),
    ({"size": None}, "size"),
    ({"size": (STORE_MB + 1) * MIB}, "size"),
    ({"name": "../etc"}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "x" * 300}, "name"),
    ({"name": ""}, "name"),
    ({"owner_group": "edu.nowhere"}, "owner_group"),
    ({"cluster": "cluster9"}, "cluster"),
    ({"snapshot_id": "../snp"}, "snapshot_id"),
    ({"snapshot_id": "snp-0000beef"}, "snapshot_id"),
    ({"image": "img-0000beef"}, "image"),
    ({"image": "img-00000001", "image_version": 7}, "image_version"),
])
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(schools, store, body, field):
    answer = make(schools["head1"], **body)
    assert answer.status_code == 400, answer.content
    assert field in answer.json(), answer.json()
    assert not Volume.objects.exists()
    assert not store.exists() or not list(store.iterdir())


def test_a_volume_that_does_not_fit_names_the_scs_numbers(schools, store):
    make(schools["head1"], size=48 * MIB)
    answer = make(schools["head1"], size=32 * MIB)
    assert answer.status_code == 400
    message = answer.json()["size"][0]
    assert "32 MiB does not fit" in message and "16 MiB free of 64 MiB" in message, message


def test_another_school_gets_404_on_every_volume_url_and_a_student_may_not_make_one(schools, store):
    head1 = as_(schools["head1"])
    volume_id = make(schools["head1"]).json()["volume_id"]
    snapshot_id = head1.post(f"{API}/volumes/{volume_id}/snapshots/").json()["snapshot_id"]
    head2 = as_(schools["head2"])
    for method, url, body in [
        ("get", f"{API}/volumes/{volume_id}/", None), ("patch", f"{API}/volumes/{volume_id}/", {"name": "x"}),
        ("delete", f"{API}/volumes/{volume_id}/", None), ("get", f"{API}/volumes/{volume_id}/snapshots/", None),
        ("post", f"{API}/volumes/{volume_id}/snapshots/", {}),
        ("post", f"{API}/volumes/{volume_id}/restore/", {"snapshot_id": snapshot_id}),
        ("get", f"{API}/snapshots/{snapshot_id}/", None), ("delete", f"{API}/snapshots/{snapshot_id}/", None),
    ]:
        answer = getattr(head2, method)(url, body, content_type="application/json")
        assert answer.status_code == 404, (method, url, answer.status_code)
    assert head2.get(f"{API}/volumes/").json()["count"] == 0
    # Nor may school 2 copy school 1's snapshot into a volume of its own.
    copy = make(schools["head2"], owner_group="edu.s2", size=..., snapshot_id=snapshot_id)
    assert copy.status_code == 400 and "snapshot_id" in copy.json()
    student = make(schools["students"][0], owner_group="edu.s1.c1")
    assert student.status_code == 403
    assert Volume.objects.count() == 1


def test_an_image_volume_is_creating_with_progress_until_the_sc_says_otherwise(schools, store):
    """The SC fetches the image from walrus in a thread; the CLC's record follows the SC's word on read (here the
    SC fails it: the test's walrus has no such file), with the reason."""
    answer = make(schools["head1"], image="img-00000001")
    assert answer.status_code == 201, answer.content
    volume = answer.json()
    assert (volume["source"], volume["image"], volume["image_version"]) == ("image", "img-00000001", 1)
    assert volume["state"] in ("creating", "failed")
    record = Volume.objects.get(volume_id=volume["volume_id"])
    for _ in range(100):
        record = volume_service.refresh_volume(record)
        if record.state != "creating":
            break
        time.sleep(0.1)
    assert record.state == "failed" and record.message
    shown = as_(schools["head1"]).get(f"{API}/volumes/{volume['volume_id']}/").json()
    assert (shown["state"], shown["message"]) == ("failed", record.message)
