"""The storage controller's API: volumes made, listed, read and deleted; exports only for the signed CLC (the CHAP
secret never reaches a person); snapshots and restores; bad input a 400 naming the field with nothing made, unknown
ids 404, conflicts 409 with the reason; unsigned calls 401 and other roles 403."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from sc.constants import MiB
from sc.models import Export, Snapshot, Volume
from sc.tests.conftest import API, files_under
from tests.keys import enrolled_key

pytestmark = [pytest.mark.database, pytest.mark.django_db, pytest.mark.usefixtures("store")]

VOLUME = "vol-0000000a"


def made(signed_client, size: int = 4 * MiB, **extra) -> dict:
    response = signed_client.post(f"{API}/volumes/", {"volume_id": VOLUME, "size": size} | extra)
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_volume_is_made_listed_read_and_deleted(signed_client, store):
    assert made(signed_client) | {"created": "", "updated": ""} == {
        "volume_id": VOLUME, "size": 4 * MiB, "state": "available", "progress": 100, "error": "", "source": "empty",
        "source_id": "",
        "exported_to": "", "snapshots": [], "created": "", "updated": ""}
    listed = signed_client.get(f"{API}/volumes/").json()
    assert [volume["volume_id"] for volume in listed["results"]] == [VOLUME]
    assert signed_client.get(f"{API}/volumes/{VOLUME}/").json()["size"] == 4 * MiB
    assert signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/").status_code == 204
    assert signed_client.get(f"{API}/volumes/{VOLUME}/").status_code == 404
    assert files_under(store) == []


def test_the_space_answer_gives_capacity_reserved_and_free(signed_client):
    made(signed_client)
    space = signed_client.get(f"{API}/space/").json()
    assert space["reserved"] == 4 * MiB and 0 < space["free"] <= space["capacity"] - 4 * MiB


@pytest.mark.parametrize("body, field", [
    ({"size": 0}, "size"), ({"size": -MiB}, "size"), ({"size": 1000}, "size"), ({"size": "lots"}, "size"),
    ({"size": 2**70}, "size"), ({}, "size"), ({"size": MiB, "volume_id": "../vol-0000000a"}, "volume_id"),
    ({"size": MiB, "volume_id": "vol-0000000a\x00"}, "volume_id"), ({"size": MiB, "volume_id": "v" * 300}, "volume_id"),
    ({"size": MiB, "volume_id": "v" * 301}, "volume_id"), ({"snapshot_id": "../../etc"}, "snapshot_id"),
    ({"size": MiB, "volume_id": ["vol-0000000a"]}, "volume_id"),
    ({"size": MiB, "image_id": "img-0000000a"}, "version"), ({"size": MiB, "sha256": "a" * 64}, "image_id"),
    ({"size": MiB, "image_id": "img-0000000a", "version": 1, "sha256": "Z" * 64}, "sha256"),
    ({"size": MiB, "image_id": "../img", "version": 1, "sha256": "a" * 64}, "image_id"),
    ({"image_id": "img-0000000a", "version": 1, "sha256": "a" * 64}, "size"),
    ({"snapshot_id": "snp-0000000a", "image_id": "img-0000000a", "version": 1, "sha256": "a" * 64}, "snapshot_id"),
])
def test_bad_input_to_make_a_volume_is_a_400_naming_the_field_and_nothing_is_made(signed_client, store, body,
                                                                                   field):
    response = signed_client.post(f"{API}/volumes/", body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Volume.objects.exists() and files_under(store) == []


def test_a_volume_that_does_not_fit_is_a_507_naming_size_and_the_numbers(signed_client, settings):
    from dataclasses import replace

    settings.EDUCLOUD = replace(settings.EDUCLOUD, sc_capacity_bytes=10 * MiB)
    made(signed_client, 8 * MiB)
    response = signed_client.post(f"{API}/volumes/", {"size": 4 * MiB})
    assert response.status_code == 507
    assert response.json()["size"] == ["a volume of 4 MiB does not fit: 2 MiB free of 10 MiB capacity"]


@pytest.mark.parametrize("method, path, field", [
    ("GET", "volumes/{}/", "volume_id"), ("DELETE", "volumes/{}/", "volume_id"),
    ("POST", "volumes/{}/export/", "volume_id"), ("DELETE", "volumes/{}/export/", "volume_id"),
    ("POST", "volumes/{}/restore/", "volume_id"), ("GET", "snapshots/{}/", "snapshot_id"),
    ("DELETE", "snapshots/{}/", "snapshot_id"),
])
@pytest.mark.parametrize("hostile", ["../x", "..%2f..%2fetc%2fpasswd", "vol-0000000a%00", "snp-0000000a%00",
                                     "v" * 300, "%24(id)", "vol-0000000A"])
def test_a_hostile_id_in_the_path_is_a_400_naming_the_field(signed_client, method, path, field, hostile):
    body = None if method == "GET" else {"node": "nc-1", "snapshot_id": "snp-0000000a"}
    response = signed_client.request(method, f"{API}/{path.format(hostile)}", body)
    assert response.status_code == 400 and field in response.json(), response.content


@pytest.mark.parametrize("method, path", [
    ("GET", f"volumes/{VOLUME}/"), ("DELETE", f"volumes/{VOLUME}/"), ("DELETE", f"volumes/{VOLUME}/export/"),
    ("GET", "snapshots/snp-0000dead/"), ("DELETE", "snapshots/snp-0000dead/"),
])
def test_an_unknown_id_is_a_404(signed_client, method, path):
    assert signed_client.request(method, f"{API}/{path}").status_code == 404


def test_snapshots_are_taken_listed_restored_and_refuse_the_volumes_delete(signed_client):
    made(signed_client)
    taken = signed_client.post(f"{API}/snapshots/", {"volume_id": VOLUME, "snapshot_id": "snp-0000000a"})
    assert taken.status_code == 201
    assert taken.json() | {"created": ""} == {"snapshot_id": "snp-0000000a", "volume_id": VOLUME, "size": 4 * MiB,
                                               "created": ""}
    listed = signed_client.get(f"{API}/snapshots/?volume_id={VOLUME}").json()["results"]
    assert [snapshot["snapshot_id"] for snapshot in listed] == ["snp-0000000a"]
    assert signed_client.get(f"{API}/volumes/{VOLUME}/").json()["snapshots"] == ["snp-0000000a"]
    refused = signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/")
    assert (refused.status_code, refused.json()["detail"]) == (
        409, f"volume {VOLUME} has snapshots (snp-0000000a); delete them first")
    restored = signed_client.post(f"{API}/volumes/{VOLUME}/restore/", {"snapshot_id": "snp-0000000a"})
    assert restored.status_code == 200
    copy = signed_client.post(f"{API}/volumes/", {"volume_id": "vol-0000000b", "snapshot_id": "snp-0000000a"})
    assert (copy.status_code, copy.json()["source_id"], copy.json()["size"]) == (201, "snp-0000000a", 4 * MiB)
    assert signed_client.request("DELETE", f"{API}/snapshots/snp-0000000a/").status_code == 204
    assert signed_client.request("DELETE", f"{API}/volumes/{VOLUME}/").status_code == 204


@pytest.mark.parametrize("body, field", [
    ({}, "volume_id"), ({"volume_id": "../x"}, "volume_id"), ({"volume_id": VOLUME, "snapshot_id": "snp-1"},
                                                              "snapshot_id"),
])
def test_bad_input_to_take_a_snapshot_is_a_400_naming_the_field(signed_client, body, field):
    made(signed_client)
    response = signed_client.post(f"{API}/snapshots/", body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Snapshot.objects.exists()


@pytest.mark.parametrize("body", [{}, {"node": ""}, {"node": "../nc"}, {"node": "NC 1"}, {"node": "n" * 64},
                                  {"node": ["nc-1"]}])
def test_a_bad_node_name_is_a_400_naming_node_and_nothing_is_exported(signed_client, body):
    made(signed_client)
    response = signed_client.post(f"{API}/volumes/{VOLUME}/export/", body)
    assert response.status_code == 400 and "node" in response.json(), response.json()
    assert not Export.objects.exists()


def test_an_export_is_for_the_signed_clc_only_never_a_person(client, signed_client):
    made(signed_client)
    get_user_model().objects.create_user("admin", password="pw-admin-123", is_staff=True, is_superuser=True)
    client.login(username="admin", password="pw-admin-123")
    assert client.get(f"{API}/volumes/{VOLUME}/").status_code == 200
    response = client.post(f"{API}/volumes/{VOLUME}/export/", {"node": "nc-1"}, content_type="application/json")
    assert response.status_code == 403 and "chap_secret" not in response.content.decode()
    assert not Export.objects.exists()


@pytest.mark.parametrize("role", ["nc", "cc", "walrus"])
def test_other_roles_are_refused_with_403(signed_client, role):
    key = enrolled_key(f"{role}-9", role)
    assert signed_client.get(f"{API}/volumes/", key=key).status_code == 403
    if role != "cc":  # a CC exports its instances' volumes to their nodes
        assert signed_client.post(f"{API}/volumes/{VOLUME}/export/", {"node": "nc-1"}, key=key).status_code == 403


def test_a_cc_may_export_a_volume_to_its_node(signed_client, tgtd):
    made(signed_client)
    response = signed_client.post(f"{API}/volumes/{VOLUME}/export/", {"node": "nc-1"}, key=enrolled_key("cc-9", "cc"))
    assert response.status_code == 200 and response.json()["initiator"].endswith(":node.nc-1"), response.json()


@pytest.mark.parametrize("method, path", [
    ("GET", "volumes/"), ("POST", "volumes/"), ("GET", f"volumes/{VOLUME}/"), ("DELETE", f"volumes/{VOLUME}/"),
    ("POST", f"volumes/{VOLUME}/export/"), ("DELETE", f"volumes/{VOLUME}/export/"),
    ("POST", f"volumes/{VOLUME}/restore/"), ("GET", "snapshots/"), ("POST", "snapshots/"),
    ("GET", "snapshots/snp-0000000a/"), ("DELETE", "snapshots/snp-0000000a/"), ("GET", "space/"),
])
def test_every_call_refuses_an_unsigned_request_with_401(client, method, path):
    response = client.generic(method, f"{API}/{path}", b"{}", content_type="application/json")
    assert response.status_code == 401 and "detail" in response.json()
