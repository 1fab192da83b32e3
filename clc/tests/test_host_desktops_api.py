"""``GET /clc/api/1.0/hosts/<mac>/desktops/``: the local desktops a classroom PC's kiosk offers, asked by the PC's
node controller through its CC (signed calls only). Only LVD instances within the PC's owner-group, whose group
grants instance read and execute, and whose image has a file; each with what the PC needs to pull and run it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from luhyadb.models import Host, Image, ImageVersion, Instance, OwnerGroup, OwnerGroupPermission, VMType
from luhyadb.services.initial_data import seed_initial_data

pytestmark = [pytest.mark.database, pytest.mark.django_db]

MAC = "52:54:00:3c:0f:7e"
URL = f"/clc/api/1.0/hosts/{MAC}/desktops/"
SHA = "ab" * 32


@pytest.fixture
def school():
    """edu > edu.school (instances read+execute) > edu.school.c1, a sibling edu.schoolx; a PC of edu.school; an
    image with a current version 2 in each group."""
    seed_initial_data()
    groups = {path: OwnerGroup.objects.get_or_create(path=path, defaults={"name": path})[0]
              for path in ("edu", "edu.school", "edu.school.c1", "edu.schoolx")}
    for path in ("edu.school", "edu.school.c1", "edu.schoolx"):
        OwnerGroupPermission.objects.create(owner_group=groups[path], resource_type="instance", read=True,
                                            execute=True)
    images = {}
    for index, (path, group) in enumerate(groups.items()):
        image = Image.objects.create(image_id=f"img-{index:08x}", name=f"image {path}", owner_group=group,
                                     current_version=2)
        ImageVersion.objects.create(image=image, number=1, label="1.0.0", size_bytes=100, sha256="00" * 32,
                                    format="qcow2")
        ImageVersion.objects.create(image=image, number=2, label="1.0.1", size_bytes=4096, sha256=SHA,
                                    format="qcow2")
        images[path] = image
    pc = Host.objects.create(name="pc-12", mac=MAC, ip="10.0.9.12", cluster="cluster1",
                             owner_group=groups["edu.school"], offline_enabled=False)
    return groups, images, pc


def desktop(instance_id: str, path: str, school, kind: str = "lvd", **fields) -> Instance:
    groups, images, _ = school
    return Instance.objects.create(instance_id=instance_id, name=f"{kind} {path}", kind=kind, image=images[path],
                                   vm_type=VMType.objects.get(name="tiny"), owner_group=groups[path],
                                   mac="52:54:00:aa:bb:cc", **fields)


def test_a_pc_is_offered_the_local_desktops_of_its_owner_group_and_below_with_what_it_needs_to_run_them(
        signed_client, school):
    tiny = VMType.objects.get(name="tiny")
    desktop("ins-00000001", "edu.school", school, services=[80, 22], persistent=True)
    desktop("ins-00000002", "edu.school.c1", school)
    desktop("ins-00000003", "edu", school)  # above the PC's group
    desktop("ins-00000004", "edu.schoolx", school)  # a sibling whose name starts the same
    desktop("ins-00000005", "edu.school", school, kind="rvd")  # a remote desktop
    desktop("ins-00000006", "edu.school", school, kind="vs")  # a virtual server

    answer = signed_client.get(URL)

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["host"] == {"name": "pc-12", "mac": MAC, "cluster": "cluster1", "owner_group": "edu.school",
                            "offline_enabled": False, "auto_sync": True}
    assert [item["instance_id"] for item in body["desktops"]] == ["ins-00000001", "ins-00000002"]
    assert body["desktops"][0] == {
        "instance_id": "ins-00000001", "name": "lvd edu.school", "os_type": "linux",
        "image": {"image_id": "img-00000001", "version": 2, "sha256": SHA, "size": 4096},
        "vm_type": {"name": "tiny", "cpus": tiny.cpus, "memory_mb": tiny.memory_mb},
        "services": [80, 22], "persistent": True, "mac": "52:54:00:aa:bb:cc"}


def test_a_pc_whose_group_does_not_grant_instance_read_and_execute_is_offered_nothing(signed_client, school):
    groups, _, _ = school
    desktop("ins-00000001", "edu.school", school)
    rights = OwnerGroupPermission.objects.filter(owner_group=groups["edu.school"], resource_type="instance")
    rights.update(execute=False)
    assert signed_client.get(URL).json()["desktops"] == []
    rights.update(execute=True, read=False)
    assert signed_client.get(URL).json()["desktops"] == []
    rights.update(read=True)
    assert [item["instance_id"] for item in signed_client.get(URL).json()["desktops"]] == ["ins-00000001"]


def test_a_pc_without_an_owner_group_is_offered_nothing(signed_client, school):
    _, _, pc = school
    desktop("ins-00000001", "edu.school", school)
    pc.owner_group = None
    pc.save()
    body = signed_client.get(URL).json()
    assert (body["host"]["owner_group"], body["desktops"]) == (None, [])


def test_a_desktop_whose_image_has_no_file_yet_is_left_out(signed_client, school):
    _, images, _ = school
    desktop("ins-00000001", "edu.school", school)
    Image.objects.filter(pk=images["edu.school"].pk).update(current_version=0)
    assert signed_client.get(URL).json()["desktops"] == []


def test_people_are_refused_even_administrators_and_unsigned_calls_too(client, school):
    desktop("ins-00000001", "edu.school", school)
    assert client.get(URL).status_code == 401
    client.force_login(get_user_model().objects.create_superuser("boss", password="x"))
    refused = client.get(URL)
    assert refused.status_code == 403
    assert "ins-00000001" not in refused.content.decode()


def test_an_unknown_pc_is_a_404_and_a_malformed_mac_a_400_naming_it(signed_client, school):
    assert signed_client.get("/clc/api/1.0/hosts/52:54:00:00:00:99/desktops/").status_code == 404
    malformed = signed_client.get("/clc/api/1.0/hosts/52:54:00:3c:0f:7e;ls/desktops/")
    assert malformed.status_code == 400
    assert "mac" in malformed.json()
