"""The image wizard's API and the recording of a submitted version (folded from the node's final task status)."""

from __future__ import annotations

import pytest

from clc.services.status import StatusFolder
from luhyaapi.messages import TaskStatus
from luhyadb.models import Image, ImageVersion, Instance, OwnerGroup, TaskTransaction, VMType

pytestmark = [pytest.mark.database, pytest.mark.django_db]

STORED = {"version": 2, "size": 4096, "sha256": "c" * 64, "format": "qcow2"}


@pytest.fixture
def image():
    group = OwnerGroup.objects.create(name="root", path="edu")
    image = Image.objects.create(image_id="img-0000abcd", name="Lab desktop", owner_group=group, current_version=1,
                                 description="the lab", usage="server")
    ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=1024, sha256="b" * 64,
                                format="qcow2")
    VMType.objects.create(name="tiny", cpus=1, memory_mb=256, disk_gb=1)
    return image


def begin(api_client, **changes):
    response = api_client.post("/clc/api/1.0/builds/", {"image": "img-0000abcd", "vm_type": "tiny"} | changes)
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_modify_starts_with_phase_init_its_vm_defined_and_only_prepare_allowed(api_client, image):
    build = begin(api_client)
    assert build["tid"] == f"img-0000abcd:img-0000abcd:{build['instance']['instance_id']}"
    assert (build["phase"], build["create"], build["instance"]["kind"]) == ("init", False, "vs")
    assert build["steps"] == {"prepare": True, "run": False, "stop": False, "submit": False, "cancel": True}


def test_a_create_reserves_a_new_image_id_in_the_tid(api_client, image):
    build = begin(api_client, new_name="Physics lab")
    assert build["create"] and build["dst_image_id"] != "img-0000abcd"
    assert not Image.objects.filter(image_id=build["dst_image_id"]).exists()


@pytest.mark.parametrize("body, field", [
    ({"image": "img-ffffffff"}, "image"), ({"vm_type": "huge"}, "vm_type"), ({"new_name": "../x"}, "new_name"),
    ({"node": "NC;1"}, "node"),
])
def test_bad_wizard_requests_are_400_naming_the_field(api_client, image, body, field):
    response = api_client.post("/clc/api/1.0/builds/", {"image": "img-0000abcd", "vm_type": "tiny"} | body)
    assert response.status_code == 400 and field in response.json()


def test_an_unknown_step_or_a_malformed_tid_is_a_400(api_client, image):
    tid = begin(api_client)["tid"]
    assert api_client.post(f"/clc/api/1.0/builds/{tid}/explode/", {}).status_code == 400
    assert api_client.post("/clc/api/1.0/builds/img-1:img-2:ins-3/run/", {}).status_code == 400


def test_a_step_out_of_order_is_a_409_saying_why(api_client, image):
    tid = begin(api_client)["tid"]
    response = api_client.post(f"/clc/api/1.0/builds/{tid}/run/", {})
    assert (response.status_code, response.json()["detail"]) == (409, "prepare the image first")


def test_a_submitted_modify_becomes_the_images_next_version_once(api_client, image):
    tid = begin(api_client)["tid"]
    folder = StatusFolder(missed_heartbeats=3, db_touch_seconds=60)
    done = TaskStatus(tid=tid, phase="submitting", state="done", progress=100, done=True,
                      result=STORED | {"image_id": "img-0000abcd"})
    folder.fold([done])
    folder.fold([TaskStatus.model_validate(done.model_dump() | {"msg_id": "0" * 32})])  # a redelivery
    image.refresh_from_db()
    assert (image.current_version, image.version, image.size_bytes) == (2, "1.0.1", 4096)
    assert list(image.versions.values_list("number", flat=True)) == [2, 1]


def test_a_submitted_create_makes_the_new_image_with_its_sources_properties(api_client, image):
    build = begin(api_client, new_name="Physics lab")
    StatusFolder(missed_heartbeats=3, db_touch_seconds=60).fold([TaskStatus(
        tid=build["tid"], phase="submitting", state="done", progress=100, done=True,
        result=STORED | {"version": 1, "image_id": build["dst_image_id"]})])
    made = Image.objects.get(image_id=build["dst_image_id"])
    assert (made.name, made.usage, made.owner_group.path, made.current_version) == ("Physics lab", "server", "edu", 1)
    assert TaskTransaction.objects.get(tid=build["tid"]).done


def test_cancel_removes_the_vm(api_client, image):
    build = begin(api_client)
    assert api_client.post(f"/clc/api/1.0/builds/{build['tid']}/cancel/", {}).status_code == 202
    assert not Instance.objects.filter(build_tid=build["tid"]).exists()
    after = api_client.get(f"/clc/api/1.0/builds/{build['tid']}/").json()
    assert (after["phase"], after["failed"], after["instance"]) == ("failed", True, None)


def test_a_step_of_a_modify_needs_write_on_the_image_not_read_as_well(api_client, client, image):
    """As the console's step page: a person whose group grants write on images (not read) and read on tasks may take
    a step of a modify wizard someone else started."""
    from clc.tests.people import make_person
    from luhyadb.choices import ResourceTypeChoices
    from luhyadb.models import OwnerGroupPermission

    group = OwnerGroup.objects.create(name="Lab", path="edu.lab")
    image.owner_group = group
    image.save(update_fields=["owner_group"])
    build = begin(api_client)
    OwnerGroupPermission.objects.create(owner_group=group, resource_type=ResourceTypeChoices.IMAGE, write=True)
    OwnerGroupPermission.objects.create(owner_group=group, resource_type=ResourceTypeChoices.TASK, read=True)
    client.force_login(make_person("lab-tech", "poweruser", "edu.lab").user)
    response = client.post(f"/clc/api/1.0/builds/{build['tid']}/cancel/", content_type="application/json")
    assert response.status_code == 202, response.json()
