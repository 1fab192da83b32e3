"""The image records API on the CLC: properties, search, pagination, hostile names, and no delete while in use."""

import pytest

from luhyadb.models import Image, Instance, OwnerGroup, TaskTransaction, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]

PROPERTIES = {"name": "Ubuntu 24.04 desktop", "os_type": "linux", "arch": 64, "usage": "desktop",
              "owner_group": "edu", "description": "for the maths lab"}


@pytest.fixture(autouse=True)
def root_group():
    return OwnerGroup.objects.create(name="root", path="edu")


def create(api_client, **changes):
    response = api_client.post("/clc/api/1.0/images/", PROPERTIES | changes)
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_image_is_created_with_the_notes_properties_and_a_fresh_id(api_client):
    image = create(api_client)
    assert image["image_id"].startswith("img-")
    assert {k: image[k] for k in PROPERTIES} == PROPERTIES
    assert (image["version"], image["current_version"], image["size_bytes"], image["versions"]) == ("1.0.0", 0, 0, [])


def test_images_are_listed_paginated_and_searchable(api_client):
    for n in range(3):
        create(api_client, name=f"Lab image {n}")
    create(api_client, name="Server base", usage="server")
    page = api_client.get("/clc/api/1.0/images/?limit=2").json()
    assert (page["count"], len(page["results"])) == (4, 2)
    found = api_client.get("/clc/api/1.0/images/?search=server").json()
    assert [image["name"] for image in found["results"]] == ["Server base"]


def test_properties_can_be_changed_but_not_the_id_or_version(api_client):
    image = create(api_client)
    path = f"/clc/api/1.0/images/{image['image_id']}/"
    response = api_client.request("PATCH", path, {"name": "Renamed", "image_id": "img-00000000", "version": "9"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["image_id"], response.json()["version"]) == (
        "Renamed", image["image_id"], "1.0.0")


@pytest.mark.parametrize("field, value", [
    ("name", "../../etc/passwd"), ("name", "/etc/shadow"), ("name", "evil\x00name"), ("name", "x; rm -rf /"),
    ("name", "$(reboot)"), ("name", "`id`"), ("description", "nul\x00inside"), ("os_type", "beos"), ("arch", 16),
    ("usage", "mining"), ("owner_group", "no.such.group"),
])
def test_hostile_or_unknown_values_are_refused_with_400_naming_the_field(api_client, field, value):
    response = api_client.post("/clc/api/1.0/images/", PROPERTIES | {field: value})
    assert response.status_code == 400
    assert field in response.json()
    assert not Image.objects.exists()


@pytest.mark.parametrize("image_id", ["..", "img-0000000g", "img-00000000;ls", "%2e%2e", "ins-00000000", "%00"])
def test_hostile_ids_in_the_path_are_refused_with_400(api_client, image_id):
    response = api_client.get(f"/clc/api/1.0/images/{image_id}/")
    assert response.status_code == 400
    assert "image_id" in response.json()


def test_an_id_that_smuggles_a_slash_is_a_400_naming_it_where_the_server_passes_the_raw_url_on(api_client):
    response = api_client.get("/clc/api/1.0/images/%2e%2e%2fetc/", REQUEST_URI="/clc/api/1.0/images/%2e%2e%2fetc/")
    assert response.status_code == 400
    assert response.json() == {"image_id": ["may not contain '/' (%2F)"]}


def test_an_id_that_smuggles_a_slash_is_a_json_404_where_the_server_hides_the_raw_url(api_client):
    response = api_client.get("/clc/api/1.0/images/%2e%2e%2fetc/")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such API endpoint: /clc/api/1.0/images/../etc/"}


def test_an_unknown_image_is_a_404(api_client):
    assert api_client.get("/clc/api/1.0/images/img-00000000/").status_code == 404


def test_an_image_without_users_is_deleted(api_client):
    image = create(api_client)
    assert api_client.request("DELETE", f"/clc/api/1.0/images/{image['image_id']}/").status_code == 204
    assert not Image.objects.exists()


def test_an_image_used_by_an_instance_is_not_deleted_409(api_client):
    image = Image.objects.get(image_id=create(api_client)["image_id"])
    vm_type = VMType.objects.create(name="small", cpus=1, memory_mb=1024, disk_gb=10)
    Instance.objects.create(instance_id="ins-0000000a", name="desk", kind="rvd", image=image, vm_type=vm_type,
                            owner_group=image.owner_group)
    response = api_client.request("DELETE", f"/clc/api/1.0/images/{image.image_id}/")
    assert response.status_code == 409
    assert "instance ins-0000000a" in response.json()["detail"]
    assert Image.objects.filter(pk=image.pk).exists()


def test_an_image_used_by_an_unfinished_task_is_not_deleted_409(api_client):
    image_id = create(api_client)["image_id"]
    TaskTransaction.objects.create(tid=f"{image_id}:{image_id}:ins-0000000b", src_image_id=image_id,
                                   dst_image_id=image_id, instance_id="ins-0000000b", phase="editing")
    response = api_client.request("DELETE", f"/clc/api/1.0/images/{image_id}/")
    assert response.status_code == 409
    assert "task" in response.json()["detail"]


def test_the_task_api_shows_the_live_progress_from_the_cache(api_client):
    from clc.services.status import StatusFolder
    from luhyaapi.messages import TaskStatus

    tid = "img-0000000a:img-0000000b:ins-0000000c"
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold(
        [TaskStatus(tid=tid, phase="preparing", state="downloading", progress=37)])
    task = api_client.get(f"/clc/api/1.0/tasks/{tid}/").json()
    assert (task["phase"], task["state"], task["progress"]) == ("preparing", "downloading", 37)
    assert api_client.get("/clc/api/1.0/tasks/img-0000000a:img-0000000b:ins-00000000/").status_code == 404
    assert api_client.get("/clc/api/1.0/tasks/a;b/").status_code == 400
